//! The admin listener, on its own address: `/metrics` (Prometheus text format),
//! `/healthz` (the process serves) and `/readyz` (the gateway can serve traffic; later
//! issues add conditions such as "issuer keys fetched").

pub mod listener;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use http::Response;
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;

use crate::telemetry::Metrics;

type Check = Box<dyn Fn() -> bool + Send + Sync>;
type Note = Box<dyn Fn() -> Option<String> + Send + Sync>;

/// Whether the gateway is ready for traffic: its own flag plus every registered check
/// (e.g. "this issuer's keys have been fetched").
#[derive(Default)]
pub struct Readiness {
    ready: AtomicBool,
    checks: Vec<Check>,
    /// Degraded-but-serving conditions, one line each in the `/readyz` body.
    notes: Vec<Note>,
}

impl Readiness {
    /// Adds a condition; call before the readiness is shared.
    pub fn add_check(&mut self, check: impl Fn() -> bool + Send + Sync + 'static) {
        self.checks.push(Box::new(check));
    }

    /// Adds a line the `/readyz` body shows while `note` returns one (the status does not
    /// change); call before the readiness is shared.
    pub fn add_note(&mut self, note: impl Fn() -> Option<String> + Send + Sync + 'static) {
        self.notes.push(Box::new(note));
    }

    /// The `/readyz` body.
    pub fn body(&self, ready: bool) -> Vec<u8> {
        let mut body = String::from(if ready { "ready\n" } else { "not ready\n" });
        for line in self.notes.iter().filter_map(|note| note()) {
            body.push_str(&line);
            body.push('\n');
        }
        body.into_bytes()
    }

    pub fn set(&self, ready: bool) {
        self.ready.store(ready, Ordering::Release);
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire) && self.checks.iter().all(|check| check())
    }
}

pub struct AdminApp {
    pub metrics: Arc<Metrics>,
    pub readiness: Arc<Readiness>,
}

fn respond(status: u16, content_type: &str, body: Vec<u8>) -> Response<Vec<u8>> {
    let mut resp = Response::new(body);
    *resp.status_mut() = http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::OK);
    if let Ok(v) = http::HeaderValue::from_str(content_type) {
        resp.headers_mut().insert(http::header::CONTENT_TYPE, v);
    }
    let len = resp.body().len();
    resp.headers_mut()
        .insert(http::header::CONTENT_LENGTH, http::HeaderValue::from(len));
    resp
}

#[async_trait]
impl ServeHttp for AdminApp {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let path = session.req_header().uri.path();
        match path {
            "/metrics" => respond(
                200,
                "text/plain; version=0.0.4; charset=utf-8",
                self.metrics.render(),
            ),
            "/healthz" => respond(200, "text/plain", b"ok\n".to_vec()),
            "/readyz" if self.readiness.is_ready() => {
                respond(200, "text/plain", self.readiness.body(true))
            }
            "/readyz" => respond(503, "text/plain", self.readiness.body(false)),
            _ => respond(404, "text/plain", b"not found\n".to_vec()),
        }
    }
}
