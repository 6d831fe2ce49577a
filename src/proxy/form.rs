//! The form of a request on an MCP route, judged before its body is read: the HTTP
//! method (and whether it may carry a body), the `Content-Type` of a message, duplicated
//! `Mcp-*` headers, and whether the protocol version the client speaks allows batches.
//!
//! The gateway must read a request exactly as the upstream will. Upstream frameworks
//! decode a body in the charset its `Content-Type` names (Express's body-parser decodes
//! UTF-7, UTF-16, latin1…), strip a byte order mark, or guess UTF-16/32 from NUL bytes
//! (Python's `json.loads` on bytes); any of these would let the upstream read a different
//! call than the one the gateway judged. So only one form is accepted — UTF-8 JSON,
//! `application/json` with no charset or `charset=utf-8` — and the upstream is sent a
//! `Content-Type` the gateway writes itself (see `headers`).
//!
//! Pure functions of the method and headers; no Pingora types.

use http::header::{self, HeaderMap};
use http::Method;

use crate::refusal::Refusal;

/// What a request on an MCP route is, by its method.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Form {
    /// POST: a JSON-RPC message or batch, read and inspected.
    Message,
    /// GET (a stream) or DELETE (end a session), without a body.
    Bodiless,
}

/// MCP uses POST for messages, GET for streams and DELETE to end a session. Method names
/// are case-sensitive (RFC 9110 §9.1): `post` is not POST, and is refused like any other.
pub fn request_form(method: &Method, headers: &HeaderMap) -> Result<Form, Refusal> {
    if METHOD_OVERRIDES.iter().any(|h| headers.contains_key(*h)) {
        return Err(Refusal::MethodOverride);
    }
    if method == Method::POST {
        Ok(Form::Message)
    } else if method == Method::GET || method == Method::DELETE {
        if carries_body(headers) {
            return Err(Refusal::BodyNotAllowed);
        }
        Ok(Form::Bodiless)
    } else {
        // OPTIONS too: a CORS preflight was answered by the origin step, before this one;
        // any other OPTIONS is not MCP and is never forwarded.
        Err(Refusal::MethodNotAllowed)
    }
}

/// Headers with which frameworks (Express's method-override, Rails, Symfony, some Go
/// routers) let a request claim another method than the one it was sent with.
const METHOD_OVERRIDES: [&str; 3] = [
    "x-http-method-override",
    "x-http-method",
    "x-method-override",
];

/// Any `Transfer-Encoding`, or a `Content-Length` that is not exactly `0`.
fn carries_body(headers: &HeaderMap) -> bool {
    headers.contains_key(header::TRANSFER_ENCODING)
        || headers
            .get_all(header::CONTENT_LENGTH)
            .iter()
            .any(|v| v.as_bytes().trim_ascii() != b"0")
}

/// An `Mcp-*` header sent more than once: the gateway would check one value and the
/// upstream might read the other. (`Mcp-Session-Id` has its own refusal, in the
/// session step.)
pub fn has_duplicate_mcp_header(headers: &HeaderMap) -> bool {
    headers.keys().any(|name| {
        let name = name.as_str();
        name.starts_with("mcp-")
            && name != "mcp-session-id"
            && headers.get_all(name).iter().nth(1).is_some()
    })
}

/// `Mcp-Method` / `Mcp-Name` on a request without a message: there is no body for them
/// to agree with, so they could only say something the gateway did not check.
pub fn has_message_headers(headers: &HeaderMap) -> bool {
    headers.contains_key("mcp-method") || headers.contains_key("mcp-name")
}

pub use crate::mcp::request_meta::batches_allowed;

