//! Step 2 of the request path: the gateway as an OAuth 2.1 resource server. A bearer
//! token from the `Authorization` header is verified for *this* route — signature by the
//! issuer's keys (or RFC 7662 introspection for opaque tokens), exact `iss`, `aud`
//! naming the route (its `public_url`, or its listed `audiences`), times — and becomes a
//! [`Principal`], read from the claims as the issuer's claim mapping says ([`claims`]).
//!
//! Owns token validation, the verified-token caches, protected resource metadata
//! (RFC 9728) and the challenges. It does not decide per-tool access (`policy`) and never
//! forwards the token anywhere. Its counters come in through [`AuthMetrics`].

pub mod audience;
pub mod bearer;
mod cache;
pub mod challenge;
pub mod claims;
pub mod discovery;
pub mod introspection;
pub mod issuer;
pub mod jwt;
pub mod metadata;
pub mod times;

use std::sync::Arc;
use std::time::Duration;

use prometheus::{IntCounter, IntCounterVec};

use crate::config::{Config, Route};
use audience::Audience;
use bearer::BearerError;
pub use cache::{token_key, TokenKey};
use cache::{unix_now, TokenCache};
use challenge::BearerErrorCode;
use issuer::IssuerRuntime;
use jwt::TokenError;

use crate::mcp::session::IdentityDigest;

/// Who is calling, as established by a verified token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// Issuer identifier (`iss`).
    pub issuer: String,
    pub subject: String,
    pub client_id: Option<String>,
    pub scopes: Vec<String>,
    /// Unix seconds.
    pub expires_at: i64,
    /// The claims the configuration's claim rules name, and nothing else.
    pub claims: crate::policy::ClaimSet,
    /// What sealed session ids bind of this caller (issuer, subject, client), hashed once
    /// here rather than on every request that presents a session.
    session_identity: IdentityDigest,
}

impl crate::policy::Grants for Principal {
    fn scopes(&self) -> &[String] {
        &self.scopes
    }
    fn claims(&self) -> &crate::policy::ClaimSet {
        &self.claims
    }
}

impl Principal {
    pub fn new(
        issuer: String,
        subject: String,
        client_id: Option<String>,
        scopes: Vec<String>,
        expires_at: i64,
    ) -> Principal {
        let session_identity = IdentityDigest::of(&issuer, &subject, client_id.as_deref());
        Principal {
            issuer,
            subject,
            client_id,
            scopes,
            expires_at,
            claims: crate::policy::ClaimSet::default(),
            session_identity,
        }
    }

    /// A principal as the issuer's claim mapping read it from a token.
    pub fn of_identity(issuer: String, identity: claims::Identity, expires_at: i64) -> Principal {
        let claims::Identity {
            subject,
            client,
            scopes,
            claims,
        } = identity;
        Principal {
            claims,
            ..Principal::new(issuer, subject, client, scopes, expires_at)
        }
    }

    pub fn session_identity(&self) -> IdentityDigest {
        self.session_identity
    }

    pub fn has_scope(&self, scope: &str) -> bool {
        self.scopes.iter().any(|s| s == scope)
    }
}

/// The outcome of authentication: who, and the SHA-256 of their token (a cache key for
/// later steps, so the token is hashed once per request).
#[derive(Debug, Clone)]
pub struct Authenticated {
    /// Shared with the verified-token cache: a cache hit copies no strings.
    pub principal: Arc<Principal>,
    pub token_key: TokenKey,
}

/// A verified token as cached: the principal plus what is checked per route.
#[derive(Debug)]
pub struct Verified {
    pub principal: Arc<Principal>,
    /// Index into the configured issuers.
    pub issuer_index: usize,
    pub audiences: Vec<String>,
    /// Upper bound on how long this answer may be reused.
    pub cache_for: Duration,
}

/// Why a request was not authenticated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthFailure {
    Bearer(BearerError),
    Token(TokenError),
    /// Authenticated, but the route's `required_scopes` are not all granted.
    InsufficientScope,
}

