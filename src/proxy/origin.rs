//! `Origin` validation and CORS for browser-based MCP clients (MCP transports: servers
//! MUST validate `Origin`, against DNS rebinding).
//!
//! A request without `Origin` comes from a non-browser client and passes. A request with
//! one passes only if it is exactly one of the route's `allowed_origins`; anything else
//! (another origin, `null`, two `Origin` headers, bytes that are not text) is refused
//! with 403 before authentication and before any upstream contact. For an allowed
//! origin, the gateway answers the CORS preflight itself (it is never forwarded) and adds
//! the CORS response headers to every answer, its own refusals included, so that a
//! browser client can read `Mcp-Session-Id` and the `WWW-Authenticate` challenge.
//!
//! The decisions are pure functions of the route's list and the request headers; the
//! one function that writes to the client is [`answer_preflight`].

use http::header::{
    ACCESS_CONTROL_ALLOW_HEADERS, ACCESS_CONTROL_ALLOW_METHODS, ACCESS_CONTROL_ALLOW_ORIGIN,
    ACCESS_CONTROL_EXPOSE_HEADERS, ACCESS_CONTROL_MAX_AGE, ACCESS_CONTROL_REQUEST_METHOD, ORIGIN,
    VARY,
};
use http::{HeaderMap, HeaderName, HeaderValue, Method};
use pingora::http::ResponseHeader;
use pingora::proxy::Session;
use pingora::Result;

use super::state::RouteRuntime;
use super::RequestCtx;
use crate::refusal::Refusal;
use pingora::http::RequestHeader;

/// Methods MCP's Streamable HTTP transport uses.
const ALLOW_METHODS: &str = "GET, POST, DELETE";
/// Request headers an MCP client sends.
const ALLOW_HEADERS: &str = "Authorization, Content-Type, Accept, Mcp-Session-Id, MCP-Protocol-Version, Mcp-Method, Mcp-Name, Last-Event-ID";
/// Response headers a browser client must be able to read.
const EXPOSE_HEADERS: &str = "Mcp-Session-Id, WWW-Authenticate";
/// How long a browser may cache a preflight answer, in seconds.
const PREFLIGHT_MAX_AGE: &str = "600";

/// What the request's `Origin` means for this route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OriginCheck {
    /// No `Origin`: not a browser's cross-origin request.
    Absent,
    /// One `Origin`, listed in `allowed_origins`: the value to echo in CORS headers.
    Allowed(HeaderValue),
    /// Any other `Origin` header(s).
    Refused,
}

/// Checks the request's `Origin` header(s) against the route's serialised origins.
/// Compared byte for byte: browsers send the serialised form, which the configuration
/// holds.
pub fn check(allowed: &[String], headers: &HeaderMap) -> OriginCheck {
    let mut values = headers.get_all(ORIGIN).iter();
    let Some(origin) = values.next() else {
        return OriginCheck::Absent;
    };
    if values.next().is_some() {
        return OriginCheck::Refused;
    }
    match origin.to_str() {
        Ok(text) if allowed.iter().any(|a| a == text) => OriginCheck::Allowed(origin.clone()),
        _ => OriginCheck::Refused,
    }
}

/// A CORS preflight: `OPTIONS` with `Access-Control-Request-Method`. Answered by the
/// gateway, never forwarded (it carries no token and no MCP message).
pub fn is_preflight(method: &Method, headers: &HeaderMap) -> bool {
    method == Method::OPTIONS && headers.contains_key(ACCESS_CONTROL_REQUEST_METHOD)
}

/// Headers every answer to an allowed origin carries.
pub fn response_headers(origin: &HeaderValue) -> [(HeaderName, HeaderValue); 3] {
    [
        (ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone()),
        (VARY, HeaderValue::from_static("Origin")),
        (
            ACCESS_CONTROL_EXPOSE_HEADERS,
            HeaderValue::from_static(EXPOSE_HEADERS),
        ),
    ]
}

/// Headers of the preflight answer to an allowed origin.
pub fn preflight_headers(origin: &HeaderValue) -> [(HeaderName, HeaderValue); 5] {
    [
        (ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone()),
        (VARY, HeaderValue::from_static("Origin")),
        (
            ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static(ALLOW_METHODS),
        ),
        (
            ACCESS_CONTROL_ALLOW_HEADERS,
            HeaderValue::from_static(ALLOW_HEADERS),
        ),
        (
            ACCESS_CONTROL_MAX_AGE,
            HeaderValue::from_static(PREFLIGHT_MAX_AGE),
        ),
    ]
}

/// Adds the CORS headers for `origin` to an answer (the upstream's or the gateway's).
/// `Vary` is appended, so an upstream's own `Vary` is kept.
pub fn add_response_headers(resp: &mut ResponseHeader, origin: &HeaderValue) -> Result<()> {
    let [(allow, allow_value), (vary, vary_value), (expose, expose_value)] =
        response_headers(origin);
    resp.insert_header(allow, allow_value)?;
    resp.append_header(vary, vary_value)?;
    resp.insert_header(expose, expose_value)?;
    Ok(())
}

