//! Validation of a token endpoint's answer (RFC 6749 §5, RFC 8693 §2.2): what a token
//! must look like before the gateway hands it to an upstream, and what of an error
//! answer may be kept (the error code, never the description).

use std::time::{Duration, Instant};

use serde_json::Value;

use super::{ExchangeError, IssuedToken, ACCESS_TOKEN_TYPE, JWT_TOKEN_TYPE, NOT_JSON};

/// Lifetime assumed when the answer has no `expires_in` (RFC 6749 makes it optional).
/// Short, so that a token of unknown life is not reused for long.
pub const DEFAULT_EXPIRES_IN: Duration = Duration::from_secs(300);

/// Longest OAuth error code kept; longer ones are dropped as suspect.
const MAX_ERROR_CODE_LEN: usize = 64;

/// A 200 answer's body, received at `received_at`, to a request for `requested` scopes: a `scope` member naming
/// anything not requested is refused (the upstream must never get more than the
/// operation needed; RFC 6749 §5.1 lets the server grant less, never more).
pub fn parse_success_for(
    body: &[u8],
    received_at: Instant,
    requested: &[String],
) -> Result<IssuedToken, ExchangeError> {
    parse_success_within(body, received_at, requested, |granted, requested| {
        requested.iter().any(|r| r == granted)
    })
}

/// [`parse_success_for`] with the grant's own reading of "within the request":
/// `within(granted, requested)` says whether one granted scope was asked for.
pub fn parse_success_within(
    body: &[u8],
    received_at: Instant,
    requested: &[String],
    within: fn(&str, &[String]) -> bool,
) -> Result<IssuedToken, ExchangeError> {
    let answer: Value =
        serde_json::from_slice(body).map_err(|_| ExchangeError::InvalidResponse(NOT_JSON))?;
    let answer = answer
        .as_object()
        .ok_or(ExchangeError::InvalidResponse("not a JSON object"))?;

    let access_token = match answer.get("access_token") {
        Some(Value::String(token)) if !token.is_empty() => token,
        _ => return Err(ExchangeError::InvalidResponse("no access_token")),
    };
    let token_type = match answer.get("token_type").and_then(Value::as_str) {
        Some(t) if t.eq_ignore_ascii_case("bearer") => "Bearer",
        Some(t) if t.eq_ignore_ascii_case("n_a") => "N_A",
        _ => {
            return Err(ExchangeError::InvalidResponse(
                "token_type is not Bearer or N_A",
            ))
        }
    };
    if !requested.is_empty() {
        match answer.get("scope") {
            None | Some(Value::Null) => {}
            Some(Value::String(granted)) => {
                if !granted
                    .split_ascii_whitespace()
                    .all(|g| within(g, requested))
                {
                    return Err(ExchangeError::InvalidResponse(
                        "the issued scope exceeds the request",
                    ));
                }
            }
            Some(_) => return Err(ExchangeError::InvalidResponse("scope is not a string")),
        }
    }
    match answer.get("issued_token_type") {
        // RFC 8693 §2.2.1: `N_A` says the token is not an OAuth access token of a known
        // type; only `issued_token_type` can say what it is.
        None if token_type == "N_A" => {
            return Err(ExchangeError::InvalidResponse(
                "token_type N_A without issued_token_type",
            ))
        }
        None => {}
        Some(Value::String(t)) if t == ACCESS_TOKEN_TYPE || t == JWT_TOKEN_TYPE => {}
        Some(_) => {
            return Err(ExchangeError::InvalidResponse(
                "issued_token_type is not an access token",
            ))
        }
    }
    let lifetime = match answer.get("expires_in") {
        None | Some(Value::Null) => DEFAULT_EXPIRES_IN,
        Some(value) => {
            expires_in(value).ok_or(ExchangeError::InvalidResponse("expires_in is invalid"))?
        }
    };
    let expires_at = received_at
        .checked_add(lifetime)
        .ok_or(ExchangeError::InvalidResponse("expires_in is invalid"))?;
    IssuedToken::new(access_token, expires_at)
}

/// Seconds as a non-negative JSON number, or (as some servers send it) a string of digits.
fn expires_in(value: &Value) -> Option<Duration> {
    match value {
        Value::Number(n) => {
            if let Some(secs) = n.as_u64() {
                Some(Duration::from_secs(secs))
            } else {
                n.as_f64()
                    .and_then(|secs| Duration::try_from_secs_f64(secs).ok())
            }
        }
        Value::String(s) => s.trim().parse::<u64>().ok().map(Duration::from_secs),
        _ => None,
    }
}

