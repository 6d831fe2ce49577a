//! What the URL says: the request target is checked before routing, and the gateway
//! routes on, and forwards, only the form it wrote itself.
//!
//! Owns: the target's form (origin-form only: `/path?query`), the path rules
//! ([`path`]), the one query parser ([`query`]) and the query rule that needs no route:
//! at most one legacy session parameter, plainly spelled
//! ([`session_param`]). Opening the session id is the session step's, on
//! the canonical query this module returns; a token in the URL is the authenticate
//! step's (`auth::bearer`, same parser), whose refusal depends on the route.

pub mod path;
pub mod query;
pub mod session_param;

use path::{normalise_path, PathError};
use query::{Query, QueryError};
use session_param::{session_param_of, SessionParamError};

/// Longest request target accepted, in bytes as received.
pub const MAX_TARGET_LEN: usize = 16 * 1024;

/// Why a request target is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetError {
    /// Absolute-form (`http://host/x`), authority-form (`CONNECT host:443`),
    /// asterisk-form (`OPTIONS *`) or anything else that does not start with `/`.
    NotOriginForm,
    /// A `#` (a fragment is never part of a request target).
    Fragment,
    NotUtf8,
    TooLong,
    Path(PathError),
    Query(QueryError),
    Session(SessionParamError),
}

/// A checked request target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// What the gateway routes on and sends upstream: the normalised path and the
    /// canonical query (none when the query has no parameter).
    pub path_and_query: String,
    /// The query, parsed once: every later rule that reads the URL (a token in it, the
    /// legacy session parameter) reads this.
    pub query: Query,
}

/// Checks the request target as received (Pingora's `raw_path`) and returns it checked
/// (see [`Target`]).
pub fn checked_target(raw: &[u8]) -> Result<Target, TargetError> {
    if raw.len() > MAX_TARGET_LEN {
        return Err(TargetError::TooLong);
    }
    let raw = std::str::from_utf8(raw).map_err(|_| TargetError::NotUtf8)?;
    if !raw.starts_with('/') {
        return Err(TargetError::NotOriginForm);
    }
    if raw.contains('#') {
        return Err(TargetError::Fragment);
    }
    let (path, query) = match raw.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (raw, None),
    };
    let path = normalise_path(path).map_err(TargetError::Path)?;
    let Some(query) = query else {
        return Ok(Target {
            path_and_query: path,
            query: Query::default(),
        });
    };
    let query = Query::parse(query).map_err(TargetError::Query)?;
    session_param_of(&query).map_err(TargetError::Session)?;
    let path_and_query = match query.params.is_empty() {
        true => path,
        false => format!("{path}?{}", query.canonical()),
    };
    Ok(Target {
        path_and_query,
        query,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::refusal::Refusal;

    fn check(raw: &str) -> Result<String, TargetError> {
        checked_target(raw.as_bytes()).map(|t| t.path_and_query)
    }

    #[test]
    fn forwards_only_the_form_it_wrote() {
        for (raw, target) in [
            ("/mcp", "/mcp"),
            ("/mcp?", "/mcp"),
            ("/mcp?&;", "/mcp"),
            (
                "/m/messages?sessionId=v1.k.x",
                "/m/messages?sessionId=v1.k.x",
            ),
            (
                "/m/messages?session_id=v1.k.x;x=1",
                "/m/messages?session_id=v1.k.x&x=1",
            ),
            ("/%6Dcp?a=%41+b", "/mcp?a=A%20b"),
            ("/mcp?my_access_token=1", "/mcp?my_access_token=1"),
        ] {
            assert_eq!(check(raw).as_deref(), Ok(target), "{raw}");
        }
    }

    #[test]
    fn refuses_targets_that_are_not_plain_paths() {
        for (raw, error) in [
            ("http://host/mcp", TargetError::NotOriginForm),
            ("host:443", TargetError::NotOriginForm),
            ("*", TargetError::NotOriginForm),
            ("", TargetError::NotOriginForm),
            ("mcp", TargetError::NotOriginForm),
            ("/mcp#x", TargetError::Fragment),
            ("/mcp?a=1#x", TargetError::Fragment),
            ("/mcp/../x", TargetError::Path(PathError::DotSegment)),
            ("/mcp?a=%zz", TargetError::Query(QueryError::BadEscape)),
        ] {
            assert_eq!(check(raw), Err(error), "{raw:?}");
        }
        assert_eq!(
            checked_target(b"/mcp\xff").map(|t| t.path_and_query),
            Err(TargetError::NotUtf8),
            "raw non-UTF-8"
        );
        let long = format!("/mcp?a={}", "x".repeat(MAX_TARGET_LEN));
        assert_eq!(check(&long), Err(TargetError::TooLong));
        let long_query = format!("/mcp?a={}", "x".repeat(query::MAX_QUERY_LEN));
        assert_eq!(
            Refusal::from(check(&long_query).unwrap_err()),
            Refusal::UriTooLong
        );
    }

    #[test]
    fn refusals_name_the_rule_and_echo_nothing() {
        for (raw, status, kind) in [
            ("/mcp/%2e%2e/secret-path", 400, "bad_path"),
            ("http://secret-host/mcp", 400, "bad_path"),
            ("/mcp?sessionId=a&sessionId=secret-id", 400, "bad_query"),
            ("/mcp?secret=%zz", 400, "bad_query"),
        ] {
            let refusal = Refusal::from(check(raw).unwrap_err());
            assert_eq!(refusal.status(), status, "{raw}");
            assert_eq!(refusal.kind(), kind, "{raw}");
            assert_eq!(refusal.jsonrpc_code(), -32600, "{raw}");
            let body = refusal.body(None);
            let body: serde_json::Value = serde_json::from_str(&body).unwrap();
            assert_eq!(body["error"], kind, "{raw}");
            assert!(!body.to_string().contains("secret"), "{raw}: {body}");
        }
        assert_eq!(Refusal::UriTooLong.status(), 414);
        assert_eq!(Refusal::TokenInQuery.status(), 400);
        assert_eq!(Refusal::TokenInQuery.kind(), "token_in_query");
    }

    #[test]
    fn refuses_repeated_or_disguised_session_parameters() {
        use SessionParamError::{Repeated, Spelling};
        for (raw, error) in [
            ("/m?sessionId=a&sessionId=b", Repeated),
            ("/m?sessionId=a;sessionId=b", Repeated),
            ("/m?sessionId=a&session_id=b", Repeated),
            ("/m?session_id=a&SESSIONID=b", Repeated),
            ("/m?sessionId=a&sessionId[]=b", Repeated),
            ("/m?sessionId=a&sessionId", Repeated),
            ("/m?session%5Fid=raw", Spelling),
            ("/m?session%5fid=raw", Spelling),
            ("/m?session%49d=raw", Spelling),
            ("/m?%73essionId=raw", Spelling),
            ("/m?sessionid=raw", Spelling),
            ("/m?SESSION_ID=raw", Spelling),
            ("/m?sessionId[]=raw", Spelling),
            ("/m?sessionId[x]=raw", Spelling),
            ("/m?sessionId.x=raw", Spelling),
            ("/m?sessionId%3D=raw", Spelling),
            ("/m?+sessionId=raw", Spelling),
            ("/m?%C5%BFessionId=raw", Spelling),
        ] {
            assert_eq!(check(raw), Err(TargetError::Session(error)), "{raw}");
        }
        assert_eq!(
            check("/m?sessionId%00=raw"),
            Err(TargetError::Query(QueryError::ControlChar))
        );
    }
}
