//! Authorization-server metadata: OpenID Connect discovery
//! (`{issuer}/.well-known/openid-configuration`), falling back to RFC 8414
//! (`/.well-known/oauth-authorization-server`, path-inserted) for OAuth servers that are
//! not OpenID Providers. Either document must name exactly the issuer asked for
//! (OpenID Connect Discovery §4.3, RFC 8414 §3.3), or it is not used.
//!
//! Only the members drawbridge reads are parsed: the endpoints. Signing keys come from
//! `jwks_uri` and are checked by `jwt` with ring.

use serde::Deserialize;

use crate::oauth_client::needs_tls;

/// What drawbridge needs from an authorization server's metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerMetadata {
    pub jwks_uri: Option<url::Url>,
    pub token_endpoint: Option<url::Url>,
    pub introspection_endpoint: Option<url::Url>,
}

/// The members drawbridge reads of either document (OpenID Connect Discovery §3,
/// RFC 8414 §2); `jwks_uri` is required of an OpenID Provider, optional in RFC 8414.
#[derive(Deserialize)]
struct RawMetadata {
    issuer: String,
    jwks_uri: Option<String>,
    token_endpoint: Option<String>,
    introspection_endpoint: Option<String>,
}

/// `https://h/realms/x` → `https://h/.well-known/oauth-authorization-server/realms/x`.
pub fn rfc8414_url(issuer: &url::Url) -> String {
    let mut origin = format!(
        "{}://{}",
        issuer.scheme(),
        issuer.host_str().unwrap_or_default()
    );
    if let Some(port) = issuer.port() {
        origin.push_str(&format!(":{port}"));
    }
    let path = issuer.path().trim_end_matches('/');
    format!("{origin}/.well-known/oauth-authorization-server{path}")
}

fn parse_url(value: Option<String>) -> Option<url::Url> {
    value.and_then(|v| url::Url::parse(&v).ok())
}

impl ServerMetadata {
    /// Refuses metadata that points any endpoint at plain http off loopback (unless the
    /// issuer opted out): discovered URLs get the same rule as configured ones.
    pub fn check_schemes(&self, allow_insecure_http: bool) -> Result<(), String> {
        if allow_insecure_http {
            return Ok(());
        }
        let endpoints = [
            ("jwks_uri", &self.jwks_uri),
            ("token_endpoint", &self.token_endpoint),
            ("introspection_endpoint", &self.introspection_endpoint),
        ];
        for (name, url) in endpoints {
            if url.as_ref().is_some_and(needs_tls) {
                return Err(format!(
                    "the issuer's metadata names a plain-http {name} off loopback; refused (https required)"
                ));
            }
        }
        Ok(())
    }
}

/// `https://h/realms/x` → `https://h/realms/x/.well-known/openid-configuration`.
pub fn openid_configuration_url(issuer: &str) -> String {
    format!(
        "{}/.well-known/openid-configuration",
        issuer.trim_end_matches('/')
    )
}

/// Fetches one metadata document and checks that it names `issuer`.
async fn fetch(http: &reqwest::Client, url: &str, issuer: &str) -> Result<RawMetadata, String> {
    let resp = http
        .get(url)
        .header(http::header::ACCEPT, "application/json")
        .send()
        .await
        .map_err(|e| e.to_string())?;
    if !resp.status().is_success() {
        return Err(format!("HTTP {}", resp.status()));
    }
    let meta: RawMetadata = resp.json().await.map_err(|e| e.to_string())?;
    if meta.issuer != issuer {
        return Err("the document names a different issuer".to_string());
    }
    Ok(meta)
}

/// Discovers the metadata of `issuer`; the error names both attempts.
pub async fn discover(http: &reqwest::Client, issuer: &str) -> Result<ServerMetadata, String> {
    let url = url::Url::parse(issuer).map_err(|e| format!("issuer is not a URL: {e}"))?;
    let oidc_error = match fetch(http, &openid_configuration_url(issuer), issuer).await {
        Ok(meta) => match parse_url(meta.jwks_uri) {
            Some(jwks_uri) => {
                return Ok(ServerMetadata {
                    jwks_uri: Some(jwks_uri),
                    token_endpoint: parse_url(meta.token_endpoint),
                    introspection_endpoint: parse_url(meta.introspection_endpoint),
                })
            }
            None => "the document has no valid jwks_uri".to_string(),
        },
        Err(e) => e,
    };
    match fetch(http, &rfc8414_url(&url), issuer).await {
        Ok(meta) => Ok(ServerMetadata {
            jwks_uri: parse_url(meta.jwks_uri),
            token_endpoint: parse_url(meta.token_endpoint),
            introspection_endpoint: parse_url(meta.introspection_endpoint),
        }),
        Err(oauth_error) => Err(format!(
            "OpenID Connect discovery: {oidc_error}; RFC 8414 metadata: {oauth_error}"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn discovered_plain_http_endpoints_are_refused() {
        let url = |u: &str| Some(url::Url::parse(u).unwrap());
        let meta = ServerMetadata {
            jwks_uri: url("https://idp.example.com/jwks"),
            token_endpoint: url("http://idp.example.com/token"),
            introspection_endpoint: None,
        };
        assert!(meta
            .check_schemes(false)
            .unwrap_err()
            .contains("token_endpoint"));
        assert_eq!(meta.check_schemes(true), Ok(()));
        let local = ServerMetadata {
            jwks_uri: url("http://127.0.0.1:1/jwks"),
            token_endpoint: None,
            introspection_endpoint: url("http://127.0.0.1:1/introspect"),
        };
        assert_eq!(local.check_schemes(false), Ok(()));
    }

    #[test]
    fn openid_configuration_is_appended_to_the_issuer() {
        assert_eq!(
            openid_configuration_url("https://idp.example.com/realms/corp/"),
            "https://idp.example.com/realms/corp/.well-known/openid-configuration"
        );
        assert_eq!(
            openid_configuration_url("http://127.0.0.1:9000"),
            "http://127.0.0.1:9000/.well-known/openid-configuration"
        );
    }

    #[test]
    fn rfc8414_inserts_the_well_known_segment() {
        let u = url::Url::parse("https://idp.example.com/realms/corp/").unwrap();
        assert_eq!(
            rfc8414_url(&u),
            "https://idp.example.com/.well-known/oauth-authorization-server/realms/corp"
        );
        let root = url::Url::parse("http://127.0.0.1:9000").unwrap();
        assert_eq!(
            rfc8414_url(&root),
            "http://127.0.0.1:9000/.well-known/oauth-authorization-server"
        );
    }
}
