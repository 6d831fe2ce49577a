//! What one configuration becomes at run time: the router, each route's upstream peer,
//! guard, credential source and metric handles, the session keys. Built whole on load and
//! reload and swapped in at once; a request keeps the state it started with.
//!
//! Owns: building that state (DNS resolution kept apart: it blocks), sealing an upstream
//! session id for a caller. Does not own: the request path (`proxy`), the rules each
//! piece applies (`auth`, `exchange`, `mcp::session`).

use std::sync::Arc;

use pingora::prelude::HttpPeer;
use pingora::utils::tls::{parse_x509, WrappedX509};

use super::ctx::RequestCtx;
use crate::auth::metadata::MetadataIndex;
use crate::auth::Principal;
use crate::auth::{Authenticator, RouteGuard};
use crate::config::{AccessLog, Config, Route, Router};
use crate::exchange::{session_binding, CredentialSource};
use crate::mcp::session::{self, Digests, IdentityDigest, RouteDigest, SessionKeys};
use crate::telemetry::metrics::NO_ROUTE;
use crate::telemetry::{Metrics, RouteMetrics};
use crate::upstream_dns::{Addresses, Slot};

/// Per-route state prepared when a configuration is loaded.
pub(super) struct RouteRuntime {
    pub route: Arc<Route>,
    /// Template peer (TLS and timeouts set), cloned per request with the address of
    /// `address`.
    pub(super) peer: HttpPeer,
    /// The upstream host's address as DNS says now (`upstream_dns`), shared with every
    /// configuration that names the same host.
    pub(super) address: Arc<Slot>,
    /// The upstream's authority, the `Host` it receives.
    pub(super) upstream_host: http::HeaderValue,
    pub(super) metrics: RouteMetrics,
    /// What sealed session ids bind of this route.
    pub(super) session_route: RouteDigest,
    /// `None` for a public route.
    pub(super) guard: Option<RouteGuard>,
    pub(super) credential: CredentialSource,
    /// The route's and its tools' rate limits, with their buckets.
    pub(super) limits: crate::ratelimit::RouteLimiters,
    /// `policy.pins`, and which pinned tools were last listed changed.
    pub(super) pins: Option<super::pins::PinState>,
}

/// Everything derived from one configuration. Requests hold the state they started with
/// (in their context), so a reload never changes a request or stream in flight.
pub struct GatewayState {
    pub(super) router: Router,
    pub(super) routes: Vec<RouteRuntime>,
    pub(super) unrouted: RouteMetrics,
    pub(super) max_body: usize,
    /// `limits.body_timeout`, for HTTP/2 streams (an HTTP/1 connection's session carries
    /// it already, set by `server::connections`).
    pub(super) body_timeout: std::time::Duration,
    /// Most messages in one batch (`limits.max_batch`).
    pub(super) max_batch: usize,
    /// `limits.max_sse_event`.
    pub(super) max_sse_event: usize,
    pub(super) auth: Arc<Authenticator>,
    pub(super) metadata: MetadataIndex,
    /// Shared with the configuration that prepared them.
    pub(super) sessions: Arc<SessionKeys>,
    pub(super) session_max_age: Option<std::time::Duration>,
    /// `log.access`.
    pub(super) access_log: AccessLog,
    /// `trusted_proxies`.
    pub(super) trusted_proxies: crate::client_addr::TrustedProxies,
    /// `dns`.
    dns: crate::config::DnsSettings,
}

