//! Step 6 of the request path: the credential the upstream receives. The caller's token
//! never travels on (it was stripped with the other gateway credentials); instead the
//! route's `upstream_auth` decides: an RFC 8693 token issued for the upstream, the
//! gateway's own client-credentials token, a static header, or nothing. Tokens come from
//! the shared [`CredentialCache`], which coalesces concurrent misses.

use std::sync::Arc;
use std::time::Instant;

use http::{HeaderName, HeaderValue};
use prometheus::IntCounter;

use crate::auth::issuer::IssuerRuntime;
use crate::config::{Grant, GrantClient, GrantScopes, Route, UpstreamAuth};
use crate::exchange::{
    instant_at_unix, CacheKey, CacheOutcome, ClientAuth, CredentialCache, ExchangeError,
    ExchangeRequest, IssuedToken, SigningKey, TokenClient,
};
use crate::telemetry::RouteMetrics;

/// What a route's upstream gets, prepared at start-up.
pub enum CredentialSource {
    None,
    Static {
        header: HeaderName,
        value: HeaderValue,
    },
    Grant(Box<GrantRuntime>),
}

/// A token-endpoint grant ready to run.
pub struct GrantRuntime {
    exchange: bool,
    route: Arc<str>,
    http: reqwest::Client,
    client: ClientAuth,
    endpoint: Option<url::Url>,
    issuer: Option<Arc<IssuerRuntime>>,
    audience: Option<Arc<str>>,
    resource: Option<Arc<str>>,
    scopes: GrantScopes,
}

/// What the credential step knows about the request.
pub struct CredentialRequest<'a> {
    /// The caller's validated token (token exchange only).
    pub subject_token: Option<&'a str>,
    pub subject_key: Option<[u8; 32]>,
    /// Unix seconds: cached upstream tokens never outlive the caller's.
    pub subject_expires_at: Option<i64>,
    /// Scopes the policy required for this request's operations.
    pub permit_scopes: &'a [String],
}

/// Cache counters for the `exchange` cache.
pub struct ExchangeCounters {
    pub hit: IntCounter,
    pub miss: IntCounter,
}

impl CredentialSource {
    pub fn build(
        route: &Route,
        issuers: &[Arc<IssuerRuntime>],
    ) -> Result<CredentialSource, String> {
        let grant = |g: &Grant, exchange: bool| -> Result<CredentialSource, String> {
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
                    key_pem,
                    key_id,
                } => ClientAuth::PrivateKeyJwt {
                    client_id: client_id.clone(),
                    key: SigningKey::from_pem(key_pem.expose())
                        .map_err(|e| format!("route `{}`: private key: {e}", route.name))?,
                    kid: key_id.clone(),
                },
            };
            let http = TokenClient::http_client(g.timeout)
                .map_err(|e| format!("route `{}`: {e}", route.name))?;
            Ok(CredentialSource::Grant(Box::new(GrantRuntime {
                exchange,
                route: Arc::from(route.name.as_str()),
                http,
                client,
                endpoint: g.token_endpoint.clone(),
                issuer: g.issuer.and_then(|i| issuers.get(i).cloned()),
                audience: g.audience.as_deref().map(Arc::from),
                resource: g.resource.as_deref().map(Arc::from),
                scopes: g.scopes.clone(),
            })))
        };
        match &route.upstream_auth {
            UpstreamAuth::None => Ok(CredentialSource::None),
            UpstreamAuth::Static { header, value } => {
                let header = HeaderName::from_bytes(header.as_bytes())
                    .map_err(|_| format!("route `{}`: bad static header name", route.name))?;
                let mut value = HeaderValue::from_str(value.expose())
                    .map_err(|_| format!("route `{}`: bad static header value", route.name))?;
                value.set_sensitive(true);
                Ok(CredentialSource::Static { header, value })
            }
            UpstreamAuth::TokenExchange(g) => grant(g, true),
            UpstreamAuth::ClientCredentials(g) => grant(g, false),
        }
    }

    /// True for an RFC 8693 exchange, the one source that sends the caller's token to the
    /// authorization server as `subject_token`.
    pub fn exchanges_subject_token(&self) -> bool {
        matches!(self, CredentialSource::Grant(g) if g.exchange)
    }

    /// The header to add upstream, if any.
    pub async fn obtain(
        &self,
        request: &CredentialRequest<'_>,
        cache: &CredentialCache,
        counters: &ExchangeCounters,
        metrics: &RouteMetrics,
    ) -> Result<Option<(HeaderName, HeaderValue)>, ExchangeError> {
        let grant = match self {
            CredentialSource::None => return Ok(None),
            CredentialSource::Static { header, value } => {
                return Ok(Some((header.clone(), value.clone())))
            }
            CredentialSource::Grant(g) => g,
        };
        let scopes: &[String] = match &grant.scopes {
            GrantScopes::PerOperation => request.permit_scopes,
            GrantScopes::Fixed(list) => list,
        };
        let key = if grant.exchange {
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
        };
        let subject_expiry = if grant.exchange {
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
        metrics: &RouteMetrics,
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
        if self.exchange {
            let subject_token = request.subject_token.ok_or(ExchangeError::InvalidResponse(
                "no subject token to exchange",
            ))?;
            client
                .exchange(&ExchangeRequest {
                    subject_token,
                    audience: self.audience.as_deref(),
                    resource: self.resource.as_deref(),
                    scopes,
                })
                .await
        } else {
            client
                .client_credentials(scopes, self.audience.as_deref(), self.resource.as_deref())
                .await
        }
    }
}

fn bearer_header(token: &IssuedToken) -> (HeaderName, HeaderValue) {
    (http::header::AUTHORIZATION, token.authorization.clone())
}
