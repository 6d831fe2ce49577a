//! The request-path step for server-minted handles (MCP 2026-07-28 `requestState`, task
//! ids of the tasks extension; see `mcp::handles`): every handle a request presents is
//! opened for this route and this caller, and the body the upstream receives carries the
//! upstream's originals. Any handle that does not open is refused here, before a
//! credential is fetched or the upstream contacted. The response side (sealing) is in
//! `rewrite`; [`mirror_task_name`] gives the upstream its own task id in `Mcp-Name` too.

use std::sync::Arc;

use bytes::Bytes;
use pingora::http::RequestHeader;

use super::ctx::RequestCtx;
use super::state::{cache_now, ctx_binding, GatewayState, RouteRuntime};
use crate::auth::Principal;
use crate::config::UpstreamAuth;
use crate::mcp::handles::{self, Handle};
use crate::mcp::jsonrpc::{Inspected, MessageKind};
use crate::mcp::request_meta::{encode_header_value, NAME_HEADER, TASK_NAME_METHODS};
use crate::refusal::Refusal;
use crate::telemetry::audit::{self, AuditEvent, Caller};
use crate::telemetry::ids::RequestIds;

/// Step 8b: the body the upstream receives. A body with server-minted handles is
/// restored (`ctx.body_restored`, its reading replaced by the upstream's view); any other
/// body, or none, is passed on as it is.
pub(super) fn restore_body(
    state: &GatewayState,
    rt: &RouteRuntime,
    ctx: &mut RequestCtx,
    body: Option<Bytes>,
) -> Result<Option<Bytes>, Refusal> {
    let (Some(bytes), Some(inspected)) = (body.as_ref(), ctx.inspected.as_ref()) else {
        return Ok(body);
    };
    match open_handles(
        state,
        rt,
        &ctx.principal,
        inspected,
        bytes,
        ctx.ids.as_ref(),
    )? {
        Some((restored, again)) => {
            ctx.body_restored = true;
            ctx.inspected = Some(again);
            Ok(Some(restored))
        }
        None => Ok(body),
    }
}

/// Opens every server-minted handle of a POST body (`params.requestState`,
/// `params.taskId`, the related-task `_meta`), if any: `Some` is the restored body and
/// its reading (the upstream's view), which must reach the upstream through a
/// subrequest, not Pingora's retry buffer (that holds the client's bytes); `None`, the
/// body carries no handle.
pub(super) fn open_handles(
    state: &GatewayState,
    rt: &RouteRuntime,
    principal: &Option<Arc<Principal>>,
    inspected: &Inspected,
    body: &Bytes,
    ids: Option<&RequestIds>,
) -> Result<Option<(Bytes, Inspected)>, Refusal> {
    let presented = handles::presented_handles(inspected).map_err(Refusal::InvalidParams)?;
    if presented.is_empty() {
        return Ok(None);
    }
    let mut opened = Vec::with_capacity(presented.len());
    for (place, sealed) in presented {
        let handle = place.handle();
        let literal = handles::open_handle(
            &state.sessions,
            handle,
            sealed,
            ctx_binding(principal, rt),
            cache_now(),
            state.session_max_age,
        )
        .map_err(|reason| {
            rt.metrics.handle_rejection(handle.label(), reason.reason());
            audit::emit(
                &AuditEvent::HandleRejected {
                    route: &rt.route,
                    caller: Caller::of(principal.as_deref()),
                    handle,
                    reason,
                },
                ids,
            );
            match handle {
                Handle::RequestState => Refusal::UnknownRequestState,
                Handle::TaskId => Refusal::UnknownTaskId,
            }
        })?;
        opened.push((place, literal));
    }
    match handles::restore_handles(body, inspected, &opened) {
        Ok((restored, again)) => Ok(Some((Bytes::from(restored), again))),
        Err(e) => {
            tracing::error!(route = %rt.route.name, reason = e.0, "cannot restore a server-minted handle");
            Err(Refusal::Internal)
        }
    }
}

/// The upstream's `Mcp-Name` on `tasks/get`, `tasks/update` and `tasks/cancel` mirrors
/// the task id it receives in the body: its own (restored) id, not the sealed one the
/// client sent and the gateway compared. Only a header the client sent is rewritten.
pub(super) fn mirror_task_name(req: &mut RequestHeader, inspected: Option<&Inspected>) {
    let Some([message]) = inspected.map(|i| &i.messages[..]) else {
        return;
    };
    let (MessageKind::Call { method, .. }, Some(task_id)) = (&message.kind, &message.task_id)
    else {
        return;
    };
    if !TASK_NAME_METHODS.contains(&method.as_str()) || !req.headers.contains_key(&NAME_HEADER) {
        return;
    }
    // Not expected to fail (the encoding is visible ASCII); without a true value, none.
    if req
        .insert_header(NAME_HEADER.clone(), encode_header_value(task_id))
        .is_err()
    {
        req.remove_header(&NAME_HEADER);
    }
}

/// Whether the upstream sees each caller with a credential of their own (token
/// exchange or on-behalf-of on a route with authentication): then every task it shows a
/// caller is theirs (see `mcp::filter::TaskRules`).
pub(super) fn per_caller_upstream(rt: &RouteRuntime, principal: &Option<Arc<Principal>>) -> bool {
    principal.is_some()
        && matches!(
            rt.route.upstream_auth,
            UpstreamAuth::TokenExchange(_) | UpstreamAuth::OnBehalfOf(_)
        )
}

/// The task ids (decoded, the upstream's own) that the request being answered presented
/// and the gateway opened for this caller.
pub(super) fn presented_task_ids(inspected: Option<&Inspected>) -> Vec<String> {
    inspected
        .into_iter()
        .flat_map(|i| &i.messages)
        .flat_map(|m| [m.task_id.clone(), m.related_task.clone()])
        .flatten()
        .collect()
}
