use std::time::Instant;

use serde_json::json;

use super::*;
use crate::exchange::FailureKind;

fn scopes(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

#[test]
fn the_form_is_microsofts_grant() {
    let form = form("caller.jwt", "api://up/.default");
    assert_eq!(
        form,
        [
            ("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"),
            ("assertion", "caller.jwt"),
            ("scope", "api://up/.default"),
            ("requested_token_use", "on_behalf_of"),
        ]
    );
}

#[test]
fn a_default_scope_covers_that_resources_permissions_only() {
    let requested = scopes(&["api://up/.default"]);
    assert!(within("api://up/tools.read", &requested));
    assert!(
        within("API://UP/Tools.Read", &requested),
        "case-insensitive"
    );
    assert!(within("api://up/.default", &requested));
    assert!(!within("api://up2/tools.read", &requested));
    assert!(!within("api://other/tools.read", &requested));
    assert!(!within("api://up/", &requested));
    assert!(!within("api://up/a/b", &requested));
    assert!(!within("https://graph.microsoft.com/User.Read", &requested));
    // Multi-byte characters where a slice by the resource's length would cut one.
    assert!(!within("api://uü/x", &scopes(&["api://uu/.default"])));
    assert!(!within("api://u", &scopes(&["api://üü/.default"])));
    assert!(!within("é", &scopes(&["é/.default"])));
    assert!(within("é/x", &scopes(&["é/.default"])));
    let named = scopes(&["https://graph.microsoft.com/User.Read"]);
    assert!(within("https://graph.microsoft.com/user.read", &named));
    assert!(!within("https://graph.microsoft.com/Mail.Read", &named));
}

fn ok(body: serde_json::Value, requested: &[&str]) -> Result<IssuedToken, ExchangeError> {
    answer(
        200,
        body.to_string().as_bytes(),
        Instant::now(),
        &scopes(requested),
    )
}

#[test]
fn entras_success_answer_is_accepted_within_the_request() {
    let token = ok(
        json!({"token_type":"Bearer","scope":"api://up/tools.read api://up/tools.echo",
            "expires_in":3599,"ext_expires_in":3599,"access_token":"obo-token",
            "refresh_token":"never-used"}),
        &["api://up/.default"],
    )
    .unwrap();
    assert_eq!(token.authorization, "Bearer obo-token");
    let wider = ok(
        json!({"token_type":"Bearer","scope":"api://up/tools.read https://graph.microsoft.com/Mail.Read",
            "expires_in":3599,"access_token":"t"}),
        &["api://up/.default"],
    );
    assert_eq!(
        wider.unwrap_err(),
        ExchangeError::InvalidResponse("the issued scope exceeds the request")
    );
    assert_eq!(
        ok(json!({"token_type":"Bearer"}), &["api://up/.default"]).unwrap_err(),
        ExchangeError::InvalidResponse("no access_token")
    );
    // An answer that is not JSON (an error page of a proxy in front of Entra) is an
    // outage to retry, as for every token endpoint.
    let garbage = answer(200, b"<html>", Instant::now(), &scopes(&["s"])).unwrap_err();
    assert_eq!(garbage.kind(), FailureKind::Unavailable);
}

fn refused(status: u16, body: serde_json::Value) -> ExchangeError {
    answer(
        status,
        body.to_string().as_bytes(),
        Instant::now(),
        &scopes(&["api://up/.default"]),
    )
    .unwrap_err()
}

const MFA_CLAIMS: &str = r#"{"access_token":{"polids":{"essential":true,"values":["9ab03e19-ed42-4168-b6b7-7001fb3e933a"]}}}"#;

#[test]
fn interaction_required_with_claims_is_a_claims_challenge() {
    let e = refused(
        400,
        json!({"error":"interaction_required",
            "error_description":"AADSTS50079: Due to a configuration change made by your administrator, you must enroll in multi-factor authentication.",
            "error_codes":[50079],"claims": MFA_CLAIMS}),
    );
    assert_eq!(e.kind(), FailureKind::Denied);
    assert_eq!(e.result_label(), "claims_challenge");
    let claims = e.claims_challenge().unwrap();
    assert_eq!(
        STANDARD.decode(claims.encoded()).unwrap(),
        MFA_CLAIMS.as_bytes(),
        "the claims as Entra sent them, base64-encoded"
    );
    let text = e.to_string();
    assert!(
        !text.contains("AADSTS") && !text.contains("polids"),
        "{text}"
    );
    let header = claims.www_authenticate("https://gw/.well-known/oauth-protected-resource/x");
    assert_eq!(
        header,
        format!(
            r#"Bearer resource_metadata="https://gw/.well-known/oauth-protected-resource/x", error="insufficient_claims", error_description="the authorization server requires a new sign-in meeting its conditions", claims="{}""#,
            STANDARD.encode(MFA_CLAIMS)
        )
    );
}

#[test]
fn other_refusals_map_like_the_exchanges() {
    let consent = refused(
        400,
        json!({"error":"invalid_grant","error_description":"AADSTS65001: The user or administrator has not consented","error_codes":[65001]}),
    );
    assert_eq!(
        consent,
        ExchangeError::Rejected {
            status: 400,
            error: Some("invalid_grant".into())
        }
    );
    assert_eq!(consent.kind(), FailureKind::Denied);
    let no_claims = refused(
        400,
        json!({"error":"interaction_required","error_codes":[50076]}),
    );
    assert_eq!(no_claims.kind(), FailureKind::Denied);
    assert!(no_claims.claims_challenge().is_none());
    for bad in [
        json!("not json"),
        json!("[1]"),
        json!(7),
        json!("x".repeat(5000)),
    ] {
        let e = refused(400, json!({"error":"interaction_required","claims": bad}));
        assert!(e.claims_challenge().is_none(), "{bad}");
        assert_eq!(e.kind(), FailureKind::Denied);
    }
    let client = refused(
        401,
        json!({"error":"invalid_client","error_description":"AADSTS7000215: Invalid client secret provided."}),
    );
    assert_eq!(client.kind(), FailureKind::BadGateway);
    let claims_on_client_error =
        refused(401, json!({"error":"invalid_client","claims": MFA_CLAIMS}));
    assert!(claims_on_client_error.claims_challenge().is_none());
    let down = refused(
        503,
        json!({"error":"temporarily_unavailable","claims": MFA_CLAIMS}),
    );
    assert_eq!(down.kind(), FailureKind::Unavailable);
    assert!(down.claims_challenge().is_none());
}
