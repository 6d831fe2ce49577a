//! Header hygiene between the client and the upstream (RFC 9110 §7.6.1): hop-by-hop
//! headers stop at the gateway, the inbound credential never travels on, and the upstream
//! sees its own authority in `Host`.

use std::net::IpAddr;

use bytes::{BufMut, Bytes, BytesMut};
use http::header::{self, HeaderName, HeaderValue, MaxSizeReached};
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::{ErrorType, OrErr, Result};

// Names used on every request, parsed once. Looking a header up by `&str` parses and
// lower-cases the name each time; these are compared and hashed as they are.
pub static MCP_SESSION_ID: HeaderName = HeaderName::from_static("mcp-session-id");
static KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
static PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");
static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");

/// Headers that describe one connection, never the message.
fn is_hop_by_hop(name: &HeaderName) -> bool {
    name == header::CONNECTION
        || name == KEEP_ALIVE
        || name == PROXY_CONNECTION
        || name == header::TE
        || name == header::TRAILER
        || name == header::UPGRADE
        || name == header::PROXY_AUTHENTICATE
}

/// Credentials meant for the gateway. Removed before the request goes anywhere: token
/// passthrough does not exist.
fn is_gateway_credential(name: &HeaderName) -> bool {
    name == header::AUTHORIZATION || name == header::PROXY_AUTHORIZATION
}

/// Names listed in `Connection` (they are hop-by-hop too).
fn connection_tokens(headers: &http::HeaderMap) -> impl Iterator<Item = HeaderName> + '_ {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        // The usual tokens name no header to remove (Keep-Alive is hop-by-hop anyway).
        .filter(|t| !t.eq_ignore_ascii_case("keep-alive") && !t.eq_ignore_ascii_case("close"))
        .filter_map(|t| HeaderName::from_bytes(t.as_bytes()).ok())
}

/// The names in `headers` that `doomed` selects, plus those listed in `Connection` that
/// `listed` accepts. One pass over the map; nothing is allocated when nothing matches
/// (the usual case), so a clean request pays no lookups for absent headers.
fn names_to_remove(
    headers: &http::HeaderMap,
    doomed: impl Fn(&HeaderName) -> bool,
    listed: impl Fn(&HeaderName) -> bool,
) -> Vec<HeaderName> {
    let mut names = Vec::new();
    for name in headers.keys() {
        if doomed(name) {
            names.push(name.clone());
        }
    }
    if headers.contains_key(header::CONNECTION) {
        for name in connection_tokens(headers) {
            if listed(&name) && !names.contains(&name) {
                names.push(name);
            }
        }
    }
    names
}

/// What the gateway knows about the request when it forwards it.
pub struct Forwarding<'a> {
    /// `Host` value for the upstream.
    pub upstream_authority: &'a HeaderValue,
    pub client_ip: Option<IpAddr>,
    /// Length of a body the gateway already holds (sent with `Content-Length`).
    pub body_len: Option<usize>,
    /// The upstream's own session id, restored from the sealed one the client sent.
    pub session_id: Option<&'a str>,
    /// The route's credential for the upstream, set after the caller's were removed.
    pub credential: Option<&'a (HeaderName, HeaderValue)>,
    /// The route lets the client's `Cookie` header through (`upstream.forward_cookies`).
    pub forward_cookies: bool,
    /// The client's connection is TLS (the listener's `tls`): `X-Forwarded-Proto: https`.
    pub client_tls: bool,
}

/// Rewrites the request header for the upstream.
///
/// The header map is edited directly (taken out of Pingora's `RequestHeader`, which then
/// keeps no record of the client's spelling of header names): every insert through
/// `RequestHeader` re-parses the name and updates a second, case-preserving map, which
/// was the largest single cost the gateway added to a request. Header names are
/// case-insensitive (RFC 9110 §5.1); the upstream sees them in lower case, standard ones
/// capitalized as usual.
pub fn prepare_upstream_request(req: &mut RequestHeader, fwd: &Forwarding<'_>) -> Result<()> {
    let placeholder = RequestHeader::from(http::Request::new(()).into_parts().0);
    let mut parts: http::request::Parts = std::mem::replace(req, placeholder).into();
    let rewritten = rewrite_request_headers(&mut parts.headers, fwd);
    *req = RequestHeader::from(parts);
    rewritten
}

