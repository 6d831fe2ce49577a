//! Entra ID on-behalf-of as `upstream_auth`: the upstream receives a token Entra issued
//! for its API on the caller's behalf, never the caller's token; tokens are cached per
//! caller token and scopes, concurrent misses coalesced; both documented client
//! credentials (a secret, a certificate's assertion) work; every failure is refused
//! (never passed through), and a conditional-access claims challenge reaches the client.
//! Against the Entra double of `entra.rs`.

use std::time::Duration;

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use serde_json::{json, Value};

use crate::entra::{
    Entra, GATEWAY_APP, GATEWAY_SECRET, JWT_BEARER_GRANT, MFA_CLAIMS, UPSTREAM_API,
};
use crate::harness::{assert_log_free_of, audit_events, client, log_when, sample, Gateway};
use crate::idp::CLIENT_ASSERTION_TYPE;
use crate::upstream::Upstream;

const RESOURCE: &str = "https://mcp.example.com/x/mcp";

fn secret_block() -> String {
    format!(
        "{{ on_behalf_of: {{ issuer: entra, client_id: {GATEWAY_APP}, client_secret: '{GATEWAY_SECRET}', scopes: ['{UPSTREAM_API}/.default'] }} }}"
    )
}

async fn start(entra: &Entra, up: &Upstream, upstream_auth: &str) -> Gateway {
    let route = format!(
        r#"  - name: x
    match: {{ path: /x/mcp }}
    public_url: {RESOURCE}
    upstream: {{ url: '{}' }}
    auth: {{ issuers: [entra] }}
    upstream_auth: {upstream_auth}
"#,
        up.url("/mcp")
    );
    let issuers = format!("issuers:\n  - name: entra\n    issuer: {}\n", entra.issuer);
    Gateway::start_with(&route, &issuers).await
}

async fn call(gw: &Gateway, token: &str) -> reqwest::Response {
    client()
        .post(gw.url("/x/mcp"))
        .header("authorization", format!("Bearer {token}"))
        .body(
            json!({"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo"}})
                .to_string(),
        )
        .send()
        .await
        .unwrap()
}

/// The bearer token the upstream received on request `i`.
fn upstream_token(up: &Upstream, i: usize) -> String {
    let auth = up.seen()[i].headers["authorization"]
        .to_str()
        .unwrap()
        .to_string();
    auth.strip_prefix("Bearer ").unwrap().to_string()
}

fn claims_of(token: &str) -> Value {
    let part = token.split('.').nth(1).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
}

fn field<'a>(form: &'a [(String, String)], name: &str) -> Option<&'a str> {
    form.iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

#[tokio::test]
async fn obo_upstream_gets_entras_token_for_it_never_the_callers() {
    let (entra, up) = (Entra::start(RESOURCE).await, Upstream::start().await);
    let gw = start(&entra, &up, &secret_block()).await;
    let alice = entra.user_token("alice-oid", json!({}));
    let resp = call(&gw, &alice).await;
    assert_eq!(resp.status(), 200, "{}", gw.log());

    // What Entra received: exactly the documented grant, the caller's token as assertion.
    let form = entra.last_form().unwrap();
    let names: Vec<&str> = form.iter().map(|(k, _)| k.as_str()).collect();
    let mut sorted = names.clone();
    sorted.sort_unstable();
    assert_eq!(
        sorted,
        [
            "assertion",
            "client_id",
            "client_secret",
            "grant_type",
            "requested_token_use",
            "scope"
        ]
    );
    assert_eq!(field(&form, "grant_type"), Some(JWT_BEARER_GRANT));
    assert_eq!(field(&form, "assertion"), Some(alice.as_str()));
    assert_eq!(field(&form, "requested_token_use"), Some("on_behalf_of"));
    assert_eq!(
        field(&form, "scope"),
        Some(format!("{UPSTREAM_API}/.default").as_str())
    );
    assert!(entra.last_headers().unwrap().get("authorization").is_none());

    // What the upstream received: the token Entra issued for its API, for alice.
    let token = upstream_token(&up, 0);
    assert_eq!(entra.issued(), std::slice::from_ref(&token));
    let claims = claims_of(&token);
    assert_eq!(claims["aud"], UPSTREAM_API);
    assert_eq!(claims["oid"], "alice-oid");
    assert_eq!(claims["azp"], GATEWAY_APP);
    assert_ne!(token, alice);

    // Neither the assertion nor the issued token is ever logged.
    let log = gw.log();
    assert_log_free_of(&log, &[&alice, &token, GATEWAY_SECRET]);
}

