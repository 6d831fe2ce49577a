//! The one list of headers the gateway manages on the way to the upstream: it writes,
//! removes or checks each of them itself. Owns that list; does not own the rewrite
//! (`proxy::headers`) nor config validation (`config::validate`), which both read it.
//!
//! A route's static credential may not name any of them: `headers` inserts the
//! credential last, so such a credential would silently replace the gateway's value
//! (a forged `X-Forwarded-For`, another `Mcp-Session-Id`, a compressed answer that
//! cannot be filtered). Validation refuses it, and the rewrite refuses it again.
//!
//! At the crate root, free of Pingora and of I/O, so `config` reads it without depending
//! on the proxy (no import cycle).

/// Lower-case names, compared case-insensitively.
pub const GATEWAY_MANAGED_HEADERS: &[&str] = &[
    // Framing and the upstream's authority, written by the gateway.
    "host",
    "content-length",
    "content-type",
    "transfer-encoding",
    "expect",
    // Hop-by-hop: they describe one connection and stop at the gateway.
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "upgrade",
    "proxy-authenticate",
    // Forwarding, written by the gateway.
    "forwarded",
    "x-forwarded-for",
    "x-forwarded-host",
    "x-forwarded-proto",
    // Answers are filtered as text: the gateway asks for them uncompressed.
    "accept-encoding",
    // Forwarded only when the route says so.
    "cookie",
    // MCP headers the gateway checks against the body, or rewrites (the session id).
    "mcp-session-id",
    "mcp-method",
    "mcp-name",
    "mcp-protocol-version",
    "last-event-id",
    // Request id and trace context: kept from the client or written by the gateway.
    "x-request-id",
    "traceparent",
    "tracestate",
];

/// True when `name` is one of [`GATEWAY_MANAGED_HEADERS`], in any case.
pub fn is_gateway_managed(name: &str) -> bool {
    GATEWAY_MANAGED_HEADERS
        .iter()
        .any(|managed| managed.eq_ignore_ascii_case(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_lower_case_valid_and_matched_in_any_case() {
        for name in GATEWAY_MANAGED_HEADERS {
            assert_eq!(*name, name.to_ascii_lowercase());
            assert!(
                http::HeaderName::from_bytes(name.as_bytes()).is_ok(),
                "{name}"
            );
        }
        assert!(is_gateway_managed("Mcp-Session-Id"));
        assert!(is_gateway_managed("X-FORWARDED-FOR"));
        assert!(!is_gateway_managed("authorization"));
        assert!(!is_gateway_managed("x-api-key"));
    }
}
