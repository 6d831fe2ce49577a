//! The steps of the request path that need the session: authenticate, serve metadata,
//! check the body's framing, authorize, and hand large bodies to a subrequest. Each
//! calls the module that owns the decision and turns a refusal into a response through
//! [`Gateway::refuse`].

use bytes::Bytes;
use pingora::http::ResponseHeader;
use pingora::proxy::Session;
use pingora::Result;

use super::credential::CredentialRequest;
use super::ctx::RequestCtx;
use super::failure::{classify, Failure};
use super::form::{self, Form};
use super::headers::MCP_SESSION_ID;
use super::{cache_now, ctx_binding, delegate, Gateway};
use crate::auth::challenge::{www_authenticate, BearerErrorCode};
use crate::auth::jwt::TokenError;
use crate::auth::{bearer, AuthFailure};
use crate::mcp::filter::{ListKind, PendingLists};
use crate::mcp::jsonrpc::{Inspected, MessageKind};
use crate::mcp::legacy;
use crate::mcp::request_meta::{self, MetaError};
use crate::mcp::session::{self, UnsealError};
use crate::policy::{self, Decision, Operation};
use crate::refusal::Refusal;
use crate::telemetry::audit::{self, AuditEvent, Caller};

/// Denied operations of one batch that get an audit event each; the rest are counted.
const AUDITED_DENIALS: usize = 16;

