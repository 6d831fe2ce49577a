//! Metrics (Prometheus), logs (tracing) and audit events (`audit`). Metric handles are
//! created once at start-up; the request path only increments them.
//!
//! Audit events are typed with the values of the modules they record (`auth`, `config`,
//! `exchange`, `mcp`, `policy`), so `telemetry` sits above them: they never import it,
//! and name the handles they count with as traits (`auth::AuthMetrics`,
//! `exchange::ExchangeMetrics`) that [`Metrics`] and [`RouteMetrics`] implement.

pub mod audit;
pub mod budget;
pub mod client;
pub mod ids;
pub mod logging;
pub mod metrics;
pub mod tls;

pub use metrics::{Metrics, RouteMetrics};