/// Accepts exactly `application/json` (any case, RFC 9110 white space) with no
/// `charset` or one `charset=utf-8` (any case, quoted or not); other parameters are
/// read and ignored (the upstream gets the gateway's own `Content-Type`). Anything else,
/// or anything this cannot read, is refused with the reason.
pub fn check_json_content_type(headers: &HeaderMap) -> Result<(), &'static str> {
    let mut values = headers.get_all(header::CONTENT_TYPE).iter();
    let Some(value) = values.next() else {
        return Err("the request has no Content-Type");
    };
    if values.next().is_some() {
        return Err("more than one Content-Type header");
    }
    let text = value
        .to_str()
        .map_err(|_| "the Content-Type is not visible ASCII")?;
    let mut rest = MediaText(text.trim_matches(OWS));
    let kind = rest.token().ok_or(UNREADABLE)?;
    rest.expect(b'/').ok_or(UNREADABLE)?;
    let subtype = rest.token().ok_or(UNREADABLE)?;
    if !kind.eq_ignore_ascii_case("application") || !subtype.eq_ignore_ascii_case("json") {
        return Err("the media type is not application/json");
    }
    let mut charset_seen = false;
    loop {
        rest.skip_ows();
        if rest.0.is_empty() {
            return Ok(());
        }
        rest.expect(b';').ok_or(UNREADABLE)?;
        rest.skip_ows();
        if rest.0.is_empty() || rest.0.starts_with(';') {
            continue; // an empty parameter (RFC 9110 allows it)
        }
        let name = rest.token().ok_or(UNREADABLE)?;
        rest.expect(b'=').ok_or(UNREADABLE)?;
        let value = rest.parameter_value().ok_or(UNREADABLE)?;
        if name.eq_ignore_ascii_case("charset") {
            if charset_seen {
                return Err("more than one charset parameter");
            }
            charset_seen = true;
            if !value.eq_ignore_ascii_case("utf-8") {
                return Err("a charset other than utf-8");
            }
        }
    }
}

const UNREADABLE: &str = "a Content-Type the gateway cannot read";

const OWS: [char; 2] = [' ', '\t'];

/// What is left of a `Content-Type` value.
struct MediaText<'a>(&'a str);

impl<'a> MediaText<'a> {
    fn skip_ows(&mut self) {
        self.0 = self.0.trim_start_matches(OWS);
    }

    fn expect(&mut self, byte: u8) -> Option<()> {
        let rest = self.0.strip_prefix(byte as char)?;
        self.0 = rest;
        Some(())
    }

