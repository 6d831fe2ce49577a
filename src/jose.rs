//! JOSE vocabulary the gateway shares between modules: the JWS algorithms it verifies
//! access tokens with ([`Algorithm`]), how a `typ` media type is compared
//! ([`normalize_media_type`]), and its own private key for `private_key_jwt`
//! ([`SigningKey`]), with the SHA-256 thumbprint of its certificate when the
//! authorization server identifies the key by it (Entra ID's `x5t#S256`).
//!
//! Owns these types and their parsing, at the crate root because `config` parses them
//! when it validates `gateway.yaml` (an unknown algorithm or a bad key is a config error)
//! while `auth` verifies tokens with them and `exchange` signs client assertions with
//! them. Does not own verifying a token (`auth::jwt`) or building an assertion
//! (`exchange`). Pure: no I/O.

use std::fmt;
use std::sync::Arc;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ring::rand::SystemRandom;
use ring::signature::KeyPair as _;
use ring::signature::{
    EcdsaKeyPair, RsaKeyPair, ECDSA_P256_SHA256_FIXED_SIGNING, RSA_PKCS1_SHA256,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// Signature algorithms drawbridge can verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Algorithm {
    RS256,
    PS256,
    ES256,
    EdDSA,
}

impl Algorithm {
    pub const DEFAULT: [Algorithm; 4] = [
        Algorithm::RS256,
        Algorithm::PS256,
        Algorithm::ES256,
        Algorithm::EdDSA,
    ];

    /// Parses a JOSE `alg` name; `None` for anything not supported (including `none`
    /// and the HMAC family, which are never acceptable for access tokens here).
    pub fn from_name(name: &str) -> Option<Algorithm> {
        match name {
            "RS256" => Some(Algorithm::RS256),
            "PS256" => Some(Algorithm::PS256),
            "ES256" => Some(Algorithm::ES256),
            "EdDSA" => Some(Algorithm::EdDSA),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Algorithm::RS256 => "RS256",
            Algorithm::PS256 => "PS256",
            Algorithm::ES256 => "ES256",
            Algorithm::EdDSA => "EdDSA",
        }
    }
}

/// A `typ` media type as compared: lower-case, without an `application/` prefix
/// (RFC 7515 §4.1.9).
pub fn normalize_media_type(typ: &str) -> String {
    let lower = typ.trim().to_ascii_lowercase();
    match lower.strip_prefix("application/") {
        Some(rest) => rest.to_string(),
        None => lower,
    }
}

/// A private key for `private_key_jwt`: RSA (RS256) or EC P-256 (ES256), decoded with
/// `ring`. `Debug` names the algorithm only; clones share the key.
#[derive(Clone)]
pub struct SigningKey {
    inner: Arc<KeyPair>,
    rng: SystemRandom,
    /// Base64url SHA-256 of the DER certificate of this key (`x5t#S256`, RFC 7515
    /// §4.1.8), when one was given: [`SigningKey::with_certificate`].
    certificate_thumbprint: Option<Arc<str>>,
}

enum KeyPair {
    Rsa(RsaKeyPair),
    EcP256(EcdsaKeyPair),
}

/// Why a private key could not be loaded. Never contains key material.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyError {
    /// No `PRIVATE KEY` / `RSA PRIVATE KEY` block in the PEM text.
    NoKey,
    /// `EC PRIVATE KEY` (SEC1): convert with `openssl pkcs8 -topk8 -nocrypt`.
    Sec1NotSupported,
    /// A key block that is neither RSA (2048–8192 bits) nor EC P-256.
    Unsupported,
}

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyError::NoKey => f.write_str("no PKCS#8 private key in the PEM text"),
            KeyError::Sec1NotSupported => {
                f.write_str("SEC1 EC key: convert it to PKCS#8 (openssl pkcs8 -topk8 -nocrypt)")
            }
            KeyError::Unsupported => {
                f.write_str("key is neither RSA (2048-8192 bits) nor EC P-256")
            }
        }
    }
}

impl std::error::Error for KeyError {}

