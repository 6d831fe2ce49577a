//! Audit events: what the gateway decided about whom, on target `audit`, one typed event
//! per kind and one function, [`emit`], that writes them.
//!
//! Owns the event names, their fields and levels (operators' pipelines and the tests
//! read them). Every field is taken from a typed value — a configured [`Route`], a
//! verified [`Principal`], a policy [`Verdict`], an error with a fixed vocabulary — so no
//! token, session id, header value or tool argument can be put into an event: there is
//! no field of a type that could carry one. Does not decide anything; the steps that
//! decide call [`emit`].

use super::budget::{self, RefusalKey, Source};
use super::ids::RequestIds;
use crate::auth::{AuthFailure, Principal};
use crate::config::Route;
use crate::exchange::ExchangeError;
use crate::mcp::filter::FilterError;
use crate::mcp::handles::Handle;
use crate::mcp::session::UnsealError;
use crate::mcp::stream::StreamFailure;
use crate::policy::{Decision, Operation, Shadowed, Verdict};
use crate::ratelimit::KeyKind;

/// Who a request came from, as its verified token says: issuer, subject, client. Empty
/// for an anonymous request (a route without auth); the token itself is never part of it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Caller<'a> {
    issuer: Option<&'a str>,
    subject: Option<&'a str>,
    client: Option<&'a str>,
}

impl<'a> Caller<'a> {
    pub fn of(principal: Option<&'a Principal>) -> Caller<'a> {
        Caller {
            issuer: principal.map(|p| p.issuer.as_str()),
            subject: principal.map(|p| p.subject.as_str()),
            client: principal.and_then(|p| p.client_id.as_deref()),
        }
    }
}

/// One audit event. Field names, levels and messages are part of the gateway's
/// interface: see [`emit`] for how each kind is written.
#[derive(Debug, Clone, Copy)]
pub enum AuditEvent<'a> {
    /// `authentication_refused` (info): no valid token for the route.
    AuthenticationRefused {
        route: &'a Route,
        failure: &'a AuthFailure,
        /// The client's address: what makes two refusals "the same source" for the log
        /// budget (not written).
        client: Option<std::net::IpAddr>,
    },
    /// `authorization` (info) for one operation: its method, target name, the decision
    /// and the scopes it lacked (empty unless the decision is missing scopes).
    Authorization {
        route: &'a Route,
        caller: Caller<'a>,
        verdict: &'a Verdict<'a>,
    },
    /// `authorization` (info) with `shadow = true`: what a rule in shadow mode would
    /// have decided (a denial; allows are only counted), which was not enforced. `rule`
    /// names the shadowed rule (`tools:read_file:arguments:/path`), `failed` the check
    /// that would have refused.
    ShadowDecision {
        route: &'a Route,
        caller: Caller<'a>,
        op: Operation<'a>,
        shadowed: &'a Shadowed,
    },
    /// `authorization` (info) summing up a batch: counts only, and how many denied
    /// operations got no event of their own.
    AuthorizationSummary {
        route: &'a Route,
        caller: Caller<'a>,
        operations: usize,
        allowed: usize,
        denied: usize,
        denied_not_logged: usize,
    },
    /// `session_rejected` (warn): a session id that did not open for this caller.
    SessionRejected {
        route: &'a Route,
        caller: Caller<'a>,
        reason: UnsealError,
    },
    /// `handle_rejected` (warn): a server-minted handle (`requestState`, a task id) that did not
    /// open for this caller; the request never reached the upstream.
    HandleRejected {
        route: &'a Route,
        caller: Caller<'a>,
        handle: Handle,
        reason: UnsealError,
    },
    /// `upstream_credential_failed` (warn): no credential for the upstream.
    UpstreamCredentialFailed {
        route: &'a Route,
        caller: Caller<'a>,
        error: &'a ExchangeError,
    },
    /// `stream_ended` (warn): an event stream that could not be filtered was ended.
    StreamEnded {
        route: &'a Route,
        failure: StreamFailure,
    },
    /// `list_filter_failed` (warn): an answer that could not be filtered was replaced
    /// by an error.
    ListFilterFailed {
        route: &'a Route,
        error: &'a FilterError,
    },
    /// `rate_limited` (info): a rate limit refused the request; the upstream saw nothing.
    RateLimited {
        route: &'a Route,
        caller: Caller<'a>,
        /// `route`, or the tool rule's label.
        limit: &'a str,
        key: KeyKind,
        /// Whole seconds until it fits; `None`: never (a batch larger than the burst).
        retry_after: Option<u32>,
        /// The client's address: the source for the log budget on a public route (not
        /// written; the access line has it).
        client: Option<std::net::IpAddr>,
    },
    /// `tool_definition_changed` (warn): a listed tool whose definition is not its pin
    /// (`policy.pins`), or a call of such a tool refused. `tool` is the pinned name or
    /// `other` (a tool the lock file does not name); `reason` is `changed` or
    /// `unpinned`; `action` is `hidden`, `warned` or `call_refused`.
    ToolDefinitionChanged {
        route: &'a Route,
        caller: Caller<'a>,
        tool: &'a str,
        reason: &'static str,
        action: &'static str,
    },
}

