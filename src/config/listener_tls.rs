//! `tls`: the MCP listener's certificate chain and private key, read from PEM and checked
//! into what the TLS handshake serves ([`ServedCertificate`]).
//!
//! The check is the whole of what can be known before a client connects: the chain
//! parses as X.509, the key parses and is the leaf's (public key compared), and the leaf
//! is inside its validity period. A certificate that fails is refused by start-up and by
//! a reload alike (a reload then keeps serving the previous one). No I/O here: the
//! validator reads the files.

use std::fmt;
use std::sync::Arc;

use pingora::tls::sign::CertifiedKey;
use pingora::tls::CryptoProvider;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// `tls` as checked: where the files are, and what they held when read.
#[derive(Clone)]
pub struct ListenerTls {
    pub cert_file: std::path::PathBuf,
    pub key_file: std::path::PathBuf,
    pub certificate: ServedCertificate,
}

impl fmt::Debug for ListenerTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ListenerTls")
            .field("cert_file", &self.cert_file)
            .field("key_file", &self.key_file)
            .field("certificate", &self.certificate)
            .finish()
    }
}

/// A certificate chain with its private key, ready for rustls, and the facts about the
/// leaf that logs and metrics name.
#[derive(Clone)]
pub struct ServedCertificate {
    key: Arc<CertifiedKey>,
    /// The leaf's serial number in hex (colon-free, lower case): names it in logs.
    pub serial: String,
    /// The leaf's `notAfter`, in seconds since the Unix epoch.
    pub not_after: i64,
}

impl ServedCertificate {
    /// The chain and signing key, as rustls serves them.
    pub fn certified_key(&self) -> Arc<CertifiedKey> {
        self.key.clone()
    }
}

impl fmt::Debug for ServedCertificate {
    // The signing key is never printed.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServedCertificate")
            .field("serial", &self.serial)
            .field("not_after", &self.not_after)
            .finish_non_exhaustive()
    }
}

/// Why a certificate file or key file cannot be served. Messages name no file content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CertificateError {
    /// The certificate file holds no PEM `CERTIFICATE` block.
    NoCertificate,
    /// A `CERTIFICATE` block is not valid PEM or not X.509.
    BadCertificate,
    /// The key file holds no PEM private key.
    NoKey,
    /// The key file holds more than one private key.
    SeveralKeys,
    /// The private key cannot be used for TLS (unsupported or malformed).
    BadKey,
    /// The private key is not the certificate's.
    KeyMismatch,
    /// The certificate's validity ended at this time (seconds since the epoch).
    Expired(i64),
    /// The certificate's validity starts at this time (seconds since the epoch).
    NotYetValid(i64),
}

impl CertificateError {
    /// Whether the error is the key file's (else the certificate file's).
    pub fn is_about_the_key(&self) -> bool {
        matches!(
            self,
            CertificateError::NoKey
                | CertificateError::SeveralKeys
                | CertificateError::BadKey
                | CertificateError::KeyMismatch
        )
    }
}

impl fmt::Display for CertificateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CertificateError::NoCertificate => f.write_str("holds no PEM certificate"),
            CertificateError::BadCertificate => {
                f.write_str("holds a certificate that is not valid PEM X.509")
            }
            CertificateError::NoKey => {
                f.write_str("holds no PEM private key (PKCS#8, PKCS#1 or SEC1)")
            }
            CertificateError::SeveralKeys => f.write_str("holds more than one private key"),
            CertificateError::BadKey => f.write_str(
                "holds a private key TLS cannot use (RSA, ECDSA P-256/P-384 or Ed25519 expected)",
            ),
            CertificateError::KeyMismatch => f.write_str(
                "holds a private key that does not match the certificate in `tls.cert_file`",
            ),
            CertificateError::Expired(at) => {
                write!(f, "holds a certificate that expired at {}", utc(*at))
            }
            CertificateError::NotYetValid(at) => {
                write!(
                    f,
                    "holds a certificate that is not valid before {}",
                    utc(*at)
                )
            }
        }
    }
}

