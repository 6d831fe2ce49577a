//! The log budget: a flood of refusals cannot fill a disk, and the counts stay exact in
//! the metrics and in the `suppressed` lines.

use futures_util::stream::{self, StreamExt};

use crate::harness::{audit_events, client, log_when, Gateway};
use crate::idp::{Alg, Idp};
use crate::upstream::Upstream;

const FLOOD: usize = 50_000;
const PING: &str = r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#;

fn secure_route(up: &Upstream) -> String {
    format!(
        "  - name: secure\n    match: {{ path: /secure/mcp }}\n    public_url: https://mcp.example.com/secure/mcp\n    upstream: {{ url: '{}' }}\n    auth: {{ issuers: [corp], required_scopes: [mcp:tools] }}\n    policy:\n      default: deny\n      tools: {{ echo: [mcp:tools] }}\n",
        up.url("/mcp")
    )
}

/// What the `suppressed` lines of `event` (on `target`) counted, in all.
fn suppressed(log: &str, target: &str, of: &str) -> u64 {
    log.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["target"] == target && v["event"] == "suppressed" && v["of"] == of)
        .filter_map(|v| v["count"].as_u64())
        .sum()
}

fn access_lines(log: &str) -> u64 {
    log.lines()
        .filter(|l| l.contains(r#""target":"drawbridge::access""#) && !l.contains("suppressed"))
        .count() as u64
}

/// 50,000 requests with a token that is no JWT, at the default log settings: every one
/// is refused and counted by the metrics, while the log holds a few lines — the first
/// refusal in full and one `suppressed` line per interval that counts the rest — and
/// those lines add up to the same 50,000.
#[tokio::test]
async fn a_flood_of_refusals_keeps_the_log_small_and_every_count() {
    let (idp, up) = (Idp::start().await, Upstream::start().await);
    let gw = Gateway::start_with(
        &secure_route(&up),
        &format!(
            "log: {{ interval: 5s }}\nissuers:\n  - name: corp\n    issuer: {}\n",
            idp.issuer
        ),
    )
    .await;
    let client = client();
    let url = gw.url("/secure/mcp");
    let refused = stream::iter(0..FLOOD)
        .map(|_| {
            let request = client.post(&url).bearer_auth("not-a-token").body(PING);
            async move { request.send().await.map(|r| r.status().as_u16()) }
        })
        .buffer_unordered(16)
        .filter(|status| std::future::ready(matches!(status, Ok(401))))
        .count()
        .await;
    assert_eq!(refused, FLOOD, "every request is refused");
    assert!(up.seen().is_empty(), "nothing reached the upstream");

    let metrics = gw.metrics().await;
    let counted: f64 = metrics
        .lines()
        .filter(|l| {
            l.starts_with("drawbridge_auth_failures_total{") && l.contains(r#"route="secure""#)
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert_eq!(counted, FLOOD as f64, "the metric counts every refusal");

    // Written in full plus counted in `suppressed` lines: all of them, once the last
    // interval has been reported (the budget's thread reports it within a second of its end).
    let total = |log: &str| {
        let written = audit_events(log, "authentication_refused").len() as u64;
        written + suppressed(log, "audit", "authentication_refused")
    };
    let log = log_when(&gw, |l| {
        total(l) >= FLOOD as u64
            && access_lines(l) + suppressed(l, "drawbridge::access", "access") >= FLOOD as u64
    })
    .await;
    assert_eq!(total(&log), FLOOD as u64, "audit: written + suppressed");
    assert_eq!(
        access_lines(&log) + suppressed(&log, "drawbridge::access", "access"),
        FLOOD as u64,
        "access lines: written + suppressed"
    );
    // A line per kind and interval, not per request: the whole log of the flood (start-up
    // included) stays under 64 KiB, where one line per request would be ≈ 20 MB.
    assert!(log.len() < 64 * 1024, "{} bytes of log", log.len());
}

/// Requests carrying 60,000 notifications in all (six batches of 10,000, the most
/// `limits.max_batch` allows) write one bounded audit record each (a summary with counts),
/// not one event per message.
#[tokio::test]
async fn sixty_thousand_notifications_write_one_summary_per_request() {
    let (idp, up) = (Idp::start().await, Upstream::start().await);
    let gw = Gateway::start_with(
        &secure_route(&up),
        &format!(
            "limits: {{ max_batch: 10000 }}\nissuers:\n  - name: corp\n    issuer: {}\n",
            idp.issuer
        ),
    )
    .await;
    let token = idp.mint(
        Alg::RS256,
        &idp.claims("https://mcp.example.com/secure/mcp", "mcp:tools"),
    );
    let batch: Vec<&str> = (0..10_000)
        .map(|_| r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#)
        .collect();
    let body = format!("[{}]", batch.join(","));
    let before = gw.log().len();
    for _ in 0..6 {
        let resp = client()
            .post(gw.url("/secure/mcp"))
            .bearer_auth(&token)
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert!(resp.status().is_success(), "{}", resp.status());
    }
    let log = log_when(&gw, |l| audit_events(l, "authorization").len() >= 6).await;
    let events = audit_events(&log, "authorization");
    assert_eq!(events.len(), 6, "{events:?}");
    assert!(
        events.iter().all(|e| e["operations"] == 10_000),
        "{events:?}"
    );
    let written = log.len() - before;
    assert!(
        written < 6 * 1024,
        "{written} bytes of log for six requests"
    );
}
