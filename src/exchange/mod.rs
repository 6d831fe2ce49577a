//! Upstream credentials (step 6 of docs/ARCHITECTURE.md): what the upstream receives in
//! place of the caller's token, which never leaves the gateway.
//!
//! This module owns the whole step: which credential a route's upstream gets
//! ([`CredentialSource`], built from the route's validated `upstream_auth`: token exchange,
//! Entra ID's on-behalf-of grant, client credentials, a static header, or none) and
//! obtaining it for one request ([`CredentialSource::obtain`]); talking to an
//! authorization server's token endpoint — RFC 8693 token exchange, on-behalf-of
//! (`on_behalf_of`, with its claims challenges) and the client-credentials grant
//! ([`TokenClient`]), the
//! gateway's own client authentication ([`ClientAuth`]: `client_secret_basic`,
//! `client_secret_post`, RFC 7523 `private_key_jwt`), strict validation of the answer;
//! the cache of issued tokens ([`CredentialCache`]: bounded, refreshed shortly before
//! expiry, concurrent misses coalesced into one call); and what cached tokens and sealed
//! session ids are bound to ([`session_binding`]).
//!
//! It does not own when the step runs, which scopes an operation needs (the policy's
//! permit says), or how a failure becomes a response (`proxy` and `refusal` decide,
//! from [`FailureKind`]); metric handles are passed in. Nothing in this module logs, and
//! no error it returns carries a subject token, a client secret or an issued token.

mod cache;
mod client;
mod client_auth;
mod on_behalf_of;
mod response;
mod source;

#[cfg(test)]
mod tests;

use std::fmt;
use std::time::Instant;

use crate::jose::SigningKey;
use crate::secret::Secret;

pub use cache::{instant_at_unix, subject_token_hash, CacheKey, CacheOutcome, CredentialCache};
pub use client::TokenClient;
pub use on_behalf_of::ClaimsChallenge;
pub use response::DEFAULT_EXPIRES_IN;
pub use source::{
    binding_fingerprint, session_binding, CredentialRequest, CredentialSource, ExchangeCounters,
    ExchangeMetrics, GrantRuntime,
};

/// The RFC 8693 grant type (§2.1).
pub const TOKEN_EXCHANGE_GRANT: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
/// RFC 8693 token type identifiers (§3): the subject token sent and the issued token
/// accepted are access tokens; a JWT is accepted as issued too.
pub const ACCESS_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";
pub const JWT_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:jwt";
/// RFC 7523's JWT bearer grant type, which Entra ID's on-behalf-of grant uses.
pub const JWT_BEARER_GRANT: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";

/// How the gateway authenticates itself to the token endpoint.
#[derive(Debug, Clone)]
pub enum ClientAuth {
    /// `client_secret_basic` (RFC 6749 §2.3.1): HTTP Basic over the form-urlencoded id and
    /// secret. The default.
    Basic { client_id: String, secret: Secret },
    /// `client_secret_post`: `client_id` and `client_secret` in the request body.
    Post { client_id: String, secret: Secret },
    /// `private_key_jwt` (RFC 7523): a fresh signed assertion per request.
    PrivateKeyJwt {
        client_id: String,
        key: SigningKey,
        /// Sent as the assertion's `kid` header when the authorization server needs it
        /// to pick the registered key. (A key paired with its certificate also sends
        /// the certificate's `x5t#S256`: [`SigningKey::with_certificate`].)
        kid: Option<String>,
    },
}

/// One RFC 8693 exchange: the caller's validated token and what the upstream needs.
#[derive(Clone, Copy)]
pub struct ExchangeRequest<'a> {
    /// The inbound access token, already validated by `auth`.
    pub subject_token: &'a str,
    pub audience: Option<&'a str>,
    pub resource: Option<&'a str>,
    /// Sent space-separated as `scope`; omitted when empty.
    pub scopes: &'a [String],
}

/// Hand-written so that the subject token never prints.
impl fmt::Debug for ExchangeRequest<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ExchangeRequest")
            .field("subject_token", &"[redacted]")
            .field("audience", &self.audience)
            .field("resource", &self.resource)
            .field("scopes", &self.scopes)
            .finish()
    }
}

/// A token the authorization server issued for an upstream, kept only in the form the
/// upstream is sent: `Authorization: Bearer <token>`, whether the server said `Bearer`
/// or `N_A` (RFC 8693 §2.2.1). `Debug` redacts it (the header value is sensitive).
#[derive(Debug, Clone)]
pub struct IssuedToken {
    pub expires_at: Instant,
    /// `Bearer <access_token>`, built once (marked sensitive) rather than per request.
    pub authorization: http::HeaderValue,
}

impl IssuedToken {
    /// A token as issued; refused if it cannot travel in an `Authorization` header.
    pub fn new(access_token: &str, expires_at: Instant) -> Result<IssuedToken, ExchangeError> {
        let mut authorization = http::HeaderValue::from_str(&format!("Bearer {access_token}"))
            .map_err(|_| {
                ExchangeError::InvalidResponse("the issued token is not a valid header value")
            })?;
        authorization.set_sensitive(true);
        Ok(IssuedToken {
            expires_at,
            authorization,
        })
    }

    /// The token itself, for tests that look inside it.
    #[cfg(test)]
    pub fn token(&self) -> &str {
        let value = self.authorization.to_str().unwrap_or_default();
        value.strip_prefix("Bearer ").unwrap_or_default()
    }
}