/// Seconds since the epoch as an RFC 3339 UTC time.
fn utc(secs: i64) -> String {
    // Days to a civil date (Howard Hinnant's algorithm), to avoid a date crate for one line.
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// The crypto provider the listener's handshakes use (Pingora installs `ring` as the
/// process default; installing it here first is the same call, and idempotent).
fn provider() -> Option<Arc<CryptoProvider>> {
    pingora::tls::install_default_crypto_provider();
    CryptoProvider::get_default().cloned()
}

/// Checks a PEM certificate chain (leaf first) and its PEM private key at time `now`
/// (seconds since the epoch) and prepares them for serving.
pub fn served_certificate(
    chain_pem: &[u8],
    key_pem: &[u8],
    now: i64,
) -> Result<ServedCertificate, CertificateError> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(chain_pem)
        .collect::<Result<_, _>>()
        .map_err(|_| CertificateError::BadCertificate)?;
    let Some(leaf) = chain.first() else {
        return Err(CertificateError::NoCertificate);
    };
    for der in &chain {
        x509_parser::parse_x509_certificate(der).map_err(|_| CertificateError::BadCertificate)?;
    }
    let (_, parsed) =
        x509_parser::parse_x509_certificate(leaf).map_err(|_| CertificateError::BadCertificate)?;
    let validity = parsed.validity();
    let not_before = validity.not_before.timestamp();
    let not_after = validity.not_after.timestamp();
    let serial = parsed
        .raw_serial()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();

    let mut keys = PrivateKeyDer::pem_slice_iter(key_pem);
    let key = match keys.next() {
        None => return Err(CertificateError::NoKey),
        Some(Err(_)) => return Err(CertificateError::BadKey),
        Some(Ok(key)) => key,
    };
    if keys.next().is_some() {
        return Err(CertificateError::SeveralKeys);
    }
    let provider = provider().ok_or(CertificateError::BadKey)?;
    let signing_key = provider
        .key_provider
        .load_private_key(key)
        .map_err(|_| CertificateError::BadKey)?;
    let certified = CertifiedKey::new(chain, signing_key);
    certified
        .keys_match()
        .map_err(|_| CertificateError::KeyMismatch)?;

    if now > not_after {
        return Err(CertificateError::Expired(not_after));
    }
    if now < not_before {
        return Err(CertificateError::NotYetValid(not_before));
    }
    Ok(ServedCertificate {
        key: Arc::new(certified),
        serial,
        not_after,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Issued {
        chain: String,
        key: String,
    }

    fn issue(not_before: (i32, u8, u8), not_after: (i32, u8, u8)) -> Issued {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
        params.not_before = rcgen::date_time_ymd(not_before.0, not_before.1, not_before.2);
        params.not_after = rcgen::date_time_ymd(not_after.0, not_after.1, not_after.2);
        params.serial_number = Some(rcgen::SerialNumber::from_slice(&[0x0a, 0xbc]));
        let cert = params.self_signed(&key).unwrap();
        Issued {
            chain: cert.pem(),
            key: key.serialize_pem(),
        }
    }

    /// 2026-01-01T00:00:00Z.
    const NOW: i64 = 1_767_225_600;

    #[test]
    fn a_matching_chain_and_key_are_served_with_their_serial_and_expiry() {
        let issued = issue((2025, 1, 1), (2027, 1, 1));
        let served =
            served_certificate(issued.chain.as_bytes(), issued.key.as_bytes(), NOW).unwrap();
        assert_eq!(served.serial, "0abc");
        assert_eq!(utc(served.not_after), "2027-01-01T00:00:00Z");
        assert_eq!(served.certified_key().cert.len(), 1);
        let printed = format!("{served:?}");
        assert!(!printed.contains("PRIVATE"), "{printed}");
    }

    #[test]
    fn a_key_of_another_certificate_is_refused() {
        let one = issue((2025, 1, 1), (2027, 1, 1));
        let other = issue((2025, 1, 1), (2027, 1, 1));
        let err = served_certificate(one.chain.as_bytes(), other.key.as_bytes(), NOW).unwrap_err();
        assert_eq!(err, CertificateError::KeyMismatch);
        assert!(err.is_about_the_key());
    }

    #[test]
    fn an_expired_or_not_yet_valid_certificate_is_refused() {
        let old = issue((2024, 1, 1), (2025, 6, 1));
        let err = served_certificate(old.chain.as_bytes(), old.key.as_bytes(), NOW).unwrap_err();
        assert_eq!(
            err.to_string(),
            "holds a certificate that expired at 2025-06-01T00:00:00Z"
        );
        assert!(!err.is_about_the_key());
        let future = issue((2026, 6, 1), (2027, 1, 1));
        let err =
            served_certificate(future.chain.as_bytes(), future.key.as_bytes(), NOW).unwrap_err();
        assert_eq!(err, CertificateError::NotYetValid(1_780_272_000));
    }

    #[test]
    fn files_without_the_right_pem_blocks_are_refused() {
        let issued = issue((2025, 1, 1), (2027, 1, 1));
        let swapped = served_certificate(issued.key.as_bytes(), issued.chain.as_bytes(), NOW);
        assert_eq!(swapped.unwrap_err(), CertificateError::NoCertificate);
        let no_key = served_certificate(issued.chain.as_bytes(), b"", NOW);
        assert_eq!(no_key.unwrap_err(), CertificateError::NoKey);
        let two_keys = format!("{}{}", issued.key, issued.key);
        let several = served_certificate(issued.chain.as_bytes(), two_keys.as_bytes(), NOW);
        assert_eq!(several.unwrap_err(), CertificateError::SeveralKeys);
        let garbage = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        let bad = served_certificate(garbage.as_bytes(), issued.key.as_bytes(), NOW);
        assert_eq!(bad.unwrap_err(), CertificateError::BadCertificate);
    }

    #[test]
    fn times_print_as_utc() {
        assert_eq!(utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(utc(NOW), "2026-01-01T00:00:00Z");
        assert_eq!(utc(951_782_400 + 3_661), "2000-02-29T01:01:01Z");
    }
}
