//! The gateway forwards only the form of a request it judged (issue 16 items 1, 2, 7, 9,
//! 14): one media type and charset, one spelling of each decided key, the methods MCP
//! uses, no repeated `Mcp-*` header, bounded batches, no cookies. Every refusal is
//! checked against what the recording upstream received: nothing, on a fresh connection
//! count of zero.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::harness::{client, route, Gateway};
use crate::upstream::Upstream;

/// A call the policy of a real route would refuse, hidden in UTF-7 inside a string
/// member: UTF-7 decodes `+ACI-` etc. to `"`, so the upstream reads `"name":"admin-delete"`.
const UTF7_SMUGGLE: &str = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{},"x":"+ACIALAAiAG4AYQBtAGUAIgA6ACIAYQBkAG0AaQBuAC0AZABlAGwAZQB0AGUAIgAsACIAeQAiADoAIg-"}}"#;

const CALL: &str =
    r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"admin-delete"}}"#;

async fn gateway(up: &Upstream) -> Gateway {
    Gateway::start(&route("r", "/r/mcp", &up.url("/mcp"))).await
}

/// The upstream got nothing at all: no request, not even a connection.
fn untouched(up: &Upstream, what: &str) {
    assert!(up.seen().is_empty(), "{what}: the upstream received it");
    assert_eq!(
        up.connections(),
        0,
        "{what}: an upstream connection was opened"
    );
}

async fn error_of(resp: reqwest::Response) -> serde_json::Value {
    resp.json::<serde_json::Value>()
        .await
        .unwrap_or(serde_json::Value::Null)
}

#[tokio::test]
async fn only_utf8_json_is_read_and_the_upstream_gets_the_gateways_content_type() {
    let up = Upstream::start().await;
    let gw = gateway(&up).await;
    let http = client();
    for content_type in [
        "application/json; charset=utf-7",
        "application/json; charset=UTF-7",
        "application/json; charset=\"utf-7\"",
        "application/json; charset=utf8",
        "application/json; charset=latin1",
        "application/json; charset=iso-8859-1",
        "application/json; charset=utf-16",
        "application/json; charset=utf-8; charset=utf-7",
        "application/json; charset = utf-8",
        "application/json-rpc",
        "text/plain",
    ] {
        let resp = http
            .post(gw.url("/r/mcp"))
            .header("content-type", content_type)
            .body(UTF7_SMUGGLE)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 415, "{content_type}");
        let body = error_of(resp).await;
        assert_eq!(body["error"]["code"], -32600, "{content_type}: {body}");
        untouched(&up, content_type);
    }
    // Two Content-Type headers: which one would the upstream read?
    let resp = http
        .post(gw.url("/r/mcp"))
        .header("content-type", "application/json")
        .header("content-type", "application/json; charset=utf-7")
        .body(UTF7_SMUGGLE)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 415);
    untouched(&up, "two Content-Type headers");
    // The legacy transport's message endpoint is a POST like any other.
    let resp = http
        .post(gw.url("/r/mcp/messages?sessionId=anything"))
        .header("content-type", "application/json; charset=utf-7")
        .body(UTF7_SMUGGLE)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 415);
    untouched(&up, "legacy message endpoint");

    // Accepted spellings of UTF-8 JSON: the upstream sees the gateway's own header.
    let accepted = [
        "application/json",
        "Application/JSON",
        "application/json;charset=UTF-8",
        "application/json ; charset=\"utf-8\"",
    ];
    for content_type in accepted {
        let resp = http
            .post(gw.url("/r/mcp"))
            .header("content-type", content_type)
            .body(r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{content_type}");
    }
    let seen = up.seen();
    assert_eq!(seen.len(), accepted.len());
    for req in &seen {
        let types: Vec<_> = req.headers.get_all("content-type").iter().collect();
        assert_eq!(types, ["application/json"]);
    }
}

#[tokio::test]
async fn a_large_body_delegated_to_a_subrequest_gets_the_gateways_content_type_too() {
    let up = Upstream::start().await;
    let gw = gateway(&up).await;
    let padding = "x".repeat(70 * 1024);
    let big = format!(
        r#"{{"jsonrpc":"2.0","id":"big","method":"tools/call","params":{{"name":"echo","arguments":{{"message":"{padding}"}}}}}}"#
    );
    let resp = client()
        .post(gw.url("/r/mcp"))
        .header("content-type", "APPLICATION/json; Charset=\"UTF-8\"")
        .body(big.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let seen = up.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].body, big.as_bytes());
    let types: Vec<_> = seen[0].headers.get_all("content-type").iter().collect();
    assert_eq!(types, ["application/json"]);
}