/// Why no token was obtained. Carries no token, secret or error description from the
/// authorization server (a description may echo the request), so it is safe to log and
/// to put in an audit event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExchangeError {
    /// The token endpoint could not be reached, timed out, or broke off the answer.
    Transport(String),
    /// The token endpoint answered with an error status. `error` is the OAuth error code
    /// (`invalid_grant`, …) when the body had a well-formed one.
    Rejected { status: u16, error: Option<String> },
    /// The authorization server refused this caller until they sign in again meeting its
    /// conditions (Entra ID's `interaction_required` with `claims`, e.g. multi-factor
    /// authentication): the client is told what its next token must carry.
    ClaimsChallenge {
        status: u16,
        error: String,
        claims: ClaimsChallenge,
    },
    /// A success status with an answer the gateway must not use.
    InvalidResponse(&'static str),
    /// `scopes: per_operation`, an operation that needs no scope, and no `base_scopes`:
    /// the gateway will not ask for (and forward) the server's default scope.
    NoScopeToRequest,
}

/// How the proxy should treat a failure; the response mapping itself lives in `proxy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// The authorization server refused this caller or this request (`invalid_grant`,
    /// `invalid_target`, `invalid_scope`, `unauthorized_client`, `access_denied`):
    /// suggested 403.
    Denied,
    /// Unreachable, timed out, 429 or 5xx, or an answer that is not JSON: suggested 503
    /// with `Retry-After`.
    Unavailable,
    /// A malformed answer, or a refusal that means the gateway itself is misconfigured
    /// (`invalid_client`, `invalid_request`, `unsupported_grant_type`, …): suggested 502.
    BadGateway,
}

/// Reasons of an [`ExchangeError::InvalidResponse`] for an answer that is no token
/// response at all (an HTML error page, bytes that are not JSON, a flood): the
/// authorization server is failing rather than refusing, so the caller is told to try
/// again (503 with `Retry-After`), as in an outage. A readable answer the gateway must
/// not use (wrong token type, more scope than asked) stays a 502: retrying will not help.
pub(crate) const NOT_JSON: &str = "not JSON";
pub(crate) const TOO_LARGE: &str = "answer too large";

/// OAuth error codes that refuse the subject or the requested target rather than the
/// gateway's own configuration. `interaction_required` and `consent_required` (OpenID
/// Connect; Entra ID answers them to on-behalf-of requests) say the user must act first.
const DENIAL_CODES: [&str; 7] = [
    "invalid_grant",
    "invalid_target",
    "invalid_scope",
    "unauthorized_client",
    "access_denied",
    "interaction_required",
    "consent_required",
];

impl ExchangeError {
    /// The `result` label of `drawbridge_token_exchange_total` for this failure.
    pub fn result_label(&self) -> &'static str {
        match self {
            ExchangeError::Transport(_) => "transport_error",
            ExchangeError::Rejected { .. } => "rejected",
            ExchangeError::ClaimsChallenge { .. } => "claims_challenge",
            ExchangeError::InvalidResponse(_) => "invalid_response",
            ExchangeError::NoScopeToRequest => "no_scope",
        }
    }

    pub fn kind(&self) -> FailureKind {
        match self {
            ExchangeError::Transport(_) => FailureKind::Unavailable,
            ExchangeError::InvalidResponse(reason) if [NOT_JSON, TOO_LARGE].contains(reason) => {
                FailureKind::Unavailable
            }
            ExchangeError::Rejected { status, .. } if *status >= 500 || *status == 429 => {
                FailureKind::Unavailable
            }
            ExchangeError::Rejected {
                error: Some(code), ..
            } if DENIAL_CODES.contains(&code.as_str()) => FailureKind::Denied,
            ExchangeError::ClaimsChallenge { .. } => FailureKind::Denied,
            ExchangeError::Rejected { .. }
            | ExchangeError::InvalidResponse(_)
            | ExchangeError::NoScopeToRequest => FailureKind::BadGateway,
        }
    }
}

impl fmt::Display for ExchangeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExchangeError::Transport(reason) => {
                write!(f, "token endpoint unreachable: {reason}")
            }
            ExchangeError::Rejected {
                status,
                error: Some(code),
            } => write!(f, "token endpoint refused the request: {status} {code}"),
            ExchangeError::Rejected {
                status,
                error: None,
            } => write!(f, "token endpoint refused the request: {status}"),
            // The claims themselves are for the client, not for logs.
            ExchangeError::ClaimsChallenge { status, error, .. } => write!(
                f,
                "token endpoint refused the request with a claims challenge: {status} {error}"
            ),
            ExchangeError::InvalidResponse(reason) => {
                write!(f, "token endpoint answer unusable: {reason}")
            }
            ExchangeError::NoScopeToRequest => {
                f.write_str("the operation needs no scope and the route configures no base_scopes")
            }
        }
    }
}

impl ExchangeError {
    /// The claims challenge the client should get, if the refusal carried one.
    pub fn claims_challenge(&self) -> Option<&ClaimsChallenge> {
        match self {
            ExchangeError::ClaimsChallenge { claims, .. } => Some(claims),
            _ => None,
        }
    }
}

impl std::error::Error for ExchangeError {}
