//! JOSE vocabulary the gateway shares between modules: the JWS algorithms it verifies
//! access tokens with ([`Algorithm`]), how a `typ` media type is compared
//! ([`normalize_media_type`]), and its own private key for `private_key_jwt`
//! ([`SigningKey`]).
//!
//! Owns these types and their parsing, at the crate root because `config` parses them
//! when it validates `gateway.yaml` (an unknown algorithm or a bad key is a config error)
//! while `auth` verifies tokens with them and `exchange` signs client assertions with
//! them. Does not own verifying a token (`auth::jwt`) or building an assertion
//! (`exchange`). Pure: no I/O.

use std::fmt;
use std::sync::Arc;

use ring::rand::SystemRandom;
use ring::signature::{
    EcdsaKeyPair, RsaKeyPair, ECDSA_P256_SHA256_FIXED_SIGNING, RSA_PKCS1_SHA256,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::PrivateKeyDer;

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

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SigningKey({})", self.algorithm())
    }
}
