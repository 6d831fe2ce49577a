//! Response bodies that the gateway changes on their way to the client. Every event
//! stream goes through the stream filter (`mcp::stream`: list filtering on routes with a
//! policy, the legacy `endpoint` event mapped and sealed, oversized or unreadable events
//! end the stream); on routes with a policy every other body is held whole and filtered
//! (`mcp::filter`), whatever its `Content-Type`. Chooses the mode from the response
//! header; the reading and rewriting live in `mcp`.

use bytes::Bytes;
use pingora::http::ResponseHeader;
use pingora::{Error, Result};

use super::ctx::{RequestCtx, ResponseMode};
use super::failure::UNFILTERABLE;
use super::Gateway;
use crate::mcp::filter::{JsonListRewriter, ListKind, Rules, TaskRules};
use crate::mcp::handles::{seal_handle, seal_request_state, Handle};
use crate::mcp::jsonrpc::error_object;
use crate::mcp::legacy::{EndpointRewriter, RoutePaths};
use crate::mcp::stream::{error_notification, Hooks, SseFilter, StreamFailure};
use crate::refusal::Refusal;
use crate::telemetry::audit::{self, AuditEvent};

/// Which rewriting a response needs: event streams always go through the stream filter;
/// other bodies are read whole when `read_json` (a route with a policy, or an answer that
/// may carry a `requestState` to seal; `success`: the status is 2xx).
pub fn mode_for(
    read_json: bool,
    event_stream: bool,
    success: bool,
    max_event: usize,
) -> ResponseMode {
    match (event_stream, read_json) {
        (true, _) => ResponseMode::FilterSse(SseFilter::new(max_event)),
        (false, true) => ResponseMode::FilterJson(JsonListRewriter::new(success)),
        (false, false) => ResponseMode::PassThrough,
    }
}

/// The framing of a body the gateway rewrites: it may change length, so its
/// `Content-Length` goes and it is sent chunked. Pingora adds `chunked` only before
/// `response_filter`, to an answer that had neither header; without it here the answer
/// would be delimited by closing the connection, which a client cannot reuse.
pub fn frame_rewritten_body(resp: &mut ResponseHeader) {
    resp.remove_header(&http::header::CONTENT_LENGTH);
    let bodiless = resp.status.is_informational() || matches!(resp.status.as_u16(), 204 | 304);
    if !bodiless && resp.headers.get(http::header::TRANSFER_ENCODING).is_none() {
        // A constant, valid header value: cannot fail.
        let _ = resp.insert_header(http::header::TRANSFER_ENCODING, "chunked");
    }
}

/// The error that closes a stream the gateway already ended with an error event.
fn stream_closed() -> Box<Error> {
    Error::explain(UNFILTERABLE, "event stream ended by the gateway")
}

