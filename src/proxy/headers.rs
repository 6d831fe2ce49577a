//! Header hygiene between the client and the upstream (RFC 9110 §7.6.1): hop-by-hop
//! headers stop at the gateway, the inbound credential never travels on, and the upstream
//! sees its own authority in `Host`.

use pingora::http::{RequestHeader, ResponseHeader};
use pingora::Result;

/// Headers that describe one connection, never the message.
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "upgrade",
    "proxy-authenticate",
];

/// Credentials meant for the gateway. Removed before anything else touches the request:
/// token passthrough does not exist.
const GATEWAY_CREDENTIALS: &[&str] = &["authorization", "proxy-authorization"];

/// Names listed in `Connection` (they are hop-by-hop too), lower-cased.
fn connection_tokens(headers: &http::HeaderMap) -> Vec<String> {
    headers
        .get_all(http::header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().to_ascii_lowercase())
        .filter(|t| !t.is_empty())
        .collect()
}

/// What the gateway knows about the request when it forwards it.
pub struct Forwarding<'a> {
    /// `Host` value for the upstream.
    pub upstream_authority: &'a str,
    pub client_ip: Option<String>,
    /// Length of a body the gateway already holds (sent with `Content-Length`).
    pub body_len: Option<usize>,
}

/// Rewrites the request header for the upstream.
pub fn prepare_upstream_request(req: &mut RequestHeader, fwd: &Forwarding<'_>) -> Result<()> {
    for name in GATEWAY_CREDENTIALS {
        req.remove_header(*name);
    }
    for name in connection_tokens(&req.headers) {
        req.remove_header(&name);
    }
    for name in HOP_BY_HOP {
        req.remove_header(*name);
    }
    // The gateway answered any `Expect: 100-continue` itself when it read the body.
    req.remove_header("expect");
    let original_host = req
        .headers
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_string);
    req.insert_header(http::header::HOST, fwd.upstream_authority)?;
    if let Some(host) = original_host {
        req.insert_header("x-forwarded-host", host)?;
    }
    req.insert_header("x-forwarded-proto", "http")?;
    if let Some(ip) = &fwd.client_ip {
        let value = match req
            .headers
            .get("x-forwarded-for")
            .and_then(|v| v.to_str().ok())
        {
            Some(prior) => format!("{prior}, {ip}"),
            None => ip.clone(),
        };
        req.insert_header("x-forwarded-for", value)?;
    }
    if let Some(len) = fwd.body_len {
        req.remove_header(&http::header::TRANSFER_ENCODING);
        req.insert_header(http::header::CONTENT_LENGTH, len)?;
    }
    Ok(())
}

/// Removes hop-by-hop headers from an upstream response (framing headers stay: the
/// server side of Pingora re-frames the body for the client).
pub fn prepare_client_response(resp: &mut ResponseHeader) {
    for name in connection_tokens(&resp.headers) {
        if name != "transfer-encoding" && name != "content-length" {
            resp.remove_header(&name);
        }
    }
    for name in HOP_BY_HOP {
        if *name == "upgrade" && resp.status == http::StatusCode::SWITCHING_PROTOCOLS {
            continue;
        }
        resp.remove_header(*name);
    }
}

/// True when the response is JSON.
pub fn is_json(resp: &ResponseHeader) -> bool {
    resp.headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"))
}

/// True when the response is an event stream.
pub fn is_event_stream(resp: &ResponseHeader) -> bool {
    resp.headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.trim_start()
                .to_ascii_lowercase()
                .starts_with("text/event-stream")
        })
}

#[cfg(test)]
mod tests {
    use super::*;

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
                upstream_authority: "127.0.0.1:3001",
                client_ip: Some("127.0.0.9".into()),
                body_len: Some(12),
            },
        )
        .unwrap();
        let h = &req.headers;
        for gone in [
            "authorization",
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
        assert_eq!(h["mcp-session-id"], "abc");
        assert_eq!(h["mcp-protocol-version"], "2025-06-18");
        assert_eq!(h["last-event-id"], "7");
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
}