#[tokio::test]
async fn byte_order_marks_and_utf16_bodies_are_refused() {
    let up = Upstream::start().await;
    let gw = gateway(&up).await;
    let utf16le: Vec<u8> = CALL.encode_utf16().flat_map(u16::to_le_bytes).collect();
    let utf16be: Vec<u8> = CALL.encode_utf16().flat_map(u16::to_be_bytes).collect();
    for (what, body) in [
        (
            "UTF-8 BOM",
            [&[0xEF, 0xBB, 0xBF][..], CALL.as_bytes()].concat(),
        ),
        ("UTF-16LE BOM", [&[0xFF, 0xFE][..], &utf16le].concat()),
        ("UTF-16BE BOM", [&[0xFE, 0xFF][..], &utf16be].concat()),
        ("UTF-16LE", utf16le.clone()),
        ("UTF-16BE", utf16be.clone()),
    ] {
        let resp = client()
            .post(gw.url("/r/mcp"))
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 415, "{what}");
        untouched(&up, what);
    }
}

#[tokio::test]
async fn other_spellings_of_decided_keys_never_reach_the_upstream() {
    let up = Upstream::start().await;
    let gw = gateway(&up).await;
    for body in [
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","Name":"admin-delete"}}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","NAME":"admin-delete"}}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","nAmE":"admin-delete"}}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","N\u0061me":"admin-delete"}}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo"},"paramſ":{"name":"admin-delete"}}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo"},"PARAMS":{"name":"admin-delete"}}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"ping","Method":"tools/call","params":{"name":"admin-delete"}}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":"a://ok","Uri":"a://secret"}}"#,
        r#"[{"jsonrpc":"2.0","id":1,"method":"ping"},{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"echo","Name":"admin-delete"}}]"#,
    ] {
        let resp = client()
            .post(gw.url("/r/mcp"))
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 400, "{body}");
        let error = error_of(resp).await;
        let error = if error.is_array() {
            error[0].clone()
        } else {
            error
        };
        assert_eq!(error["error"]["code"], -32600, "{body}: {error}");
        untouched(&up, body);
    }
}

/// Sends raw request bytes (with `Connection: close`) and returns the response head.
async fn raw_request(gw: &Gateway, request: String) -> String {
    let addr = gw.url("").trim_start_matches("http://").to_string();
    let mut tcp = tokio::net::TcpStream::connect(addr.trim_end_matches('/'))
        .await
        .unwrap();
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut response)).await;
    assert!(read.is_ok(), "the gateway neither answered nor closed");
    String::from_utf8_lossy(&response).into_owned()
}

#[tokio::test]
async fn methods_mcp_does_not_use_get_405_and_bodies_on_get_or_delete_400() {
    let up = Upstream::start().await;
    let gw = gateway(&up).await;
    let http = client();
    for method in ["PUT", "PATCH", "HEAD", "post", "Post", "FOO", "TRACE"] {
        let resp = http
            .request(
                reqwest::Method::from_bytes(method.as_bytes()).unwrap(),
                gw.url("/r/mcp"),
            )
            .body(CALL)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 405, "{method}");
        assert_eq!(resp.headers()["allow"], "GET, POST, DELETE", "{method}");
        untouched(&up, method);
    }
    for method in [reqwest::Method::GET, reqwest::Method::DELETE] {
        let resp = http
            .request(method.clone(), gw.url("/r/mcp"))
            .body(CALL)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 400, "{method} with a body");
        assert_eq!(error_of(resp).await["error"], "body_not_allowed");
        untouched(&up, method.as_str());
    }
    for method in ["GET", "DELETE"] {
        let chunked = format!(
            "{method} /r/mcp HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n{:x}\r\n{CALL}\r\n0\r\n\r\n",
            CALL.len()
        );
        let head = raw_request(&gw, chunked).await;
        assert!(head.starts_with("HTTP/1.1 400"), "{method} chunked: {head}");
        untouched(&up, "chunked GET/DELETE");
    }
    for header in [
        "X-HTTP-Method-Override",
        "X-HTTP-Method",
        "X-Method-Override",
    ] {
        let resp = http
            .post(gw.url("/r/mcp"))
            .header(header, "GET")
            .body(CALL)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 400, "{header}");
        assert_eq!(error_of(resp).await["error"], "method_override");
        untouched(&up, header);
    }
    // Bodiless GET and DELETE still pass.
    let resp = http
        .get(gw.url("/r/mcp"))
        .header("accept", "text/event-stream")
        .header("content-length", "0")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    drop(resp);
    let resp = http.delete(gw.url("/r/mcp")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let methods: Vec<_> = up.seen().iter().map(|s| s.method.to_string()).collect();
    assert_eq!(methods, ["GET", "DELETE"]);
}

