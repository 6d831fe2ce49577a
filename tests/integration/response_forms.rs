//! Every server-to-client message is filtered, whatever form the upstream gives it: an
//! upstream double answers in each unusual form (JSON under other media types, loose ids,
//! unrequested answers, odd SSE framing, compression, resumed streams, oversized events,
//! unmappable legacy endpoints) and the client must never receive a forbidden tool name
//! or the upstream's raw session id.
//!
//! The double writes raw HTTP/1.1 responses (chosen by the request's `x-form` header) and
//! records the head of every request it receives.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::harness::{client, sample, Gateway};
use crate::idp::{Alg, Idp};

const RESOURCE: &str = "https://mcp.example.com/r";
/// The tool the caller may not see: it must never reach the client.
const FORBIDDEN: &str = "secret-tool";
/// The upstream's own legacy session id: it must never reach the client.
const RAW_ID: &str = "RAWUPSTREAMID42";

const LIST: &str =
    r#"{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"echo"},{"name":"secret-tool"}]}}"#;

/// The raw response the double writes for a form; `Hold` keeps the connection open after
/// writing (an unterminated stream) for a while.
enum Reply {
    Close(Vec<u8>),
    Hold(Vec<u8>),
}

fn http(head: &str, body: &[u8]) -> Vec<u8> {
    let mut out = format!("HTTP/1.1 200 OK\r\n{head}Connection: close\r\n\r\n").into_bytes();
    out.extend_from_slice(body);
    out
}

fn json_as(content_type: Option<&str>, body: &str) -> Vec<u8> {
    let ct = content_type.map_or(String::new(), |c| format!("Content-Type: {c}\r\n"));
    http(
        &format!("{ct}Content-Length: {}\r\n", body.len()),
        body.as_bytes(),
    )
}

fn sse(body: &[u8]) -> Vec<u8> {
    http("Content-Type: text/event-stream\r\n", body)
}

