//! Authorization-server metadata: OpenID Connect discovery (with the `openidconnect`
//! crate, which also checks that the document's `issuer` is the one asked for), falling
//! back to RFC 8414 (`/.well-known/oauth-authorization-server`, path-inserted) for OAuth
//! servers that are not OpenID Providers.

use openidconnect::core::{
    CoreAuthDisplay, CoreClaimName, CoreClaimType, CoreClientAuthMethod, CoreGrantType,
    CoreJsonWebKey, CoreJweContentEncryptionAlgorithm, CoreJweKeyManagementAlgorithm,
    CoreResponseMode, CoreResponseType, CoreSubjectIdentifierType,
};
use openidconnect::{AdditionalProviderMetadata, IssuerUrl, ProviderMetadata};
use serde::{Deserialize, Serialize};

use crate::oauth_client::needs_tls;

/// What drawbridge needs from an authorization server's metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerMetadata {
    pub jwks_uri: Option<url::Url>,
    pub token_endpoint: Option<url::Url>,
    pub introspection_endpoint: Option<url::Url>,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
struct Extra {
    introspection_endpoint: Option<String>,
}

impl AdditionalProviderMetadata for Extra {}

type OidcMetadata = ProviderMetadata<
    Extra,
    CoreAuthDisplay,
    CoreClientAuthMethod,
    CoreClaimName,
    CoreClaimType,
    CoreGrantType,
    CoreJweContentEncryptionAlgorithm,
    CoreJweKeyManagementAlgorithm,
    CoreJsonWebKey,
    CoreResponseMode,
    CoreResponseType,
    CoreSubjectIdentifierType,
>;

/// RFC 8414 document (the members drawbridge reads).
#[derive(Deserialize)]
struct OAuthMetadata {
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

/// Discovers the metadata of `issuer`; the error names both attempts.
pub async fn discover(http: &reqwest::Client, issuer: &str) -> Result<ServerMetadata, String> {
    let oidc_error = match IssuerUrl::new(issuer.to_string()) {
        Err(e) => format!("issuer is not a URL: {e}"),
        Ok(issuer_url) => match OidcMetadata::discover_async(issuer_url, http).await {
            Ok(meta) => {
                return Ok(ServerMetadata {
                    jwks_uri: Some(meta.jwks_uri().url().clone()),
                    token_endpoint: meta.token_endpoint().map(|t| t.url().clone()),
                    introspection_endpoint: parse_url(
                        meta.additional_metadata().introspection_endpoint.clone(),
                    ),
                })
            }
            Err(e) => format!("OpenID Connect discovery: {e}"),
        },
    };
    let url = url::Url::parse(issuer).map_err(|e| format!("issuer is not a URL: {e}"))?;
    let oauth = async {
        let resp = http
            .get(rfc8414_url(&url))
            .header(http::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|e| format!("RFC 8414 metadata: {e}"))?;
        if !resp.status().is_success() {
            return Err(format!("RFC 8414 metadata: HTTP {}", resp.status()));
        }
        let meta: OAuthMetadata = resp
            .json()
            .await
            .map_err(|e| format!("RFC 8414 metadata: {e}"))?;
        if meta.issuer != issuer {
            return Err("RFC 8414 metadata names a different issuer".to_string());
        }
        Ok(ServerMetadata {
            jwks_uri: parse_url(meta.jwks_uri),
            token_endpoint: parse_url(meta.token_endpoint),
            introspection_endpoint: parse_url(meta.introspection_endpoint),
        })
    };
    oauth
        .await
        .map_err(|oauth_error| format!("{oidc_error}; {oauth_error}"))
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
