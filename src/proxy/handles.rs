//! The request-path step for server-minted handles (MCP 2026-07-28 `requestState`, see
//! `mcp::handles`): a state a request presents is opened for this route and this caller,
//! and the body the upstream receives carries the upstream's original state. Any state
//! that does not open is refused here, before a credential is fetched or the upstream
//! contacted. The response side (sealing) is in `rewrite`.

use bytes::Bytes;
use pingora::proxy::Session;
use pingora::Result;

use super::ctx::RequestCtx;
use super::{cache_now, ctx_binding, Gateway};
use crate::mcp::handles::{self, Handle};
use crate::refusal::Refusal;
use crate::telemetry::audit::{self, AuditEvent, Caller};

impl Gateway {
    /// Opens the `params.requestState` of a POST body, if any, and replaces `body` with
    /// the restored one (`ctx.body_restored`: it must reach the upstream through a
    /// subrequest, not Pingora's retry buffer, which holds the client's bytes).
    pub(super) async fn open_request_state(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        body: &mut Option<Bytes>,
    ) -> Result<bool> {
        let Some(inspected) = ctx.inspected.as_ref() else {
            return Ok(false);
        };
        let presented = match handles::presented_state(inspected) {
            Ok(None) => return Ok(false),
            Ok(Some(sealed)) => sealed.to_owned(),
            Err(why) => return self.refuse(session, ctx, Refusal::InvalidParams(why)).await,
        };
        let state = ctx.state.clone();
        let (Some(rt), Some(bytes)) = (state.route_runtime(ctx), body.as_ref()) else {
            return self.refuse(session, ctx, Refusal::Internal).await;
        };
        let binding = ctx_binding(&ctx.principal, rt);
        let opened = handles::open_request_state(
            &state.sessions,
            &presented,
            binding,
            cache_now(),
            state.session_max_age,
        );
        let literal = match opened {
            Ok(literal) => literal,
            Err(reason) => {
                rt.metrics
                    .handle_rejection(Handle::RequestState.label(), reason.reason());
                audit::emit(&AuditEvent::HandleRejected {
                    route: &rt.route,
                    caller: Caller::of(ctx.principal.as_deref()),
                    handle: Handle::RequestState,
                    reason,
                });
                return self
                    .refuse(session, ctx, Refusal::UnknownRequestState)
                    .await;
            }
        };
        match handles::restore_request_state(bytes, inspected, &literal) {
            Ok(restored) => {
                *body = Some(Bytes::from(restored));
                ctx.body_restored = true;
                Ok(false)
            }
            Err(e) => {
                tracing::error!(route = %rt.route.name, reason = e.0, "cannot restore the requestState");
                self.refuse(session, ctx, Refusal::Internal).await
            }
        }
    }
}
