//! RFC 7662 token introspection for opaque (non-JWT) access tokens: the gateway asks
//! the issuer, authenticating as its own confidential client, and applies to the answer
//! the same checks it applies to a JWT (`active`, `iss`, `aud`, and the times of
//! [`super::times`]: `exp`, which an answer may omit, `nbf`, `iat`).

use serde::Deserialize;

use super::jwt::TokenError;
use super::times::{check_times, MissingExp, TokenTimes};
use crate::config::Introspection;

/// The members of an introspection response drawbridge reads.
#[derive(Debug, Clone, Deserialize)]
pub struct IntrospectionResponse {
    #[serde(default)]
    pub active: bool,
    pub iss: Option<String>,
    pub sub: Option<String>,
    #[serde(default, deserialize_with = "super::jwt::string_or_list")]
    pub aud: Vec<String>,
    pub exp: Option<i64>,
    pub nbf: Option<i64>,
    pub iat: Option<i64>,
    pub scope: Option<String>,
    pub client_id: Option<String>,
    /// RFC 7662 §2.2: some servers introspect refresh tokens as active; only the kinds
    /// the issuer accepts (access tokens by default) pass.
    pub token_type: Option<String>,
}

/// Asks `endpoint` about `token`: the members drawbridge checks, and the whole answer
/// (for the issuer's claim mapping and claim rules). Transport and client-authentication
/// failures are `IssuerUnavailable` (fail closed: the token is refused).
pub async fn introspect(
    http: &reqwest::Client,
    endpoint: &url::Url,
    settings: &Introspection,
    token: &str,
) -> Result<(IntrospectionResponse, serde_json::Value), TokenError> {
    let authorization = crate::oauth_client::basic_authorization(
        &settings.client_id,
        settings.client_secret.expose(),
    )
    .ok_or(TokenError::IssuerUnavailable)?;
    let resp = http
        .post(endpoint.clone())
        .header(http::header::AUTHORIZATION, authorization)
        .header(http::header::ACCEPT, "application/json")
        .form(&[("token", token), ("token_type_hint", "access_token")])
        .send()
        .await
        .map_err(|e| {
            tracing::warn!(error = %e, "introspection request failed");
            TokenError::IssuerUnavailable
        })?;
    if !resp.status().is_success() {
        tracing::warn!(status = %resp.status(), "introspection endpoint refused the gateway");
        return Err(TokenError::IssuerUnavailable);
    }
    let answer: serde_json::Value = resp.json().await.map_err(|e| {
        tracing::warn!(error = %e, "introspection answer is not JSON");
        TokenError::IssuerUnavailable
    })?;
    let members = IntrospectionResponse::deserialize(&answer).map_err(|e| {
        tracing::warn!(error = %e, "introspection answer has members of the wrong type");
        TokenError::IssuerUnavailable
    })?;
    Ok((members, answer))
}

/// The checks of an active answer that do not depend on the route.
pub fn check_response(
    resp: &IntrospectionResponse,
    issuer: &str,
    accepted_types: &[String],
    now: i64,
    leeway: i64,
) -> Result<(), TokenError> {
    if !resp.active {
        return Err(TokenError::Inactive);
    }
    if resp
        .token_type
        .as_deref()
        .is_some_and(|t| !accepted_types.contains(&t.to_ascii_lowercase()))
    {
        return Err(TokenError::WrongTokenType);
    }
    if resp.iss.as_deref().is_some_and(|iss| iss != issuer) {
        return Err(TokenError::WrongIssuer);
    }
    let times = TokenTimes {
        exp: resp.exp,
        nbf: resp.nbf,
        iat: resp.iat,
    };
    check_times(times, MissingExp::Allowed, now, leeway)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn access() -> Vec<String> {
        crate::config::DEFAULT_INTROSPECTION_TOKEN_TYPES
            .iter()
            .map(|t| t.to_string())
            .collect()
    }

    #[test]
    fn only_access_tokens_pass_by_default() {
        let answer = |t: &str| {
            resp(serde_json::json!({"active":true,"iss":"https://idp","sub":"a","token_type":t}))
        };
        for ok in ["access_token", "Bearer", ACCESS] {
            assert_eq!(
                check_response(&answer(ok), "https://idp", &access(), 100, 0),
                Ok(())
            );
        }
        assert_eq!(
            check_response(&answer("refresh_token"), "https://idp", &access(), 100, 0),
            Err(TokenError::WrongTokenType)
        );
        let with_refresh = vec!["refresh_token".to_string()];
        assert_eq!(
            check_response(
                &answer("refresh_token"),
                "https://idp",
                &with_refresh,
                100,
                0
            ),
            Ok(())
        );
    }

    const ACCESS: &str = "urn:ietf:params:oauth:token-type:access_token";

    fn resp(v: serde_json::Value) -> IntrospectionResponse {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn inactive_wrong_issuer_and_expired_are_refused() {
        let ok =
            serde_json::json!({"active":true,"iss":"https://idp","sub":"a","aud":"x","exp":200});
        assert_eq!(
            check_response(&resp(ok.clone()), "https://idp", &access(), 100, 0),
            Ok(())
        );
        assert_eq!(
            check_response(
                &resp(serde_json::json!({"active":false})),
                "https://idp",
                &access(),
                100,
                0
            ),
            Err(TokenError::Inactive)
        );
        assert_eq!(
            check_response(&resp(ok.clone()), "https://other", &access(), 100, 0),
            Err(TokenError::WrongIssuer)
        );
        assert_eq!(
            check_response(&resp(ok), "https://idp", &access(), 300, 0),
            Err(TokenError::Expired)
        );
    }

    /// An answer goes through the same time check as a JWT, except that it may omit
    /// `exp`; `nbf` and `iat` past the leeway are refused.
    #[test]
    fn answers_are_held_to_the_token_time_rules() {
        let at = |times: serde_json::Value| {
            let mut v = serde_json::json!({"active":true,"iss":"https://idp","sub":"a"});
            if let (Some(v), Some(t)) = (v.as_object_mut(), times.as_object()) {
                v.extend(t.clone());
            }
            check_response(&resp(v), "https://idp", &access(), 100, 30)
        };
        assert_eq!(at(serde_json::json!({})), Ok(()));
        assert_eq!(at(serde_json::json!({"exp": 70})), Ok(()));
        assert_eq!(at(serde_json::json!({"exp": 69})), Err(TokenError::Expired));
        assert_eq!(at(serde_json::json!({"nbf": 130})), Ok(()));
        assert_eq!(
            at(serde_json::json!({"nbf": 131})),
            Err(TokenError::NotYetValid)
        );
        assert_eq!(at(serde_json::json!({"iat": 130})), Ok(()));
        assert_eq!(
            at(serde_json::json!({"iat": 131})),
            Err(TokenError::IssuedInFuture)
        );
    }
}
