//! Checks of the test IdP (`idp.rs`) on its own, with no drawbridge involved: its metadata,
//! that every token it mints verifies (with `ring`, not with anything drawbridge uses)
//! against the key it publishes, that the deliberately bad tokens are bad in the intended
//! way, and that its test controls (rotation, outage, delays and garbage, cache header,
//! introspection) work.
//! Each test is named `double_*`: scripts/test.sh counts them apart from the gateway's.

use std::time::{Duration, Instant};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ring::signature::{self, RsaPublicKeyComponents, UnparsedPublicKey};
use rsa::pkcs8::{EncodePublicKey, LineEnding};
use rsa::{BigUint, RsaPublicKey};
use serde_json::{json, Value};

use crate::idp::{Alg, Idp, INTROSPECTION_CLIENT_ID, INTROSPECTION_CLIENT_SECRET};

async fn get_json(url: &str) -> Value {
    let response = reqwest::get(url).await.expect("GET");
    assert_eq!(response.status(), 200, "GET {url}");
    response.json().await.expect("JSON body")
}

async fn status_of(url: &str) -> u16 {
    reqwest::get(url).await.expect("GET").status().as_u16()
}

fn b64(text: &str) -> Vec<u8> {
    URL_SAFE_NO_PAD.decode(text).expect("base64url")
}

/// The three parts of a compact JWS: header JSON, claims JSON, signature bytes.
fn parts(token: &str) -> (Value, Value, Vec<u8>) {
    let pieces: Vec<&str> = token.split('.').collect();
    assert_eq!(pieces.len(), 3, "compact JWS: {token}");
    let header = serde_json::from_slice(&b64(pieces[0])).expect("header JSON");
    let claims = serde_json::from_slice(&b64(pieces[1])).expect("claims JSON");
    (header, claims, b64(pieces[2]))
}

fn signing_input(token: &str) -> &str {
    &token[..token.rfind('.').expect("a dot")]
}

fn jwk<'a>(jwks: &'a Value, kid: &str) -> Option<&'a Value> {
    jwks["keys"]
        .as_array()
        .expect("keys array")
        .iter()
        .find(|k| k["kid"] == kid)
}

fn member(jwk: &Value, name: &str) -> Vec<u8> {
    b64(jwk[name].as_str().expect("JWK member"))
}

/// Does `token`'s signature verify under `jwk` with `alg`? Done with `ring` alone.
fn verifies(alg: Alg, jwk: &Value, token: &str) -> bool {
    let (_, _, sig) = parts(token);
    let message = signing_input(token).as_bytes();
    match alg {
        Alg::RS256 | Alg::PS256 => {
            let scheme = if alg == Alg::RS256 {
                &signature::RSA_PKCS1_2048_8192_SHA256
            } else {
                &signature::RSA_PSS_2048_8192_SHA256
            };
            let (n, e) = (member(jwk, "n"), member(jwk, "e"));
            RsaPublicKeyComponents { n: &n, e: &e }
                .verify(scheme, message, &sig)
                .is_ok()
        }
        Alg::ES256 => {
            let mut point = vec![0x04];
            point.extend(member(jwk, "x"));
            point.extend(member(jwk, "y"));
            UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, point)
                .verify(message, &sig)
                .is_ok()
        }
        Alg::EdDSA => UnparsedPublicKey::new(&signature::ED25519, member(jwk, "x"))
            .verify(message, &sig)
            .is_ok(),
    }
}

async fn introspect(idp: &Idp, auth: Option<(&str, &str)>, token: &str) -> reqwest::Response {
    let client = reqwest::Client::new();
    let mut request = client
        .post(idp.introspection_url())
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("token={token}&token_type_hint=access_token"));
    if let Some((id, secret)) = auth {
        request = request.basic_auth(id, Some(secret));
    }
    request.send().await.expect("POST /introspect")
}

