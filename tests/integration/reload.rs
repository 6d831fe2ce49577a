//! Operating it: SIGHUP reloads the configuration atomically (in-flight streams keep the
//! state they started with; an invalid file changes nothing), SIGTERM drains and exits 0.

use std::time::Duration;

use futures_util::StreamExt;

use crate::harness::{client, route, sample, Gateway};
use crate::upstream::Upstream;

const PING: &str = r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#;

async fn status(gw: &Gateway, path: &str) -> u16 {
    client()
        .post(gw.url(path))
        .body(PING)
        .send()
        .await
        .map(|r| r.status().as_u16())
        .unwrap_or(0)
}

/// Polls (bounded) until `check` holds.
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..100 {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for: {what}");
}

#[tokio::test]
async fn sighup_swaps_routes_and_keeps_streams_in_flight() {
    let (a, b) = (Upstream::start().await, Upstream::start().await);
    let gw = Gateway::start(&route("a", "/a/mcp", &a.url("/mcp"))).await;
    assert_eq!(status(&gw, "/a/mcp").await, 200);
    let sealed = crate::harness::sealed_session(&gw, "/a/mcp").await;
    let stream = client()
        .get(gw.url("/a/mcp"))
        .header("accept", "text/event-stream")
        .header("mcp-session-id", &sealed)
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), 200);
    let mut events = stream.bytes_stream();
    let first = tokio::time::timeout(Duration::from_secs(5), events.next()).await;
    assert!(matches!(first, Ok(Some(Ok(_)))), "first event");

    gw.reload_with(&route("b", "/b/mcp", &b.url("/mcp")), "");
    eventually("route b served", || async {
        status(&gw, "/b/mcp").await == 200
    })
    .await;
    assert_eq!(
        status(&gw, "/a/mcp").await,
        404,
        "route a is gone for new requests"
    );
    // The stream opened under the old configuration is still open.
    let more = tokio::time::timeout(Duration::from_millis(300), events.next()).await;
    assert!(more.is_err(), "the in-flight stream ended: {more:?}");

    // An invalid file is refused whole: the previous configuration stays.
    gw.reload_with("  - name: broken\n    match: { path: nope }\n", "");
    eventually("the failed reload is counted", || async {
        sample(
            &gw.metrics().await,
            r#"drawbridge_config_reloads_total{result="failure"}"#,
        ) == Some(1.0)
    })
    .await;
    assert_eq!(status(&gw, "/b/mcp").await, 200);
    let m = gw.metrics().await;
    assert_eq!(
        sample(&m, r#"drawbridge_config_reloads_total{result="success"}"#),
        Some(1.0)
    );
    assert!(gw.log().contains("reload refused"), "{}", gw.log());
}

#[tokio::test]
async fn sigterm_exits_cleanly() {
    let up = Upstream::start().await;
    let mut gw = Gateway::start(&route("a", "/a/mcp", &up.url("/mcp"))).await;
    assert_eq!(status(&gw, "/a/mcp").await, 200);
    gw.signal("-TERM");
    let code = tokio::task::spawn_blocking(move || gw.wait_exit(Duration::from_secs(20)))
        .await
        .unwrap();
    assert_eq!(code, Some(0), "graceful shutdown exits 0");
}
