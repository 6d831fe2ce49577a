//! Checks of the test IdP's `/token` endpoint on its own (`idp.rs`): RFC 8693 token
//! exchange and client credentials, client authentication by secret and by assertion,
//! and its refusals. The last tests drive it with drawbridge's own `TokenClient`, which
//! shows the two agree on the wire before any proxy is involved.
//!
//! Tests named `double_*` exercise only the test double; scripts/test.sh counts them apart
//! from the gateway's tests.

use std::sync::Arc;
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use drawbridge::exchange::{
    subject_token_hash, CacheKey, CacheOutcome, ClientAuth, CredentialCache, ExchangeError,
    ExchangeRequest, TokenClient,
};
use drawbridge::jose::SigningKey;
use drawbridge::secret::Secret;
use ring::signature::{RsaPublicKeyComponents, RSA_PKCS1_2048_8192_SHA256};
use serde_json::{json, Value};

use crate::idp::{
    unix_now, unverified_claims, Alg, Idp, ACCESS_TOKEN_TYPE, EXCHANGE_CLIENT_ID,
    EXCHANGE_CLIENT_SECRET, TOKEN_EXCHANGE_GRANT,
};

const GATEWAY_AUD: &str = "https://gateway.example/everything/mcp";
const USER_SCOPES: &str = "mcp:tools tools:echo tools:read";

fn subject(idp: &Idp) -> String {
    idp.mint(Alg::RS256, &idp.claims(GATEWAY_AUD, USER_SCOPES))
}

fn exchange_form<'a>(subject: &'a str, extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut form = vec![
        ("grant_type", TOKEN_EXCHANGE_GRANT),
        ("subject_token", subject),
        ("subject_token_type", ACCESS_TOKEN_TYPE),
    ];
    form.extend_from_slice(extra);
    form
}

