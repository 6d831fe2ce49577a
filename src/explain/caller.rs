//! Who `drawbridge explain` judges: a token, checked by the gateway's own
//! [`Authenticator`] against its issuer's keys (or its introspection endpoint), or only
//! decoded (`--no-verify`, for a token whose issuer cannot be reached from here); or
//! scopes and claims as given. The I/O of explain lives here; the judging is
//! `explain::explain`'s.

use serde_json::Value;

use super::Identity;
use crate::auth::jwt::{self, TokenError};
use crate::auth::{claims, rule_claims, times, AuthFailure, Authenticator, Principal, RouteGuard};
use crate::config::{Config, Route};
use crate::policy::ClaimSet;

/// A caller made of `--scopes` (space-separated) and `--claims` (a JSON object of claims,
/// of which the configuration's claim rules read theirs).
pub fn given(config: &Config, scopes: &str, claims: Option<&Value>) -> Result<Identity, String> {
    let claims = match claims {
        None => ClaimSet::EMPTY,
        Some(value @ Value::Object(_)) => ClaimSet::collect(&rule_claims(config), value),
        Some(_) => return Err("--claims: the file must hold a JSON object of claims".into()),
    };
    let mut held: Vec<String> = Vec::new();
    for s in scopes.split_ascii_whitespace() {
        if !held.iter().any(|h| h == s) {
            held.push(s.to_string());
        }
    }
    Ok(Identity::Given {
        scopes: held,
        claims,
    })
}

/// The caller a token makes on `route`. `Err` when the token cannot be judged from here
/// (an issuer or introspection endpoint that does not answer, an opaque token with
/// `--no-verify`); the warnings say what was not checked.
pub async fn from_token(
    config: &Config,
    route: &Route,
    token: &str,
    verify: bool,
    warnings: &mut Vec<String>,
) -> Result<Identity, String> {
    let Some(guard) = RouteGuard::for_route(route) else {
        warnings.push(format!(
            "route `{}` is public: the gateway reads no token there, the token is ignored",
            route.name
        ));
        return Ok(Identity::Given {
            scopes: Vec::new(),
            claims: ClaimSet::EMPTY,
        });
    };
    if verify {
        verified(config, &guard, token, warnings).await
    } else {
        warnings.push(
            "--no-verify: the token's signature was not checked; the decision holds only if the token is genuine"
                .into(),
        );
        decoded(config, &guard, token)
    }
}

async fn verified(
    config: &Config,
    guard: &RouteGuard,
    token: &str,
    warnings: &mut Vec<String>,
) -> Result<Identity, String> {
    let metrics = crate::telemetry::Metrics::new().map_err(|e| format!("metrics: {e}"))?;
    let auth = Authenticator::new(config, &metrics, None)?;
    for &index in &guard.issuers {
        let Some(issuer) = auth.issuers().get(index) else {
            continue;
        };
        if let Err(e) = issuer.refresh().await {
            warnings.push(format!(
                "issuer `{}`: cannot fetch its keys: {e}",
                issuer.config.name
            ));
        }
    }
    match auth.authenticate_token(guard, token).await {
        Ok(a) => Ok(Identity::Token {
            principal: (*a.principal).clone(),
            verified: true,
        }),
        Err(AuthFailure::Token(e @ (TokenError::IssuerUnavailable | TokenError::IntrospectionBusy))) => {
            Err(format!(
                "the token cannot be verified from here ({}): the gateway would answer 503; --no-verify decodes it without its signature",
                e.description()
            ))
        }
        Err(failure) => Ok(Identity::Refused {
            failure,
            verified: true,
        }),
    }
}

/// The checks of `Authenticator` a JWT can be put to without its issuer: issuer,
/// algorithm, type, lifetime, audience, claims and the route's scopes; all but the
/// signature.
fn decoded(config: &Config, guard: &RouteGuard, token: &str) -> Result<Identity, String> {
    if !jwt::looks_like_jwt(token) {
        return Err(
            "an opaque token can only be checked by its issuer's introspection: drop --no-verify"
                .into(),
        );
    }
    let refused = |failure: AuthFailure| Identity::Refused {
        failure,
        verified: false,
    };
    let token_error = |e: TokenError| refused(AuthFailure::Token(e));
    let decoded = match jwt::decode(token, &crate::jose::Algorithm::DEFAULT) {
        Ok(d) => d,
        Err(e) => return Ok(token_error(e)),
    };
    let claims_set = &decoded.claims;
    let found = claims_set.iss.as_deref().and_then(|iss| {
        config
            .issuers
            .iter()
            .enumerate()
            .find(|(_, i)| i.issuer == iss)
    });
    let Some((index, issuer)) = found else {
        return Ok(token_error(match claims_set.iss {
            None => TokenError::MissingClaim,
            Some(_) => TokenError::WrongIssuer,
        }));
    };
    if !issuer.algorithms.contains(&decoded.alg) {
        return Ok(token_error(TokenError::UnsupportedAlgorithm));
    }
    if let Err(e) = jwt::check_token_type(decoded.typ.as_deref(), claims_set, &issuer.token_types) {
        return Ok(token_error(e));
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    if let Err(e) = times::check_times(
        times::TokenTimes::of_jwt(claims_set),
        times::MissingExp::Refused,
        now,
        issuer.leeway.as_secs() as i64,
    ) {
        return Ok(token_error(e));
    }
    let json = match decoded.claims_json() {
        Ok(json) => json,
        Err(e) => return Ok(token_error(e)),
    };
    let identity = match claims::identity(&issuer.claims, &rule_claims(config), &json) {
        Ok(identity) => identity,
        Err(e) => return Ok(token_error(e)),
    };
    if !guard.issuers.contains(&index) {
        return Ok(token_error(TokenError::WrongIssuer));
    }
    if !guard.audience.is_in(&claims_set.aud) {
        return Ok(token_error(TokenError::WrongAudience));
    }
    let principal = Principal::of_identity(
        issuer.issuer.clone(),
        identity,
        claims_set.exp.unwrap_or_default(),
    );
    if !guard.required_scopes.iter().all(|s| principal.has_scope(s)) {
        return Ok(refused(AuthFailure::InsufficientScope));
    }
    Ok(Identity::Token {
        principal,
        verified: false,
    })
}
