//! The Pingora `ProxyHttp` implementation. [`Gateway::admit`] is the request path up to
//! the upstream, one step a line, in the order docs/ARCHITECTURE.md describes; the
//! `ProxyHttp` phases below it forward, filter the answer and log.
//!
//! Each step (`steps`, `form`, `origin`, `body`) decides and returns what it established
//! or a [`Refusal`]; `request_filter` is the one place a refusal of the request path
//! becomes a response, `fail_to_proxy` the one place a failure after it does. Nothing here
//! parses protocols or decides policy: see `target` (the URL), `config::Router` (route),
//! `auth` (authenticate), `mcp` (inspect), `policy` (authorize), `proxy::headers` (header
//! hygiene) and `refusal` (error answers).

mod answer;
mod body;
mod ctx;
mod delegate;
mod failure;
mod form;
mod handles;
mod headers;
mod limits;
mod origin;
mod pins;
mod rewrite;
mod state;
mod steps;

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::modules::http::HttpModules;
use pingora::prelude::HttpPeer;
use pingora::proxy::{FailToProxy, ProxyHttp, Session};
use pingora::{Error, ErrorType, OkOrErr, OrErr, Result};

pub use ctx::{HeaderArrived, RequestCtx, ResponseMode};
pub use state::GatewayState;

use crate::exchange::{CredentialCache, CredentialRequest, ExchangeCounters};
use crate::mcp::jsonrpc;
use crate::refusal::Refusal;
use crate::telemetry::budget::{self, RefusalKey, Source};
use crate::telemetry::ids::RequestIds;
use crate::telemetry::Metrics;
use arc_swap::ArcSwap;
use failure::{classify, Failure};
use form::Form;
use headers::Forwarding;