fn too_many(_: MaxSizeReached) -> Box<pingora::Error> {
    pingora::Error::explain(ErrorType::InvalidHTTPHeader, "too many request headers")
}

/// New headers at most: Host, X-Forwarded-{Host,Proto,For}, Content-Length,
/// Content-Type, Mcp-Session-Id, the route's credential, Accept-Encoding.
const ADDED_HEADERS: usize = 9;

/// The only `Content-Type` an upstream receives with a body: the one form the gateway
/// read (UTF-8 JSON), written by the gateway, never the client's spelling of it.
static JSON: HeaderValue = HeaderValue::from_static("application/json");

fn rewrite_request_headers(headers: &mut http::HeaderMap, fwd: &Forwarding<'_>) -> Result<()> {
    let holds_body = fwd.body_len.is_some();
    let doomed = names_to_remove(
        headers,
        |name| {
            is_gateway_credential(name)
                || is_hop_by_hop(name)
                // The gateway answered any `Expect: 100-continue` itself.
                || name == header::EXPECT
                // A body the gateway holds is re-framed with Content-Length, and
                // described with the gateway's own Content-Type.
                || (holds_body && (name == header::TRANSFER_ENCODING || name == header::CONTENT_TYPE))
                // Cookies are for the site the client thinks it talks to; an upstream
                // behind the gateway gets none unless the route says so.
                || (!fwd.forward_cookies && name == header::COOKIE)
                // Answers are filtered as text: the upstream must not compress them.
                || name == header::ACCEPT_ENCODING
        },
        |_| true,
    );
    for name in &doomed {
        headers.remove(name);
    }
    headers.try_reserve(ADDED_HEADERS).map_err(too_many)?;
    let upstream_host = fwd.upstream_authority.clone();
    if let Some(original_host) = headers
        .try_insert(header::HOST, upstream_host)
        .map_err(too_many)?
    {
        headers
            .try_insert(X_FORWARDED_HOST.clone(), original_host)
            .map_err(too_many)?;
    }
    headers
        .try_insert(
            X_FORWARDED_PROTO.clone(),
            HeaderValue::from_static(if fwd.client_tls { "https" } else { "http" }),
        )
        .map_err(too_many)?;
    if let Some(ip) = fwd.client_ip {
        let value = forwarded_for(headers.get(&X_FORWARDED_FOR), ip);
        headers
            .try_insert(X_FORWARDED_FOR.clone(), value)
            .map_err(too_many)?;
    }
    if let Some(len) = fwd.body_len {
        headers
            .try_insert(header::CONTENT_TYPE, JSON.clone())
            .map_err(too_many)?;
        if !content_length_is(headers, len) {
            headers
                .try_insert(header::CONTENT_LENGTH, HeaderValue::from(len))
                .map_err(too_many)?;
        }
    }
    if let Some(id) = fwd.session_id {
        // The upstream's own id, a valid header value when the upstream sent it.
        let value = HeaderValue::from_str(id)
            .or_err(ErrorType::InvalidHTTPHeader, "upstream session id")?;
        headers
            .try_insert(MCP_SESSION_ID.clone(), value)
            .map_err(too_many)?;
    }
    headers
        .try_insert(
            header::ACCEPT_ENCODING,
            HeaderValue::from_static("identity"),
        )
        .map_err(too_many)?;
    if let Some((name, value)) = fwd.credential {
        // Validation refuses such a credential; should one get here, refuse the request
        // rather than let it replace the gateway's own value.
        if crate::managed_headers::is_gateway_managed(name.as_str()) {
            return Err(pingora::Error::explain(
                ErrorType::InternalError,
                "the route's credential names a gateway-managed header",
            ));
        }
        headers
            .try_insert(name.clone(), value.clone())
            .map_err(too_many)?;
    }
    Ok(())
}