impl SigningKey {
    /// Reads the first private key in `pem`: PKCS#8 (`PRIVATE KEY`, RSA or EC P-256) or
    /// PKCS#1 (`RSA PRIVATE KEY`). Encrypted keys are not supported.
    pub fn from_pem(pem: &str) -> Result<SigningKey, KeyError> {
        let rng = SystemRandom::new();
        // Private-key blocks only; other blocks (certificates, …) are skipped, and text
        // that is not PEM at all ends the search.
        for block in PrivateKeyDer::pem_slice_iter(pem.as_bytes()) {
            let Ok(key) = block else {
                return Err(KeyError::NoKey);
            };
            let inner = match &key {
                PrivateKeyDer::Pkcs8(der) => {
                    let der = der.secret_pkcs8_der();
                    if let Ok(rsa) = RsaKeyPair::from_pkcs8(der) {
                        KeyPair::Rsa(rsa)
                    } else if let Ok(ec) =
                        EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, der, &rng)
                    {
                        KeyPair::EcP256(ec)
                    } else {
                        return Err(KeyError::Unsupported);
                    }
                }
                PrivateKeyDer::Pkcs1(der) => RsaKeyPair::from_der(der.secret_pkcs1_der())
                    .map(KeyPair::Rsa)
                    .map_err(|_| KeyError::Unsupported)?,
                PrivateKeyDer::Sec1(_) => return Err(KeyError::Sec1NotSupported),
                _ => continue,
            };
            return Ok(SigningKey {
                inner: Arc::new(inner),
                rng,
                certificate_thumbprint: None,
            });
        }
        Err(KeyError::NoKey)
    }

    /// The JWS `alg` this key signs with.
    pub fn algorithm(&self) -> &'static str {
        match *self.inner {
            KeyPair::Rsa(_) => "RS256",
            KeyPair::EcP256(_) => "ES256",
        }
    }

    /// The JWS signature of `message` (RS256: PKCS#1 v1.5; ES256: the fixed `r || s`).
    pub fn sign(&self, message: &[u8]) -> Option<Vec<u8>> {
        match &*self.inner {
            KeyPair::Rsa(key) => {
                let mut signature = vec![0; key.public().modulus_len()];
                key.sign(&RSA_PKCS1_SHA256, &self.rng, message, &mut signature)
                    .ok()?;
                Some(signature)
            }
            // The FIXED encoding (r || s) is what JWS ES256 uses.
            KeyPair::EcP256(key) => key
                .sign(&self.rng, message)
                .ok()
                .map(|s| s.as_ref().to_vec()),
        }
    }
}

/// Why a certificate could not be paired with a signing key. Never contains key material.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CertificateError {
    /// No readable `CERTIFICATE` block in the PEM text.
    NoCertificate,
    /// The certificate's public key is not the private key's.
    KeyMismatch,
}

impl fmt::Display for CertificateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CertificateError::NoCertificate => f.write_str("no X.509 certificate in the PEM text"),
            CertificateError::KeyMismatch => {
                f.write_str("the certificate is not the private key's (its public key differs)")
            }
        }
    }
}

impl std::error::Error for CertificateError {}

impl SigningKey {
    /// The same key, paired with its certificate (the first `CERTIFICATE` block of
    /// `pem`): refused unless the certificate's public key is this key's. Assertions then
    /// carry the certificate's SHA-256 thumbprint as `x5t#S256`.
    pub fn with_certificate(mut self, pem: &str) -> Result<SigningKey, CertificateError> {
        let der = CertificateDer::pem_slice_iter(pem.as_bytes())
            .next()
            .and_then(Result::ok)
            .ok_or(CertificateError::NoCertificate)?;
        let (_, certificate) = x509_parser::parse_x509_certificate(der.as_ref())
            .map_err(|_| CertificateError::NoCertificate)?;
        let public: &[u8] = match &*self.inner {
            KeyPair::Rsa(key) => key.public().as_ref(),
            KeyPair::EcP256(key) => key.public_key().as_ref(),
        };
        if certificate.public_key().subject_public_key.data.as_ref() != public {
            return Err(CertificateError::KeyMismatch);
        }
        let digest = ring::digest::digest(&ring::digest::SHA256, der.as_ref());
        let thumbprint = URL_SAFE_NO_PAD.encode(digest.as_ref());
        self.certificate_thumbprint = Some(Arc::from(thumbprint));
        Ok(self)
    }

    /// The certificate's `x5t#S256`, if the key was paired with one.
    pub fn certificate_thumbprint(&self) -> Option<&str> {
        self.certificate_thumbprint.as_deref()
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SigningKey({})", self.algorithm())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A key and its self-signed certificate, as PEM.
    fn key_and_certificate() -> (String, String, Vec<u8>) {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["drawbridge".to_string()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        (key.serialize_pem(), cert.pem(), cert.der().to_vec())
    }

    #[test]
    fn a_certificate_names_its_key_by_sha256_thumbprint() {
        let (key_pem, cert_pem, der) = key_and_certificate();
        let key = SigningKey::from_pem(&key_pem).unwrap();
        assert_eq!(key.certificate_thumbprint(), None);
        let key = key.with_certificate(&cert_pem).unwrap();
        let expected = URL_SAFE_NO_PAD.encode(ring::digest::digest(&ring::digest::SHA256, &der));
        assert_eq!(key.certificate_thumbprint(), Some(expected.as_str()));
    }

    #[test]
    fn another_keys_certificate_or_none_is_refused() {
        let (key_pem, _, _) = key_and_certificate();
        let (_, other_cert, _) = key_and_certificate();
        let key = SigningKey::from_pem(&key_pem).unwrap();
        assert_eq!(
            key.clone().with_certificate(&other_cert).unwrap_err(),
            CertificateError::KeyMismatch
        );
        assert_eq!(
            key.with_certificate(&key_pem).unwrap_err(),
            CertificateError::NoCertificate
        );
    }
}
