//! JWT access tokens (RFC 7515 compact JWS, RFC 9068 claims), verified the RFC 8725 way:
//! the algorithm comes from an allow-list of asymmetric algorithms, never from the token
//! alone; the key is chosen by `kid` and must be of the algorithm's family; `none` and
//! every HMAC algorithm are refused before any key is looked at.
//!
//! Pure functions over bytes and JSON: fetching keys is `issuer`'s job.

use crate::jose::{normalize_media_type, Algorithm};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ring::signature::{self, UnparsedPublicKey};
use serde::Deserialize;

/// Why a token is not acceptable. `reason()` is the metric label; `description()` the
/// text for `error_description` (never contains token material).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenError {
    Malformed,
    UnsupportedAlgorithm,
    UnknownKey,
    BadSignature,
    Expired,
    NotYetValid,
    IssuedInFuture,
    WrongIssuer,
    WrongAudience,
    MissingClaim,
    /// A claim the issuer's mapping reads (subject, scopes, permissions) has a type it
    /// cannot have (a number where a string or an array of strings belongs).
    InvalidClaim,
    Inactive,
    IssuerUnavailable,
    /// A verified token of another kind: an OpenID Connect ID token, a refresh token, or
    /// a JWT whose `typ` the issuer is not configured to accept.
    WrongTokenType,
    /// Too many introspection calls to the issuer are in flight: refused with 503 rather
    /// than queued (a flood of junk tokens must not reach the authorization server).
    IntrospectionBusy,
}

impl TokenError {
    pub fn reason(self) -> &'static str {
        match self {
            TokenError::Malformed => "malformed",
            TokenError::UnsupportedAlgorithm => "unsupported_algorithm",
            TokenError::UnknownKey => "unknown_key",
            TokenError::BadSignature => "bad_signature",
            TokenError::Expired => "expired",
            TokenError::NotYetValid => "not_yet_valid",
            TokenError::IssuedInFuture => "issued_in_future",
            TokenError::WrongIssuer => "wrong_issuer",
            TokenError::WrongAudience => "wrong_audience",
            TokenError::MissingClaim => "missing_claim",
            TokenError::InvalidClaim => "invalid_claim",
            TokenError::Inactive => "inactive",
            TokenError::IssuerUnavailable => "issuer_unavailable",
            TokenError::WrongTokenType => "wrong_token_type",
            TokenError::IntrospectionBusy => "introspection_busy",
        }
    }

    pub fn description(self) -> &'static str {
        match self {
            TokenError::Malformed => "the access token is malformed",
            TokenError::UnsupportedAlgorithm => "the token's signing algorithm is not accepted",
            TokenError::UnknownKey => "the token was signed with an unknown key",
            TokenError::BadSignature => "the token signature is invalid",
            TokenError::Expired => "the access token expired",
            TokenError::NotYetValid => "the access token is not valid yet",
            TokenError::IssuedInFuture => "the access token was issued in the future",
            TokenError::WrongIssuer => "the token's issuer is not accepted on this resource",
            TokenError::WrongAudience => "the access token is not meant for this resource",
            TokenError::MissingClaim => "the access token lacks a required claim",
            TokenError::InvalidClaim => "the access token has a claim of an unexpected type",
            TokenError::Inactive => "the access token is not active",
            TokenError::IssuerUnavailable => "the token's issuer cannot be reached to verify it",
            TokenError::WrongTokenType => "the token is not an access token",
            TokenError::IntrospectionBusy => {
                "too many token checks are in progress; try again shortly"
            }
        }
    }
}

/// One verification key from a JWKS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyingKey {
    pub kid: Option<String>,
    /// The JWK's own `alg`, if it pins one.
    pub alg: Option<Algorithm>,
    pub material: KeyMaterial,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyMaterial {
    /// Big-endian modulus and exponent.
    Rsa {
        n: Vec<u8>,
        e: Vec<u8>,
    },
    /// Uncompressed P-256 point (0x04 || x || y).
    EcP256 {
        point: Vec<u8>,
    },
    Ed25519 {
        x: Vec<u8>,
    },
}