/// True when the headers carry exactly one `Content-Length` whose digits say `len`.
fn content_length_is(headers: &http::HeaderMap, len: usize) -> bool {
    let mut values = headers.get_all(header::CONTENT_LENGTH).iter();
    let (Some(value), None) = (values.next(), values.next()) else {
        return false;
    };
    let mut digits = itoa::Buffer::new();
    value.as_bytes() == digits.format(len).as_bytes()
}

/// `X-Forwarded-For` with the client's address appended to what an earlier proxy said.
fn forwarded_for(prior: Option<&HeaderValue>, ip: IpAddr) -> HeaderValue {
    let prior = prior.map_or(&[][..], HeaderValue::as_bytes);
    let mut value = BytesMut::with_capacity(prior.len() + 2 + 39);
    if !prior.is_empty() {
        value.put_slice(prior);
        value.put_slice(b", ");
    }
    match ip {
        IpAddr::V4(v4) => {
            let mut digits = itoa::Buffer::new();
            for (i, octet) in v4.octets().iter().enumerate() {
                if i > 0 {
                    value.put_u8(b'.');
                }
                value.put_slice(digits.format(*octet).as_bytes());
            }
        }
        IpAddr::V6(v6) => {
            use std::fmt::Write;
            let _ = write!(value, "{v6}");
        }
    }
    // Cannot fail: a valid header value, ", " and an address's characters.
    HeaderValue::from_maybe_shared(Bytes::from(value))
        .unwrap_or_else(|_| HeaderValue::from_static("unknown"))
}

/// Removes hop-by-hop headers from an upstream response (framing headers stay: the
/// server side of Pingora re-frames the body for the client).
pub fn prepare_client_response(resp: &mut ResponseHeader) {
    let switching = resp.status == http::StatusCode::SWITCHING_PROTOCOLS;
    let keep_upgrade = |name: &HeaderName| switching && name == header::UPGRADE;
    let doomed = names_to_remove(
        &resp.headers,
        |name| is_hop_by_hop(name) && !keep_upgrade(name),
        |name| {
            name != header::TRANSFER_ENCODING
                && name != header::CONTENT_LENGTH
                && !keep_upgrade(name)
        },
    );
    for name in &doomed {
        resp.remove_header(name);
    }
}

/// True when the response body is not compressed (no `Content-Encoding`, or `identity`):
/// only such a body can be filtered, and the upstream was asked for nothing else.
pub fn is_identity_encoded(resp: &ResponseHeader) -> bool {
    resp.headers
        .get_all(header::CONTENT_ENCODING)
        .iter()
        .all(|v| {
            v.as_bytes()
                .split(|b| *b == b',')
                .all(|c| c.trim_ascii().eq_ignore_ascii_case(b"identity"))
        })
}

