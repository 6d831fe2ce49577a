//! Client-connection metrics: connections open, connections refused at the limit, and
//! connections or requests cut by a client timeout. Registered in the gateway's registry
//! by the server that owns the listener.

use prometheus::{IntCounter, IntCounterVec, IntGauge, Opts, Registry};

/// Which client timeout fired (the `kind` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeoutKind {
    /// A new connection sent no whole request header within `limits.header_timeout`.
    Header,
    /// A kept-alive connection sent no next request within `limits.client_idle_timeout`.
    Idle,
    /// A request body did not arrive within `limits.body_timeout`.
    Body,
}

impl TimeoutKind {
    pub fn label(self) -> &'static str {
        match self {
            TimeoutKind::Header => "header",
            TimeoutKind::Idle => "idle",
            TimeoutKind::Body => "body",
        }
    }
}

/// Handles to the client-connection families.
#[derive(Clone)]
pub struct ClientMetrics {
    timeouts: IntCounterVec,
    /// `drawbridge_connections_refused_total`: refused at `limits.max_connections`.
    pub refused: IntCounter,
    /// `drawbridge_client_connections`: client connections open now.
    pub open: IntGauge,
}

impl ClientMetrics {
    pub fn register(registry: &Registry) -> Result<ClientMetrics, prometheus::Error> {
        let timeouts = IntCounterVec::new(
            Opts::new(
                "drawbridge_client_timeouts_total",
                "Client connections or requests ended by a client timeout, by kind (header, idle, body).",
            ),
            &["kind"],
        )?;
        let refused = IntCounter::new(
            "drawbridge_connections_refused_total",
            "Client connections refused (503, closed) because limits.max_connections were open.",
        )?;
        let open = IntGauge::new(
            "drawbridge_client_connections",
            "Client connections open on the MCP listener.",
        )?;
        registry.register(Box::new(timeouts.clone()))?;
        registry.register(Box::new(refused.clone()))?;
        registry.register(Box::new(open.clone()))?;
        // Every kind shows from the start, at 0, so alerts on rates work at once.
        for kind in [TimeoutKind::Header, TimeoutKind::Idle, TimeoutKind::Body] {
            timeouts.with_label_values(&[kind.label()]);
        }
        Ok(ClientMetrics {
            timeouts,
            refused,
            open,
        })
    }

    pub fn timeout(&self, kind: TimeoutKind) {
        self.timeouts.with_label_values(&[kind.label()]).inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_register_once_with_every_kind_at_zero() {
        let registry = Registry::new();
        let m = ClientMetrics::register(&registry).unwrap();
        m.timeout(TimeoutKind::Body);
        let families = registry.gather();
        let timeouts = families
            .iter()
            .find(|f| f.name() == "drawbridge_client_timeouts_total")
            .unwrap();
        assert_eq!(timeouts.get_metric().len(), 3);
        assert!(ClientMetrics::register(&registry).is_err());
    }
}
