//! Every answer the gateway gives instead of the upstream's, in one place: each variant
//! declares its HTTP status, its JSON-RPC error code and its message. The proxy turns a
//! refusal into a response through [`Refusal::body`] and nothing else.
//!
//! Messages are fixed texts: no header value, token, body or upstream detail ever goes
//! into an error body.

use crate::auth::challenge::{www_authenticate, BearerErrorCode};
use crate::auth::{AuthFailure, RouteGuard};
use crate::exchange::FailureKind;
use crate::mcp::jsonrpc::{error_body_for, Inspected, Malformed};
use crate::mcp::request_meta::MetaError;
use crate::policy::Denial;
use crate::target::query::QueryError;
use crate::target::TargetError;

/// The JSON-RPC error code of MCP 2026-07-28's `HeaderMismatch`.
pub const HEADER_MISMATCH_CODE: i64 = -32020;

/// The JSON-RPC error code of a rate-limited request: the gateway's own, in the band
/// JSON-RPC leaves to implementations and MCP 2026-07-28 does not reserve
/// (-32000..-32019). MCP defines no rate-limit code yet; -32029 lies in the band it
/// reserves for its own codes.
pub const RATE_LIMITED_CODE: i64 = -32008;

/// Which rate limit refused a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Limit {
    /// The route's `rate_limit`.
    Route,
    /// A tool rule's `rate_limit`, by the rule's pattern (the tool label of the metrics).
    Tool(String),
}