impl AuthFailure {
    /// Metric label (`drawbridge_auth_failures_total{reason}`).
    pub fn reason(&self) -> &'static str {
        match self {
            AuthFailure::Bearer(b) => b.reason(),
            AuthFailure::Token(t) => t.reason(),
            AuthFailure::InsufficientScope => "insufficient_scope",
        }
    }

    /// HTTP status and RFC 6750 error code (none for a bare "please authenticate").
    pub fn status_and_code(&self) -> (u16, Option<BearerErrorCode>) {
        match self {
            AuthFailure::Bearer(BearerError::Missing) => (401, None),
            AuthFailure::Bearer(BearerError::Multiple) => {
                (400, Some(BearerErrorCode::InvalidRequest))
            }
            AuthFailure::Bearer(BearerError::InQuery) => {
                (401, Some(BearerErrorCode::InvalidRequest))
            }
            AuthFailure::Token(TokenError::IntrospectionBusy | TokenError::IssuerUnavailable) => {
                (503, None)
            }
            AuthFailure::Bearer(_) | AuthFailure::Token(_) => {
                (401, Some(BearerErrorCode::InvalidToken))
            }
            AuthFailure::InsufficientScope => (403, Some(BearerErrorCode::InsufficientScope)),
        }
    }

    pub fn description(&self) -> &'static str {
        match self {
            AuthFailure::Bearer(BearerError::Missing) => "this resource needs a bearer token",
            AuthFailure::Bearer(BearerError::Malformed) => "the Authorization header is malformed",
            AuthFailure::Bearer(BearerError::TooLarge) => "the access token is too large",
            AuthFailure::Bearer(BearerError::InQuery) => {
                "send the access token in the Authorization header, not the URL"
            }
            AuthFailure::Bearer(BearerError::Multiple) => "more than one Authorization header",
            AuthFailure::Token(t) => t.description(),
            AuthFailure::InsufficientScope => {
                "the access token lacks scopes this resource requires"
            }
        }
    }
}

/// A route's authentication requirements, prepared at start-up.
#[derive(Debug, Clone)]
pub struct RouteGuard {
    pub issuers: Vec<usize>,
    pub audience: Audience,
    pub required_scopes: Vec<String>,
    /// Absolute URL of the route's protected resource metadata.
    pub resource_metadata: String,
    /// Space-separated scopes for the `scope` challenge parameter.
    pub scope_hint: String,
}

impl RouteGuard {
    /// The guard of a protected route; `None` only for a public one (no `auth` block).
    pub fn for_route(route: &Route) -> Option<RouteGuard> {
        let auth = route.auth.as_ref()?;
        let public_url = &auth.public_url;
        let scope_hint = if auth.required_scopes.is_empty() {
            auth.scopes_supported.join(" ")
        } else {
            auth.required_scopes.join(" ")
        };
        Some(RouteGuard {
            issuers: auth.issuers.clone(),
            audience: Audience::accepting(public_url, &auth.audiences),
            required_scopes: auth.required_scopes.clone(),
            resource_metadata: metadata::metadata_url(public_url),
            scope_hint,
        })
    }

    /// The `WWW-Authenticate` value for a failure on this route.
    pub fn challenge(&self, failure: &AuthFailure) -> String {
        let (_, code) = failure.status_and_code();
        challenge::www_authenticate(
            &self.resource_metadata,
            &self.scope_hint,
            code.map(|c| (c, failure.description())),
        )
    }
}

/// The metric handles authentication counts with. `telemetry::Metrics` implements it;
/// declared here so that `auth` does not depend on `telemetry`, which records `auth`'s
/// types in audit events.
pub trait AuthMetrics {
    /// The counter of `drawbridge_cache_requests_total` for one cache and result.
    fn cache_counter(&self, cache: &str, result: &str) -> IntCounter;
    /// `drawbridge_jwks_refresh_total`, for issuers to count their fetches.
    fn jwks_refreshes(&self) -> IntCounterVec;
}

/// Cache hit/miss counters (`drawbridge_cache_requests_total{cache,result}`).
struct CacheCounters {
    hit: IntCounter,
    miss: IntCounter,
}

impl CacheCounters {
    fn new(metrics: &dyn AuthMetrics, cache: &str) -> CacheCounters {
        CacheCounters {
            hit: metrics.cache_counter(cache, "hit"),
            miss: metrics.cache_counter(cache, "miss"),
        }
    }
}

/// Verifies tokens for every protected route; shared by all requests.
pub struct Authenticator {
    issuers: Vec<Arc<IssuerRuntime>>,
    http: reqwest::Client,
    tokens: TokenCache,
    introspected: TokenCache,
    /// Definitive refusals of introspected tokens, by (token digest, issuer): a flood of
    /// one junk token costs one call to the authorization server per [`REJECTED_TTL`].
    rejected: moka::sync::Cache<(TokenKey, usize), TokenError>,
    /// Introspection calls running now, by (token digest, issuer): concurrent requests
    /// with the same token wait for one call instead of each making their own.
    inflight: Inflight,
    token_counters: CacheCounters,
    introspection_counters: CacheCounters,
    rejected_counters: CacheCounters,
    introspection_coalesced: IntCounter,
    /// Every claim some route's claim rules name: what principals keep of their tokens.
    rule_claims: Vec<crate::policy::ClaimName>,
}

