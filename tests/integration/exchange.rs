//! No token passthrough: the upstream receives a token issued for it by RFC 8693 token
//! exchange (or a client-credentials token, a static header, nothing), never the
//! caller's. Caching, coalescing, downscoping and every failure mode.

use std::time::Duration;

use serde_json::{json, Value};

use crate::harness::{client, sample, Gateway};
use crate::idp::{unverified_claims, Alg, Idp, EXCHANGE_CLIENT_ID, EXCHANGE_CLIENT_SECRET};
use crate::upstream::Upstream;

const RESOURCE: &str = "https://mcp.example.com/x/mcp";

fn route(up: &Upstream, upstream_auth: &str) -> String {
    format!(
        r#"  - name: x
    match: {{ path: /x/mcp }}
    public_url: {RESOURCE}
    upstream: {{ url: '{}' }}
    auth: {{ issuers: [corp], required_scopes: [mcp:tools] }}
    upstream_auth: {upstream_auth}
    policy:
      tools:
        echo: [tools:echo]
        "get-*": [tools:read]
"#,
        up.url("/mcp")
    )
}

fn exchange_block(scopes: &str) -> String {
    format!("{{ token_exchange: {{ issuer: corp, client_id: {EXCHANGE_CLIENT_ID}, client_secret: {EXCHANGE_CLIENT_SECRET}, audience: upstream-aud, scopes: {scopes} }} }}")
}

async fn start(idp: &Idp, up: &Upstream, upstream_auth: &str) -> Gateway {
    let issuers = format!("issuers:\n  - name: corp\n    issuer: {}\n", idp.issuer);
    Gateway::start_with(&route(up, upstream_auth), &issuers).await
}

fn user_token(idp: &Idp, sub: &str) -> String {
    let mut claims = idp.claims(RESOURCE, "mcp:tools tools:echo tools:read");
    claims["sub"] = sub.into();
    idp.mint(Alg::RS256, &claims)
}

async fn call(gw: &Gateway, token: &str, tool: &str) -> reqwest::Response {
    client()
        .post(gw.url("/x/mcp"))
        .header("authorization", format!("Bearer {token}"))
        .body(
            json!({"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":tool}})
                .to_string(),
        )
        .send()
        .await
        .unwrap()
}

/// The token the upstream received on request `i`, decoded.
fn upstream_claims(up: &Upstream, i: usize) -> Value {
    let auth = up.seen()[i].headers["authorization"]
        .to_str()
        .unwrap()
        .to_string();
    let token = auth.strip_prefix("Bearer ").unwrap();
    unverified_claims(token)
}

/// The invariant, on every request the upstream ever saw.
fn never_the_callers_token(up: &Upstream, tokens: &[&str]) {
    for req in up.seen() {
        for value in req.headers.values() {
            let v = value.to_str().unwrap_or_default();
            for t in tokens {
                assert!(!v.contains(t), "the caller's token reached the upstream");
            }
        }
    }
}

#[tokio::test]
async fn upstream_gets_an_audience_bound_downscoped_token() {
    let (idp, up) = (Idp::start().await, Upstream::start().await);
    let gw = start(&idp, &up, &exchange_block("per_operation")).await;
    let alice = user_token(&idp, "alice");
    assert_eq!(call(&gw, &alice, "echo").await.status(), 200);
    assert_eq!(call(&gw, &alice, "get-env").await.status(), 200);
    let first = upstream_claims(&up, 0);
    assert_eq!(first["aud"], "upstream-aud");
    assert_eq!(first["sub"], "alice");
    assert_eq!(
        first["scope"], "tools:echo",
        "calling echo yields echo's scopes only"
    );
    assert_eq!(first["act"]["sub"], EXCHANGE_CLIENT_ID);
    assert_eq!(upstream_claims(&up, 1)["scope"], "tools:read");
    let form = idp.last_token_request().unwrap();
    assert!(form.contains(&("subject_token".to_string(), alice.clone())));
    never_the_callers_token(&up, &[&alice]);
}

#[tokio::test]
async fn exchanges_are_cached_and_coalesced() {
    let (idp, up) = (Idp::start().await, Upstream::start().await);
    let gw = start(&idp, &up, &exchange_block("[tools:echo]")).await;
    let alice = user_token(&idp, "alice");
    idp.set_token_delay(Duration::from_millis(300));
    let concurrent = (0..100).map(|_| call(&gw, &alice, "echo"));
    for resp in futures_util::future::join_all(concurrent).await {
        assert_eq!(resp.status(), 200);
    }
    assert_eq!(
        idp.token_requests(),
        1,
        "100 concurrent first requests, one exchange"
    );
    idp.set_token_delay(Duration::ZERO);
    for _ in 0..1000 {
        assert_eq!(call(&gw, &alice, "echo").await.status(), 200);
    }
    assert_eq!(
        idp.token_requests(),
        1,
        "1,000 sequential requests, one exchange"
    );
    let bob = user_token(&idp, "bob");
    assert_eq!(call(&gw, &bob, "echo").await.status(), 200);
    assert_eq!(idp.token_requests(), 2, "a new user, a new exchange");
    let m = gw.metrics().await;
    assert_eq!(
        sample(
            &m,
            r#"drawbridge_cache_requests_total{cache="exchange",result="miss"}"#
        ),
        Some(2.0),
        "{m}"
    );
    assert_eq!(
        sample(
            &m,
            r#"drawbridge_token_exchange_total{result="success",route="x"}"#
        ),
        Some(2.0)
    );
    never_the_callers_token(&up, &[&alice, &bob]);
}