#[tokio::test]
async fn repeated_mcp_headers_and_headers_without_a_message_are_refused() {
    let up = Upstream::start().await;
    let gw = gateway(&up).await;
    let http = client();
    let echo = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo"}}"#;
    for (name, first, second) in [
        ("mcp-name", "echo", "admin-delete"),
        ("mcp-method", "tools/call", "tools/list"),
        ("mcp-protocol-version", "2025-03-26", "2026-07-28"),
        ("Mcp-Name", "echo", "echo"),
    ] {
        let resp = http
            .post(gw.url("/r/mcp"))
            .header(name, first)
            .header(name, second)
            .body(echo)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 400, "two {name}");
        assert_eq!(error_of(resp).await["error"], "duplicate_mcp_header");
        untouched(&up, name);
    }
    // A header the body does not say is refused before forwarding.
    let resp = http
        .post(gw.url("/r/mcp"))
        .header("mcp-method", "tools/call")
        .header("mcp-name", "admin-delete")
        .body(echo)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    untouched(&up, "Mcp-Name disagreeing with the body");
    // On a GET there is no message for them to agree with.
    let resp = http
        .get(gw.url("/r/mcp"))
        .header("mcp-method", "tools/call")
        .header("mcp-name", "admin-delete")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    untouched(&up, "Mcp-Method on a GET");
    // Agreeing headers pass.
    let resp = http
        .post(gw.url("/r/mcp"))
        .header("mcp-method", "tools/call")
        .header("mcp-name", "echo")
        .body(echo)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(up.seen().len(), 1);
}

fn batch(n: usize) -> String {
    let items: Vec<String> = (1..=n)
        .map(|i| format!(r#"{{"jsonrpc":"2.0","id":{i},"method":"tools/list"}}"#))
        .collect();
    format!("[{}]", items.join(","))
}

#[tokio::test]
async fn batches_are_capped_and_refused_from_2025_06_18() {
    let up = Upstream::start().await;
    let gw = gateway(&up).await;
    let http = client();
    let resp = http
        .post(gw.url("/r/mcp"))
        .body(batch(101))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400, "a batch of 101");
    let answer = error_of(resp).await;
    assert_eq!(
        answer["error"]["code"], -32600,
        "one error, not 101: {answer}"
    );
    assert!(answer["id"].is_null());
    untouched(&up, "a batch of 101");
    for version in ["2025-06-18", "2025-11-25", "2026-07-28", "latest"] {
        let resp = http
            .post(gw.url("/r/mcp"))
            .header("mcp-protocol-version", version)
            .body(batch(2))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 400, "a batch under {version}");
        untouched(&up, version);
    }
    // Within the cap, under a version that has batches: forwarded.
    for (version, n) in [(None, 100), (Some("2025-03-26"), 3)] {
        let mut req = http.post(gw.url("/r/mcp")).body(batch(n));
        if let Some(v) = version {
            req = req.header("mcp-protocol-version", v);
        }
        let resp = req.send().await.unwrap();
        assert_ne!(resp.status(), 400, "{version:?}");
    }
    assert_eq!(up.seen().len(), 2);
    // A single message under 2025-06-18 is fine.
    let resp = http
        .post(gw.url("/r/mcp"))
        .header("mcp-protocol-version", "2025-06-18")
        .body(r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
}

#[tokio::test]
async fn the_batch_cap_follows_limits_max_batch() {
    let up = Upstream::start().await;
    let gw = Gateway::start_with(
        &route("r", "/r/mcp", &up.url("/mcp")),
        "limits: { max_batch: 3 }\n",
    )
    .await;
    let resp = client()
        .post(gw.url("/r/mcp"))
        .body(batch(4))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    untouched(&up, "a batch of 4 over a cap of 3");
    let resp = client()
        .post(gw.url("/r/mcp"))
        .body(batch(3))
        .send()
        .await
        .unwrap();
    assert_ne!(resp.status(), 400);
    assert_eq!(up.seen().len(), 1);
}

#[tokio::test]
async fn cookies_stay_at_the_gateway_unless_the_route_forwards_them() {
    let up = Upstream::start().await;
    let keeps = Upstream::start().await;
    let routes = route("r", "/r/mcp", &up.url("/mcp"))
        + &route("k", "/k/mcp", &keeps.url("/mcp")).replace(
            "      timeouts:",
            "      forward_cookies: true\n      timeouts:",
        );
    let gw = Gateway::start(&routes).await;
    for path in ["/r/mcp", "/k/mcp"] {
        let resp = client()
            .post(gw.url(path))
            .header("cookie", "sid=browser-session")
            .body(r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{path}");
    }
    assert!(up.seen()[0].headers.get("cookie").is_none());
    assert_eq!(keeps.seen()[0].headers["cookie"], "sid=browser-session");
}

#[tokio::test]
async fn huge_batches_do_not_hold_up_another_callers_request() {
    let up = Upstream::start().await;
    let gw = gateway(&up).await;
    let huge = batch(15_000);
    assert!(huge.len() > 700 << 10, "about the reported attack's size");
    let flood: Vec<_> = (0..2)
        .map(|_| {
            let (http, url, body) = (client(), gw.url("/r/mcp"), huge.clone());
            tokio::spawn(async move { http.post(url).body(body).send().await })
        })
        .collect();
    let started = std::time::Instant::now();
    let resp = client()
        .post(gw.url("/r/mcp"))
        .body(r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the other caller waited {:?}",
        started.elapsed()
    );
    for task in flood {
        let resp = task.await.unwrap().unwrap();
        assert_eq!(resp.status(), 400);
    }
    let seen = up.seen();
    assert_eq!(seen.len(), 1, "only the ping reached the upstream");
    assert_eq!(
        seen[0].body,
        r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#.as_bytes()
    );
}