/// True when the response is an event stream.
pub fn is_event_stream(resp: &ResponseHeader) -> bool {
    const EVENT_STREAM: &[u8] = b"text/event-stream";
    resp.headers.get(header::CONTENT_TYPE).is_some_and(|v| {
        v.as_bytes()
            .trim_ascii_start()
            .get(..EVENT_STREAM.len())
            .is_some_and(|p| p.eq_ignore_ascii_case(EVENT_STREAM))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn forwarding<'a>(
        authority: &'a HeaderValue,
        credential: Option<&'a (HeaderName, HeaderValue)>,
    ) -> Forwarding<'a> {
        Forwarding {
            upstream_authority: authority,
            client_ip: Some("127.0.0.9".parse().unwrap()),
            body_len: Some(12),
            session_id: Some("upstream-7"),
            credential,
            forward_cookies: false,
            client_tls: false,
        }
    }

    #[test]
    fn a_credential_naming_a_gateway_managed_header_is_refused() {
        let authority = HeaderValue::from_static("127.0.0.1:3001");
        for name in [
            "x-forwarded-for",
            "mcp-session-id",
            "accept-encoding",
            "host",
        ] {
            let credential = (
                HeaderName::from_static(name),
                HeaderValue::from_static("forged"),
            );
            let mut req = request();
            let result =
                prepare_upstream_request(&mut req, &forwarding(&authority, Some(&credential)));
            assert!(result.is_err(), "{name}");
        }
    }

    /// Drift check: whatever the rewrite removes, adds or changes is on the one list
    /// (but the caller's and the route's credentials, which are not gateway-written).
    #[test]
    fn every_header_the_rewrite_touches_is_on_the_managed_list() {
        let mut req = request();
        for (k, v) in [
            ("content-type", "application/json; charset=utf-8"),
            ("content-length", "99"),
            ("cookie", "a=b"),
            ("accept-encoding", "gzip"),
            ("x-forwarded-proto", "https"),
            ("x-forwarded-host", "elsewhere"),
            ("trailer", "x"),
            ("upgrade", "h2c"),
            ("proxy-connection", "close"),
            ("proxy-authenticate", "Basic"),
            ("x-untouched", "1"),
        ] {
            req.append_header(k, v).unwrap();
        }
        let before = req.headers.clone();
        let authority = HeaderValue::from_static("127.0.0.1:3001");
        let credential = (header::AUTHORIZATION, HeaderValue::from_static("Bearer up"));
        prepare_upstream_request(&mut req, &forwarding(&authority, Some(&credential))).unwrap();
        let after = &req.headers;
        let touched = before
            .keys()
            .chain(after.keys())
            .filter(|name| {
                let old: Vec<_> = before.get_all(*name).iter().collect();
                let new: Vec<_> = after.get_all(*name).iter().collect();
                old != new
            })
            // A hop-by-hop name listed in `Connection` is removed too, whatever it is.
            .filter(|name| name.as_str() != "x-private-hop")
            .filter(|name| !is_gateway_credential(name));
        for name in touched {
            assert!(
                crate::managed_headers::is_gateway_managed(name.as_str()),
                "{name} is rewritten but not on GATEWAY_MANAGED_HEADERS"
            );
        }
        assert_eq!(after["x-untouched"], "1");
    }

    fn request() -> RequestHeader {
        let mut req = RequestHeader::build("POST", b"/everything/mcp", None).unwrap();
        for (k, v) in [
            ("host", "gateway.example:8080"),
            ("authorization", "Bearer secret-token"),
            ("proxy-authorization", "Basic xyz"),
            ("connection", "keep-alive, x-private-hop"),
            ("x-private-hop", "1"),
            ("keep-alive", "timeout=5"),
            ("te", "trailers"),
            ("expect", "100-continue"),
            ("transfer-encoding", "chunked"),
            ("mcp-session-id", "abc"),
            ("mcp-protocol-version", "2025-06-18"),
            ("last-event-id", "7"),
            ("x-forwarded-for", "10.0.0.1"),
        ] {
            req.append_header(k, v).unwrap();
        }
        req
    }

    #[test]
    fn strips_credentials_and_hop_by_hop_and_keeps_mcp_headers() {
        let mut req = request();
        prepare_upstream_request(
            &mut req,
            &Forwarding {
                upstream_authority: &HeaderValue::from_static("127.0.0.1:3001"),
                client_ip: Some("127.0.0.9".parse().unwrap()),
                body_len: Some(12),
                session_id: Some("upstream-7"),
                credential: Some(&(
                    header::AUTHORIZATION,
                    HeaderValue::from_static("Bearer for-the-upstream"),
                )),
                forward_cookies: false,
                client_tls: false,
            },
        )
        .unwrap();
        let h = &req.headers;
        for gone in [
            "proxy-authorization",
            "connection",
            "x-private-hop",
            "keep-alive",
            "te",
            "expect",
            "transfer-encoding",
        ] {
            assert!(h.get(gone).is_none(), "{gone} must not reach the upstream");
        }
        assert_eq!(h["host"], "127.0.0.1:3001");
        assert_eq!(h["x-forwarded-host"], "gateway.example:8080");
        assert_eq!(h["x-forwarded-for"], "10.0.0.1, 127.0.0.9");
        assert_eq!(h["content-length"], "12");
        assert_eq!(h["mcp-session-id"], "upstream-7");
        let auth: Vec<_> = h.get_all("authorization").iter().collect();
        assert_eq!(
            auth,
            ["Bearer for-the-upstream"],
            "only the route's credential"
        );
        assert_eq!(h["mcp-protocol-version"], "2025-06-18");
        assert_eq!(h["last-event-id"], "7");
    }

    fn forward(req: &mut RequestHeader, ip: &str, body_len: Option<usize>) {
        prepare_upstream_request(
            req,
            &Forwarding {
                upstream_authority: &HeaderValue::from_static("up.internal"),
                client_ip: Some(ip.parse().unwrap()),
                body_len,
                session_id: None,
                credential: None,
                forward_cookies: false,
                client_tls: false,
            },
        )
        .unwrap();
    }

    #[test]
    fn a_clean_request_gets_forwarding_headers_and_keeps_its_own() {
        let mut req = RequestHeader::build("POST", b"/mcp", None).unwrap();
        for (k, v) in [
            ("Host", "gw.example"),
            ("Content-Type", "application/json"),
            ("Content-Length", "12"),
            ("Accept", "application/json, text/event-stream"),
        ] {
            req.append_header(k, v).unwrap();
        }
        forward(&mut req, "2001:db8::7", Some(12));
        let h = &req.headers;
        assert_eq!(h["host"], "up.internal");
        assert_eq!(h["x-forwarded-host"], "gw.example");
        assert_eq!(h["x-forwarded-proto"], "http");
        assert_eq!(h["x-forwarded-for"], "2001:db8::7");
        assert_eq!(h["content-length"], "12");
        assert_eq!(h["accept"], "application/json, text/event-stream");
        assert_eq!(h["accept-encoding"], "identity");
        assert_eq!(h.len(), 8);
    }

    #[test]
    fn a_client_on_the_tls_listener_is_forwarded_as_https() {
        let mut req = RequestHeader::build("POST", b"/mcp", None).unwrap();
        req.append_header("Host", "gw.example").unwrap();
        prepare_upstream_request(
            &mut req,
            &Forwarding {
                upstream_authority: &HeaderValue::from_static("up.internal"),
                client_ip: None,
                body_len: None,
                session_id: None,
                credential: None,
                forward_cookies: false,
                client_tls: true,
            },
        )
        .unwrap();
        assert_eq!(req.headers["x-forwarded-proto"], "https");
        assert_eq!(req.headers["x-forwarded-host"], "gw.example");
    }

    #[test]
    fn the_upstream_is_asked_for_uncompressed_answers_only() {
        let mut req = RequestHeader::build("GET", b"/mcp", None).unwrap();
        req.append_header("Accept-Encoding", "gzip, br").unwrap();
        req.append_header("accept-encoding", "zstd").unwrap();
        forward(&mut req, "10.0.0.1", None);
        let values: Vec<_> = req.headers.get_all("accept-encoding").iter().collect();
        assert_eq!(values, ["identity"]);

        let encoded = |values: &[&str]| {
            let mut resp = ResponseHeader::build(200, None).unwrap();
            for v in values {
                resp.append_header("content-encoding", *v).unwrap();
            }
            is_identity_encoded(&resp)
        };
        assert!(encoded(&[]));
        assert!(encoded(&["identity"]));
        assert!(encoded(&["Identity, identity"]));
        assert!(!encoded(&["gzip"]));
        assert!(!encoded(&["identity", "br"]));
        assert!(!encoded(&[""]));
    }

    #[test]
    fn content_length_follows_the_body_the_gateway_holds() {
        for (declared, expected) in [
            (&["12"][..], "12"),
            (&["+12"][..], "12"),
            (&["012"][..], "12"),
            (&["13"][..], "12"),
            (&["12", "12"][..], "12"),
            (&[][..], "12"),
        ] {
            let mut req = RequestHeader::build("POST", b"/mcp", None).unwrap();
            for v in declared {
                req.append_header("content-length", *v).unwrap();
            }
            forward(&mut req, "10.1.2.3", Some(12));
            let values: Vec<_> = req.headers.get_all("content-length").iter().collect();
            assert_eq!(values, [expected], "declared {declared:?}");
        }
    }

    #[test]
    fn forwarded_for_formats_addresses_exactly() {
        for ip in [
            "0.0.0.0",
            "255.255.255.255",
            "10.20.3.4",
            "::1",
            "fe80::1:2",
        ] {
            let mut req = RequestHeader::build("GET", b"/mcp", None).unwrap();
            forward(&mut req, ip, None);
            assert_eq!(req.headers["x-forwarded-for"], ip);
        }
    }

    #[test]
    fn connection_listed_names_are_matched_case_insensitively() {
        let mut req = RequestHeader::build("GET", b"/mcp", None).unwrap();
        for (k, v) in [
            ("Connection", "X-Private-Hop , ,bad name"),
            ("x-private-hop", "1"),
            ("X-Kept", "2"),
        ] {
            req.append_header(k, v).unwrap();
        }
        forward(&mut req, "10.0.0.1", None);
        assert!(req.headers.get("x-private-hop").is_none());
        assert!(req.headers.get("connection").is_none());
        assert_eq!(req.headers["x-kept"], "2");
        assert!(req.headers.get("content-length").is_none());
    }

    #[test]
    fn response_loses_hop_by_hop_only() {
        let mut resp = ResponseHeader::build(200, None).unwrap();
        resp.append_header("connection", "close, x-hop").unwrap();
        resp.append_header("x-hop", "1").unwrap();
        resp.append_header("content-type", "text/event-stream; charset=utf-8")
            .unwrap();
        resp.append_header("mcp-session-id", "s1").unwrap();
        prepare_client_response(&mut resp);
        assert!(resp.headers.get("connection").is_none());
        assert!(resp.headers.get("x-hop").is_none());
        assert_eq!(resp.headers["mcp-session-id"], "s1");
        assert!(is_event_stream(&resp));
    }

    #[test]
    fn response_framing_and_upgrade_survive_where_they_must() {
        let mut resp = ResponseHeader::build(101, None).unwrap();
        for (k, v) in [
            ("connection", "upgrade, content-length, transfer-encoding"),
            ("upgrade", "websocket"),
            ("content-length", "0"),
            ("keep-alive", "timeout=5"),
        ] {
            resp.append_header(k, v).unwrap();
        }
        prepare_client_response(&mut resp);
        assert_eq!(resp.headers["upgrade"], "websocket");
        assert_eq!(resp.headers["content-length"], "0");
        assert!(resp.headers.get("keep-alive").is_none());
        assert!(resp.headers.get("connection").is_none());
    }

    #[test]
    fn event_stream_detection_ignores_case_and_parameters() {
        for (value, expected) in [
            ("text/event-stream", true),
            ("  Text/Event-Stream; charset=utf-8", true),
            ("text/event", false),
            ("application/json", false),
        ] {
            let mut resp = ResponseHeader::build(200, None).unwrap();
            resp.append_header("content-type", value).unwrap();
            assert_eq!(is_event_stream(&resp), expected, "{value}");
        }
    }

    #[test]
    fn a_held_body_gets_the_gateways_content_type_and_cookies_stay_behind() {
        let mut req = RequestHeader::build("POST", b"/mcp", None).unwrap();
        for (k, v) in [
            ("Content-Type", "application/json; charset=UTF-8"),
            ("Content-Type", "text/plain"),
            ("Cookie", "session=secret"),
            ("Cookie", "other=1"),
        ] {
            req.append_header(k, v).unwrap();
        }
        let mut kept = req.clone();
        forward(&mut req, "127.0.0.1", Some(2));
        let types: Vec<_> = req.headers.get_all("content-type").iter().collect();
        assert_eq!(types, ["application/json"]);
        assert!(req.headers.get("cookie").is_none());

        prepare_upstream_request(
            &mut kept,
            &Forwarding {
                upstream_authority: &HeaderValue::from_static("up.internal"),
                client_ip: None,
                body_len: None,
                session_id: None,
                credential: None,
                forward_cookies: true,
                client_tls: false,
            },
        )
        .unwrap();
        assert_eq!(kept.headers.get_all("cookie").iter().count(), 2);
        assert_eq!(
            kept.headers.get_all("content-type").iter().count(),
            2,
            "no body held: nothing to describe"
        );
    }
}