impl AuditEvent<'_> {
    /// For a refusal, what makes it "the same" as another for the log budget
    /// (`telemetry::budget`); `None` for what is always written: allow decisions (the
    /// audit trail), a batch with anything allowed, and failures of the upstream's answer.
    pub fn refusal_key(&self) -> Option<RefusalKey> {
        let of_caller = |caller: &Caller<'_>| {
            caller
                .subject
                .map_or(Source::Unknown, |s| Source::Subject(s.to_string()))
        };
        let (event, route, reason, source) = match *self {
            AuditEvent::AuthenticationRefused {
                route,
                failure,
                client,
            } => (
                "authentication_refused",
                route,
                failure.reason().into(),
                client.map_or(Source::Unknown, Source::Client),
            ),
            AuditEvent::Authorization {
                route,
                caller,
                verdict,
            } if !matches!(verdict.decision, Decision::Allow { .. }) => (
                "authorization",
                route,
                // Per rule, so that one caller's refusals by different rules are
                // each written once.
                format!("deny:{}", verdict.decision.rule().unwrap_or("")).into(),
                of_caller(&caller),
            ),
            AuditEvent::AuthorizationSummary {
                route,
                caller,
                allowed: 0,
                ..
            } => (
                "authorization_summary",
                route,
                "deny".into(),
                of_caller(&caller),
            ),
            AuditEvent::SessionRejected {
                route,
                caller,
                reason,
            } => (
                "session_rejected",
                route,
                reason.reason().into(),
                of_caller(&caller),
            ),
            AuditEvent::HandleRejected {
                route,
                caller,
                reason,
                ..
            } => (
                "handle_rejected",
                route,
                reason.reason().into(),
                of_caller(&caller),
            ),
            AuditEvent::UpstreamCredentialFailed {
                route,
                caller,
                error,
            } => (
                "upstream_credential_failed",
                route,
                error.result_label().into(),
                of_caller(&caller),
            ),
            AuditEvent::RateLimited {
                route,
                caller,
                key,
                client,
                ..
            } => (
                "rate_limited",
                route,
                key.label().into(),
                match (caller.subject, client) {
                    (Some(s), _) => Source::Subject(s.to_string()),
                    (None, Some(ip)) => Source::Client(ip),
                    (None, None) => Source::Unknown,
                },
            ),
            AuditEvent::ToolDefinitionChanged {
                route,
                caller,
                reason,
                ..
            } => (
                "tool_definition_changed",
                route,
                reason.into(),
                of_caller(&caller),
            ),
            // A would-be denial costs a line per call like a denial does; the metric
            // counts every one. Per shadowed rule, like denials.
            AuditEvent::ShadowDecision {
                route,
                caller,
                shadowed,
                ..
            } => (
                "authorization",
                route,
                format!("shadow:{}", shadowed.rule).into(),
                of_caller(&caller),
            ),
            _ => return None,
        };
        Some(RefusalKey {
            event,
            route: route.name.clone(),
            reason,
            source,
        })
    }
}

/// Writes `event` on target `audit`; a refusal within the log budget only (see
/// [`AuditEvent::refusal_key`]): the rest are counted and reported per interval.
///
/// `ids`: the request's id and trace id (`telemetry::ids`), written as `request_id` and
/// `trace_id`, so an event joins the request's access line and the upstream's logs.
pub fn emit(event: &AuditEvent<'_>, ids: Option<&RequestIds>) {
    if event.refusal_key().is_none_or(budget::admit) {
        write(event, ids);
    }
}

