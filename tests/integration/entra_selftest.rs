//! Checks of the Entra ID double (`entra.rs`) on its own, with no drawbridge involved:
//! its metadata and keys, that its tokens verify (with `rsa`, not with anything
//! drawbridge uses), that it runs the on-behalf-of grant exactly as Microsoft documents
//! it and refuses every deviation with Entra's error shape, and its test controls.
//! Each test is named `double_*`: scripts/test.sh counts them apart from the gateway's.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rsa::pkcs8::DecodePrivateKey;
use rsa::sha2::{Digest, Sha256};
use rsa::{BigUint, Pkcs1v15Sign, RsaPrivateKey, RsaPublicKey};
use serde_json::{json, Value};

use crate::entra::{
    Entra, GATEWAY_APP, GATEWAY_SECRET, JWT_BEARER_GRANT, MFA_CLAIMS, TENANT, UPSTREAM_API,
};
use crate::idp::{unix_now, CLIENT_ASSERTION_TYPE};

const GATEWAY_URI: &str = "https://mcp.example.com/obo/mcp";

fn claims_of(token: &str) -> Value {
    let part = token.split('.').nth(1).expect("claims part");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).expect("base64url")).expect("JSON")
}

/// The exact grant, with the gateway's secret.
fn grant_form(assertion: &str, scope: &str) -> Vec<(String, String)> {
    [
        ("grant_type", JWT_BEARER_GRANT),
        ("client_id", GATEWAY_APP),
        ("client_secret", GATEWAY_SECRET),
        ("assertion", assertion),
        ("scope", scope),
        ("requested_token_use", "on_behalf_of"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

async fn post(entra: &Entra, form: &[(String, String)]) -> (u16, Value) {
    let response = reqwest::Client::new()
        .post(entra.token_endpoint())
        .form(form)
        .send()
        .await
        .expect("POST");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

fn without(form: &[(String, String)], name: &str) -> Vec<(String, String)> {
    form.iter().filter(|(k, _)| k != name).cloned().collect()
}

fn with(form: &[(String, String)], name: &str, value: &str) -> Vec<(String, String)> {
    let mut out = without(form, name);
    out.push((name.to_string(), value.to_string()));
    out
}

#[tokio::test]
async fn double_entra_tokens_verify_against_its_published_keys() {
    let entra = Entra::start(GATEWAY_URI).await;
    let meta: Value = reqwest::get(entra.metadata_url())
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(meta["issuer"], entra.issuer);
    assert!(entra.issuer.ends_with(&format!("/{TENANT}/v2.0")));
    assert_eq!(meta["token_endpoint"], entra.token_endpoint());
    assert_eq!(meta["jwks_uri"], entra.jwks_url());
    let jwks: Value = reqwest::get(entra.jwks_url())
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let key = &jwks["keys"][0];
    let n = BigUint::from_bytes_be(&URL_SAFE_NO_PAD.decode(key["n"].as_str().unwrap()).unwrap());
    let e = BigUint::from_bytes_be(&URL_SAFE_NO_PAD.decode(key["e"].as_str().unwrap()).unwrap());
    let public = RsaPublicKey::new(n, e).unwrap();
    let token = entra.user_token("alice-oid", json!({}));
    let (input, sig) = token.rsplit_once('.').unwrap();
    let header: Value = serde_json::from_slice(
        &URL_SAFE_NO_PAD
            .decode(token.split('.').next().unwrap())
            .unwrap(),
    )
    .unwrap();
    assert_eq!(header["typ"], "JWT");
    assert_eq!(header["kid"], key["kid"]);
    public
        .verify(
            Pkcs1v15Sign::new::<Sha256>(),
            &Sha256::digest(input.as_bytes()),
            &URL_SAFE_NO_PAD.decode(sig).unwrap(),
        )
        .expect("the user token verifies");
    let claims = claims_of(&token);
    assert_eq!(claims["aud"], GATEWAY_URI);
    assert_eq!(
        (claims["ver"].as_str(), claims["tid"].as_str()),
        (Some("2.0"), Some(TENANT))
    );
    assert!(claims["exp"].as_u64().unwrap() > unix_now());
}

#[tokio::test]
async fn double_entra_issues_an_obo_token_for_the_exact_grant() {
    let entra = Entra::start(GATEWAY_URI).await;
    let alice = entra.user_token("alice-oid", json!({}));
    let (status, answer) = post(
        &entra,
        &grant_form(&alice, &format!("{UPSTREAM_API}/.default")),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["token_type"], "Bearer");
    assert_eq!(
        answer["scope"],
        format!("{UPSTREAM_API}/tools.read {UPSTREAM_API}/tools.echo"),
        "granted permissions, never .default"
    );
    assert_eq!(answer["expires_in"], 3599);
    assert!(answer.get("refresh_token").is_none());
    let token = answer["access_token"].as_str().unwrap();
    assert_eq!(entra.issued(), [token.to_string()]);
    let claims = claims_of(token);
    assert_eq!(claims["aud"], UPSTREAM_API);
    assert_eq!(claims["oid"], "alice-oid");
    assert_eq!(claims["azp"], GATEWAY_APP);
    assert_eq!(claims["scp"], "tools.read tools.echo");
    let (status, answer) = post(
        &entra,
        &grant_form(&alice, &format!("{UPSTREAM_API}/tools.echo offline_access")),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(answer["scope"], format!("{UPSTREAM_API}/tools.echo"));
    assert!(answer["refresh_token"].is_string());
    assert_eq!(entra.token_requests(), 2);
}

/// Every deviation from the documented request is refused with Entra's error shape.
#[tokio::test]
async fn double_entra_refuses_every_deviation() {
    let entra = Entra::start(GATEWAY_URI).await;
    let alice = entra.user_token("alice-oid", json!({}));
    let good = grant_form(&alice, &format!("{UPSTREAM_API}/.default"));
    let expired = entra.user_token("alice-oid", json!({"exp": unix_now() - 10}));
    let foreign_aud = entra.user_token("alice-oid", json!({"aud": "api://someone-else"}));
    // One signature character changed well before the end (no padding bits there).
    let mut tampered: Vec<char> = alice.chars().collect();
    let at = tampered.len() - 20;
    tampered[at] = if tampered[at] == 'A' { 'B' } else { 'A' };
    let tampered: String = tampered.into_iter().collect();
    let mut duplicated = good.clone();
    duplicated.push(("scope".into(), "x".into()));
    // (case, form, status, error, AADSTS code)
    type Case<'a> = (&'a str, Vec<(String, String)>, u16, &'a str, u64);
    let cases: Vec<Case> = vec![
        (
            "no grant_type",
            without(&good, "grant_type"),
            400,
            "invalid_request",
            900144,
        ),
        (
            "token exchange",
            with(
                &good,
                "grant_type",
                "urn:ietf:params:oauth:grant-type:token-exchange",
            ),
            400,
            "unsupported_grant_type",
            70003,
        ),
        (
            "no requested_token_use",
            without(&good, "requested_token_use"),
            400,
            "invalid_request",
            900144,
        ),
        (
            "other requested_token_use",
            with(&good, "requested_token_use", "access_token"),
            400,
            "invalid_request",
            90100,
        ),
        (
            "no assertion",
            without(&good, "assertion"),
            400,
            "invalid_request",
            900144,
        ),
        (
            "no scope",
            without(&good, "scope"),
            400,
            "invalid_request",
            900144,
        ),
        (
            "v1 resource",
            with(&good, "resource", UPSTREAM_API),
            400,
            "invalid_request",
            901002,
        ),
        (
            "rfc 8693 field",
            with(&good, "subject_token", &alice),
            400,
            "invalid_request",
            90100,
        ),
        ("duplicate", duplicated, 400, "invalid_request", 9000411),
        (
            "unknown client",
            with(&good, "client_id", "nobody"),
            400,
            "unauthorized_client",
            700016,
        ),
        (
            "no client credential",
            without(&good, "client_secret"),
            401,
            "invalid_client",
            7000218,
        ),
        (
            "wrong secret",
            with(&good, "client_secret", "guess"),
            401,
            "invalid_client",
            7000215,
        ),
        (
            "secret and assertion",
            with(
                &with(&good, "client_assertion", "x.y.z"),
                "client_assertion_type",
                CLIENT_ASSERTION_TYPE,
            ),
            400,
            "invalid_request",
            90100,
        ),
        (
            "expired user token",
            with(&good, "assertion", &expired),
            400,
            "invalid_grant",
            500133,
        ),
        (
            "token for another app",
            with(&good, "assertion", &foreign_aud),
            400,
            "invalid_grant",
            50013,
        ),
        (
            "tampered user token",
            with(&good, "assertion", &tampered),
            400,
            "invalid_grant",
            50013,
        ),
        (
            "unknown scope",
            with(&good, "scope", "api://upstream-mcp/admin"),
            400,
            "invalid_scope",
            70011,
        ),
        (
            "another api",
            with(&good, "scope", "https://graph.microsoft.com/.default"),
            400,
            "invalid_scope",
            70011,
        ),
    ];
    for (case, form, status, error, code) in cases {
        let (got, body) = post(&entra, &form).await;
        assert_eq!(got, status, "{case}: {body}");
        assert_eq!(body["error"], error, "{case}");
        assert_eq!(body["error_codes"], json!([code]), "{case}");
        let description = body["error_description"].as_str().unwrap();
        assert!(
            description.starts_with(&format!("AADSTS{code}: ")),
            "{case}: {description}"
        );
        assert!(body["trace_id"].is_string() && body["correlation_id"].is_string());
    }
    let basic = reqwest::Client::new()
        .post(entra.token_endpoint())
        .basic_auth(GATEWAY_APP, Some(GATEWAY_SECRET))
        .form(&without(&good, "client_secret"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        basic.status(),
        400,
        "client_secret_basic is not the documented form"
    );
    assert!(entra.issued().is_empty(), "nothing was issued");
}

/// A certificate assertion as Microsoft documents it: RS256, `x5t#S256` (or `x5t`),
/// `aud` = the token endpoint, `iss` = `sub` = the client, a fresh `jti`.
fn client_assertion(
    key_pem: &str,
    cert_pem: &str,
    header: Value,
    patch: Value,
    entra: &Entra,
) -> String {
    let key = RsaPrivateKey::from_pkcs8_pem(key_pem).unwrap();
    let der = rustls_pki_types::pem::PemObject::from_pem_slice(cert_pem.as_bytes())
        .map(|c: rustls_pki_types::CertificateDer| c.to_vec())
        .unwrap();
    let mut h = json!({"alg": "RS256", "typ": "JWT", "x5t#S256": URL_SAFE_NO_PAD.encode(Sha256::digest(&der))});
    for (k, v) in header.as_object().unwrap() {
        if v.is_null() {
            h.as_object_mut().unwrap().remove(k);
        } else {
            h[k] = v.clone();
        }
    }
    let now = unix_now();
    let mut c = json!({"aud": entra.token_endpoint(), "iss": GATEWAY_APP, "sub": GATEWAY_APP,
        "iat": now, "nbf": now, "exp": now + 60, "jti": format!("jti-{}", rand::random::<u64>())});
    for (k, v) in patch.as_object().unwrap() {
        c[k] = v.clone();
    }
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(h.to_string()),
        URL_SAFE_NO_PAD.encode(c.to_string())
    );
    let sig = key
        .sign(
            Pkcs1v15Sign::new::<Sha256>(),
            &Sha256::digest(input.as_bytes()),
        )
        .unwrap();
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig))
}

#[tokio::test]
async fn double_entra_accepts_a_certificate_assertion_named_by_its_thumbprint() {
    let entra = Entra::start(GATEWAY_URI).await;
    let (key, cert) = entra.register_certificate(GATEWAY_APP);
    let alice = entra.user_token("alice-oid", json!({}));
    let form = |assertion: String| {
        with(
            &with(
                &without(
                    &grant_form(&alice, &format!("{UPSTREAM_API}/.default")),
                    "client_secret",
                ),
                "client_assertion_type",
                CLIENT_ASSERTION_TYPE,
            ),
            "client_assertion",
            &assertion,
        )
    };
    let (status, body) = post(
        &entra,
        &form(client_assertion(&key, &cert, json!({}), json!({}), &entra)),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let by_kid = client_assertion(
        &key,
        &cert,
        json!({"x5t#S256": null, "kid": "k-1"}),
        json!({}),
        &entra,
    );
    let wrong_aud = client_assertion(
        &key,
        &cert,
        json!({}),
        json!({"aud": "https://login.microsoftonline.com/other/oauth2/v2.0/token"}),
        &entra,
    );
    let stale = client_assertion(
        &key,
        &cert,
        json!({}),
        json!({"exp": unix_now() - 5}),
        &entra,
    );
    let replay = client_assertion(&key, &cert, json!({}), json!({"jti": "once"}), &entra);
    assert_eq!(post(&entra, &form(replay.clone())).await.0, 200);
    for (case, assertion, code) in [
        ("kid only", by_kid, 700027),
        ("audience", wrong_aud, 700027),
        ("expired", stale, 700024),
        ("replayed jti", replay, 700027),
    ] {
        let (status, body) = post(&entra, &form(assertion)).await;
        assert_eq!(status, 401, "{case}: {body}");
        assert_eq!(body["error"], "invalid_client", "{case}");
        assert_eq!(body["error_codes"], json!([code]), "{case}");
    }
}

#[tokio::test]
async fn double_entra_conditional_access_consent_and_controls() {
    let entra = Entra::start(GATEWAY_URI).await;
    entra.require_mfa("mallory-oid");
    entra.withhold_consent("carol-oid");
    let scope = format!("{UPSTREAM_API}/.default");
    let (status, body) = post(
        &entra,
        &grant_form(&entra.user_token("mallory-oid", json!({})), &scope),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(body["error"], "interaction_required");
    assert_eq!(body["error_codes"], json!([50079]));
    assert_eq!(
        body["claims"], MFA_CLAIMS,
        "the claims challenge is a JSON string"
    );
    serde_json::from_str::<Value>(body["claims"].as_str().unwrap()).expect("claims are JSON");
    let (status, body) = post(
        &entra,
        &grant_form(&entra.user_token("carol-oid", json!({})), &scope),
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant"))
    );
    assert_eq!(body["error_codes"], json!([65001]));
    assert!(body.get("claims").is_none());
    entra.set_down(true);
    let (status, _) = post(
        &entra,
        &grant_form(&entra.user_token("alice-oid", json!({})), &scope),
    )
    .await;
    assert_eq!(status, 503);
    entra.set_down(false);
    entra.set_token_response(Some((500, "{}".into())));
    assert_eq!(post(&entra, &grant_form("x", &scope)).await.0, 500);
    entra.set_token_response(None);
    entra.set_lifetime(42);
    let (status, body) = post(
        &entra,
        &grant_form(&entra.user_token("alice-oid", json!({})), &scope),
    )
    .await;
    assert_eq!((status, body["expires_in"].as_u64()), (200, Some(42)));
    assert_eq!(entra.token_requests(), 5);
    assert_eq!(
        entra.last_form().unwrap()[0],
        ("grant_type".to_string(), JWT_BEARER_GRANT.to_string())
    );
}
