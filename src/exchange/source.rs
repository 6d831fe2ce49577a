//! Step 6 of the request path: the credential the upstream receives. The caller's token
//! never travels on (the proxy strips it with the other gateway credentials); instead the
//! route's `upstream_auth` decides: an RFC 8693 token issued for the upstream, an Entra
//! ID on-behalf-of token for the upstream's API, the gateway's own client-credentials
//! token, a static header, or nothing. Tokens come from the shared [`CredentialCache`],
//! which coalesces concurrent misses.
//!
//! Owns: turning a route's validated `upstream_auth` into a [`CredentialSource`] at
//! start-up (and reload), obtaining the header for one request, and what cached tokens and
//! sealed session ids are bound to ([`binding_fingerprint`], [`session_binding`]).
//! Does not own: when the step runs, or how a failure becomes a response (`proxy`,
//! `refusal`).

use std::sync::Arc;
use std::time::Instant;

use http::{HeaderName, HeaderValue};
use prometheus::IntCounter;

use super::{
    instant_at_unix, CacheKey, CacheOutcome, ClientAuth, CredentialCache, ExchangeError,
    ExchangeRequest, IssuedToken, TokenClient,
};
use crate::auth::issuer::IssuerRuntime;
use crate::config::{Grant, GrantClient, GrantScopes, Route, UpstreamAuth};

/// What a route's upstream gets, prepared at start-up.
pub enum CredentialSource {
    None,
    Static {
        header: HeaderName,
        value: HeaderValue,
    },
    Grant(Box<GrantRuntime>),
}

/// Which grant a route runs at its token endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum GrantKind {
    /// RFC 8693: the caller's token as `subject_token`.
    TokenExchange,
    /// Entra ID's on-behalf-of: the caller's token as `assertion`.
    OnBehalfOf,
    /// The gateway's own token; no caller's token is sent.
    ClientCredentials,
}

impl GrantKind {
    /// Whether the grant sends the caller's token, so that its tokens are the caller's.
    fn sends_subject_token(self) -> bool {
        matches!(self, GrantKind::TokenExchange | GrantKind::OnBehalfOf)
    }
}

/// A token-endpoint grant ready to run.
pub struct GrantRuntime {
    kind: GrantKind,
    route: Arc<str>,
    http: reqwest::Client,
    client: ClientAuth,
    endpoint: Option<url::Url>,
    issuer: Option<Arc<IssuerRuntime>>,
    audience: Option<Arc<str>>,
    resource: Option<Arc<str>>,
    scopes: GrantScopes,
    base_scopes: Vec<String>,
    /// [`binding_fingerprint`] of the route: part of every cache key.
    fingerprint: [u8; 32],
}

/// What the credential step knows about the request.
pub struct CredentialRequest<'a> {
    /// The caller's validated token (token exchange and on-behalf-of only).
    pub subject_token: Option<&'a str>,
    pub subject_key: Option<[u8; 32]>,
    /// Unix seconds: cached upstream tokens never outlive the caller's.
    pub subject_expires_at: Option<i64>,
    /// Scopes the policy required for this request's operations.
    pub permit_scopes: &'a [String],
}

/// Where a route's calls to the token endpoint are counted and timed.
/// `telemetry::RouteMetrics` implements it; declared here so that `exchange` does not
/// depend on `telemetry`, which records `exchange`'s errors in audit events.
pub trait ExchangeMetrics: Send + Sync {
    /// One call to a token endpoint: its `result` label and how long it took.
    fn token_exchange(&self, result: &str, seconds: f64);
}

/// Cache counters for the `exchange` cache.
pub struct ExchangeCounters {
    pub hit: IntCounter,
    pub miss: IntCounter,
}

