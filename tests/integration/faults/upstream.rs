//! Upstreams that refuse, stall, reset an event stream, truncate or answer garbage: the
//! status the client gets, and no descriptor left behind.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;
use crate::harness::{free_port, route, sample};

// ---- 3. the upstream fails ----------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq)]
enum UpstreamFault {
    /// Reads the request and never answers.
    Stall,
    /// Starts an event stream, sends one event, then resets the connection.
    ResetMidStream,
    /// Announces 300 bytes of JSON, sends 40, closes.
    Truncated,
    /// Answers bytes that are not HTTP.
    Garbage,
}

/// A TCP server on loopback that misbehaves as told; counts the requests it read.
async fn faulty_upstream(fault: UpstreamFault, requests: Arc<AtomicUsize>) -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let requests = requests.clone();
            tokio::spawn(async move {
                let mut got = Vec::new();
                let mut buf = [0u8; 4096];
                while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => got.extend_from_slice(&buf[..n]),
                    }
                }
                requests.fetch_add(1, Ordering::SeqCst);
                match fault {
                    UpstreamFault::Stall => {
                        tokio::time::sleep(Duration::from_secs(30)).await;
                    }
                    UpstreamFault::ResetMidStream => {
                        let head = "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\n\r\n";
                        let event = "event: message\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\",\"params\":{\"progress\":1}}\n\n";
                        let _ = stream.write_all(head.as_bytes()).await;
                        let _ = stream.write_all(event.as_bytes()).await;
                        let _ = stream.flush().await;
                        tokio::time::sleep(Duration::from_millis(300)).await;
                        // Linger 0: closing sends a RST instead of a FIN (and, with a
                        // zero timeout, does not block the thread the deprecation is about).
                        #[allow(deprecated)]
                        let _ = stream.set_linger(Some(Duration::ZERO));
                        drop(stream);
                    }
                    UpstreamFault::Truncated => {
                        let head = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 300\r\n\r\n";
                        let _ = stream.write_all(head.as_bytes()).await;
                        let _ = stream
                            .write_all(br#"{"jsonrpc":"2.0","id":1,"result":{"content":["#)
                            .await;
                        let _ = stream.flush().await;
                    }
                    UpstreamFault::Garbage => {
                        let _ = stream
                            .write_all(b"SSH-2.0-OpenSSH_9.6\r\nthis is not HTTP\r\n\r\n")
                            .await;
                        let _ = stream.flush().await;
                    }
                }
            });
        }
    });
    port
}

fn open_fds(gw: &Gateway) -> usize {
    std::fs::read_dir(format!("/proc/{}/fd", gw.pid()))
        .map(|d| d.count())
        .unwrap_or(usize::MAX)
}

/// After a fault, the gateway's descriptors come back to `baseline` (bounded wait).
async fn no_leak(gw: &Gateway, baseline: usize, what: &str) {
    let settled = within(Duration::from_secs(10), || async {
        open_fds(gw) <= baseline
    })
    .await;
    assert!(
        settled,
        "{what}: {} open descriptors, {baseline} before",
        open_fds(gw)
    );
}

/// The body a client reads from a streamed answer: what arrived, whether it ended
/// cleanly, and when it ended.
async fn read_stream(resp: reqwest::Response) -> (String, bool, Duration) {
    let started = Instant::now();
    let mut text = String::new();
    let mut events = resp.bytes_stream();
    let mut clean = true;
    let ended = tokio::time::timeout(Duration::from_secs(20), async {
        while let Some(chunk) = events.next().await {
            match chunk {
                Ok(bytes) => text.push_str(&String::from_utf8_lossy(&bytes)),
                Err(_) => {
                    clean = false;
                    break;
                }
            }
        }
    })
    .await;
    assert!(ended.is_ok(), "the stream hung: {text:?}");
    (text, clean, started.elapsed())
}

