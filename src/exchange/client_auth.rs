//! The gateway's authentication to a token endpoint: the HTTP Basic header of
//! `client_secret_basic`, the body fields of `client_secret_post`, and the signed
//! RFC 7523 assertion of `private_key_jwt`. Keys are decoded once, at start-up
//! ([`SigningKey::from_pem`]); each request only signs.

use std::fmt;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use http::HeaderValue;
use ring::rand::{SecureRandom, SystemRandom};
use ring::signature::{
    EcdsaKeyPair, RsaKeyPair, ECDSA_P256_SHA256_FIXED_SIGNING, RSA_PKCS1_SHA256,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::PrivateKeyDer;
use url::form_urlencoded;

use super::ClientAuth;

pub const CLIENT_ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// Lifetime of a client assertion. It is used at once, so a minute covers clock skew.
const ASSERTION_LIFETIME_SECS: u64 = 60;

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

    fn sign(&self, message: &[u8]) -> Option<Vec<u8>> {
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

/// What client authentication adds to one token request.
pub struct Credentials {
    /// `Authorization` header value (client_secret_basic), marked sensitive.
    pub authorization: Option<HeaderValue>,
    /// Body fields.
    pub fields: Vec<(&'static str, String)>,
}

impl ClientAuth {
    /// The credentials for one request to `endpoint`. Fails only if signing fails.
    pub(super) fn credentials(&self, endpoint: &url::Url) -> Option<Credentials> {
        match self {
            ClientAuth::Basic { client_id, secret } => Some(Credentials {
                authorization: Some(basic_authorization(client_id, secret.expose())?),
                fields: Vec::new(),
            }),
            ClientAuth::Post { client_id, secret } => Some(Credentials {
                authorization: None,
                fields: vec![
                    ("client_id", client_id.clone()),
                    ("client_secret", secret.expose().to_string()),
                ],
            }),
            ClientAuth::PrivateKeyJwt {
                client_id,
                key,
                kid,
            } => {
                let assertion = client_assertion(client_id, key, kid.as_deref(), endpoint)?;
                Some(Credentials {
                    authorization: None,
                    fields: vec![
                        ("client_id", client_id.clone()),
                        ("client_assertion_type", CLIENT_ASSERTION_TYPE.to_string()),
                        ("client_assertion", assertion),
                    ],
                })
            }
        }
    }
}

/// The `Authorization: Basic` value of a confidential client (RFC 6749 §2.3.1): each
/// part is form-urlencoded before Basic encoding, so a ':' (or '%') in the id or the
/// secret cannot move the split point. Marked sensitive.
pub fn basic_authorization(client_id: &str, secret: &str) -> Option<HeaderValue> {
    let pair = format!("{}:{}", form_encode(client_id), form_encode(secret));
    let mut value = HeaderValue::from_str(&format!("Basic {}", STANDARD.encode(pair))).ok()?;
    value.set_sensitive(true);
    Some(value)
}

fn form_encode(text: &str) -> String {
    form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

/// RFC 7523 §3: `iss` = `sub` = the client, `aud` = the token endpoint, a short `exp`
/// and a random `jti` so that a captured assertion cannot be replayed.
fn client_assertion(
    client_id: &str,
    key: &SigningKey,
    kid: Option<&str>,
    endpoint: &url::Url,
) -> Option<String> {
    let mut header = serde_json::json!({ "alg": key.algorithm(), "typ": "JWT" });
    if let Some(kid) = kid {
        header["kid"] = kid.into();
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let mut jti = [0u8; 16];
    key.rng.fill(&mut jti).ok()?;
    let claims = serde_json::json!({
        "iss": client_id,
        "sub": client_id,
        "aud": endpoint.as_str(),
        "iat": now,
        "exp": now + ASSERTION_LIFETIME_SECS,
        "jti": URL_SAFE_NO_PAD.encode(jti),
    });
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(&header).ok()?),
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims).ok()?)
    );
    let signature = key.sign(input.as_bytes())?;
    Some(format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature)))
}