/// The proxy service: the current state (swapped whole on reload) and what outlives
/// configurations (the upstream-credential cache).
pub struct Gateway {
    state: Arc<ArcSwap<GatewayState>>,
    credentials: CredentialCache,
    exchange_counters: ExchangeCounters,
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
            exchange_counters: ExchangeCounters {
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

/// How an admitted request goes on.
enum Admitted {
    /// A CORS preflight, answered by the gateway (with the allowed origin, if any).
    Preflight(Option<http::HeaderValue>),
    /// Forwarded: Pingora replays the body it holds, if any, or a subrequest is fed with
    /// it (see `delegate::needed`).
    Forward(Option<Bytes>),
}

/// Why the request path stopped before the upstream.
enum Stop {
    /// Refused: the refusal is the answer.
    Refused(Refusal),
    /// Refused with its body unread: answered, and the connection is not read from again.
    RefusedUnread(Refusal),
    /// Pingora's error (the client went away, a write failed): no answer is written here.
    Failed(Box<Error>),
}

impl From<Refusal> for Stop {
    fn from(refusal: Refusal) -> Stop {
        Stop::Refused(refusal)
    }
}

impl From<Box<Error>> for Stop {
    fn from(e: Box<Error>) -> Stop {
        Stop::Failed(e)
    }
}

impl Gateway {
    /// The request path up to the upstream. Each step decides and returns; none writes a
    /// response, and the upstream is contacted only after the last one.
    async fn admit(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        state: &GatewayState,
    ) -> std::result::Result<Admitted, Stop> {
        let req = session.req_header();
        // 1. Target: origin-form, one normalised path, one canonical query.
        let target = crate::target::checked_target(req.raw_path()).map_err(Refusal::from)?;
        // 2. Route, and its runtime state for every step below.
        let found = (state.router.find(request_host(req), &target.path_and_query))
            .ok_or(Refusal::NoRoute)?;
        let rt = state.routes.get(found.index).ok_or(Refusal::Internal)?;
        ctx.route = Some(found);
        // 3. Origin: a disallowed browser origin is refused, a preflight answered.
        let origin = origin::check_origin(rt, req)?;
        if origin::is_preflight(&req.method, &req.headers) {
            return Ok(Admitted::Preflight(origin));
        }
        // 4. Form: method, framing, `Mcp-*` headers, before anything is read.
        let form = steps::check_request_form(req).map_err(Stop::RefusedUnread)?;
        // 5. Authenticate: a protected route's caller, before any body byte is read.
        // The token itself is kept (in this function only) when the route exchanges it.
        let mut subject_token = None;
        if let Some(auth) = steps::authenticate(
            state,
            rt,
            req,
            &target.query,
            ctx.client_ip,
            ctx.ids.as_ref(),
        )
        .await?
        {
            ctx.principal = Some(auth.verified.principal);
            ctx.token_key = Some(auth.verified.token_key);
            subject_token = auth.subject_token;
        }
        // 5b. An upstream whose name does not resolve: 503 before the body is read.
        if rt.address.address().is_none() {
            return Err(Stop::RefusedUnread(Refusal::UpstreamUnresolved));
        }
        // 5c. The route's rate limit: before the body is read, so a flood is cheap.
        limits::check_route_limit(
            rt,
            ctx.principal.as_deref(),
            ctx.client_ip,
            ctx.ids.as_ref(),
        )?;
        // 6. Inspect: a POST body read whole and parsed (only POSTs carry JSON-RPC).
        let body = match form {
            Form::Message => Some(inspect(session, ctx, state).await?),
            Form::Bodiless => None,
        };
        // 7. Authorize every operation: the permit forwarding requires.
        let (permit, lists) = steps::authorize(
            rt,
            ctx.principal.as_deref(),
            ctx.inspected.as_ref(),
            body.as_deref(),
            ctx.ids.as_ref(),
        )?;
        // 7b. Pinned tool definitions: no call of a tool hidden for a changed definition.
        if let Some(pins) = &rt.pins {
            let at = pins::Recorder {
                route: &rt.route,
                metrics: &rt.metrics,
                principal: ctx.principal.as_deref(),
                ids: ctx.ids.as_ref(),
            };
            pins.check_calls(&at, ctx.inspected.as_ref())?;
        }
        // 7c. The tools' rate limits: only permitted calls count (not those refused above).
        limits::check_tool_limits(
            rt,
            ctx.principal.as_deref(),
            ctx.client_ip,
            ctx.inspected.as_ref(),
            ctx.ids.as_ref(),
        )?;
        ctx.pending_lists = lists;
        ctx.permit = Some(permit);
        // 8. Session: a sealed session id opens for this caller and route only.
        let found = ctx.route.as_mut().ok_or(Refusal::Internal)?;
        let opened = steps::open_session(
            state,
            rt,
            session.req_header(),
            &target.query,
            &ctx.principal,
            found,
            ctx.ids.as_ref(),
        )?;
        ctx.upstream_session_id = opened.upstream_id;
        ctx.reusable_seal = opened.reusable_seal;
        // 8b. Server-minted handles (requestState, task ids): opened for this caller,
        // the body restored, and the upstream's reading of it kept.
        let body = handles::restore_body(state, rt, ctx, body)?;
        // 9. Credential: what the upstream gets instead of the caller's token.
        let request = CredentialRequest {
            subject_token: subject_token.as_deref(),
            subject_key: ctx.token_key,
            subject_expires_at: ctx.principal.as_ref().map(|p| p.expires_at),
            permit_scopes: ctx.permit.as_ref().map_or(&[][..], |p| &p.scopes[..]),
        };
        ctx.upstream_credential = steps::obtain_credential(
            self,
            rt,
            &request,
            ctx.principal.as_deref(),
            ctx.ids.as_ref(),
        )
        .await?;
        Ok(Admitted::Forward(body))
    }

    /// Writes a refusal as the response; the upstream is never contacted.
    async fn refuse(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        stop: Stop,
    ) -> Result<bool> {
        let refusal = match stop {
            Stop::Refused(refusal) => refusal,
            Stop::RefusedUnread(refusal) => {
                session.set_keepalive(None);
                refusal
            }
            Stop::Failed(e) => return Err(e),
        };
        if let (Refusal::BodyTimeout, Some(m)) = (&refusal, &self.client_metrics) {
            m.timeout(crate::telemetry::client::TimeoutKind::Body);
        }
        let body = Bytes::from(refusal.body_for(ctx.inspected.as_ref(), ctx.request_id()));
        let cors = origin::cors_origin(session, ctx);
        answer::write_refusal(
            session,
            refusal.status(),
            body,
            &refusal,
            cors.as_ref(),
            ctx.request_id_header(),
        )
        .await?;
        ctx.refusal = Some(refusal);
        Ok(true)
    }
}

/// Step 6: the body must be plain JSON, arrive whole within the limits, parse as JSON-RPC,
/// and agree with the request's `Mcp-*` headers and batch rules. The context keeps what
/// was found; the body is returned for forwarding.
async fn inspect(
    session: &mut Session,
    ctx: &mut RequestCtx,
    state: &GatewayState,
) -> std::result::Result<Bytes, Stop> {
    steps::check_body_framing(session.req_header()).map_err(|(refusal, unread)| match unread {
        true => Stop::RefusedUnread(refusal),
        false => Stop::Refused(refusal),
    })?;
    let body = body::read_whole_body(session, state.max_body, state.body_timeout).await??;
    ctx.body_len = Some(body.len());
    let inspected = ctx
        .inspected
        .insert(jsonrpc::inspect(&body).map_err(Refusal::from)?);
    let req = session.req_header();
    steps::check_mcp_headers(req, inspected)?;
    steps::check_removed_methods(inspected)?;
    steps::check_batch(req, inspected, state.max_batch)?;
    Ok(body)
}

/// The TCP peer's address.
fn peer_ip(session: &Session) -> Option<std::net::IpAddr> {
    session
        .client_addr()
        .and_then(|a| a.as_inet())
        .map(|a| a.ip())
}

/// The client's address: the peer, or what a trusted proxy reports (`client_addr`).
fn client_ip(
    session: &Session,
    trusted: &crate::client_addr::TrustedProxies,
) -> Option<std::net::IpAddr> {
    let peer = peer_ip(session)?;
    if trusted.is_empty() {
        return Some(peer);
    }
    let forwarded = session.req_header().headers.get_all("x-forwarded-for");
    Some(trusted.client(peer, forwarded.iter()))
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

    /// The request path (see [`Gateway::admit`]): a metadata request is answered; any
    /// other is admitted, handed to a subrequest, or refused, all before any upstream
    /// connection exists. `Ok(true)`: the gateway answered.
    async fn request_filter(
        &self,
        session: &mut Session,
        ctx: &mut Box<RequestCtx>,
    ) -> Result<bool> {
        if delegate::adopt_handoff(session, ctx) {
            // A subrequest: the main request already identified, routed and inspected it.
            return Ok(false);
        }
        // Identify, first of all: the request's id and trace (`telemetry::ids`), which
        // the upstream request, the answer and every log line of this request carry.
        ctx.ids = Some(crate::telemetry::ids::assign(&session.req_header().headers));
        let state = ctx.state.clone();
        ctx.client_ip = client_ip(session, &state.trusted_proxies);
        let req = session.req_header();
        if let Some((route, doc)) = state.metadata.find(request_host(req), req.uri.path()) {
            ctx.metadata_of = Some(route);
            answer::write_metadata(session, doc, ctx.request_id_header()).await?;
            return Ok(true);
        }
        let outcome = match self.admit(session, ctx, &state).await {
            // A restored body is not the one in Pingora's retry buffer (`handles`).
            Ok(Admitted::Forward(Some(body)))
                if ctx.body_restored
                    || delegate::needed(body.len(), !ctx.pending_lists.is_empty()) =>
            {
                delegate::hand_off(session, ctx, body)
                    .await
                    .map_err(Stop::from)
            }
            Ok(Admitted::Forward(_)) => return Ok(false),
            Ok(Admitted::Preflight(origin)) => origin::answer_preflight(session, origin.as_ref())
                .await
                .map_err(Stop::from),
            Err(stop) => Err(stop),
        };
        match outcome {
            Ok(()) => Ok(true),
            Err(stop) => self.refuse(session, ctx, stop).await,
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
        let address = rt.address.address().or_err(
            ErrorType::ConnectNoRoute,
            "the upstream host does not resolve",
        )?;
        let mut peer = rt.peer.clone();
        peer._address = pingora::protocols::l4::socket::SocketAddr::Inet(address);
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
        // The upstream's own task id in `Mcp-Name`, as in the restored body (`handles`).
        handles::mirror_task_name(upstream_request, ctx.inspected.as_ref());
        headers::prepare_upstream_request(
            upstream_request,
            &Forwarding {
                upstream_authority: &rt.upstream_host,
                client_ip: peer_ip(session),
                body_len: ctx.body_len,
                session_id: ctx.upstream_session_id.as_deref(),
                // After the caller's credentials were stripped: the route's own, if any.
                credential: ctx.upstream_credential.as_ref(),
                forward_cookies: rt.route.upstream.forward_cookies,
                client_tls: session.digest().is_some_and(|d| d.ssl_digest.is_some()),
                ids: ctx.ids.as_ref(),
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
        if let Some(id) = ctx.request_id_header() {
            upstream_response.insert_header(&crate::telemetry::ids::X_REQUEST_ID, id)?;
        }
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
        // An answer that may carry a `requestState` or a task id is read too, to seal it
        // (`handles`).
        let version = session.req_header().headers.get("mcp-protocol-version");
        let read_json = policy
            || crate::mcp::handles::answer_may_carry_handle(
                version.map(|v| v.as_bytes()),
                ctx.inspected.as_ref(),
            );
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
        if let Some(arrived) = connection.downcast_ref::<HeaderArrived>() {
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
        let body = Bytes::from(refusal.body_for(ctx.inspected.as_ref(), ctx.request_id()));
        let cors = origin::cors_origin(session, ctx);
        if let Err(write_error) = answer::write_refusal(
            session,
            status,
            body,
            &refusal,
            cors.as_ref(),
            ctx.request_id_header(),
        )
        .await
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
        let refusal = ctx.refusal.as_ref().or(held_refusal.as_ref());
        let line = budget::access_line(state.access_log, status, || RefusalKey {
            event: "access",
            route: metrics.name.clone(),
            reason: refusal
                .map(Refusal::kind)
                .or(ctx.upstream_error)
                .or(e.map(|e| e.etype().as_str()))
                .unwrap_or("status")
                .into(),
            source: ctx.client_ip.map_or(Source::Unknown, Source::Client),
        });
        if !line {
            return;
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
            refusal = refusal.map(Refusal::kind),
            upstream_error = ctx.upstream_error,
            client = ctx.client_ip.map(tracing::field::display),
            peer = peer_ip(session)
                .filter(|peer| Some(*peer) != ctx.client_ip)
                .map(tracing::field::display),
            request_id = ctx.request_id(),
            trace_id = ctx.ids.as_ref().map(RequestIds::trace_id),
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
