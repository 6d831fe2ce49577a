//! What one configuration becomes at run time: the router, each route's upstream peer,
//! guard, credential source and metric handles, the session keys. Built whole on load and
//! reload and swapped in at once; a request keeps the state it started with.
//!
//! Owns: building that state (DNS resolution kept apart: it blocks), sealing an upstream
//! session id for a caller. Does not own: the request path (`proxy`), the rules each
//! piece applies (`auth`, `exchange`, `mcp::session`).

use std::net::ToSocketAddrs;
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

/// Per-route state prepared when a configuration is loaded.
pub(super) struct RouteRuntime {
    pub route: Arc<Route>,
    /// Template peer (address resolved, TLS and timeouts set), cloned per request.
    pub(super) peer: HttpPeer,
    /// The upstream's authority, the `Host` it receives.
    pub(super) upstream_host: http::HeaderValue,
    pub(super) metrics: RouteMetrics,
    /// What sealed session ids bind of this route.
    pub(super) session_route: RouteDigest,
    /// `None` for a public route.
    pub(super) guard: Option<RouteGuard>,
    pub(super) credential: CredentialSource,
}

/// Everything derived from one configuration. Requests hold the state they started with
/// (in their context), so a reload never changes a request or stream in flight.
pub struct GatewayState {
    pub(super) router: Router,
    pub(super) routes: Vec<RouteRuntime>,
    pub(super) unrouted: RouteMetrics,
    pub(super) max_body: usize,
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
}

impl GatewayState {
    /// Prepares routes (resolving upstream addresses), guards, sessions and metric handles.
    /// Blocks on DNS: for start-up, before the runtime runs. A reload resolves on a
    /// blocking thread ([`GatewayState::resolve`]) and calls [`GatewayState::build_resolved`].
    /// Errors: those of both, all of them things that can fail at run time.
    pub fn build(
        config: &Config,
        metrics: &Metrics,
        auth: Arc<Authenticator>,
    ) -> std::result::Result<GatewayState, String> {
        let resolved = GatewayState::resolve(GatewayState::upstream_hosts(config))?;
        GatewayState::build_resolved(config, metrics, auth, resolved)
    }

    /// Each route's upstream (route name, host, port), in route order: owned, so that
    /// [`GatewayState::resolve`] can run on a blocking thread.
    pub fn upstream_hosts(config: &Config) -> Vec<(String, String, u16)> {
        config
            .routes
            .iter()
            .map(|r| (r.name.clone(), r.upstream.host.clone(), r.upstream.port))
            .collect()
    }

    /// Resolves each upstream host to its first address. Blocking (DNS): never call it on
    /// the async runtime, see `tokio::task::spawn_blocking`.
    pub fn resolve(
        hosts: Vec<(String, String, u16)>,
    ) -> std::result::Result<ResolvedUpstreams, String> {
        hosts
            .into_iter()
            .map(|(name, host, port)| {
                (host.as_str(), port)
                    .to_socket_addrs()
                    .map_err(|e| format!("route `{name}`: cannot resolve the upstream host: {e}"))?
                    .next()
                    .ok_or_else(|| format!("route `{name}`: the upstream host has no address"))
            })
            .collect::<std::result::Result<_, String>>()
            .map(ResolvedUpstreams)
    }

    /// [`GatewayState::build`] with the upstream addresses already resolved (in route
    /// order): no blocking call, safe on the async runtime.
    ///
    /// What validation checked arrives parsed in the [`Config`] (keys, headers, the
    /// upstream `Host`) and is not parsed again, so the errors are only what can fail at
    /// run time: fewer resolved addresses than routes, an HTTP client for a token
    /// endpoint that cannot be made (TLS set-up, see [`CredentialSource::build`]), and the
    /// process's random session key when there is no `sessions.keys` (the system's random
    /// source).
    pub fn build_resolved(
        config: &Config,
        metrics: &Metrics,
        auth: Arc<Authenticator>,
        resolved: ResolvedUpstreams,
    ) -> std::result::Result<GatewayState, String> {
        let routes = config
            .routes
            .iter()
            .enumerate()
            .map(|(i, route)| {
                let addr = resolved.0.get(i).copied().ok_or_else(|| {
                    format!("route `{}`: the upstream host was not resolved", route.name)
                })?;
                Ok(RouteRuntime {
                    peer: upstream_peer_for(route, addr),
                    upstream_host: route.upstream.authority.clone(),
                    metrics: metrics.for_route(&route.name),
                    session_route: RouteDigest::of(&session_binding(route, auth.issuers())),
                    guard: RouteGuard::for_route(route),
                    credential: CredentialSource::build(route, auth.issuers())?,
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
            max_batch: config.max_batch,
            max_sse_event: config.max_sse_event_bytes,
            auth,
            metadata: MetadataIndex::new(&with_servers),
            sessions,
            session_max_age: config.sessions.as_ref().and_then(|s| s.max_age),
            access_log: config.log.access,
            trusted_proxies: config.trusted_proxies.clone(),
        })
    }

    pub fn authenticator(&self) -> &Arc<Authenticator> {
        &self.auth
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

/// Each route's upstream address, in route order (see [`GatewayState::resolve`]).
#[derive(Debug)]
pub struct ResolvedUpstreams(Vec<std::net::SocketAddr>);

fn upstream_peer_for(route: &Route, addr: std::net::SocketAddr) -> HttpPeer {
    let up = &route.upstream;
    let mut peer = HttpPeer::new(addr, up.tls, up.host.clone());
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

    /// A reload resolves on a blocking thread and builds from the addresses it got:
    /// building makes no DNS call (an unresolvable host is built fine), and uses them.
    #[test]
    fn state_is_built_from_addresses_resolved_beforehand() {
        let text = "routes:\n  - name: r\n    match: { path: /r }\n    upstream: { url: 'http://upstream.invalid:3001/mcp' }\n";
        let config = crate::config::load_str("gw.yaml", text).unwrap().config;
        let metrics = Metrics::new().unwrap();
        let auth = Arc::new(Authenticator::new(&config, &metrics, None).unwrap());
        assert_eq!(
            GatewayState::upstream_hosts(&config),
            [("r".to_string(), "upstream.invalid".to_string(), 3001)]
        );
        let addr: std::net::SocketAddr = "127.0.0.1:3001".parse().unwrap();
        let resolved = ResolvedUpstreams(vec![addr]);
        let state =
            GatewayState::build_resolved(&config, &metrics, auth.clone(), resolved).unwrap();
        assert_eq!(state.routes[0].peer.address().to_string(), addr.to_string());
        // Fewer addresses than routes is an error, never a route without a peer.
        let none = ResolvedUpstreams(Vec::new());
        assert!(GatewayState::build_resolved(&config, &metrics, auth, none).is_err());
        let loopback = GatewayState::resolve(vec![("r".into(), "127.0.0.1".into(), 9)]).unwrap();
        assert_eq!(
            loopback.0,
            ["127.0.0.1:9".parse::<std::net::SocketAddr>().unwrap()]
        );
    }
}