/// POSTs `form` to `/token` with Basic `client` (if any); status and JSON body.
async fn token_request(
    idp: &Idp,
    client: Option<(&str, &str)>,
    form: &[(&str, &str)],
) -> (u16, Value) {
    let mut request = reqwest::Client::new().post(idp.token_url()).form(form);
    if let Some((id, secret)) = client {
        request = request.basic_auth(id, Some(secret));
    }
    let response = request.send().await.expect("POST /token");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

const DRAWBRIDGE: Option<(&str, &str)> = Some((EXCHANGE_CLIENT_ID, EXCHANGE_CLIENT_SECRET));

/// The issued token verifies under the IdP's current RSA key (with `ring`).
async fn verifies_with_jwks(idp: &Idp, token: &str) -> bool {
    let jwks: Value = reqwest::get(idp.jwks_url())
        .await
        .expect("GET jwks")
        .json()
        .await
        .expect("JWKS JSON");
    let header: Value = serde_json::from_slice(
        &URL_SAFE_NO_PAD
            .decode(token.split('.').next().expect("header"))
            .expect("base64url"),
    )
    .expect("header JSON");
    let Some(jwk) = jwks["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .find(|k| k["kid"] == header["kid"])
    else {
        return false;
    };
    let member = |name: &str| {
        URL_SAFE_NO_PAD
            .decode(jwk[name].as_str().expect("member"))
            .expect("base64url")
    };
    let (input, signature) = token.rsplit_once('.').expect("compact JWS");
    header["alg"] == "RS256"
        && RsaPublicKeyComponents {
            n: member("n"),
            e: member("e"),
        }
        .verify(
            &RSA_PKCS1_2048_8192_SHA256,
            input.as_bytes(),
            &URL_SAFE_NO_PAD.decode(signature).expect("base64url"),
        )
        .is_ok()
}

#[tokio::test]
async fn double_idp_exchange_issues_an_audience_bound_token_for_the_same_user() {
    let idp = Idp::start().await;
    let subject = subject(&idp);
    let form = exchange_form(
        &subject,
        &[
            ("audience", "everything-server"),
            ("scope", "tools:echo"),
            ("requested_token_type", ACCESS_TOKEN_TYPE),
        ],
    );
    let (status, body) = token_request(&idp, DRAWBRIDGE, &form).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["issued_token_type"], ACCESS_TOKEN_TYPE);
    assert_eq!(body["expires_in"], 300);
    let issued = body["access_token"].as_str().expect("access_token");
    assert!(verifies_with_jwks(&idp, issued).await);

    let claims = unverified_claims(issued);
    assert_eq!(claims["iss"], idp.issuer);
    assert_eq!(claims["aud"], "everything-server");
    assert_eq!(claims["sub"], "alice");
    assert_eq!(claims["client_id"], "agent-client");
    assert_eq!(claims["act"], json!({ "sub": EXCHANGE_CLIENT_ID }));
    assert_eq!(claims["scope"], "tools:echo");
    assert_eq!(
        claims["exp"].as_u64(),
        claims["iat"].as_u64().map(|t| t + 300)
    );
    assert!(claims["exp"].as_u64().expect("exp") >= unix_now() + 299);

    assert_eq!(idp.token_requests(), 1);
    let recorded = idp.last_token_request().expect("recorded");
    assert!(recorded.contains(&("subject_token".into(), subject.clone())));
    assert!(recorded.contains(&("audience".into(), "everything-server".into())));
}

#[tokio::test]
async fn double_idp_exchange_defaults_scopes_and_audience_and_honours_the_lifetime_setting() {
    let idp = Idp::start().await;
    idp.set_exchange_lifetime(40);
    // Any of the IdP's algorithms makes an acceptable subject.
    for alg in Alg::ALL {
        let subject = idp.mint(alg, &idp.claims(GATEWAY_AUD, USER_SCOPES));
        let form = exchange_form(&subject, &[("resource", "https://upstream.example/mcp")]);
        let (status, body) = token_request(&idp, DRAWBRIDGE, &form).await;
        assert_eq!(status, 200, "{alg:?}: {body}");
        assert_eq!(body["expires_in"], 40);
        let claims = unverified_claims(body["access_token"].as_str().expect("token"));
        assert_eq!(claims["aud"], "https://upstream.example/mcp");
        assert_eq!(claims["scope"], USER_SCOPES);
    }

    let subject = subject(&idp);
    let (status, body) = token_request(&idp, DRAWBRIDGE, &exchange_form(&subject, &[])).await;
    assert_eq!((status, &body["error"]), (400, &json!("invalid_target")));
}

#[tokio::test]
async fn double_idp_exchange_refuses_scope_widening() {
    let idp = Idp::start().await;
    let subject = subject(&idp);
    let form = exchange_form(
        &subject,
        &[
            ("audience", "everything-server"),
            ("scope", "tools:echo admin"),
        ],
    );
    let (status, body) = token_request(&idp, DRAWBRIDGE, &form).await;
    assert_eq!((status, &body["error"]), (400, &json!("invalid_scope")));
}

#[tokio::test]
async fn double_idp_token_endpoint_refuses_unknown_or_wrong_clients() {
    let idp = Idp::start().await;
    let subject = subject(&idp);
    let form = exchange_form(&subject, &[("audience", "everything-server")]);
    for client in [
        None,
        Some((EXCHANGE_CLIENT_ID, "wrong")),
        Some(("someone-else", EXCHANGE_CLIENT_SECRET)),
    ] {
        let (status, body) = token_request(&idp, client, &form).await;
        assert_eq!(
            (status, &body["error"]),
            (401, &json!("invalid_client")),
            "{client:?}"
        );
    }

    // client_secret_post works; a wrong post secret does not; two methods at once is
    // a malformed request.
    let mut post = form.clone();
    post.extend([
        ("client_id", EXCHANGE_CLIENT_ID),
        ("client_secret", EXCHANGE_CLIENT_SECRET),
    ]);
    assert_eq!(token_request(&idp, None, &post).await.0, 200);
    let (status, body) = token_request(&idp, DRAWBRIDGE, &post).await;
    assert_eq!((status, &body["error"]), (400, &json!("invalid_request")));
    let mut wrong = form.clone();
    wrong.extend([("client_id", EXCHANGE_CLIENT_ID), ("client_secret", "nope")]);
    assert_eq!(token_request(&idp, None, &wrong).await.0, 401);
}

#[tokio::test]
async fn double_idp_exchange_refuses_subject_tokens_it_did_not_issue() {
    let idp = Idp::start().await;
    let other = Idp::start().await;
    let claims = idp.claims(GATEWAY_AUD, USER_SCOPES);
    let mut expired = claims.clone();
    expired["exp"] = json!(unix_now() - 10);
    let forged = [
        (
            "foreign key, published kid",
            idp.mint_with_foreign_key("rsa-1", &claims),
        ),
        ("alg none", idp.mint_alg_none(&claims)),
        (
            "HS256 keyed with the public key",
            idp.mint_hs256_with_public_key_pem(&claims),
        ),
        ("another IdP", other.mint(Alg::RS256, &claims)),
        ("expired", idp.mint(Alg::ES256, &expired)),
        ("not a JWT", "opaque-token".to_string()),
    ];
    for (what, token) in &forged {
        let form = exchange_form(token, &[("audience", "everything-server")]);
        let (status, body) = token_request(&idp, DRAWBRIDGE, &form).await;
        assert_eq!(
            (status, &body["error"]),
            (400, &json!("invalid_grant")),
            "{what}"
        );
    }

    let subject = subject(&idp);
    let form = [
        ("grant_type", TOKEN_EXCHANGE_GRANT),
        ("subject_token", subject.as_str()),
        (
            "subject_token_type",
            "urn:ietf:params:oauth:token-type:id_token",
        ),
        ("audience", "everything-server"),
    ];
    let (status, body) = token_request(&idp, DRAWBRIDGE, &form).await;
    assert_eq!((status, &body["error"]), (400, &json!("invalid_request")));
    let (status, body) = token_request(&idp, DRAWBRIDGE, &[("grant_type", "password")]).await;
    assert_eq!(
        (status, &body["error"]),
        (400, &json!("unsupported_grant_type"))
    );
}

#[tokio::test]
async fn double_idp_client_credentials_issues_a_token_for_the_client() {
    let idp = Idp::start().await;
    let form = [
        ("grant_type", "client_credentials"),
        ("audience", "legacy-server"),
        ("scope", "upstream:use"),
    ];
    let (status, body) = token_request(&idp, DRAWBRIDGE, &form).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["token_type"], "Bearer");
    let issued = body["access_token"].as_str().expect("access_token");
    assert!(verifies_with_jwks(&idp, issued).await);
    let claims = unverified_claims(issued);
    assert_eq!(claims["sub"], EXCHANGE_CLIENT_ID);
    assert_eq!(claims["client_id"], EXCHANGE_CLIENT_ID);
    assert_eq!(claims["aud"], "legacy-server");
    assert_eq!(claims["scope"], "upstream:use");
    assert!(claims.get("act").is_none());
    let (status, _) = token_request(&idp, Some((EXCHANGE_CLIENT_ID, "x")), &form).await;
    assert_eq!(status, 401);
}

