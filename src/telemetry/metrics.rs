//! The Prometheus registry and every metric family of DESIGN.md that the gateway records.
//! Names and labels are the contract for dashboards and alerts.

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

/// Request-duration buckets, in seconds: sub-millisecond proxy hops up to long tool calls.
const DURATION_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0, 300.0,
];

/// Route label for requests that matched no route.
pub const NO_ROUTE: &str = "none";

/// All metric families, registered in one registry.
pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    duration: HistogramVec,
    upstream_errors: IntCounterVec,
    active_streams: IntGaugeVec,
    auth_failures: IntCounterVec,
}

/// Handles for one route, resolved once so the request path does no label lookups for them.
#[derive(Clone)]
pub struct RouteMetrics {
    pub name: String,
    pub duration: prometheus::Histogram,
    pub active_streams: IntGauge,
    requests: IntCounterVec,
    upstream_errors: IntCounterVec,
    auth_failures: IntCounterVec,
}

impl RouteMetrics {
    pub fn auth_failure(&self, reason: &str) {
        self.auth_failures
            .with_label_values(&[self.name.as_str(), reason])
            .inc();
    }

    pub fn request(&self, method: &str, status: u16) {
        let mut code = itoa::Buffer::new();
        self.requests
            .with_label_values(&[self.name.as_str(), method, code.format(status)])
            .inc();
    }

    pub fn upstream_error(&self, kind: &str) {
        self.upstream_errors
            .with_label_values(&[self.name.as_str(), kind])
            .inc();
    }
}

impl Metrics {
    pub fn new() -> Result<Metrics, prometheus::Error> {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new(
                "drawbridge_requests_total",
                "Requests answered, by route, HTTP method and status.",
            ),
            &["route", "method", "status"],
        )?;
        let duration = HistogramVec::new(
            HistogramOpts::new(
                "drawbridge_request_duration_seconds",
                "Time from request start to the end of the response (whole stream for SSE).",
            )
            .buckets(DURATION_BUCKETS.to_vec()),
            &["route"],
        )?;
        let upstream_errors = IntCounterVec::new(
            Opts::new(
                "drawbridge_upstream_errors_total",
                "Failures talking to upstreams, by kind.",
            ),
            &["route", "kind"],
        )?;
        let active_streams = IntGaugeVec::new(
            Opts::new(
                "drawbridge_active_streams",
                "Event streams (SSE responses) open now.",
            ),
            &["route"],
        )?;
        let auth_failures = IntCounterVec::new(
            Opts::new(
                "drawbridge_auth_failures_total",
                "Requests refused by authentication, by route and reason.",
            ),
            &["route", "reason"],
        )?;
        let build_info = IntGaugeVec::new(
            Opts::new(
                "drawbridge_build_info",
                "Always 1; labels say which build runs.",
            ),
            &["version"],
        )?;
        build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(duration.clone()))?;
        registry.register(Box::new(upstream_errors.clone()))?;
        registry.register(Box::new(active_streams.clone()))?;
        registry.register(Box::new(auth_failures.clone()))?;
        registry.register(Box::new(build_info))?;
        Ok(Metrics {
            registry,
            requests,
            duration,
            upstream_errors,
            active_streams,
            auth_failures,
        })
    }

    /// Handles for a route (or for [`NO_ROUTE`]).
    pub fn for_route(&self, name: &str) -> RouteMetrics {
        RouteMetrics {
            name: name.to_string(),
            duration: self.duration.with_label_values(&[name]),
            active_streams: self.active_streams.with_label_values(&[name]),
            requests: self.requests.clone(),
            upstream_errors: self.upstream_errors.clone(),
            auth_failures: self.auth_failures.clone(),
        }
    }

    /// The registry, for modules that own metric families of their own.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(8 * 1024);
        let encoder = TextEncoder::new();
        if let Err(e) = encoder.encode(&self.registry.gather(), &mut out) {
            tracing::error!(error = %e, "failed to encode metrics");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn route_handles_record_into_the_registry() {
        let m = Metrics::new().unwrap();
        let r = m.for_route("everything");
        r.request("POST", 200);
        r.request("POST", 200);
        r.upstream_error("connect");
        r.active_streams.inc();
        r.duration.observe(0.01);
        let text = String::from_utf8(m.render()).unwrap();
        assert!(
            text.contains(
                r#"drawbridge_requests_total{method="POST",route="everything",status="200"} 2"#
            ),
            "{text}"
        );
        assert!(text
            .contains(r#"drawbridge_upstream_errors_total{kind="connect",route="everything"} 1"#));
        assert!(text.contains(r#"drawbridge_active_streams{route="everything"} 1"#));
        assert!(text.contains(r#"drawbridge_request_duration_seconds_count{route="everything"} 1"#));
        assert!(text.contains("drawbridge_build_info{version="));
    }
}