impl VerifyingKey {
    fn fits(&self, alg: Algorithm) -> bool {
        let family = matches!(
            (&self.material, alg),
            (KeyMaterial::Rsa { .. }, Algorithm::RS256 | Algorithm::PS256)
                | (KeyMaterial::EcP256 { .. }, Algorithm::ES256)
                | (KeyMaterial::Ed25519 { .. }, Algorithm::EdDSA)
        );
        family && self.alg.is_none_or(|pinned| pinned == alg)
    }

    fn verify(&self, alg: Algorithm, message: &[u8], sig: &[u8]) -> bool {
        match (&self.material, alg) {
            (KeyMaterial::Rsa { n, e }, Algorithm::RS256) => {
                signature::RsaPublicKeyComponents { n, e }
                    .verify(&signature::RSA_PKCS1_2048_8192_SHA256, message, sig)
                    .is_ok()
            }
            (KeyMaterial::Rsa { n, e }, Algorithm::PS256) => {
                signature::RsaPublicKeyComponents { n, e }
                    .verify(&signature::RSA_PSS_2048_8192_SHA256, message, sig)
                    .is_ok()
            }
            (KeyMaterial::EcP256 { point }, Algorithm::ES256) => {
                UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, point)
                    .verify(message, sig)
                    .is_ok()
            }
            (KeyMaterial::Ed25519 { x }, Algorithm::EdDSA) => {
                UnparsedPublicKey::new(&signature::ED25519, x)
                    .verify(message, sig)
                    .is_ok()
            }
            _ => false,
        }
    }
}

/// The signing keys of one issuer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeySet {
    pub keys: Vec<VerifyingKey>,
}

impl KeySet {
    /// The key for `kid` that fits `alg`. A token without `kid` is accepted only when
    /// exactly one key fits, so there is never a guess between keys.
    pub fn find(&self, kid: Option<&str>, alg: Algorithm) -> Option<&VerifyingKey> {
        match kid {
            Some(kid) => self
                .keys
                .iter()
                .find(|k| k.kid.as_deref() == Some(kid) && k.fits(alg)),
            None => {
                let mut fitting = self.keys.iter().filter(|k| k.fits(alg));
                match (fitting.next(), fitting.next()) {
                    (Some(only), None) => Some(only),
                    _ => None,
                }
            }
        }
    }

    pub fn has_kid(&self, kid: &str) -> bool {
        self.keys.iter().any(|k| k.kid.as_deref() == Some(kid))
    }

    /// RFC 8725 §3.1: one algorithm per key. A JWK without `alg` gets the first of the
    /// issuer's `allowed` algorithms its key type can do (an RSA key: RS256 *or* PS256,
    /// never both); a key no allowed algorithm fits is dropped.
    pub fn pin_algorithms(&mut self, allowed: &[Algorithm]) {
        self.keys.retain_mut(|key| {
            if key.alg.is_some() {
                return true;
            }
            key.alg = allowed.iter().copied().find(|a| key.fits(*a));
            key.alg.is_some()
        });
    }
}

#[derive(Deserialize)]
struct RawJwks {
    keys: Vec<RawJwk>,
}

#[derive(Deserialize)]
struct RawJwk {
    kty: String,
    kid: Option<String>,
    #[serde(rename = "use")]
    use_: Option<String>,
    alg: Option<String>,
    crv: Option<String>,
    n: Option<String>,
    e: Option<String>,
    x: Option<String>,
    y: Option<String>,
}

fn b64(field: &Option<String>) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD
        .decode(field.as_deref()?.trim_end_matches('='))
        .ok()
}