#[tokio::test]
async fn obo_tokens_are_cached_per_caller_token_and_coalesced() {
    let (entra, up) = (Entra::start(RESOURCE).await, Upstream::start().await);
    let gw = start(&entra, &up, &secret_block()).await;
    let alice = entra.user_token("alice-oid", json!({}));
    entra.set_token_delay(Duration::from_millis(300));
    let concurrent = (0..50).map(|_| call(&gw, &alice));
    for resp in futures_util::future::join_all(concurrent).await {
        assert_eq!(resp.status(), 200);
    }
    assert_eq!(
        entra.token_requests(),
        1,
        "50 concurrent first requests, one grant"
    );
    entra.set_token_delay(Duration::ZERO);
    for _ in 0..200 {
        assert_eq!(call(&gw, &alice).await.status(), 200);
    }
    assert_eq!(
        entra.token_requests(),
        1,
        "200 more requests, still one grant"
    );

    let bob = entra.user_token("bob-oid", json!({}));
    assert_eq!(call(&gw, &bob).await.status(), 200);
    assert_eq!(entra.token_requests(), 2, "another caller, another grant");
    // Alice signs in again: a new token of hers is a new assertion, never served the
    // token obtained with the old one.
    let alice_again = entra.user_token("alice-oid", json!({"uti": "second-sign-in"}));
    assert_eq!(call(&gw, &alice_again).await.status(), 200);
    assert_eq!(entra.token_requests(), 3);

    let issued = entra.issued();
    assert_eq!(issued.len(), 3);
    let seen = up.seen();
    assert_eq!(seen.len(), 252);
    for (i, _) in seen.iter().enumerate() {
        let token = upstream_token(&up, i);
        let expected = match i {
            0..=249 => &issued[0],
            250 => &issued[1],
            _ => &issued[2],
        };
        assert_eq!(&token, expected, "request {i}");
    }
    assert_eq!(claims_of(&issued[1])["oid"], "bob-oid");
    let m = gw.metrics().await;
    assert_eq!(
        sample(
            &m,
            r#"drawbridge_token_exchange_total{result="success",route="x"}"#
        ),
        Some(3.0),
        "{m}"
    );
    assert_eq!(
        sample(
            &m,
            r#"drawbridge_cache_requests_total{cache="exchange",result="miss"}"#
        ),
        Some(3.0),
        "{m}"
    );
}

#[tokio::test]
async fn obo_with_a_certificate_credential() {
    let (entra, up) = (Entra::start(RESOURCE).await, Upstream::start().await);
    let (key, cert) = entra.register_certificate("gw-cert-app");
    let dir = tempfile::tempdir().unwrap();
    let (key_file, cert_file) = (dir.path().join("obo.key"), dir.path().join("obo.crt"));
    std::fs::write(&key_file, key).unwrap();
    std::fs::write(&cert_file, &cert).unwrap();
    let block = format!(
        "{{ on_behalf_of: {{ token_endpoint: '{}', client_id: gw-cert-app, private_key_file: '{}', certificate_file: '{}', scopes: ['{UPSTREAM_API}/tools.echo'] }} }}",
        entra.token_endpoint(),
        key_file.display(),
        cert_file.display()
    );
    let gw = start(&entra, &up, &block).await;
    let alice = entra.user_token("alice-oid", json!({}));
    assert_eq!(call(&gw, &alice).await.status(), 200, "{}", gw.log());
    let form = entra.last_form().unwrap();
    assert_eq!(field(&form, "client_id"), Some("gw-cert-app"));
    assert_eq!(
        field(&form, "client_assertion_type"),
        Some(CLIENT_ASSERTION_TYPE)
    );
    assert!(field(&form, "client_secret").is_none());
    let assertion = field(&form, "client_assertion").unwrap();
    let header: Value = serde_json::from_slice(
        &URL_SAFE_NO_PAD
            .decode(assertion.split('.').next().unwrap())
            .unwrap(),
    )
    .unwrap();
    assert_eq!(header["alg"], "RS256");
    assert!(header["x5t#S256"].is_string(), "{header}");
    let claims = claims_of(&upstream_token(&up, 0));
    assert_eq!(claims["azp"], "gw-cert-app");
    assert_eq!(claims["scp"], "tools.echo");
    assert_eq!(entra.issued().len(), 1);
}