impl Limit {
    /// The `limit` label of `drawbridge_rate_limited_total`: `route`, or the tool label.
    pub fn label(&self) -> &str {
        match self {
            Limit::Route => "route",
            Limit::Tool(label) => label,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// No route matches the request's host and path.
    NoRoute,
    /// The request body is larger than `limits.max_body`.
    BodyTooLarge,
    /// The POST body is not JSON.
    NotJson,
    /// The POST body is JSON but not JSON-RPC 2.0.
    NotJsonRpc(&'static str),
    /// A call lacks the parameter naming its tool, prompt or resource.
    InvalidParams(&'static str),
    /// The body's media type or content coding is not plain JSON.
    UnsupportedMediaType,
    /// `Mcp-Method` / `Mcp-Name` headers on a request without a body to match.
    HeaderMismatch,
    /// The request metadata headers (`MCP-Protocol-Version`, `Mcp-Method`, `Mcp-Name`,
    /// `Mcp-Param-*`) are missing, malformed or disagree with the body (MCP 2026-07-28's
    /// `HeaderMismatch`); says which rule.
    RequestMeta(MetaError),
    /// The body's media type, charset or encoding is not the one reading the gateway
    /// judges (UTF-8 JSON); says which (a fixed text).
    BadMediaType(&'static str),
    /// An HTTP method MCP does not use on this route (405, with `Allow`).
    MethodNotAllowed,
    /// A GET or DELETE that carries a body.
    BodyNotAllowed,
    /// An `Mcp-*` request header sent more than once.
    DuplicateMcpHeader,
    /// `X-HTTP-Method-Override` and its kin: the upstream could act on another method
    /// than the one the gateway judged.
    MethodOverride,
    /// A JSON-RPC batch longer than `limits.max_batch`.
    BatchTooLong,
    /// A JSON-RPC batch under MCP 2025-06-18 or later, which has none.
    BatchNotSupported,
    /// The upstream refused the connection, reset it, or failed TLS.
    UpstreamUnreachable,
    /// The upstream did not connect or answer in time.
    UpstreamTimeout,
    /// Anything unexpected; details are logged, never sent.
    Internal,
    /// The upstream's answer could not be filtered by the policy (not readable as the
    /// client would read it, compressed, too large): it never reaches the client.
    UnfilterableAnswer,
    /// Policy refused an operation (403). `message` names what was refused and the
    /// missing scopes; `challenge` is the step-up `WWW-Authenticate` value.
    Forbidden {
        message: String,
        challenge: Option<String>,
    },
    /// A session id that this caller may not use on this route (or that was tampered
    /// with, expired, or sealed by an unknown key): the session does not exist for them.
    SessionNotFound,
    /// More than one `Mcp-Session-Id` header, or one that is not visible ASCII.
    BadSessionHeader,
    /// A `params.requestState` that this caller may not use on this route (issued to
    /// another caller or route, tampered with, expired, sealed by an unknown key, or
    /// never sealed by the gateway). 400 with JSON-RPC -32602, one message whatever the
    /// reason: the request's parameters are invalid, and the client recovers by sending
    /// the request again without the state (see docs/security/handles.md).
    UnknownRequestState,
    /// A method the protocol version the request names in its `_meta` no longer has
    /// (`resources/subscribe` and `resources/unsubscribe` in MCP 2026-07-28): 404 with
    /// JSON-RPC -32601, as the revision says a server answers it.
    MethodRemoved,
    /// A task id (`params.taskId`, or the related-task `_meta`) that this caller may not
    /// use on this route: not sealed by the gateway, sealed for another caller or route,
    /// altered, or too old. Answered like a task the server does not know (invalid
    /// params, -32602); one message for every reason (see docs/security/handles.md).
    UnknownTaskId,
    /// No upstream credential could be obtained: the authorization server refused the
    /// exchange (403), is unavailable (503), or answered nonsense (502).
    Credential(FailureKind),
    /// The authorization server refused the upstream credential until the caller signs in
    /// again meeting its conditions (Entra ID's claims challenge, e.g. multi-factor
    /// authentication): 403, and `challenge` is the `WWW-Authenticate` value that carries
    /// the claims to the client (`error="insufficient_claims", claims="…"`).
    CredentialClaims { challenge: String },
    /// Authentication failed on a protected route; `challenge` is the `WWW-Authenticate`
    /// value that tells the client where to get a token and which scopes to ask for.
    Auth {
        failure: AuthFailure,
        challenge: String,
    },
    /// The request target is not a plain path, or its path could be read differently by
    /// the upstream (dot segments, encoded separators, …); the text says which rule.
    BadPath(&'static str),
    /// The query string could be read differently by the upstream (malformed, repeated or
    /// disguised session parameter, …); the text says which rule.
    BadQuery(&'static str),
    /// A query parameter that some framework reads as `access_token`.
    TokenInQuery,
    /// The request target is longer than the gateway accepts.
    UriTooLong,
    /// The token could not be checked now: too many introspection calls to its issuer
    /// are in flight (503, try again shortly).
    IntrospectionBusy,
    /// The token could not be checked now: its issuer's keys (a `kid` not yet known,
    /// or none fetched yet) or its introspection endpoint cannot be reached (503, try
    /// again shortly). Never a challenge: a new token would not help.
    IssuerUnavailable,
    /// The route's upstream host name has not resolved (yet): 503, try again; the
    /// other routes are served (`upstream_dns`).
    UpstreamUnresolved,
    /// The request's `Origin` is not one of the route's `allowed_origins` (or there is
    /// more than one `Origin`): a page on another site must not drive the gateway.
    OriginNotAllowed,
    /// The request body did not arrive within `limits.body_timeout`.
    BodyTimeout,
    /// The request body's framing is broken (bad chunked encoding, a body cut short).
    MalformedBody,
    /// `limits.max_connections` client connections are open: this one is answered and
    /// closed before its request is read.
    TooManyConnections,
    /// A rate limit is used up for this request's key (429). `retry_after`: whole seconds
    /// until it fits; `None` when it never can (a batch calling a tool more times than
    /// its limit's burst). The message names the limit and the key kind, never the key.
    RateLimited {
        limit: Limit,
        key: crate::ratelimit::KeyKind,
        retry_after: Option<u32>,
    },
}

impl Refusal {
    /// The refusal of a request the policy denied, on a route guarded by `guard`. A
    /// step-up challenge only when more scopes would help: for an operation no scope can
    /// permit, clients must not be sent to re-authorize.
    pub fn of_denial(denial: Denial, guard: Option<&RouteGuard>) -> Refusal {
        let challenge = guard.filter(|_| !denial.not_permitted).map(|guard| {
            let mut scopes: Vec<&str> = guard.required_scopes.iter().map(String::as_str).collect();
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
        Refusal::Forbidden {
            message: denial.message,
            challenge,
        }
    }

    /// The refusal of a call of tool `name` under `policy.pins` with `on_change: hide`:
    /// the tool is not pinned, or its listed definition is not its pin.
    pub fn tool_not_pinned(name: &str) -> Refusal {
        Refusal::Forbidden {
            message: format!(
                "forbidden: tool `{name}` is not available on this route: its definition is not the one pinned for it"
            ),
            challenge: None,
        }
    }

    pub fn status(&self) -> u16 {
        match self {
            Refusal::NoRoute => 404,
            Refusal::BodyTooLarge => 413,
            Refusal::NotJson
            | Refusal::NotJsonRpc(_)
            | Refusal::InvalidParams(_)
            | Refusal::HeaderMismatch
            | Refusal::RequestMeta(_)
            | Refusal::BodyNotAllowed
            | Refusal::DuplicateMcpHeader
            | Refusal::MethodOverride
            | Refusal::BatchTooLong
            | Refusal::BatchNotSupported => 400,
            Refusal::UnsupportedMediaType | Refusal::BadMediaType(_) => 415,
            Refusal::MethodNotAllowed => 405,
            Refusal::UpstreamUnreachable | Refusal::UnfilterableAnswer => 502,
            Refusal::UpstreamTimeout => 504,
            Refusal::Internal => 500,
            Refusal::Auth { failure, .. } => failure.status_and_code().0,
            Refusal::Forbidden { .. } => 403,
            Refusal::SessionNotFound => 404,
            Refusal::BadSessionHeader => 400,
            Refusal::UnknownRequestState | Refusal::UnknownTaskId => 400,
            Refusal::MethodRemoved => 404,
            Refusal::Credential(FailureKind::Denied) => 403,
            Refusal::Credential(FailureKind::Unavailable) => 503,
            Refusal::Credential(FailureKind::BadGateway) => 502,
            Refusal::CredentialClaims { .. } => 403,
            Refusal::BadPath(_) | Refusal::BadQuery(_) | Refusal::TokenInQuery => 400,
            Refusal::UriTooLong => 414,
            Refusal::IntrospectionBusy
            | Refusal::IssuerUnavailable
            | Refusal::UpstreamUnresolved => 503,
            Refusal::OriginNotAllowed => 403,
            Refusal::BodyTimeout => 408,
            Refusal::MalformedBody => 400,
            Refusal::TooManyConnections => 503,
            Refusal::RateLimited { .. } => 429,
        }
    }

    /// Seconds for `Retry-After`, when trying again later may help.
    pub fn retry_after(&self) -> Option<u32> {
        match self {
            Refusal::Credential(FailureKind::Unavailable) => Some(5),
            Refusal::IntrospectionBusy => Some(1),
            Refusal::IssuerUnavailable | Refusal::UpstreamUnresolved => Some(5),
            Refusal::TooManyConnections => Some(1),
            Refusal::RateLimited { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// The `WWW-Authenticate` header value, for authentication refusals.
    pub fn www_authenticate(&self) -> Option<&str> {
        match self {
            Refusal::Auth { challenge, .. } => Some(challenge),
            Refusal::Forbidden { challenge, .. } => challenge.as_deref(),
            Refusal::CredentialClaims { challenge } => Some(challenge),
            _ => None,
        }
    }

    /// The `Allow` header value, for a method the route does not accept.
    pub fn allow(&self) -> Option<&'static str> {
        match self {
            Refusal::MethodNotAllowed => Some("GET, POST, DELETE"),
            _ => None,
        }
    }

    /// JSON-RPC error code: the standard ones where they fit, -320xx for gateway conditions.
    pub fn jsonrpc_code(&self) -> i64 {
        match self {
            Refusal::NotJson => -32700,
            Refusal::NotJsonRpc(_)
            | Refusal::BodyTooLarge
            | Refusal::UnsupportedMediaType
            | Refusal::BadMediaType(_)
            | Refusal::MethodNotAllowed
            | Refusal::BodyNotAllowed
            | Refusal::DuplicateMcpHeader
            | Refusal::MethodOverride
            | Refusal::BatchTooLong
            | Refusal::BatchNotSupported => -32600,
            Refusal::InvalidParams(_) => -32602,
            // MCP 2026-07-28's `HeaderMismatch`, the code its clients recognise.
            // A 2026-07-28 header over a body with no (string) version in `_meta`: the
            // body lacks what the revision requires, which it calls invalid params.
            Refusal::RequestMeta(MetaError::VersionWithoutClaim | MetaError::VersionNotAString) => {
                -32602
            }
            Refusal::HeaderMismatch | Refusal::RequestMeta(_) => HEADER_MISMATCH_CODE,
            Refusal::NoRoute => -32004,
            Refusal::UpstreamUnreachable | Refusal::UpstreamUnresolved => -32002,
            Refusal::UpstreamTimeout => -32003,
            Refusal::Internal => -32603,
            Refusal::UnfilterableAnswer => -32002,
            Refusal::Auth { .. } => -32001,
            Refusal::Forbidden { .. } => -32005,
            Refusal::Credential(_) | Refusal::CredentialClaims { .. } => -32006,
            Refusal::SessionNotFound => -32001,
            Refusal::BadSessionHeader => -32600,
            Refusal::UnknownRequestState | Refusal::UnknownTaskId => -32602,
            Refusal::MethodRemoved => -32601,
            Refusal::BadPath(_)
            | Refusal::BadQuery(_)
            | Refusal::TokenInQuery
            | Refusal::UriTooLong => -32600,
            Refusal::IntrospectionBusy | Refusal::IssuerUnavailable => -32001,
            Refusal::OriginNotAllowed => -32005,
            Refusal::BodyTimeout | Refusal::MalformedBody => -32600,
            Refusal::TooManyConnections => -32007,
            Refusal::RateLimited { .. } => RATE_LIMITED_CODE,
        }
    }

    /// Short machine-readable name, also the `kind`/`reason` label in metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Refusal::NoRoute => "no_route",
            Refusal::BodyTooLarge => "body_too_large",
            Refusal::NotJson => "parse_error",
            Refusal::NotJsonRpc(_) => "invalid_request",
            Refusal::InvalidParams(_) => "invalid_params",
            Refusal::UnsupportedMediaType => "unsupported_media_type",
            Refusal::HeaderMismatch | Refusal::RequestMeta(_) => "header_mismatch",
            Refusal::BadMediaType(_) => "unsupported_media_type",
            Refusal::MethodNotAllowed => "method_not_allowed",
            Refusal::BodyNotAllowed => "body_not_allowed",
            Refusal::DuplicateMcpHeader => "duplicate_mcp_header",
            Refusal::MethodOverride => "method_override",
            Refusal::BatchTooLong => "batch_too_long",
            Refusal::BatchNotSupported => "batch_not_supported",
            Refusal::UpstreamUnreachable => "upstream_unreachable",
            Refusal::UpstreamTimeout => "upstream_timeout",
            Refusal::Internal => "internal_error",
            Refusal::UnfilterableAnswer => "unfilterable_answer",
            Refusal::Auth { failure, .. } => failure.reason(),
            Refusal::Forbidden { .. } => "forbidden",
            Refusal::SessionNotFound => "session_not_found",
            Refusal::BadSessionHeader => "bad_session_header",
            Refusal::UnknownRequestState => "invalid_request_state",
            Refusal::MethodRemoved => "method_not_found",
            Refusal::UnknownTaskId => "invalid_task_id",
            Refusal::Credential(FailureKind::Denied) => "upstream_credential_denied",
            Refusal::Credential(FailureKind::Unavailable) => "authorization_server_unavailable",
            Refusal::Credential(FailureKind::BadGateway) => "upstream_credential_failed",
            Refusal::CredentialClaims { .. } => "upstream_claims_challenge",
            Refusal::BadPath(_) => "bad_path",
            Refusal::BadQuery(_) => "bad_query",
            Refusal::TokenInQuery => "token_in_query",
            Refusal::UriTooLong => "uri_too_long",
            Refusal::IntrospectionBusy => "introspection_busy",
            Refusal::IssuerUnavailable => "issuer_unavailable",
            Refusal::UpstreamUnresolved => "upstream_unresolved",
            Refusal::OriginNotAllowed => "origin_not_allowed",
            Refusal::BodyTimeout => "body_timeout",
            Refusal::MalformedBody => "malformed_body",
            Refusal::TooManyConnections => "too_many_connections",
            Refusal::RateLimited { .. } => "rate_limited",
        }
    }

    pub fn message(&self) -> String {
        match self {
            Refusal::NoRoute => "no route for this host and path".into(),
            Refusal::BodyTooLarge => "request body is larger than the gateway accepts".into(),
            Refusal::NotJson => "parse error: the request body is not JSON".into(),
            Refusal::NotJsonRpc(what) => {
                format!("invalid request: the body is not JSON-RPC 2.0 ({what})")
            }
            Refusal::InvalidParams(what) => format!("invalid params: {what}"),
            Refusal::UnsupportedMediaType => {
                "the body must be JSON: Content-Type application/json, no Content-Encoding".into()
            }
            Refusal::HeaderMismatch => {
                "the Mcp-Method or Mcp-Name header does not match the body".into()
            }
            Refusal::RequestMeta(e) => {
                format!("the request headers do not match the body: {}", e.reason())
            }
            Refusal::BadMediaType(why) => format!(
                "the body must be UTF-8 JSON sent as Content-Type application/json (no charset, or charset=utf-8): {why}"
            ),
            Refusal::MethodNotAllowed => {
                "MCP routes accept POST (messages), GET (streams) and DELETE (end a session)"
                    .into()
            }
            Refusal::BodyNotAllowed => "a GET or DELETE request must not carry a body".into(),
            Refusal::DuplicateMcpHeader => "each Mcp-* request header may appear once".into(),
            Refusal::MethodOverride => {
                "method override headers are not accepted: send the request with its own method"
                    .into()
            }
            Refusal::BatchTooLong => {
                "the batch has more messages than the gateway accepts (limits.max_batch)".into()
            }
            Refusal::BatchNotSupported => {
                "MCP 2025-06-18 and later have no JSON-RPC batches: send one message per request"
                    .into()
            }
            Refusal::UpstreamUnreachable => "the upstream MCP server is unreachable".into(),
            Refusal::UpstreamTimeout => "the upstream MCP server did not answer in time".into(),
            Refusal::Internal => "internal gateway error".into(),
            Refusal::UnfilterableAnswer => {
                "the upstream's answer could not be filtered by the gateway's policy".into()
            }
            Refusal::Auth { failure, .. } => failure.description().into(),
            Refusal::Forbidden { message, .. } => message.clone(),
            Refusal::SessionNotFound => "session not found".into(),
            Refusal::BadSessionHeader => "one Mcp-Session-Id header, visible ASCII only".into(),
            Refusal::UnknownRequestState => {
                "invalid or expired requestState: send the request again without it".into()
            }
            Refusal::MethodRemoved => {
                "method not found: the protocol version the request names has no such method".into()
            }
            Refusal::UnknownTaskId => {
                "unknown or expired task id: use only task ids this gateway gave you".into()
            }
            Refusal::Credential(FailureKind::Denied) => {
                "the authorization server refused a token for the upstream on your behalf".into()
            }
            Refusal::Credential(FailureKind::Unavailable) => {
                "the authorization server is unavailable; try again shortly".into()
            }
            Refusal::Credential(FailureKind::BadGateway) => {
                "the gateway could not obtain a credential for the upstream".into()
            }
            Refusal::CredentialClaims { .. } => {
                "the authorization server requires you to sign in again meeting its conditions before the upstream can be called on your behalf: request a new token with the claims in WWW-Authenticate".into()
            }
            Refusal::BadPath(what) => format!("bad request path: {what}"),
            Refusal::BadQuery(what) => format!("bad query string: {what}"),
            Refusal::TokenInQuery => {
                "send the access token in the Authorization header, not the URL".into()
            }
            Refusal::UriTooLong => "the request target is longer than the gateway accepts".into(),
            Refusal::IntrospectionBusy => {
                "too many token checks are in progress; try again shortly".into()
            }
            Refusal::IssuerUnavailable => {
                "the token's issuer cannot be reached to verify it; try again shortly".into()
            }
            Refusal::UpstreamUnresolved => {
                "the upstream MCP server's host name does not resolve; try again shortly".into()
            }
            Refusal::OriginNotAllowed => "requests from this origin are not allowed".into(),
            Refusal::BodyTimeout => "the request body did not arrive in time".into(),
            Refusal::MalformedBody => "the request body's framing is malformed".into(),
            Refusal::TooManyConnections => {
                "the gateway has too many open connections; try again shortly".into()
            }
            Refusal::RateLimited {
                limit,
                key,
                retry_after,
            } => rate_limited_message(limit, *key, *retry_after),
        }
    }

    /// The response body: a JSON-RPC error answering the request's id(s) when the request
    /// was JSON-RPC (or meant to be), a small JSON object otherwise.
    pub fn body(&self, inspected: Option<&Inspected>) -> String {
        self.body_for(inspected, None)
    }

    /// [`Refusal::body`] naming the refused request by its `X-Request-Id`: in
    /// `error.data.requestId` of a JSON-RPC error, as `request_id` in the other forms.
    pub fn body_for(&self, inspected: Option<&Inspected>, request_id: Option<&str>) -> String {
        let id_member = match request_id.map(serde_json::to_string) {
            Some(Ok(id)) => format!(r#","request_id":{id}"#),
            _ => String::new(),
        };
        if let Refusal::Auth { failure, .. } = self {
            // OAuth-style error object (RFC 6750): the body is read only after
            // authentication, so there is no JSON-RPC id to answer.
            let code = failure
                .status_and_code()
                .1
                .map_or("unauthorized", |c| c.as_str());
            let description = serde_json::Value::String(self.message());
            return format!(r#"{{"error":"{code}","error_description":{description}{id_member}}}"#);
        }
        // A batch over the limit gets one error, not one per message: the refusal stays
        // small however long the batch.
        let inspected = inspected.filter(|_| !matches!(self, Refusal::BatchTooLong));
        let rpc = inspected.is_some()
            || matches!(
                self,
                Refusal::NotJson
                    | Refusal::NotJsonRpc(_)
                    | Refusal::InvalidParams(_)
                    | Refusal::BadMediaType(_)
                    | Refusal::BatchTooLong
                    | Refusal::OriginNotAllowed
                    | Refusal::BodyTimeout
                    | Refusal::MalformedBody
                    | Refusal::TooManyConnections
                    | Refusal::RateLimited { .. }
            );
        if rpc {
            return error_body_for(inspected, self.jsonrpc_code(), &self.message(), request_id);
        }
        let message = serde_json::Value::String(self.message());
        format!(
            r#"{{"error":"{}","message":{message}{id_member}}}"#,
            self.kind()
        )
    }
}

/// What a rate-limited caller reads: which limit, counted by what, and when to come
/// back (agents see the message, rarely the `Retry-After` header).
fn rate_limited_message(
    limit: &Limit,
    key: crate::ratelimit::KeyKind,
    retry_after: Option<u32>,
) -> String {
    use crate::ratelimit::KeyKind;
    let whose = match key {
        KeyKind::Subject => "per user",
        KeyKind::Client => "per client",
        KeyKind::Route => "shared by all callers",
    };
    let which = match limit {
        Limit::Route => "this route's rate limit".to_string(),
        Limit::Tool(label) => format!("the rate limit of tool `{label}`"),
    };
    match retry_after {
        Some(secs) => format!(
            "rate limited: {which} ({whose}, key: {}) is used up; retry after {secs}s",
            key.label()
        ),
        None => format!(
            "rate limited: this batch calls more than {which} ({whose}, key: {}) allows at once; send fewer calls per request",
            key.label()
        ),
    }
}

impl From<Malformed> for Refusal {
    fn from(m: Malformed) -> Refusal {
        match m {
            Malformed::NotJson => Refusal::NotJson,
            Malformed::NotJsonRpc(why) => Refusal::NotJsonRpc(why),
            Malformed::InvalidParams(why) => Refusal::InvalidParams(why),
            Malformed::Encoding(why) => Refusal::BadMediaType(why),
        }
    }
}

/// A request target the gateway will not route ([`crate::target`]): each rule's fixed
/// message, never the target itself.
impl From<TargetError> for Refusal {
    fn from(e: TargetError) -> Refusal {
        match e {
            TargetError::NotOriginForm => {
                Refusal::BadPath("the request target must be a path starting with /")
            }
            TargetError::Fragment => Refusal::BadPath("the request target has a fragment (#)"),
            TargetError::NotUtf8 => Refusal::BadPath("the request target is not UTF-8"),
            TargetError::TooLong | TargetError::Query(QueryError::TooLong) => Refusal::UriTooLong,
            TargetError::Path(e) => Refusal::BadPath(e.message()),
            TargetError::Query(e) => Refusal::BadQuery(e.message()),
            TargetError::Session(e) => Refusal::BadQuery(e.message()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mcp::jsonrpc::inspect;

    #[test]
    fn json_rpc_requests_get_json_rpc_errors_with_their_id() {
        let req = inspect(br#"{"jsonrpc":"2.0","id":42,"method":"ping"}"#).unwrap();
        let body: serde_json::Value =
            serde_json::from_str(&Refusal::UpstreamTimeout.body(Some(&req))).unwrap();
        assert_eq!(body["id"], 42);
        assert_eq!(body["error"]["code"], -32003);
        assert_eq!(Refusal::UpstreamTimeout.status(), 504);
    }

    #[test]
    fn a_header_mismatch_is_the_specs_header_mismatch() {
        use crate::mcp::request_meta::MetaError;
        let req = inspect(br#"{"jsonrpc":"2.0","id":7,"method":"ping"}"#).unwrap();
        let refusal = Refusal::RequestMeta(MetaError::MissingMethod);
        assert_eq!(refusal.status(), 400);
        let body: serde_json::Value = serde_json::from_str(&refusal.body(Some(&req))).unwrap();
        assert_eq!(body["id"], 7);
        assert_eq!(body["error"]["code"], -32020);
        assert_eq!(
            body["error"]["message"],
            "the request headers do not match the body: the Mcp-Method header is required"
        );
        assert_eq!(Refusal::HeaderMismatch.jsonrpc_code(), -32020);
        assert_eq!(refusal.kind(), Refusal::HeaderMismatch.kind());
    }

    #[test]
    fn every_body_form_names_the_request_it_refuses() {
        let id = Some("req-7:a/b");
        let single = inspect(br#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#).unwrap();
        let batch = inspect(br#"[{"jsonrpc":"2.0","id":1,"method":"ping"},{"jsonrpc":"2.0","id":2,"method":"ping"}]"#).unwrap();
        let read = |text: String| -> serde_json::Value { serde_json::from_str(&text).unwrap() };
        let rpc = read(Refusal::UpstreamTimeout.body_for(Some(&single), id));
        assert_eq!(rpc["error"]["data"]["requestId"], "req-7:a/b");
        let many = read(Refusal::UpstreamTimeout.body_for(Some(&batch), id));
        for item in many.as_array().unwrap() {
            assert_eq!(item["error"]["data"]["requestId"], "req-7:a/b");
        }
        let plain = read(Refusal::NoRoute.body_for(None, id));
        assert_eq!(plain["request_id"], "req-7:a/b");
        assert_eq!(plain["error"], "no_route");
        let auth = read(
            Refusal::Auth {
                failure: crate::auth::AuthFailure::InsufficientScope,
                challenge: String::new(),
            }
            .body_for(None, id),
        );
        assert_eq!(auth["request_id"], "req-7:a/b");
        // Without an id, the bodies are as before.
        assert!(read(Refusal::UpstreamTimeout.body(Some(&single)))["error"]
            .get("data")
            .is_none());
        assert!(read(Refusal::NoRoute.body(None))
            .get("request_id")
            .is_none());
    }

    #[test]
    fn a_claims_challenge_is_a_403_that_carries_it() {
        let refusal = Refusal::CredentialClaims {
            challenge: r#"Bearer error="insufficient_claims", claims="e30=""#.into(),
        };
        assert_eq!(refusal.status(), 403);
        assert_eq!(refusal.retry_after(), None);
        assert_eq!(
            refusal.www_authenticate(),
            Some(r#"Bearer error="insufficient_claims", claims="e30=""#)
        );
        let req =
            inspect(br#"{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"x"}}"#)
                .unwrap();
        let body: serde_json::Value = serde_json::from_str(&refusal.body(Some(&req))).unwrap();
        assert_eq!(body["id"], 3);
        assert_eq!(body["error"]["code"], -32006);
        assert!(
            !body.to_string().contains("e30="),
            "the claims travel in the header only"
        );
        assert_eq!(refusal.kind(), "upstream_claims_challenge");
    }

    #[test]
    fn an_unreachable_issuer_is_a_503_to_retry_not_a_challenge() {
        let refusal = Refusal::IssuerUnavailable;
        assert_eq!(refusal.status(), 503);
        assert_eq!(refusal.retry_after(), Some(5));
        assert_eq!(refusal.www_authenticate(), None);
        assert_eq!(refusal.kind(), "issuer_unavailable");
        let body: serde_json::Value = serde_json::from_str(&refusal.body(None)).unwrap();
        assert_eq!(body["error"], "issuer_unavailable");
    }

    #[test]
    fn a_rate_limit_refusal_is_429_and_names_the_limit_and_its_key_kind() {
        use crate::ratelimit::KeyKind;
        let route = Refusal::RateLimited {
            limit: Limit::Route,
            key: KeyKind::Subject,
            retry_after: Some(3),
        };
        assert_eq!(route.status(), 429);
        assert_eq!(route.retry_after(), Some(3));
        assert_eq!(route.kind(), "rate_limited");
        // Before the body is read there is no id: a JSON-RPC error with a null id.
        let body: serde_json::Value = serde_json::from_str(&route.body(None)).unwrap();
        assert!(body["id"].is_null());
        assert_eq!(body["error"]["code"], RATE_LIMITED_CODE);
        assert_eq!(
            body["error"]["message"],
            "rate limited: this route's rate limit (per user, key: subject) is used up; retry after 3s"
        );
        let req = inspect(br#"[{"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"name":"deploy"}},{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"deploy"}}]"#).unwrap();
        let tool = Refusal::RateLimited {
            limit: Limit::Tool("deploy".into()),
            key: KeyKind::Client,
            retry_after: None,
        };
        assert_eq!(tool.retry_after(), None);
        let body: serde_json::Value = serde_json::from_str(&tool.body(Some(&req))).unwrap();
        assert_eq!(body[0]["id"], 4);
        assert_eq!(body[1]["id"], 5);
        let message = body[1]["error"]["message"].as_str().unwrap();
        assert!(
            message.contains("tool `deploy`") && message.contains("key: client"),
            "{message}"
        );
        assert_eq!(Limit::Tool("get-*".into()).label(), "get-*");
        assert_eq!(Limit::Route.label(), "route");
    }

    #[test]
    fn other_requests_get_plain_json() {
        let body: serde_json::Value = serde_json::from_str(&Refusal::NoRoute.body(None)).unwrap();
        assert_eq!(body["error"], "no_route");
        let parse: serde_json::Value = serde_json::from_str(&Refusal::NotJson.body(None)).unwrap();
        assert_eq!(parse["error"]["code"], -32700);
        assert!(parse["id"].is_null());
    }
}