/// A non-200 answer: the status and, when the body is an RFC 6749 §5.2 error object
/// with a plausible code, that code.
pub fn parse_error(status: u16, body: &[u8]) -> ExchangeError {
    let error = serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| v.get("error").and_then(Value::as_str).map(str::to_string))
        .filter(|code| is_error_code(code));
    ExchangeError::Rejected { status, error }
}

/// RFC 6749 error codes are short ASCII words (`invalid_grant`); anything else is not
/// kept, in case a server echoes request input there.
fn is_error_code(code: &str) -> bool {
    !code.is_empty()
        && code.len() <= MAX_ERROR_CODE_LEN
        && code
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b':'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(v: Value) -> Result<IssuedToken, ExchangeError> {
        parse_success_for(v.to_string().as_bytes(), Instant::now(), &[])
    }

    #[test]
    fn accepts_bearer_and_n_a_in_any_case() {
        let t = parse(serde_json::json!({"access_token":"t","token_type":"bearer"})).unwrap();
        assert_eq!(t.authorization, "Bearer t");
        let t = parse(serde_json::json!({"access_token":"t","token_type":"n_a",
            "issued_token_type": ACCESS_TOKEN_TYPE}))
        .unwrap();
        assert_eq!(t.authorization, "Bearer t");
    }

    #[test]
    fn n_a_needs_issued_token_type() {
        assert_eq!(
            parse(serde_json::json!({"access_token":"t","token_type":"N_A"})).unwrap_err(),
            ExchangeError::InvalidResponse("token_type N_A without issued_token_type")
        );
    }

    #[test]
    fn granted_scope_may_not_exceed_the_request() {
        let requested = vec!["tools:echo".to_string(), "tools:read".to_string()];
        let answer = |scope: serde_json::Value| {
            parse_success_for(
                serde_json::json!({"access_token":"t","token_type":"Bearer","scope":scope})
                    .to_string()
                    .as_bytes(),
                Instant::now(),
                &requested,
            )
        };
        assert!(answer(serde_json::json!("tools:echo")).is_ok());
        assert!(answer(serde_json::json!("tools:read tools:echo")).is_ok());
        assert!(answer(serde_json::Value::Null).is_ok());
        assert_eq!(
            answer(serde_json::json!("tools:echo admin")).unwrap_err(),
            ExchangeError::InvalidResponse("the issued scope exceeds the request")
        );
        assert_eq!(
            answer(serde_json::json!(["tools:echo"])).unwrap_err(),
            ExchangeError::InvalidResponse("scope is not a string")
        );
    }

    #[test]
    fn expires_in_defaults_and_accepts_strings() {
        let before = Instant::now();
        let t = parse(serde_json::json!({"access_token":"t","token_type":"Bearer"})).unwrap();
        assert!(t.expires_at >= before + DEFAULT_EXPIRES_IN);
        let t =
            parse(serde_json::json!({"access_token":"t","token_type":"Bearer","expires_in":"40"}))
                .unwrap();
        assert!(t.expires_at <= Instant::now() + Duration::from_secs(40));
        for bad in [
            serde_json::json!(-1),
            serde_json::json!("soon"),
            serde_json::json!(true),
        ] {
            assert_eq!(
                parse(
                    serde_json::json!({"access_token":"t","token_type":"Bearer","expires_in":bad})
                )
                .unwrap_err(),
                ExchangeError::InvalidResponse("expires_in is invalid")
            );
        }
    }

    #[test]
    fn refuses_other_issued_token_types() {
        let e = parse(serde_json::json!({
            "access_token":"t","token_type":"Bearer",
            "issued_token_type":"urn:ietf:params:oauth:token-type:refresh_token"
        }))
        .unwrap_err();
        assert_eq!(e.result_label(), "invalid_response");
        assert!(parse(serde_json::json!({
            "access_token":"t","token_type":"N_A","issued_token_type": JWT_TOKEN_TYPE
        }))
        .is_ok());
    }

    #[test]
    fn error_code_is_kept_only_when_plausible() {
        let e = parse_error(400, br#"{"error":"invalid_grant","error_description":"x"}"#);
        assert_eq!(
            e,
            ExchangeError::Rejected {
                status: 400,
                error: Some("invalid_grant".into())
            }
        );
        let e = parse_error(400, br#"{"error":"token eyJhbGciOi... is bad"}"#);
        assert_eq!(
            e,
            ExchangeError::Rejected {
                status: 400,
                error: None
            }
        );
        assert_eq!(
            parse_error(502, b"<html>"),
            ExchangeError::Rejected {
                status: 502,
                error: None
            }
        );
    }
}
