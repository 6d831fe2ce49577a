//! Reloads every second, SIGTERM behind a load balancer that honours `/readyz`, and the
//! exit once nothing is in flight, all under load.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;

use super::*;
use crate::harness::{route, sample};

// ---- 4. reloads under load ------------------------------------------------------------

/// Runs `workers` client loops against `path` until `stop`; returns (ok, failed).
fn load(
    gw: &Arc<Gateway>,
    path: &'static str,
    workers: usize,
    stop: &Arc<AtomicBool>,
) -> Vec<tokio::task::JoinHandle<(usize, usize)>> {
    (0..workers)
        .map(|_| {
            let (gw, stop) = (gw.clone(), stop.clone());
            tokio::spawn(async move {
                let http = reqwest::Client::new();
                let (mut ok, mut failed) = (0, 0);
                for _ in 0..1_000_000 {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    match call(&http, &gw, path, None).await.status {
                        200 => ok += 1,
                        _ => failed += 1,
                    }
                }
                (ok, failed)
            })
        })
        .collect()
}

async fn totals(workers: Vec<tokio::task::JoinHandle<(usize, usize)>>) -> (usize, usize) {
    let mut sum = (0, 0);
    for w in workers {
        let (ok, failed) = w.await.unwrap();
        sum = (sum.0 + ok, sum.1 + failed);
    }
    sum
}

/// The routes of reload number `n`: route `a` always; `b` on every other one.
fn reload_routes(up: &Upstream, n: usize) -> String {
    let mut routes = route("a", "/a/mcp", &up.url("/mcp"));
    if n % 2 == 1 {
        routes.push_str(&route("b", "/b/mcp", &up.url("/mcp")));
    }
    routes
}

