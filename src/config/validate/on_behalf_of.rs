//! `routes[].upstream_auth.on_behalf_of`: Microsoft Entra ID's on-behalf-of grant. The
//! same endpoint and secret handling as `token_exchange` (an issuer's discovered token
//! endpoint or a configured one; secrets from `${VAR}` or files), with the client
//! authentication Entra documents for it: a secret in the request body, or an assertion
//! signed with a certificate's key.

use std::collections::HashMap;

use super::{valid_scope, Checker};
use crate::config::raw::RawOnBehalfOf;
use crate::config::{Grant, GrantClient, GrantScopes};
use crate::secret::Secret;

impl Checker<'_> {
    pub(super) fn on_behalf_of(
        &mut self,
        at: &str,
        raw: &RawOnBehalfOf,
        issuer_names: &HashMap<&str, usize>,
        protected: bool,
    ) -> Option<Grant> {
        if !protected {
            self.error(
                at,
                "on-behalf-of needs the caller's token: give the route an `auth` block",
            );
        }
        let allow_insecure_http = raw.allow_insecure_http.unwrap_or(false);
        let (issuer, token_endpoint) = self.grant_endpoint(
            at,
            raw.issuer.as_deref(),
            raw.token_endpoint.as_deref(),
            allow_insecure_http,
            issuer_names,
        )?;
        let client_id = self.expand(&format!("{at}.client_id"), &raw.client_id)?;
        if client_id.is_empty() {
            self.error(&format!("{at}.client_id"), "must not be empty");
            return None;
        }
        let client = self.on_behalf_of_client(at, raw, client_id)?;
        let scopes_at = format!("{at}.scopes");
        let scopes = match &raw.scopes {
            Some(list) if !list.is_empty() && list.iter().all(|s| valid_scope(s)) => list.clone(),
            Some(_) => {
                self.error(
                    &scopes_at,
                    "a non-empty list of scope strings, e.g. [api://upstream/.default]",
                );
                return None;
            }
            None => {
                self.error(
                    at,
                    "name the upstream's API with `scopes`, e.g. [api://upstream/.default]",
                );
                return None;
            }
        };
        let timeout = self.grant_timeout(at, raw.timeout.as_deref());
        Some(Grant {
            issuer,
            token_endpoint,
            client,
            audience: None,
            resource: None,
            scopes: GrantScopes::Fixed(scopes),
            timeout,
            base_scopes: Vec::new(),
            allow_insecure_http,
        })
    }

    /// Exactly one credential: `client_secret`, `client_secret_file` (both sent in the
    /// body, as Entra documents) or `private_key_file` with the certificate that
    /// identifies it (`certificate_file`) and/or a `key_id`.
    fn on_behalf_of_client(
        &mut self,
        at: &str,
        raw: &RawOnBehalfOf,
        client_id: String,
    ) -> Option<GrantClient> {
        let given = [
            raw.client_secret.is_some(),
            raw.client_secret_file.is_some(),
            raw.private_key_file.is_some(),
        ]
        .iter()
        .filter(|x| **x)
        .count();
        if given != 1 {
            self.error(
                at,
                "give exactly one of `client_secret`, `client_secret_file` and `private_key_file`",
            );
            return None;
        }
        if raw.private_key_file.is_none() {
            for (key, set) in [
                ("certificate_file", raw.certificate_file.is_some()),
                ("key_id", raw.key_id.is_some()),
            ] {
                if set {
                    self.error(&format!("{at}.{key}"), "applies to `private_key_file` only");
                    return None;
                }
            }
        }
        if let Some(secret) = &raw.client_secret {
            let secret = self.expand(&format!("{at}.client_secret"), secret)?;
            return self.non_empty_secret(&format!("{at}.client_secret"), client_id, secret);
        }
        if let Some(path) = &raw.client_secret_file {
            let file_at = format!("{at}.client_secret_file");
            let path = self.expand(&file_at, path)?;
            let secret = match self.read_secret(&file_at, &path) {
                Ok(text) => text.trim_end_matches(['\n', '\r']).to_string(),
                Err(e) => {
                    self.error(&file_at, format!("cannot read `{path}`: {e}"));
                    return None;
                }
            };
            return self.non_empty_secret(&file_at, client_id, secret);
        }
        let key_at = format!("{at}.private_key_file");
        let (mut key, key_pem) = self.private_key(&key_at, raw.private_key_file.as_deref()?)?;
        if raw.certificate_file.is_none() && raw.key_id.is_none() {
            self.error(
                &key_at,
                "name the key's `certificate_file` (Entra ID identifies it by the certificate's SHA-256 thumbprint) or a `key_id`",
            );
            return None;
        }
        if let Some(path) = &raw.certificate_file {
            let cert_at = format!("{at}.certificate_file");
            let path = self.expand(&cert_at, path)?;
            let pem = match self.read_text(&path) {
                Ok(pem) => pem,
                Err(e) => {
                    self.error(&cert_at, format!("cannot read `{path}`: {e}"));
                    return None;
                }
            };
            key = match key.with_certificate(&pem) {
                Ok(key) => key,
                Err(e) => {
                    self.error(&cert_at, format!("`{path}`: {e}"));
                    return None;
                }
            };
        }
        let key_id = match &raw.key_id {
            None => None,
            Some(k) => Some(self.expand(&format!("{at}.key_id"), k)?),
        };
        Some(GrantClient::PrivateKeyJwt {
            client_id,
            key,
            key_pem,
            key_id,
        })
    }

    fn non_empty_secret(
        &mut self,
        at: &str,
        client_id: String,
        secret: String,
    ) -> Option<GrantClient> {
        if secret.is_empty() {
            self.error(at, "the client secret is empty");
            return None;
        }
        Some(GrantClient::Post {
            client_id,
            secret: Secret::new(secret),
        })
    }
}

#[cfg(test)]
mod tests;
