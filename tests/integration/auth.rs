//! The gateway as an OAuth 2.1 resource server, against the in-process authorization
//! server: the refusal matrix (each refusal asserts status, challenge, and that the
//! upstream saw nothing), accepted variants, RFC 9728 metadata, key rotation, IdP
//! outages, introspection.

use std::time::Duration;

use serde_json::{json, Value};

use crate::harness::{sample, Gateway};
use crate::idp::{Alg, Idp, INTROSPECTION_CLIENT_ID, INTROSPECTION_CLIENT_SECRET};
use crate::upstream::Upstream;

const RESOURCE: &str = "https://mcp.example.com/secure/mcp";
const OTHER_RESOURCE: &str = "https://mcp.example.com/other/mcp";
const METADATA: &str = "https://mcp.example.com/.well-known/oauth-protected-resource/secure/mcp";
const PING: &str = r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#;

fn issuers_yaml(idps: &[(&str, &Idp)], introspection: bool) -> String {
    let mut out = String::from("issuers:\n");
    for (name, idp) in idps {
        out.push_str(&format!("  - name: {name}\n    issuer: {}\n", idp.issuer));
        if introspection {
            out.push_str(&format!(
                "    introspection: {{ client_id: {INTROSPECTION_CLIENT_ID}, client_secret: {INTROSPECTION_CLIENT_SECRET} }}\n"
            ));
        }
    }
    out
}

fn protected_routes(up: &Upstream, issuers: &str) -> String {
    format!(
        "  - name: secure\n    match: {{ path: /secure/mcp }}\n    public_url: {RESOURCE}\n    upstream: {{ url: '{}' }}\n    auth:\n      issuers: [{issuers}]\n      required_scopes: [mcp:tools]\n      resource_name: Secure tools\n  - name: other\n    match: {{ path: /other/mcp }}\n    public_url: {OTHER_RESOURCE}\n    upstream: {{ url: '{}' }}\n    auth: {{ issuers: [corp], required_scopes: [mcp:tools] }}\n",
        up.url("/mcp"),
        up.url("/mcp"),
    )
}

struct Setup {
    idp: Idp,
    second: Idp,
    up: Upstream,
    gw: Gateway,
}

async fn setup() -> Setup {
    let idp = Idp::start().await;
    let second = Idp::start().await;
    let up = Upstream::start().await;
    let extra = issuers_yaml(&[("corp", &idp), ("partner", &second)], false);
    let gw = Gateway::start_with(&protected_routes(&up, "corp, partner"), &extra).await;
    Setup {
        idp,
        second,
        up,
        gw,
    }
}

async fn post(gw: &Gateway, path: &str, auth: &[&str]) -> reqwest::Response {
    let mut req = crate::harness::client().post(gw.url(path)).body(PING);
    for value in auth {
        req = req.header("authorization", *value);
    }
    req.send().await.unwrap()
}

