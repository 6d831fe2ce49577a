//! The request-path step for server-minted handles (MCP 2026-07-28 `requestState`, see
//! `mcp::handles`): a state a request presents is opened for this route and this caller,
//! and the body the upstream receives carries the upstream's original state. Any state
//! that does not open is refused here, before a credential is fetched or the upstream
//! contacted. The response side (sealing) is in `rewrite`.

use std::sync::Arc;

use bytes::Bytes;

use super::state::{cache_now, ctx_binding, GatewayState, RouteRuntime};
use crate::auth::Principal;
use crate::mcp::handles::{self, Handle};
use crate::mcp::jsonrpc::Inspected;
use crate::refusal::Refusal;
use crate::telemetry::audit::{self, AuditEvent, Caller};

/// Opens the `params.requestState` of a POST body, if any: `Some` is the restored body,
/// which must reach the upstream through a subrequest, not Pingora's retry buffer (that
/// holds the client's bytes); `None`, the body carries no state.
pub(super) fn open_request_state(
    state: &GatewayState,
    rt: &RouteRuntime,
    principal: &Option<Arc<Principal>>,
    inspected: &Inspected,
    body: &Bytes,
) -> Result<Option<Bytes>, Refusal> {
    let presented = match handles::presented_state(inspected) {
        Ok(None) => return Ok(None),
        Ok(Some(sealed)) => sealed,
        Err(why) => return Err(Refusal::InvalidParams(why)),
    };
    let opened = handles::open_request_state(
        &state.sessions,
        presented,
        ctx_binding(principal, rt),
        cache_now(),
        state.session_max_age,
    );
    let literal = opened.map_err(|reason| {
        rt.metrics
            .handle_rejection(Handle::RequestState.label(), reason.reason());
        audit::emit(&AuditEvent::HandleRejected {
            route: &rt.route,
            caller: Caller::of(principal.as_deref()),
            handle: Handle::RequestState,
            reason,
        });
        Refusal::UnknownRequestState
    })?;
    match handles::restore_request_state(body, inspected, &literal) {
        Ok(restored) => Ok(Some(Bytes::from(restored))),
        Err(e) => {
            tracing::error!(route = %rt.route.name, reason = e.0, "cannot restore the requestState");
            Err(Refusal::Internal)
        }
    }
}
