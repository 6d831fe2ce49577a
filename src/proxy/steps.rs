//! The steps of the request path, in the order `Gateway::admit` runs them. Each is a
//! function of the configuration state, the request head and what earlier steps found,
//! and returns what it established or the [`Refusal`] that ends the request. None writes
//! a response: `Gateway::admit`'s caller is the one place a refusal becomes one. Steps
//! record their own metrics and audit events.

use std::sync::Arc;

use pingora::http::RequestHeader;

use super::form::{self, Form};
use super::headers::MCP_SESSION_ID;
use super::state::{cache_now, ctx_binding, GatewayState, RouteRuntime};
use super::Gateway;
use crate::auth::jwt::TokenError;
use crate::auth::{bearer, AuthFailure, Authenticated, Principal};
use crate::config::RouteMatch;
use crate::exchange::CredentialRequest;
use crate::mcp::arguments::CallArguments;
use crate::mcp::filter::{ListKind, PendingLists};
use crate::mcp::jsonrpc::{Inspected, MessageKind};
use crate::mcp::request_meta::{self, MetaError};
use crate::mcp::session;
use crate::policy::{self, Decision, Operation, Permit};
use crate::refusal::Refusal;
use crate::target::query::Query;
use crate::target::session_param;
use crate::telemetry::audit::{self, AuditEvent, Caller};
use crate::telemetry::ids::RequestIds;

/// Denied operations of one batch that get an audit event each; the rest are counted.
const AUDITED_DENIALS: usize = 16;

/// The form of the request, before anything is read or authenticated: a method MCP uses
/// (POST, GET, DELETE; a CORS preflight was answered before), no body on GET or DELETE, no
/// `Mcp-*` header twice, and no `Mcp-Method` / `Mcp-Name` without a message for them to
/// match. A request refused here has its body, if any, unread.
pub(super) fn check_request_form(req: &RequestHeader) -> Result<Form, Refusal> {
    let form = form::request_form(&req.method, &req.headers)?;
    if form::has_duplicate_mcp_header(&req.headers) {
        return Err(Refusal::DuplicateMcpHeader);
    }
    if matches!(form, Form::Bodiless) && form::has_message_headers(&req.headers) {
        return Err(Refusal::HeaderMismatch);
    }
    Ok(form)
}

/// What the authenticate step established on a protected route.
pub(super) struct Authentication {
    pub verified: Authenticated,
    /// The caller's validated bearer token, kept only when the route exchanges it.
    pub subject_token: Option<String>,
}

/// Authenticate: a protected route needs a verified principal before anything else (the
/// body is not even read for a refused request). `None` on a public route, which takes no
/// token and forwards none in its URL either.
pub(super) async fn authenticate(
    state: &GatewayState,
    rt: &RouteRuntime,
    req: &RequestHeader,
    query: &Query,
    client: Option<std::net::IpAddr>,
    ids: Option<&RequestIds>,
) -> Result<Option<Authentication>, Refusal> {
    let Some(guard) = &rt.guard else {
        if bearer::query_has_token(query) {
            return Err(Refusal::TokenInQuery);
        }
        return Ok(None);
    };
    let outcome = match bearer::bearer_token(&req.headers, query) {
        Ok(token) => state
            .auth
            .authenticate_token(guard, token)
            .await
            .map(|verified| Authentication {
                verified,
                // A token exchange sends this very token on; keep it rather than finding
                // and checking it in the headers again.
                subject_token: rt
                    .credential
                    .exchanges_subject_token()
                    .then(|| token.to_owned()),
            }),
        Err(e) => Err(AuthFailure::Bearer(e)),
    };
    outcome.map(Some).map_err(|failure| {
        rt.metrics.auth_failure(failure.reason());
        audit::emit(
            &AuditEvent::AuthenticationRefused {
                route: &rt.route,
                failure: &failure,
                client,
            },
            ids,
        );
        // The token could not be checked now: not the client's fault, so no challenge
        // that would send it for a new token, but a 503 to try again.
        match failure {
            AuthFailure::Token(TokenError::IntrospectionBusy) => Refusal::IntrospectionBusy,
            AuthFailure::Token(TokenError::IssuerUnavailable) => Refusal::IssuerUnavailable,
            failure => {
                let challenge = guard.challenge(&failure);
                Refusal::Auth { failure, challenge }
            }
        }
    })
}