fn reply_for(form: &str) -> Reply {
    let list_with_id = |id: &str| LIST.replace(r#""id":1"#, &format!(r#""id":{id}"#));
    Reply::Close(match form {
        "public-cache" => json_as(
            Some("application/json"),
            &LIST.replace(r#""result":{"#, r#""result":{"cacheScope":"public","ttlMs":60000,"#),
        ),
        "public-cache-sse" => sse(
            format!(
                "event: message\ndata: {}\n\n",
                LIST.replace(r#""result":{"#, r#""result":{"cacheScope":"public","#)
            )
            .as_bytes(),
        ),
        "json-rpc-type" => json_as(Some("application/json-rpc"), LIST),
        "text-plain" => json_as(Some("text/plain"), LIST),
        "no-type" => json_as(None, LIST),
        "string-id" => json_as(Some("application/json"), &list_with_id(r#""1""#)),
        "float-id" => json_as(Some("application/json"), &list_with_id("1.0")),
        "not-json-2xx" => json_as(
            Some("application/json"),
            &format!("{LIST} /* trailing comment */"),
        ),
        "gzip" => {
            let body = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03secret-tool";
            http(
                &format!(
                    "Content-Type: text/event-stream\r\nContent-Encoding: gzip\r\nContent-Length: {}\r\n",
                    body.len()
                ),
                body,
            )
        }
        "extra-answer" => sse(
            format!(
                "event: message\ndata: {}\n\nevent: message\ndata: {{\"jsonrpc\":\"2.0\",\"id\":2,\"result\":{{\"content\":[]}}}}\n\n",
                list_with_id("77")
            )
            .as_bytes(),
        ),
        "event-foo" => sse(format!("event: foo\ndata: {LIST}\n\ndata: {LIST}\n\n").as_bytes()),
        "bad-utf8-comment" => {
            let mut body = b": \xC3\x28 broken\n\n".to_vec();
            body.extend(format!("data: {LIST}\n\n").as_bytes());
            sse(&body)
        }
        "bom" => sse(format!("\u{feff}data: {LIST}\n\n").as_bytes()),
        "lone-cr-end" => sse(format!("data: {LIST}\r\r").as_bytes()),
        "unterminated-end" => sse(format!("data: {LIST}").as_bytes()),
        "resumed" => sse(format!("id: 4\nevent: message\ndata: {LIST}\n\n").as_bytes()),
        "resource-updated" => sse(
            b"data: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/resources/updated\",\"params\":{\"uri\":\"file:///secret-tool\"}}\n\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/resources/updated\",\"params\":{\"uri\":\"test://static/resource/1\"}}\n\n",
        ),
        "oversized" => {
            let filler = "x".repeat(64 * 1024);
            let body = format!(
                r#"data: {{"jsonrpc":"2.0","id":1,"result":{{"tools":[{{"name":"secret-tool","description":"{filler}"#
            );
            return Reply::Hold(http("Content-Type: text/event-stream\r\n", body.as_bytes()));
        }
        "endpoint-good" => sse(
            format!("retry: 1000\n\n: hello\n\nevent: endpoint\ndata: /messages?sessionId={RAW_ID}\n\nevent: message\ndata: {LIST}\n\n")
                .as_bytes(),
        ),
        "endpoint-localhost" => sse(
            format!("retry: 1000\n\nevent: endpoint\ndata: http://localhost:1/messages?sessionId={RAW_ID}\n\n")
                .as_bytes(),
        ),
        "endpoint-outside" => sse(
            format!("event: endpoint\ndata: /../elsewhere/messages?session%5Fid={RAW_ID}\n\n")
                .as_bytes(),
        ),
        _ => json_as(Some("application/json"), r#"{"jsonrpc":"2.0","id":1,"result":{}}"#),
    })
}

/// The upstream double: answers each request with the form it names, records heads.
struct Double {
    port: u16,
    heads: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Double {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Double {
    async fn start() -> Double {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let heads = Arc::new(Mutex::new(Vec::new()));
        let recorded = heads.clone();
        let task = tokio::spawn(async move {
            while let Ok((conn, _)) = listener.accept().await {
                tokio::spawn(serve(conn, recorded.clone()));
            }
        });
        Double { port, heads, task }
    }

    fn heads(&self) -> Vec<String> {
        self.heads.lock().unwrap().clone()
    }
}

async fn serve(mut conn: TcpStream, heads: Arc<Mutex<Vec<String>>>) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        match conn.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_lowercase();
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    while buf.len() < head_end + length {
        match conn.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    heads.lock().unwrap().push(head.clone());
    let form = head
        .lines()
        .find_map(|l| l.strip_prefix("x-form:"))
        .map_or("", str::trim)
        .to_string();
    match reply_for(&form) {
        Reply::Close(bytes) => {
            let _ = conn.write_all(&bytes).await;
            let _ = conn.shutdown().await;
        }
        Reply::Hold(bytes) => {
            let _ = conn.write_all(&bytes).await;
            tokio::time::sleep(Duration::from_secs(4)).await;
        }
    }
}

async fn setup(extra: &str) -> (Idp, Double, Gateway) {
    let idp = Idp::start().await;
    let double = Double::start().await;
    let routes = format!(
        r#"  - name: r
    match: {{ path: /r }}
    public_url: {RESOURCE}
    upstream:
      url: 'http://127.0.0.1:{}/'
      timeouts: {{ connect: 1s, read: 5s, stream_idle: 5s }}
    auth: {{ issuers: [corp] }}
    policy:
      tools: {{ echo: [tools:echo], secret-tool: [admin] }}
      resources: {{ "test://static/resource/*": [tools:echo] }}
"#,
        double.port
    );
    let extra = format!(
        "issuers:\n  - name: corp\n    issuer: {}\n{extra}",
        idp.issuer
    );
    let gw = Gateway::start_with(&routes, &extra).await;
    (idp, double, gw)
}

fn bearer(idp: &Idp) -> String {
    format!(
        "Bearer {}",
        idp.mint(Alg::ES256, &idp.claims(RESOURCE, "tools:echo"))
    )
}

/// Everything the client receives for a POST of `tools/list` answered in `form`: status
/// and body (read until the stream ends, at most a few seconds).
async fn post_form(gw: &Gateway, idp: &Idp, form: &str, method: &str) -> (u16, String) {
    let resp = client()
        .post(gw.url("/r/mcp"))
        .header("authorization", bearer(idp))
        .header("accept", "application/json, text/event-stream")
        .header("accept-encoding", "gzip, br")
        .header("x-form", form)
        .body(
            match method {
                "tools/call" => json!({"jsonrpc":"2.0","id":1,"method":method,
                "params":{"name":"echo","arguments":{}}}),
                _ => json!({"jsonrpc":"2.0","id":1,"method":method}),
            }
            .to_string(),
        )
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, read_all(resp).await)
}

async fn get_form(gw: &Gateway, idp: &Idp, path: &str, form: &str) -> (u16, String) {
    let resp = client()
        .get(gw.url(path))
        .header("authorization", bearer(idp))
        .header("accept", "text/event-stream")
        .header("last-event-id", "3")
        .header("x-form", form)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, read_all(resp).await)
}

/// The body as far as it comes within 8 s (a stream the gateway ends may close late).
async fn read_all(resp: reqwest::Response) -> String {
    let mut bytes = Vec::new();
    let mut stream = resp.bytes_stream();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(8);
    while let Ok(Some(Ok(chunk))) = tokio::time::timeout_at(deadline, stream.next()).await {
        bytes.extend_from_slice(&chunk);
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

#[tokio::test]
async fn json_answers_are_filtered_whatever_their_media_type_or_id() {
    let (idp, double, gw) = setup("").await;
    for form in [
        "json-rpc-type",
        "text-plain",
        "no-type",
        "string-id",
        "float-id",
    ] {
        let (status, body) = post_form(&gw, &idp, form, "tools/list").await;
        assert_eq!(status, 200, "{form}: {body}");
        assert!(body.contains("\"echo\""), "{form}: {body}");
        assert!(!body.contains(FORBIDDEN), "{form}: {body}");
    }
    // The same answers to a request that is not a list request are filtered too.
    let (_, body) = post_form(&gw, &idp, "text-plain", "tools/call").await;
    assert!(!body.contains(FORBIDDEN), "{body}");
    // The upstream was asked for uncompressed answers only.
    let heads = double.heads();
    assert!(!heads.is_empty());
    for head in heads {
        assert!(head.contains("accept-encoding: identity\r\n"), "{head}");
        assert!(!head.contains("gzip"), "{head}");
    }
}

#[tokio::test]
async fn a_filtered_list_goes_out_private_to_its_caller() {
    // MCP 2026-07-28 caching hints: a list cut to this caller's view must not be served
    // from a shared cache to anyone else, whatever the upstream said.
    let (idp, _double, gw) = setup("").await;
    for form in ["public-cache", "public-cache-sse"] {
        let (status, body) = post_form(&gw, &idp, form, "tools/list").await;
        assert_eq!(status, 200, "{form}: {body}");
        assert!(body.contains(r#""cacheScope":"private""#), "{form}: {body}");
        assert!(!body.contains("public"), "{form}: {body}");
        assert!(!body.contains(FORBIDDEN), "{form}: {body}");
    }
    let (_, body) = post_form(&gw, &idp, "public-cache", "tools/list").await;
    assert!(body.contains(r#""ttlMs":60000"#), "the TTL is kept: {body}");
}

#[tokio::test]
async fn unreadable_or_compressed_answers_never_reach_the_client() {
    let (idp, _double, gw) = setup("").await;
    let (status, body) = post_form(&gw, &idp, "not-json-2xx", "tools/list").await;
    assert_eq!(status, 502, "{body}");
    assert!(!body.contains(FORBIDDEN), "{body}");
    let (status, body) = post_form(&gw, &idp, "gzip", "tools/list").await;
    assert_eq!(status, 502, "{body}");
    assert!(!body.contains(FORBIDDEN), "{body}");
    let (status, body) = post_form(&gw, &idp, "gzip", "tools/call").await;
    assert_eq!(status, 502, "{body}");
    assert!(!body.contains(FORBIDDEN), "{body}");
    let m = gw
        .metrics_when(
            r#"drawbridge_stream_errors_total{reason="compressed",route="r"}"#,
            2.0,
        )
        .await;
    assert_eq!(
        sample(
            &m,
            r#"drawbridge_stream_errors_total{reason="compressed",route="r"}"#
        ),
        Some(2.0),
        "{m}"
    );
}

#[tokio::test]
async fn event_stream_answers_are_filtered_in_every_form() {
    let (idp, _double, gw) = setup("").await;
    for (form, method) in [
        ("extra-answer", "tools/call"),
        ("event-foo", "tools/list"),
        ("bom", "tools/list"),
        ("lone-cr-end", "tools/list"),
        ("unterminated-end", "tools/list"),
    ] {
        let (status, body) = post_form(&gw, &idp, form, method).await;
        assert_eq!(status, 200, "{form}");
        assert!(!body.contains(FORBIDDEN), "{form}: {body}");
        if form != "unterminated-end" {
            assert!(body.contains("\"echo\""), "{form}: {body}");
        }
    }
    // Invalid UTF-8, even in a comment: the stream ends with an error answer.
    let (_, body) = post_form(&gw, &idp, "bad-utf8-comment", "tools/list").await;
    assert!(!body.contains(FORBIDDEN), "{body}");
    assert!(
        body.contains("\"id\":1") && body.contains("-32002"),
        "{body}"
    );
}

#[tokio::test]
async fn a_resumed_get_stream_replaying_a_list_is_filtered() {
    let (idp, double, gw) = setup("").await;
    let (status, body) = get_form(&gw, &idp, "/r/mcp", "resumed").await;
    assert_eq!(status, 200);
    assert!(body.contains("id: 4\n"), "{body}");
    assert!(body.contains("\"echo\""), "{body}");
    assert!(!body.contains(FORBIDDEN), "{body}");
    assert!(
        double
            .heads()
            .iter()
            .any(|h| h.starts_with("get /mcp ") && h.contains("last-event-id: 3\r\n")),
        "the resumption reached the upstream"
    );
    // Resource updates only for URIs the caller may read.
    let (_, body) = get_form(&gw, &idp, "/r/mcp", "resource-updated").await;
    assert!(!body.contains(FORBIDDEN), "{body}");
    assert!(body.contains("test://static/resource/1"), "{body}");
}

#[tokio::test]
async fn an_oversized_event_ends_the_stream_and_is_counted() {
    let (idp, _double, gw) = setup("limits:\n  max_sse_event: 4KiB\n").await;
    let (status, body) = post_form(&gw, &idp, "oversized", "tools/list").await;
    assert_eq!(status, 200);
    assert!(
        !body.contains(FORBIDDEN),
        "{}",
        &body[..body.len().min(500)]
    );
    assert!(body.len() < 4096, "the event was not passed on");
    assert!(body.contains("-32002"), "{body}");
    let name = r#"drawbridge_stream_errors_total{reason="event_too_large",route="r"}"#;
    let m = gw.metrics_when(name, 1.0).await;
    assert_eq!(sample(&m, name), Some(1.0), "{m}");
}

#[tokio::test]
async fn legacy_endpoints_are_sealed_or_the_stream_ends() {
    let (idp, _double, gw) = setup("").await;
    let (status, body) = get_form(&gw, &idp, "/r/sse", "endpoint-good").await;
    assert_eq!(status, 200);
    assert!(!body.contains(RAW_ID), "{body}");
    assert!(
        body.contains("event: endpoint\ndata: /r/messages?sessionId="),
        "mapped after a retry line and a comment: {body}"
    );
    // The legacy transport answers every request on this stream: filtered too.
    assert!(body.contains("\"echo\""), "{body}");
    assert!(!body.contains(FORBIDDEN), "{body}");
    for form in ["endpoint-localhost", "endpoint-outside"] {
        let (_, body) = get_form(&gw, &idp, "/r/sse", form).await;
        assert!(!body.contains(RAW_ID), "{form}: {body}");
        assert!(!body.contains("event: endpoint"), "{form}: {body}");
        assert!(body.contains("notifications/message"), "{form}: {body}");
    }
    let name = r#"drawbridge_stream_errors_total{reason="unmappable_endpoint",route="r"}"#;
    let m = gw.metrics_when(name, 2.0).await;
    assert_eq!(sample(&m, name), Some(2.0), "{m}");
}