fn challenge(resp: &reqwest::Response) -> String {
    resp.headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default()
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

#[tokio::test]
async fn refusal_matrix_never_reaches_the_upstream() {
    let s = setup().await;
    let idp = &s.idp;
    let good = idp.claims(RESOURCE, "mcp:tools");
    let valid = idp.mint(Alg::RS256, &good);
    let now = good["iat"].as_i64().unwrap();
    let with = |patch: Value| {
        let mut c = good.clone();
        for (k, v) in patch.as_object().unwrap() {
            if v.is_null() {
                c.as_object_mut().unwrap().remove(k);
            } else {
                c[k] = v.clone();
            }
        }
        c
    };
    let mut parts: Vec<String> = valid.split('.').map(str::to_string).collect();
    let tampered = {
        let evil = base64_url(&with(json!({"sub": "mallory"})).to_string());
        parts[1] = evil;
        parts.join(".")
    };
    let truncated = valid[..valid.len() - 10].to_string();
    let huge = "a".repeat(64 * 1024);

    // (case, Authorization values, path, expected status, expected error code)
    type Case<'a> = (&'a str, Vec<String>, &'a str, u16, Option<&'a str>);
    let cases: Vec<Case> = vec![
        ("no token", vec![], "/secure/mcp", 401, None),
        (
            "empty bearer",
            vec!["Bearer ".into()],
            "/secure/mcp",
            401,
            Some("invalid_token"),
        ),
        (
            "alg none",
            vec![bearer(&idp.mint_alg_none(&good))],
            "/secure/mcp",
            401,
            Some("invalid_token"),
        ),
        (
            "HS256 with the public key (PEM)",
            vec![bearer(&idp.mint_hs256_with_public_key_pem(&good))],
            "/secure/mcp",
            401,
            Some("invalid_token"),
        ),
        (
            "HS256 with the public key (DER)",
            vec![bearer(&idp.mint_hs256_with_public_key_der(&good))],
            "/secure/mcp",
            401,
            Some("invalid_token"),
        ),
        (
            "unknown kid",
            vec![bearer(&idp.mint_with_header(
                Alg::RS256,
                &json!({"kid": "nobody"}),
                &good,
            ))],
            "/secure/mcp",
            401,
            Some("invalid_token"),
        ),
        (
            "foreign key, known kid",
            vec![bearer(
                &idp.mint_with_foreign_key(&idp.current_rsa_kid(), &good),
            )],
            "/secure/mcp",
            401,
            Some("invalid_token"),
        ),
        (
            "tampered payload",
            vec![bearer(&tampered)],
            "/secure/mcp",
            401,
            Some("invalid_token"),
        ),
        (
            "truncated",
            vec![bearer(&truncated)],
            "/secure/mcp",
            401,
            Some("invalid_token"),
        ),
        (
            "expired",
            vec![bearer(
                &idp.mint(Alg::RS256, &with(json!({"exp": now - 120}))),
            )],
            "/secure/mcp",
            401,
            Some("invalid_token"),
        ),
        (
            "nbf in the future",
            vec![bearer(
                &idp.mint(Alg::RS256, &with(json!({"nbf": now + 600}))),
            )],
            "/secure/mcp",
            401,
            Some("invalid_token"),
        ),
        (
            "wrong iss",
            vec![bearer(&idp.mint(
                Alg::RS256,
                &with(json!({"iss": "https://evil.example.com"})),
            ))],
            "/secure/mcp",
            401,
            Some("invalid_token"),
        ),
        (
            "wrong aud",
            vec![bearer(&idp.mint(
                Alg::RS256,
                &with(json!({"aud": "https://evil.example.com/mcp"})),
            ))],
            "/secure/mcp",
            401,
            Some("invalid_token"),
        ),
        (
            "missing aud",
            vec![bearer(&idp.mint(Alg::RS256, &with(json!({"aud": null}))))],
            "/secure/mcp",
            401,
            Some("invalid_token"),
        ),
        (
            "token for another route",
            vec![bearer(
                &idp.mint(Alg::RS256, &with(json!({"aud": OTHER_RESOURCE}))),
            )],
            "/secure/mcp",
            401,
            Some("invalid_token"),
        ),
        (
            "token in the query only",
            vec![],
            "/secure/mcp?access_token=abc",
            401,
            Some("invalid_request"),
        ),
        (
            "two Authorization headers",
            vec![bearer(&valid), bearer(&valid)],
            "/secure/mcp",
            400,
            Some("invalid_request"),
        ),
        (
            "64 KiB token",
            vec![bearer(&huge)],
            "/secure/mcp",
            401,
            Some("invalid_token"),
        ),
        (
            "missing scope",
            vec![bearer(
                &idp.mint(Alg::RS256, &with(json!({"scope": "other"}))),
            )],
            "/secure/mcp",
            403,
            Some("insufficient_scope"),
        ),
        (
            "partner issuer not allowed on other route",
            vec![bearer(&s.second.mint(
                Alg::RS256,
                &s.second.claims(OTHER_RESOURCE, "mcp:tools"),
            ))],
            "/other/mcp",
            401,
            Some("invalid_token"),
        ),
    ];
    for (case, auth, path, status, code) in &cases {
        let auth: Vec<&str> = auth.iter().map(String::as_str).collect();
        let resp = post(&s.gw, path, &auth).await;
        assert_eq!(resp.status().as_u16(), *status, "{case}");
        let header = challenge(&resp);
        let expected_metadata = if path.starts_with("/other") {
            "https://mcp.example.com/.well-known/oauth-protected-resource/other/mcp"
        } else {
            METADATA
        };
        assert!(
            header.starts_with(&format!(
                r#"Bearer resource_metadata="{expected_metadata}", scope="mcp:tools""#
            )),
            "{case}: {header}"
        );
        match code {
            Some(code) => assert!(
                header.contains(&format!(r#"error="{code}""#)),
                "{case}: {header}"
            ),
            None => assert!(!header.contains("error="), "{case}: {header}"),
        }
        let body: Value = resp.json().await.unwrap();
        assert!(body["error"].is_string(), "{case}");
        let text = body.to_string();
        assert!(
            !text.contains(&valid[..20]),
            "{case}: the body echoes the token"
        );
    }
    assert!(
        s.up.seen().is_empty(),
        "a refused request reached the upstream"
    );
    let m = s.gw.metrics().await;
    assert_eq!(
        sample(
            &m,
            r#"drawbridge_auth_failures_total{reason="missing_token",route="secure"}"#
        ),
        Some(1.0),
        "{m}"
    );
    assert_eq!(
        sample(
            &m,
            r#"drawbridge_auth_failures_total{reason="wrong_audience",route="secure"}"#
        ),
        Some(3.0)
    );
}

/// The JOSE header of a compact JWS.
fn jws_header(token: &str) -> Value {
    use base64::Engine;
    let part = token.split('.').next().unwrap();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part)
        .unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

/// A valid EdDSA token of exactly `len` bytes: filler in a header member and a claim.
fn token_of_length(idp: &Idp, len: usize) -> String {
    let probe = idp.mint(Alg::EdDSA, &idp.claims(RESOURCE, "mcp:tools"));
    // Base64url lengths skip one value in four, so vary two parts independently.
    for header_pad in 0..4 {
        let base = len.saturating_sub(probe.len()) * 3 / 4;
        for claim_pad in base.saturating_sub(16)..base + 16 {
            let mut claims = idp.claims(RESOURCE, "mcp:tools");
            claims["pad"] = json!("p".repeat(claim_pad));
            let header = json!({"x": "h".repeat(header_pad)});
            let token = idp.mint_with_header(Alg::EdDSA, &header, &claims);
            if token.len() == len {
                return token;
            }
        }
    }
    panic!("no token of {len} bytes");
}

#[tokio::test]
async fn the_token_size_limit_holds_at_its_boundary() {
    let s = setup().await;
    let limit = drawbridge::auth::bearer::MAX_TOKEN_LEN;
    let at_limit = token_of_length(&s.idp, limit);
    let resp = post(&s.gw, "/secure/mcp", &[&bearer(&at_limit)]).await;
    assert_eq!(resp.status(), 200, "{}", challenge(&resp));
    // One byte more, in the same kind of valid token, and in a value with no dots that
    // only the size check can refuse before introspection would be needed.
    for (case, token) in [
        ("valid JWT", token_of_length(&s.idp, limit + 1)),
        (
            "valid JWT, 9 bytes over",
            token_of_length(&s.idp, limit + 9),
        ),
    ] {
        let resp = post(&s.gw, "/secure/mcp", &[&bearer(&token)]).await;
        assert_eq!(resp.status(), 401, "{case}");
        assert!(
            challenge(&resp).contains(r#"error="invalid_token""#),
            "{case}: {}",
            challenge(&resp)
        );
    }
    let too_large = r#"drawbridge_auth_failures_total{reason="token_too_large",route="secure"}"#;
    let m = s.gw.metrics_when(too_large, 2.0).await;
    assert_eq!(sample(&m, too_large), Some(2.0), "{m}");
    assert_eq!(
        s.up.seen().len(),
        1,
        "only the token at the limit got through"
    );
}

fn base64_url(text: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(text)
}

#[tokio::test]
async fn accepted_tokens_reach_the_upstream_without_the_token() {
    let s = setup().await;
    let idp = &s.idp;
    let tokens = vec![
        (
            "lowercase bearer",
            format!(
                "bearer {}",
                idp.mint(Alg::RS256, &idp.claims(RESOURCE, "mcp:tools"))
            ),
        ),
        (
            "aud array",
            bearer(&idp.mint(Alg::RS256, &{
                let mut c = idp.claims(RESOURCE, "mcp:tools other");
                c["aud"] = json!(["something-else", RESOURCE]);
                c
            })),
        ),
        (
            "aud with trailing slash and upper-case host",
            bearer(&idp.mint(
                Alg::RS256,
                &idp.claims("https://MCP.example.com/secure/mcp/", "mcp:tools"),
            )),
        ),
        (
            "ES256",
            bearer(&idp.mint(Alg::ES256, &idp.claims(RESOURCE, "mcp:tools"))),
        ),
        (
            "EdDSA",
            bearer(&idp.mint(Alg::EdDSA, &idp.claims(RESOURCE, "mcp:tools"))),
        ),
        (
            "second issuer",
            bearer(
                &s.second
                    .mint(Alg::RS256, &s.second.claims(RESOURCE, "mcp:tools")),
            ),
        ),
    ];
    for (case, auth) in &tokens {
        let resp = post(&s.gw, "/secure/mcp", &[auth]).await;
        assert_eq!(resp.status(), 200, "{case}: {}", challenge(&resp));
    }
    let seen = s.up.seen();
    assert_eq!(seen.len(), tokens.len());
    assert!(seen
        .iter()
        .all(|r| r.headers.get("authorization").is_none()));

    // Every method is authenticated: GET streams and DELETE too.
    let client = crate::harness::client();
    let get = client.get(s.gw.url("/secure/mcp")).send().await.unwrap();
    assert_eq!(get.status(), 401);
    let delete = client.delete(s.gw.url("/secure/mcp")).send().await.unwrap();
    assert_eq!(delete.status(), 401);
    assert_eq!(s.up.seen().len(), tokens.len());
}

#[tokio::test]
async fn a_token_in_other_headers_never_reaches_the_upstream() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let s = setup().await;
    let token = s.idp.mint(Alg::RS256, &s.idp.claims(RESOURCE, "mcp:tools"));
    // Raw HTTP: an HTTP client library may drop `Proxy-Authorization` on its own.
    let request = format!(
        "POST /secure/mcp HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nProxy-Authorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{PING}",
        PING.len()
    );
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", s.gw.port))
        .await
        .unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer)).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let seen = s.up.seen();
    assert_eq!(seen.len(), 1);
    // The explicit check; the stub's leak check (on drop) looks at every header too.
    assert!(seen[0].headers.get("proxy-authorization").is_none());
}

