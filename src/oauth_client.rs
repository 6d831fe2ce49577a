//! What every call the gateway makes to an authorization server shares, whichever module
//! makes it (`auth`: discovery, JWKS, introspection; `exchange`: the token endpoint):
//! the rule that its endpoints are reached over TLS off loopback ([`needs_tls`]), which
//! `config` also applies to configured URLs, and the `client_secret_basic` header
//! ([`basic_authorization`]).
//!
//! Owns these two rules only; at the crate root so that `config`, `auth` and `exchange`
//! share them without importing each other. Pure: no I/O.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use http::HeaderValue;
use url::form_urlencoded;

/// True for a URL that must not be used as it is: plain `http` to a host that is not
/// loopback (`localhost`, 127.0.0.0/8, `::1`). A network attacker on such a path could
/// inject a signing key, answer `active: true`, or read client secrets and tokens.
pub fn needs_tls(url: &url::Url) -> bool {
    if url.scheme() == "https" {
        return false;
    }
    match url.host() {
        Some(url::Host::Ipv4(ip)) => !ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => !ip.is_loopback(),
        Some(url::Host::Domain(name)) => !name.eq_ignore_ascii_case("localhost"),
        None => true,
    }
}

/// The `Authorization: Basic` value of a confidential client (RFC 6749 §2.3.1): each
/// part is form-urlencoded before Basic encoding, so a ':' (or '%') in the id or the
/// secret cannot move the split point. Marked sensitive.
pub fn basic_authorization(client_id: &str, secret: &str) -> Option<HeaderValue> {
    let pair = format!("{}:{}", form_encode(client_id), form_encode(secret));
    let mut value = HeaderValue::from_str(&format!("Basic {}", STANDARD.encode(pair))).ok()?;
    value.set_sensitive(true);
    Some(value)
}

fn form_encode(text: &str) -> String {
    form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_http_is_allowed_on_loopback_only() {
        let url = |u: &str| url::Url::parse(u).unwrap();
        assert!(!needs_tls(&url("https://idp.example.com/")));
        assert!(!needs_tls(&url("http://127.0.0.1:9000/")));
        assert!(!needs_tls(&url("http://127.8.0.1/")));
        assert!(!needs_tls(&url("http://[::1]:80/")));
        assert!(!needs_tls(&url("http://LocalHost:80/")));
        assert!(needs_tls(&url("http://idp.example.com/")));
        assert!(needs_tls(&url("http://10.0.0.1/")));
        assert!(needs_tls(&url("http://localhost.example.com/")));
    }

    #[test]
    fn basic_credentials_are_form_encoded_before_base64() {
        let value = basic_authorization("id:1", "p%w:d").unwrap();
        assert!(value.is_sensitive());
        let encoded = value.to_str().unwrap().strip_prefix("Basic ").unwrap();
        let decoded = String::from_utf8(STANDARD.decode(encoded).unwrap()).unwrap();
        assert_eq!(decoded, "id%3A1:p%25w%3Ad");
    }
}