#[tokio::test]
async fn double_idp_canned_answers_delay_and_outage_are_counted_and_recorded() {
    let idp = Idp::start().await;
    idp.set_token_response(Some((502, "not json".into())));
    idp.set_token_delay(Duration::from_millis(50));
    let form = [("grant_type", "client_credentials")];
    let (status, _) = token_request(&idp, DRAWBRIDGE, &form).await;
    assert_eq!(status, 502);
    idp.set_token_response(None);
    idp.set_down(true);
    let (status, _) = token_request(&idp, DRAWBRIDGE, &[("grant_type", "x")]).await;
    assert_eq!(status, 503);
    assert_eq!(idp.token_requests(), 2);
    assert_eq!(
        idp.last_token_request(),
        Some(vec![("grant_type".to_string(), "x".to_string())])
    );
}

// ---- drawbridge's TokenClient against the IdP -----------------------------------------------

fn token_client(idp: &Idp, auth: ClientAuth) -> TokenClient {
    let http = TokenClient::http_client(Duration::from_secs(5)).expect("HTTP client");
    TokenClient::new(http, idp.token_url().parse().expect("token URL"), auth)
}

#[tokio::test]
async fn drawbridge_client_exchanges_with_form_encoded_basic_credentials() {
    let idp = Idp::start().await;
    idp.register_client("gate:way", "p:ss%w rd");
    let client = token_client(
        &idp,
        ClientAuth::Basic {
            client_id: "gate:way".into(),
            secret: Secret::new("p:ss%w rd".into()),
        },
    );
    let subject = subject(&idp);
    let scopes = vec!["tools:read".to_string()];
    let request = ExchangeRequest {
        subject_token: &subject,
        audience: Some("everything-server"),
        resource: None,
        scopes: &scopes,
    };
    let issued = client.exchange(&request).await.expect("exchange");
    let claims = unverified_claims(issued_token(&issued));
    assert_eq!(claims["act"]["sub"], "gate:way");
    assert_eq!(claims["scope"], "tools:read");

    // The cache in front: one call for repeated look-ups.
    let cache = CredentialCache::new(10);
    for expected in [CacheOutcome::Miss, CacheOutcome::Hit, CacheOutcome::Hit] {
        let key = CacheKey::exchange(
            Arc::from("everything"),
            subject_token_hash(&subject),
            &scopes,
            Some(Arc::from("everything-server")),
            None,
        );
        let (result, outcome) = cache
            .get_or_exchange(key, None, || async { client.exchange(&request).await })
            .await;
        assert!(result.is_ok());
        assert_eq!(outcome, expected);
    }
    assert_eq!(idp.token_requests(), 2);

    // A widened scope comes back as a typed refusal.
    let widened = vec!["admin".to_string()];
    let error = client
        .exchange(&ExchangeRequest {
            scopes: &widened,
            ..request
        })
        .await
        .expect_err("widening refused");
    assert_eq!(
        error,
        ExchangeError::Rejected {
            status: 400,
            error: Some("invalid_scope".into())
        }
    );
}