#[tokio::test]
async fn double_idp_oidc_discovery_document_points_at_a_working_jwks() {
    let idp = Idp::start().await;
    let doc = get_json(&format!("{}/.well-known/openid-configuration", idp.issuer)).await;
    assert_eq!(doc["issuer"], idp.issuer);
    assert_eq!(doc["jwks_uri"], idp.jwks_url());
    assert_eq!(doc["token_endpoint"], format!("{}/token", idp.issuer));
    assert_eq!(
        doc["introspection_endpoint"],
        format!("{}/introspect", idp.issuer)
    );
    assert_eq!(
        doc["authorization_endpoint"],
        format!("{}/authorize", idp.issuer)
    );
    assert_eq!(doc["response_types_supported"], json!(["code"]));
    assert_eq!(doc["subject_types_supported"], json!(["public"]));
    assert_eq!(
        doc["id_token_signing_alg_values_supported"],
        json!(["RS256"])
    );
    assert!(doc["scopes_supported"]
        .as_array()
        .is_some_and(|s| !s.is_empty()));
    assert!(doc["grant_types_supported"]
        .as_array()
        .is_some_and(|g| !g.is_empty()));
    assert_eq!(idp.discovery_fetches(), 1);

    let jwks = get_json(doc["jwks_uri"].as_str().expect("jwks_uri")).await;
    assert_eq!(idp.jwks_fetches(), 1);
    let rsa = jwk(&jwks, "rsa-1").expect("rsa-1");
    assert_eq!((&rsa["kty"], &rsa["use"]), (&json!("RSA"), &json!("sig")));
    assert!(
        rsa.get("alg").is_none(),
        "one RSA key serves RS256 and PS256"
    );
    assert_eq!(
        member(rsa, "n").len(),
        256,
        "2048-bit modulus, no sign byte"
    );
    assert_eq!(member(rsa, "e"), vec![1, 0, 1]);
    let ec = jwk(&jwks, "ec-1").expect("ec-1");
    assert_eq!((&ec["kty"], &ec["crv"]), (&json!("EC"), &json!("P-256")));
    assert_eq!((member(ec, "x").len(), member(ec, "y").len()), (32, 32));
    let ed = jwk(&jwks, "ed-1").expect("ed-1");
    assert_eq!((&ed["kty"], &ed["crv"]), (&json!("OKP"), &json!("Ed25519")));
    assert_eq!(member(ed, "x").len(), 32);
    assert_eq!(jwks["keys"].as_array().map(Vec::len), Some(3));
    assert!(reqwest::get(idp.jwks_url())
        .await
        .expect("GET")
        .headers()
        .get("cache-control")
        .is_none());

    // An OIDC IdP serves only the OIDC document; unknown paths 404.
    let origin = format!("http://{}", idp.addr);
    assert_eq!(
        status_of(&format!("{origin}/.well-known/oauth-authorization-server")).await,
        404
    );
    assert_eq!(status_of(&format!("{origin}/nope")).await, 404);
    assert_eq!(idp.discovery_fetches(), 1);
}

#[tokio::test]
async fn double_idp_oauth_only_serves_rfc8414_metadata_at_the_path_inserted_location() {
    let idp = Idp::start_oauth_only().await;
    let origin = format!("http://{}", idp.addr);
    assert_eq!(idp.issuer, format!("{origin}/realms/corp"));
    let rfc8414 = format!("{origin}/.well-known/oauth-authorization-server/realms/corp");
    assert_eq!(idp.metadata_url(), rfc8414);
    let doc = get_json(&rfc8414).await;
    assert_eq!(doc["issuer"], idp.issuer);
    assert_eq!(doc["jwks_uri"], format!("{origin}/realms/corp/jwks"));
    assert_eq!(
        doc["introspection_endpoint"],
        format!("{origin}/realms/corp/introspect")
    );
    assert!(doc.get("id_token_signing_alg_values_supported").is_none());
    let jwks = get_json(doc["jwks_uri"].as_str().expect("jwks_uri")).await;
    assert!(jwk(&jwks, "rsa-1").is_some());

    for absent in [
        format!("{}/.well-known/openid-configuration", idp.issuer),
        format!("{origin}/.well-known/openid-configuration"),
        format!("{origin}/.well-known/openid-configuration/realms/corp"),
        format!("{origin}/.well-known/oauth-authorization-server"),
        format!("{}/.well-known/oauth-authorization-server", idp.issuer),
        format!("{origin}/jwks"),
    ] {
        assert_eq!(status_of(&absent).await, 404, "{absent}");
    }
    assert_eq!((idp.discovery_fetches(), idp.jwks_fetches()), (1, 1));
}

