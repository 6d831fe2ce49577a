//! The hardened credential paths: introspection floods (coalesced, negatively cached,
//! bounded), downscoping that never fails open, bindings that do not survive a reload
//! that changes what they mean, one process-wide session key, JWKS fetches that never
//! evict usable keys, token kinds (JWT `typ`, ID tokens, introspected refresh tokens),
//! one algorithm per key, and RFC 6749 Basic encoding for introspection. Each security
//! case asserts on what the authorization server or the upstream received.

use std::time::Duration;

use serde_json::json;

use crate::harness::{client, route, sample, sealed_session, Gateway};
use crate::idp::{Alg, Idp, EXCHANGE_CLIENT_ID, EXCHANGE_CLIENT_SECRET, INTROSPECTION_CLIENT_ID};
use crate::upstream::Upstream;

const RESOURCE: &str = "https://mcp.example.com/secure/mcp";
const PING: &str = r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#;

fn secure_route(up: &Upstream, upstream_auth: &str) -> String {
    format!(
        "  - name: secure\n    match: {{ path: /secure/mcp }}\n    public_url: {RESOURCE}\n    upstream: {{ url: '{}' }}\n    auth: {{ issuers: [corp], required_scopes: [mcp:tools] }}\n{upstream_auth}",
        up.url("/mcp")
    )
}

fn issuer_yaml(idp: &Idp, extra: &str) -> String {
    format!(
        "issuers:\n  - name: corp\n    issuer: {}\n{extra}",
        idp.issuer
    )
}

async fn post_with(gw: &Gateway, token: &str, body: &str) -> reqwest::Response {
    client()
        .post(gw.url("/secure/mcp"))
        .header("authorization", format!("Bearer {token}"))
        .body(body.to_string())
        .send()
        .await
        .unwrap()
}

async fn ping(gw: &Gateway, token: &str) -> reqwest::Response {
    post_with(gw, token, PING).await
}

// ---- 1. introspection floods ------------------------------------------------------------

