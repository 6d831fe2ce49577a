//! Client connections at the edge: idle, header and body timeouts, the connection limit,
//! malformed and abandoned bodies, pipelining, and the `Origin` check with CORS. Raw TCP
//! clients, so that the test controls every byte and every stall.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::harness::{route, sample, Gateway, LOG_ALL};
use crate::upstream::Upstream;

const PING: &str = r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#;

async fn connect(gw: &Gateway) -> TcpStream {
    TcpStream::connect(("127.0.0.1", gw.port))
        .await
        .expect("connect to the gateway")
}

fn post(path: &str, body: &str, extra: &str) -> String {
    format!(
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nAccept: application/json, text/event-stream\r\nContent-Length: {}\r\n{extra}\r\n{body}",
        body.len()
    )
}

/// One response read off `stream`: status, header block (lower case) and body (framed by
/// Content-Length; the tests' answers all carry one). `None` if the connection closed or
/// nothing complete came within `within`.
async fn read_response(stream: &mut TcpStream, within: Duration) -> Option<(u16, String, String)> {
    let deadline = Instant::now() + within;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let status = head.split(' ').nth(1)?.parse().ok()?;
            // A body the gateway rewrites (a filtered or sealed answer) is chunked.
            let chunked = head.contains("transfer-encoding: chunked");
            if let Some((body, used)) = dechunk(&buf[end + 4..]).filter(|_| chunked) {
                let rest = buf.split_off(end + 4 + used);
                PENDING.with(|p| p.borrow_mut().extend_from_slice(&rest));
                return Some((status, head, body));
            }
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .map_or(0, |v| v.trim().parse().unwrap_or(0));
            if !chunked && buf.len() >= end + 4 + len {
                let body = String::from_utf8_lossy(&buf[end + 4..end + 4 + len]).to_string();
                // Keep what follows (a pipelined answer) for the next call.
                let rest = buf.split_off(end + 4 + len);
                PENDING.with(|p| p.borrow_mut().extend_from_slice(&rest));
                return Some((status, head, body));
            }
        }
        let pending = PENDING.with(|p| std::mem::take(&mut *p.borrow_mut()));
        if !pending.is_empty() {
            buf.extend_from_slice(&pending);
            continue;
        }
        let left = deadline.checked_duration_since(Instant::now())?;
        match tokio::time::timeout(left, stream.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => return None,
            Ok(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

/// A complete chunked body at the start of `bytes`: the body and how many bytes it took;
/// `None` until the last chunk has arrived.
fn dechunk(bytes: &[u8]) -> Option<(String, usize)> {
    let mut at = 0;
    let mut body = Vec::new();
    loop {
        let line_end = at + bytes[at..].windows(2).position(|w| w == b"\r\n")?;
        let size =
            usize::from_str_radix(std::str::from_utf8(&bytes[at..line_end]).ok()?.trim(), 16)
                .ok()?;
        let data = line_end + 2;
        if size == 0 {
            let trailer_end = data + bytes.get(data..)?.windows(2).position(|w| w == b"\r\n")?;
            return Some((String::from_utf8_lossy(&body).to_string(), trailer_end + 2));
        }
        body.extend_from_slice(bytes.get(data..data + size)?);
        at = data + size + 2;
        if bytes.len() < at {
            return None;
        }
    }
}

thread_local! {
    /// Bytes read past one response (tests run each on its own current-thread runtime).
    static PENDING: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Waits (bounded) until the gateway closes `stream`; how long that took, or `None` if it
/// stayed open. Bytes the gateway sends meanwhile are ignored.
async fn closed_within(stream: &mut TcpStream, within: Duration) -> Option<Duration> {
    let started = Instant::now();
    let mut chunk = [0u8; 1024];
    loop {
        let left = (started + within).checked_duration_since(Instant::now())?;
        match tokio::time::timeout(left, stream.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return Some(started.elapsed()),
            Ok(Ok(_)) => continue,
            Err(_) => return None,
        }
    }
}

/// Waits (bounded) until `pred` holds for the gateway's log.
async fn log_when(gw: &Gateway, pred: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let log = gw.log();
        if pred(&log) || Instant::now() > deadline {
            return log;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn no_error_lines(log: &str) {
    assert!(!log.contains(r#""level":"ERROR""#), "{log}");
}

const SHORT: &str =
    "limits:\n  client_idle_timeout: 1s\n  header_timeout: 1s\n  body_timeout: 1s\n";

#[tokio::test]
async fn idle_keep_alive_connections_are_closed_after_the_idle_timeout() {
    let up = Upstream::start().await;
    let gw = Gateway::start_with(&route("r", "/r/mcp", &up.url("/mcp")), SHORT).await;
    // After a 200 and after a 404, the connection is kept alive, then closed when idle.
    for request in [
        post("/r/mcp", PING, ""),
        "GET /nope HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".to_string(),
    ] {
        let mut conn = connect(&gw).await;
        conn.write_all(request.as_bytes()).await.unwrap();
        let (status, head, _) = read_response(&mut conn, Duration::from_secs(5))
            .await
            .expect("an answer");
        assert!(status == 200 || status == 404, "{status}");
        assert!(!head.contains("connection: close"), "{head}");
        let closed = closed_within(&mut conn, Duration::from_secs(5))
            .await
            .expect("the idle connection was not closed");
        assert!(
            closed >= Duration::from_millis(800),
            "closed early: {closed:?}"
        );
    }
    let metrics = gw
        .metrics_when("drawbridge_client_timeouts_total{kind=\"idle\"}", 2.0)
        .await;
    assert_eq!(
        sample(&metrics, "drawbridge_client_timeouts_total{kind=\"idle\"}"),
        Some(2.0),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_silent_or_trickling_header_is_closed_at_the_header_deadline() {
    let up = Upstream::start().await;
    let gw = Gateway::start_with(&route("r", "/r/mcp", &up.url("/mcp")), SHORT).await;
    // Connected, nothing sent.
    let mut silent = connect(&gw).await;
    assert!(closed_within(&mut silent, Duration::from_secs(5))
        .await
        .is_some());
    // A header that keeps coming, a byte at a time, never ends: the deadline is for the
    // whole header, not per read.
    let mut trickle = connect(&gw).await;
    trickle
        .write_all(b"POST /r/mcp HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        .await
        .unwrap();
    let started = Instant::now();
    let mut closed = false;
    while started.elapsed() < Duration::from_secs(5) {
        if trickle.write_all(b"X").await.is_err() {
            closed = true;
            break;
        }
        let mut b = [0u8; 64];
        if let Ok(Ok(0) | Err(_)) =
            tokio::time::timeout(Duration::from_millis(200), trickle.read(&mut b)).await
        {
            closed = true;
            break;
        }
    }
    assert!(closed, "a trickling header kept its connection");
    assert!(started.elapsed() < Duration::from_secs(3));
    assert!(up.seen().is_empty());
    let metrics = gw
        .metrics_when("drawbridge_client_timeouts_total{kind=\"header\"}", 2.0)
        .await;
    assert_eq!(
        sample(
            &metrics,
            "drawbridge_client_timeouts_total{kind=\"header\"}"
        ),
        Some(2.0),
        "{metrics}"
    );
}

#[tokio::test]
async fn an_event_stream_outlives_the_idle_timeout() {
    let up = Upstream::start().await;
    let gw = Gateway::start_with(&route("r", "/r/mcp", &up.url("/mcp")), SHORT).await;
    let mut conn = connect(&gw).await;
    conn.write_all(b"GET /r/mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n")
        .await
        .unwrap();
    // The stream stays open well past the idle and header timeouts (1s).
    assert_eq!(closed_within(&mut conn, Duration::from_secs(3)).await, None);
}

#[tokio::test]
async fn a_stalled_body_gets_408_within_the_body_timeout() {
    let up = Upstream::start().await;
    let gw = Gateway::start_with(&route("r", "/r/mcp", &up.url("/mcp")), SHORT).await;
    let mut conn = connect(&gw).await;
    let head = "POST /r/mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n";
    conn.write_all(head.as_bytes()).await.unwrap();
    conn.write_all(br#"{"jsonrpc":"#).await.unwrap();
    let started = Instant::now();
    let (status, head, body) = read_response(&mut conn, Duration::from_secs(5))
        .await
        .expect("an answer to the stalled body");
    assert_eq!(status, 408, "{head}\n{body}");
    assert!(started.elapsed() < Duration::from_secs(3));
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(json["jsonrpc"], "2.0");
    assert_eq!(json["error"]["code"], -32600);
    assert!(up.seen().is_empty());
    let metrics = gw
        .metrics_when("drawbridge_client_timeouts_total{kind=\"body\"}", 1.0)
        .await;
    assert_eq!(
        sample(&metrics, "drawbridge_client_timeouts_total{kind=\"body\"}"),
        Some(1.0)
    );
    no_error_lines(&log_when(&gw, |l| l.contains("body_timeout")).await);
}

#[tokio::test]
async fn a_trickled_body_gets_408_at_the_body_deadline_not_per_read() {
    let up = Upstream::start().await;
    let gw = Gateway::start_with(&route("r", "/r/mcp", &up.url("/mcp")), SHORT).await;
    let mut conn = connect(&gw).await;
    let head = "POST /r/mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n";
    conn.write_all(head.as_bytes()).await.unwrap();
    let started = Instant::now();
    // A byte every 300 ms: each read is quick, the whole body never arrives in time.
    let (mut reader, mut writer) = conn.split();
    let trickle = async {
        for _ in 0..100 {
            if writer.write_all(b" ").await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    };
    let answer = async {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 1024];
        while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
            match reader.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        String::from_utf8_lossy(&buf).to_string()
    };
    let text = tokio::select! {
        text = tokio::time::timeout(Duration::from_secs(5), answer) => text.expect("an answer in time"),
        () = trickle => panic!("the trickle ended without an answer"),
    };
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(started.elapsed() < Duration::from_secs(3));
    assert!(up.seen().is_empty());
}

#[tokio::test]
async fn a_malformed_chunked_body_is_400_and_no_error_line() {
    let up = Upstream::start().await;
    let gw = Gateway::start_with(&route("r", "/r/mcp", &up.url("/mcp")), SHORT).await;
    let mut conn = connect(&gw).await;
    conn.write_all(
        b"POST /r/mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n",
    )
    .await
    .unwrap();
    let (status, _, body) = read_response(&mut conn, Duration::from_secs(5))
        .await
        .expect("an answer");
    assert_eq!(status, 400, "{body}");
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(json["error"]["code"], -32600);
    assert!(up.seen().is_empty());
    no_error_lines(&log_when(&gw, |l| l.contains("malformed_body")).await);
}

#[tokio::test]
async fn clients_leaving_mid_body_log_no_errors() {
    let up = Upstream::start().await;
    let gw = Gateway::start_with(
        &route("r", "/r/mcp", &up.url("/mcp")),
        &format!("{SHORT}{LOG_ALL}"),
    )
    .await;
    for _ in 0..50 {
        let mut conn = connect(&gw).await;
        let head = "POST /r/mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"jsonrpc\":";
        conn.write_all(head.as_bytes()).await.unwrap();
        drop(conn);
    }
    let log = log_when(&gw, |l| l.matches("drawbridge::access").count() >= 50).await;
    assert_eq!(log.matches("drawbridge::access").count(), 50, "{log}");
    no_error_lines(&log);
    assert!(up.seen().is_empty());
}

#[tokio::test]
async fn pipelined_requests_are_answered_in_order() {
    let up = Upstream::start().await;
    let gw = Gateway::start_with(&route("r", "/r/mcp", &up.url("/mcp")), SHORT).await;
    let mut conn = connect(&gw).await;
    let first = post("/r/mcp", r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#, "");
    let second = post(
        "/r/mcp",
        r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"echo"}}"#,
        "",
    );
    let third = "GET /nope HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
    conn.write_all(format!("{first}{second}{third}").as_bytes())
        .await
        .unwrap();
    let mut answers = Vec::new();
    for _ in 0..3 {
        let (status, _, body) = read_response(&mut conn, Duration::from_secs(5))
            .await
            .unwrap_or_else(|| panic!("pipelined request unanswered after {answers:?}"));
        answers.push((status, body));
    }
    assert_eq!(answers[0].0, 200);
    assert!(answers[0].1.contains(r#""id":1"#), "{answers:?}");
    assert_eq!(answers[1].0, 200);
    assert!(answers[1].1.contains(r#""id":2"#), "{answers:?}");
    assert_eq!(answers[2].0, 404);
    // The upstream got exactly the two requests, in order, each with its own body.
    let seen = up.seen();
    assert_eq!(seen.len(), 2);
    assert!(String::from_utf8_lossy(&seen[0].body).contains(r#""method":"ping""#));
    assert!(String::from_utf8_lossy(&seen[1].body).contains(r#""method":"tools/call""#));
}

#[tokio::test]
async fn connections_past_the_limit_get_503_and_are_closed() {
    let up = Upstream::start().await;
    let gw = Gateway::start_with(
        &route("r", "/r/mcp", &up.url("/mcp")),
        "limits:\n  max_connections: 2\n  header_timeout: 30s\n",
    )
    .await;
    // The harness's readiness probes came and went: wait until nothing is open.
    gw.metrics_when("drawbridge_client_connections", 0.0).await;
    let held_a = connect(&gw).await;
    let _held_b = connect(&gw).await;
    let metrics = gw.metrics_when("drawbridge_client_connections", 2.0).await;
    assert_eq!(sample(&metrics, "drawbridge_client_connections"), Some(2.0));
    let mut third = connect(&gw).await;
    third
        .write_all(post("/r/mcp", PING, "").as_bytes())
        .await
        .unwrap();
    let (status, head, body) = read_response(&mut third, Duration::from_secs(5))
        .await
        .expect("a 503");
    assert_eq!(status, 503, "{body}");
    assert!(head.contains("connection: close"));
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(json["error"]["code"], -32007);
    assert!(closed_within(&mut third, Duration::from_secs(3))
        .await
        .is_some());
    assert!(up.seen().is_empty());
    let metrics = gw
        .metrics_when("drawbridge_connections_refused_total", 1.0)
        .await;
    assert_eq!(
        sample(&metrics, "drawbridge_connections_refused_total"),
        Some(1.0)
    );
    // A slot freed is a slot for the next client.
    drop(held_a);
    gw.metrics_when("drawbridge_client_connections", 1.0).await;
    let mut next = connect(&gw).await;
    next.write_all(post("/r/mcp", PING, "").as_bytes())
        .await
        .unwrap();
    let (status, _, _) = read_response(&mut next, Duration::from_secs(5))
        .await
        .expect("served");
    assert_eq!(status, 200);
}

const APP: &str = "http://app.localhost:8123";

fn origin_route(up: &Upstream) -> String {
    format!(
        "{}    allowed_origins: [\"{APP}\"]\n",
        route("r", "/r/mcp", &up.url("/mcp"))
    )
}

#[tokio::test]
async fn a_disallowed_origin_is_403_and_the_upstream_sees_nothing() {
    let up = Upstream::start().await;
    let gw = Gateway::start(&origin_route(&up)).await;
    let client = crate::harness::client();
    for origin in [
        "http://evil.localhost:8123",
        "null",
        "http://app.localhost:8124",
    ] {
        let resp = client
            .post(gw.url("/r/mcp"))
            .header("origin", origin)
            .body(r#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"echo"}}"#)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 403, "{origin}");
        assert!(resp.headers().get("access-control-allow-origin").is_none());
        let json: serde_json::Value = resp.json().await.unwrap();
        assert_eq!(json["jsonrpc"], "2.0");
        assert_eq!(json["error"]["code"], -32005);
    }
    // Two Origin headers, one of them allowed: refused too.
    let mut conn = connect(&gw).await;
    conn.write_all(
        post(
            "/r/mcp",
            PING,
            &format!("Origin: {APP}\r\nOrigin: http://evil.localhost\r\n"),
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let (status, _, _) = read_response(&mut conn, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(status, 403);
    // A preflight from another origin is refused as well.
    let resp = client
        .request(reqwest::Method::OPTIONS, gw.url("/r/mcp"))
        .header("origin", "http://evil.localhost")
        .header("access-control-request-method", "POST")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    assert!(up.seen().is_empty(), "{:?}", up.seen());
    assert_eq!(up.connections(), 0);
}

#[tokio::test]
async fn an_allowed_origin_is_served_with_cors_and_its_preflight_answered_here() {
    let up = Upstream::start().await;
    let gw = Gateway::start(&origin_route(&up)).await;
    let client = crate::harness::client();
    let resp = client
        .request(reqwest::Method::OPTIONS, gw.url("/r/mcp"))
        .header("origin", APP)
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "authorization, content-type, mcp-session-id",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 204);
    let h = resp.headers();
    assert_eq!(h["access-control-allow-origin"], APP);
    assert_eq!(h["vary"], "Origin");
    let methods = h["access-control-allow-methods"].to_str().unwrap();
    for m in ["GET", "POST", "DELETE"] {
        assert!(methods.contains(m), "{methods}");
    }
    let allowed = h["access-control-allow-headers"]
        .to_str()
        .unwrap()
        .to_ascii_lowercase();
    for name in [
        "authorization",
        "content-type",
        "mcp-session-id",
        "mcp-protocol-version",
        "last-event-id",
    ] {
        assert!(allowed.contains(name), "{allowed}");
    }
    assert!(up.seen().is_empty(), "the preflight was forwarded");

    let resp = client
        .post(gw.url("/r/mcp"))
        .header("origin", APP)
        .body(r#"{"jsonrpc":"2.0","id":0,"method":"initialize","params":{}}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let h = resp.headers();
    assert_eq!(h["access-control-allow-origin"], APP);
    assert_eq!(
        h["access-control-expose-headers"],
        "Mcp-Session-Id, WWW-Authenticate"
    );
    assert!(h.get_all("vary").iter().any(|v| v == "Origin"));
    assert_eq!(up.seen().len(), 1);

    // Without Origin (not a browser): served, no CORS headers.
    let resp = client
        .post(gw.url("/r/mcp"))
        .body(PING)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.headers().get("access-control-allow-origin").is_none());
    assert_eq!(up.seen().len(), 2);
}

#[tokio::test]
async fn the_gateways_own_challenge_is_readable_by_an_allowed_origin() {
    let idp = crate::idp::Idp::start().await;
    let up = Upstream::start().await;
    let routes = format!(
        "  - name: secure\n    match: {{ path: /secure/mcp }}\n    public_url: https://mcp.example.com/secure/mcp\n    upstream: {{ url: '{}' }}\n    allowed_origins: [\"{APP}\"]\n    auth: {{ issuers: [corp], required_scopes: [mcp:tools] }}\n",
        up.url("/mcp")
    );
    let gw = Gateway::start_with(
        &routes,
        &format!("issuers:\n  - name: corp\n    issuer: {}\n", idp.issuer),
    )
    .await;
    let client = crate::harness::client();
    // No token, allowed origin: 401, and the browser may read the challenge.
    let resp = client
        .post(gw.url("/secure/mcp"))
        .header("origin", APP)
        .body(PING)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    let h = resp.headers();
    assert!(h.contains_key("www-authenticate"));
    assert_eq!(h["access-control-allow-origin"], APP);
    assert_eq!(
        h["access-control-expose-headers"],
        "Mcp-Session-Id, WWW-Authenticate"
    );
    // A valid token from another origin: refused before authentication (403, not 200).
    let token = idp.mint(
        crate::idp::Alg::RS256,
        &idp.claims("https://mcp.example.com/secure/mcp", "mcp:tools"),
    );
    let resp = client
        .post(gw.url("/secure/mcp"))
        .header("origin", "http://evil.localhost")
        .bearer_auth(&token)
        .body(PING)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    assert!(resp.headers().get("www-authenticate").is_none());
    // The same token without Origin is served: the refusal was the origin's.
    let resp = client
        .post(gw.url("/secure/mcp"))
        .bearer_auth(&token)
        .body(PING)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(up.seen().len(), 1);
}

/// Audit events (`"event":"authorization"`) in the log.
fn audit_events(log: &str) -> usize {
    log.matches(r#""event":"authorization""#).count()
}

#[tokio::test]
async fn audit_output_per_request_is_bounded() {
    let idp = crate::idp::Idp::start().await;
    let up = Upstream::start().await;
    let routes = format!(
        "  - name: secure\n    match: {{ path: /secure/mcp }}\n    public_url: https://mcp.example.com/secure/mcp\n    upstream: {{ url: '{}' }}\n    auth: {{ issuers: [corp], required_scopes: [mcp:tools] }}\n    policy:\n      default: deny\n      tools: {{ echo: [mcp:tools] }}\n",
        up.url("/mcp")
    );
    let gw = Gateway::start_with(
        &routes,
        // Batches this long need a raised `limits.max_batch` (default 100).
        &format!(
            "{LOG_ALL}limits:\n  max_batch: 5000\nissuers:\n  - name: corp\n    issuer: {}\n",
            idp.issuer
        ),
    )
    .await;
    let token = idp.mint(
        crate::idp::Alg::RS256,
        &idp.claims("https://mcp.example.com/secure/mcp", "mcp:tools"),
    );
    let client = crate::harness::client();
    // 2,000 allowed notifications: one summary event.
    let batch: Vec<String> = (0..2000)
        .map(|_| r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#.to_string())
        .collect();
    let resp = client
        .post(gw.url("/secure/mcp"))
        .bearer_auth(&token)
        .body(format!("[{}]", batch.join(",")))
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success(), "{}", resp.status());
    let log = log_when(&gw, |l| audit_events(l) >= 1).await;
    assert_eq!(audit_events(&log), 1, "{log}");
    assert!(log.contains(r#""operations":2000"#), "{log}");
    // 100 denied calls: the summary and 16 denied events, nothing reaches the upstream.
    let seen_before = up.seen().len();
    let denied: Vec<String> = (0..100)
        .map(|i| format!(r#"{{"jsonrpc":"2.0","id":{i},"method":"tools/call","params":{{"name":"admin-delete"}}}}"#))
        .collect();
    let resp = client
        .post(gw.url("/secure/mcp"))
        .bearer_auth(&token)
        .body(format!("[{}]", denied.join(",")))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    // The first request's summary, then this one's summary and 16 denied events.
    let expected = 1 + 1 + 16;
    let log = log_when(&gw, |l| audit_events(l) >= expected).await;
    assert_eq!(audit_events(&log), expected, "{log}");
    assert!(log.contains(r#""denied_not_logged":84"#), "{log}");
    assert_eq!(up.seen().len(), seen_before);
}

#[tokio::test]
async fn pipelined_requests_through_a_subrequest_are_answered_in_order() {
    // List answers filtered through a subrequest, and a body over 64 KiB, pipelined.
    let idp = crate::idp::Idp::start().await;
    let up = Upstream::start().await;
    let routes = format!(
        "  - name: secure\n    match: {{ path: /secure/mcp }}\n    public_url: https://mcp.example.com/secure/mcp\n    upstream: {{ url: '{}' }}\n    auth: {{ issuers: [corp], required_scopes: [mcp:tools] }}\n    policy:\n      default: deny\n      tools: {{ echo: [mcp:tools] }}\n",
        up.url("/mcp")
    );
    let gw = Gateway::start_with(
        &routes,
        &format!("issuers:\n  - name: corp\n    issuer: {}\n", idp.issuer),
    )
    .await;
    let token = idp.mint(
        crate::idp::Alg::RS256,
        &idp.claims("https://mcp.example.com/secure/mcp", "mcp:tools"),
    );
    let auth = format!("Authorization: Bearer {token}\r\n");
    let list = post(
        "/secure/mcp",
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#,
        &auth,
    );
    let big = format!(
        r#"{{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{{"name":"echo","arguments":{{"pad":"{}"}}}}}}"#,
        "x".repeat(70 * 1024)
    );
    let call = post("/secure/mcp", &big, &auth);
    let again = post(
        "/secure/mcp",
        r#"{"jsonrpc":"2.0","id":3,"method":"tools/list"}"#,
        &auth,
    );
    let mut conn = connect(&gw).await;
    conn.write_all(format!("{list}{call}{again}").as_bytes())
        .await
        .unwrap();
    let mut answers = Vec::new();
    for _ in 0..3 {
        let (status, _, body) = read_response(&mut conn, Duration::from_secs(10))
            .await
            .unwrap_or_else(|| panic!("pipelined request unanswered after {answers:?}"));
        answers.push((status, body));
    }
    for (i, (status, body)) in answers.iter().enumerate() {
        assert_eq!(*status, 200, "{answers:?}");
        assert!(body.contains(&format!(r#""id":{}"#, i + 1)), "{answers:?}");
    }
    // Filtered: only the allowed tool is listed.
    assert!(answers[0].1.contains(r#""echo""#) && !answers[0].1.contains("secret-tool"));
    assert_eq!(up.seen().len(), 3);
}
