//! Microsoft Entra ID's on-behalf-of grant, as Microsoft documents it ("Microsoft
//! identity platform and OAuth 2.0 On-Behalf-Of flow"): the request's form, how its
//! answer's granted scopes are read, and the claims challenge an `interaction_required`
//! refusal carries. The transport, client authentication and the rest of the answer's
//! validation are the exchange's own (`client`, `client_auth`, `response`).
//!
//! The request: `grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer`, the caller's
//! token as `assertion`, `scope` (space-separated, e.g. `api://upstream/.default`),
//! `requested_token_use=on_behalf_of`, and the client's credentials in the body.
//!
//! Pure: no I/O.

use std::time::Instant;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde_json::Value;

use super::response::{parse_error, parse_success_within};
use super::{ExchangeError, IssuedToken, JWT_BEARER_GRANT};

/// Longest claims challenge passed on to a client, as JSON text. Entra's are a few
/// hundred bytes; a longer one is treated as a plain refusal.
const MAX_CLAIMS_LEN: usize = 4096;

/// The grant's form fields (client authentication is added by the client).
pub(super) fn form<'a>(assertion: &'a str, scope: &'a str) -> [(&'static str, &'a str); 4] {
    [
        ("grant_type", JWT_BEARER_GRANT),
        ("assertion", assertion),
        ("scope", scope),
        ("requested_token_use", "on_behalf_of"),
    ]
}

/// Whether a granted scope is one that was requested. Entra's scopes are
/// case-insensitive, and it answers a request for `{resource}/.default` with the
/// permissions it granted on that resource (`api://upstream/tools.read`), never
/// `.default` itself; nothing of another resource is within such a request.
pub(super) fn within(granted: &str, requested: &[String]) -> bool {
    requested.iter().any(|r| {
        if r.eq_ignore_ascii_case(granted) {
            return true;
        }
        // Compared as bytes: the answer is the authorization server's text, and no
        // slicing of it may fall inside a character.
        let Some(resource) = strip_suffix_ignore_case(r.as_bytes(), b"/.default") else {
            return false;
        };
        match granted.as_bytes().split_at_checked(resource.len()) {
            Some((head, [b'/', permission @ ..])) => {
                head.eq_ignore_ascii_case(resource)
                    && !permission.is_empty()
                    && !permission.contains(&b'/')
            }
            _ => false,
        }
    })
}

fn strip_suffix_ignore_case<'a>(text: &'a [u8], suffix: &[u8]) -> Option<&'a [u8]> {
    let (head, tail) = text.split_at_checked(text.len().checked_sub(suffix.len())?)?;
    tail.eq_ignore_ascii_case(suffix).then_some(head)
}

/// The answer to one on-behalf-of request for `requested` scopes.
pub(super) fn answer(
    status: u16,
    body: &[u8],
    received_at: Instant,
    requested: &[String],
) -> Result<IssuedToken, ExchangeError> {
    match status {
        200 => parse_success_within(body, received_at, requested, within),
        s if (200..300).contains(&s) => Err(ExchangeError::InvalidResponse(
            "success status other than 200",
        )),
        s => Err(refusal(s, body)),
    }
}

/// An error answer: a claims challenge when Entra sent one with a refusal of the user
/// (`interaction_required`, or `invalid_grant` as it sometimes answers conditional
/// access), else what any token endpoint's refusal becomes.
fn refusal(status: u16, body: &[u8]) -> ExchangeError {
    let plain = parse_error(status, body);
    let ExchangeError::Rejected {
        status,
        error: Some(code),
    } = &plain
    else {
        return plain;
    };
    if !(400..500).contains(status)
        || !matches!(code.as_str(), "interaction_required" | "invalid_grant")
    {
        return plain;
    }
    let claims = serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| v.get("claims").and_then(ClaimsChallenge::from_answer));
    match claims {
        Some(claims) => ExchangeError::ClaimsChallenge {
            status: *status,
            error: code.clone(),
            claims,
        },
        None => plain,
    }
}

/// What the caller's next token must carry, as the authorization server said it
/// (Entra's `claims`: a JSON object, sent as a string), held base64-encoded: the form a
/// client receives in `WWW-Authenticate` (`claims="…"`) and passes back, decoded, as the
/// `claims` parameter of its next authorization request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimsChallenge(String);

impl ClaimsChallenge {
    /// The `claims` member of an error answer: a string holding a JSON object (as Entra
    /// sends it) or the object itself; anything else, or anything too long, is none.
    fn from_answer(value: &Value) -> Option<ClaimsChallenge> {
        let text = match value {
            Value::String(text) => {
                serde_json::from_str::<serde_json::Map<String, Value>>(text).ok()?;
                text.clone()
            }
            Value::Object(_) => value.to_string(),
            _ => return None,
        };
        (!text.is_empty() && text.len() <= MAX_CLAIMS_LEN)
            .then(|| ClaimsChallenge(STANDARD.encode(text.as_bytes())))
    }

    /// The claims, base64-encoded (standard alphabet, padded, as Entra's examples are):
    /// safe inside a quoted header parameter.
    pub fn encoded(&self) -> &str {
        &self.0
    }

    /// The `WWW-Authenticate` value of a 403 that passes the challenge to an MCP client:
    /// the route's protected resource metadata (where the client finds the
    /// authorization server to sign in at again) and Entra's claims-challenge
    /// parameters (`error="insufficient_claims"`, `claims`).
    pub fn www_authenticate(&self, resource_metadata: &str) -> String {
        format!(
            r#"Bearer resource_metadata="{resource_metadata}", error="insufficient_claims", error_description="the authorization server requires a new sign-in meeting its conditions", claims="{}""#,
            self.0
        )
    }
}

#[cfg(test)]
mod tests;
