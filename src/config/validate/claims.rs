//! Claims in the configuration: an issuer's claim mapping (`issuers[].claims`), the
//! claim rules of a policy (`require.claims` and the long form of a rule), and the
//! warnings about issuers that deserve a second look.

use std::sync::Arc;

use super::Checker;
use crate::config::raw::{RawClaimMapping, RawClaimRules, RawClaimValues, RawPermissionClaim};
use crate::config::{ClaimMapping, Issuer, PermissionClaim, Route};
use crate::oauth_client::needs_tls;
use crate::policy::{ClaimName, ClaimRule};

impl Checker<'_> {
    pub(super) fn claim_name(&mut self, at: &str, text: &str) -> Option<ClaimName> {
        match ClaimName::parse(text) {
            Ok(name) => Some(name),
            Err(why) => {
                self.error(at, why);
                None
            }
        }
    }

    /// `issuers[].claims`; what is not given keeps its default.
    pub(super) fn claim_mapping(
        &mut self,
        at: &str,
        raw: Option<&RawClaimMapping>,
    ) -> ClaimMapping {
        let mut mapping = ClaimMapping::default();
        let Some(raw) = raw else {
            return mapping;
        };
        if let Some(subject) = &raw.subject {
            if let Some(name) = self.claim_name(&format!("{at}.subject"), subject) {
                mapping.subject = name;
            }
        }
        if let Some(client) = &raw.client {
            if client.is_empty() {
                self.error(&format!("{at}.client"), "list at least one client claim");
            }
            mapping.client = client
                .iter()
                .enumerate()
                .filter_map(|(i, c)| self.claim_name(&format!("{at}.client[{i}]"), c))
                .collect();
        }
        for (i, permission) in raw.permissions.iter().enumerate() {
            let at = format!("{at}.permissions[{i}]");
            let (claim, prefix) = match permission {
                RawPermissionClaim::Name(name) => (name.as_str(), ""),
                RawPermissionClaim::Prefixed(p) => (p.claim.as_str(), p.prefix.as_str()),
            };
            if prefix
                .chars()
                .any(|c| !c.is_ascii_graphic() || c == '"' || c == '\\')
            {
                self.error(
                    &format!("{at}.prefix"),
                    "a prefix is printable ASCII without spaces, quotes or backslashes (it becomes part of a scope)",
                );
            }
            let Some(claim) = self.claim_name(&at, claim) else {
                continue;
            };
            if matches!(claim.as_str(), "scope" | "scp") {
                self.error(
                    &at,
                    "`scope` and `scp` are always read; list other claims here",
                );
                continue;
            }
            mapping.permissions.push(PermissionClaim {
                claim,
                prefix: prefix.to_string(),
            });
        }
        mapping
    }

    /// Claim rules (`claims: { groups: [sre, platform] }`): each claim must hold one of
    /// its listed values.
    pub(super) fn claim_rules(&mut self, at: &str, raw: &RawClaimRules) -> Vec<ClaimRule> {
        let mut rules = Vec::new();
        for (name, raw_values) in raw {
            let at = format!("{at}.{name}");
            let (values, shadow) = match raw_values {
                RawClaimValues::Values(values) => (values, false),
                RawClaimValues::Full(full) => (
                    &full.values,
                    self.mode(&format!("{at}.mode"), full.mode.as_deref()),
                ),
            };
            let Some(claim) = self.claim_name(&at, name) else {
                continue;
            };
            if values.is_empty() {
                self.error(
                    &at,
                    "list at least one accepted value: an empty list can never be satisfied",
                );
                continue;
            }
            if values.iter().any(String::is_empty) {
                self.error(&at, "an accepted value must not be empty");
                continue;
            }
            rules.push(ClaimRule {
                claim,
                values: values.clone(),
                shadow,
            });
        }
        rules
    }

    /// Warnings, not errors: an issuer over plain http off loopback (only possible with
    /// `allow_insecure_http`), and issuers no route accepts tokens from.
    pub(super) fn issuer_warnings(&mut self, issuers: &[Arc<Issuer>], routes: &[Arc<Route>]) {
        for (i, issuer) in issuers.iter().enumerate() {
            if needs_tls(&issuer.issuer_url) {
                self.warnings.push(format!(
                    "issuers[{i}]: issuer `{}` uses plain http off loopback: its keys and discovery document can be tampered with in transit",
                    issuer.name
                ));
            }
            let used = routes.iter().any(|r| {
                r.auth.as_ref().is_some_and(|a| a.issuers.contains(&i))
                    || upstream_issuer(&r.upstream_auth) == Some(i)
            });
            if !used {
                self.warnings.push(format!(
                    "issuers[{i}]: no route uses issuer `{}`",
                    issuer.name
                ));
            }
        }
    }
}

/// The issuer whose token endpoint a route's upstream credential comes from, if any.
fn upstream_issuer(auth: &crate::config::UpstreamAuth) -> Option<usize> {
    match auth {
        crate::config::UpstreamAuth::TokenExchange(g)
        | crate::config::UpstreamAuth::ClientCredentials(g)
        | crate::config::UpstreamAuth::OnBehalfOf(g) => g.issuer,
        _ => None,
    }
}
