//! Client connections on the MCP listener: how many may be open at once, and how long
//! one may hold a slot without sending a request.
//!
//! Pingora's own HTTP/1 loop keeps an idle kept-alive connection for ever (after a
//! request it waits for the next header without a timeout) and bounds a first header only
//! per read. This loop replaces it for drawbridge's listener (HTTP/1.1, in clear or over
//! TLS; no h2c) and adds, per connection:
//! - admission: past `limits.max_connections` open connections a new one gets a 503
//!   (`Refusal::TooManyConnections`) and is closed before its request is read;
//! - a deadline for each whole request header, counted from accept
//!   (`limits.header_timeout`) or from the end of the previous exchange
//!   (`limits.client_idle_timeout`). A client trickling a header byte by byte is closed at
//!   the deadline just like a silent one. The header is still in Pingora's hands then, so
//!   the connection is closed without an answer.
//!
//! Once a request header has arrived its deadline no longer applies: answers and event
//! streams take as long as the upstream does (the proxy has its own body and upstream
//! timeouts). The proxy reports the header's arrival through Pingora's connection user
//! context ([`HeaderArrived`], marked in `on_connection_reuse`, which Pingora calls as
//! soon as the header is parsed whenever a context is set).
//!
//! Pipelined requests (sent before the previous answer) are served in order: Pingora
//! 0.9.1 keeps the bytes read past one request for the next when pipelining is on.
//!
//! HTTP/2 (offered by ALPN on the TLS listener, see `server::tls`) is admitted the same
//! way, then served by Pingora's own HTTP/2 loop: its streams are multiplexed on one
//! connection (at most 100 at once, Pingora's default), so there is no per-request header
//! deadline. Instead the client's connection preface must arrive within
//! `limits.header_timeout` (`server::preface`), a connection with no open stream for
//! `limits.client_idle_timeout` is closed (Pingora's `h2_idle_timeout`, a GOAWAY), and
//! each request body must arrive within `limits.body_timeout` (`proxy::body`).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pingora::apps::{HttpServerApp, HttpServerOptions, ServerApp};
use pingora::protocols::http::ServerSession;
use pingora::protocols::Stream;
use pingora::protocols::ALPN;
use pingora::proxy::HttpProxy;
use pingora::server::ShutdownWatch;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::preface::PrefaceWatch;
use crate::config::ClientLimits;
use crate::proxy::{Gateway, HeaderArrived};
use crate::refusal::Refusal;
use crate::telemetry::client::{ClientMetrics, TimeoutKind};

/// The MCP listener's application: admission and header deadlines around the proxy.
pub struct ClientConnections {
    proxy: Arc<HttpProxy<Gateway>>,
    limits: ClientLimits,
    open: OpenConnections,
    metrics: ClientMetrics,
}

/// How many client connections are open (admitted, not yet closed). Shared with the
/// shutdown sequence: once the listener has stopped, idle kept-alive connections are
/// closed by Pingora, so what remains open is a request or stream in flight.
#[derive(Clone, Default)]
pub struct OpenConnections(Arc<AtomicUsize>);

impl OpenConnections {
    pub fn count(&self) -> usize {
        self.0.load(Ordering::Acquire)
    }
}

/// One admitted connection; gives its slot back when dropped.
struct Slot<'a>(&'a ClientConnections);

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        self.0.open.0.fetch_sub(1, Ordering::AcqRel);
        self.0.metrics.open.dec();
    }
}

impl ClientConnections {
    pub fn new(
        proxy: HttpProxy<Gateway>,
        limits: ClientLimits,
        metrics: ClientMetrics,
    ) -> ClientConnections {
        let mut proxy = proxy;
        let mut options = HttpServerOptions::default();
        options.h2_idle_timeout = Some(limits.idle_timeout);
        proxy.server_options = Some(options);
        ClientConnections {
            proxy: Arc::new(proxy),
            limits,
            open: OpenConnections::default(),
            metrics,
        }
    }

    /// The count of open connections, for the shutdown sequence.
    pub fn open_connections(&self) -> OpenConnections {
        self.open.clone()
    }

    fn admit(&self) -> Option<Slot<'_>> {
        if self.open.0.fetch_add(1, Ordering::AcqRel) >= self.limits.max_connections {
            self.open.0.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        self.metrics.open.inc();
        Some(Slot(self))
    }
}

/// Pingora counts keep-alive timeouts in whole seconds; its own per-read bound is set a
/// second past the deadline so that the deadline (which is counted) always fires first.
fn per_read_bound(deadline: Duration) -> u64 {
    deadline.as_secs().max(1) + 1
}