/// Answers a preflight: 204 with the CORS headers for `origin` (none when the preflight
/// came without an `Origin`, which is no browser's).
pub async fn answer_preflight(session: &mut Session, origin: Option<&HeaderValue>) -> Result<()> {
    let mut resp = ResponseHeader::build(204, Some(6))?;
    if let Some(origin) = origin {
        for (name, value) in preflight_headers(origin) {
            resp.insert_header(name, value)?;
        }
    }
    resp.insert_header(http::header::CONTENT_LENGTH, "0")?;
    resp.insert_header(http::header::CACHE_CONTROL, "no-store")?;
    session.write_response_header(Box::new(resp), true).await
}

/// The allowed origin of this request on its route, if it has one: the answer carries
/// CORS headers for it.
pub(super) fn cors_origin(session: &Session, ctx: &RequestCtx) -> Option<HeaderValue> {
    let rt = ctx.state.route_runtime(ctx)?;
    match check(&rt.route.allowed_origins, &session.req_header().headers) {
        OriginCheck::Allowed(origin) => Some(origin),
        _ => None,
    }
}

/// The origin step, right after routing: a disallowed `Origin` is refused; the allowed
/// one, if any, is returned (a preflight is answered with it).
pub(super) fn check_origin(
    rt: &RouteRuntime,
    req: &RequestHeader,
) -> std::result::Result<Option<HeaderValue>, Refusal> {
    match check(&rt.route.allowed_origins, &req.headers) {
        OriginCheck::Refused => Err(Refusal::OriginNotAllowed),
        OriginCheck::Allowed(origin) => Ok(Some(origin)),
        OriginCheck::Absent => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(origins: &[&'static str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for o in origins {
            h.append(ORIGIN, HeaderValue::from_static(o));
        }
        h
    }

    const ALLOWED: &[&str] = &["https://app.example.com", "http://127.0.0.1:8123"];

    fn allowed() -> Vec<String> {
        ALLOWED.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn requests_without_origin_pass() {
        assert_eq!(check(&allowed(), &headers(&[])), OriginCheck::Absent);
        assert_eq!(check(&[], &headers(&[])), OriginCheck::Absent);
    }

    #[test]
    fn only_listed_origins_pass_exactly() {
        assert_eq!(
            check(&allowed(), &headers(&["https://app.example.com"])),
            OriginCheck::Allowed(HeaderValue::from_static("https://app.example.com"))
        );
        for hostile in [
            "https://evil.example",
            "https://app.example.com.evil.example",
            "https://app.example.com:8443",
            "http://app.example.com",
            "https://app.example.com/",
            "null",
            "",
        ] {
            assert_eq!(
                check(&allowed(), &headers(&[hostile])),
                OriginCheck::Refused,
                "{hostile}"
            );
        }
        // A route without allowed_origins takes no browser request at all.
        assert_eq!(
            check(&[], &headers(&["https://app.example.com"])),
            OriginCheck::Refused
        );
    }

    #[test]
    fn two_origin_headers_are_refused_even_if_one_is_allowed() {
        assert_eq!(
            check(
                &allowed(),
                &headers(&["https://app.example.com", "https://evil.example"])
            ),
            OriginCheck::Refused
        );
    }

    #[test]
    fn a_preflight_is_options_with_a_requested_method() {
        let mut h = HeaderMap::new();
        assert!(!is_preflight(&Method::OPTIONS, &h));
        h.insert(
            ACCESS_CONTROL_REQUEST_METHOD,
            HeaderValue::from_static("POST"),
        );
        assert!(is_preflight(&Method::OPTIONS, &h));
        assert!(!is_preflight(&Method::POST, &h));
    }

    #[test]
    fn cors_headers_expose_the_session_and_the_challenge() {
        let origin = HeaderValue::from_static("https://app.example.com");
        let pre = preflight_headers(&origin);
        let find = |name: &HeaderName| pre.iter().find(|(n, _)| n == name).map(|(_, v)| v);
        assert_eq!(find(&ACCESS_CONTROL_ALLOW_ORIGIN), Some(&origin));
        let allow = find(&ACCESS_CONTROL_ALLOW_HEADERS)
            .unwrap()
            .to_str()
            .unwrap();
        for h in [
            "Authorization",
            "Content-Type",
            "Mcp-Session-Id",
            "MCP-Protocol-Version",
            "Mcp-Method",
            "Mcp-Name",
            "Last-Event-ID",
            "Accept",
        ] {
            assert!(allow.contains(h), "{h}");
        }
        let resp = response_headers(&origin);
        assert_eq!(resp[2].1, "Mcp-Session-Id, WWW-Authenticate");
        assert_eq!(resp[1].1, "Origin");
    }
}
