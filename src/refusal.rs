//! Every answer the gateway gives instead of the upstream's, in one place: each variant
//! declares its HTTP status, its JSON-RPC error code and its message. The proxy turns a
//! refusal into a response through [`Refusal::body`] and nothing else.
//!
//! Messages are fixed texts: no header value, token, body or upstream detail ever goes
//! into an error body.

use crate::auth::AuthFailure;
use crate::exchange::FailureKind;
use crate::mcp::jsonrpc::{error_body, Inspected, Malformed};

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
    /// `Mcp-Method` / `Mcp-Name` headers disagree with the body.
    HeaderMismatch,
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
    /// No upstream credential could be obtained: the authorization server refused the
    /// exchange (403), is unavailable (503), or answered nonsense (502).
    Credential(FailureKind),
    /// Authentication failed on a protected route; `challenge` is the `WWW-Authenticate`
    /// value that tells the client where to get a token and which scopes to ask for.
    Auth {
        failure: AuthFailure,
        challenge: String,
    },
}

impl Refusal {
    pub fn status(&self) -> u16 {
        match self {
            Refusal::NoRoute => 404,
            Refusal::BodyTooLarge => 413,
            Refusal::NotJson
            | Refusal::NotJsonRpc(_)
            | Refusal::InvalidParams(_)
            | Refusal::HeaderMismatch => 400,
            Refusal::UnsupportedMediaType => 415,
            Refusal::UpstreamUnreachable | Refusal::UnfilterableAnswer => 502,
            Refusal::UpstreamTimeout => 504,
            Refusal::Internal => 500,
            Refusal::Auth { failure, .. } => failure.status_and_code().0,
            Refusal::Forbidden { .. } => 403,
            Refusal::SessionNotFound => 404,
            Refusal::BadSessionHeader => 400,
            Refusal::Credential(FailureKind::Denied) => 403,
            Refusal::Credential(FailureKind::Unavailable) => 503,
            Refusal::Credential(FailureKind::BadGateway) => 502,
        }
    }

    /// Seconds for `Retry-After`, when trying again later may help.
    pub fn retry_after(&self) -> Option<u32> {
        match self {
            Refusal::Credential(FailureKind::Unavailable) => Some(5),
            _ => None,
        }
    }

    /// The `WWW-Authenticate` header value, for authentication refusals.
    pub fn www_authenticate(&self) -> Option<&str> {
        match self {
            Refusal::Auth { challenge, .. } => Some(challenge),
            Refusal::Forbidden { challenge, .. } => challenge.as_deref(),
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
            | Refusal::HeaderMismatch => -32600,
            Refusal::InvalidParams(_) => -32602,
            Refusal::NoRoute => -32004,
            Refusal::UpstreamUnreachable => -32002,
            Refusal::UpstreamTimeout => -32003,
            Refusal::Internal => -32603,
            Refusal::UnfilterableAnswer => -32002,
            Refusal::Auth { .. } => -32001,
            Refusal::Forbidden { .. } => -32005,
            Refusal::Credential(_) => -32006,
            Refusal::SessionNotFound => -32001,
            Refusal::BadSessionHeader => -32600,
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
            Refusal::HeaderMismatch => "header_mismatch",
            Refusal::UpstreamUnreachable => "upstream_unreachable",
            Refusal::UpstreamTimeout => "upstream_timeout",
            Refusal::Internal => "internal_error",
            Refusal::UnfilterableAnswer => "unfilterable_answer",
            Refusal::Auth { failure, .. } => failure.reason(),
            Refusal::Forbidden { .. } => "forbidden",
            Refusal::SessionNotFound => "session_not_found",
            Refusal::BadSessionHeader => "bad_session_header",
            Refusal::Credential(FailureKind::Denied) => "upstream_credential_denied",
            Refusal::Credential(FailureKind::Unavailable) => "authorization_server_unavailable",
            Refusal::Credential(FailureKind::BadGateway) => "upstream_credential_failed",
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
            Refusal::Credential(FailureKind::Denied) => {
                "the authorization server refused a token for the upstream on your behalf".into()
            }
            Refusal::Credential(FailureKind::Unavailable) => {
                "the authorization server is unavailable; try again shortly".into()
            }
            Refusal::Credential(FailureKind::BadGateway) => {
                "the gateway could not obtain a credential for the upstream".into()
            }
        }
    }

    /// The response body: a JSON-RPC error answering the request's id(s) when the request
    /// was JSON-RPC (or meant to be), a small JSON object otherwise.
    pub fn body(&self, inspected: Option<&Inspected>) -> String {
        if let Refusal::Auth { failure, .. } = self {
            // OAuth-style error object (RFC 6750): the body is read only after
            // authentication, so there is no JSON-RPC id to answer.
            let code = failure
                .status_and_code()
                .1
                .map_or("unauthorized", |c| c.as_str());
            let description = serde_json::Value::String(self.message());
            return format!(r#"{{"error":"{code}","error_description":{description}}}"#);
        }
        let rpc = inspected.is_some()
            || matches!(
                self,
                Refusal::NotJson | Refusal::NotJsonRpc(_) | Refusal::InvalidParams(_)
            );
        if rpc {
            return error_body(inspected, self.jsonrpc_code(), &self.message());
        }
        let message = serde_json::Value::String(self.message());
        format!(r#"{{"error":"{}","message":{message}}}"#, self.kind())
    }
}

impl From<Malformed> for Refusal {
    fn from(m: Malformed) -> Refusal {
        match m {
            Malformed::NotJson => Refusal::NotJson,
            Malformed::NotJsonRpc(why) => Refusal::NotJsonRpc(why),
            Malformed::InvalidParams(why) => Refusal::InvalidParams(why),
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
    fn other_requests_get_plain_json() {
        let body: serde_json::Value = serde_json::from_str(&Refusal::NoRoute.body(None)).unwrap();
        assert_eq!(body["error"], "no_route");
        let parse: serde_json::Value = serde_json::from_str(&Refusal::NotJson.body(None)).unwrap();
        assert_eq!(parse["error"]["code"], -32700);
        assert!(parse["id"].is_null());
    }
}
