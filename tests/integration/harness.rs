//! Test plumbing: a drawbridge process started from the built binary with a config
//! written for the test, and free loopback ports. Everything stops when dropped.

use std::io::Read;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A loopback port nobody listens on right now.
/// Every access line and every refusal in full, for tests that read individual lines
/// (the default aggregates refusals and logs access lines of errors only: see
/// `telemetry::budget`).
pub const LOG_ALL: &str = "log: { access: all, refusals: all }\n";

/// A loopback port that was free a moment ago, never one handed out before in this
/// process: two ports picked one after the other (a listener and its admin) could
/// otherwise be the same, the first being free again when the second is picked.
pub fn free_port() -> u16 {
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
    for _ in 0..1000 {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free loopback port");
        if !given.contains(&port) {
            given.push(port);
            return port;
        }
    }
    panic!("no loopback port not handed out before");
}

pub fn drawbridge_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_drawbridge"))
}

/// A running gateway. Killed on drop.
pub struct Gateway {
    child: Child,
    pub port: u16,
    pub admin_port: u16,
    _dir: tempfile::TempDir,
    log_path: PathBuf,
    config_path: PathBuf,
}

impl Gateway {
    /// Starts drawbridge with `routes_yaml` (the `routes:` list, indented two spaces) and
    /// waits until `/readyz` answers 200.
    pub async fn start(routes_yaml: &str) -> Gateway {
        Self::start_with(routes_yaml, "").await
    }

    /// Like [`Gateway::start`], with extra top-level YAML (e.g. `limits:`).
    pub async fn start_with(routes_yaml: &str, extra_yaml: &str) -> Gateway {
        let mut gw = Self::spawn(routes_yaml, extra_yaml);
        gw.wait_ready().await;
        gw
    }

    /// Starts the gateway and waits only until its listeners accept connections
    /// (readiness may stay false, e.g. while an issuer is unreachable).
    pub async fn start_unready(routes_yaml: &str, extra_yaml: &str) -> Gateway {
        let mut gw = Self::spawn(routes_yaml, extra_yaml);
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = gw.child.try_wait() {
                panic!("drawbridge exited with {status}:\n{}", gw.log());
            }
            let up = std::net::TcpStream::connect(("127.0.0.1", gw.port)).is_ok()
                && std::net::TcpStream::connect(("127.0.0.1", gw.admin_port)).is_ok();
            if up {
                return gw;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("drawbridge did not start listening:\n{}", gw.log());
    }

    /// Starts the gateway with its MCP listener on `port` (which may be taken) and
    /// returns without waiting for anything.
    pub fn spawn_on(port: u16, routes_yaml: &str, extra_yaml: &str) -> Gateway {
        Self::spawn_with_port(port, routes_yaml, extra_yaml)
    }

    /// Like [`Gateway::start_with`], with extra arguments to `drawbridge run`.
    pub async fn start_args(routes_yaml: &str, extra_yaml: &str, args: &[&str]) -> Gateway {
        let mut gw = Self::spawn_full(free_port(), routes_yaml, extra_yaml, args);
        gw.wait_ready().await;
        gw
    }

    fn spawn(routes_yaml: &str, extra_yaml: &str) -> Gateway {
        Self::spawn_with_port(free_port(), routes_yaml, extra_yaml)
    }

    fn spawn_with_port(port: u16, routes_yaml: &str, extra_yaml: &str) -> Gateway {
        Self::spawn_full(port, routes_yaml, extra_yaml, &[])
    }

    fn spawn_full(port: u16, routes_yaml: &str, extra_yaml: &str, args: &[&str]) -> Gateway {
        let admin_port = free_port();
        let dir = tempfile::tempdir().expect("temp dir");
        let config = dir.path().join("gateway.yaml");
        let text = format!(
            "listen: 127.0.0.1:{port}\nadmin:\n  listen: 127.0.0.1:{admin_port}\n{}{extra_yaml}routes:\n{routes_yaml}",
            process_settings(extra_yaml)
        );
        std::fs::write(&config, text).expect("write config");
        let log_path = dir.path().join("drawbridge.log");
        let log = std::fs::File::create(&log_path).expect("log file");
        let child = Command::new(drawbridge_bin())
            .args(["--log-format", "json", "run", "--config"])
            .arg(&config)
            .args(args)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start drawbridge");
        Gateway {
            child,
            port,
            admin_port,
            _dir: dir,
            log_path,
            config_path: config,
        }
    }

    /// Waits until `/readyz` answers 200.
    pub async fn wait_ready(&mut self) {
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("drawbridge exited with {status}:\n{}", self.log());
            }
            let ready = client
                .get(self.admin_url("/readyz"))
                .timeout(Duration::from_millis(500))
                .send()
                .await;
            let proxy_up = std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok();
            if proxy_up && ready.is_ok_and(|r| r.status() == 200) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("drawbridge did not become ready:\n{}", self.log());
    }

