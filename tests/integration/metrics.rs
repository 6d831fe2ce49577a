//! The admin listener: health, readiness and metrics that move with traffic.

use crate::harness::{route, sample, Gateway, LOG_ALL};
use crate::upstream::Upstream;

#[tokio::test]
async fn metrics_count_requests_by_route_method_and_status() {
    let up = Upstream::start().await;
    let gw = Gateway::start(&route("everything", "/e/mcp", &up.url("/mcp"))).await;
    let client = crate::harness::client();
    for _ in 0..3 {
        let resp = client
            .post(gw.url("/e/mcp"))
            .body(r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
    }
    assert_eq!(
        reqwest::get(gw.url("/unknown")).await.unwrap().status(),
        404
    );

    let unrouted = r#"drawbridge_requests_total{method="GET",route="none",status="404"}"#;
    let m = gw.metrics_when(unrouted, 1.0).await;
    assert_eq!(
        sample(
            &m,
            r#"drawbridge_requests_total{method="POST",route="everything",status="200"}"#
        ),
        Some(3.0),
        "{m}"
    );
    assert_eq!(
        sample(
            &m,
            r#"drawbridge_requests_total{method="GET",route="none",status="404"}"#
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &m,
            r#"drawbridge_request_duration_seconds_count{route="everything"}"#
        ),
        Some(3.0)
    );
    assert!(m.contains("drawbridge_build_info{version=\""));
    // The process metrics are the gateway's own (its pid's file descriptors), and the
    // configuration it started with counts as loaded.
    let fds = sample(&m, "process_open_fds").unwrap();
    assert!(fds >= 3.0, "{fds}");
    assert!(sample(&m, "process_resident_memory_bytes").unwrap() > 1e6);
    assert!(
        sample(
            &m,
            "drawbridge_config_last_reload_success_timestamp_seconds"
        )
        .unwrap()
            > 1.7e9
    );
    assert_eq!(
        sample(&m, "drawbridge_config_last_reload_successful"),
        Some(1.0)
    );

    let health = reqwest::get(gw.admin_url("/healthz")).await.unwrap();
    assert_eq!(health.status(), 200);
    let ready = reqwest::get(gw.admin_url("/readyz")).await.unwrap();
    assert_eq!(ready.status(), 200);
}

#[tokio::test]
async fn access_log_has_one_line_per_request_and_no_token() {
    let up = Upstream::start().await;
    let gw = Gateway::start_with(&route("r", "/r/mcp", &up.url("/mcp")), LOG_ALL).await;
    // A public route adds nothing upstream, and removes the caller's token all the same.
    crate::upstream::register_caller_token("tok-SECRET-123");
    let resp = crate::harness::client()
        .post(gw.url("/r/mcp?trace=secret-query-value"))
        .header("authorization", "Bearer tok-SECRET-123")
        .body(r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let seen = up.seen();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert!(seen[0].headers.get("authorization").is_none(), "{seen:?}");
    // The access line is written after the response: wait for it (bounded).
    let mut log = String::new();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    while std::time::Instant::now() < deadline {
        log = gw.log();
        if log.contains("drawbridge::access") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let lines: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("drawbridge::access"))
        .collect();
    assert_eq!(lines.len(), 1, "{log}");
    let line: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
    assert_eq!(line["route"], "r");
    assert_eq!(line["status"], 200);
    assert_eq!(line["path"], "/r/mcp");
    assert!(!log.contains("tok-SECRET-123"));
    assert!(!log.contains("secret-query-value"));
}