impl CredentialSource {
    /// The route's credential source, from its validated `upstream_auth`: keys and
    /// headers arrive parsed and are used as they are. The one error is what can fail at
    /// run time: making the HTTP client for the token endpoint (its TLS set-up).
    pub fn build(
        route: &Route,
        issuers: &[Arc<IssuerRuntime>],
    ) -> Result<CredentialSource, String> {
        let grant = |g: &Grant, kind: GrantKind| -> Result<CredentialSource, String> {
            let client = match &g.client {
                GrantClient::Basic { client_id, secret } => ClientAuth::Basic {
                    client_id: client_id.clone(),
                    secret: secret.clone(),
                },
                GrantClient::Post { client_id, secret } => ClientAuth::Post {
                    client_id: client_id.clone(),
                    secret: secret.clone(),
                },
                GrantClient::PrivateKeyJwt {
                    client_id,
                    key,
                    key_id,
                    ..
                } => ClientAuth::PrivateKeyJwt {
                    client_id: client_id.clone(),
                    key: key.clone(),
                    kid: key_id.clone(),
                },
            };
            let http = TokenClient::http_client(g.timeout)
                .map_err(|e| format!("route `{}`: {e}", route.name))?;
            Ok(CredentialSource::Grant(Box::new(GrantRuntime {
                kind,
                route: Arc::from(route.name.as_str()),
                http,
                client,
                endpoint: g.token_endpoint.clone(),
                issuer: g.issuer.and_then(|i| issuers.get(i).cloned()),
                audience: g.audience.as_deref().map(Arc::from),
                resource: g.resource.as_deref().map(Arc::from),
                scopes: g.scopes.clone(),
                base_scopes: g.base_scopes.clone(),
                fingerprint: binding_fingerprint(route, issuers),
            })))
        };
        match &route.upstream_auth {
            UpstreamAuth::None => Ok(CredentialSource::None),
            UpstreamAuth::Static { header, value } => Ok(CredentialSource::Static {
                header: header.clone(),
                value: value.clone(),
            }),
            UpstreamAuth::TokenExchange(g) => grant(g, GrantKind::TokenExchange),
            UpstreamAuth::OnBehalfOf(g) => grant(g, GrantKind::OnBehalfOf),
            UpstreamAuth::ClientCredentials(g) => grant(g, GrantKind::ClientCredentials),
        }
    }

    /// True for an RFC 8693 exchange or an on-behalf-of grant, the sources that send the
    /// caller's token to the authorization server (`subject_token`, `assertion`).
    pub fn exchanges_subject_token(&self) -> bool {
        matches!(self, CredentialSource::Grant(g) if g.kind.sends_subject_token())
    }

    /// The header to add upstream, if any.
    pub async fn obtain(
        &self,
        request: &CredentialRequest<'_>,
        cache: &CredentialCache,
        counters: &ExchangeCounters,
        metrics: &dyn ExchangeMetrics,
    ) -> Result<Option<(HeaderName, HeaderValue)>, ExchangeError> {
        let grant = match self {
            CredentialSource::None => return Ok(None),
            CredentialSource::Static { header, value } => {
                return Ok(Some((header.clone(), value.clone())))
            }
            CredentialSource::Grant(g) => g,
        };
        let scopes: &[String] = match &grant.scopes {
            // Downscoping never fails open: an operation that needs no scope gets the
            // configured base scope, or nothing at all (an omitted `scope` would get the
            // server's default, often broad, token).
            GrantScopes::PerOperation if request.permit_scopes.is_empty() => {
                if grant.base_scopes.is_empty() {
                    return Err(ExchangeError::NoScopeToRequest);
                }
                &grant.base_scopes
            }
            GrantScopes::PerOperation => request.permit_scopes,
            GrantScopes::Fixed(list) => list,
        };
        // The caller's tokens are keyed by the caller's token (its digest) and the
        // scopes, so that no caller is ever given another's.
        let key = if grant.kind.sends_subject_token() {
            let subject = request.subject_key.ok_or(ExchangeError::InvalidResponse(
                "no subject token to exchange",
            ))?;
            CacheKey::exchange(
                grant.route.clone(),
                subject,
                scopes,
                grant.audience.clone(),
                grant.resource.clone(),
            )
        } else {
            CacheKey::client_credentials(
                grant.route.clone(),
                scopes,
                grant.audience.clone(),
                grant.resource.clone(),
            )
        }
        .bound_to(grant.fingerprint);
        let subject_expiry = if grant.kind.sends_subject_token() {
            request.subject_expires_at.map(instant_at_unix)
        } else {
            None
        };
        let (result, outcome) = cache
            .get_or_exchange(key, subject_expiry, || {
                grant.fetch(request, scopes, metrics)
            })
            .await;
        match outcome {
            CacheOutcome::Miss => counters.miss.inc(),
            CacheOutcome::Hit | CacheOutcome::Joined => counters.hit.inc(),
        }
        let token = result?;
        Ok(Some(bearer_header(&token)))
    }
}

impl GrantRuntime {
    /// One call to the token endpoint (a cache miss), timed and counted.
    async fn fetch(
        &self,
        request: &CredentialRequest<'_>,
        scopes: &[String],
        metrics: &dyn ExchangeMetrics,
    ) -> Result<IssuedToken, ExchangeError> {
        let started = Instant::now();
        let result = self.call(request, scopes).await;
        let label = match &result {
            Ok(_) => "success",
            Err(e) => e.result_label(),
        };
        metrics.token_exchange(label, started.elapsed().as_secs_f64());
        result
    }