/// The claims named by the claim rules of every route's policy, each once: what a
/// principal keeps of its token's claims.
pub fn rule_claims(config: &Config) -> Vec<crate::policy::ClaimName> {
    let mut names: Vec<crate::policy::ClaimName> = Vec::new();
    for policy in config.routes.iter().filter_map(|r| r.policy.as_ref()) {
        let rules = [
            &policy.tools,
            &policy.resources,
            &policy.prompts,
            &policy.methods,
        ];
        let per_rule = rules
            .into_iter()
            .flat_map(|set| set.rules())
            .flat_map(|r| &r.claims);
        for rule in policy.require.iter().chain(per_rule) {
            if !names.contains(&rule.claim) {
                names.push(rule.claim.clone());
            }
        }
    }
    names
}

const TOKEN_CACHE_CAPACITY: u64 = 50_000;
const TOKEN_CACHE_MAX_TTL: Duration = Duration::from_secs(300);
/// Bound and lifetime of the negative introspection cache.
const REJECTED_CAPACITY: u64 = 10_000;
const REJECTED_TTL: Duration = Duration::from_secs(30);

type Lookup = Arc<tokio::sync::OnceCell<Result<Arc<Verified>, TokenError>>>;

#[derive(Default)]
struct Inflight {
    calls: std::sync::Mutex<std::collections::HashMap<(TokenKey, usize), Lookup>>,
}

/// A request's share of an in-flight lookup; the last one out (or the first after the
/// answer) removes it from the map, so a cancelled call never leaves an entry behind.
struct Joined<'a> {
    inflight: &'a Inflight,
    slot: (TokenKey, usize),
    lookup: Lookup,
}

impl Inflight {
    fn join(&self, slot: (TokenKey, usize)) -> Joined<'_> {
        let lookup = match self.calls.lock() {
            Ok(mut calls) => calls.entry(slot).or_default().clone(),
            // A poisoned map only loses coalescing, never correctness.
            Err(_) => Lookup::default(),
        };
        Joined {
            inflight: self,
            slot,
            lookup,
        }
    }
}

impl Drop for Joined<'_> {
    fn drop(&mut self) {
        if let Ok(mut calls) = self.inflight.calls.lock() {
            let done = self.lookup.initialized() || Arc::strong_count(&self.lookup) <= 2;
            if done
                && calls
                    .get(&self.slot)
                    .is_some_and(|l| Arc::ptr_eq(l, &self.lookup))
            {
                calls.remove(&self.slot);
            }
        }
    }
}

