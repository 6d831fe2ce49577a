//! Audience binding (RFC 8707): does a token's `aud` name this route's canonical resource
//! URI? URIs are compared after normalisation — scheme and host are case-insensitive,
//! default ports and a trailing slash make no difference — so that an authorization
//! server's spelling of the URI does not decide access. Values that are not URLs are
//! compared exactly.

/// A route's resource URI, normalised once at start-up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Audience(String);

impl Audience {
    pub fn new(public_url: &url::Url) -> Audience {
        Audience(normalize(public_url.as_str()))
    }

    /// True when any of `audiences` names this resource.
    pub fn is_in(&self, audiences: &[String]) -> bool {
        audiences
            .iter()
            .any(|a| a == &self.0 || normalize(a) == self.0)
    }
}

fn normalize(value: &str) -> String {
    match url::Url::parse(value) {
        Ok(url) if url.has_host() => {
            // `url` lower-cases scheme and host and drops default ports.
            let mut s = format!("{}://{}", url.scheme(), url.host_str().unwrap_or_default());
            if let Some(port) = url.port() {
                s.push_str(&format!(":{port}"));
            }
            s.push_str(url.path().trim_end_matches('/'));
            if let Some(q) = url.query() {
                s.push('?');
                s.push_str(q);
            }
            s
        }
        _ => value.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn aud(u: &str) -> Audience {
        Audience::new(&url::Url::parse(u).unwrap())
    }

    #[test]
    fn equivalent_spellings_match() {
        let a = aud("https://mcp.example.com/everything/mcp");
        for same in [
            "https://mcp.example.com/everything/mcp",
            "HTTPS://MCP.Example.COM/everything/mcp",
            "https://mcp.example.com:443/everything/mcp",
            "https://mcp.example.com/everything/mcp/",
        ] {
            assert!(a.is_in(&[same.to_string()]), "{same}");
        }
    }

    #[test]
    fn different_resources_do_not() {
        let a = aud("https://mcp.example.com/everything/mcp");
        for other in [
            "https://mcp.example.com/everything",
            "https://mcp.example.com/Everything/mcp",
            "http://mcp.example.com/everything/mcp",
            "https://mcp.example.com:8443/everything/mcp",
            "https://evil.example.com/everything/mcp",
            "everything-server",
        ] {
            assert!(!a.is_in(&[other.to_string()]), "{other}");
        }
        assert!(!a.is_in(&[]));
        assert!(a.is_in(&["x".into(), "https://mcp.example.com/everything/mcp".into()]));
    }
}
