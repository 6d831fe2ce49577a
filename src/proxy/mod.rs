//! The Pingora `ProxyHttp` implementation: one method per phase, each reading the
//! request context, calling the step that owns the decision, and writing the context.
//! The order of the request path in docs/ARCHITECTURE.md is the order of the methods below.
//!
//! Nothing here parses protocols or decides policy; see `config::Router` (route),
//! `mcp` (inspect), `proxy::headers` (header hygiene) and `refusal` (error answers).

mod body;
mod credential;
mod ctx;
mod delegate;
mod failure;
mod form;
mod handles;
mod headers;
mod origin;
mod rewrite;
mod steps;

use std::net::ToSocketAddrs;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::modules::http::HttpModules;
use pingora::prelude::HttpPeer;
use pingora::proxy::{FailToProxy, ProxyHttp, Session};
use pingora::utils::tls::{parse_x509, WrappedX509};
use pingora::{Error, ErrorType, OkOrErr, OrErr, Result};

pub use ctx::{RequestCtx, ResponseMode};

use crate::auth::metadata::MetadataIndex;
use crate::auth::Principal;
use crate::auth::{Authenticator, RouteGuard};
use crate::config::{Config, Route, Router};
use crate::exchange::CredentialCache;
use crate::mcp::jsonrpc;
use crate::mcp::session::{self, Digests, IdentityDigest, RouteDigest, SessionKeys};
use crate::refusal::Refusal;
use crate::telemetry::metrics::NO_ROUTE;
use crate::telemetry::{Metrics, RouteMetrics};
use arc_swap::ArcSwap;
use failure::{classify, Failure};
use headers::Forwarding;

/// Per-route state prepared when a configuration is loaded.
struct RouteRuntime {
    route: Arc<Route>,
    /// Template peer (address resolved, TLS and timeouts set), cloned per request.
    peer: HttpPeer,
    /// The upstream's authority, the `Host` it receives.
    upstream_host: http::HeaderValue,
    metrics: RouteMetrics,
    /// What sealed session ids bind of this route.
    session_route: RouteDigest,
    /// `None` for a public route.
    guard: Option<RouteGuard>,
    credential: credential::CredentialSource,
}

/// Everything derived from one configuration. Requests hold the state they started with
/// (in their context), so a reload never changes a request or stream in flight.
pub struct GatewayState {
    router: Router,
    routes: Vec<RouteRuntime>,
    unrouted: RouteMetrics,
    max_body: usize,
    /// Most messages in one batch (`limits.max_batch`).
    max_batch: usize,
    /// `limits.max_sse_event`.
    max_sse_event: usize,
    auth: Arc<Authenticator>,
    metadata: MetadataIndex,
    sessions: SessionKeys,
    session_max_age: Option<std::time::Duration>,
}

/// The proxy service: the current state (swapped whole on reload) and what outlives
/// configurations (the upstream-credential cache).
pub struct Gateway {
    state: Arc<ArcSwap<GatewayState>>,
    credentials: CredentialCache,
    exchange_counters: credential::ExchangeCounters,
    /// Client-connection metrics (timeouts); set by the server that owns the listener.
    client_metrics: Option<crate::telemetry::client::ClientMetrics>,
}

/// Upstream credentials cached at most (bounded memory).
const CREDENTIAL_CACHE_CAPACITY: u64 = 50_000;

impl Gateway {
    pub fn new(state: GatewayState, metrics: &Metrics) -> Gateway {
        Gateway {
            state: Arc::new(ArcSwap::from_pointee(state)),
            credentials: CredentialCache::new(CREDENTIAL_CACHE_CAPACITY),
            exchange_counters: credential::ExchangeCounters {
                hit: metrics.cache_counter("exchange", "hit"),
                miss: metrics.cache_counter("exchange", "miss"),
            },
            client_metrics: None,
        }
    }

    /// Counts client timeouts (the body timeout) in `metrics`.
    pub fn with_client_metrics(
        mut self,
        metrics: crate::telemetry::client::ClientMetrics,
    ) -> Gateway {
        self.client_metrics = Some(metrics);
        self
    }

    /// The shared handle to the current state, for reloads and readiness.
    pub fn state_handle(&self) -> Arc<ArcSwap<GatewayState>> {
        self.state.clone()
    }
}

