//! The MCP listener's certificate, for alerts on its expiry: registered only when the
//! listener speaks HTTPS (`tls`).

use prometheus::{IntGauge, Registry};

/// `drawbridge_tls_certificate_expiry_timestamp_seconds`: the served leaf's `notAfter`.
#[derive(Clone)]
pub struct TlsMetrics {
    expiry: IntGauge,
}

impl TlsMetrics {
    pub fn register(registry: &Registry) -> Result<TlsMetrics, prometheus::Error> {
        let expiry = IntGauge::new(
            "drawbridge_tls_certificate_expiry_timestamp_seconds",
            "When the certificate the MCP listener serves expires (its notAfter), in seconds since the Unix epoch.",
        )?;
        registry.register(Box::new(expiry.clone()))?;
        Ok(TlsMetrics { expiry })
    }

    /// The certificate served from now on expires at `not_after`.
    pub fn serving(&self, not_after: i64) {
        self.expiry.set(not_after);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_gauge_reads_the_served_certificates_expiry() {
        let registry = Registry::new();
        let metrics = TlsMetrics::register(&registry).unwrap();
        metrics.serving(1_800_000_000);
        let families = registry.gather();
        let family = families
            .iter()
            .find(|f| f.name() == "drawbridge_tls_certificate_expiry_timestamp_seconds")
            .unwrap();
        assert_eq!(
            family.get_metric()[0].get_gauge().get_value(),
            1_800_000_000.0
        );
    }
}
