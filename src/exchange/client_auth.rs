//! The gateway's authentication to a token endpoint: the HTTP Basic header of
//! `client_secret_basic` ([`basic_authorization`]), the body fields of
//! `client_secret_post`, and the signed RFC 7523 assertion of `private_key_jwt`. Keys are
//! decoded once, at start-up ([`SigningKey::from_pem`], in `jose`); each request only
//! signs.

use std::time::{SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use http::HeaderValue;
use ring::rand::{SecureRandom, SystemRandom};

use super::ClientAuth;
use crate::jose::SigningKey;
use crate::oauth_client::basic_authorization;

pub const CLIENT_ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// Lifetime of a client assertion. It is used at once, so a minute covers clock skew.
const ASSERTION_LIFETIME_SECS: u64 = 60;

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

/// RFC 7523 §3: `iss` = `sub` = the client, `aud` = the token endpoint, a short `exp`
/// and a random `jti` so that a captured assertion cannot be replayed. A key paired with
/// its certificate names it by `x5t#S256` (how Entra ID finds a certificate credential),
/// and `nbf` is set, as Entra's assertion format lists it.
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
    if let Some(thumbprint) = key.certificate_thumbprint() {
        header["x5t#S256"] = thumbprint.into();
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let mut jti = [0u8; 16];
    SystemRandom::new().fill(&mut jti).ok()?;
    let claims = serde_json::json!({
        "iss": client_id,
        "sub": client_id,
        "aud": endpoint.as_str(),
        "iat": now,
        "nbf": now,
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