#[tokio::test]
async fn an_expiring_upstream_token_is_exchanged_again() {
    let (idp, up) = (Idp::start().await, Upstream::start().await);
    let gw = start(&idp, &up, &exchange_block("[tools:echo]")).await;
    idp.set_exchange_lifetime(6); // kept about 5.4 s
    let alice = user_token(&idp, "alice");
    assert_eq!(call(&gw, &alice, "echo").await.status(), 200);
    assert_eq!(call(&gw, &alice, "echo").await.status(), 200);
    assert_eq!(idp.token_requests(), 1);
    let first = upstream_claims(&up, 0);
    assert_eq!(upstream_claims(&up, 1)["jti"], first["jti"], "cached");
    // Wait (bounded) until the exchanged token has expired by the clock.
    let exp = first["exp"].as_u64().unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while crate::idp::unix_now() <= exp {
        assert!(std::time::Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(call(&gw, &alice, "echo").await.status(), 200);
    assert_eq!(idp.token_requests(), 2);
    let renewed = upstream_claims(&up, 2);
    assert_ne!(
        renewed["jti"], first["jti"],
        "an expired token was sent upstream"
    );
    assert!(renewed["exp"].as_u64().unwrap() > crate::idp::unix_now());
}

#[tokio::test]
async fn exchange_failures_refuse_and_forward_nothing() {
    let (idp, up) = (Idp::start().await, Upstream::start().await);
    let gw = start(&idp, &up, &exchange_block("per_operation")).await;
    // (case, canned token-endpoint answer, IdP down, expected status)
    type Case<'a> = (&'a str, Option<(u16, String)>, bool, u16);
    let cases: Vec<Case> = vec![
        (
            "invalid_grant",
            Some((400, r#"{"error":"invalid_grant"}"#.into())),
            false,
            403,
        ),
        (
            "invalid_target",
            Some((400, r#"{"error":"invalid_target"}"#.into())),
            false,
            403,
        ),
        (
            "unauthorized_client",
            Some((400, r#"{"error":"unauthorized_client"}"#.into())),
            false,
            403,
        ),
        ("server error", Some((500, "oops".into())), false, 503),
        (
            "malformed answer",
            Some((200, r#"{"token_type":"Bearer"}"#.into())),
            false,
            502,
        ),
        (
            "MAC token type",
            Some((200, r#"{"access_token":"x","token_type":"MAC"}"#.into())),
            false,
            502,
        ),
        ("authorization server down", None, true, 503),
    ];
    for (i, (case, canned, down, status)) in cases.into_iter().enumerate() {
        idp.set_token_response(canned);
        idp.set_down(down);
        // A fresh user each time, so no cached token hides the failure.
        let token = user_token(&idp, &format!("user-{i}"));
        let resp = call(&gw, &token, "echo").await;
        assert_eq!(resp.status().as_u16(), status, "{case}");
        if status == 503 {
            assert_eq!(resp.headers()["retry-after"], "5", "{case}");
        }
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["id"], 1, "{case}: JSON-RPC shaped");
        assert!(!body.to_string().contains(&token), "{case}");
        idp.set_down(false);
    }
    assert!(up.seen().is_empty(), "the upstream received a request");
    assert_eq!(up.connections(), 0);
}

#[tokio::test]
async fn client_credentials_static_and_none() {
    let (idp, up) = (Idp::start().await, Upstream::start().await);
    let cc = format!("{{ client_credentials: {{ issuer: corp, client_id: {EXCHANGE_CLIENT_ID}, client_secret: {EXCHANGE_CLIENT_SECRET}, client_auth: client_secret_post, audience: upstream-aud }} }}");
    let gw = start(&idp, &up, &cc).await;
    let alice = user_token(&idp, "alice");
    assert_eq!(call(&gw, &alice, "echo").await.status(), 200);
    let claims = upstream_claims(&up, 0);
    assert_eq!(
        claims["sub"], EXCHANGE_CLIENT_ID,
        "a service identity, not the user"
    );
    assert_eq!(claims["aud"], "upstream-aud");
    drop(gw);

    std::env::set_var("DRAWBRIDGE_TEST_STATIC_KEY", "api-key-123");
    let gw = start(
        &idp,
        &up,
        "{ static: { header: X-Api-Key, value: '${DRAWBRIDGE_TEST_STATIC_KEY}' } }",
    )
    .await;
    assert_eq!(call(&gw, &alice, "echo").await.status(), 200);
    let req = &up.seen()[1];
    assert_eq!(req.headers["x-api-key"], "api-key-123");
    assert!(req.headers.get("authorization").is_none());
    drop(gw);

    let gw = start(&idp, &up, "{ none: {} }").await;
    assert_eq!(call(&gw, &alice, "echo").await.status(), 200);
    let req = &up.seen()[2];
    assert!(req.headers.get("authorization").is_none());
    assert!(req.headers.get("x-api-key").is_none());
    never_the_callers_token(&up, &[&alice]);
}

#[tokio::test]
async fn private_key_jwt_client_authentication() {
    let (idp, up) = (Idp::start().await, Upstream::start().await);
    let pem = idp.register_jwt_client("gw-jwt", Alg::ES256);
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("client.pem");
    std::fs::write(&key, pem).unwrap();
    let block = format!(
        "{{ token_exchange: {{ issuer: corp, client_id: gw-jwt, client_auth: private_key_jwt, private_key_file: {}, audience: upstream-aud, scopes: per_operation }} }}",
        key.display()
    );
    let gw = start(&idp, &up, &block).await;
    let alice = user_token(&idp, "alice");
    assert_eq!(
        call(&gw, &alice, "echo").await.status(),
        200,
        "{}",
        gw.log()
    );
    let form = idp.last_token_request().unwrap();
    assert!(form.iter().any(|(k, _)| k == "client_assertion"));
    assert_eq!(upstream_claims(&up, 0)["act"]["sub"], "gw-jwt");
}

#[tokio::test]
async fn denied_and_unreachable_exchanges_are_refused_and_audited() {
    let (idp, up) = (Idp::start().await, Upstream::start().await);
    let gw = start(&idp, &up, &exchange_block("per_operation")).await;
    let mut tokens = Vec::new();
    for (i, code) in ["access_denied", "invalid_scope"].into_iter().enumerate() {
        idp.set_token_response(Some((400, format!(r#"{{"error":"{code}"}}"#))));
        let token = user_token(&idp, &format!("denied-{i}"));
        let resp = call(&gw, &token, "echo").await;
        assert_eq!(resp.status(), 403, "{code}");
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["error"]["code"], -32006, "{code}: {body}");
        assert_eq!(body["id"], 1, "{code}");
        tokens.push(token);
    }
    idp.set_token_response(None);

    // A token endpoint nobody listens on.
    let closed = crate::harness::free_port();
    let unreachable = format!("{{ token_exchange: {{ token_endpoint: 'http://127.0.0.1:{closed}/token', client_id: {EXCHANGE_CLIENT_ID}, client_secret: {EXCHANGE_CLIENT_SECRET}, audience: upstream-aud, scopes: per_operation }} }}");
    let gw2 = start(&idp, &up, &unreachable).await;
    let token = user_token(&idp, "carol");
    let resp = call(&gw2, &token, "echo").await;
    assert_eq!(resp.status(), 503);
    assert_eq!(resp.headers()["retry-after"], "5");
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], -32006, "{body}");
    tokens.push(token);

    assert!(up.seen().is_empty(), "the upstream received a request");
    assert_eq!(up.connections(), 0);
    let rejected = r#"drawbridge_token_exchange_total{result="rejected",route="x"}"#;
    let m = gw.metrics_when(rejected, 2.0).await;
    assert_eq!(sample(&m, rejected), Some(2.0), "{m}");
    let transport = r#"drawbridge_token_exchange_total{result="transport_error",route="x"}"#;
    let m = gw2.metrics_when(transport, 1.0).await;
    assert_eq!(sample(&m, transport), Some(1.0), "{m}");

    for (gw, subjects) in [(&gw, vec!["denied-0", "denied-1"]), (&gw2, vec!["carol"])] {
        let log = crate::harness::log_when(gw, |log| {
            crate::harness::audit_events(log, "upstream_credential_failed").len() >= subjects.len()
        })
        .await;
        let events = crate::harness::audit_events(&log, "upstream_credential_failed");
        let seen: Vec<&str> = events
            .iter()
            .filter_map(|e| e["subject"].as_str())
            .collect();
        assert_eq!(seen, subjects, "{events:?}");
        assert!(events.iter().all(|e| e["route"] == "x"));
        let secrets: Vec<&str> = tokens.iter().map(String::as_str).collect();
        crate::harness::assert_log_free_of(&log, &secrets);
    }
}
