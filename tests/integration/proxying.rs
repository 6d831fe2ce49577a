//! Requests pass through faithfully: routing, prefix rewrite, headers, methods.

use crate::harness::{route, Gateway};
use crate::upstream::Upstream;

const INIT: &str = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{}}"#;

#[tokio::test]
async fn post_is_routed_rewritten_and_answered() {
    let up = Upstream::start().await;
    let other = Upstream::start().await;
    let routes = route("everything", "/everything/mcp", &up.url("/mcp"))
        + &route("other", "/other", &other.url("/base/"));
    let gw = Gateway::start(&routes).await;
    let client = crate::harness::client();
    crate::upstream::register_caller_token("user-token-must-not-leak");

    let resp = client
        .post(gw.url("/everything/mcp?trace=1"))
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("authorization", "Bearer user-token-must-not-leak")
        .header("mcp-protocol-version", "2025-06-18")
        .header("connection", "keep-alive, x-hop")
        .header("x-hop", "1")
        .body(INIT)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let sealed = resp.headers()["mcp-session-id"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(sealed.starts_with("v1.") && !sealed.contains("upstream-session-1"));
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["id"], 1);
    assert_eq!(body["result"]["method"], "initialize");

    let seen = up.seen();
    assert_eq!(seen.len(), 1);
    let req = &seen[0];
    assert_eq!(req.path_and_query, "/mcp?trace=1");
    assert_eq!(req.body, INIT.as_bytes());
    assert_eq!(req.headers["host"], up.addr.to_string());
    assert_eq!(req.headers["mcp-protocol-version"], "2025-06-18");
    assert!(req.headers.get("mcp-session-id").is_none());
    assert_eq!(req.headers["content-length"], INIT.len().to_string());
    assert!(
        req.headers.get("authorization").is_none(),
        "token passed through"
    );
    assert!(
        req.headers.get("x-hop").is_none(),
        "hop-by-hop header forwarded"
    );

    // The sealed id opens on this route and restores the upstream's id.
    let resp = client
        .post(gw.url("/everything/mcp"))
        .header("mcp-session-id", &sealed)
        .body(INIT)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(up.seen()[1].headers["mcp-session-id"], "upstream-session-1");

    let resp = client
        .post(gw.url("/other/deeper/path"))
        .body(INIT)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(other.seen()[0].path_and_query, "/base/deeper/path");
    assert_eq!(
        up.seen().len(),
        2,
        "the other route's traffic went elsewhere"
    );
}

#[tokio::test]
async fn notifications_get_202_and_delete_passes() {
    let up = Upstream::start().await;
    let gw = Gateway::start(&route("r", "/r/mcp", &up.url("/mcp"))).await;
    let client = crate::harness::client();
    let resp = client
        .post(gw.url("/r/mcp"))
        .body(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202);
    assert_eq!(resp.bytes().await.unwrap().len(), 0);

    let sealed = crate::harness::sealed_session(&gw, "/r/mcp").await;
    let resp = client
        .delete(gw.url("/r/mcp"))
        .header("mcp-session-id", &sealed)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let seen = up.seen();
    assert_eq!(seen[2].method, "DELETE");
    assert_eq!(seen[2].headers["mcp-session-id"], "upstream-session-1");
}

#[tokio::test]
async fn batches_and_bodies_up_to_64_kib_arrive_byte_identical() {
    let up = Upstream::start().await;
    let gw = Gateway::start(&route("r", "/r/mcp", &up.url("/mcp"))).await;
    let client = crate::harness::client();
    let padding = "x".repeat(60 * 1024);
    let big = format!(
        r#"{{"jsonrpc":"2.0","id":"big","method":"tools/call","params":{{"name":"echo","arguments":{{"message":"{padding}"}}}}}}"#
    );
    let resp = client
        .post(gw.url("/r/mcp"))
        .body(big.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(up.seen()[0].body, big.as_bytes());

    let batch = r#"[{"jsonrpc":"2.0","id":1,"method":"ping"},{"jsonrpc":"2.0","method":"notifications/x"}]"#;
    let resp = client
        .post(gw.url("/r/mcp"))
        .body(batch)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "the stub answers the batch's request");
    assert_eq!(up.seen()[1].body, batch.as_bytes());
}