#[tokio::test]
async fn drawbridge_private_key_jwt_assertions_are_verified_and_not_replayable() {
    let idp = Idp::start().await;
    for (client_id, alg) in [("gw-ec", Alg::ES256), ("gw-rsa", Alg::RS256)] {
        let pem = idp.register_jwt_client(client_id, alg);
        let client = token_client(
            &idp,
            ClientAuth::PrivateKeyJwt {
                client_id: client_id.into(),
                key: SigningKey::from_pem(&pem).expect("signing key"),
                kid: None,
            },
        );
        let issued = client
            .client_credentials(&[], Some("svc"), None)
            .await
            .expect("client credentials");
        assert_eq!(unverified_claims(issued_token(&issued))["sub"], client_id);

        // Replaying the same assertion is refused.
        let recorded = idp.last_token_request().expect("recorded");
        let replay: Vec<(&str, &str)> = recorded
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let (status, body) = token_request(&idp, None, &replay).await;
        assert_eq!(
            (status, &body["error"]),
            (401, &json!("invalid_client")),
            "{alg:?}"
        );
    }

    // A key the IdP never registered for this client.
    let unregistered = Idp::start().await.register_jwt_client("gw-ec", Alg::ES256);
    let client = token_client(
        &idp,
        ClientAuth::PrivateKeyJwt {
            client_id: "gw-ec".into(),
            key: SigningKey::from_pem(&unregistered).expect("signing key"),
            kid: None,
        },
    );
    let error = client
        .client_credentials(&[], None, None)
        .await
        .expect_err("wrong key refused");
    assert_eq!(
        error,
        ExchangeError::Rejected {
            status: 401,
            error: Some("invalid_client".into())
        }
    );
}

/// The token in an issued credential's `Authorization: Bearer` value.
fn issued_token(issued: &drawbridge::exchange::IssuedToken) -> &str {
    let value = issued.authorization.to_str().expect("ASCII header value");
    value.strip_prefix("Bearer ").expect("a bearer credential")
}