async fn reload_every_second_under_load(watch: bool) {
    let up = Upstream::start().await;
    let args: &[&str] = if watch { &["--watch", "200ms"] } else { &[] };
    let gw = Arc::new(Gateway::start_args(&reload_routes(&up, 0), "", args).await);
    let stop = Arc::new(AtomicBool::new(false));
    let workers = load(&gw, "/a/mcp", 4, &stop);
    for n in 1..=10 {
        tokio::time::sleep(Duration::from_secs(1)).await;
        if watch {
            gw.rewrite_config(&reload_routes(&up, n), "");
        } else {
            gw.reload_with(&reload_routes(&up, n), "");
        }
    }
    let success = r#"drawbridge_config_reloads_total{result="success"}"#;
    let applied = within(Duration::from_secs(10), || async {
        sample(&gw.metrics().await, success) >= Some(10.0)
    })
    .await;
    stop.store(true, Ordering::SeqCst);
    let (ok, failed) = totals(workers).await;
    let m = gw.metrics().await;
    assert!(applied, "reloads: {:?}", sample(&m, success));
    assert_eq!(
        sample(&m, r#"drawbridge_config_reloads_total{result="failure"}"#),
        Some(0.0)
    );
    assert_eq!(failed, 0, "requests failed during reloads ({ok} succeeded)");
    assert!(ok > 100, "the load ran: {ok}");
    eprintln!(
        "figures: reload (watch: {watch}): {:?} reloads, {ok} ok, {failed} failed",
        sample(&m, success)
    );
    // The last configuration (n = 10) has no route b.
    assert_eq!(call(&unpooled(), &gw, "/b/mcp", None).await.status, 404);
}

#[tokio::test]
async fn sighup_every_second_under_load_fails_no_request() {
    reload_every_second_under_load(false).await;
}

#[tokio::test]
async fn watched_file_rewritten_every_second_under_load_fails_no_request() {
    reload_every_second_under_load(true).await;
}

// ---- 5. SIGTERM behind a load balancer that honours /readyz -----------------------------

/// A load balancer in miniature: polls each backend's `/readyz` every 100 ms and
/// forwards each request to the next backend that answered 200 last time.
struct Balancer {
    backends: Vec<(String, String)>,
    ready: Vec<AtomicBool>,
    next: AtomicUsize,
    /// Requests forwarded to each backend.
    sent: Vec<AtomicUsize>,
}

impl Balancer {
    fn new(gateways: &[&Gateway]) -> Arc<Balancer> {
        Arc::new(Balancer {
            backends: gateways
                .iter()
                .map(|g| (g.url("/a/mcp"), g.admin_url("/readyz")))
                .collect(),
            ready: gateways.iter().map(|_| AtomicBool::new(true)).collect(),
            next: AtomicUsize::new(0),
            sent: gateways.iter().map(|_| AtomicUsize::new(0)).collect(),
        })
    }

    async fn health_checks(self: Arc<Self>, stop: Arc<AtomicBool>) {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_millis(500))
            .build()
            .unwrap();
        while !stop.load(Ordering::SeqCst) {
            for (i, (_, readyz)) in self.backends.iter().enumerate() {
                let up = matches!(http.get(readyz).send().await, Ok(r) if r.status() == 200);
                self.ready[i].store(up, Ordering::SeqCst);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Forwards one request; the status, or 0 when no backend is ready or the
    /// connection failed.
    async fn forward(&self, http: &reqwest::Client) -> u16 {
        let n = self.backends.len();
        let start = self.next.fetch_add(1, Ordering::SeqCst);
        let Some(i) = (0..n)
            .map(|k| (start + k) % n)
            .find(|i| self.ready[*i].load(Ordering::SeqCst))
        else {
            return 0;
        };
        self.sent[i].fetch_add(1, Ordering::SeqCst);
        http.post(&self.backends[i].0)
            .header("content-type", "application/json")
            .body(ECHO)
            .send()
            .await
            .map(|r| r.status().as_u16())
            .unwrap_or(0)
    }
}

#[tokio::test]
async fn sigterm_under_load_behind_a_readyz_balancer_fails_no_request() {
    let up = Upstream::start().await;
    let timings = "shutdown_drain: 2s\nshutdown_grace: 5s\n";
    let routes = route("a", "/a/mcp", &up.url("/mcp"));
    let leaving = Gateway::start_with(&routes, timings).await;
    let staying = Gateway::start_with(&routes, timings).await;
    let lb = Balancer::new(&[&leaving, &staying]);
    let stop = Arc::new(AtomicBool::new(false));
    let checks = tokio::spawn(lb.clone().health_checks(stop.clone()));
    let clients: Vec<_> = (0..4)
        .map(|_| {
            let (lb, stop) = (lb.clone(), stop.clone());
            tokio::spawn(async move {
                let http = reqwest::Client::new();
                let (mut ok, mut failed) = (0usize, 0usize);
                for _ in 0..1_000_000 {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    match lb.forward(&http).await {
                        200 => ok += 1,
                        _ => failed += 1,
                    }
                }
                (ok, failed)
            })
        })
        .collect();
    // Both take traffic first (counted, not timed: the machine may be busy).
    let sent = |i: usize| lb.sent[i].load(Ordering::SeqCst);
    let both = within(Duration::from_secs(30), || async {
        sent(0) >= 20 && sent(1) >= 20
    })
    .await;
    let mut leaving = leaving;
    leaving.signal("-TERM");
    let code = tokio::task::spawn_blocking(move || leaving.wait_exit(Duration::from_secs(20)))
        .await
        .unwrap();
    // Traffic goes on to the remaining instance.
    let at_exit = (sent(0), sent(1));
    let went_on = within(Duration::from_secs(30), || async {
        sent(1) >= at_exit.1 + 50
    })
    .await;
    stop.store(true, Ordering::SeqCst);
    let (ok, failed) = totals(clients).await;
    checks.await.unwrap();
    assert_eq!(code, Some(0));
    assert_eq!(
        failed, 0,
        "requests failed during the shutdown ({ok} succeeded)"
    );
    let sent: Vec<usize> = lb.sent.iter().map(|s| s.load(Ordering::SeqCst)).collect();
    assert!(both && went_on, "traffic per backend: {sent:?}");
    assert_eq!(sent[0], at_exit.0, "traffic to an instance that exited");
    assert_eq!(up.seen().len(), ok);
    eprintln!("figures: balancer: {ok} ok, {failed} failed, per backend {sent:?}");
}

// ---- 6. an idle gateway exits at the end of the drain -------------------------------------

#[tokio::test]
async fn an_idle_gateway_exits_at_the_end_of_the_drain_not_of_the_grace() {
    let up = Upstream::start().await;
    let drain = Duration::from_secs(1);
    let mut gw = Gateway::start_with(
        &route("a", "/a/mcp", &up.url("/mcp")),
        "shutdown_drain: 1s\nshutdown_grace: 20s\n",
    )
    .await;
    assert_eq!(call(&unpooled(), &gw, "/a/mcp", None).await.status, 200);
    // A kept-alive idle connection must not hold the process either.
    let kept = reqwest::Client::new();
    assert_eq!(call(&kept, &gw, "/a/mcp", None).await.status, 200);
    let sent = Instant::now();
    gw.signal("-TERM");
    let code = tokio::task::spawn_blocking(move || gw.wait_exit(Duration::from_secs(30)))
        .await
        .unwrap();
    let took = sent.elapsed();
    assert_eq!(code, Some(0));
    assert!(
        took >= drain && took < drain + Duration::from_secs(4),
        "exited {took:?} after SIGTERM (drain 1 s, grace 20 s)"
    );
    eprintln!("figures: idle exit {took:?} after SIGTERM (drain 1 s, grace 20 s)");
}

#[tokio::test]
async fn a_request_in_flight_still_finishes_before_the_fast_exit() {
    let up = Upstream::start().await;
    // The stream may be quiet longer than the harness's usual 2 s read timeout.
    let patient = format!(
        "  - name: a\n    match: {{ path: /a/mcp }}\n    upstream:\n      url: {}\n      timeouts: {{ connect: 1s, read: 30s }}\n",
        up.url("/mcp")
    );
    let mut gw = Gateway::start_with(&patient, "shutdown_drain: 1s\nshutdown_grace: 20s\n").await;
    // An event stream whose final event the upstream holds until released.
    let resp = unpooled()
        .post(gw.url("/a/mcp"))
        .header("content-type", "application/json")
        .header("x-test-mode", "sse")
        .body(ECHO)
        .send()
        .await
        .unwrap();
    let mut events = resp.bytes_stream();
    let mut text = String::new();
    while !text.contains("notifications/progress") {
        let chunk = tokio::time::timeout(Duration::from_secs(5), events.next())
            .await
            .expect("first event")
            .unwrap()
            .unwrap();
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
    gw.signal("-TERM");
    // Past the drain the process is still there, for the stream in flight.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        gw.wait_exit(Duration::from_millis(100)),
        None,
        "exited with a stream in flight: {}",
        gw.log()
    );
    let released = Instant::now();
    up.release();
    let (rest, clean, _) = {
        let mut rest = String::new();
        let mut clean = true;
        let done = tokio::time::timeout(Duration::from_secs(10), async {
            while let Some(chunk) = events.next().await {
                match chunk {
                    Ok(b) => rest.push_str(&String::from_utf8_lossy(&b)),
                    Err(_) => {
                        clean = false;
                        break;
                    }
                }
            }
        })
        .await;
        assert!(done.is_ok(), "the stream did not finish");
        (rest, clean, ())
    };
    assert!(clean && rest.contains("\"result\""), "{rest:?}");
    let code = tokio::task::spawn_blocking(move || gw.wait_exit(Duration::from_secs(30)))
        .await
        .unwrap();
    assert_eq!(code, Some(0));
    assert!(
        released.elapsed() < Duration::from_secs(4),
        "exited {:?} after the last stream ended (grace 20 s)",
        released.elapsed()
    );
    eprintln!(
        "figures: in-flight exit {:?} after the stream was released",
        released.elapsed()
    );
}
