//! Upstream host names: one that does not resolve leaves only its routes answering 503
//! (the gateway starts, stays ready and says why), names are looked up again in the
//! background, and `validate` warns about them.

use std::process::Command;

use crate::harness::{client, drawbridge_bin, route, sample, Gateway};
use crate::upstream::Upstream;

/// RFC 6761: `.invalid` never resolves.
const NOWHERE: &str = "drawbridge-test.invalid";

async fn ping(gw: &Gateway, path: &str) -> reqwest::Response {
    client()
        .post(gw.url(path))
        .body(r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#)
        .send()
        .await
        .unwrap()
}

/// The metrics once `name` reads at least `value`, or after 15 s.
async fn at_least(gw: &Gateway, name: &str, value: f64) -> String {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    loop {
        let m = gw.metrics().await;
        if sample(&m, name).unwrap_or(0.0) >= value || std::time::Instant::now() >= deadline {
            return m;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_name_that_does_not_resolve_stops_only_its_own_route() {
    let up = Upstream::start().await;
    let by_name = up.url("/mcp").replace("127.0.0.1", "localhost");
    let routes = format!(
        "{}{}{}",
        route("gone", "/gone/mcp", &format!("http://{NOWHERE}:3001/mcp")),
        route("named", "/named/mcp", &by_name),
        route("direct", "/direct/mcp", &up.url("/mcp")),
    );
    // Starts (it used to exit 1), and is ready: the other routes serve.
    let gw = Gateway::start_with(&routes, "dns: { refresh: 1s, timeout: 500ms }\n").await;
    let resp = ping(&gw, "/gone/mcp").await;
    assert_eq!(resp.status(), 503);
    assert_eq!(resp.headers()["retry-after"], "5");
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["error"], "upstream_unresolved", "{body}");
    assert_eq!(
        ping(&gw, "/named/mcp").await.status(),
        200,
        "a name that resolves"
    );
    assert_eq!(ping(&gw, "/direct/mcp").await.status(), 200);
    assert_eq!(up.seen().len(), 2, "the refused request reached nobody");

    let readyz = reqwest::get(gw.admin_url("/readyz")).await.unwrap();
    assert_eq!(readyz.status(), 200, "the gateway still serves");
    let text = readyz.text().await.unwrap();
    assert!(
        text.contains("upstream host does not resolve")
            && text.contains(NOWHERE)
            && text.contains("gone"),
        "{text}"
    );
    assert!(!text.contains("named"), "{text}");

    // Looked up again in the background (every second here): counted each time.
    let failed =
        format!(r#"drawbridge_upstream_dns_lookups_total{{host="{NOWHERE}",result="failed"}}"#);
    let m = at_least(&gw, &failed, 2.0).await;
    assert!(sample(&m, &failed).unwrap_or(0.0) >= 2.0, "{m}");
    let same = r#"drawbridge_upstream_dns_lookups_total{host="localhost",result="same"}"#;
    assert!(sample(&at_least(&gw, same, 1.0).await, same).unwrap_or(0.0) >= 1.0);
    assert!(gw.log().contains("does not resolve"), "{}", gw.log());
}

#[tokio::test]
async fn a_reload_naming_an_unresolvable_host_is_accepted() {
    let up = Upstream::start().await;
    let gw = Gateway::start(&route("a", "/a/mcp", &up.url("/mcp"))).await;
    let both = format!(
        "{}{}",
        route("a", "/a/mcp", &up.url("/mcp")),
        route("gone", "/gone/mcp", &format!("http://{NOWHERE}:3001/mcp")),
    );
    gw.reload_with(&both, "");
    let reloaded = r#"drawbridge_config_reloads_total{result="success"}"#;
    gw.metrics_when(reloaded, 1.0).await;
    assert_eq!(ping(&gw, "/gone/mcp").await.status(), 503);
    assert_eq!(ping(&gw, "/a/mcp").await.status(), 200);
}

#[test]
fn validate_warns_about_a_name_that_does_not_resolve() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("gateway.yaml");
    let yaml = format!(
        "listen: 127.0.0.1:8080\nadmin:\n  listen: 127.0.0.1:9090\nroutes:\n{}{}",
        route("gone", "/gone/mcp", &format!("http://{NOWHERE}:3001/mcp")),
        route("local", "/local/mcp", "http://localhost:3001/mcp"),
    );
    std::fs::write(&file, yaml).unwrap();
    let out = Command::new(drawbridge_bin())
        .arg("validate")
        .arg(&file)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "a warning, not an error: {err}");
    assert!(
        err.contains(&format!("upstream host `{NOWHERE}` does not resolve"))
            && err.contains("gone"),
        "{err}"
    );
    assert!(!err.contains("`localhost`"), "{err}");
}