#[tokio::test]
async fn double_idp_tokens_of_every_alg_verify_against_the_published_jwk() {
    let idp = Idp::start().await;
    let other = Idp::start().await;
    let jwks = get_json(&idp.jwks_url()).await;
    let other_jwks = get_json(&other.jwks_url()).await;
    let claims = idp.claims("http://127.0.0.1:1/mcp", "mcp:tools tools:echo");
    assert_eq!(claims["iss"], idp.issuer);
    assert_eq!(
        (&claims["sub"], &claims["client_id"]),
        (&json!("alice"), &json!("agent-client"))
    );
    assert_eq!(
        claims["exp"].as_u64(),
        claims["iat"].as_u64().map(|t| t + 300)
    );
    assert_eq!(claims["nbf"], claims["iat"]);
    assert_ne!(claims["jti"], idp.claims("a", "b")["jti"]);

    for alg in Alg::ALL {
        let token = idp.mint(alg, &claims);
        let (header, payload, _) = parts(&token);
        assert_eq!(header["alg"], alg.name());
        assert_eq!(header["typ"], "at+jwt");
        assert_eq!(payload, claims);
        let kid = header["kid"].as_str().expect("kid");
        let key = jwk(&jwks, kid).expect("kid is published");
        assert!(verifies(alg, key, &token), "{alg:?} verifies");
        // Same kid at another IdP: a different key, so no cross-IdP acceptance.
        let foreign = jwk(&other_jwks, kid).expect("same kid elsewhere");
        assert!(
            !verifies(alg, foreign, &token),
            "{alg:?} must not verify at another IdP"
        );
    }
    // RS256 and PS256 share the RSA key but are not interchangeable.
    let rsa = jwk(&jwks, "rsa-1").expect("rsa-1");
    assert!(!verifies(Alg::PS256, rsa, &idp.mint(Alg::RS256, &claims)));
    assert!(!verifies(Alg::RS256, rsa, &idp.mint(Alg::PS256, &claims)));
}

#[tokio::test]
async fn double_idp_mint_with_header_merges_and_removes_members() {
    let idp = Idp::start().await;
    let claims = idp.claims("aud", "");
    let token = idp.mint_with_header(
        Alg::ES256,
        &json!({ "typ": "JWT", "kid": null, "x5u": "u" }),
        &claims,
    );
    let (header, _, _) = parts(&token);
    assert_eq!(header, json!({ "alg": "ES256", "typ": "JWT", "x5u": "u" }));
    let jwks = get_json(&idp.jwks_url()).await;
    assert!(verifies(
        Alg::ES256,
        jwk(&jwks, "ec-1").expect("ec-1"),
        &token
    ));

    // A header that lies about the algorithm; the signature is still ES256.
    let lying = idp.mint_with_header(
        Alg::ES256,
        &json!({ "alg": "RS256", "kid": "rsa-1" }),
        &claims,
    );
    assert_eq!(parts(&lying).0["alg"], "RS256");
    assert!(verifies(
        Alg::ES256,
        jwk(&jwks, "ec-1").expect("ec-1"),
        &lying
    ));
}

