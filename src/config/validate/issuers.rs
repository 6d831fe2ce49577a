//! `issuers[]`: identity endpoints, accepted algorithms and token kinds, introspection.

use super::Checker;
use crate::config::raw::{RawIntrospection, RawIssuer};
use crate::config::{
    units, Introspection, Issuer, DEFAULT_INTROSPECTION_CACHE_MAX, DEFAULT_LEEWAY,
};
use crate::jose::{normalize_media_type, Algorithm};
use crate::oauth_client::needs_tls;
use crate::secret::Secret;

impl Checker<'_> {
    pub(super) fn issuer(&mut self, at: &str, raw: &RawIssuer) -> Option<Issuer> {
        self.name(&format!("{at}.name"), &raw.name);
        let allow_insecure_http = raw.allow_insecure_http.unwrap_or(false);
        if allow_insecure_http {
            self.warnings.push(format!(
                "{at}: allow_insecure_http is on: keys, introspection answers and client secrets of issuer `{}` may travel over plain HTTP (test setups only)",
                raw.name
            ));
        }
        let issuer = self.expand(&format!("{at}.issuer"), &raw.issuer)?;
        let issuer_url =
            self.identity_url(&format!("{at}.issuer"), &issuer, allow_insecure_http)?;
        let jwks_uri = match &raw.jwks_uri {
            None => None,
            Some(u) => {
                let at = format!("{at}.jwks_uri");
                let u = self.expand(&at, u)?;
                Some(self.identity_url(&at, &u, allow_insecure_http)?)
            }
        };
        let token_types = self.token_types(
            &format!("{at}.token_types"),
            raw.token_types.as_deref(),
            &["at+jwt", "jwt"],
            &crate::config::DEFAULT_JWT_TYPES,
        );
        let algorithms = match &raw.algorithms {
            None => Algorithm::DEFAULT.to_vec(),
            Some(names) => {
                let mut algs = Vec::new();
                for (i, name) in names.iter().enumerate() {
                    let at = format!("{at}.algorithms[{i}]");
                    match Algorithm::from_name(name) {
                        Some(a) => algs.push(a),
                        None if name == "none" || name.starts_with("HS") => self.error(
                            &at,
                            format!("`{name}` is never accepted: access tokens must be signed with an asymmetric key"),
                        ),
                        None => self.error(&at, format!("unsupported algorithm `{name}` (use RS256, PS256, ES256 or EdDSA)")),
                    }
                }
                if algs.is_empty() && names.is_empty() {
                    self.error(&format!("{at}.algorithms"), "list at least one algorithm");
                }
                algs
            }
        };
        let leeway = match &raw.leeway {
            None => DEFAULT_LEEWAY,
            Some(text) => match units::parse_duration(text) {
                Ok(d) if d <= std::time::Duration::from_secs(300) => d,
                Ok(_) => {
                    self.error(&format!("{at}.leeway"), "at most 5m");
                    DEFAULT_LEEWAY
                }
                Err(e) => {
                    self.error(&format!("{at}.leeway"), e);
                    DEFAULT_LEEWAY
                }
            },
        };
        let introspection = match &raw.introspection {
            None => None,
            Some(i) => {
                Some(self.introspection(&format!("{at}.introspection"), i, allow_insecure_http)?)
            }
        };
        let claims = self.claim_mapping(&format!("{at}.claims"), raw.claims.as_ref());
        Some(Issuer {
            claims,
            name: raw.name.clone(),
            issuer,
            issuer_url,
            jwks_uri,
            algorithms,
            leeway,
            introspection,
            allow_insecure_http,
            token_types,
        })
    }

    /// A list of token kinds drawn from `known` (compared case-insensitively, without an
    /// `application/` prefix), lower-cased; `default` when the key is absent.
    pub(super) fn token_types(
        &mut self,
        at: &str,
        raw: Option<&[String]>,
        known: &[&str],
        default: &[&str],
    ) -> Vec<String> {
        let Some(raw) = raw else {
            return default.iter().map(|t| t.to_string()).collect();
        };
        if raw.is_empty() {
            self.error(at, "list at least one token type");
        }
        let mut types = Vec::new();
        for (i, name) in raw.iter().enumerate() {
            let normal = normalize_media_type(name);
            if known.contains(&normal.as_str()) {
                types.push(normal);
            } else {
                self.error(
                    &format!("{at}[{i}]"),
                    format!("unknown token type (use {})", known.join(", ")),
                );
            }
        }
        types
    }

    /// [`Checker::http_url`] for an identity endpoint (issuer, JWKS, introspection, token
    /// endpoint): `https`, unless the host is loopback or the operator opted out.
    pub(super) fn identity_url(
        &mut self,
        at: &str,
        value: &str,
        allow_insecure: bool,
    ) -> Option<url::Url> {
        let url = self.http_url(at, value)?;
        if !allow_insecure && needs_tls(&url) {
            self.error(
                at,
                "identity endpoints must use https (plain http is allowed on loopback only; `allow_insecure_http: true` opts out for test setups)",
            );
            return None;
        }
        Some(url)
    }

    pub(super) fn introspection(
        &mut self,
        at: &str,
        raw: &RawIntrospection,
        allow_insecure_http: bool,
    ) -> Option<Introspection> {
        let client_id = self.expand(&format!("{at}.client_id"), &raw.client_id)?;
        let client_secret = self.expand(&format!("{at}.client_secret"), &raw.client_secret)?;
        if client_id.is_empty() || client_secret.is_empty() {
            self.error(at, "client_id and client_secret must not be empty");
            return None;
        }
        let endpoint = match &raw.endpoint {
            None => None,
            Some(u) => {
                let at = format!("{at}.endpoint");
                let u = self.expand(&at, u)?;
                Some(self.identity_url(&at, &u, allow_insecure_http)?)
            }
        };
        let cache_max = match &raw.cache_max {
            None => DEFAULT_INTROSPECTION_CACHE_MAX,
            Some(text) => match units::parse_duration(text) {
                Ok(d) => d,
                Err(e) => {
                    self.error(&format!("{at}.cache_max"), e);
                    DEFAULT_INTROSPECTION_CACHE_MAX
                }
            },
        };
        let max_in_flight = match raw.max_in_flight {
            None => crate::config::DEFAULT_INTROSPECTION_MAX_IN_FLIGHT,
            Some(0) => {
                self.error(&format!("{at}.max_in_flight"), "must be at least 1");
                1
            }
            Some(n) => n,
        };
        let token_types = self.token_types(
            &format!("{at}.token_types"),
            raw.token_types.as_deref(),
            &[
                "access_token",
                "bearer",
                "urn:ietf:params:oauth:token-type:access_token",
                "refresh_token",
                "urn:ietf:params:oauth:token-type:refresh_token",
                "n_a",
                "dpop",
            ],
            &crate::config::DEFAULT_INTROSPECTION_TOKEN_TYPES,
        );
        Some(Introspection {
            client_id,
            client_secret: Secret::new(client_secret),
            endpoint,
            cache_max,
            max_in_flight,
            token_types,
        })
    }
}