/// The body must be plain UTF-8 JSON: one `Content-Type: application/json` with no
/// charset but UTF-8, and no content coding (the gateway judges the bytes the upstream
/// will parse, and the upstream gets the gateway's own `Content-Type`). `Err(true)`: the
/// body will not be read, so the connection must not be read from again.
pub(super) fn check_body_framing(req: &RequestHeader) -> Result<(), (Refusal, bool)> {
    let headers = &req.headers;
    form::check_json_content_type(headers).map_err(|why| (Refusal::BadMediaType(why), true))?;
    let coded = headers
        .get_all(http::header::CONTENT_ENCODING)
        .iter()
        .any(|v| !v.as_bytes().eq_ignore_ascii_case(b"identity"));
    if coded {
        return Err((Refusal::UnsupportedMediaType, false));
    }
    Ok(())
}

/// The request metadata headers (`MCP-Protocol-Version`, `Mcp-Method`, `Mcp-Name`,
/// `Mcp-Param-*`) must say what the body says; see `mcp::request_meta`.
pub(super) fn check_mcp_headers(req: &RequestHeader, inspected: &Inspected) -> Result<(), Refusal> {
    request_meta::check(&req.headers, inspected).map_err(|e| match e {
        MetaError::BatchWithClaim => Refusal::BatchNotSupported,
        e => Refusal::RequestMeta(e),
    })
}

/// A method the protocol version the request names has removed is answered as that
/// revision's servers answer it, "method not found" (404), before anything else judges it.
pub(super) fn check_removed_methods(inspected: &Inspected) -> Result<(), Refusal> {
    match inspected.names_removed_method() {
        true => Err(Refusal::MethodRemoved),
        false => Ok(()),
    }
}

/// A batch: at most `limits.max_batch` messages (the work one request may ask for is
/// bounded), and none at all under MCP 2025-06-18 or later.
pub(super) fn check_batch(
    req: &RequestHeader,
    inspected: &Inspected,
    max_batch: usize,
) -> Result<(), Refusal> {
    if !inspected.batch {
        Ok(())
    } else if !form::batches_allowed(&req.headers) {
        Err(Refusal::BatchNotSupported)
    } else if inspected.messages.len() > max_batch {
        Err(Refusal::BatchTooLong)
    } else {
        Ok(())
    }
}

/// Authorize: every operation of the body against the route's policy. Records one metric
/// per operation and bounded audit output per request. Returns the [`Permit`] that
/// forwarding requires, with the list requests whose answers will be filtered.
pub(super) fn authorize(
    rt: &RouteRuntime,
    principal: Option<&Principal>,
    inspected: Option<&Inspected>,
    body: Option<&[u8]>,
    ids: Option<&RequestIds>,
) -> Result<(Permit, PendingLists), Refusal> {
    let granted: &dyn policy::Grants = match principal {
        Some(p) => p,
        None => &crate::policy::NOTHING_GRANTED,
    };
    let policy = rt.route.policy.as_ref();
    // Argument rules read a call's arguments from the body, strictly, and only when a
    // rule asks (see `mcp::arguments`).
    let arguments = CallArguments::new(body.unwrap_or_default());
    let (result, verdicts, shadowed) =
        policy::authorize_calls(policy, granted, inspected, &|i, h| arguments.of(i, h));
    record_shadowed(rt, principal, &shadowed, ids);
    // Audit output per request is bounded: a lone operation gets its event; a batch gets
    // one summary event with counts, plus one event per denied operation up to
    // AUDITED_DENIALS (a batch of 60,000 notifications once wrote 14 MiB).
    let single = verdicts.len() == 1;
    let (mut allowed, mut denied) = (0usize, 0usize);
    for v in &verdicts {
        let decision = v.decision.label();
        rt.metrics.operation(v.op.method(), decision);
        if let Operation::Tool(name) = v.op {
            let label = policy.map_or("other", |p| p.tool_label(name));
            rt.metrics.tool_call(label, decision);
        }
        let is_allowed = matches!(v.decision, Decision::Allow { .. });
        if is_allowed {
            allowed += 1;
        } else {
            denied += 1;
        }
        if !single && (is_allowed || denied > AUDITED_DENIALS) {
            continue;
        }
        audit::emit(
            &AuditEvent::Authorization {
                route: &rt.route,
                caller: Caller::of(principal),
                verdict: v,
            },
            ids,
        );
    }
    if !single && !verdicts.is_empty() {
        audit::emit(
            &AuditEvent::AuthorizationSummary {
                route: &rt.route,
                caller: Caller::of(principal),
                operations: verdicts.len(),
                allowed,
                denied,
                denied_not_logged: denied.saturating_sub(AUDITED_DENIALS),
            },
            ids,
        );
    }
    match result {
        Ok(permit) => {
            let lists = match policy {
                Some(_) => pending_lists(inspected),
                None => PendingLists::default(),
            };
            Ok((permit, lists))
        }
        Err(denial) => Err(Refusal::of_denial(denial, rt.guard.as_ref())),
    }
}

