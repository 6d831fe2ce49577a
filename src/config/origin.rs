//! The one spelling of a browser origin (RFC 6454): `scheme://host[:port]`, lower case,
//! default port left out — the form browsers send in `Origin`. Used to check
//! `allowed_origins` when the configuration loads; requests compare against it byte for
//! byte.

/// The serialised origin of `text`, or why it is not one. A wildcard, `null`, a path, a
/// query, credentials or a scheme other than http(s) are refused: `allowed_origins` lists
/// exact origins only, since any wildcard would let a page on an unknown site (or one
/// reached through DNS rebinding) drive the gateway.
pub fn serialise(text: &str) -> Result<String, &'static str> {
    const EXPECTED: &str = "an origin such as `https://app.example.com` (scheme, host and optional port; no path, no wildcard)";
    if text.contains('*') || text.eq_ignore_ascii_case("null") {
        return Err(EXPECTED);
    }
    let url = url::Url::parse(text).map_err(|_| EXPECTED)?;
    let plain = matches!(url.scheme(), "http" | "https")
        && url.host_str().is_some_and(|h| !h.is_empty())
        && url.username().is_empty()
        && url.password().is_none()
        && url.path() == "/"
        && url.query().is_none()
        && url.fragment().is_none()
        // `https://a.example/` parses like `https://a.example`: only the bare form is meant.
        && !text.ends_with('/');
    if !plain {
        return Err(EXPECTED);
    }
    Ok(url.origin().ascii_serialization())
}

#[cfg(test)]
mod tests {
    use super::serialise;

    #[test]
    fn origins_are_kept_in_the_form_browsers_send() {
        assert_eq!(
            serialise("https://App.Example.com").unwrap(),
            "https://app.example.com"
        );
        assert_eq!(
            serialise("https://app.example.com:443").unwrap(),
            "https://app.example.com"
        );
        assert_eq!(
            serialise("http://127.0.0.1:8123").unwrap(),
            "http://127.0.0.1:8123"
        );
    }

    #[test]
    fn wildcards_paths_and_other_schemes_are_not_origins() {
        for bad in [
            "*",
            "https://*.example.com",
            "null",
            "https://app.example.com/",
            "https://app.example.com/mcp",
            "https://app.example.com?x=1",
            "https://user@app.example.com",
            "file:///etc/passwd",
            "ftp://app.example.com",
            "app.example.com",
        ] {
            assert!(serialise(bad).is_err(), "{bad} was accepted");
        }
    }
}
