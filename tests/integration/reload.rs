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
    for _ in 0..200 {
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

async fn readyz(gw: &Gateway) -> u16 {
    reqwest::Client::new()
        .get(gw.admin_url("/readyz"))
        .timeout(Duration::from_secs(2))
        .send()
        .await
        .map(|r| r.status().as_u16())
        .unwrap_or(0)
}

#[tokio::test]
async fn readyz_waits_for_the_mcp_listener() {
    let up = Upstream::start().await;
    // Someone else holds the port: Pingora keeps retrying the bind.
    let squatter = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = squatter.local_addr().unwrap().port();
    let gw = Gateway::spawn_on(port, &route("a", "/a/mcp", &up.url("/mcp")), "");
    let admin = gw.admin_port;
    eventually("the admin listener answers", || async move {
        tokio::net::TcpStream::connect(("127.0.0.1", admin))
            .await
            .is_ok()
    })
    .await;
    for _ in 0..10 {
        assert_eq!(
            readyz(&gw).await,
            503,
            "ready while the MCP port is not ours"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(squatter);
    eventually("/readyz answers 200 once the listener is bound", || async {
        readyz(&gw).await == 200
    })
    .await;
    assert_eq!(status(&gw, "/a/mcp").await, 200);
}

#[tokio::test]
async fn sigterm_turns_readyz_false_while_still_serving_then_stops_the_listeners() {
    let up = Upstream::start().await;
    let drain = Duration::from_secs(4);
    let mut gw = Gateway::start_with(
        &route("a", "/a/mcp", &up.url("/mcp")),
        "shutdown_drain: 4s\n",
    )
    .await;
    assert_eq!(readyz(&gw).await, 200);
    let sent = std::time::Instant::now();
    gw.signal("-TERM");
    // Probes on new admin connections see 503 at once ...
    eventually("/readyz answers 503", || async { readyz(&gw).await == 503 }).await;
    // ... while the MCP listener still takes new connections and serves them.
    // (On a busy machine these checks may run late; a 200 still proves the listener
    // served after readiness turned false, and the close is timed from `sent` below.)
    assert_eq!(status(&gw, "/a/mcp").await, 200, "{}", gw.log());
    let port = gw.port;
    eventually("the listener is closed", || async move {
        tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
    })
    .await;
    // `sent` was taken before the signal, so a close at the drain's end is never early
    // by this clock: no margin is needed.
    assert!(
        sent.elapsed() >= drain,
        "the listener closed {:?} after SIGTERM, before the drain ended",
        sent.elapsed()
    );
    let code = tokio::task::spawn_blocking(move || gw.wait_exit(Duration::from_secs(20)))
        .await
        .unwrap();
    assert_eq!(code, Some(0));
}

#[tokio::test]
async fn a_second_sigterm_cuts_the_drain_short() {
    let up = Upstream::start().await;
    let mut gw = Gateway::start_with(
        &route("a", "/a/mcp", &up.url("/mcp")),
        "shutdown_drain: 10m\n",
    )
    .await;
    gw.signal("-TERM");
    eventually("/readyz answers 503", || async { readyz(&gw).await == 503 }).await;
    assert_eq!(status(&gw, "/a/mcp").await, 200);
    gw.signal("-TERM");
    // Grace is 3s in the harness; a drain of ten minutes would run far past this.
    let code = tokio::task::spawn_blocking(move || gw.wait_exit(Duration::from_secs(20)))
        .await
        .unwrap();
    assert_eq!(code, Some(0));
}

#[tokio::test]
async fn sigterm_lets_an_in_flight_stream_finish_and_refuses_new_connections() {
    let up = Upstream::start().await;
    let mut gw = Gateway::start(&route("a", "/a/mcp", &up.url("/mcp"))).await;
    let resp = client()
        .post(gw.url("/a/mcp"))
        .header("x-test-mode", "sse")
        .body(r#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"slow"}}"#)
        .send()
        .await
        .unwrap();
    let mut events = resp.bytes_stream();
    let mut seen = String::new();
    while !seen.contains("notifications/progress") {
        let chunk = tokio::time::timeout(Duration::from_secs(5), events.next())
            .await
            .expect("first event")
            .unwrap()
            .unwrap();
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
    gw.signal("-TERM");
    // New connections are refused once the listener has stopped.
    let port = gw.port;
    eventually("the listener is closed", || async move {
        tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
    })
    .await;
    // The request that was in flight still gets its answer.
    up.release();
    let rest = tokio::time::timeout(Duration::from_secs(5), async {
        while let Some(chunk) = events.next().await {
            seen.push_str(&String::from_utf8_lossy(&chunk.unwrap()));
        }
    })
    .await;
    assert!(rest.is_ok(), "the in-flight stream did not finish");
    assert!(seen.contains("\"result\""), "{seen:?}");
    let code = tokio::task::spawn_blocking(move || gw.wait_exit(Duration::from_secs(20)))
        .await
        .unwrap();
    assert_eq!(code, Some(0));
}

#[tokio::test]
async fn reload_under_load_fails_no_request_and_applies_new_rules_to_new_requests() {
    use crate::idp::{Alg, Idp};
    let idp = Idp::start().await;
    let up = Upstream::start().await;
    let resource = "https://mcp.example.com/a/mcp";
    let routes = |echo_scope: &str, with_b: bool| {
        let mut r = format!(
            "  - name: a\n    match: {{ path: /a/mcp }}\n    public_url: {resource}\n    upstream: {{ url: '{}' }}\n    auth: {{ issuers: [corp] }}\n    policy: {{ tools: {{ echo: [{echo_scope}] }} }}\n",
            up.url("/mcp")
        );
        if with_b {
            r.push_str(&route("b", "/b/mcp", &up.url("/mcp")));
        }
        r
    };
    let issuers = format!("issuers:\n  - name: corp\n    issuer: {}\n", idp.issuer);
    let gw = Gateway::start_with(&routes("tools:echo", false), &issuers).await;
    let both = format!(
        "Bearer {}",
        idp.mint(Alg::ES256, &idp.claims(resource, "tools:echo tools:v2"))
    );
    let echo_only = format!(
        "Bearer {}",
        idp.mint(Alg::ES256, &idp.claims(resource, "tools:echo"))
    );
    let a_url = gw.url("/a/mcp");
    let call = move |auth: String| {
        let url = a_url.clone();
        async move {
            client()
                .post(url)
                .header("authorization", auth)
                .body(r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo"}}"#)
                .send()
                .await
                .map(|r| r.status().as_u16())
                .unwrap_or(0)
        }
    };
    assert_eq!(call(echo_only.clone()).await, 200);

    // A client loop runs through the reload; every request must succeed.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let loop_stop = stop.clone();
    let loop_call = call.clone();
    let loop_auth = both.clone();
    let load = tokio::spawn(async move {
        let (mut ok, mut failed) = (0u32, 0u32);
        for _ in 0..5000 {
            if loop_stop.load(std::sync::atomic::Ordering::SeqCst) {
                break;
            }
            match loop_call(loop_auth.clone()).await {
                200 => ok += 1,
                _ => failed += 1,
            }
        }
        (ok, failed)
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    gw.reload_with(&routes("tools:v2", true), &issuers);
    eventually("the reload is applied", || async {
        sample(
            &gw.metrics().await,
            r#"drawbridge_config_reloads_total{result="success"}"#,
        ) == Some(1.0)
    })
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let (ok, failed) = load.await.unwrap();
    assert!(ok > 10, "the loop ran: {ok}");
    assert_eq!(failed, 0, "requests failed during the reload");
    // Requests that start after the reload see the new rule and the new route.
    assert_eq!(call(echo_only.clone()).await, 403);
    assert_eq!(call(both.clone()).await, 200);
    assert_eq!(status(&gw, "/b/mcp").await, 200);
}

/// The session key's check value as /metrics shows it.
async fn key_check(gw: &Gateway) -> Option<String> {
    let m = gw.metrics().await;
    let line = m
        .lines()
        .find(|l| l.starts_with("drawbridge_session_key_info{"))?;
    let at = line.find("check=\"")? + "check=\"".len();
    Some(line[at..at + 8].to_string())
}

fn reloads(m: &str, result: &str) -> Option<f64> {
    sample(
        m,
        &format!(r#"drawbridge_config_reloads_total{{result="{result}"}}"#),
    )
}

/// Exactly `n` reloads with `result` counted. A reload is counted a moment after its
/// configuration is in use: wait for the count, then check that it stays.
async fn reloads_counted(gw: &Gateway, result: &str, n: f64) {
    eventually(&format!("{n} reloads counted as {result}"), || async {
        reloads(&gw.metrics().await, result) == Some(n)
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(reloads(&gw.metrics().await, result), Some(n));
}

#[tokio::test]
async fn with_watch_a_changed_file_reloads_without_a_signal() {
    let (a, b) = (Upstream::start().await, Upstream::start().await);
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("session.key");
    let key = |seed: u8| {
        use base64::Engine;
        let bytes: Vec<u8> = (0u8..32).map(|i| i.wrapping_mul(13) ^ seed).collect();
        base64::engine::general_purpose::STANDARD.encode(bytes)
    };
    std::fs::write(&secret, key(1)).unwrap();
    let sessions = format!(
        "sessions:\n  keys:\n    - id: k1\n      secret_file: {}\n",
        secret.display()
    );
    let gw = Gateway::start_args(
        &route("a", "/a/mcp", &a.url("/mcp")),
        &sessions,
        &["--watch", "100ms"],
    )
    .await;
    assert_eq!(status(&gw, "/a/mcp").await, 200);
    let first_check = key_check(&gw).await.expect("the configured key is shown");

    // The configuration file changes; no signal is sent.
    gw.rewrite_config(&route("b", "/b/mcp", &b.url("/mcp")), &sessions);
    eventually("route b served after the file changed", || async {
        status(&gw, "/b/mcp").await == 200
    })
    .await;
    assert_eq!(status(&gw, "/a/mcp").await, 404);
    reloads_counted(&gw, "success", 1.0).await;
    assert!(gw.log().contains("file change"), "{}", gw.log());

    // A broken file is refused once, and not retried while it stays the same.
    gw.rewrite_config("  - name: broken\n    match: { path: nope }\n", &sessions);
    eventually("the broken file is refused", || async {
        reloads(&gw.metrics().await, "failure") == Some(1.0)
    })
    .await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    let m = gw.metrics().await;
    assert_eq!(reloads(&m, "failure"), Some(1.0), "retried: {m}");
    assert_eq!(
        sample(&m, "drawbridge_config_last_reload_successful"),
        Some(0.0),
        "a refused reload is visible: {m}"
    );
    assert_eq!(
        status(&gw, "/b/mcp").await,
        200,
        "the old configuration stays"
    );

    // A file the configuration names (the session key's secret_file) is watched too.
    gw.rewrite_config(&route("b", "/b/mcp", &b.url("/mcp")), &sessions);
    eventually("the fixed file is loaded", || async {
        reloads(&gw.metrics().await, "success") == Some(2.0)
    })
    .await;
    let m = gw.metrics().await;
    assert_eq!(
        sample(&m, "drawbridge_config_last_reload_successful"),
        Some(1.0)
    );
    std::fs::write(&secret, key(2)).unwrap();
    eventually("the new secret is in use", || async {
        key_check(&gw).await.is_some_and(|c| c != first_check)
    })
    .await;
    reloads_counted(&gw, "success", 3.0).await;
}

#[tokio::test]
async fn without_watch_a_changed_file_waits_for_sighup() {
    let (a, b) = (Upstream::start().await, Upstream::start().await);
    let gw = Gateway::start(&route("a", "/a/mcp", &a.url("/mcp"))).await;
    gw.rewrite_config(&route("b", "/b/mcp", &b.url("/mcp")), "");
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(status(&gw, "/a/mcp").await, 200, "not reloaded by itself");
    assert_eq!(status(&gw, "/b/mcp").await, 404);
    gw.signal("-HUP");
    eventually("route b served after SIGHUP", || async {
        status(&gw, "/b/mcp").await == 200
    })
    .await;
}

/// A Kubernetes Secret volume updates by writing a new timestamped directory and
/// swapping the `..data` symlink to it in one rename; the file the configuration names
/// (`k1` → `..data/k1`) keeps its path. `--watch` must see that as a change.
#[tokio::test]
async fn with_watch_a_kubernetes_secret_volume_update_rotates_the_session_key() {
    use std::os::unix::fs::symlink;
    let up = Upstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let volume = dir.path();
    let key = |seed: u8| {
        use base64::Engine;
        let bytes: Vec<u8> = (0u8..32).map(|i| i.wrapping_mul(7) ^ seed).collect();
        base64::engine::general_purpose::STANDARD.encode(bytes)
    };
    // The layout the kubelet writes.
    let publish = |generation: &str, seed: u8| {
        let data = volume.join(generation);
        std::fs::create_dir(&data).unwrap();
        std::fs::write(data.join("k1"), key(seed)).unwrap();
        let next = volume.join("..data_tmp");
        symlink(generation, &next).unwrap();
        std::fs::rename(&next, volume.join("..data")).unwrap();
    };
    publish("..2026_12_05_10_00_00.1", 1);
    symlink("..data/k1", volume.join("k1")).unwrap();
    let sessions = format!(
        "sessions:\n  keys:\n    - id: k1\n      secret_file: {}\n",
        volume.join("k1").display()
    );
    let gw = Gateway::start_args(
        &route("a", "/a/mcp", &up.url("/mcp")),
        &sessions,
        &["--watch", "100ms"],
    )
    .await;
    let before = key_check(&gw).await.expect("the configured key is shown");
    publish("..2026_12_05_10_01_00.2", 2);
    eventually("the rotated secret is in use", || async {
        key_check(&gw).await.is_some_and(|c| c != before)
    })
    .await;
    reloads_counted(&gw, "success", 1.0).await;
    assert_eq!(status(&gw, "/a/mcp").await, 200);
}