/// Shadow decisions: every one counted, the would-be denials audited (at most
/// `AUDITED_DENIALS` a request).
fn record_shadowed(
    rt: &RouteRuntime,
    principal: Option<&Principal>,
    shadowed: &[(Operation<'_>, policy::Shadowed)],
    ids: Option<&RequestIds>,
) {
    let mut audited = 0usize;
    for (op, s) in shadowed {
        rt.metrics.shadow_decision(&s.rule, s.decision.label());
        if s.decision.is_allow() || audited >= AUDITED_DENIALS {
            continue;
        }
        audited += 1;
        audit::emit(
            &AuditEvent::ShadowDecision {
                route: &rt.route,
                caller: Caller::of(principal),
                op: *op,
                shadowed: s,
            },
            ids,
        );
    }
}

/// What the session step opened.
#[derive(Default)]
pub(super) struct OpenedSession {
    /// The upstream's own session id, restored from the sealed `Mcp-Session-Id`.
    pub upstream_id: Option<String>,
    /// The sealed id the client presented, when the answer may hand it back unchanged
    /// (see `session::Opened::reusable`).
    pub reusable_seal: Option<String>,
}

/// Session: a sealed `Mcp-Session-Id` (or the legacy transport's session query parameter)
/// is opened for this route and this caller only; anything else is "session not found"
/// (404), so a stolen id is useless. A legacy session parameter is replaced in
/// `found.upstream_path` by the upstream's id.
pub(super) fn open_session(
    state: &GatewayState,
    rt: &RouteRuntime,
    req: &RequestHeader,
    query: &Query,
    principal: &Option<Arc<Principal>>,
    found: &mut RouteMatch,
    ids: Option<&RequestIds>,
) -> Result<OpenedSession, Refusal> {
    let mut values = req.headers.get_all(&MCP_SESSION_ID).iter();
    let header = values.next().map(|v| v.to_str().map(str::to_string));
    if values.next().is_some() || matches!(header, Some(Err(_))) {
        return Err(Refusal::BadSessionHeader);
    }
    let header = header.and_then(|h| h.ok());
    let legacy =
        session_param::session_param_of(query).map_err(|e| Refusal::BadQuery(e.message()))?;
    let mut opened = OpenedSession::default();
    if header.is_none() && legacy.is_none() {
        return Ok(opened);
    }
    let binding = ctx_binding(principal, rt);
    let now = cache_now();
    let open =
        |sealed: &str| session::open(&state.sessions, sealed, binding, now, state.session_max_age);
    let mut failure = None;
    if let Some(sealed) = header {
        match open(&sealed) {
            Ok(o) => {
                opened.upstream_id = Some(o.upstream_id);
                opened.reusable_seal = o.reusable.then_some(sealed);
            }
            Err(e) => failure = Some(e),
        }
    }
    if let (Some(sealed), None) = (legacy, failure) {
        match open(sealed) {
            Ok(o) => {
                // The query the upstream receives: the canonical one, with its own id.
                let path = found.upstream_path.split('?').next().unwrap_or_default();
                let query = session_param::with_session_id(query, &o.upstream_id).canonical();
                found.upstream_path = format!("{path}?{query}");
            }
            Err(e) => failure = Some(e),
        }
    }
    let Some(e) = failure else {
        return Ok(opened);
    };
    rt.metrics.session_rejection(e.reason());
    audit::emit(
        &AuditEvent::SessionRejected {
            route: &rt.route,
            caller: Caller::of(principal.as_deref()),
            reason: e,
        },
        ids,
    );
    Err(Refusal::SessionNotFound)
}

/// Credential: what the upstream receives instead of the caller's token (token exchange,
/// on-behalf-of, client credentials, static, none). A failure never falls back to
/// forwarding anything: the request is refused; a claims challenge from the authorization
/// server is passed to the client in the refusal's `WWW-Authenticate`.
pub(super) async fn obtain_credential(
    gateway: &Gateway,
    rt: &RouteRuntime,
    request: &CredentialRequest<'_>,
    principal: Option<&Principal>,
    ids: Option<&RequestIds>,
) -> Result<Option<(http::HeaderName, http::HeaderValue)>, Refusal> {
    rt.credential
        .obtain(
            request,
            &gateway.credentials,
            &gateway.exchange_counters,
            &rt.metrics,
        )
        .await
        .map_err(|e| {
            audit::emit(
                &AuditEvent::UpstreamCredentialFailed {
                    route: &rt.route,
                    caller: Caller::of(principal),
                    error: &e,
                },
                ids,
            );
            match (e.claims_challenge(), &rt.guard) {
                (Some(claims), Some(guard)) => Refusal::CredentialClaims {
                    challenge: claims.www_authenticate(&guard.resource_metadata),
                },
                _ => Refusal::Credential(e.kind()),
            }
        })
}

/// The list requests (with ids) among the operations, whose answers will be filtered.
fn pending_lists(inspected: Option<&Inspected>) -> PendingLists {
    let mut pending = PendingLists::default();
    for m in inspected.map_or(&[][..], |i| &i.messages[..]) {
        if let (Some(id), MessageKind::Call { method, .. }) = (&m.id, &m.kind) {
            if let Some(kind) = ListKind::of(method) {
                pending.add(id, kind);
            }
        }
    }
    pending
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mcp::jsonrpc::inspect;

    fn post(headers: &[(&str, &str)]) -> RequestHeader {
        let mut req = RequestHeader::build("POST", b"/mcp", None).unwrap();
        for (name, value) in headers {
            req.append_header(name.to_string(), *value).unwrap();
        }
        req
    }

    #[test]
    fn mcp_headers_are_checked_against_the_body() {
        let call =
            inspect(br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo"}}"#)
                .unwrap();
        assert!(check_mcp_headers(&post(&[]), &call).is_ok());
        assert!(check_mcp_headers(&post(&[("mcp-method", "tools/call")]), &call).is_ok());
        assert!(matches!(
            check_mcp_headers(&post(&[("mcp-method", "ping")]), &call),
            Err(Refusal::RequestMeta(_))
        ));
    }

    #[test]
    fn a_removed_method_is_not_found_only_under_the_revision_that_removed_it() {
        let body = |version: &str| {
            format!(
                r#"{{"jsonrpc":"2.0","id":1,"method":"resources/unsubscribe","params":{{"uri":"a:b","_meta":{{"io.modelcontextprotocol/protocolVersion":"{version}"}}}}}}"#
            )
        };
        let modern = inspect(body("2026-07-28").as_bytes()).unwrap();
        assert!(matches!(
            check_removed_methods(&modern),
            Err(Refusal::MethodRemoved)
        ));
        let older = inspect(body("2025-11-25").as_bytes()).unwrap();
        assert!(check_removed_methods(&older).is_ok());
    }

    /// Steps are plain functions: the batch and framing rules are checked here without a
    /// Pingora session.
    #[test]
    fn batch_and_framing_steps_decide_without_a_session() {
        let batch = inspect(
            br#"[{"jsonrpc":"2.0","id":1,"method":"ping"},{"jsonrpc":"2.0","id":2,"method":"ping"}]"#,
        )
        .unwrap();
        let old = post(&[("mcp-protocol-version", "2025-03-26")]);
        assert!(check_batch(&old, &batch, 2).is_ok());
        assert_eq!(
            check_batch(&old, &batch, 1).unwrap_err().kind(),
            Refusal::BatchTooLong.kind()
        );
        let new = post(&[("mcp-protocol-version", "2025-06-18")]);
        assert_eq!(
            check_batch(&new, &batch, 100).unwrap_err().kind(),
            Refusal::BatchNotSupported.kind()
        );
        let json = post(&[("content-type", "application/json")]);
        assert!(check_body_framing(&json).is_ok());
        let text = post(&[("content-type", "text/plain")]);
        assert!(matches!(check_body_framing(&text), Err((_, true))));
        let gzip = post(&[
            ("content-type", "application/json"),
            ("content-encoding", "gzip"),
        ]);
        assert!(matches!(
            check_body_framing(&gzip),
            Err((Refusal::UnsupportedMediaType, false))
        ));
    }
}
