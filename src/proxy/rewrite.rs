//! Response bodies that the gateway changes on their way to the client: the legacy
//! transport's `endpoint` event (sealed session id, route path) and list answers
//! (filtered by the policy). Chooses the mode from the response header; the rewriting
//! itself lives in `mcp::legacy` and `mcp::filter`.

use bytes::Bytes;

use super::ctx::{RequestCtx, ResponseMode};
use super::Gateway;
use crate::mcp::filter::{failure_answers, ListKind};
use crate::mcp::legacy::EndpointRewriter;
use crate::policy::Operation;

/// Which rewriting, if any, a response needs.
pub fn mode_for(get: bool, event_stream: bool, json: bool, lists_pending: bool) -> ResponseMode {
    match (get, event_stream, json, lists_pending) {
        (true, true, _, _) => ResponseMode::LegacyEndpoint(EndpointRewriter::default()),
        (false, true, _, true) => ResponseMode::FilterSse(Default::default()),
        (false, false, true, true) => ResponseMode::FilterJson(Default::default()),
        _ => ResponseMode::PassThrough,
    }
}

impl Gateway {
    /// Rewrites one body chunk according to the response mode.
    pub(super) fn rewrite_body(&self, body: &mut Option<Bytes>, end: bool, ctx: &mut RequestCtx) {
        let state = ctx.state.clone();
        let (Some(found), Some(rt)) = (ctx.route.as_ref(), state.route_runtime(ctx)) else {
            return;
        };
        let route = &found.route;
        let chunk = body.as_deref().unwrap_or(&[]);
        let granted = ctx.principal.as_ref().map_or(&[][..], |p| &p.scopes[..]);
        let policy = route.policy.as_ref();
        let keep = |kind: ListKind, name: &str| match policy {
            None => true,
            Some(p) => match kind {
                ListKind::Tools => p.visible(granted, Operation::Tool(name)),
                ListKind::Prompts => p.visible(granted, Operation::Prompt(name)),
                ListKind::Resources => p.visible(
                    granted,
                    Operation::Resource {
                        method: "resources/read",
                        uri: name,
                    },
                ),
                ListKind::ResourceTemplates => p.template_visible(granted, name),
            },
        };
        let out: Vec<u8> = match &mut ctx.response_mode {
            ResponseMode::PassThrough => return,
            ResponseMode::Discard => Vec::new(),
            ResponseMode::LegacyEndpoint(rewriter) => {
                let seal = |id: &str| state.seal_session(rt, &ctx.principal, id);
                rewriter.rewrite(route, &seal, chunk, end)
            }
            ResponseMode::FilterSse(rewriter) => {
                let out = rewriter.push(chunk, end, &mut ctx.pending_lists, &keep);
                for (kind, n) in &out.removed {
                    rt.metrics.list_items_removed(kind.method(), *n);
                }
                if out.failures > 0 {
                    rt.metrics.list_filter_failure();
                    tracing::warn!(target: "audit", event = "list_filter_failed", route = %route.name, "an upstream list answer could not be filtered; an error was sent instead");
                }
                out.bytes
            }
            ResponseMode::FilterJson(rewriter) => {
                match rewriter.push(chunk, end, &mut ctx.pending_lists, &keep) {
                    Ok(None) => Vec::new(),
                    Ok(Some((bytes, removed))) => {
                        for (kind, n) in &removed {
                            rt.metrics.list_items_removed(kind.method(), *n);
                        }
                        bytes
                    }
                    Err(e) => {
                        rt.metrics.list_filter_failure();
                        tracing::warn!(target: "audit", event = "list_filter_failed", route = %route.name, reason = %e, "an upstream list answer could not be filtered; an error was sent instead");
                        let answers = failure_answers(&mut ctx.pending_lists);
                        ctx.response_mode = ResponseMode::Discard;
                        // The main request holds this answer's header: it becomes a 502.
                        if let Some(failed) = &ctx.list_failure {
                            failed.store(true, std::sync::atomic::Ordering::Release);
                        }
                        match answers.len() {
                            1 => answers.concat().into_bytes(),
                            _ => format!("[{}]", answers.join(",")).into_bytes(),
                        }
                    }
                }
            }
        };
        *body = Some(Bytes::from(out));
    }
}