impl GatewayState {
    /// Prepares routes, guards, sessions and metric handles. Makes no DNS call: each
    /// route's upstream address is its host's slot in `addresses`, which the caller
    /// resolves (start-up and reloads on a blocking thread, then the supervisor every
    /// `dns.refresh`); a host that does not resolve leaves only its routes answering 503.
    ///
    /// What validation checked arrives parsed in the [`Config`] (keys, headers, the
    /// upstream `Host`) and is not parsed again, so the errors are only what can fail at
    /// run time: an HTTP client for a token endpoint that cannot be made (TLS set-up, see
    /// [`CredentialSource::build`]), and the process's random session key when there is no
    /// `sessions.keys` (the system's random source).
    pub fn build(
        config: &Config,
        metrics: &Metrics,
        auth: Arc<Authenticator>,
        addresses: &Addresses,
    ) -> std::result::Result<GatewayState, String> {
        let routes = config
            .routes
            .iter()
            .map(|route| {
                let route_metrics = metrics.for_route(&route.name);
                let tool_limits = route.tool_rate_limits.iter();
                route_metrics.rate_limits_configured(
                    (route.rate_limit.iter().map(|l| ("route", l.key.label())))
                        .chain(tool_limits.map(|(label, l)| (label.as_str(), l.key.label()))),
                );
                Ok(RouteRuntime {
                    peer: upstream_peer_for(route),
                    address: addresses.slot(&route.upstream.host, route.upstream.port),
                    upstream_host: route.upstream.authority.clone(),
                    metrics: route_metrics,
                    session_route: RouteDigest::of(&session_binding(route, auth.issuers())),
                    guard: RouteGuard::for_route(route),
                    credential: CredentialSource::build(route, auth.issuers())?,
                    limits: crate::ratelimit::RouteLimiters::new(
                        route.rate_limit,
                        &route.tool_rate_limits,
                    ),
                    pins: super::pins::PinState::for_route(route),
                    route: route.clone(),
                })
            })
            .collect::<std::result::Result<_, String>>()?;
        let with_servers: Vec<(&Route, Vec<String>)> = config
            .routes
            .iter()
            .map(|r| {
                let servers = r.auth.as_ref().map_or_else(Vec::new, |a| {
                    a.issuers
                        .iter()
                        .filter_map(|i| config.issuers.get(*i).map(|i| i.issuer.clone()))
                        .collect()
                });
                (r.as_ref(), servers)
            })
            .collect();
        let sessions = session_keys(config)?;
        // Shown only for configured keys: a process-local key is never shared.
        let checks: Vec<(&str, String)> = config.sessions.as_ref().map_or_else(Vec::new, |s| {
            s.key_checks
                .iter()
                .map(|(id, check)| (id.as_str(), check.clone()))
                .collect()
        });
        metrics.session_keys(&checks);
        // The log budget is the process's: the configuration that is loaded last sets it.
        crate::telemetry::budget::configure(config.log.aggregate_refusals, config.log.interval);
        Ok(GatewayState {
            router: Router::new(&config.routes),
            routes,
            unrouted: metrics.for_route(NO_ROUTE),
            max_body: config.max_body_bytes,
            body_timeout: config.client.body_timeout,
            max_batch: config.max_batch,
            max_sse_event: config.max_sse_event_bytes,
            auth,
            metadata: MetadataIndex::new(&with_servers),
            sessions,
            session_max_age: config.sessions.as_ref().and_then(|s| s.max_age),
            access_log: config.log.access,
            trusted_proxies: config.trusted_proxies.clone(),
            dns: config.dns,
        })
    }

    pub fn authenticator(&self) -> &Arc<Authenticator> {
        &self.auth
    }

    /// `dns`: how often and how long upstream host names are looked up.
    pub fn dns(&self) -> crate::config::DnsSettings {
        self.dns
    }

    /// Upstream hosts with no address, each with the routes that name it and why the
    /// last lookup failed, for `/readyz`.
    pub fn unresolved_upstreams(&self) -> Vec<(String, Vec<String>, String)> {
        let mut out: Vec<(String, Vec<String>, String)> = Vec::new();
        for rt in self
            .routes
            .iter()
            .filter(|rt| rt.address.address().is_none())
        {
            let host = &rt.address.host;
            match out.iter_mut().find(|(h, _, _)| h == host) {
                Some((_, routes, _)) => routes.push(rt.route.name.clone()),
                None => out.push((
                    host.clone(),
                    vec![rt.route.name.clone()],
                    rt.address
                        .failure()
                        .unwrap_or_else(|| "not looked up yet".into()),
                )),
            }
        }
        out
    }

    pub(super) fn route_runtime(&self, ctx: &RequestCtx) -> Option<&RouteRuntime> {
        ctx.route.as_ref().and_then(|m| self.routes.get(m.index))
    }

    /// Seals an upstream session id for the caller; `None` (logged) when it cannot be.
    pub(super) fn seal_session(
        &self,
        rt: &RouteRuntime,
        principal: &Option<Arc<Principal>>,
        upstream_id: &str,
    ) -> Option<String> {
        let binding = ctx_binding(principal, rt);
        match session::seal(&self.sessions, upstream_id, binding, cache_now()) {
            Ok(sealed) => Some(sealed),
            Err(e) => {
                tracing::error!(
                    route = %rt.route.name,
                    reason = e.reason(),
                    "cannot seal the upstream session id; it is withheld"
                );
                None
            }
        }
    }
}

