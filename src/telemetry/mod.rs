//! Metrics (Prometheus), logs (tracing) and, later, audit events. Metric handles are
//! created once at start-up; the request path only increments them.

pub mod client;
pub mod logging;
pub mod metrics;

pub use metrics::{Metrics, RouteMetrics};