/// The 503 a connection over the limit gets, as raw HTTP/1.1 bytes.
fn too_many_connections_response() -> Vec<u8> {
    let refusal = Refusal::TooManyConnections;
    let body = refusal.body(None);
    let retry = refusal.retry_after().unwrap_or(1);
    format!(
        "HTTP/1.1 {} Service Unavailable\r\ncontent-type: application/json\r\ncontent-length: {}\r\ncache-control: no-store\r\nretry-after: {retry}\r\nconnection: close\r\n\r\n{body}",
        refusal.status(),
        body.len()
    )
    .into_bytes()
}

/// Answers a connection over the limit and closes it. Bounded: a client that does not
/// read gets a second, then the connection is dropped.
async fn refuse_connection(mut stream: Stream) {
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        stream.write_all(&too_many_connections_response()).await?;
        stream.flush().await?;
        // Read what the client already sent (up to a bound), so that closing with unread
        // bytes does not reset the connection before the 503 is read.
        let mut sink = [0u8; 4096];
        let mut left: usize = 64 * 1024;
        while left > 0 {
            let n = stream.read(&mut sink).await?;
            if n == 0 {
                break;
            }
            left = left.saturating_sub(n);
        }
        std::io::Result::Ok(())
    })
    .await;
}

#[async_trait]
impl ServerApp for ClientConnections {
    async fn process_new(
        self: &Arc<Self>,
        stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        let Some(_slot) = self.admit() else {
            self.metrics.refused.inc();
            tracing::debug!("connection refused: limits.max_connections are open");
            refuse_connection(stream).await;
            return None;
        };
        if matches!(stream.selected_alpn_proto(), Some(ALPN::H2)) {
            // The slot is held until Pingora's HTTP/2 loop ends with the connection.
            let (stream, arrived) = PrefaceWatch::new(stream);
            let preface_deadline = async {
                tokio::time::sleep(self.limits.header_timeout).await;
                if arrived.load(Ordering::Acquire) {
                    std::future::pending::<()>().await;
                }
            };
            tokio::select! {
                _ = ServerApp::process_new(&self.proxy, Box::new(stream), shutdown) => {}
                () = preface_deadline => {
                    self.metrics.timeout(TimeoutKind::Header);
                    tracing::debug!("HTTP/2 connection closed: no connection preface in time");
                }
            }
            return None;
        }
        let mut session = ServerSession::new_http1(stream);
        session.set_pipelining_enabled(true);
        let mut kind = TimeoutKind::Header;
        loop {
            let deadline = match kind {
                TimeoutKind::Idle => self.limits.idle_timeout,
                _ => self.limits.header_timeout,
            };
            if *shutdown.borrow() {
                // Stop reusing connections when the service is about to stop.
                session.set_keepalive(None);
            } else {
                session.set_keepalive(Some(per_read_bound(deadline)));
            }
            // Pingora bounds each body read by it; the proxy bounds the whole POST body it
            // reads before contacting the upstream by it (`proxy::body`).
            session.set_read_timeout(Some(self.limits.body_timeout));
            let arrived = HeaderArrived::default();
            session.set_connection_user_context(Some(Box::new(arrived.clone())));
            let header_deadline = async {
                tokio::time::sleep(deadline).await;
                if arrived.arrived() {
                    std::future::pending::<()>().await;
                }
            };
            let reused = tokio::select! {
                reused = self.proxy.process_new_http(session, shutdown) => reused,
                () = header_deadline => {
                    self.metrics.timeout(kind);
                    tracing::debug!(kind = kind.label(), "client connection closed: no request header in time");
                    return None;
                }
            };
            let (stream, settings) = reused?.consume();
            session = ServerSession::new_http1(stream);
            if let Some(settings) = settings {
                settings.apply_to_session(&mut session);
            }
            kind = TimeoutKind::Idle;
        }
    }

    async fn cleanup(&self) {
        self.proxy.http_cleanup().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_refusal_is_a_complete_http_answer_that_closes() {
        let text = String::from_utf8(too_many_connections_response()).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 503 "));
        assert!(head.contains("connection: close"));
        assert!(head.contains(&format!("content-length: {}", body.len())));
        let json: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(json["error"]["code"], -32007);
    }

    #[test]
    fn pingoras_per_read_bound_comes_after_the_deadline() {
        assert_eq!(per_read_bound(Duration::from_secs(1)), 2);
        assert_eq!(per_read_bound(Duration::from_secs(60)), 61);
    }
}