impl Authenticator {
    /// Prepares issuers (nothing is fetched yet: see [`issuer::keep_fresh`]) and
    /// registers the auth metric families in `registry`.
    /// `previous` (on reload): issuers whose settings did not change are carried over
    /// with their keys, so a reload never makes a working issuer unready.
    pub fn new(
        config: &Config,
        metrics: &dyn AuthMetrics,
        previous: Option<&Authenticator>,
    ) -> Result<Authenticator, String> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(3))
            .timeout(Duration::from_secs(5))
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("drawbridge/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("HTTP client: {e}"))?;
        let refreshes = metrics.jwks_refreshes();
        let issuers = config
            .issuers
            .iter()
            .map(|i| {
                let kept = previous
                    .and_then(|p| p.issuers.iter().find(|rt| *rt.config == **i))
                    .cloned();
                kept.unwrap_or_else(|| {
                    Arc::new(IssuerRuntime::new(
                        i.clone(),
                        http.clone(),
                        refreshes.clone(),
                    ))
                })
            })
            .collect();
        Ok(Authenticator {
            issuers,
            http,
            tokens: TokenCache::new(TOKEN_CACHE_CAPACITY, TOKEN_CACHE_MAX_TTL),
            introspected: TokenCache::new(TOKEN_CACHE_CAPACITY, TOKEN_CACHE_MAX_TTL),
            rejected: moka::sync::Cache::builder()
                .max_capacity(REJECTED_CAPACITY)
                .time_to_live(REJECTED_TTL)
                .build(),
            inflight: Inflight::default(),
            token_counters: CacheCounters::new(metrics, "token"),
            introspection_counters: CacheCounters::new(metrics, "introspection"),
            rejected_counters: CacheCounters::new(metrics, "introspection_negative"),
            introspection_coalesced: metrics.cache_counter("introspection", "coalesced"),
            rule_claims: rule_claims(config),
        })
    }

    pub fn issuers(&self) -> &[Arc<IssuerRuntime>] {
        &self.issuers
    }

    /// Authenticates a request on a route guarded by `guard`, by the bearer token the
    /// caller took from it (with [`bearer::bearer_token`]).
    pub async fn authenticate_token(
        &self,
        guard: &RouteGuard,
        token: &str,
    ) -> Result<Authenticated, AuthFailure> {
        let token_key = token_key(token);
        let verified = self
            .verify(guard, token, &token_key)
            .await
            .map_err(AuthFailure::Token)?;
        self.admit(guard, &verified)?;
        Ok(Authenticated {
            principal: verified.principal.clone(),
            token_key,
        })
    }

    /// The route's checks of a verified token: one of its issuers, its audience, still
    /// current (a verification may come from the cache), its `required_scopes`.
    fn admit(&self, guard: &RouteGuard, verified: &Verified) -> Result<(), AuthFailure> {
        if !guard.issuers.contains(&verified.issuer_index) {
            return Err(AuthFailure::Token(TokenError::WrongIssuer));
        }
        if !guard.audience.is_in(&verified.audiences) {
            return Err(AuthFailure::Token(TokenError::WrongAudience));
        }
        let principal = &verified.principal;
        // A verification may come from the cache: its token must still be current.
        let still = times::TokenTimes {
            exp: Some(principal.expires_at),
            ..times::TokenTimes::default()
        };
        times::check_times(
            still,
            times::MissingExp::Refused,
            unix_now(),
            self.leeway(verified.issuer_index),
        )
        .map_err(AuthFailure::Token)?;
        if !guard.required_scopes.iter().all(|s| principal.has_scope(s)) {
            return Err(AuthFailure::InsufficientScope);
        }
        Ok(())
    }

    /// Every check [`Authenticator::authenticate_token`] makes of a JWT but its signature:
    /// for `drawbridge explain --no-verify`, where the issuer's keys cannot be fetched.
    /// Never on the request path.
    pub fn check_unsigned_jwt(
        &self,
        guard: &RouteGuard,
        token: &str,
    ) -> Result<Arc<Principal>, AuthFailure> {
        let decoded =
            jwt::decode(token, &crate::jose::Algorithm::DEFAULT).map_err(AuthFailure::Token)?;
        let (issuer_index, issuer) = self.issuer_of(&decoded).map_err(AuthFailure::Token)?;
        let verified = self
            .accept_claims(&decoded, issuer_index, issuer)
            .map_err(AuthFailure::Token)?;
        self.admit(guard, &verified)?;
        Ok(verified.principal)
    }

    fn leeway(&self, issuer_index: usize) -> i64 {
        self.issuers
            .get(issuer_index)
            .map_or(0, |i| i.config.leeway.as_secs() as i64)
    }

    /// A verified token, from cache or by verification. Route checks are the caller's.
    async fn verify(
        &self,
        guard: &RouteGuard,
        token: &str,
        key: &TokenKey,
    ) -> Result<Arc<Verified>, TokenError> {
        let key = *key;
        if jwt::looks_like_jwt(token) {
            if let Some(hit) = self.tokens.get(&key) {
                self.token_counters.hit.inc();
                return Ok(hit);
            }
            self.token_counters.miss.inc();
            let verified = Arc::new(self.verify_jwt(token).await?);
            self.tokens.insert(key, verified.clone());
            return Ok(verified);
        }
        if let Some(hit) = self.introspected.get(&key) {
            self.introspection_counters.hit.inc();
            return Ok(hit);
        }
        self.verify_opaque(guard, token, key).await
    }

    /// The issuer a decoded token names, which must allow its algorithm.
    fn issuer_of(
        &self,
        decoded: &jwt::Decoded<'_>,
    ) -> Result<(usize, &Arc<IssuerRuntime>), TokenError> {
        let iss = decoded
            .claims
            .iss
            .as_deref()
            .ok_or(TokenError::MissingClaim)?;
        let (issuer_index, issuer) = self
            .issuers
            .iter()
            .enumerate()
            .find(|(_, i)| i.config.issuer == iss)
            .ok_or(TokenError::WrongIssuer)?;
        if !issuer.config.algorithms.contains(&decoded.alg) {
            return Err(TokenError::UnsupportedAlgorithm);
        }
        Ok((issuer_index, issuer))
    }

    async fn verify_jwt(&self, token: &str) -> Result<Verified, TokenError> {
        let decoded = jwt::decode(token, &crate::jose::Algorithm::DEFAULT)?;
        let (issuer_index, issuer) = self.issuer_of(&decoded)?;
        let mut keys = issuer.keys();
        if keys.keys.is_empty() && !issuer.is_ready() {
            return Err(TokenError::IssuerUnavailable);
        }
        if keys.find(decoded.kid.as_deref(), decoded.alg).is_none() {
            if let Some(kid) = decoded.kid.as_deref().filter(|k| !keys.has_kid(k)) {
                keys = issuer.refetch_for_unknown_kid(kid).await;
            }
        }
        // A key the issuer may well have published while it cannot be asked: the token
        // cannot be judged now (503), which is not the same as a key it does not have.
        let unknown = if issuer.unreachable() {
            TokenError::IssuerUnavailable
        } else {
            TokenError::UnknownKey
        };
        let key = keys
            .find(decoded.kid.as_deref(), decoded.alg)
            .ok_or(unknown)?;
        decoded.verify_with(key)?;
        self.accept_claims(&decoded, issuer_index, issuer)
    }

    /// A token's type, lifetime and identity (by the issuer's claim mapping), once its
    /// signature is checked: only signed claims count.
    fn accept_claims(
        &self,
        decoded: &jwt::Decoded<'_>,
        issuer_index: usize,
        issuer: &IssuerRuntime,
    ) -> Result<Verified, TokenError> {
        let claims = &decoded.claims;
        jwt::check_token_type(decoded.typ.as_deref(), claims, &issuer.config.token_types)?;
        times::check_times(
            times::TokenTimes::of_jwt(claims),
            times::MissingExp::Refused,
            unix_now(),
            issuer.config.leeway.as_secs() as i64,
        )?;
        let identity = claims::identity(
            &issuer.config.claims,
            &self.rule_claims,
            &decoded.claims_json()?,
        )?;
        Ok(Verified {
            principal: Arc::new(Principal::of_identity(
                issuer.config.issuer.clone(),
                identity,
                claims.exp.unwrap_or_default(),
            )),
            issuer_index,
            audiences: claims.aud.clone(),
            cache_for: TOKEN_CACHE_MAX_TTL,
        })
    }

    /// Opaque tokens go to the introspection endpoint of the route's first issuer that
    /// has one configured: at most one call per token at a time (others wait for its
    /// answer), none for a token refused a moment ago, and none past the issuer's
    /// `max_in_flight` (503 instead).
    async fn verify_opaque(
        &self,
        guard: &RouteGuard,
        token: &str,
        key: TokenKey,
    ) -> Result<Arc<Verified>, TokenError> {
        let issuer_index = guard
            .issuers
            .iter()
            .copied()
            .find(|i| {
                self.issuers
                    .get(*i)
                    .is_some_and(|rt| rt.config.introspection.is_some())
            })
            .ok_or(TokenError::Malformed)?;
        let slot = (key, issuer_index);
        if let Some(refused) = self.rejected.get(&slot) {
            self.rejected_counters.hit.inc();
            return Err(refused);
        }
        let joined = self.inflight.join(slot);
        let ran = std::sync::atomic::AtomicBool::new(false);
        let result = joined
            .lookup
            .get_or_init(|| async {
                ran.store(true, std::sync::atomic::Ordering::Relaxed);
                self.introspection_counters.miss.inc();
                self.rejected_counters.miss.inc();
                let result = self.introspect(issuer_index, token).await.map(Arc::new);
                match &result {
                    Ok(verified) => self.introspected.insert(key, verified.clone()),
                    // Transient: the next request asks again.
                    Err(TokenError::IssuerUnavailable | TokenError::IntrospectionBusy) => {}
                    Err(refused) => self.rejected.insert(slot, *refused),
                }
                result
            })
            .await
            .clone();
        if !ran.load(std::sync::atomic::Ordering::Relaxed) {
            self.introspection_coalesced.inc();
        }
        result
    }

    /// One introspection call to issuer `issuer_index`, within its in-flight limit.
    async fn introspect(&self, issuer_index: usize, token: &str) -> Result<Verified, TokenError> {
        let issuer = self
            .issuers
            .get(issuer_index)
            .ok_or(TokenError::Malformed)?;
        let settings = issuer
            .config
            .introspection
            .as_ref()
            .ok_or(TokenError::Malformed)?;
        let _permit = issuer
            .introspection_slots
            .clone()
            .try_acquire_owned()
            .map_err(|_| TokenError::IntrospectionBusy)?;
        let endpoint = settings
            .endpoint
            .clone()
            .or_else(|| {
                issuer
                    .metadata()
                    .and_then(|m| m.introspection_endpoint.clone())
            })
            .ok_or(TokenError::IssuerUnavailable)?;
        let (resp, answer) =
            introspection::introspect(&self.http, &endpoint, settings, token).await?;
        let leeway = issuer.config.leeway.as_secs() as i64;
        introspection::check_response(
            &resp,
            &issuer.config.issuer,
            &settings.token_types,
            unix_now(),
            leeway,
        )?;
        let expires_at = resp
            .exp
            .unwrap_or_else(|| unix_now() + settings.cache_max.as_secs() as i64);
        Ok(Verified {
            principal: Arc::new(Principal::of_identity(
                issuer.config.issuer.clone(),
                claims::identity(&issuer.config.claims, &self.rule_claims, &answer)?,
                expires_at,
            )),
            issuer_index,
            audiences: resp.aud,
            cache_for: settings.cache_max,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The guard takes its audience from the checked `auth` block, which cannot lack the
    /// public URL: a protected route is never mistaken for a public one.
    #[test]
    fn a_protected_route_always_gets_a_guard() {
        let text = "issuers:\n  - name: corp\n    issuer: https://idp.example.com\nroutes:\n  - name: secure\n    match: { path: /secure/mcp }\n    public_url: https://mcp.example.com/secure/mcp\n    upstream: { url: 'http://127.0.0.1:3001/mcp' }\n    auth: { issuers: [corp], required_scopes: [mcp] }\n    upstream_auth: { none: {} }\n";
        let loaded = crate::config::load_str("gw.yaml", text).unwrap();
        let mut route = (*loaded.config.routes[0]).clone();
        // Whatever becomes of the route-level copy, the guard stays.
        route.public_url = None;
        let guard = RouteGuard::for_route(&route).expect("a protected route has a guard");
        assert_eq!(
            guard.resource_metadata,
            "https://mcp.example.com/.well-known/oauth-protected-resource/secure/mcp"
        );
        route.auth = None;
        assert!(RouteGuard::for_route(&route).is_none(), "a public route");
    }

    /// The digest a principal carries is the session binding of its own fields, so a
    /// session sealed for one caller never opens for another.
    #[test]
    fn principal_carries_its_session_identity() {
        let p = |sub: &str, client: Option<&str>| {
            Principal::new(
                "https://idp.example".to_string(),
                sub.to_string(),
                client.map(str::to_string),
                vec!["mcp".to_string()],
                0,
            )
        };
        let alice = p("alice", Some("agent"));
        assert_eq!(
            alice.session_identity(),
            IdentityDigest::of("https://idp.example", "alice", Some("agent"))
        );
        assert_ne!(
            alice.session_identity(),
            p("bob", Some("agent")).session_identity()
        );
        assert_ne!(
            alice.session_identity(),
            p("alice", None).session_identity()
        );
        assert_ne!(alice.session_identity(), IdentityDigest::anonymous());
    }

    /// Sessions bind the subject and client the issuer's claim mapping reads: two Entra
    /// tokens with one `sub` but different `oid` are two callers under `subject: oid`.
    #[test]
    fn session_identity_follows_the_claim_mapping() {
        let mapping = crate::config::ClaimMapping {
            subject: crate::policy::ClaimName::parse("oid").unwrap(),
            client: vec![crate::policy::ClaimName::parse("appid").unwrap()],
            permissions: Vec::new(),
        };
        let principal = |claims: serde_json::Value| {
            let identity = claims::identity(&mapping, &[], &claims).unwrap();
            Principal::of_identity("https://idp".to_string(), identity, 0)
        };
        let one =
            principal(serde_json::json!({"sub": "same", "oid": "o1", "appid": "a", "azp": "z"}));
        let two = principal(serde_json::json!({"sub": "same", "oid": "o2", "appid": "a"}));
        assert_eq!(
            one.session_identity(),
            IdentityDigest::of("https://idp", "o1", Some("a"))
        );
        assert_ne!(one.session_identity(), two.session_identity());
    }
}