    /// Rewrites the configuration file (same listeners) and sends SIGHUP.
    pub fn reload_with(&self, routes_yaml: &str, extra_yaml: &str) {
        self.rewrite_config(routes_yaml, extra_yaml);
        self.signal("-HUP");
    }

    /// Rewrites the configuration file (same listeners), nothing more.
    pub fn rewrite_config(&self, routes_yaml: &str, extra_yaml: &str) {
        let text = format!(
            "listen: 127.0.0.1:{}\nadmin:\n  listen: 127.0.0.1:{}\n{}{extra_yaml}routes:\n{routes_yaml}",
            self.port,
            self.admin_port,
            process_settings(extra_yaml)
        );
        std::fs::write(&self.config_path, text).expect("rewrite config");
    }

    /// Sends a signal (`-HUP`, `-TERM`) to the gateway process.
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .arg(signal)
            .arg(self.child.id().to_string())
            .status()
            .expect("kill");
        assert!(status.success());
    }

    /// Waits (bounded) for the process to exit and returns its exit code.
    pub fn wait_exit(&mut self, within: Duration) -> Option<i32> {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }

    /// The configuration file the gateway runs with (for the CLI on the same file).
    pub fn config_path(&self) -> &std::path::Path {
        &self.config_path
    }

    /// The gateway's process id (for `/proc/PID/fd`).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub fn admin_url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.admin_port)
    }

    /// Everything the gateway logged so far.
    pub fn log(&self) -> String {
        let mut text = String::new();
        if let Ok(mut f) = std::fs::File::open(&self.log_path) {
            let _ = f.read_to_string(&mut text);
        }
        text
    }

    /// The Prometheus text from `/metrics` once `sample` reads `value` (counters move in
    /// the logging phase, just after the answer went out), or after 2 s.
    pub async fn metrics_when(&self, sample_name: &str, value: f64) -> String {
        let mut text = String::new();
        for _ in 0..100 {
            text = self.metrics().await;
            if sample(&text, sample_name) == Some(value) {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        text
    }

    /// The Prometheus text from `/metrics`.
    pub async fn metrics(&self) -> String {
        reqwest::get(self.admin_url("/metrics"))
            .await
            .expect("scrape")
            .text()
            .await
            .expect("metrics text")
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The value of one sample in Prometheus text, if present.
pub fn sample(metrics: &str, name_and_labels: &str) -> Option<f64> {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(name_and_labels)?.trim().parse().ok())
}

/// Workers and shutdown timings for test gateways: a short grace and no drain (SIGTERM
/// stops the listeners at once) unless `extra_yaml` sets them itself.
fn process_settings(extra_yaml: &str) -> String {
    let mut settings = String::from("workers: 2\n");
    if !extra_yaml.contains("shutdown_grace:") {
        settings.push_str("shutdown_grace: 3s\n");
    }
    if !extra_yaml.contains("shutdown_drain:") {
        settings.push_str("shutdown_drain: 0s\n");
    }
    settings
}

/// A route entry for the `routes:` list.
pub fn route(name: &str, path: &str, upstream: &str) -> String {
    format!("  - name: {name}\n    match: {{ path: {path} }}\n    upstream:\n      url: {upstream}\n      timeouts: {{ connect: 1s, read: 2s, stream_idle: 5s }}\n")
}

/// An HTTP client that sends `Content-Type: application/json` unless told otherwise, as
/// MCP clients do.
pub fn client() -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        reqwest::header::CONTENT_TYPE,
        reqwest::header::HeaderValue::from_static("application/json"),
    );
    reqwest::Client::builder()
        .default_headers(headers)
        .build()
        .expect("HTTP client")
}

/// Initializes through the gateway and returns the sealed session id it hands out.
pub async fn sealed_session(gw: &Gateway, path: &str) -> String {
    let resp = client()
        .post(gw.url(path))
        .body(r#"{"jsonrpc":"2.0","id":0,"method":"initialize","params":{}}"#)
        .send()
        .await
        .expect("initialize");
    let sealed = resp.headers()["mcp-session-id"]
        .to_str()
        .expect("ASCII session id")
        .to_string();
    assert!(sealed.starts_with("v1."), "not sealed: {sealed}");
    sealed
}

/// The audit events named `event` in a JSON log (target `audit`), each as its JSON line.
pub fn audit_events(log: &str, event: &str) -> Vec<serde_json::Value> {
    log.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["target"] == "audit" && v["event"] == event)
        .collect()
}

/// Fails if any of `secrets` (tokens, session ids, tool-argument values) appears in any
/// log line.
pub fn assert_log_free_of(log: &str, secrets: &[&str]) {
    for (n, line) in log.lines().enumerate() {
        for (i, secret) in secrets.iter().enumerate() {
            assert!(
                !line.contains(secret),
                "secret #{i} appears in log line {n}: {}",
                line.chars().take(200).collect::<String>()
            );
        }
    }
}

/// Everything the gateway logged once `done` holds for it, or after 15 s (the log is
/// written just after the answer went out).
pub async fn log_when(gw: &Gateway, done: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let log = gw.log();
        if done(&log) || Instant::now() >= deadline {
            return log;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
