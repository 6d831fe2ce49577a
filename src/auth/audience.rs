//! Audience binding: does a token's `aud` name this route?
//!
//! By default (RFC 8707) the route's canonical resource URI, its `public_url`: URIs are
//! compared after normalisation — scheme and host are case-insensitive, default ports and
//! a trailing slash make no difference — so that an authorization server's spelling of
//! the URI does not decide access. Values that are not URLs are compared exactly.
//!
//! A route may instead list its accepted audiences (`auth.audiences`), for providers that
//! do not put the resource URI in `aud` (Entra ID's application id or `api://` URI, an
//! Okta authorization server's `api://default`). Listed audiences are compared exactly,
//! byte for byte: an identifier such as a GUID has no spelling variants, and an operator
//! who lists a value gets exactly that value.

/// What a route accepts in `aud`, prepared once at start-up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Audience {
    /// The route's resource URI, normalised.
    Resource(String),
    /// `auth.audiences`: any of these, exactly.
    Listed(Vec<String>),
}

impl Audience {
    pub fn new(public_url: &url::Url) -> Audience {
        Audience::Resource(normalize(public_url.as_str()))
    }

    /// The configured `auth.audiences`, or the resource URI when none are listed.
    pub fn accepting(public_url: &url::Url, listed: &[String]) -> Audience {
        if listed.is_empty() {
            Audience::new(public_url)
        } else {
            Audience::Listed(listed.to_vec())
        }
    }

    /// True when any of `audiences` is accepted here.
    pub fn is_in(&self, audiences: &[String]) -> bool {
        match self {
            Audience::Resource(resource) => audiences
                .iter()
                .any(|a| a == resource || normalize(a) == *resource),
            Audience::Listed(listed) => audiences.iter().any(|a| listed.contains(a)),
        }
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

    /// Listed audiences replace the resource URI and are compared exactly: no case
    /// folding, no trailing-slash equivalence, no URL parsing.
    #[test]
    fn listed_audiences_are_exact() {
        let public = url::Url::parse("https://mcp.example.com/everything/mcp").unwrap();
        let a = Audience::accepting(
            &public,
            &[
                "api://drawbridge".into(),
                "6e74172b-be56-4843-9ff4-e66a39bb12e3".into(),
            ],
        );
        for ok in ["api://drawbridge", "6e74172b-be56-4843-9ff4-e66a39bb12e3"] {
            assert!(a.is_in(&["account".into(), ok.to_string()]), "{ok}");
        }
        for other in [
            "API://drawbridge",
            "api://drawbridge/",
            "6E74172B-BE56-4843-9FF4-E66A39BB12E3",
            // Not listed: the resource URI is no longer accepted by itself.
            "https://mcp.example.com/everything/mcp",
            "account",
        ] {
            assert!(!a.is_in(&[other.to_string()]), "{other}");
        }
        assert!(!a.is_in(&[]));
        assert_eq!(Audience::accepting(&public, &[]), Audience::new(&public));
    }
}
