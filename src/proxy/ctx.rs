//! Per-request state, created by `new_ctx` and carried through every phase.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Instant;

use super::GatewayState;

use crate::auth::Principal;
use crate::config::RouteMatch;
use crate::mcp::filter::{JsonListRewriter, PendingLists};
use crate::mcp::jsonrpc::Inspected;
use crate::mcp::stream::SseFilter;
use crate::policy::Permit;
use crate::refusal::Refusal;
use crate::telemetry::ids::RequestIds;

/// How the response body is treated on its way to the client.
#[derive(Debug, Default)]
pub enum ResponseMode {
    /// Bytes pass through untouched (a route without a policy, not an event stream).
    #[default]
    PassThrough,
    /// An answer that is not an event stream, on a route with a policy: buffered,
    /// filtered whole, whatever its `Content-Type`.
    FilterJson(JsonListRewriter),
    /// An event stream (POST answer, GET stream, legacy stream): filtered event by event.
    FilterSse(SseFilter),
    /// An answer could not be filtered: the error was sent, the rest is dropped.
    Discard,
}

pub struct RequestCtx {
    /// The configuration this request runs under, fixed when it starts.
    pub state: Arc<GatewayState>,
    pub started: Instant,
    /// The client's address, set when the request path starts: its TCP peer, or what a
    /// trusted proxy says in `X-Forwarded-For` (`client_addr`).
    pub client_ip: Option<std::net::IpAddr>,
    /// Request id and trace id, set first of all (`telemetry::ids::assign`); a subrequest gets
    /// the main request's.
    pub ids: Option<RequestIds>,
    /// Set by the route step; every later phase relies on it.
    pub route: Option<RouteMatch>,
    /// Who is calling (protected routes), set by the authenticate step.
    pub principal: Option<Arc<Principal>>,
    /// SHA-256 of the caller's token (cache key for the credential step).
    pub token_key: Option<crate::auth::TokenKey>,
    /// The header the upstream receives in place of the caller's token.
    pub upstream_credential: Option<(http::HeaderName, http::HeaderValue)>,
    /// The upstream's own session id, restored from the sealed one the client sent.
    pub upstream_session_id: Option<String>,
    /// The sealed id the client presented, when the answer may hand it back unchanged
    /// (see `session::Opened::reusable`).
    pub reusable_seal: Option<String>,
    /// List requests of this POST (routes with a policy): their JSON answer is held whole.
    pub pending_lists: PendingLists,
    /// Set by the authorize step; forwarding requires it.
    pub permit: Option<Permit>,
    /// The request was for protected resource metadata, answered by the gateway: the
    /// position of the route it describes (for its metrics).
    pub metadata_of: Option<usize>,
    /// The JSON-RPC content of a POST body, read before the upstream is contacted.
    pub inspected: Option<Inspected>,
    /// Length of the body the gateway read (and the upstream receives).
    pub body_len: Option<usize>,
    /// The body carried a sealed `requestState` and was restored (`proxy::handles`): the
    /// upstream must get the restored bytes, through a subrequest.
    pub body_restored: bool,
    /// What the gateway answered instead of the upstream, if anything.
    pub refusal: Option<Refusal>,
    pub response_mode: ResponseMode,
    /// True while this request holds an `active_streams` slot.
    pub counted_stream: bool,
    /// Kind of upstream failure, for the access log.
    pub upstream_error: Option<&'static str>,
    /// The request was handed to a subrequest (large body, list answers), which records it.
    pub delegated: bool,
    /// In a subrequest: where to report a JSON list answer that could not be filtered
    /// (the main request holds its header and makes it a 502).
    pub list_failure: Option<Arc<AtomicBool>>,
}

impl RequestCtx {
    pub fn new(state: Arc<GatewayState>) -> RequestCtx {
        RequestCtx {
            state,
            started: Instant::now(),
            client_ip: None,
            ids: None,
            route: None,
            principal: None,
            permit: None,
            pending_lists: PendingLists::default(),
            token_key: None,
            upstream_credential: None,
            upstream_session_id: None,
            reusable_seal: None,
            metadata_of: None,
            inspected: None,
            body_len: None,
            body_restored: false,
            refusal: None,
            response_mode: ResponseMode::PassThrough,
            counted_stream: false,
            upstream_error: None,
            delegated: false,
            list_failure: None,
        }
    }

    /// The request id, for bodies and log lines.
    pub fn request_id(&self) -> Option<&str> {
        self.ids.as_ref().map(RequestIds::request_id)
    }

    /// The request id as a header value, for answers.
    pub fn request_id_header(&self) -> Option<&http::HeaderValue> {
        self.ids.as_ref().map(|ids| &ids.request_id)
    }

    /// In a subrequest: its JSON list answer could not be filtered, so the main request
    /// sent the client a 502 in place of the status this pipeline wrote.
    pub fn list_answer_failed(&self) -> bool {
        self.list_failure
            .as_ref()
            .is_some_and(|failed| failed.load(std::sync::atomic::Ordering::Acquire))
    }

    /// The refusal the client got in place of this pipeline's answer (see
    /// [`RequestCtx::list_answer_failed`]), if any.
    pub fn held_answer_refusal(&self) -> Option<crate::refusal::Refusal> {
        self.list_answer_failed()
            .then_some(crate::refusal::Refusal::UnfilterableAnswer)
    }
}

/// Pingora's connection user context on the MCP listener: set by `server::connections`
/// for each request, marked by the proxy (`on_connection_reuse`) once the request header
/// has been read, so that the connection's header deadline stops. Defined here, beside
/// the per-request state, so that the proxy does not depend on the server assembling it.
#[derive(Debug, Clone, Default)]
pub struct HeaderArrived(Arc<AtomicBool>);

impl HeaderArrived {
    pub fn mark(&self) {
        self.0.store(true, std::sync::atomic::Ordering::Release);
    }

    pub fn arrived(&self) -> bool {
        self.0.load(std::sync::atomic::Ordering::Acquire)
    }
}