#[tokio::test]
async fn double_idp_forged_tokens_are_forged_as_intended() {
    let idp = Idp::start().await;
    let jwks = get_json(&idp.jwks_url()).await;
    let rsa = jwk(&jwks, "rsa-1").expect("rsa-1");
    let claims = idp.claims("aud", "mcp:tools");

    let none = idp.mint_alg_none(&claims);
    assert!(none.ends_with('.'));
    let (header, payload, sig) = parts(&none);
    assert_eq!(header, json!({ "alg": "none", "kid": "rsa-1" }));
    assert_eq!(payload, claims);
    assert!(sig.is_empty());

    // The HMAC keys are exactly the published RSA key, as PEM text and as DER.
    let public = RsaPublicKey::new(
        BigUint::from_bytes_be(&member(rsa, "n")),
        BigUint::from_bytes_be(&member(rsa, "e")),
    )
    .expect("public key from JWK");
    let pem = public.to_public_key_pem(LineEnding::LF).expect("PEM");
    assert!(pem.starts_with("-----BEGIN PUBLIC KEY-----\n"));
    let der = public.to_public_key_der().expect("DER");
    for (token, secret) in [
        (idp.mint_hs256_with_public_key_pem(&claims), pem.as_bytes()),
        (idp.mint_hs256_with_public_key_der(&claims), der.as_bytes()),
    ] {
        let (header, _, sig) = parts(&token);
        assert_eq!(
            header,
            json!({ "alg": "HS256", "typ": "at+jwt", "kid": "rsa-1" })
        );
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret);
        ring::hmac::verify(&key, signing_input(&token).as_bytes(), &sig).expect("HMAC verifies");
    }

    let foreign = idp.mint_with_foreign_key("rsa-1", &claims);
    let (header, _, _) = parts(&foreign);
    assert_eq!(
        (&header["alg"], &header["kid"]),
        (&json!("RS256"), &json!("rsa-1"))
    );
    assert!(
        !verifies(Alg::RS256, rsa, &foreign),
        "foreign key is not the published one"
    );
    let unknown = idp.mint_with_foreign_key("nobody", &claims);
    assert_eq!(parts(&unknown).0["kid"], "nobody");
    // Same foreign key each time: the two signatures are over different headers only.
    assert_ne!(foreign, unknown);
}

#[tokio::test]
async fn double_idp_rotation_changes_the_kid_and_the_jwks() {
    let idp = Idp::start().await;
    let claims = idp.claims("aud", "");
    let before = idp.mint(Alg::RS256, &claims);
    assert_eq!(idp.current_rsa_kid(), "rsa-1");

    let kid = idp.rotate_rsa(true);
    assert_eq!(kid, "rsa-2");
    assert_eq!(idp.current_rsa_kid(), "rsa-2");
    let jwks = get_json(&idp.jwks_url()).await;
    let (old, new) = (
        jwk(&jwks, "rsa-1").expect("kept"),
        jwk(&jwks, "rsa-2").expect("new"),
    );
    assert_ne!(old["n"], new["n"]);
    for alg in [Alg::RS256, Alg::PS256] {
        let after = idp.mint(alg, &claims);
        assert_eq!(parts(&after).0["kid"], "rsa-2");
        assert!(verifies(alg, new, &after));
        assert!(!verifies(alg, old, &after));
    }
    assert!(
        verifies(Alg::RS256, old, &before),
        "old tokens still verify with the kept key"
    );

    assert_eq!(idp.rotate_rsa(false), "rsa-3");
    let jwks = get_json(&idp.jwks_url()).await;
    let kids: Vec<&str> = jwks["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .map(|k| k["kid"].as_str().expect("kid"))
        .collect();
    assert_eq!(kids, ["rsa-3", "ec-1", "ed-1"]);
    assert_eq!(idp.jwks_fetches(), 2);
}

#[tokio::test]
async fn double_idp_outage_answers_503_everywhere_and_counts() {
    let idp = Idp::start().await;
    idp.set_down(true);
    assert_eq!(status_of(&idp.metadata_url()).await, 503);
    assert_eq!(status_of(&idp.jwks_url()).await, 503);
    assert_eq!(status_of(&format!("{}/anything", idp.issuer)).await, 503);
    assert_eq!(
        introspect(
            &idp,
            Some((INTROSPECTION_CLIENT_ID, INTROSPECTION_CLIENT_SECRET)),
            "t"
        )
        .await
        .status(),
        503
    );
    assert_eq!(
        (
            idp.discovery_fetches(),
            idp.jwks_fetches(),
            idp.introspections()
        ),
        (1, 1, 1)
    );

    idp.set_down(false);
    assert_eq!(status_of(&idp.metadata_url()).await, 200);
    idp.set_jwks_max_age(Some(60));
    let response = reqwest::get(idp.jwks_url()).await.expect("GET");
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["cache-control"], "max-age=60");
    assert_eq!((idp.discovery_fetches(), idp.jwks_fetches()), (2, 2));
}