#[tokio::test]
async fn upstream_faults_get_their_status_and_leak_nothing() {
    let up = Upstream::start().await;
    let requests = Arc::new(AtomicUsize::new(0));
    let mut routes = route("good", "/good/mcp", &up.url("/mcp"));
    let refused = format!("http://127.0.0.1:{}/mcp", free_port());
    routes.push_str(&route("refused", "/refused/mcp", &refused));
    for fault in [
        UpstreamFault::Stall,
        UpstreamFault::ResetMidStream,
        UpstreamFault::Truncated,
        UpstreamFault::Garbage,
    ] {
        let port = faulty_upstream(fault, requests.clone()).await;
        let name = format!("{fault:?}").to_lowercase();
        routes.push_str(&route(
            &name,
            &format!("/{name}/mcp"),
            &format!("http://127.0.0.1:{port}/mcp"),
        ));
    }
    let gw = Gateway::start(&routes).await;
    let http = unpooled();
    assert_eq!(call(&http, &gw, "/good/mcp", None).await.status, 200);
    let baseline = open_fds(&gw);

    // Refusing connections: 502 at once.
    let seen = call(&http, &gw, "/refused/mcp", None).await;
    eprintln!(
        "figures: upstream refused {} in {:?}",
        seen.status, seen.took
    );
    assert_eq!(seen.status, 502);
    assert!(seen.took < ANSWERED_WITHIN);
    no_leak(&gw, baseline, "refused").await;
    assert_eq!(call(&http, &gw, "/good/mcp", None).await.status, 200);

    // Never answering: 504 at the route's read timeout (2 s), not later.
    let seen = call(&http, &gw, "/stall/mcp", None).await;
    eprintln!("figures: upstream stall {} in {:?}", seen.status, seen.took);
    assert_eq!(seen.status, 504);
    assert!(seen.took < ANSWERED_WITHIN, "{:?}", seen.took);
    no_leak(&gw, baseline, "stall").await;
    assert_eq!(call(&http, &gw, "/good/mcp", None).await.status, 200);

    // Reset in the middle of an event stream: the client got the first event, and its
    // stream ends (visibly cut, without a terminating chunk) instead of hanging.
    let resp = http
        .post(gw.url("/resetmidstream/mcp"))
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(ECHO)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let (text, clean, took) = read_stream(resp).await;
    eprintln!("figures: upstream reset mid-stream: clean end {clean}, ended after {took:?}");
    assert!(text.contains("notifications/progress"), "{text:?}");
    assert!(!clean, "a reset stream must not look complete: {text:?}");
    assert!(took < ANSWERED_WITHIN, "{took:?}");
    no_leak(&gw, baseline, "reset").await;
    assert_eq!(call(&http, &gw, "/good/mcp", None).await.status, 200);

    // A body cut short under its Content-Length is never presented as complete.
    let resp = http
        .post(gw.url("/truncated/mcp"))
        .header("content-type", "application/json")
        .body(ECHO)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let body = resp.bytes().await;
    eprintln!(
        "figures: upstream truncated: {status}, body read ok: {}",
        body.is_ok()
    );
    assert!(
        status >= 500 || body.is_err(),
        "a truncated answer arrived as complete: {status} {body:?}"
    );
    no_leak(&gw, baseline, "truncated").await;
    assert_eq!(call(&http, &gw, "/good/mcp", None).await.status, 200);

    // Not HTTP at all: 502.
    let seen = call(&http, &gw, "/garbage/mcp", None).await;
    eprintln!(
        "figures: upstream garbage {} in {:?}; fds {} (baseline {baseline})",
        seen.status,
        seen.took,
        open_fds(&gw)
    );
    assert_eq!(seen.status, 502);
    no_leak(&gw, baseline, "garbage").await;
    assert_eq!(call(&http, &gw, "/good/mcp", None).await.status, 200);

    assert_eq!(
        requests.load(Ordering::SeqCst),
        4,
        "each faulty upstream got its request"
    );
    let m = gw.metrics().await;
    let streams = sample(&m, r#"drawbridge_active_streams{route="resetmidstream"}"#);
    assert_eq!(
        streams.unwrap_or(0.0),
        0.0,
        "a stream is still counted as open"
    );
}