    async fn call(
        &self,
        request: &CredentialRequest<'_>,
        scopes: &[String],
    ) -> Result<IssuedToken, ExchangeError> {
        let endpoint = self
            .endpoint
            .clone()
            .or_else(|| {
                self.issuer
                    .as_ref()
                    .and_then(|i| i.metadata())
                    .and_then(|m| m.token_endpoint.clone())
            })
            .ok_or_else(|| {
                ExchangeError::Transport("the issuer's token endpoint is not known yet".into())
            })?;
        let client = TokenClient::new(self.http.clone(), endpoint, self.client.clone());
        let subject_token = || {
            request.subject_token.ok_or(ExchangeError::InvalidResponse(
                "no subject token to exchange",
            ))
        };
        match self.kind {
            GrantKind::TokenExchange => {
                client
                    .exchange(&ExchangeRequest {
                        subject_token: subject_token()?,
                        audience: self.audience.as_deref(),
                        resource: self.resource.as_deref(),
                        scopes,
                    })
                    .await
            }
            GrantKind::OnBehalfOf => client.on_behalf_of(subject_token()?, scopes).await,
            GrantKind::ClientCredentials => {
                client
                    .client_credentials(scopes, self.audience.as_deref(), self.resource.as_deref())
                    .await
            }
        }
    }
}

/// What a route's upstream credentials and sealed sessions are bound to, beyond its
/// name: the upstream URL and everything about how its credential is obtained (grant
/// kind, client, secret or key, endpoint, issuer, audience, resource, scopes, or the
/// static header). A reload that rotates a compromised client or repoints the upstream
/// changes it, so cached tokens and sealed ids from before no longer apply.
pub fn binding_fingerprint(route: &Route, issuers: &[Arc<IssuerRuntime>]) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    let mut field = |bytes: &[u8]| {
        h.update((bytes.len() as u64).to_be_bytes());
        h.update(bytes);
    };
    field(b"drawbridge route binding v1");
    field(route.upstream.url.as_str().as_bytes());
    match &route.upstream_auth {
        UpstreamAuth::None => field(b"none"),
        UpstreamAuth::Static { header, value } => {
            field(b"static");
            // The bytes of the validated text: the name lower case, the value as written.
            field(header.as_str().as_bytes());
            field(value.as_bytes());
        }
        UpstreamAuth::TokenExchange(g)
        | UpstreamAuth::OnBehalfOf(g)
        | UpstreamAuth::ClientCredentials(g) => {
            let kind: &[u8] = match &route.upstream_auth {
                UpstreamAuth::TokenExchange(_) => b"token_exchange",
                UpstreamAuth::OnBehalfOf(_) => b"on_behalf_of",
                _ => b"client_credentials",
            };
            field(kind);
            match &g.client {
                GrantClient::Basic { client_id, secret } => {
                    field(b"basic");
                    field(client_id.as_bytes());
                    field(secret.expose().as_bytes());
                }
                GrantClient::Post { client_id, secret } => {
                    field(b"post");
                    field(client_id.as_bytes());
                    field(secret.expose().as_bytes());
                }
                GrantClient::PrivateKeyJwt {
                    client_id,
                    key,
                    key_pem,
                    key_id,
                } => {
                    field(b"private_key_jwt");
                    field(client_id.as_bytes());
                    field(key_pem.expose().as_bytes());
                    field(key_id.as_deref().unwrap_or_default().as_bytes());
                    // The certificate the assertions name (a renewed certificate for
                    // the same key is a new credential at the authorization server).
                    if let Some(thumbprint) = key.certificate_thumbprint() {
                        field(b"x5t#S256");
                        field(thumbprint.as_bytes());
                    }
                }
            }
            let issuer = g
                .issuer
                .and_then(|i| issuers.get(i))
                .map(|i| i.config.issuer.as_str());
            field(issuer.unwrap_or_default().as_bytes());
            field(
                g.token_endpoint
                    .as_ref()
                    .map_or("", |u| u.as_str())
                    .as_bytes(),
            );
            field(g.audience.as_deref().unwrap_or_default().as_bytes());
            field(g.resource.as_deref().unwrap_or_default().as_bytes());
            match &g.scopes {
                GrantScopes::PerOperation => field(b"per_operation"),
                GrantScopes::Fixed(list) => field(list.join(" ").as_bytes()),
            }
            field(g.base_scopes.join(" ").as_bytes());
        }
    }
    h.finalize().into()
}

/// The string sealed session ids of `route` bind (hashed by `RouteDigest`): the route
/// name and its [`binding_fingerprint`].
pub fn session_binding(route: &Route, issuers: &[Arc<IssuerRuntime>]) -> String {
    let fingerprint = binding_fingerprint(route, issuers);
    let mut out = String::with_capacity(route.name.len() + 65);
    out.push_str(&route.name);
    out.push('#');
    for b in fingerprint {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

fn bearer_header(token: &IssuedToken) -> (HeaderName, HeaderValue) {
    (http::header::AUTHORIZATION, token.authorization.clone())
}

#[cfg(test)]
mod tests;