#[tokio::test]
async fn double_idp_introspection_needs_the_right_client() {
    let idp = Idp::start().await;
    let active = json!({ "active": true, "sub": "bob", "scope": "mcp:tools", "client_id": "c" });
    idp.register_opaque("opaque-1", active.clone());
    let right = Some((INTROSPECTION_CLIENT_ID, INTROSPECTION_CLIENT_SECRET));

    let response = introspect(&idp, right, "opaque-1").await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.json::<Value>().await.expect("JSON"), active);
    let unknown = introspect(&idp, right, "opaque-2").await;
    assert_eq!(
        unknown.json::<Value>().await.expect("JSON"),
        json!({ "active": false })
    );

    for wrong in [
        None,
        Some(("drawbridge", "wrong")),
        Some(("someone", INTROSPECTION_CLIENT_SECRET)),
    ] {
        let response = introspect(&idp, wrong, "opaque-1").await;
        assert_eq!(response.status(), 401, "{wrong:?}");
        assert_eq!(
            response.json::<Value>().await.expect("JSON"),
            json!({ "error": "invalid_client" })
        );
    }
    assert_eq!(idp.introspections(), 5);
}

#[tokio::test]
async fn double_idp_stops_when_dropped() {
    let idp = Idp::start().await;
    let url = idp.jwks_url();
    let client = reqwest::Client::new();
    assert_eq!(client.get(&url).send().await.expect("GET").status(), 200);
    drop(idp);
    // Even the pooled keep-alive connection goes away.
    let deadline = Instant::now() + Duration::from_secs(5);
    while client.get(&url).send().await.is_ok() {
        assert!(Instant::now() < deadline, "IdP still answering after drop");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn double_idp_metadata_and_keys_can_be_garbled_and_delayed() {
    let idp = Idp::start().await;
    idp.set_keys_garbage(true);
    for url in [idp.metadata_url(), idp.jwks_url()] {
        let response = reqwest::get(&url).await.expect("GET");
        assert_eq!(response.status(), 200, "{url}");
        let body = response.bytes().await.expect("body");
        assert!(
            serde_json::from_slice::<Value>(&body).is_err(),
            "{url} answered JSON"
        );
    }
    assert_eq!((idp.discovery_fetches(), idp.jwks_fetches()), (1, 1));
    idp.set_keys_garbage(false);
    idp.set_keys_delay(Duration::from_millis(300));
    let started = Instant::now();
    let keys = get_json(&idp.jwks_url()).await;
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert!(!keys["keys"].as_array().expect("keys").is_empty());
    // And back to normal.
    idp.set_keys_delay(Duration::ZERO);
    assert_eq!(
        get_json(&idp.metadata_url()).await["issuer"],
        idp.issuer.as_str()
    );
}
