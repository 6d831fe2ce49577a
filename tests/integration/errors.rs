//! The gateway's own answers: 404, 400, 413, 502, 504, shaped as JSON-RPC errors that
//! carry the request's id when the request was JSON-RPC.

use crate::harness::{free_port, route, Gateway};
use crate::upstream::Upstream;

async fn post(url: &str, body: &str) -> (u16, serde_json::Value) {
    let resp = crate::harness::client()
        .post(url)
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    assert_eq!(resp.headers()["content-type"], "application/json");
    (status, resp.json().await.unwrap())
}

#[tokio::test]
async fn unknown_route_is_404_and_never_reaches_an_upstream() {
    let up = Upstream::start().await;
    let gw = Gateway::start(&route("r", "/r/mcp", &up.url("/mcp"))).await;
    let resp = reqwest::get(gw.url("/nope")).await.unwrap();
    assert_eq!(resp.status(), 404);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["error"], "no_route");
    // A path that only shares a textual prefix is not the route either.
    let (status, _) = post(
        &gw.url("/r/mcpx"),
        r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#,
    )
    .await;
    assert_eq!(status, 404);
    assert!(up.seen().is_empty());
}

#[tokio::test]
async fn malformed_bodies_are_refused_before_the_upstream() {
    let up = Upstream::start().await;
    let gw = Gateway::start(&route("r", "/r/mcp", &up.url("/mcp"))).await;
    let (status, body) = post(&gw.url("/r/mcp"), "{not json").await;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["code"], -32700);
    assert!(body["id"].is_null());
    let (status, body) = post(&gw.url("/r/mcp"), r#"{"id":1,"method":"ping"}"#).await;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["code"], -32600);
    assert!(
        up.seen().is_empty(),
        "a refused request reached the upstream"
    );
}

#[tokio::test]
async fn bodies_over_the_limit_are_413() {
    let up = Upstream::start().await;
    let gw = Gateway::start_with(
        &route("r", "/r/mcp", &up.url("/mcp")),
        "limits: { max_body: 1KiB }\n",
    )
    .await;
    let big = format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"ping","params":{{"pad":"{}"}}}}"#,
        "x".repeat(2048)
    );
    let resp = crate::harness::client()
        .post(gw.url("/r/mcp"))
        .body(big)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 413);
    assert!(up.seen().is_empty());
}

#[tokio::test]
async fn unreachable_upstream_is_502_with_the_request_id() {
    let dead = format!("http://127.0.0.1:{}/mcp", free_port());
    let gw = Gateway::start(&route("dead", "/dead/mcp", &dead)).await;
    let (status, body) = post(
        &gw.url("/dead/mcp"),
        r#"{"jsonrpc":"2.0","id":"req-7","method":"tools/list"}"#,
    )
    .await;
    assert_eq!(status, 502);
    assert_eq!(body["id"], "req-7");
    assert_eq!(body["error"]["code"], -32002);
    let batch =
        r#"[{"jsonrpc":"2.0","id":1,"method":"ping"},{"jsonrpc":"2.0","id":2,"method":"ping"}]"#;
    let (status, body) = post(&gw.url("/dead/mcp"), batch).await;
    assert_eq!(status, 502);
    assert_eq!(body[0]["id"], 1);
    assert_eq!(body[1]["id"], 2);
    let metrics = gw.metrics().await;
    assert!(
        metrics
            .contains(r#"drawbridge_upstream_errors_total{kind="connect_refused",route="dead"} 2"#),
        "{metrics}"
    );
}

#[tokio::test]
async fn slow_upstream_is_504() {
    let up = Upstream::start().await;
    let gw = Gateway::start(&route("slow", "/slow/mcp", &up.url("/mcp"))).await;
    let resp = crate::harness::client()
        .post(gw.url("/slow/mcp"))
        .header("x-test-mode", "slow")
        .body(r#"{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{"name":"slow"}}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 504);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["id"], 9);
    assert_eq!(body["error"]["code"], -32003);
}

#[tokio::test]
async fn large_body_to_an_unreachable_upstream_is_502_with_the_request_id() {
    let dead = format!("http://127.0.0.1:{}/mcp", free_port());
    let gw = Gateway::start(&route("dead", "/dead/mcp", &dead)).await;
    let body = format!(
        r#"{{"jsonrpc":"2.0","id":"big-1","method":"tools/call","params":{{"name":"x","pad":"{}"}}}}"#,
        "p".repeat(100_000)
    );
    let (status, answer) = post(&gw.url("/dead/mcp"), &body).await;
    assert_eq!(status, 502);
    assert_eq!(answer["id"], "big-1");
}