/// Parses a JWKS document, keeping the signature keys drawbridge can use and skipping the
/// rest (encryption keys, unsupported curves, keys pinned to other algorithms).
pub fn parse_jwks(json: &[u8]) -> Result<KeySet, String> {
    let raw: RawJwks =
        serde_json::from_slice(json).map_err(|e| format!("not a JWKS document: {e}"))?;
    let keys = raw
        .keys
        .into_iter()
        .filter(|k| k.use_.as_deref().is_none_or(|u| u == "sig"))
        .filter_map(|k| {
            let alg = match k.alg.as_deref() {
                None => None,
                Some(name) => Some(Algorithm::from_name(name)?),
            };
            let material = match (k.kty.as_str(), k.crv.as_deref()) {
                ("RSA", _) => {
                    let n = b64(&k.n)?;
                    let e = b64(&k.e)?;
                    // Below 2048 bits is refused by ring at verification anyway.
                    KeyMaterial::Rsa { n, e }
                }
                ("EC", Some("P-256")) => {
                    let (x, y) = (b64(&k.x)?, b64(&k.y)?);
                    if x.len() != 32 || y.len() != 32 {
                        return None;
                    }
                    let mut point = Vec::with_capacity(65);
                    point.push(0x04);
                    point.extend_from_slice(&x);
                    point.extend_from_slice(&y);
                    KeyMaterial::EcP256 { point }
                }
                ("OKP", Some("Ed25519")) => {
                    let x = b64(&k.x)?;
                    if x.len() != 32 {
                        return None;
                    }
                    KeyMaterial::Ed25519 { x }
                }
                _ => return None,
            };
            Some(VerifyingKey {
                kid: k.kid,
                alg,
                material,
            })
        })
        .collect();
    Ok(KeySet { keys })
}

#[derive(Deserialize)]
struct Header {
    alg: String,
    kid: Option<String>,
    typ: Option<String>,
    crit: Option<serde_json::Value>,
}

/// A token split and decoded, signature not yet checked.
#[derive(Debug)]
pub struct Decoded<'t> {
    pub alg: Algorithm,
    pub kid: Option<String>,
    /// The JOSE `typ` header, as sent.
    pub typ: Option<String>,
    pub claims: Claims,
    /// The payload as sent, for [`Decoded::claims_json`].
    payload: Vec<u8>,
    signing_input: &'t str,
    signature: Vec<u8>,
}

impl Decoded<'_> {
    /// Every claim of the payload, as JSON: what an issuer's claim mapping and claim
    /// rules read. Call it after [`Decoded::verify_with`]: only signed claims count.
    pub fn claims_json(&self) -> Result<serde_json::Value, TokenError> {
        from_json(&self.payload)
    }

    /// Checks the signature with `key`; the key must fit the token's algorithm.
    pub fn verify_with(&self, key: &VerifyingKey) -> Result<(), TokenError> {
        if !key.fits(self.alg) {
            return Err(TokenError::UnknownKey);
        }
        if key.verify(self.alg, self.signing_input.as_bytes(), &self.signature) {
            Ok(())
        } else {
            Err(TokenError::BadSignature)
        }
    }
}

/// The registered claims drawbridge checks in every access token (the types of `scope`,
/// `scp` and the client claims too). Who the caller is and what they were granted is
/// read from the whole payload ([`Decoded::claims_json`]) by `auth::claims`, as the
/// issuer's claim mapping says.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Claims {
    pub iss: Option<String>,
    pub sub: Option<String>,
    #[serde(default, deserialize_with = "string_or_list")]
    pub aud: Vec<String>,
    pub exp: Option<i64>,
    pub nbf: Option<i64>,
    pub iat: Option<i64>,
    pub scope: Option<String>,
    #[serde(default, deserialize_with = "string_or_list")]
    pub scp: Vec<String>,
    pub client_id: Option<String>,
    pub azp: Option<String>,
    /// ID-token claims (OpenID Connect Core §2, §3.1.3.6, §3.3.2.11): never needed by an
    /// access token; read only to recognise ID tokens.
    pub nonce: Option<serde_json::Value>,
    pub at_hash: Option<serde_json::Value>,
    pub c_hash: Option<serde_json::Value>,
    /// Keycloak's own token kind claim (`Bearer`, `ID`, `Refresh`, …).
    pub typ: Option<serde_json::Value>,
}