impl Gateway {
    /// Rewrites one body chunk according to the response mode. An error closes the
    /// connection: the stream failed on an earlier chunk, and its error event was sent.
    pub(super) fn rewrite_body(
        &self,
        body: &mut Option<Bytes>,
        end: bool,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        let state = ctx.state.clone();
        let (Some(found), Some(rt)) = (ctx.route.as_ref(), state.route_runtime(ctx)) else {
            return Ok(());
        };
        let route = &found.route;
        let chunk = body.as_deref().unwrap_or(&[]);
        let granted: &dyn crate::policy::Grants = match ctx.principal.as_deref() {
            Some(p) => p,
            None => &crate::policy::NOTHING_GRANTED,
        };
        let policy = route.policy.as_ref();
        let keep = |kind: ListKind, name: &str| match policy {
            None => true,
            Some(p) => p.item_visible(granted, kind, name),
        };
        // Every upstream `requestState` goes out sealed for this caller (handles.rs).
        let binding = super::state::ctx_binding(&ctx.principal, rt);
        let seal_state = |literal: &str| {
            seal_request_state(&state.sessions, literal, binding, super::state::cache_now())
                .map_err(|e| tracing::warn!(route = %route.name, reason = e.reason(), "cannot seal a requestState"))
                .ok()
        };
        // Every upstream task id too, or withheld where it may be another caller's.
        let seal_task = |literal: &str| {
            seal_handle(&state.sessions, Handle::TaskId, literal, binding, super::state::cache_now())
                .map_err(|e| tracing::warn!(route = %route.name, reason = e.reason(), "cannot seal a task id"))
                .ok()
        };
        let presented = super::handles::presented_task_ids(ctx.inspected.as_ref());
        let tasks = TaskRules {
            seal: &seal_task,
            per_caller: super::handles::per_caller_upstream(rt, &ctx.principal),
            presented: &presented,
        };
        let recorder = super::pins::Recorder {
            route,
            metrics: &rt.metrics,
            principal: ctx.principal.as_deref(),
            ids: ctx.ids.as_ref(),
        };
        let pinned = |name: &str, item: &str| {
            rt.pins
                .as_ref()
                .is_none_or(|pins| pins.listed_tool(&recorder, name, item))
        };
        let rules = Rules {
            keep: policy.is_some().then_some(&keep as _),
            seal_state: Some(&seal_state),
            tasks: Some(tasks),
            pinned: rt.pins.is_some().then_some(&pinned as _),
        };
        let refusal = Refusal::UnfilterableAnswer;
        let out: Vec<u8> = match &mut ctx.response_mode {
            ResponseMode::PassThrough => return Ok(()),
            ResponseMode::Discard => Vec::new(),
            ResponseMode::FilterSse(filter) => {
                if filter.failed() {
                    // Its error event is out: pass nothing more, and close the
                    // connection unless the stream ends here anyway.
                    *body = Some(Bytes::new());
                    return if end { Ok(()) } else { Err(stream_closed()) };
                }
                let seal = |id: &str| state.seal_session(rt, &ctx.principal, id);
                let paths = RoutePaths {
                    upstream: &route.upstream.url,
                    upstream_base_path: &route.upstream.base_path,
                    public_prefix: &route.path_prefix,
                };
                let endpoint = |data: &str| EndpointRewriter { paths, seal: &seal }.rewrite(data);
                let inspected = ctx.inspected.as_ref();
                let error_messages = || {
                    let ids: Vec<String> = inspected
                        .into_iter()
                        .flat_map(|i| i.request_ids())
                        .map(|id| {
                            error_object(Some(id), refusal.jsonrpc_code(), &refusal.message())
                        })
                        .collect();
                    if ids.is_empty() {
                        vec![error_notification(&refusal.message())]
                    } else {
                        ids
                    }
                };
                let hooks = Hooks {
                    keep: rules.keep,
                    seal_state: rules.seal_state,
                    tasks: rules.tasks,
                    pinned: rules.pinned,
                    endpoint: &endpoint,
                    error_messages: &error_messages,
                };
                let out = filter.push(chunk, end, &hooks);
                for (kind, n) in &out.removed {
                    rt.metrics.list_items_removed(kind.method(), *n);
                }
                if let Some(failure) = out.failure {
                    rt.metrics.stream_error(failure.reason());
                    if failure == StreamFailure::Unfilterable {
                        rt.metrics.list_filter_failure();
                    }
                    audit::emit(
                        &AuditEvent::StreamEnded { route, failure },
                        ctx.ids.as_ref(),
                    );
                }
                out.bytes
            }
            ResponseMode::FilterJson(rewriter) => match rewriter.push_with(chunk, end, rules) {
                Ok(None) => Vec::new(),
                Ok(Some((bytes, removed))) => {
                    for (kind, n) in &removed {
                        rt.metrics.list_items_removed(kind.method(), *n);
                    }
                    bytes
                }
                Err(e) => {
                    rt.metrics.list_filter_failure();
                    rt.metrics.stream_error("unfilterable_answer");
                    audit::emit(
                        &AuditEvent::ListFilterFailed { route, error: &e },
                        ctx.ids.as_ref(),
                    );
                    ctx.response_mode = ResponseMode::Discard;
                    // A held answer (see `delegate`) becomes a 502; otherwise the status
                    // is already sent and the error answers the request's ids.
                    if let Some(failed) = &ctx.list_failure {
                        failed.store(true, std::sync::atomic::Ordering::Release);
                    }
                    refusal
                        .body_for(ctx.inspected.as_ref(), ctx.request_id())
                        .into_bytes()
                }
            },
        };
        *body = Some(Bytes::from(out));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rewritten_body_is_chunked_not_closed() {
        let mut resp = ResponseHeader::build(200, None).unwrap();
        resp.insert_header("content-length", "62").unwrap();
        frame_rewritten_body(&mut resp);
        assert!(resp.headers.get("content-length").is_none());
        assert_eq!(resp.headers["transfer-encoding"], "chunked");
        let mut chunked = ResponseHeader::build(200, None).unwrap();
        chunked
            .insert_header("transfer-encoding", "chunked")
            .unwrap();
        frame_rewritten_body(&mut chunked);
        assert_eq!(
            chunked.headers.get_all("transfer-encoding").iter().count(),
            1
        );
        let mut empty = ResponseHeader::build(204, None).unwrap();
        empty.insert_header("content-length", "0").unwrap();
        frame_rewritten_body(&mut empty);
        assert!(empty.headers.get("transfer-encoding").is_none());
    }

    #[test]
    fn every_stream_is_filtered_and_other_bodies_on_policy_routes() {
        assert!(matches!(
            mode_for(false, true, true, 1),
            ResponseMode::FilterSse(_)
        ));
        assert!(matches!(
            mode_for(true, true, false, 1),
            ResponseMode::FilterSse(_)
        ));
        assert!(matches!(
            mode_for(true, false, true, 1),
            ResponseMode::FilterJson(_)
        ));
        assert!(matches!(
            mode_for(false, false, true, 1),
            ResponseMode::PassThrough
        ));
    }
}