    /// `token = 1*tchar` (RFC 9110 §5.6.2).
    fn token(&mut self) -> Option<&'a str> {
        let end = self
            .0
            .bytes()
            .position(|b| !is_tchar(b))
            .unwrap_or(self.0.len());
        if end == 0 {
            return None;
        }
        let (token, rest) = self.0.split_at(end);
        self.0 = rest;
        Some(token)
    }

    /// A token or a quoted string; a quoted string with a `\` escape is not read (it is
    /// refused), so that no two readers can unescape it differently.
    fn parameter_value(&mut self) -> Option<&'a str> {
        let Some(quoted) = self.0.strip_prefix('"') else {
            return self.token();
        };
        let end = quoted.find(['"', '\\'])?;
        let (value, rest) = quoted.split_at(end);
        let rest = rest.strip_prefix('"')?;
        if !value
            .bytes()
            .all(|b| b == b'\t' || (b' '..=b'~').contains(&b))
        {
            return None;
        }
        self.0 = rest;
        Some(value)
    }
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(
                http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                http::HeaderValue::from_str(value).unwrap(),
            );
        }
        map
    }

    fn content_type(value: &str) -> Result<(), &'static str> {
        check_json_content_type(&headers(&[("content-type", value)]))
    }

    #[test]
    fn json_without_charset_or_with_utf_8_is_accepted() {
        for value in [
            "application/json",
            "Application/JSON",
            "  application/json  ",
            "application/json; charset=utf-8",
            "application/json;charset=UTF-8",
            "application/json ;\tcharset=\"utf-8\"",
            "application/json; charset=Utf-8; profile=x",
            "application/json;",
            "application/json; ; charset=utf-8",
            "application/json; foo=\"bar baz\"",
        ] {
            assert_eq!(content_type(value), Ok(()), "{value:?}");
        }
    }

    #[test]
    fn other_charsets_types_and_unreadable_values_are_refused() {
        for (value, why) in [
            (
                "application/json; charset=utf-7",
                "a charset other than utf-8",
            ),
            (
                "application/json; charset=\"UTF-7\"",
                "a charset other than utf-8",
            ),
            (
                "application/json; charset=utf8",
                "a charset other than utf-8",
            ),
            (
                "application/json; charset=latin1",
                "a charset other than utf-8",
            ),
            (
                "application/json; charset=iso-8859-1",
                "a charset other than utf-8",
            ),
            (
                "application/json; charset=utf-16",
                "a charset other than utf-8",
            ),
            (
                "application/json; charset=utf-16le",
                "a charset other than utf-8",
            ),
            ("application/json; charset=", UNREADABLE),
            (
                "application/json; CHARSET=utf-8; charset=utf-8",
                "more than one charset parameter",
            ),
            (
                "application/json; charset=utf-8; charset=utf-7",
                "more than one charset parameter",
            ),
            ("application/json; charset = utf-7", UNREADABLE),
            ("application/json; charset=\"utf-8", UNREADABLE),
            ("application/json; charset=\"utf\\-8\"", UNREADABLE),
            ("application/json charset=utf-8", UNREADABLE),
            ("application/json, text/plain", UNREADABLE),
            ("application/json; x", UNREADABLE),
            ("text/plain", "the media type is not application/json"),
            (
                "application/jsonx",
                "the media type is not application/json",
            ),
            (
                "application/json-rpc",
                "the media type is not application/json",
            ),
            (
                "application/x-www-form-urlencoded",
                "the media type is not application/json",
            ),
            ("application/ json", UNREADABLE),
            ("", UNREADABLE),
        ] {
            assert_eq!(content_type(value), Err(why), "{value:?}");
        }
        assert_eq!(
            check_json_content_type(&HeaderMap::new()),
            Err("the request has no Content-Type")
        );
        let two = headers(&[
            ("content-type", "application/json"),
            ("content-type", "application/json; charset=utf-7"),
        ]);
        assert_eq!(
            check_json_content_type(&two),
            Err("more than one Content-Type header")
        );
        let mut latin = HeaderMap::new();
        latin.insert(
            header::CONTENT_TYPE,
            http::HeaderValue::from_bytes(b"application/json; charset=\xe9").unwrap(),
        );
        assert_eq!(
            check_json_content_type(&latin),
            Err("the Content-Type is not visible ASCII")
        );
    }

    #[test]
    fn methods_other_than_post_get_delete_are_not_allowed() {
        let none = HeaderMap::new();
        assert_eq!(request_form(&Method::POST, &none), Ok(Form::Message));
        assert_eq!(request_form(&Method::GET, &none), Ok(Form::Bodiless));
        assert_eq!(request_form(&Method::DELETE, &none), Ok(Form::Bodiless));
        for method in [
            "OPTIONS", "PUT", "PATCH", "HEAD", "post", "Post", "FOO", "CONNECT", "TRACE",
        ] {
            let method = Method::from_bytes(method.as_bytes()).unwrap();
            assert_eq!(
                request_form(&method, &none),
                Err(Refusal::MethodNotAllowed),
                "{method}"
            );
        }
    }

    #[test]
    fn method_override_headers_are_refused() {
        for name in METHOD_OVERRIDES {
            let h = headers(&[(name, "DELETE")]);
            for method in [Method::POST, Method::GET] {
                assert_eq!(
                    request_form(&method, &h),
                    Err(Refusal::MethodOverride),
                    "{name}"
                );
            }
        }
    }

    #[test]
    fn get_and_delete_carry_no_body() {
        for method in [Method::GET, Method::DELETE] {
            for pairs in [
                &[("content-length", "10")][..],
                &[("content-length", "00")],
                &[("transfer-encoding", "chunked")],
                &[("transfer-encoding", "identity")],
                &[("content-length", "0"), ("content-length", "5")],
            ] {
                assert_eq!(
                    request_form(&method, &headers(pairs)),
                    Err(Refusal::BodyNotAllowed),
                    "{method} {pairs:?}"
                );
            }
            let empty = headers(&[("content-length", "0")]);
            assert_eq!(request_form(&method, &empty), Ok(Form::Bodiless));
        }
    }

    #[test]
    fn a_repeated_mcp_header_is_found() {
        for name in [
            "mcp-name",
            "mcp-method",
            "mcp-protocol-version",
            "mcp-other",
        ] {
            let two = headers(&[(name, "a"), (name, "b")]);
            assert!(has_duplicate_mcp_header(&two), "{name}");
            assert!(
                !has_duplicate_mcp_header(&headers(&[(name, "a")])),
                "{name}"
            );
        }
        let mixed = headers(&[("Mcp-Name", "a"), ("MCP-NAME", "b")]);
        assert!(has_duplicate_mcp_header(&mixed));
        let sessions = headers(&[("mcp-session-id", "a"), ("mcp-session-id", "b")]);
        assert!(
            !has_duplicate_mcp_header(&sessions),
            "refused by the session step"
        );
        let others = headers(&[("accept", "a"), ("accept", "b")]);
        assert!(!has_duplicate_mcp_header(&others));
    }

    #[test]
    fn batches_only_before_2025_06_18() {
        let version = |v: &str| batches_allowed(&headers(&[("mcp-protocol-version", v)]));
        assert!(batches_allowed(&HeaderMap::new()));
        assert!(version("2025-03-26"));
        assert!(version("2024-11-05"));
        assert!(!version("2025-06-18"));
        assert!(!version("2025-11-25"));
        assert!(!version("2026-07-28"));
        assert!(!version("latest"));
        assert!(!version("2025-03-26 "));
        assert!(!version("2025-3-26"));
    }
}