/// Who a session belongs to: the route and the caller's stable identity (anonymous on a
/// public route), as the digests a seal binds — computed once per route and once per
/// verified token, not per request.
pub(super) fn ctx_binding(principal: &Option<Arc<Principal>>, rt: &RouteRuntime) -> Digests {
    Digests {
        route: rt.session_route,
        identity: principal
            .as_ref()
            .map_or_else(IdentityDigest::anonymous, |p| p.session_identity()),
    }
}

pub(super) fn cache_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Without `sessions.keys`: one random key made the first time it is needed and kept
/// for the life of the process, so a reload does not turn every open session into a
/// "tampered" one.
fn process_session_key() -> std::result::Result<Vec<u8>, String> {
    static KEY: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    if let Some(key) = KEY.get() {
        return Ok(key.clone());
    }
    let key = session::generate_key().and_then(|k| SessionKeys::decode_key(&k))?;
    Ok(KEY.get_or_init(|| key).clone())
}

/// The configured session keys (prepared by validation), or one random key for this
/// process. Fails only when the process key cannot be made (the system's random source).
fn session_keys(config: &Config) -> std::result::Result<Arc<SessionKeys>, String> {
    if let Some(s) = &config.sessions {
        return Ok(s.keys.clone());
    }
    let local = vec![("local".to_string(), process_session_key()?)];
    SessionKeys::new(local)
        .map(Arc::new)
        .map_err(|e| format!("sessions: {e}"))
}

/// The route's peer without its address (the unspecified address until a request sets
/// the one DNS gave: see `upstream_dns`).
fn upstream_peer_for(route: &Route) -> HttpPeer {
    let up = &route.upstream;
    let unset = std::net::SocketAddr::from(([0, 0, 0, 0], up.port));
    let mut peer = HttpPeer::new(unset, up.tls, up.host.clone());
    peer.options.connection_timeout = Some(up.connect_timeout);
    peer.options.total_connection_timeout = Some(up.connect_timeout);
    peer.options.read_timeout = Some(up.read_timeout);
    peer.options.write_timeout = Some(up.read_timeout);
    peer.options.idle_timeout = Some(std::time::Duration::from_secs(60));
    if let Some(certs) = &up.ca_certs {
        // Each certificate was parsed at load, so `parse_x509` cannot fail here.
        let roots: Vec<WrappedX509> = certs
            .iter()
            .map(|der| WrappedX509::new(der.clone(), parse_x509))
            .collect();
        peer.options.ca = Some(Arc::from(roots));
    }
    peer
}

#[cfg(test)]
mod tests {
    use super::*;
    use pingora::upstreams::peer::Peer;

    /// Building makes no DNS call (an unresolvable host is built fine); each route's
    /// address is its host's shared slot, resolved or not.
    #[test]
    fn state_is_built_without_dns_from_shared_address_slots() {
        let text = "routes:\n  - name: r\n    match: { path: /r }\n    upstream: { url: 'http://upstream.invalid:3001/mcp' }\n  - name: s\n    match: { path: /s }\n    upstream: { url: 'http://upstream.invalid:3001/other' }\n  - name: t\n    match: { path: /t }\n    upstream: { url: 'http://127.0.0.1:3002/mcp' }\n";
        let config = crate::config::load_str("gw.yaml", text).unwrap().config;
        let metrics = Metrics::new().unwrap();
        let auth = Arc::new(Authenticator::new(&config, &metrics, None).unwrap());
        let addresses = Addresses::default();
        let state = GatewayState::build(&config, &metrics, auth, &addresses).unwrap();
        assert_eq!(state.routes[0].address.address(), None, "not resolved yet");
        assert!(Arc::ptr_eq(
            &state.routes[0].address,
            &state.routes[1].address
        ));
        assert_eq!(
            state.routes[2].address.address(),
            Some("127.0.0.1:3002".parse().unwrap())
        );
        let names: Vec<String> = addresses.names().iter().map(|s| s.host.clone()).collect();
        assert_eq!(names, ["upstream.invalid"]);
        // The template peer carries TLS and timeouts; the address is set per request.
        assert_eq!(state.routes[2].peer.address().to_string(), "0.0.0.0:3002");
    }
}