impl Claims {
    pub fn client(&self) -> Option<&str> {
        self.client_id.as_deref().or(self.azp.as_deref())
    }
}

pub(crate) fn string_or_list<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match Option::<OneOrMany>::deserialize(d)? {
        None => Vec::new(),
        Some(OneOrMany::One(s)) => vec![s],
        Some(OneOrMany::Many(v)) => v,
    })
}

/// True when the token has the shape of a compact JWS (three base64url segments).
pub fn looks_like_jwt(token: &str) -> bool {
    token.bytes().filter(|b| *b == b'.').count() == 2
}

/// A JOSE header or claims set: UTF-8 JSON (RFC 7515 §4, RFC 7519 §7.2). Checked as text
/// first, because serde_json reading bytes skips the members a type ignores without
/// checking them, and would accept a header that is not UTF-8 there.
fn from_json<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, TokenError> {
    let text = std::str::from_utf8(bytes).map_err(|_| TokenError::Malformed)?;
    serde_json::from_str(text).map_err(|_| TokenError::Malformed)
}

/// Splits and decodes a token, refusing any algorithm outside `allowed`.
pub fn decode<'t>(token: &'t str, allowed: &[Algorithm]) -> Result<Decoded<'t>, TokenError> {
    let (signing_input, sig_b64) = token.rsplit_once('.').ok_or(TokenError::Malformed)?;
    let (header_b64, payload_b64) = signing_input.split_once('.').ok_or(TokenError::Malformed)?;
    let header_json = URL_SAFE_NO_PAD
        .decode(header_b64)
        .map_err(|_| TokenError::Malformed)?;
    let header: Header = from_json(&header_json)?;
    if header.crit.is_some() {
        // No critical extensions are understood, so none may be required (RFC 7515 §4.1.11).
        return Err(TokenError::Malformed);
    }
    let alg = Algorithm::from_name(&header.alg)
        .filter(|a| allowed.contains(a))
        .ok_or(TokenError::UnsupportedAlgorithm)?;
    let payload = URL_SAFE_NO_PAD
        .decode(payload_b64)
        .map_err(|_| TokenError::Malformed)?;
    let claims: Claims = from_json(&payload)?;
    let signature = URL_SAFE_NO_PAD
        .decode(sig_b64)
        .map_err(|_| TokenError::Malformed)?;
    if signature.is_empty() {
        return Err(TokenError::Malformed);
    }
    Ok(Decoded {
        alg,
        kid: header.kid,
        typ: header.typ,
        claims,
        payload,
        signing_input,
        signature,
    })
}

/// Keycloak's payload `typ` values of tokens that are not access tokens.
const NOT_ACCESS_TOKEN_KINDS: [&str; 4] = ["id", "refresh", "offline", "logout"];

/// Refuses tokens of another kind, whatever their signature: a JOSE `typ` outside
/// `accepted` (normalised: `at+jwt`, `jwt`; no `typ` counts as `jwt`), an OpenID Connect
/// ID token (`at_hash`/`c_hash`, or a `nonce` with the client itself in `aud`), or a
/// Keycloak ID, refresh, offline or logout token (payload `typ`).
pub fn check_token_type(
    typ: Option<&str>,
    claims: &Claims,
    accepted: &[String],
) -> Result<(), TokenError> {
    let typ = typ.map_or_else(|| "jwt".to_string(), normalize_media_type);
    if !accepted.contains(&typ) {
        return Err(TokenError::WrongTokenType);
    }
    if claims.at_hash.is_some() || claims.c_hash.is_some() {
        return Err(TokenError::WrongTokenType);
    }
    let audience_is_client = claims
        .client()
        .is_some_and(|c| claims.aud.iter().any(|a| a == c));
    if claims.nonce.is_some() && audience_is_client {
        return Err(TokenError::WrongTokenType);
    }
    if let Some(serde_json::Value::String(kind)) = &claims.typ {
        if NOT_ACCESS_TOKEN_KINDS.contains(&kind.to_ascii_lowercase().as_str()) {
            return Err(TokenError::WrongTokenType);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
