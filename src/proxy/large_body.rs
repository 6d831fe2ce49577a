//! Bodies larger than Pingora's 64 KiB retry buffer.
//!
//! The body has already been read and inspected whole in the main request. Pingora cannot
//! replay more than 64 KiB from its retry buffer, so the main request hands the request
//! to a *subrequest*: the same pipeline runs again with a fresh context, fed the held
//! body, and its response is piped back to the client. The main request's decisions
//! travel in a [`Handoff`] so the subrequest does not redo them; see
//! ../shared/notes/pingora-request-body.md for the mechanics and caveats (HTTP/1 only
//! here: the listener speaks HTTP/1.1).

use bytes::Bytes;
use pingora::proxy::subrequest::pipe::{pipe_subrequest, InputBody, InputBodyType};
use pingora::proxy::subrequest::{BodyMode, Ctx as SubCtx};
use pingora::proxy::Session;
use pingora::{Error, ErrorType, Result};

use super::ctx::RequestCtx;
use crate::auth::Principal;
use crate::config::RouteMatch;
use crate::mcp::jsonrpc::Inspected;
use crate::policy::Permit;

use super::body::RETRY_BUFFER_LIMIT;

/// What the main request decided, for the subrequest to act on.
pub struct Handoff {
    /// The main request's configuration: a reload in between must not change it.
    pub state: std::sync::Arc<super::GatewayState>,
    pub route: RouteMatch,
    pub upstream_credential: Option<(http::HeaderName, http::HeaderValue)>,
    pub upstream_session_id: Option<String>,
    pub pending_lists: crate::mcp::filter::PendingLists,
    pub principal: Option<Principal>,
    pub permit: Permit,
    pub inspected: Inspected,
    pub body_len: usize,
}

/// True when the request may carry a body too large for the retry buffer, so that Pingora
/// must prepare a subrequest spawner for it.
pub fn may_need_subrequest(session: &Session) -> bool {
    if session.subrequest_ctx.is_some() {
        return false;
    }
    let req = session.req_header();
    if req.method != http::Method::POST {
        return false;
    }
    match req
        .headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<usize>().ok())
    {
        Some(len) => len > RETRY_BUFFER_LIMIT,
        None => true, // chunked: size unknown until read
    }
}

/// In a subrequest: takes the main request's decisions into `ctx`. Returns false in a
/// main request.
pub fn adopt_handoff(session: &mut Session, ctx: &mut RequestCtx) -> bool {
    let Some(sub) = session.subrequest_ctx.as_mut() else {
        return false;
    };
    let handoff = sub
        .user_ctx_mut()
        .and_then(|u| u.downcast_mut::<Option<Handoff>>())
        .and_then(Option::take);
    if let Some(h) = handoff {
        ctx.state = h.state;
        ctx.route = Some(h.route);
        ctx.upstream_credential = h.upstream_credential;
        ctx.upstream_session_id = h.upstream_session_id;
        ctx.pending_lists = h.pending_lists;
        ctx.principal = h.principal;
        ctx.permit = Some(h.permit);
        ctx.inspected = Some(h.inspected);
        ctx.body_len = Some(h.body_len);
    }
    true
}

/// Runs the request as a subrequest fed with `body`, piping its response to the client.
pub async fn forward(session: &mut Session, handoff: Handoff, body: Bytes) -> Result<()> {
    let Some(spawner) = session.subrequest_spawner.as_ref() else {
        return Error::e_explain(
            ErrorType::InternalError,
            "no subrequest spawner for a large body",
        );
    };
    let sub_ctx = SubCtx::builder()
        .body_mode(BodyMode::ExpectBody)
        .user_ctx(Box::new(Some(handoff)))
        .build();
    let (prepared, handle) = spawner.create_subrequest(session.as_downstream(), sub_ctx);
    let piped = pipe_subrequest(
        session,
        prepared,
        handle,
        |task| Ok(Some(task)),
        InputBodyType::Preset(InputBody::Bytes(vec![body])),
    )
    .await;
    match piped {
        Ok(mut state) => {
            if let Some(join) = state.join_handle.take() {
                let _ = join.await;
            }
            Ok(())
        }
        Err(mut failed) => {
            if let Some(join) = failed.state.join_handle.take() {
                join.abort();
            }
            Err(failed.error)
        }
    }
}