/// Every failure is refused, none passes anything through, and the upstream is never
/// contacted; a conditional-access claims challenge reaches the client as a 403 whose
/// `WWW-Authenticate` carries it.
#[tokio::test]
async fn obo_failures_refuse_and_forward_nothing() {
    let (entra, up) = (Entra::start(RESOURCE).await, Upstream::start().await);
    let gw = start(&entra, &up, &secret_block()).await;

    entra.require_mfa("mallory-oid");
    let mallory = entra.user_token("mallory-oid", json!({}));
    let resp = call(&gw, &mallory).await;
    assert_eq!(resp.status(), 403);
    let challenge = resp.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .to_string();
    assert_eq!(
        challenge,
        format!(
            r#"Bearer resource_metadata="https://mcp.example.com/.well-known/oauth-protected-resource/x/mcp", error="insufficient_claims", error_description="the authorization server requires a new sign-in meeting its conditions", claims="{}""#,
            STANDARD.encode(MFA_CLAIMS)
        )
    );
    let body: Value = resp.json().await.unwrap();
    assert_eq!(
        (body["id"].as_i64(), body["error"]["code"].as_i64()),
        (Some(1), Some(-32006))
    );

    // (case, user, canned answer, Entra down, status)
    type Case<'a> = (&'a str, &'a str, Option<(u16, String)>, bool, u16);
    entra.withhold_consent("carol-oid");
    let cases: Vec<Case> = vec![
        ("consent required (AADSTS65001)", "carol-oid", None, false, 403),
        (
            "invalid_client (AADSTS7000215)",
            "dave-oid",
            Some((401, r#"{"error":"invalid_client","error_description":"AADSTS7000215: Invalid client secret provided.","error_codes":[7000215]}"#.into())),
            false,
            502,
        ),
        ("server error", "erin-oid", Some((500, "oops".into())), false, 503),
        ("throttled", "frank-oid", Some((429, r#"{"error":"temporarily_unavailable"}"#.into())), false, 503),
        ("Entra down", "grace-oid", None, true, 503),
        ("garbage success", "heidi-oid", Some((200, "<html>".into())), false, 503),
        (
            "scope beyond the request",
            "ivan-oid",
            Some((200, json!({"token_type":"Bearer","scope":"https://graph.microsoft.com/Mail.Read","expires_in":3599,"access_token":"wider"}).to_string())),
            false,
            502,
        ),
        (
            "MAC token type",
            "judy-oid",
            Some((200, json!({"token_type":"MAC","expires_in":3599,"access_token":"x"}).to_string())),
            false,
            502,
        ),
    ];
    let mut tokens = vec![mallory.clone()];
    for (case, user, canned, down, status) in cases {
        entra.set_token_response(canned);
        entra.set_down(down);
        let token = entra.user_token(user, json!({}));
        let resp = call(&gw, &token).await;
        assert_eq!(resp.status().as_u16(), status, "{case}");
        if status == 503 {
            assert_eq!(resp.headers()["retry-after"], "5", "{case}");
        }
        assert!(
            resp.headers().get("www-authenticate").is_none(),
            "{case}: only a claims challenge is passed on"
        );
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["error"]["code"], -32006, "{case}: {body}");
        assert!(
            !body.to_string().contains("AADSTS"),
            "{case}: no passthrough"
        );
        entra.set_down(false);
        tokens.push(token);
    }
    entra.set_token_response(None);
    assert!(up.seen().is_empty(), "the upstream received a request");
    assert_eq!(up.connections(), 0);

    let label = r#"drawbridge_token_exchange_total{result="claims_challenge",route="x"}"#;
    let m = gw.metrics_when(label, 1.0).await;
    assert_eq!(sample(&m, label), Some(1.0), "{m}");
    let log = log_when(&gw, |log| {
        audit_events(log, "upstream_credential_failed").len() >= 9
    })
    .await;
    let events = audit_events(&log, "upstream_credential_failed");
    assert_eq!(events.len(), 9, "{events:?}");
    assert_eq!(events[0]["subject"], "mallory-oid");
    let secrets: Vec<&str> = tokens.iter().map(String::as_str).collect();
    assert_log_free_of(&log, &secrets);
    assert_log_free_of(&log, &[&STANDARD.encode(MFA_CLAIMS), "capolids", "AADSTS"]);
}
