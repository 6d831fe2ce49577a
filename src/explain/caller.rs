//! Who `drawbridge explain` judges: a token, checked by the gateway's own
//! [`Authenticator`] against its issuer's keys (or its introspection endpoint), or only
//! decoded (`--no-verify`, for a token whose issuer cannot be reached from here); or
//! scopes and claims as given. The I/O of explain lives here; the judging is
//! `explain::explain`'s.

use serde_json::Value;

use super::Identity;
use crate::auth::jwt::{self, TokenError};
use crate::auth::{rule_claims, AuthFailure, Authenticator, RouteGuard};
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
    let auth = authenticator(config)?;
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

/// Every check of the gateway's `Authenticator` but the signature.
fn decoded(config: &Config, guard: &RouteGuard, token: &str) -> Result<Identity, String> {
    if !jwt::looks_like_jwt(token) {
        return Err(
            "an opaque token can only be checked by its issuer's introspection: drop --no-verify"
                .into(),
        );
    }
    let auth = authenticator(config)?;
    Ok(match auth.check_unsigned_jwt(guard, token) {
        Ok(principal) => Identity::Token {
            principal: (*principal).clone(),
            verified: false,
        },
        Err(failure) => Identity::Refused {
            failure,
            verified: false,
        },
    })
}

/// The gateway's authenticator for this configuration, with metrics nobody scrapes.
fn authenticator(config: &Config) -> Result<Authenticator, String> {
    let metrics = crate::telemetry::Metrics::new().map_err(|e| format!("metrics: {e}"))?;
    Authenticator::new(config, &metrics, None)
}
