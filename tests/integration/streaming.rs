//! Event streams are forwarded as they arrive: SSE answers to POSTs, GET streams, and the
//! legacy HTTP+SSE transport with its endpoint rewritten into the route's path space.

use std::time::Duration;

use futures_util::StreamExt;

use crate::harness::{route, sample, Gateway, LOG_ALL};
use crate::upstream::Upstream;

/// Reads from a byte stream until `needle` has appeared, with a deadline.
async fn read_until(
    stream: &mut (impl futures_util::Stream<Item = reqwest::Result<bytes::Bytes>> + Unpin),
    seen: &mut String,
    needle: &str,
) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !seen.contains(needle) {
        let next = tokio::time::timeout_at(deadline, stream.next())
            .await
            .unwrap_or_else(|_| panic!("`{needle}` did not arrive; got so far: {seen:?}"));
        match next {
            Some(Ok(chunk)) => seen.push_str(&String::from_utf8_lossy(&chunk)),
            other => panic!("stream ended before `{needle}`: {other:?}; got {seen:?}"),
        }
    }
}

#[tokio::test]
async fn sse_answer_to_post_streams_before_the_upstream_finishes() {
    sse_streams_with_body_padding(0).await;
}

#[tokio::test]
async fn sse_answer_to_a_large_post_streams_too() {
    // Over 64 KiB the request travels through a subrequest; the answer must still stream.
    sse_streams_with_body_padding(100_000).await;
}

async fn sse_streams_with_body_padding(padding: usize) {
    let up = Upstream::start().await;
    let gw = Gateway::start(&route("r", "/r/mcp", &up.url("/mcp"))).await;
    let body = format!(
        r#"{{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{{"name":"slow","pad":"{}"}}}}"#,
        "s".repeat(padding)
    );
    let resp = crate::harness::client()
        .post(gw.url("/r/mcp"))
        .header("accept", "application/json, text/event-stream")
        .header("x-test-mode", "sse")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    let mut body = resp.bytes_stream();
    let mut seen = String::new();
    // The upstream holds its final event until released: if the gateway buffered the
    // response, the progress event would never arrive and this read would time out.
    read_until(&mut body, &mut seen, "notifications/progress").await;
    assert!(
        !seen.contains("\"result\""),
        "final event arrived before release"
    );
    let metrics = gw.metrics().await;
    assert_eq!(
        sample(&metrics, r#"drawbridge_active_streams{route="r"}"#),
        Some(1.0)
    );
    up.release();
    read_until(&mut body, &mut seen, "\"result\"").await;
    // The rest of the final event, then the end of the stream.
    let rest = tokio::time::timeout(Duration::from_secs(5), async {
        while let Some(chunk) = body.next().await {
            seen.push_str(&String::from_utf8_lossy(&chunk.unwrap()));
        }
    })
    .await;
    assert!(rest.is_ok(), "stream should end after the result");
    // The gateway writes every event itself, LF line ends (the upstream sent CRLF).
    assert!(seen.ends_with("\n\n") && !seen.contains('\r'), "{seen:?}");
    drop(body);
    assert_eq!(active_streams_settled(&gw, "r").await, Some(0.0));
}

/// The `active_streams` gauge of a route once it stops changing to nonzero: it drops
/// when the gateway logs the finished request, a moment after the client is done.
async fn active_streams_settled(gw: &Gateway, route: &str) -> Option<f64> {
    let name = format!(r#"drawbridge_active_streams{{route="{route}"}}"#);
    let mut active = None;
    for _ in 0..100 {
        active = sample(&gw.metrics().await, &name);
        if active == Some(0.0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    active
}

#[tokio::test]
async fn a_client_closing_an_event_stream_is_logged_but_not_as_an_error() {
    let up = Upstream::start().await;
    let gw = Gateway::start_with(&route("r", "/r/mcp", &up.url("/mcp")), LOG_ALL).await;
    let resp = crate::harness::client()
        .get(gw.url("/r/mcp"))
        .header("accept", "text/event-stream")
        .send()
        .await
        .unwrap();
    let mut body = resp.bytes_stream();
    let mut seen = String::new();
    read_until(&mut body, &mut seen, "list_changed").await;
    drop(body);
    assert_eq!(active_streams_settled(&gw, "r").await, Some(0.0));
    let log = gw.log();
    assert!(!log.contains("Fail to proxy"), "{log}");
    assert!(!log.contains(r#""level":"ERROR""#), "{log}");
    // The access line is still written for it.
    assert!(
        log.lines()
            .any(|l| l.contains("drawbridge::access") && l.contains(r#""method":"GET""#)),
        "{log}"
    );
}

#[tokio::test]
async fn get_stream_stays_open_and_passes_last_event_id() {
    let up = Upstream::start().await;
    let gw = Gateway::start(&route("r", "/r/mcp", &up.url("/mcp"))).await;
    let sealed = crate::harness::sealed_session(&gw, "/r/mcp").await;
    let resp = crate::harness::client()
        .get(gw.url("/r/mcp"))
        .header("accept", "text/event-stream")
        .header("mcp-session-id", &sealed)
        .header("last-event-id", "41")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let mut body = resp.bytes_stream();
    let mut seen = String::new();
    read_until(&mut body, &mut seen, "list_changed").await;
    // Still open: nothing more, and no end of stream, within a short wait.
    let more = tokio::time::timeout(Duration::from_millis(300), body.next()).await;
    assert!(more.is_err(), "the stream closed or sent more: {more:?}");
    let req = &up.seen()[1];
    assert_eq!(req.headers["last-event-id"], "41");
    assert_eq!(req.headers["mcp-session-id"], "upstream-session-1");
}

#[tokio::test]
async fn legacy_sse_endpoint_is_rewritten_to_the_route_prefix() {
    let up = Upstream::start().await;
    let gw = Gateway::start(&route("legacy", "/tools/legacy", &up.url("/"))).await;
    let client = crate::harness::client();
    let resp = client
        .get(gw.url("/tools/legacy/sse"))
        .header("accept", "text/event-stream")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let mut body = resp.bytes_stream();
    let mut seen = String::new();
    read_until(&mut body, &mut seen, "notifications/message").await;
    let endpoint = seen
        .strip_prefix("event: endpoint\ndata: ")
        .and_then(|rest| rest.split('\n').next())
        .unwrap_or_else(|| panic!("{seen:?}"))
        .to_string();
    // The announced endpoint is under the route, and its session id is sealed.
    assert!(
        endpoint.starts_with("/tools/legacy/messages?sessionId=v1."),
        "{endpoint}"
    );
    // The client POSTs where it was told; the gateway routes it back to /messages with
    // the upstream's own session id.
    let ping = r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#;
    let resp = client
        .post(gw.url(&endpoint))
        .body(ping)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202);
    // The upstream's raw id is no key: it is "not found".
    let raw = client
        .post(gw.url("/tools/legacy/messages?sessionId=abc"))
        .body(ping)
        .send()
        .await
        .unwrap();
    assert_eq!(raw.status(), 404);
    let seen = up.seen();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[0].path_and_query, "/sse");
    assert_eq!(seen[1].path_and_query, "/messages?sessionId=abc");
}