impl GatewayState {
    /// Prepares routes (resolving upstream addresses), guards, sessions and metric handles.
    /// Blocks on DNS: for start-up, before the runtime runs. A reload resolves on a
    /// blocking thread ([`GatewayState::resolve`]) and calls [`GatewayState::build_resolved`].
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
                    upstream_host: http::HeaderValue::from_str(&route.upstream.authority)
                        .map_err(|e| format!("route `{}`: upstream authority: {e}", route.name))?,
                    metrics: metrics.for_route(&route.name),
                    session_route: RouteDigest::of(&credential::session_binding(
                        route,
                        auth.issuers(),
                    )),
                    guard: RouteGuard::for_route(route),
                    credential: credential::CredentialSource::build(route, auth.issuers())?,
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
            s.keys
                .iter()
                .map(|(id, secret)| (id.as_str(), session::key_check(secret.expose())))
                .collect()
        });
        metrics.session_keys(&checks);
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
        })
    }

    pub fn authenticator(&self) -> &Arc<Authenticator> {
        &self.auth
    }

    fn route_runtime(&self, ctx: &RequestCtx) -> Option<&RouteRuntime> {
        ctx.route.as_ref().and_then(|m| self.routes.get(m.index))
    }

    /// Seals an upstream session id for the caller; `None` (logged) when it cannot be.
    fn seal_session(
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

impl Gateway {
    /// Writes a refusal as the response; the upstream is never contacted.
    async fn refuse(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        refusal: Refusal,
    ) -> Result<bool> {
        if let (Refusal::BodyTimeout, Some(m)) = (&refusal, &self.client_metrics) {
            m.timeout(crate::telemetry::client::TimeoutKind::Body);
        }
        let body = Bytes::from(refusal.body(ctx.inspected.as_ref()));
        let cors = origin::cors_origin(session, ctx);
        write_refusal(session, refusal.status(), body, &refusal, cors.as_ref()).await?;
        ctx.refusal = Some(refusal);
        Ok(true)
    }
}

/// Who a session belongs to: the route and the caller's stable identity (anonymous on a
/// public route), as the digests a seal binds — computed once per route and once per
/// verified token, not per request.
fn ctx_binding(principal: &Option<Arc<Principal>>, rt: &RouteRuntime) -> Digests {
    Digests {
        route: rt.session_route,
        identity: principal
            .as_ref()
            .map_or_else(IdentityDigest::anonymous, |p| p.session_identity()),
    }
}

impl Gateway {
    /// Replaces the upstream's `Mcp-Session-Id` with the sealed one; an id that cannot be
    /// sealed is removed, never passed on in clear.
    fn seal_response_session(&self, resp: &mut ResponseHeader, ctx: &RequestCtx) {
        let Some(value) = resp.headers.get(&headers::MCP_SESSION_ID) else {
            return;
        };
        let sealed = match (value.to_str(), ctx.route.as_ref()) {
            // The session the client presented (young, sealed with the current key): its
            // sealed id is as good as a new one, and sealing costs a nonce and an AEAD.
            (Ok(id), Some(_))
                if ctx.reusable_seal.is_some()
                    && ctx.upstream_session_id.as_deref() == Some(id) =>
            {
                ctx.reusable_seal.clone()
            }
            (Ok(id), Some(_)) => ctx
                .state
                .route_runtime(ctx)
                .and_then(|rt| ctx.state.seal_session(rt, &ctx.principal, id)),
            _ => None,
        };
        resp.remove_header(&headers::MCP_SESSION_ID);
        if let Some(sealed) = sealed {
            // Sealed ids are [A-Za-z0-9_.-] only.
            let _ = resp.insert_header("mcp-session-id", sealed);
        }
    }
}

fn cache_now() -> u64 {
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

/// The configured session keys, or one random key for this process.
fn session_keys(config: &Config) -> std::result::Result<SessionKeys, String> {
    let keys = match &config.sessions {
        Some(s) => s
            .keys
            .iter()
            .map(|(id, bytes)| (id.clone(), bytes.expose().to_vec()))
            .collect(),
        None => vec![("local".to_string(), process_session_key()?)],
    };
    SessionKeys::new(keys).map_err(|e| format!("sessions: {e}"))
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

/// [`write_json`], with the CORS headers for an allowed browser origin, so that a browser
/// client can read the refusal and its challenge.
async fn write_refusal(
    session: &mut Session,
    status: u16,
    body: Bytes,
    refusal: &Refusal,
    cors: Option<&http::HeaderValue>,
) -> Result<()> {
    let mut resp = ResponseHeader::build(status, Some(8))?;
    if let Some(origin) = cors {
        origin::add_response_headers(&mut resp, origin)?;
    }
    resp.insert_header(http::header::CONTENT_TYPE, "application/json")?;
    resp.insert_header(http::header::CONTENT_LENGTH, body.len())?;
    resp.insert_header(http::header::CACHE_CONTROL, "no-store")?;
    if let Some(challenge) = refusal.www_authenticate() {
        resp.insert_header(http::header::WWW_AUTHENTICATE, challenge)?;
    }
    if let Some(methods) = refusal.allow() {
        resp.insert_header(http::header::ALLOW, methods)?;
    }
    if let Some(seconds) = refusal.retry_after() {
        resp.insert_header(http::header::RETRY_AFTER, seconds)?;
    }
    session.write_response_header(Box::new(resp), false).await?;
    session.write_response_body(Some(body), true).await
}

fn request_host(req: &RequestHeader) -> Option<&str> {
    req.uri.host().or_else(|| {
        req.headers
            .get(http::header::HOST)
            .and_then(|h| h.to_str().ok())
    })
}

#[async_trait]
impl ProxyHttp for Gateway {
    // Boxed: Pingora keeps the context inline in the future of every downstream
    // connection (more than once: it is moved between nested futures), and that future
    // lives as long as the connection, idle event streams included. Inline, the
    // context pushed the allocation into the next allocator size class.
    type CTX = Box<RequestCtx>;

    /// No downstream modules. Pingora's default adds a response compression module,
    /// disabled (level 0), that drawbridge never enables; its per-request state is held
    /// for the life of every connection, idle event streams included.
    fn init_downstream_modules(&self, _modules: &mut HttpModules) {}

    fn new_ctx(&self) -> Box<RequestCtx> {
        Box::new(RequestCtx::new(self.state.load_full()))
    }

    /// Route, authenticate and inspect: metadata requests are answered here; otherwise
    /// the route is picked, the caller authenticated, and a POST body read and parsed
    /// whole, all before any upstream connection exists. `Ok(true)`: the gateway answered.
    async fn request_filter(
        &self,
        session: &mut Session,
        ctx: &mut Box<RequestCtx>,
    ) -> Result<bool> {
        if delegate::adopt_handoff(session, ctx) {
            // A subrequest: the main request already routed and inspected it.
            return Ok(false);
        }
        let state = ctx.state.clone();
        let req = session.req_header();
        if let Some((route, doc)) = state.metadata.find(request_host(req), req.uri.path()) {
            return self.serve_metadata(session, ctx, route, doc).await;
        }
        let path = match crate::target::checked_target(req.raw_path()) {
            Ok(target) => target,
            Err(e) => return self.refuse(session, ctx, e.into()).await,
        };
        let Some(found) = state.router.find(request_host(req), &path) else {
            return self.refuse(session, ctx, Refusal::NoRoute).await;
        };
        ctx.route = Some(found);
        if self.check_origin(session, ctx).await? {
            return Ok(true);
        }
        if self.check_request_form(session, ctx).await? || self.authenticate(session, ctx).await? {
            return Ok(true);
        }
        // Inspect: only POSTs carry JSON-RPC; GET streams and DELETE carry no operation.
        let mut post_body = None;
        if session.req_header().method == http::Method::POST {
            if self.check_body_framing(session, ctx).await? {
                return Ok(true);
            }
            let body = match body::read_whole_body(session, state.max_body).await? {
                Ok(body) => body,
                Err(refusal) => return self.refuse(session, ctx, refusal).await,
            };
            ctx.body_len = Some(body.len());
            match jsonrpc::inspect(&body) {
                Ok(inspected) => ctx.inspected = Some(inspected),
                Err(malformed) => return self.refuse(session, ctx, malformed.into()).await,
            }
            if self.check_mcp_headers(session, ctx).await? || self.check_batch(session, ctx).await?
            {
                return Ok(true);
            }
            post_body = Some(body);
        }
        if self.authorize(session, ctx).await?
            || self.open_session(session, ctx).await?
            // Multi round-trip state: opened for this caller, the body restored (handles.rs).
            || self.open_request_state(session, ctx, &mut post_body).await?
            || self.obtain_credential(session, ctx).await?
        {
            return Ok(true);
        }
        match post_body {
            // A restored body is not the one in Pingora's retry buffer (handles.rs).
            Some(body)
                if ctx.body_restored
                    || delegate::needed(body.len(), !ctx.pending_lists.is_empty()) =>
            {
                self.delegate(session, ctx, body).await
            }
            _ => Ok(false),
        }
    }

    /// Pingora prepares a subrequest spawner only for requests that may need one.
    fn allow_spawning_subrequest(&self, session: &Session, _ctx: &Box<RequestCtx>) -> bool {
        delegate::may_need_subrequest(session)
    }

    /// The upstream of the matched route; event-stream GETs get the idle timeout.
    async fn upstream_peer(
        &self,
        session: &mut Session,
        ctx: &mut Box<RequestCtx>,
    ) -> Result<Box<HttpPeer>> {
        let state = ctx.state.clone();
        let rt = state
            .route_runtime(ctx)
            .or_err(ErrorType::InternalError, "upstream_peer without a route")?;
        // Forwarding needs a permit: only the authorize step issues one.
        ctx.permit
            .as_ref()
            .or_err(ErrorType::InternalError, "upstream_peer without a permit")?;
        let mut peer = rt.peer.clone();
        if session.req_header().method == http::Method::GET {
            peer.options.read_timeout = Some(rt.route.upstream.stream_idle_timeout);
        }
        Ok(Box::new(peer))
    }

    /// Header hygiene and the path rewrite. Runs after the connection is open and before
    /// the header is written.
    async fn upstream_request_filter(
        &self,
        session: &mut Session,
        upstream_request: &mut RequestHeader,
        ctx: &mut Box<RequestCtx>,
    ) -> Result<()> {
        let state = ctx.state.clone();
        let (Some(found), Some(rt)) = (ctx.route.as_ref(), state.route_runtime(ctx)) else {
            return Error::e_explain(ErrorType::InternalError, "forwarding without a route");
        };
        let uri = http::Uri::try_from(found.upstream_path.as_str())
            .or_err(ErrorType::InternalError, "rewritten path is not a URI")?;
        upstream_request.set_uri(uri);
        headers::prepare_upstream_request(
            upstream_request,
            &Forwarding {
                upstream_authority: &rt.upstream_host,
                client_ip: session
                    .client_addr()
                    .and_then(|a| a.as_inet())
                    .map(|a| a.ip()),
                body_len: ctx.body_len,
                session_id: ctx.upstream_session_id.as_deref(),
                // After the caller's credentials were stripped: the route's own, if any.
                credential: ctx.upstream_credential.as_ref(),
                forward_cookies: rt.route.upstream.forward_cookies,
            },
        )
    }

    /// Response header: a compressed answer is refused (it could not be filtered);
    /// hop-by-hop removal; event streams are counted; the body's filter is chosen.
    async fn response_filter(
        &self,
        session: &mut Session,
        upstream_response: &mut ResponseHeader,
        ctx: &mut Box<RequestCtx>,
    ) -> Result<()> {
        if !headers::is_identity_encoded(upstream_response) {
            if let Some(rt) = ctx.state.clone().route_runtime(ctx) {
                rt.metrics.stream_error("compressed");
            }
            return Error::e_explain(failure::UNFILTERABLE, "compressed upstream answer");
        }
        headers::prepare_client_response(upstream_response);
        self.seal_response_session(upstream_response, ctx);
        if let Some(origin) = origin::cors_origin(session, ctx) {
            origin::add_response_headers(upstream_response, &origin)?;
        }
        let stream = headers::is_event_stream(upstream_response);
        if stream {
            if let Some(rt) = ctx.state.clone().route_runtime(ctx) {
                rt.metrics.active_streams.inc();
                ctx.counted_stream = true;
            }
        }
        let policy = ctx.route.as_ref().is_some_and(|r| r.route.policy.is_some());
        // An answer that may carry a `requestState` is read too, to seal it (handles.rs).
        let read_json =
            policy || crate::mcp::handles::answer_may_carry_state(ctx.inspected.as_ref());
        ctx.response_mode = rewrite::mode_for(
            read_json,
            stream,
            upstream_response.status.is_success(),
            ctx.state.max_sse_event,
        );
        if !matches!(ctx.response_mode, ResponseMode::PassThrough) {
            rewrite::frame_rewritten_body(upstream_response);
        }
        Ok(())
    }

    fn response_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<Bytes>,
        end_of_stream: bool,
        ctx: &mut Box<RequestCtx>,
    ) -> Result<Option<std::time::Duration>> {
        if !matches!(ctx.response_mode, ResponseMode::PassThrough) {
            self.rewrite_body(body, end_of_stream, ctx)?;
        }
        Ok(None)
    }

    /// The request header has been read: the connection's header deadline stops (see
    /// `server::connections`, which sets this context on every request).
    fn on_connection_reuse(
        &self,
        _session: &mut Session,
        _ctx: &mut Box<RequestCtx>,
        connection: Box<dyn std::any::Any + Send + Sync>,
    ) {
        if let Some(arrived) = connection.downcast_ref::<crate::server::HeaderArrived>() {
            arrived.mark();
        }
    }

    /// A client that goes away mid-answer is normal (an MCP client closing an event
    /// stream it no longer needs): no ERROR line from Pingora for it. The access log
    /// still records the request (status 0 if nothing was written, the error type).
    /// The same for any other client fault (a stalled or malformed body): the access line
    /// records it with its refusal.
    fn suppress_error_log(&self, _session: &Session, _ctx: &Box<RequestCtx>, e: &Error) -> bool {
        failure::is_client_fault(e)
    }

    /// The one place a failure becomes a response.
    async fn fail_to_proxy(
        &self,
        session: &mut Session,
        e: &Error,
        ctx: &mut Box<RequestCtx>,
    ) -> FailToProxy {
        let (refusal, upstream_kind) = match classify(e) {
            Failure::Respond {
                refusal,
                upstream_kind,
            } => (refusal, upstream_kind),
            Failure::ClientGone => {
                return FailToProxy {
                    error_code: 0,
                    can_reuse_downstream: false,
                }
            }
            Failure::BadClientRequest => (Refusal::MalformedBody, None),
        };
        let state = ctx.state.clone();
        if let (Some(kind), Some(rt)) = (upstream_kind, state.route_runtime(ctx)) {
            rt.metrics.upstream_error(kind);
            ctx.upstream_error = Some(kind);
        }
        if session.response_written().is_some() {
            // Mid-stream: the status is gone; closing the connection is all that is left.
            return FailToProxy {
                error_code: 0,
                can_reuse_downstream: false,
            };
        }
        let status = refusal.status();
        let body = Bytes::from(refusal.body(ctx.inspected.as_ref()));
        let cors = origin::cors_origin(session, ctx);
        if let Err(write_error) =
            write_refusal(session, status, body, &refusal, cors.as_ref()).await
        {
            tracing::debug!(error = %write_error, "could not send the error response");
        }
        ctx.refusal = Some(refusal);
        FailToProxy {
            error_code: status,
            can_reuse_downstream: false,
        }
    }

    /// Metrics and the access line, once per request.
    async fn logging(&self, session: &mut Session, e: Option<&Error>, ctx: &mut Box<RequestCtx>) {
        if ctx.delegated {
            return; // the subrequest that carried it logs it
        }
        // A held list answer that failed its filter went out with the refusal's status.
        let held_refusal = ctx.held_answer_refusal();
        let status = held_refusal.as_ref().map_or_else(
            || session.response_written().map_or(0, |r| r.status.as_u16()),
            Refusal::status,
        );
        let req = session.req_header();
        let state = ctx.state.clone();
        // A metadata request counts under the route whose document it got.
        let metrics = state
            .route_runtime(ctx)
            .or_else(|| ctx.metadata_of.and_then(|i| state.routes.get(i)))
            .map_or(&state.unrouted, |rt| &rt.metrics);
        metrics.request(req.method.as_str(), status);
        let elapsed = ctx.started.elapsed();
        metrics.duration.observe(elapsed.as_secs_f64());
        if ctx.counted_stream {
            metrics.active_streams.dec();
            ctx.counted_stream = false;
        }
        tracing::info!(
            target: "drawbridge::access",
            route = %metrics.name,
            method = %req.method,
            path = req.uri.path(),
            status,
            duration_ms = elapsed.as_secs_f64() * 1e3,
            bytes_in = session.body_bytes_read(),
            bytes_out = session.body_bytes_sent(),
            refusal = ctx.refusal.as_ref().or(held_refusal.as_ref()).map(Refusal::kind),
            upstream_error = ctx.upstream_error,
            error = e.map(|e| e.etype().as_str()),
        );
    }

    /// What Pingora's own error log says about a request: method and path, no query
    /// (legacy session ids travel there) and no headers.
    fn request_summary(&self, session: &Session, _ctx: &Box<RequestCtx>) -> String {
        let req = session.req_header();
        format!("{} {}", req.method, req.uri.path())
    }
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
