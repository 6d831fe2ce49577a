//! Who is calling and what they may do, read from a verified token's claims (a JWT's
//! payload or an introspection answer) the way its issuer's `claims` mapping says.
//!
//! Scopes come from `scope` (a space-separated string) or, failing that, `scp` (a string
//! or an array of strings), plus every configured permission claim (`roles`,
//! `permissions`, `/realm_access/roles`, …), each value with its prefix. A permission
//! claim that is present with another type (a number, an object, an array holding a
//! non-string) refuses the token: the issuer does not send what the operator described,
//! and granting less than intended without a word would hide that.
//!
//! Pure: no I/O.

use serde_json::Value;

use super::jwt::TokenError;
use crate::config::ClaimMapping;
use crate::policy::claims::string_values;
use crate::policy::{ClaimName, ClaimSet};

/// What a token says about its caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub subject: String,
    pub client: Option<String>,
    /// Granted scopes and mapped permissions, each once.
    pub scopes: Vec<String>,
    /// The claims the configuration's claim rules name (only those).
    pub claims: ClaimSet,
}

/// Reads the identity from `claims` (a JSON object) by `mapping`, keeping the values of
/// `rule_claims` for claim rules.
pub fn identity(
    mapping: &ClaimMapping,
    rule_claims: &[ClaimName],
    claims: &Value,
) -> Result<Identity, TokenError> {
    let subject = match mapping.subject.find(claims) {
        None => return Err(TokenError::MissingClaim),
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        Some(_) => return Err(TokenError::InvalidClaim),
    };
    let client = mapping
        .client
        .iter()
        .find_map(|c| c.find(claims).and_then(Value::as_str))
        .map(str::to_string);
    let mut scopes = granted_scopes(claims)?;
    for permission in &mapping.permissions {
        let Some(value) = permission.claim.find(claims) else {
            continue;
        };
        let values = string_values(value).ok_or(TokenError::InvalidClaim)?;
        for v in values {
            let scope = format!("{}{v}", permission.prefix);
            if !scopes.contains(&scope) {
                scopes.push(scope);
            }
        }
    }
    Ok(Identity {
        subject,
        client,
        scopes,
        claims: ClaimSet::collect(rule_claims, claims),
    })
}

/// `scope` (space-separated), or else `scp` (a string or an array of strings).
fn granted_scopes(claims: &Value) -> Result<Vec<String>, TokenError> {
    let words = match (claims.get("scope"), claims.get("scp")) {
        (Some(Value::String(s)), _) => vec![s.clone()],
        (Some(Value::Null) | None, None | Some(Value::Null)) => Vec::new(),
        (Some(Value::Null) | None, Some(scp)) => {
            string_values(scp).ok_or(TokenError::InvalidClaim)?
        }
        (Some(_), _) => return Err(TokenError::InvalidClaim),
    };
    let mut scopes: Vec<String> = Vec::new();
    for scope in words.iter().flat_map(|w| w.split_ascii_whitespace()) {
        if !scopes.iter().any(|s| s == scope) {
            scopes.push(scope.to_string());
        }
    }
    Ok(scopes)
}

#[cfg(test)]
mod tests;
