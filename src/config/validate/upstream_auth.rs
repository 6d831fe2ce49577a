//! `routes[].upstream_auth`: the credential a route's upstream receives.

use std::collections::HashMap;

use super::{valid_scope, Checker};
use crate::config::raw::{RawGrant, RawStatic, RawUpstreamAuth};
use crate::config::{units, Grant, GrantClient, GrantScopes, UpstreamAuth, DEFAULT_GRANT_TIMEOUT};
use crate::secret::Secret;

impl Checker<'_> {
    pub(super) fn upstream_auth(
        &mut self,
        at: &str,
        raw: &RawUpstreamAuth,
        issuer_names: &HashMap<&str, usize>,
        protected: bool,
    ) -> Option<UpstreamAuth> {
        if raw.passthrough.is_some() {
            self.error(
                &format!("{at}.passthrough"),
                "token passthrough does not exist: the MCP specification forbids forwarding a token issued for the gateway; use token_exchange or on_behalf_of (the upstream gets its own token for the same user), client_credentials, static or none",
            );
            return None;
        }
        let chosen = [
            raw.token_exchange.is_some(),
            raw.client_credentials.is_some(),
            raw.on_behalf_of.is_some(),
            raw.static_.is_some(),
            raw.none.is_some(),
        ]
        .iter()
        .filter(|x| **x)
        .count();
        if chosen != 1 {
            self.error(
                at,
                "choose exactly one of token_exchange, on_behalf_of, client_credentials, static, none",
            );
            return None;
        }
        if let Some(g) = &raw.token_exchange {
            if !protected {
                self.error(
                    &format!("{at}.token_exchange"),
                    "token exchange needs the caller's token: give the route an `auth` block",
                );
            }
            let grant = self.grant(&format!("{at}.token_exchange"), g, issuer_names, true)?;
            return Some(UpstreamAuth::TokenExchange(grant));
        }
        if let Some(g) = &raw.client_credentials {
            let grant = self.grant(&format!("{at}.client_credentials"), g, issuer_names, false)?;
            return Some(UpstreamAuth::ClientCredentials(grant));
        }
        if let Some(o) = &raw.on_behalf_of {
            let grant =
                self.on_behalf_of(&format!("{at}.on_behalf_of"), o, issuer_names, protected)?;
            return Some(UpstreamAuth::OnBehalfOf(grant));
        }
        if let Some(st) = &raw.static_ {
            return self.static_credential(&format!("{at}.static"), st);
        }
        Some(UpstreamAuth::None)
    }

    pub(super) fn static_credential(&mut self, at: &str, raw: &RawStatic) -> Option<UpstreamAuth> {
        let Ok(header) = http::HeaderName::from_bytes(raw.header.as_bytes()) else {
            self.error(&format!("{at}.header"), "not a valid header name");
            return None;
        };
        // `HeaderName` is lower case, as the list of managed headers is.
        if crate::managed_headers::is_gateway_managed(header.as_str()) {
            self.error(
                &format!("{at}.header"),
                "this header is managed by the gateway",
            );
            return None;
        }
        // Held as a `Secret` until it is a header value, so that the text is zeroized.
        let value = Secret::new(match (&raw.value, &raw.value_file) {
            (Some(v), None) => self.expand(&format!("{at}.value"), v)?,
            (None, Some(path)) => {
                let at = format!("{at}.value_file");
                let path = self.expand(&at, path)?;
                match self.read_secret(&at, &path) {
                    Ok(v) => v.trim_end_matches(['\n', '\r']).to_string(),
                    Err(e) => {
                        self.error(&at, format!("cannot read `{path}`: {e}"));
                        return None;
                    }
                }
            }
            _ => {
                self.error(at, "give exactly one of `value` and `value_file`");
                return None;
            }
        });
        let mut parsed = match http::HeaderValue::from_str(value.expose()) {
            Ok(parsed) if !value.expose().is_empty() => parsed,
            _ => {
                self.error(at, "the value is empty or not a valid header value");
                return None;
            }
        };
        // Sensitive: `Debug` prints `Sensitive`, and HTTP/2 never indexes it (HPACK).
        parsed.set_sensitive(true);
        Some(UpstreamAuth::Static {
            header,
            value: parsed,
        })
    }

    pub(super) fn grant(
        &mut self,
        at: &str,
        raw: &RawGrant,
        issuer_names: &HashMap<&str, usize>,
        exchange: bool,
    ) -> Option<Grant> {
        let allow_insecure_http = raw.allow_insecure_http.unwrap_or(false);
        let (issuer, token_endpoint) = self.grant_endpoint(
            at,
            raw.issuer.as_deref(),
            raw.token_endpoint.as_deref(),
            allow_insecure_http,
            issuer_names,
        )?;
        let client_id = self.expand(&format!("{at}.client_id"), &raw.client_id)?;
        let secret = match &raw.client_secret {
            None => None,
            Some(s) => Some(Secret::new(self.expand(&format!("{at}.client_secret"), s)?)),
        };
        let client = match raw.client_auth.as_deref().unwrap_or("client_secret_basic") {
            method @ ("client_secret_basic" | "client_secret_post") => {
                let Some(secret) = secret else {
                    self.error(
                        &format!("{at}.client_secret"),
                        format!("{method} needs a client_secret"),
                    );
                    return None;
                };
                if method == "client_secret_basic" {
                    GrantClient::Basic { client_id, secret }
                } else {
                    GrantClient::Post { client_id, secret }
                }
            }
            "private_key_jwt" => {
                let key_at = format!("{at}.private_key_file");
                let Some(path) = &raw.private_key_file else {
                    self.error(&key_at, "private_key_jwt needs a private_key_file");
                    return None;
                };
                let (key, pem) = self.private_key(&key_at, path)?;
                GrantClient::PrivateKeyJwt {
                    client_id,
                    key,
                    key_pem: pem,
                    key_id: raw.key_id.clone(),
                }
            }
            _ => {
                self.error(
                    &format!("{at}.client_auth"),
                    "use client_secret_basic, client_secret_post or private_key_jwt",
                );
                return None;
            }
        };
        let audience = match &raw.audience {
            None => None,
            Some(a) => Some(self.expand(&format!("{at}.audience"), a)?),
        };
        let resource = match &raw.resource {
            None => None,
            Some(r) => Some(self.expand(&format!("{at}.resource"), r)?),
        };
        if exchange && audience.is_none() && resource.is_none() {
            self.error(at, "name the upstream with `audience` and/or `resource`");
            return None;
        }
        let scopes = match &raw.scopes {
            None => GrantScopes::Fixed(Vec::new()),
            Some(serde_yaml::Value::String(s)) if s == "per_operation" && exchange => {
                GrantScopes::PerOperation
            }
            Some(serde_yaml::Value::Sequence(items)) => {
                let scopes: Vec<String> = items
                    .iter()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect();
                if scopes.len() != items.len() || !scopes.iter().all(|s| valid_scope(s)) {
                    self.error(&format!("{at}.scopes"), "a list of scope strings");
                    return None;
                }
                GrantScopes::Fixed(scopes)
            }
            Some(_) => {
                let hint = if exchange {
                    "`per_operation` or a list of scopes"
                } else {
                    "a list of scopes"
                };
                self.error(&format!("{at}.scopes"), format!("expected {hint}"));
                return None;
            }
        };
        let timeout = self.grant_timeout(at, raw.timeout.as_deref());
        let base_scopes = raw.base_scopes.clone().unwrap_or_default();
        if !base_scopes.iter().all(|s| valid_scope(s)) {
            self.error(&format!("{at}.base_scopes"), "a list of scope strings");
        }
        if raw.base_scopes.is_some() && scopes != GrantScopes::PerOperation {
            self.error(
                &format!("{at}.base_scopes"),
                "base_scopes applies to `scopes: per_operation` only",
            );
        }
        if scopes == GrantScopes::PerOperation && base_scopes.is_empty() {
            self.warnings.push(format!(
                "{at}: scopes: per_operation without base_scopes: requests whose operations need no scope (initialize, list methods) are refused rather than given the authorization server's default scope"
            ));
        }
        Some(Grant {
            issuer,
            token_endpoint,
            client,
            audience,
            resource,
            scopes,
            timeout,
            base_scopes,
            allow_insecure_http,
        })
    }

    /// Where a grant's token endpoint is: a named issuer's discovered one, or a
    /// configured URL (https unless loopback or `allow_insecure_http`, warned about).
    pub(super) fn grant_endpoint(
        &mut self,
        at: &str,
        issuer: Option<&str>,
        token_endpoint: Option<&str>,
        allow_insecure_http: bool,
        issuer_names: &HashMap<&str, usize>,
    ) -> Option<(Option<usize>, Option<url::Url>)> {
        let issuer = match issuer {
            None => None,
            Some(name) => match issuer_names.get(name) {
                Some(i) => Some(*i),
                None => {
                    self.error(
                        &format!("{at}.issuer"),
                        format!("no issuer named `{name}` in `issuers`"),
                    );
                    return None;
                }
            },
        };
        if allow_insecure_http {
            self.warnings.push(format!(
                "{at}: allow_insecure_http is on: client secrets and subject tokens may travel over plain HTTP (test setups only)"
            ));
        }
        let token_endpoint = match token_endpoint {
            None => None,
            Some(u) => {
                let at = format!("{at}.token_endpoint");
                let u = self.expand(&at, u)?;
                Some(self.identity_url(&at, &u, allow_insecure_http)?)
            }
        };
        if issuer.is_none() && token_endpoint.is_none() {
            self.error(
                at,
                "name an `issuer` (its discovered token endpoint) or a `token_endpoint`",
            );
            return None;
        }
        Some((issuer, token_endpoint))
    }

    /// A grant's `timeout`, or the default.
    pub(super) fn grant_timeout(&mut self, at: &str, raw: Option<&str>) -> std::time::Duration {
        match raw {
            None => DEFAULT_GRANT_TIMEOUT,
            Some(t) => match units::parse_duration(t) {
                Ok(d) if !d.is_zero() => d,
                _ => {
                    self.error(&format!("{at}.timeout"), "a duration such as `5s`");
                    DEFAULT_GRANT_TIMEOUT
                }
            },
        }
    }

    /// The `private_key_jwt` key at `path` (`at` names the key), decoded, with its PEM
    /// text for the route's binding fingerprint.
    pub(super) fn private_key(
        &mut self,
        at: &str,
        path: &str,
    ) -> Option<(crate::jose::SigningKey, Secret)> {
        let path = self.expand(at, path)?;
        let pem = match self.read_secret(at, &path) {
            Ok(pem) => pem,
            Err(e) => {
                self.error(at, format!("cannot read `{path}`: {e}"));
                return None;
            }
        };
        match crate::jose::SigningKey::from_pem(&pem) {
            Ok(key) => Some((key, Secret::new(pem))),
            Err(e) => {
                self.error(at, format!("`{path}`: {e}"));
                None
            }
        }
    }
}
