//! `tls`: the MCP listener's certificate and key files, read and checked
//! (`config::listener_tls`), and what the rest of the file means next to them.

use super::Checker;
use crate::config::listener_tls::{served_certificate, ListenerTls};
use crate::config::raw::RawListenerTls;
use crate::config::Route;

impl Checker<'_> {
    /// Reads both files (remembered for `--watch`) and checks them as one pair.
    pub(super) fn listener_tls(&mut self, raw: &RawListenerTls) -> Option<ListenerTls> {
        let cert_file = self.expand("tls.cert_file", &raw.cert_file);
        let key_file = self.expand("tls.key_file", &raw.key_file);
        let (cert_file, key_file) = (cert_file?, key_file?);
        let chain = self.tls_file("tls.cert_file", &cert_file);
        // The key is a secret: read like one (a warning when others may read it).
        let key = match self.read_secret("tls.key_file", &key_file) {
            Ok(text) => Some(text),
            Err(e) => {
                self.error("tls.key_file", format!("cannot read `{key_file}`: {e}"));
                None
            }
        };
        let (chain, key) = (chain?, key?);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
        match served_certificate(&chain, key.as_bytes(), now) {
            Ok(certificate) => Some(ListenerTls {
                cert_file: cert_file.into(),
                key_file: key_file.into(),
                certificate,
            }),
            Err(e) if e.is_about_the_key() => {
                self.error("tls.key_file", format!("`{key_file}` {e}"));
                None
            }
            Err(e) => {
                self.error("tls.cert_file", format!("`{cert_file}` {e}"));
                None
            }
        }
    }

    fn tls_file(&mut self, at: &str, path: &str) -> Option<Vec<u8>> {
        match self.read(path) {
            Ok(bytes) => Some(bytes),
            Err(e) => {
                self.error(at, format!("cannot read `{path}`: {e}"));
                None
            }
        }
    }

    /// With `tls`, a route whose `public_url` is `http:` (off loopback) tells clients, in
    /// its metadata and challenges, to use a scheme the listener does not speak.
    ///
    /// The converse (an `https` `public_url` and no `tls` block) is the usual deployment
    /// behind a TLS-terminating load balancer or ingress, so it is not warned about.
    pub(super) fn tls_warnings(&mut self, routes: &[std::sync::Arc<Route>]) {
        for route in routes {
            let Some(url) = route.public_url.as_ref() else {
                continue;
            };
            let loopback = match url.host() {
                Some(url::Host::Domain(d)) => d == "localhost",
                Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
                Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
                None => false,
            };
            if url.scheme() == "http" && !loopback {
                self.warnings.push(format!(
                    "route `{}`: the listener speaks HTTPS (`tls`) but `public_url` is http:, which clients are told to use",
                    route.name
                ));
            }
        }
    }
}