#[tokio::test]
async fn chunked_and_expect_continue_bodies_are_read_before_forwarding() {
    let up = Upstream::start().await;
    let gw = Gateway::start(&route("r", "/r/mcp", &up.url("/mcp"))).await;
    // A raw HTTP/1.1 request with chunked framing and Expect: 100-continue.
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", gw.port))
        .await
        .unwrap();
    let head = "POST /r/mcp HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n";
    s.write_all(head.as_bytes()).await.unwrap();
    let mut buf = vec![0u8; 256];
    let n = s.read(&mut buf).await.unwrap();
    assert!(
        String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 100"),
        "no 100 Continue"
    );
    let body = r#"{"jsonrpc":"2.0","id":5,"method":"ping"}"#;
    let (a, b) = body.split_at(10);
    let chunks = format!("{:x}\r\n{a}\r\n{:x}\r\n{b}\r\n0\r\n\r\n", a.len(), b.len());
    s.write_all(chunks.as_bytes()).await.unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    assert!(out.contains("HTTP/1.1 200"), "{out}");
    let seen = up.seen();
    assert_eq!(seen[0].body, body.as_bytes());
    assert_eq!(seen[0].headers["content-length"], body.len().to_string());
    assert!(seen[0].headers.get("expect").is_none());
}

fn tools_call_of_size(bytes: usize) -> String {
    format!(
        r#"{{"jsonrpc":"2.0","id":"large","method":"tools/call","params":{{"name":"echo","arguments":{{"message":"{}"}}}}}}"#,
        "y".repeat(bytes)
    )
}

#[tokio::test]
async fn bodies_beyond_64_kib_arrive_byte_identical_and_are_counted_once() {
    let up = Upstream::start().await;
    let gw = Gateway::start(&route("r", "/r/mcp", &up.url("/mcp"))).await;
    let client = crate::harness::client();
    crate::upstream::register_caller_token("must-not-leak");
    let sizes = [64 * 1024 + 1, 1 << 20, 3 << 20];
    for size in sizes {
        let body = tools_call_of_size(size);
        let resp = client
            .post(gw.url("/r/mcp"))
            .header("authorization", "Bearer must-not-leak")
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "size {size}");
        let answer: serde_json::Value = resp.json().await.unwrap();
        assert_eq!(answer["id"], "large");
        assert_eq!(answer["result"]["bytes"], body.len());
    }
    // Chunked framing (no Content-Length) takes the same path.
    let body = tools_call_of_size(200 * 1024);
    let stream = futures_util::stream::iter(
        body.clone()
            .into_bytes()
            .chunks(10_000)
            .map(|c| Ok::<_, std::io::Error>(bytes::Bytes::copy_from_slice(c)))
            .collect::<Vec<_>>(),
    );
    let resp = client
        .post(gw.url("/r/mcp"))
        .body(reqwest::Body::wrap_stream(stream))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);

    let seen = up.seen();
    assert_eq!(seen.len(), 4);
    for req in &seen[..3] {
        assert!(req.headers.get("authorization").is_none());
        assert_eq!(req.path_and_query, "/mcp");
    }
    assert_eq!(seen[3].body, body.as_bytes());
    assert_eq!(seen[3].headers["content-length"], body.len().to_string());
    let m = gw
        .metrics_when(
            r#"drawbridge_requests_total{method="POST",route="r",status="200"}"#,
            4.0,
        )
        .await;
    assert_eq!(
        crate::harness::sample(
            &m,
            r#"drawbridge_requests_total{method="POST",route="r",status="200"}"#
        ),
        Some(4.0),
        "{m}"
    );
}

#[tokio::test]
async fn large_bodies_are_still_inspected_and_refused_when_malformed() {
    let up = Upstream::start().await;
    let gw = Gateway::start(&route("r", "/r/mcp", &up.url("/mcp"))).await;
    let resp = crate::harness::client()
        .post(gw.url("/r/mcp"))
        .body(format!(
            "{{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"x\",\"pad\":\"{}\"",
            "z".repeat(100_000)
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    assert!(up.seen().is_empty());
}