impl Gateway {
    /// Authenticate: a protected route needs a verified principal before anything else
    /// (the body is not even read for a refused request).
    pub(super) async fn authenticate(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> Result<bool> {
        let state = ctx.state.clone();
        let Some(rt) = state.route_runtime(ctx) else {
            return Ok(false);
        };
        let Some(guard) = &rt.guard else {
            // A public route takes no token, and forwards none in its URL either.
            if session
                .req_header()
                .uri
                .query()
                .is_some_and(bearer::query_has_token)
            {
                return self.refuse(session, ctx, Refusal::TokenInQuery).await;
            }
            return Ok(false);
        };
        let req = session.req_header();
        let outcome = match bearer::bearer_token(&req.headers, req.uri.query()) {
            Ok(token) => {
                let outcome = state.auth.authenticate_token(guard, token).await;
                // A token exchange sends this very token on; keep it rather than
                // finding and checking it in the headers again.
                if outcome.is_ok() && rt.credential.exchanges_subject_token() {
                    ctx.subject_token = Some(token.to_owned());
                }
                outcome
            }
            Err(e) => Err(AuthFailure::Bearer(e)),
        };
        match outcome {
            Ok(authenticated) => {
                ctx.principal = Some(authenticated.principal);
                ctx.token_key = Some(authenticated.token_key);
                Ok(false)
            }
            Err(failure) => {
                rt.metrics.auth_failure(failure.reason());
                audit::emit(&AuditEvent::AuthenticationRefused {
                    route: &rt.route,
                    failure: &failure,
                });
                let refusal = if failure == AuthFailure::Token(TokenError::IntrospectionBusy) {
                    Refusal::IntrospectionBusy
                } else {
                    let challenge = guard.challenge(&failure);
                    Refusal::Auth { failure, challenge }
                };
                self.refuse(session, ctx, refusal).await
            }
        }
    }

    /// Serves RFC 9728 metadata (GET, HEAD, and CORS preflight) of the route at `route`.
    pub(super) async fn serve_metadata(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        route: usize,
        body: Bytes,
    ) -> Result<bool> {
        ctx.metadata_of = Some(route);
        let method = session.req_header().method.clone();
        let (status, body) = match method {
            http::Method::GET => (200, body),
            http::Method::HEAD => (200, Bytes::new()),
            http::Method::OPTIONS => (204, Bytes::new()),
            _ => (405, Bytes::new()),
        };
        let mut resp = ResponseHeader::build(status, Some(6))?;
        resp.insert_header(http::header::CONTENT_TYPE, "application/json")?;
        resp.insert_header(http::header::CONTENT_LENGTH, body.len())?;
        resp.insert_header(http::header::CACHE_CONTROL, "max-age=300")?;
        resp.insert_header(http::header::ACCESS_CONTROL_ALLOW_ORIGIN, "*")?;
        resp.insert_header(
            http::header::ACCESS_CONTROL_ALLOW_METHODS,
            "GET, HEAD, OPTIONS",
        )?;
        resp.insert_header(
            http::header::ACCESS_CONTROL_ALLOW_HEADERS,
            "mcp-protocol-version",
        )?;
        if status == 405 {
            resp.insert_header(http::header::ALLOW, "GET, HEAD, OPTIONS")?;
        }
        session.write_response_header(Box::new(resp), false).await?;
        session.write_response_body(Some(body), true).await?;
        Ok(true)
    }

    /// Session: a sealed `Mcp-Session-Id` (or the legacy transport's session query
    /// parameter) is opened for this route and this caller only; anything else is
    /// "session not found" (404), so a stolen id is useless. The upstream id is restored
    /// when forwarding.
    pub(super) async fn open_session(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> Result<bool> {
        let state = ctx.state.clone();
        let Some(rt) = state.route_runtime(ctx) else {
            return self.refuse(session, ctx, Refusal::Internal).await;
        };
        let req = session.req_header();
        let mut values = req.headers.get_all(&MCP_SESSION_ID).iter();
        let header = values.next().map(|v| v.to_str().map(str::to_string));
        if values.next().is_some() || matches!(header, Some(Err(_))) {
            return self.refuse(session, ctx, Refusal::BadSessionHeader).await;
        }
        let header = header.and_then(|h| h.ok());
        // The query the upstream will receive: the canonical one the route match holds.
        let query = ctx
            .route
            .as_ref()
            .and_then(|m| m.upstream_path.split_once('?'));
        let legacy = match query.map(|(_, q)| legacy::session_param(q)).transpose() {
            Ok(id) => id.flatten(),
            Err(e) => {
                return self
                    .refuse(session, ctx, Refusal::BadQuery(e.message()))
                    .await
            }
        };
        if header.is_none() && legacy.is_none() {
            return Ok(false);
        }
        let binding = ctx_binding(&ctx.principal, rt);
        let now = cache_now();
        let open = |sealed: &str| {
            session::open(&state.sessions, sealed, binding, now, state.session_max_age)
        };
        let mut failure = None;
        if let Some(sealed) = header {
            match open(&sealed) {
                Ok(opened) => {
                    ctx.upstream_session_id = Some(opened.upstream_id);
                    ctx.reusable_seal = opened.reusable.then_some(sealed);
                }
                Err(e) => failure = Some(e),
            }
        }
        if legacy.is_some() && failure.is_none() {
            let legacy_failure = std::cell::Cell::new(None);
            let rewritten = ctx.route.as_ref().and_then(|m| {
                legacy::map_session_param(&m.upstream_path, &|sealed: &str| match open(sealed) {
                    Ok(opened) => Some(opened.upstream_id),
                    Err(e) => {
                        legacy_failure.set(Some(e));
                        None
                    }
                })
            });
            match (rewritten, ctx.route.as_mut()) {
                (Some(path), Some(m)) => m.upstream_path = path,
                _ => failure = legacy_failure.get().or(Some(UnsealError::Malformed)),
            }
        }
        let Some(e) = failure else {
            return Ok(false);
        };
        rt.metrics.session_rejection(e.reason());
        audit::emit(&AuditEvent::SessionRejected {
            route: &rt.route,
            caller: Caller::of(ctx.principal.as_deref()),
            reason: e,
        });
        self.refuse(session, ctx, Refusal::SessionNotFound).await
    }

    /// Credential: what the upstream receives instead of the caller's token (token
    /// exchange, client credentials, static, none). A failure never falls back to
    /// forwarding anything: the request is refused.
    pub(super) async fn obtain_credential(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> Result<bool> {
        let state = ctx.state.clone();
        let Some(rt) = state.route_runtime(ctx) else {
            return self.refuse(session, ctx, Refusal::Internal).await;
        };
        // Only a token exchange needs the caller's token itself, kept by `authenticate`
        // and not held past this step.
        let subject_token = ctx.subject_token.take();
        let request = CredentialRequest {
            subject_token: subject_token.as_deref(),
            subject_key: ctx.token_key,
            subject_expires_at: ctx.principal.as_ref().map(|p| p.expires_at),
            permit_scopes: ctx.permit.as_ref().map_or(&[][..], |p| &p.scopes[..]),
        };
        let obtained = rt
            .credential
            .obtain(
                &request,
                &self.credentials,
                &self.exchange_counters,
                &rt.metrics,
            )
            .await;
        match obtained {
            Ok(credential) => {
                ctx.upstream_credential = credential;
                Ok(false)
            }
            Err(e) => {
                audit::emit(&AuditEvent::UpstreamCredentialFailed {
                    route: &rt.route,
                    caller: Caller::of(ctx.principal.as_deref()),
                    error: &e,
                });
                self.refuse(session, ctx, Refusal::Credential(e.kind()))
                    .await
            }
        }
    }

    /// The form of the request, before anything is read or authenticated: a method MCP
    /// uses (POST, GET, DELETE; OPTIONS is left to the CORS handling), no body on GET or
    /// DELETE, no `Mcp-*` header twice, and no `Mcp-Method` / `Mcp-Name` without a
    /// message for them to match. A refused request's connection is not reused (its
    /// body, if any, is never read).
    pub(super) async fn check_request_form(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> Result<bool> {
        let req = session.req_header();
        let refusal = match form::request_form(&req.method, &req.headers) {
            Err(refusal) => Some(refusal),
            Ok(_) if form::has_duplicate_mcp_header(&req.headers) => {
                Some(Refusal::DuplicateMcpHeader)
            }
            Ok(Form::Bodiless) if form::has_message_headers(&req.headers) => {
                Some(Refusal::HeaderMismatch)
            }
            Ok(_) => None,
        };
        match refusal {
            Some(refusal) => {
                session.set_keepalive(None);
                self.refuse(session, ctx, refusal).await
            }
            None => Ok(false),
        }
    }

    /// The body must be plain UTF-8 JSON: one `Content-Type: application/json` with no
    /// charset but UTF-8, and no content coding (the gateway judges the bytes the
    /// upstream will parse, and the upstream gets the gateway's own `Content-Type`).
    pub(super) async fn check_body_framing(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> Result<bool> {
        let headers = &session.req_header().headers;
        if let Err(why) = form::check_json_content_type(headers) {
            // The body is never read: the connection must not be read from again.
            session.set_keepalive(None);
            return self.refuse(session, ctx, Refusal::BadMediaType(why)).await;
        }
        let coded = headers
            .get_all(http::header::CONTENT_ENCODING)
            .iter()
            .any(|v| !v.as_bytes().eq_ignore_ascii_case(b"identity"));
        if coded {
            return self
                .refuse(session, ctx, Refusal::UnsupportedMediaType)
                .await;
        }
        Ok(false)
    }

    /// A batch: at most `limits.max_batch` messages (the work one request may ask for is
    /// bounded), and none at all under MCP 2025-06-18 or later.
    pub(super) async fn check_batch(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> Result<bool> {
        let Some(inspected) = ctx.inspected.as_ref().filter(|i| i.batch) else {
            return Ok(false);
        };
        let refusal = if !form::batches_allowed(&session.req_header().headers) {
            Refusal::BatchNotSupported
        } else if inspected.messages.len() > ctx.state.max_batch {
            // One error answers it, not one per message: the refusal stays small however
            // long the batch.
            ctx.inspected = None;
            Refusal::BatchTooLong
        } else {
            return Ok(false);
        };
        self.refuse(session, ctx, refusal).await
    }

    /// The request metadata headers (`MCP-Protocol-Version`, `Mcp-Method`, `Mcp-Name`,
    /// `Mcp-Param-*`) must say what the body says; see `mcp::request_meta`.
    pub(super) async fn check_mcp_headers(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> Result<bool> {
        let Some(inspected) = ctx.inspected.as_ref() else {
            return self.refuse(session, ctx, Refusal::Internal).await;
        };
        let refusal = match request_meta::check(&session.req_header().headers, inspected) {
            Ok(()) => return Ok(false),
            Err(MetaError::BatchWithClaim) => Refusal::BatchNotSupported,
            Err(e) => Refusal::RequestMeta(e),
        };
        self.refuse(session, ctx, refusal).await
    }

    /// Authorize: every operation of the body against the route's policy. Records one
    /// metric and one audit event per operation. On success the context holds the
    /// [`policy::Permit`] that forwarding requires.
    pub(super) async fn authorize(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> Result<bool> {
        let state = ctx.state.clone();
        let Some(rt) = state.route_runtime(ctx) else {
            return self.refuse(session, ctx, Refusal::Internal).await;
        };
        let granted = ctx.principal.as_ref().map_or(&[][..], |p| &p.scopes[..]);
        let policy = rt.route.policy.as_ref();
        let (result, verdicts) = policy::authorize(policy, granted, ctx.inspected.as_ref());
        // Audit output per request is bounded: a lone operation gets its event; a batch
        // gets one summary event with counts, plus one event per denied operation up to
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
            audit::emit(&AuditEvent::Authorization {
                route: &rt.route,
                caller: Caller::of(ctx.principal.as_deref()),
                verdict: v,
            });
        }
        if !single && !verdicts.is_empty() {
            audit::emit(&AuditEvent::AuthorizationSummary {
                route: &rt.route,
                caller: Caller::of(ctx.principal.as_deref()),
                operations: verdicts.len(),
                allowed,
                denied,
                denied_not_logged: denied.saturating_sub(AUDITED_DENIALS),
            });
        }
        match result {
            Ok(permit) => {
                ctx.permit = Some(permit);
                if policy.is_some() {
                    ctx.pending_lists = pending_lists(ctx.inspected.as_ref());
                }
                Ok(false)
            }
            Err(denial) => {
                // A step-up challenge only when more scopes would help: for an operation
                // no scope can permit, clients must not be sent to re-authorize.
                let challenge = rt
                    .guard
                    .as_ref()
                    .filter(|_| !denial.not_permitted)
                    .map(|guard| {
                        let mut scopes: Vec<&str> =
                            guard.required_scopes.iter().map(String::as_str).collect();
                        for s in &denial.needed {
                            if !scopes.contains(&s.as_str()) {
                                scopes.push(s);
                            }
                        }
                        www_authenticate(
                            &guard.resource_metadata,
                            &scopes.join(" "),
                            Some((
                                BearerErrorCode::InsufficientScope,
                                "the access token lacks scopes this operation requires",
                            )),
                        )
                    });
                let refusal = Refusal::Forbidden {
                    message: denial.message,
                    challenge,
                };
                self.refuse(session, ctx, refusal).await
            }
        }
    }

    /// Hands an inspected request with a body over 64 KiB to a subrequest.
    /// Hands the request to a subrequest (see `delegate`): a body over the retry buffer,
    /// or list answers to filter (JSON ones are then held whole).
    pub(super) async fn delegate(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        body: Bytes,
    ) -> Result<bool> {
        let (Some(route), Some(permit), Some(inspected), Some(body_len)) = (
            ctx.route.clone(),
            ctx.permit.clone(),
            ctx.inspected.clone(),
            ctx.body_len,
        ) else {
            return self.refuse(session, ctx, Refusal::Internal).await;
        };
        let handoff = delegate::Handoff {
            state: ctx.state.clone(),
            route,
            pending_lists: ctx.pending_lists.clone(),
            upstream_session_id: ctx.upstream_session_id.clone(),
            reusable_seal: ctx.reusable_seal.clone(),
            upstream_credential: ctx.upstream_credential.clone(),
            principal: ctx.principal.clone(),
            permit,
            inspected,
            body_len,
            list_failure: Default::default(),
        };
        ctx.delegated = true;
        // On a route with a policy every JSON answer is filtered whole and may change
        // length (see `rewrite::mode_for`): hold it, so it goes out with its final length.
        let hold_json = ctx
            .route
            .as_ref()
            .is_some_and(|found| found.route.policy.is_some());
        if let Err(e) = delegate::forward(session, handoff, body, hold_json).await {
            if session.response_written().is_none() {
                let refusal = match classify(&e) {
                    Failure::Respond { refusal, .. } => refusal,
                    _ => Refusal::Internal,
                };
                tracing::warn!(error = %e, "subrequest failed");
                ctx.delegated = false;
                return self.refuse(session, ctx, refusal).await;
            }
        }
        Ok(true)
    }
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
