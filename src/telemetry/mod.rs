//! Metrics (Prometheus), logs (tracing) and audit events (`audit`). Metric handles are
//! created once at start-up; the request path only increments them.

pub mod audit;
pub mod budget;
pub mod client;
pub mod logging;
pub mod metrics;

pub use metrics::{Metrics, RouteMetrics};