#[tokio::test]
async fn introspection_floods_are_coalesced_negatively_cached_and_bounded() {
    let (idp, up) = (Idp::start().await, Upstream::start().await);
    let introspection = format!(
        "    introspection: {{ client_id: {INTROSPECTION_CLIENT_ID}, client_secret: introspect-secret, max_in_flight: 2 }}\n"
    );
    let gw = Gateway::start_with(&secure_route(&up, ""), &issuer_yaml(&idp, &introspection)).await;
    idp.set_introspection_delay(Duration::from_millis(400));

    // One junk token, 40 concurrent requests: one call to the authorization server.
    let same = (0..40).map(|_| ping(&gw, "junk-token-0"));
    for resp in futures_util::future::join_all(same).await {
        assert_eq!(resp.status(), 401);
    }
    assert_eq!(
        idp.introspections(),
        1,
        "concurrent lookups were not merged"
    );

    // The same junk again, one after another: answered from the negative cache.
    for _ in 0..20 {
        assert_eq!(ping(&gw, "junk-token-0").await.status(), 401);
    }
    assert_eq!(
        idp.introspections(),
        1,
        "a refused token was introspected again"
    );

    // 30 distinct junk tokens at once: at most `max_in_flight` calls; the rest get 503.
    // (The slow answer keeps both slots taken while all 30 arrive, even on a busy host.)
    idp.set_introspection_delay(Duration::from_millis(1500));
    let distinct = (1..=30).map(|i| {
        let gw = &gw;
        async move { ping(gw, &format!("junk-token-{i}")).await }
    });
    let answers = futures_util::future::join_all(distinct).await;
    let busy: Vec<_> = answers.iter().filter(|r| r.status() == 503).collect();
    assert!(
        idp.introspections() <= 1 + 4,
        "the flood reached the authorization server: {} calls",
        idp.introspections()
    );
    assert!(busy.len() >= 20, "only {} refused as busy", busy.len());
    assert_eq!(busy[0].headers()["retry-after"], "1");
    assert!(answers
        .iter()
        .all(|r| r.status() == 503 || r.status() == 401));

    // A real opaque token still works once the flood is over.
    idp.set_introspection_delay(Duration::ZERO);
    let exp = crate::idp::unix_now() as i64 + 300;
    idp.register_opaque(
        "opaque-good",
        json!({"active": true, "iss": idp.issuer, "sub": "bob", "aud": RESOURCE, "scope": "mcp:tools", "exp": exp}),
    );
    assert_eq!(ping(&gw, "opaque-good").await.status(), 200);
    assert_eq!(
        up.seen().len(),
        1,
        "only the good token reached the upstream"
    );

    let m = gw
        .metrics_when(
            r#"drawbridge_cache_requests_total{cache="introspection_negative",result="hit"}"#,
            20.0,
        )
        .await;
    let value = |name: &str| sample(&m, name).unwrap_or_default();
    assert!(
        value(r#"drawbridge_cache_requests_total{cache="introspection",result="coalesced"}"#)
            >= 39.0,
        "{m}"
    );
    assert_eq!(
        value(r#"drawbridge_cache_requests_total{cache="introspection_negative",result="hit"}"#),
        20.0
    );
    assert!(
        value(r#"drawbridge_auth_failures_total{reason="introspection_busy",route="secure"}"#)
            >= 20.0,
        "{m}"
    );
}

// ---- 3. per_operation downscoping ---------------------------------------------------------

fn exchange_route(up: &Upstream, extra: &str) -> String {
    secure_route(
        up,
        &format!(
            "    upstream_auth:\n      token_exchange: {{ issuer: corp, client_id: {EXCHANGE_CLIENT_ID}, client_secret: {EXCHANGE_CLIENT_SECRET}, audience: upstream-aud, scopes: per_operation{extra} }}\n    policy:\n      tools:\n        echo: [tools:echo]\n"
        ),
    )
}

fn user_token(idp: &Idp, sub: &str) -> String {
    let mut claims = idp.claims(RESOURCE, "mcp:tools tools:echo");
    claims["sub"] = sub.into();
    idp.mint(Alg::RS256, &claims)
}

const ECHO: &str = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo"}}"#;

fn requested_scope(idp: &Idp) -> Option<String> {
    idp.last_token_request()?
        .into_iter()
        .find(|(k, _)| k == "scope")
        .map(|(_, v)| v)
}

#[tokio::test]
async fn per_operation_never_asks_for_the_default_scope() {
    let (idp, up) = (Idp::start().await, Upstream::start().await);
    let gw = Gateway::start_with(&exchange_route(&up, ""), &issuer_yaml(&idp, "")).await;
    // `ping` needs no scope; without base_scopes nothing is asked for and nothing sent.
    let resp = ping(&gw, &user_token(&idp, "alice")).await;
    assert_eq!(resp.status(), 502);
    assert_eq!(
        idp.token_requests(),
        0,
        "an unscoped exchange was requested"
    );
    assert!(up.seen().is_empty());

    // An answer granting more than requested is refused; so is N_A without its type.
    for (i, canned) in [
        r#"{"access_token":"t","token_type":"Bearer","scope":"tools:echo admin"}"#,
        r#"{"access_token":"t","token_type":"N_A"}"#,
    ]
    .into_iter()
    .enumerate()
    {
        idp.set_token_response(Some((200, canned.to_string())));
        let resp = post_with(&gw, &user_token(&idp, &format!("u{i}")), ECHO).await;
        assert_eq!(resp.status(), 502, "{canned}");
    }
    assert!(
        up.seen().is_empty(),
        "an unusable token reached the upstream"
    );
    idp.set_token_response(None);
    assert_eq!(
        post_with(&gw, &user_token(&idp, "carol"), ECHO)
            .await
            .status(),
        200
    );
    assert_eq!(requested_scope(&idp).as_deref(), Some("tools:echo"));
}

#[tokio::test]
async fn per_operation_uses_base_scopes_when_the_operation_needs_none() {
    let (idp, up) = (Idp::start().await, Upstream::start().await);
    let gw = Gateway::start_with(
        &exchange_route(&up, ", base_scopes: [mcp:tools]"),
        &issuer_yaml(&idp, ""),
    )
    .await;
    assert_eq!(ping(&gw, &user_token(&idp, "alice")).await.status(), 200);
    assert_eq!(requested_scope(&idp).as_deref(), Some("mcp:tools"));
    assert_eq!(up.seen().len(), 1);
}

// ---- 4 and 5. bindings across reloads ---------------------------------------------------

async fn eventually_reloaded(gw: &Gateway, n: f64) {
    let name = r#"drawbridge_config_reloads_total{result="success"}"#;
    let m = gw.metrics_when(name, n).await;
    assert_eq!(sample(&m, name), Some(n), "reload {n} not applied");
}

async fn with_session(gw: &Gateway, path: &str, sealed: &str) -> u16 {
    client()
        .post(gw.url(path))
        .header("mcp-session-id", sealed)
        .body(PING)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test]
async fn without_session_keys_a_reload_keeps_sessions_open() {
    let up = Upstream::start().await;
    let routes = route("a", "/a/mcp", &up.url("/mcp"));
    let gw = Gateway::start(&routes).await;
    let sealed = sealed_session(&gw, "/a/mcp").await;
    gw.reload_with(&routes, "");
    eventually_reloaded(&gw, 1.0).await;
    assert_eq!(with_session(&gw, "/a/mcp", &sealed).await, 200);
    let last = up.seen().pop().unwrap();
    assert!(last.headers.contains_key("mcp-session-id"));
}

#[tokio::test]
async fn a_reload_that_repoints_the_upstream_invalidates_sealed_sessions() {
    let (a, b) = (Upstream::start().await, Upstream::start().await);
    // Configured keys: the same key seals before and after the reload.
    let keys = "sessions:\n  keys:\n    - { id: k1, secret: 'c2Vzc2lvbi1rZXktZm9yLXRlc3RzLTAxMjM0NTY3ODk=' }\n";
    let gw = Gateway::start_with(&route("r", "/r/mcp", &a.url("/mcp")), keys).await;
    let sealed = sealed_session(&gw, "/r/mcp").await;
    // A reload that changes nothing keeps the session.
    gw.reload_with(&route("r", "/r/mcp", &a.url("/mcp")), keys);
    eventually_reloaded(&gw, 1.0).await;
    assert_eq!(with_session(&gw, "/r/mcp", &sealed).await, 200);
    gw.reload_with(&route("r", "/r/mcp", &b.url("/mcp")), keys);
    eventually_reloaded(&gw, 2.0).await;
    assert_eq!(with_session(&gw, "/r/mcp", &sealed).await, 404);
    assert!(
        b.seen().is_empty(),
        "the old upstream's session id reached the new upstream"
    );
}

#[tokio::test]
async fn a_reload_that_rotates_the_client_or_repoints_the_upstream_exchanges_again() {
    let (idp, a, b) = (
        Idp::start().await,
        Upstream::start().await,
        Upstream::start().await,
    );
    idp.register_client("rotated", "rotated-secret");
    let exchange = |up: &Upstream, client: &str, secret: &str| {
        secure_route(
            up,
            &format!("    upstream_auth:\n      token_exchange: {{ issuer: corp, client_id: {client}, client_secret: {secret}, audience: upstream-aud, scopes: [mcp:tools] }}\n"),
        )
    };
    let issuers = issuer_yaml(&idp, "");
    let gw = Gateway::start_with(
        &exchange(&a, EXCHANGE_CLIENT_ID, EXCHANGE_CLIENT_SECRET),
        &issuers,
    )
    .await;
    let alice = user_token(&idp, "alice");
    assert_eq!(ping(&gw, &alice).await.status(), 200);
    assert_eq!(ping(&gw, &alice).await.status(), 200);
    assert_eq!(idp.token_requests(), 1);

    gw.reload_with(
        &exchange(&b, EXCHANGE_CLIENT_ID, EXCHANGE_CLIENT_SECRET),
        &issuers,
    );
    eventually_reloaded(&gw, 1.0).await;
    assert_eq!(ping(&gw, &alice).await.status(), 200);
    assert_eq!(
        idp.token_requests(),
        2,
        "the token cached for the old upstream was served to the new one"
    );

    gw.reload_with(&exchange(&b, "rotated", "rotated-secret"), &issuers);
    eventually_reloaded(&gw, 2.0).await;
    assert_eq!(ping(&gw, &alice).await.status(), 200);
    assert_eq!(
        idp.token_requests(),
        3,
        "a token obtained with the rotated-out client was still served"
    );
}

// ---- typ, ID tokens, one algorithm per key, introspected token kinds ---------------------

#[tokio::test]
async fn only_access_tokens_are_accepted() {
    let (idp, up) = (Idp::start().await, Upstream::start().await);
    let gw = Gateway::start_with(&secure_route(&up, ""), &issuer_yaml(&idp, "")).await;
    let claims = idp.claims(RESOURCE, "mcp:tools");
    let with_typ =
        |typ: serde_json::Value| idp.mint_with_header(Alg::RS256, &json!({"typ": typ}), &claims);
    for (case, token) in [
        ("at+jwt", with_typ(json!("at+jwt"))),
        ("application/at+jwt", with_typ(json!("application/at+jwt"))),
        ("JWT (Entra ID, Keycloak)", with_typ(json!("JWT"))),
        ("no typ", with_typ(serde_json::Value::Null)),
    ] {
        assert_eq!(ping(&gw, &token).await.status(), 200, "{case}");
    }
    let seen = up.seen().len();
    let mut id_token = claims.clone();
    id_token["at_hash"] = json!("abc");
    id_token["nonce"] = json!("n");
    let mut keycloak_refresh = claims.clone();
    keycloak_refresh["typ"] = json!("Refresh");
    for (case, token) in [
        ("logout+jwt", with_typ(json!("logout+jwt"))),
        ("secevent+jwt", with_typ(json!("secevent+jwt"))),
        (
            "ID token",
            idp.mint_with_header(Alg::RS256, &json!({"typ": "JWT"}), &id_token),
        ),
        (
            "Keycloak refresh token",
            idp.mint(Alg::RS256, &keycloak_refresh),
        ),
    ] {
        let resp = ping(&gw, &token).await;
        assert_eq!(resp.status(), 401, "{case}");
        let challenge = resp.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .to_string();
        assert!(
            challenge.contains("not an access token"),
            "{case}: {challenge}"
        );
    }
    assert_eq!(
        up.seen().len(),
        seen,
        "a token of another kind reached the upstream"
    );
}

#[tokio::test]
async fn strict_issuers_require_at_jwt_and_alg_less_keys_verify_one_algorithm() {
    let (idp, up) = (Idp::start().await, Upstream::start().await);
    let gw = Gateway::start_with(
        &secure_route(&up, ""),
        &issuer_yaml(&idp, "    token_types: [at+jwt]\n"),
    )
    .await;
    let claims = idp.claims(RESOURCE, "mcp:tools");
    assert_eq!(
        ping(&gw, &idp.mint(Alg::RS256, &claims)).await.status(),
        200
    );
    let plain = idp.mint_with_header(Alg::RS256, &json!({"typ": "JWT"}), &claims);
    assert_eq!(ping(&gw, &plain).await.status(), 401);
    // The IdP's RSA JWK has no `alg`: by default it verifies RS256 only.
    assert_eq!(
        ping(&gw, &idp.mint(Alg::PS256, &claims)).await.status(),
        401
    );
    assert_eq!(up.seen().len(), 1);

    let ps = Gateway::start_with(
        &secure_route(&up, ""),
        &issuer_yaml(&idp, "    algorithms: [PS256, ES256]\n"),
    )
    .await;
    assert_eq!(
        ping(&ps, &idp.mint(Alg::PS256, &claims)).await.status(),
        200
    );
    assert_eq!(
        ping(&ps, &idp.mint(Alg::RS256, &claims)).await.status(),
        401
    );
}

#[tokio::test]
async fn introspected_refresh_tokens_are_refused_unless_the_issuer_accepts_them() {
    let (idp, up) = (Idp::start().await, Upstream::start().await);
    let exp = crate::idp::unix_now() as i64 + 300;
    let answer = |t: &str| json!({"active": true, "iss": idp.issuer, "sub": "bob", "aud": RESOURCE, "scope": "mcp:tools", "exp": exp, "token_type": t});
    idp.register_opaque("opaque-access", answer("access_token"));
    idp.register_opaque("opaque-refresh", answer("refresh_token"));
    // A secret with '%', '+' and ':' works only when form-encoded inside Basic (RFC 6749
    // §2.3.1), which the test IdP checks: sent raw, it decodes to "pAss w:rd".
    idp.set_introspection_secret("p%41ss+w:rd");
    let gw = Gateway::start_with(
        &secure_route(&up, ""),
        &issuer_yaml(
            &idp,
            &format!("    introspection: {{ client_id: {INTROSPECTION_CLIENT_ID}, client_secret: 'p%41ss+w:rd' }}\n"),
        ),
    )
    .await;
    assert_eq!(
        ping(&gw, "opaque-access").await.status(),
        200,
        "introspection client authentication failed"
    );
    assert_eq!(ping(&gw, "opaque-refresh").await.status(), 401);
    assert_eq!(up.seen().len(), 1);

    let lenient = Gateway::start_with(
        &secure_route(&up, ""),
        &issuer_yaml(
            &idp,
            &format!("    introspection: {{ client_id: {INTROSPECTION_CLIENT_ID}, client_secret: 'p%41ss+w:rd', token_types: [access_token, refresh_token] }}\n"),
        ),
    )
    .await;
    assert_eq!(ping(&lenient, "opaque-refresh").await.status(), 200);
}

// ---- 6. a JWKS without usable keys ------------------------------------------------------

#[tokio::test]
async fn an_empty_jwks_never_evicts_the_usable_keys() {
    let (idp, up) = (Idp::start().await, Upstream::start().await);
    let gw = Gateway::start_with(&secure_route(&up, ""), &issuer_yaml(&idp, "")).await;
    let good = idp.mint(Alg::ES256, &idp.claims(RESOURCE, "mcp:tools"));
    assert_eq!(ping(&gw, &good).await.status(), 200);
    idp.set_jwks_empty(true);
    let fetches = idp.jwks_fetches();
    // An unknown kid makes the gateway fetch the (now empty) JWKS at once.
    let unknown = idp.mint_with_foreign_key("unknown-kid", &idp.claims(RESOURCE, "mcp:tools"));
    assert_eq!(ping(&gw, &unknown).await.status(), 401);
    assert!(idp.jwks_fetches() > fetches, "no refetch happened");
    // A fresh token (not in the verified-token cache) still verifies with the kept key.
    let mut claims = idp.claims(RESOURCE, "mcp:tools");
    claims["sub"] = json!("bob");
    let fresh = idp.mint(Alg::ES256, &claims);
    assert_eq!(
        ping(&gw, &fresh).await.status(),
        200,
        "the usable keys were evicted"
    );
    let readyz = reqwest::get(gw.admin_url("/readyz")).await.unwrap();
    assert_eq!(readyz.status(), 200);
    assert!(readyz.text().await.unwrap().contains("stale keys: corp"));
    let m = gw.metrics().await;
    assert!(
        sample(
            &m,
            r#"drawbridge_jwks_refresh_total{issuer="corp",result="no_usable_key"}"#
        )
        .unwrap_or_default()
            >= 1.0,
        "{m}"
    );
}
