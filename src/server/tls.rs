//! HTTPS on the MCP listener: Pingora's rustls listener, with the certificate served from
//! a slot that a reload swaps.
//!
//! Pingora's `TlsSettings` takes either certificate paths (read once, when the listener is
//! built) or a rustls certificate resolver, asked for a certificate at every handshake.
//! drawbridge gives it a resolver, [`CertificateSlot`], that answers with whatever
//! certificate the slot holds. A reload (SIGHUP, `--watch`) checks the new files whole
//! (`config::listener_tls`) and only then swaps them in: handshakes from then on get the
//! new certificate; connections already open keep theirs (TLS does not re-key on a
//! certificate change) and are not dropped. A file that fails its checks leaves the old
//! certificate in place.
//!
//! ALPN offers `h2` then `http/1.1`; TLS 1.2 and 1.3 only (Pingora's rustls listener
//! builds its `ServerConfig` with exactly those versions).

use std::sync::Arc;

use arc_swap::ArcSwap;
use pingora::listeners::tls::TlsSettings;
use pingora::tls::sign::CertifiedKey;
use pingora::tls::{ClientHello, ResolvesServerCert};

use crate::config::listener_tls::ServedCertificate;

/// The certificate the listener serves now; swapped whole by a reload.
pub struct CertificateSlot {
    current: ArcSwap<CertifiedKey>,
}

impl std::fmt::Debug for CertificateSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CertificateSlot")
    }
}

impl CertificateSlot {
    pub fn new(first: &ServedCertificate) -> Arc<CertificateSlot> {
        Arc::new(CertificateSlot {
            current: ArcSwap::new(first.certified_key()),
        })
    }

    /// Serves `next` to every handshake from now on.
    pub fn replace(&self, next: &ServedCertificate) {
        self.current.store(next.certified_key());
    }
}

impl ResolvesServerCert for CertificateSlot {
    /// One certificate for every name: SNI is not consulted.
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }
}

/// The listener's TLS settings: the slot's certificate, ALPN `h2` and `http/1.1`.
pub fn settings(slot: Arc<CertificateSlot>) -> Result<TlsSettings, String> {
    // No paths: with a resolver set, Pingora ignores them and reads no file.
    let mut settings =
        TlsSettings::intermediate("", "").map_err(|e| format!("TLS listener: {e}"))?;
    settings.set_cert_resolver(slot);
    settings.enable_h2();
    Ok(settings)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::listener_tls::served_certificate;

    fn certificate(serial: u8) -> ServedCertificate {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
        params.serial_number = Some(rcgen::SerialNumber::from_slice(&[serial]));
        let cert = params.self_signed(&key).unwrap();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        served_certificate(cert.pem().as_bytes(), key.serialize_pem().as_bytes(), now).unwrap()
    }

    #[test]
    fn the_slot_serves_what_was_put_in_last() {
        let first = certificate(1);
        let second = certificate(2);
        let slot = CertificateSlot::new(&first);
        let leaf = |slot: &CertificateSlot| slot.current.load().cert[0].as_ref().to_vec();
        assert_eq!(leaf(&slot), first.certified_key().cert[0].as_ref());
        slot.replace(&second);
        assert_eq!(leaf(&slot), second.certified_key().cert[0].as_ref());
        assert_ne!(leaf(&slot), first.certified_key().cert[0].as_ref());
    }
}