fn write(event: &AuditEvent<'_>, ids: Option<&RequestIds>) {
    let request_id = ids.map(RequestIds::request_id);
    let trace_id = ids.map(RequestIds::trace_id);
    match *event {
        AuditEvent::AuthenticationRefused { route, failure, .. } => tracing::info!(
            target: "audit",
            event = "authentication_refused",
            request_id,
            trace_id,
            route = %route.name,
            reason = failure.reason(),
        ),
        AuditEvent::Authorization {
            route,
            caller,
            verdict,
        } => {
            let missing = match &verdict.decision {
                Decision::MissingScopes { missing, .. } => missing.join(" "),
                _ => String::new(),
            };
            tracing::info!(
                target: "audit",
                event = "authorization",
                request_id,
                trace_id,
                route = %route.name,
                issuer = caller.issuer,
                subject = caller.subject,
                client = caller.client,
                method = verdict.op.method(),
                name = verdict.op.target(),
                decision = verdict.decision.label(),
                rule = verdict.decision.rule(),
                missing = %missing,
            )
        }
        AuditEvent::ShadowDecision {
            route,
            caller,
            op,
            shadowed,
        } => tracing::info!(
            target: "audit",
            event = "authorization",
            request_id,
            trace_id,
            route = %route.name,
            issuer = caller.issuer,
            subject = caller.subject,
            client = caller.client,
            method = op.method(),
            name = op.target(),
            shadow = true,
            decision = shadowed.decision.label(),
            rule = %shadowed.rule,
            failed = shadowed.decision.rule(),
        ),
        AuditEvent::AuthorizationSummary {
            route,
            caller,
            operations,
            allowed,
            denied,
            denied_not_logged,
        } => tracing::info!(
            target: "audit",
            event = "authorization",
            request_id,
            trace_id,
            route = %route.name,
            issuer = caller.issuer,
            subject = caller.subject,
            client = caller.client,
            operations,
            allowed,
            denied,
            denied_not_logged,
        ),
        AuditEvent::SessionRejected {
            route,
            caller,
            reason,
        } => tracing::warn!(
            target: "audit",
            event = "session_rejected",
            request_id,
            trace_id,
            route = %route.name,
            reason = reason.reason(),
            issuer = caller.issuer,
            subject = caller.subject,
            client = caller.client,
            note = "a session id presented by a caller it was not issued to may be a hijack attempt",
        ),
        AuditEvent::HandleRejected {
            route,
            caller,
            handle,
            reason,
        } => tracing::warn!(
            target: "audit",
            event = "handle_rejected",
            request_id,
            trace_id,
            route = %route.name,
            handle = handle.label(),
            reason = reason.reason(),
            issuer = caller.issuer,
            subject = caller.subject,
            client = caller.client,
            note = "a handle presented by a caller it was not issued to may be a hijack attempt",
        ),
        AuditEvent::UpstreamCredentialFailed {
            route,
            caller,
            error,
        } => tracing::warn!(
            target: "audit",
            event = "upstream_credential_failed",
            request_id,
            trace_id,
            route = %route.name,
            issuer = caller.issuer,
            subject = caller.subject,
            client = caller.client,
            error = %error,
        ),
        AuditEvent::StreamEnded { route, failure } => tracing::warn!(
            target: "audit",
            event = "stream_ended",
            request_id,
            trace_id,
            route = %route.name,
            reason = failure.reason(),
            "an upstream event stream could not be filtered; it was ended with an error"
        ),
        AuditEvent::ListFilterFailed { route, error } => tracing::warn!(
            target: "audit",
            event = "list_filter_failed",
            request_id,
            trace_id,
            route = %route.name,
            reason = %error,
            "an upstream answer could not be filtered; an error was sent instead"
        ),
        AuditEvent::RateLimited {
            route,
            caller,
            limit,
            key,
            retry_after,
            ..
        } => tracing::info!(
            target: "audit",
            event = "rate_limited",
            request_id,
            trace_id,
            route = %route.name,
            issuer = caller.issuer,
            subject = caller.subject,
            client = caller.client,
            limit,
            key = key.label(),
            retry_after,
        ),
        AuditEvent::ToolDefinitionChanged {
            route,
            caller,
            tool,
            reason,
            action,
        } => tracing::warn!(
            target: "audit",
            event = "tool_definition_changed",
            request_id,
            trace_id,
            route = %route.name,
            tool,
            reason,
            action,
            issuer = caller.issuer,
            subject = caller.subject,
            client = caller.client,
            "a tool's definition is not the one pinned for it"
        ),
    }
}

#[cfg(test)]
mod tests;