#[tokio::test]
async fn a_cached_token_is_verified_once() {
    let s = setup().await;
    let token = bearer(&s.idp.mint(Alg::RS256, &s.idp.claims(RESOURCE, "mcp:tools")));
    for _ in 0..5 {
        assert_eq!(post(&s.gw, "/secure/mcp", &[&token]).await.status(), 200);
    }
    let m = s.gw.metrics().await;
    assert_eq!(
        sample(
            &m,
            r#"drawbridge_cache_requests_total{cache="token",result="miss"}"#
        ),
        Some(1.0),
        "{m}"
    );
    assert_eq!(
        sample(
            &m,
            r#"drawbridge_cache_requests_total{cache="token",result="hit"}"#
        ),
        Some(4.0)
    );
}

#[tokio::test]
async fn protected_resource_metadata_is_served_from_public_url() {
    let s = setup().await;
    let client = crate::harness::client();
    let resp = client
        .get(s.gw.url("/.well-known/oauth-protected-resource/secure/mcp"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["access-control-allow-origin"], "*");
    let doc: Value = resp.json().await.unwrap();
    assert_eq!(doc["resource"], RESOURCE);
    assert_eq!(
        doc["authorization_servers"],
        json!([s.idp.issuer, s.second.issuer])
    );
    assert_eq!(doc["scopes_supported"], json!(["mcp:tools"]));
    assert_eq!(doc["bearer_methods_supported"], json!(["header"]));
    assert_eq!(doc["resource_name"], "Secure tools");
    let preflight = client
        .request(
            reqwest::Method::OPTIONS,
            s.gw.url("/.well-known/oauth-protected-resource/other/mcp"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(preflight.status(), 204);
    // Two protected routes share the (any) host: the root form would be ambiguous.
    let root = client
        .get(s.gw.url("/.well-known/oauth-protected-resource"))
        .send()
        .await
        .unwrap();
    assert_eq!(root.status(), 404);
    assert!(s.up.seen().is_empty());
    // Each metadata request counts under the route it describes; the ambiguous root form
    // matched none.
    let m =
        s.gw.metrics_when(
            r#"drawbridge_requests_total{method="GET",route="none",status="404"}"#,
            1.0,
        )
        .await;
    for (sample_name, want) in [
        (
            r#"drawbridge_requests_total{method="GET",route="secure",status="200"}"#,
            1.0,
        ),
        (
            r#"drawbridge_requests_total{method="OPTIONS",route="other",status="204"}"#,
            1.0,
        ),
    ] {
        assert_eq!(sample(&m, sample_name), Some(want), "{sample_name}\n{m}");
    }
}

#[tokio::test]
async fn the_root_metadata_form_is_served_for_a_single_protected_route() {
    let idp = Idp::start().await;
    let up = Upstream::start().await;
    let routes = format!(
        "  - name: only\n    match: {{ path: /mcp }}\n    public_url: https://gw.example.com/mcp\n    upstream: {{ url: '{}' }}\n    auth: {{ issuers: [corp] }}\n",
        up.url("/mcp")
    );
    let gw = Gateway::start_with(&routes, &issuers_yaml(&[("corp", &idp)], false)).await;
    let doc: Value = reqwest::get(gw.url("/.well-known/oauth-protected-resource"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(doc["resource"], "https://gw.example.com/mcp");
    let resp = post(&gw, "/mcp", &[]).await;
    assert_eq!(
        challenge(&resp),
        r#"Bearer resource_metadata="https://gw.example.com/.well-known/oauth-protected-resource/mcp""#
    );
}

#[tokio::test]
async fn key_rotation_is_picked_up_and_forged_kids_do_not_hammer_the_idp() {
    let s = setup().await;
    let idp = &s.idp;
    let claims = idp.claims(RESOURCE, "mcp:tools");
    assert_eq!(
        post(
            &s.gw,
            "/secure/mcp",
            &[&bearer(&idp.mint(Alg::RS256, &claims))]
        )
        .await
        .status(),
        200
    );
    idp.rotate_rsa(false);
    let before = idp.jwks_fetches();
    let window_start = std::time::Instant::now();
    let rotated = bearer(&idp.mint(Alg::RS256, &idp.claims(RESOURCE, "mcp:tools")));
    assert_eq!(
        post(&s.gw, "/secure/mcp", &[&rotated]).await.status(),
        200,
        "new kid after rotation"
    );
    assert_eq!(idp.jwks_fetches(), before + 1);
    for i in 0..10 {
        let forged =
            idp.mint_with_header(Alg::RS256, &json!({"kid": format!("forged-{i}")}), &claims);
        assert_eq!(
            post(&s.gw, "/secure/mcp", &[&bearer(&forged)])
                .await
                .status(),
            401
        );
    }
    // At most one unknown-kid refetch per 10 s: on a slow machine the loop may outlast
    // the window the rotation opened, and then one more refetch is allowed per window.
    let windows = window_start.elapsed().as_secs() / 10;
    let fetched = idp.jwks_fetches() - before;
    assert!(
        fetched >= 1 && fetched as u64 <= 1 + windows,
        "{fetched} JWKS fetches for 10 forged kids in {windows} extra 10 s windows"
    );
}

#[tokio::test]
async fn idp_down_after_start_keeps_known_keys_working() {
    let s = setup().await;
    let idp = &s.idp;
    let cached = bearer(&idp.mint(Alg::RS256, &idp.claims(RESOURCE, "mcp:tools")));
    assert_eq!(post(&s.gw, "/secure/mcp", &[&cached]).await.status(), 200);
    idp.set_down(true);
    assert_eq!(post(&s.gw, "/secure/mcp", &[&cached]).await.status(), 200);
    let fresh = bearer(&idp.mint(Alg::ES256, &idp.claims(RESOURCE, "mcp:tools")));
    assert_eq!(
        post(&s.gw, "/secure/mcp", &[&fresh]).await.status(),
        200,
        "known kid, new token"
    );
    let new_kid = idp.rotate_rsa(false);
    let unknown = idp.mint(Alg::RS256, &idp.claims(RESOURCE, "mcp:tools"));
    assert_eq!(jws_header(&unknown)["kid"], new_kid.as_str());
    let fetches = idp.jwks_fetches();
    let resp = post(&s.gw, "/secure/mcp", &[&bearer(&unknown)]).await;
    assert_eq!(
        resp.status(),
        503,
        "a key that cannot be fetched now: try again"
    );
    assert_eq!(resp.headers()["retry-after"], "5");
    assert!(resp.headers().get("www-authenticate").is_none());
    assert_eq!(
        idp.jwks_fetches(),
        fetches + 1,
        "the unknown kid made the gateway try the (down) JWKS"
    );
    assert_eq!(s.up.seen().len(), 3, "the unverifiable token got nowhere");
    let ready = reqwest::get(s.gw.admin_url("/readyz")).await.unwrap();
    assert_eq!(
        ready.status(),
        200,
        "readiness stays true with last good keys"
    );
}

#[tokio::test]
async fn idp_down_at_start_keeps_readiness_false_until_it_returns() {
    let idp = Idp::start().await;
    idp.set_down(true);
    let up = Upstream::start().await;
    let routes = format!(
        "  - name: secure\n    match: {{ path: /secure/mcp }}\n    public_url: {RESOURCE}\n    upstream: {{ url: '{}' }}\n    auth: {{ issuers: [corp] }}\n",
        up.url("/mcp")
    );
    let mut gw = Gateway::start_unready(&routes, &issuers_yaml(&[("corp", &idp)], false)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let ready = reqwest::get(gw.admin_url("/readyz")).await.unwrap();
    assert_eq!(ready.status(), 503);
    let token = bearer(&idp.mint(Alg::RS256, &idp.claims(RESOURCE, "")));
    let resp = post(&gw, "/secure/mcp", &[&token]).await;
    assert_eq!(resp.status(), 503, "fail closed while keys are unknown");
    assert_eq!(resp.headers()["retry-after"], "5");
    assert!(up.seen().is_empty(), "nothing reached the upstream");
    idp.set_down(false);
    gw.wait_ready().await;
    assert_eq!(post(&gw, "/secure/mcp", &[&token]).await.status(), 200);
}

#[tokio::test]
async fn rfc8414_only_issuers_are_discovered() {
    let idp = Idp::start_oauth_only().await;
    let up = Upstream::start().await;
    let routes = format!(
        "  - name: secure\n    match: {{ path: /secure/mcp }}\n    public_url: {RESOURCE}\n    upstream: {{ url: '{}' }}\n    auth: {{ issuers: [corp] }}\n",
        up.url("/mcp")
    );
    let gw = Gateway::start_with(&routes, &issuers_yaml(&[("corp", &idp)], false)).await;
    let token = bearer(&idp.mint(Alg::ES256, &idp.claims(RESOURCE, "")));
    assert_eq!(post(&gw, "/secure/mcp", &[&token]).await.status(), 200);
}

#[tokio::test]
async fn opaque_tokens_are_introspected_and_cached() {
    let idp = Idp::start().await;
    let up = Upstream::start().await;
    let routes = format!(
        "  - name: secure\n    match: {{ path: /secure/mcp }}\n    public_url: {RESOURCE}\n    upstream: {{ url: '{}' }}\n    auth: {{ issuers: [corp], required_scopes: [mcp:tools] }}\n",
        up.url("/mcp")
    );
    let gw = Gateway::start_with(&routes, &issuers_yaml(&[("corp", &idp)], true)).await;
    let exp = crate::idp::unix_now() as i64 + 300;
    idp.register_opaque("opaque-active", json!({"active": true, "iss": idp.issuer, "sub": "bob", "aud": RESOURCE, "scope": "mcp:tools", "exp": exp}));
    idp.register_opaque("opaque-inactive", json!({"active": false}));
    idp.register_opaque("opaque-wrong-aud", json!({"active": true, "iss": idp.issuer, "sub": "bob", "aud": OTHER_RESOURCE, "scope": "mcp:tools", "exp": exp}));
    assert_eq!(
        post(&gw, "/secure/mcp", &["Bearer opaque-active"])
            .await
            .status(),
        200
    );
    assert_eq!(
        post(&gw, "/secure/mcp", &["Bearer opaque-active"])
            .await
            .status(),
        200
    );
    assert_eq!(idp.introspections(), 1, "the second request used the cache");
    assert_eq!(
        post(&gw, "/secure/mcp", &["Bearer opaque-inactive"])
            .await
            .status(),
        401
    );
    assert_eq!(
        post(&gw, "/secure/mcp", &["Bearer opaque-wrong-aud"])
            .await
            .status(),
        401
    );
    assert_eq!(
        post(&gw, "/secure/mcp", &["Bearer never-issued"])
            .await
            .status(),
        401
    );
    assert_eq!(up.seen().len(), 2);
}

/// Waits (bounded) until the wall clock is past `unix` seconds.
async fn wait_until_past(unix: u64) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while crate::idp::unix_now() <= unix {
        assert!(
            std::time::Instant::now() < deadline,
            "the clock did not move"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_cached_token_stops_working_when_it_expires() {
    let idp = Idp::start().await;
    let up = Upstream::start().await;
    let routes = format!(
        "  - name: secure\n    match: {{ path: /secure/mcp }}\n    public_url: {RESOURCE}\n    upstream: {{ url: '{}' }}\n    auth: {{ issuers: [corp], required_scopes: [mcp:tools] }}\n",
        up.url("/mcp")
    );
    let issuers = format!(
        "issuers:\n  - name: corp\n    issuer: {}\n    leeway: 0s\n",
        idp.issuer
    );
    let gw = Gateway::start_with(&routes, &issuers).await;
    let mut claims = idp.claims(RESOURCE, "mcp:tools");
    let exp = crate::idp::unix_now() + 3;
    claims["exp"] = json!(exp);
    let token = bearer(&idp.mint(Alg::RS256, &claims));
    assert_eq!(post(&gw, "/secure/mcp", &[&token]).await.status(), 200);
    assert_eq!(post(&gw, "/secure/mcp", &[&token]).await.status(), 200);
    let hit = r#"drawbridge_cache_requests_total{cache="token",result="hit"}"#;
    let m = gw.metrics_when(hit, 1.0).await;
    assert_eq!(sample(&m, hit), Some(1.0), "the token is cached: {m}");
    wait_until_past(exp).await;
    let resp = post(&gw, "/secure/mcp", &[&token]).await;
    assert_eq!(resp.status(), 401, "a cached token outlived its exp");
    assert!(challenge(&resp).contains(r#"error="invalid_token""#));
    let expired = r#"drawbridge_auth_failures_total{reason="expired",route="secure"}"#;
    let m = gw.metrics_when(expired, 1.0).await;
    assert_eq!(sample(&m, expired), Some(1.0), "{m}");
    // The cache entry itself ended with the token (the refusal above would also come
    // from the per-request `exp` check on a stale entry).
    let miss = r#"drawbridge_cache_requests_total{cache="token",result="miss"}"#;
    assert_eq!(
        sample(&m, miss),
        Some(2.0),
        "the cache kept an expired token: {m}"
    );
    assert_eq!(up.seen().len(), 2, "the expired token reached the upstream");
}

#[tokio::test]
async fn an_introspection_answer_is_reused_no_longer_than_cache_max() {
    let idp = Idp::start().await;
    let up = Upstream::start().await;
    let routes = format!(
        "  - name: secure\n    match: {{ path: /secure/mcp }}\n    public_url: {RESOURCE}\n    upstream: {{ url: '{}' }}\n    auth: {{ issuers: [corp], required_scopes: [mcp:tools] }}\n",
        up.url("/mcp")
    );
    let issuers = format!(
        "issuers:\n  - name: corp\n    issuer: {}\n    introspection: {{ client_id: {INTROSPECTION_CLIENT_ID}, client_secret: {INTROSPECTION_CLIENT_SECRET}, cache_max: 2s }}\n",
        idp.issuer
    );
    let gw = Gateway::start_with(&routes, &issuers).await;
    let exp = crate::idp::unix_now() as i64 + 300;
    let opaque = "opaque-revoked-later-7f3a9c";
    idp.register_opaque(opaque, json!({"active": true, "iss": idp.issuer, "sub": "bob", "aud": RESOURCE, "scope": "mcp:tools", "exp": exp}));
    let auth = bearer(opaque);
    let cached_at = std::time::Instant::now();
    assert_eq!(post(&gw, "/secure/mcp", &[&auth]).await.status(), 200);
    // Revoked at the authorization server: the cached answer may serve until cache_max.
    idp.register_opaque(opaque, json!({"active": false}));
    let second = post(&gw, "/secure/mcp", &[&auth]).await.status();
    if cached_at.elapsed() < Duration::from_millis(1500) {
        assert_eq!(second, 200, "the answer is cached");
        assert_eq!(idp.introspections(), 1);
    }
    let deadline = cached_at + Duration::from_secs(2);
    tokio::time::sleep_until(deadline.into()).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let resp = post(&gw, "/secure/mcp", &[&auth]).await;
    assert_eq!(
        resp.status(),
        401,
        "an introspection answer outlived cache_max"
    );
    assert!(idp.introspections() >= 2);
    let forwarded = if second == 200 { 2 } else { 1 };
    assert_eq!(up.seen().len(), forwarded);
}

/// An introspection answer goes through the same time check as a JWT: it may omit `exp`,
/// but an expired `exp`, a future `nbf` or a future `iat` (past the 30 s leeway) refuses
/// the token, and nothing reaches the upstream.
#[tokio::test]
async fn introspection_answers_are_held_to_the_token_time_rules() {
    let idp = Idp::start().await;
    let up = Upstream::start().await;
    let routes = format!(
        "  - name: secure\n    match: {{ path: /secure/mcp }}\n    public_url: {RESOURCE}\n    upstream: {{ url: '{}' }}\n    auth: {{ issuers: [corp], required_scopes: [mcp:tools] }}\n",
        up.url("/mcp")
    );
    let gw = Gateway::start_with(&routes, &issuers_yaml(&[("corp", &idp)], true)).await;
    let now = crate::idp::unix_now() as i64;
    let answer = |times: Value| {
        let mut v = json!({"active": true, "iss": idp.issuer, "sub": "bob", "aud": RESOURCE, "scope": "mcp:tools"});
        if let (Some(v), Some(t)) = (v.as_object_mut(), times.as_object()) {
            v.extend(t.clone());
        }
        v
    };
    idp.register_opaque("opaque-no-exp", answer(json!({"iat": now})));
    idp.register_opaque("opaque-expired", answer(json!({"exp": now - 3600})));
    idp.register_opaque(
        "opaque-not-yet",
        answer(json!({"exp": now + 7200, "nbf": now + 3600})),
    );
    idp.register_opaque(
        "opaque-future-iat",
        answer(json!({"exp": now + 7200, "iat": now + 3600})),
    );
    for (token, status) in [
        ("opaque-expired", 401),
        ("opaque-not-yet", 401),
        ("opaque-future-iat", 401),
        ("opaque-no-exp", 200),
    ] {
        let resp = post(&gw, "/secure/mcp", &[&format!("Bearer {token}")]).await;
        assert_eq!(resp.status(), status, "{token}");
    }
    // Only the request with the acceptable answer was forwarded.
    assert_eq!(up.seen().len(), 1);
}
