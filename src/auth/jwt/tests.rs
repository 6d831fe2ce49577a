use super::*;
use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, Ed25519KeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

struct EcKey {
    pair: EcdsaKeyPair,
    kid: &'static str,
}

fn ec_key(kid: &'static str) -> EcKey {
    let rng = SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
    let pair =
        EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng).unwrap();
    EcKey { pair, kid }
}

impl EcKey {
    fn jwk(&self) -> serde_json::Value {
        let point = self.pair.public_key().as_ref();
        serde_json::json!({"kty":"EC","crv":"P-256","kid":self.kid,"use":"sig","x":b64(&point[1..33]),"y":b64(&point[33..])})
    }

    fn sign(&self, header: serde_json::Value, claims: serde_json::Value) -> String {
        let input = format!(
            "{}.{}",
            b64(header.to_string().as_bytes()),
            b64(claims.to_string().as_bytes())
        );
        let sig = self
            .pair
            .sign(&SystemRandom::new(), input.as_bytes())
            .unwrap();
        format!("{input}.{}", b64(sig.as_ref()))
    }
}

fn claims() -> serde_json::Value {
    serde_json::json!({"iss":"https://idp","sub":"alice","aud":["https://gw/mcp","other"],"exp":2000,"iat":1000,"nbf":1000,"scope":"a b","client_id":"c1"})
}

fn keyset(jwks: serde_json::Value) -> KeySet {
    parse_jwks(jwks.to_string().as_bytes()).unwrap()
}

#[test]
fn es256_token_verifies_with_its_key_and_claims_are_read() {
    let key = ec_key("ec-1");
    let keys = keyset(serde_json::json!({"keys":[key.jwk()]}));
    let token = key.sign(
        serde_json::json!({"alg":"ES256","kid":"ec-1","typ":"at+jwt"}),
        claims(),
    );
    let decoded = decode(&token, &Algorithm::DEFAULT).unwrap();
    let k = keys.find(decoded.kid.as_deref(), decoded.alg).unwrap();
    decoded.verify_with(k).unwrap();
    assert_eq!(decoded.claims.sub.as_deref(), Some("alice"));
    assert_eq!(decoded.claims.aud, ["https://gw/mcp", "other"]);
    assert_eq!(decoded.claims.scope.as_deref(), Some("a b"));
    assert_eq!(decoded.claims.client(), Some("c1"));
    // The whole payload, for the issuer's claim mapping.
    let json = decoded.claims_json().unwrap();
    assert_eq!(json["sub"], "alice");
    assert_eq!(json["scope"], "a b");
}

#[test]
fn eddsa_token_verifies() {
    let rng = SystemRandom::new();
    let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
    let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
    let jwk = serde_json::json!({"kty":"OKP","crv":"Ed25519","kid":"ed","x":b64(pair.public_key().as_ref())});
    let keys = keyset(serde_json::json!({"keys":[jwk]}));
    let input = format!(
        "{}.{}",
        b64(br#"{"alg":"EdDSA","kid":"ed"}"#),
        b64(claims().to_string().as_bytes())
    );
    let token = format!("{input}.{}", b64(pair.sign(input.as_bytes()).as_ref()));
    let decoded = decode(&token, &Algorithm::DEFAULT).unwrap();
    decoded
        .verify_with(keys.find(Some("ed"), Algorithm::EdDSA).unwrap())
        .unwrap();
}

#[test]
fn tampered_payload_fails_the_signature() {
    let key = ec_key("ec-1");
    let keys = keyset(serde_json::json!({"keys":[key.jwk()]}));
    let token = key.sign(serde_json::json!({"alg":"ES256","kid":"ec-1"}), claims());
    let mut parts: Vec<&str> = token.split('.').collect();
    let mut evil = claims();
    evil["sub"] = "mallory".into();
    let evil_b64 = b64(evil.to_string().as_bytes());
    parts[1] = &evil_b64;
    let tampered = parts.join(".");
    let decoded = decode(&tampered, &Algorithm::DEFAULT).unwrap();
    assert_eq!(
        decoded.verify_with(keys.find(Some("ec-1"), Algorithm::ES256).unwrap()),
        Err(TokenError::BadSignature)
    );
}

#[test]
fn none_hmac_and_disallowed_algorithms_are_refused_before_any_key() {
    let body = b64(claims().to_string().as_bytes());
    for alg in ["none", "HS256", "HS512", "RS512", "ES384"] {
        let token = format!(
            "{}.{body}.c2ln",
            b64(format!(r#"{{"alg":"{alg}"}}"#).as_bytes())
        );
        assert_eq!(
            decode(&token, &Algorithm::DEFAULT).err(),
            Some(TokenError::UnsupportedAlgorithm),
            "{alg}"
        );
    }
    let token = format!("{}.{body}.c2ln", b64(br#"{"alg":"RS256"}"#));
    assert_eq!(
        decode(&token, &[Algorithm::ES256]).err(),
        Some(TokenError::UnsupportedAlgorithm)
    );
}

#[test]
fn malformed_tokens() {
    for token in [
        "",
        "abc",
        "a.b",
        "a.b.c.d",
        "!!.!!.!!",
        "e30.e30.",
        "e30.bm90IGpzb24.c2ln",
    ] {
        assert!(decode(token, &Algorithm::DEFAULT).is_err(), "{token}");
    }
    let crit = format!(
        "{}.{}.c2ln",
        b64(br#"{"alg":"ES256","crit":["exp"]}"#),
        b64(b"{}")
    );
    assert_eq!(
        decode(&crit, &Algorithm::DEFAULT).err(),
        Some(TokenError::Malformed)
    );
}

#[test]
fn headers_and_claims_that_are_not_utf8_are_malformed() {
    // Found by fuzz/fuzz_targets/bearer_jwt.rs: the header
    // {"alg":"RS256","a g":"\xff\xff\xffqES128"} decoded, because serde_json skips a
    // member the header type ignores without checking that it is UTF-8.
    let header = b"{\"alg\":\"RS256\",\"a g\":\"\xff\xff\xffqES128\"}";
    let token = format!("{}.{}.c2ln", b64(header), b64(b"{}"));
    assert_eq!(
        decode(&token, &Algorithm::DEFAULT).err(),
        Some(TokenError::Malformed)
    );
    let claims = b"{\"sub\":\"alice\",\"x\":\"\xc3\"}";
    let token = format!("{}.{}.c2ln", b64(br#"{"alg":"RS256"}"#), b64(claims));
    assert_eq!(
        decode(&token, &Algorithm::DEFAULT).err(),
        Some(TokenError::Malformed)
    );
    // The same documents in UTF-8 decode.
    let token = format!(
        "{}.{}.c2ln",
        b64(r#"{"alg":"RS256","a g":"é"}"#.as_bytes()),
        b64(r#"{"sub":"alice","x":"é"}"#.as_bytes())
    );
    assert!(decode(&token, &Algorithm::DEFAULT).is_ok());
}

#[test]
fn key_selection_respects_family_pin_and_ambiguity() {
    let a = ec_key("a");
    let b = ec_key("b");
    let mut pinned = a.jwk();
    pinned["alg"] = "ES256".into();
    let keys = keyset(
        serde_json::json!({"keys":[pinned, b.jwk(), {"kty":"RSA","kid":"r","n":"AQAB","e":"AQAB","alg":"RS256"}, {"kty":"EC","crv":"P-384","kid":"p384","x":"AA","y":"AA"}, {"kty":"RSA","kid":"enc","use":"enc","n":"AQAB","e":"AQAB"}]}),
    );
    assert_eq!(keys.keys.len(), 3, "P-384 and encryption keys are skipped");
    assert!(keys.find(Some("a"), Algorithm::ES256).is_some());
    assert!(
        keys.find(Some("r"), Algorithm::ES256).is_none(),
        "wrong family"
    );
    assert!(
        keys.find(Some("r"), Algorithm::PS256).is_none(),
        "pinned to RS256"
    );
    assert!(
        keys.find(None, Algorithm::ES256).is_none(),
        "two EC keys: no guessing"
    );
    assert!(keys.find(None, Algorithm::RS256).is_some(), "one RSA key");
}

/// A JWT's claims reach the one time check whole, and a JWT must carry `exp`.
#[test]
fn time_checks_with_leeway() {
    use crate::auth::times::{check_times, MissingExp, TokenTimes};
    let check = |c: &Claims, now| check_times(TokenTimes::of_jwt(c), MissingExp::Refused, now, 30);
    let mut c: Claims = serde_json::from_value(claims()).unwrap();
    assert_eq!(check(&c, 1500), Ok(()));
    assert_eq!(check(&c, 2030), Ok(()));
    assert_eq!(check(&c, 2031), Err(TokenError::Expired));
    assert_eq!(check(&c, 969), Err(TokenError::NotYetValid));
    c.nbf = None;
    assert_eq!(check(&c, 969), Err(TokenError::IssuedInFuture));
    c.exp = None;
    assert_eq!(check(&c, 1500), Err(TokenError::MissingClaim));
}

#[test]
fn scp_array_and_azp_are_fallbacks() {
    let c: Claims =
        serde_json::from_value(serde_json::json!({"scp":["x","y"],"azp":"app","aud":"single"}))
            .unwrap();
    assert_eq!(c.scp, ["x", "y"]);
    assert_eq!(c.client(), Some("app"));
    assert_eq!(c.aud, ["single"]);
}

fn default_types() -> Vec<String> {
    vec!["at+jwt".to_string(), "jwt".to_string()]
}

fn claims_of(v: serde_json::Value) -> Claims {
    serde_json::from_value(v).unwrap()
}

#[test]
fn access_token_types_pass_and_other_kinds_are_refused() {
    let c = claims_of(claims());
    for typ in [
        Some("at+jwt"),
        Some("application/at+jwt"),
        Some("AT+JWT"),
        Some("JWT"),
        None,
    ] {
        assert_eq!(
            check_token_type(typ, &c, &default_types()),
            Ok(()),
            "{typ:?}"
        );
    }
    for typ in ["id_token", "logout+jwt", "secevent+jwt", "JOSE", "dpop+jwt"] {
        assert_eq!(
            check_token_type(Some(typ), &c, &default_types()),
            Err(TokenError::WrongTokenType),
            "{typ}"
        );
    }
    // Strict RFC 9068: `token_types: [at+jwt]` refuses plain JWT and a missing typ.
    let strict = vec!["at+jwt".to_string()];
    assert_eq!(check_token_type(Some("at+jwt"), &c, &strict), Ok(()));
    assert_eq!(
        check_token_type(Some("JWT"), &c, &strict),
        Err(TokenError::WrongTokenType)
    );
    assert_eq!(
        check_token_type(None, &c, &strict),
        Err(TokenError::WrongTokenType)
    );
}

#[test]
fn id_tokens_and_keycloak_non_access_tokens_are_refused() {
    let with = |extra: serde_json::Value| {
        let mut v = claims();
        for (k, val) in extra.as_object().unwrap() {
            v[k] = val.clone();
        }
        claims_of(v)
    };
    let refused = [
        serde_json::json!({"at_hash": "x"}),
        serde_json::json!({"c_hash": "x"}),
        // An ID token: the audience is the client itself, with a nonce.
        serde_json::json!({"nonce": "n", "aud": "c1", "azp": "c1"}),
        serde_json::json!({"typ": "ID"}),
        serde_json::json!({"typ": "Refresh"}),
    ];
    for extra in refused {
        assert_eq!(
            check_token_type(Some("JWT"), &with(extra.clone()), &default_types()),
            Err(TokenError::WrongTokenType),
            "{extra}"
        );
    }
    // Keycloak access tokens: payload typ Bearer; a nonce alone (audience not the
    // client) is not an ID token.
    for extra in [
        serde_json::json!({"typ": "Bearer"}),
        serde_json::json!({"nonce": "n"}),
    ] {
        assert_eq!(
            check_token_type(Some("JWT"), &with(extra.clone()), &default_types()),
            Ok(()),
            "{extra}"
        );
    }
}

#[test]
fn a_key_without_alg_verifies_one_algorithm_only() {
    let rsa = serde_json::json!({"kty":"RSA","kid":"r","n":"AQAB","e":"AQAB"});
    let ec = ec_key("ec-1");
    let mut keys = keyset(serde_json::json!({"keys":[rsa, ec.jwk()]}));
    keys.pin_algorithms(&Algorithm::DEFAULT);
    assert!(keys.find(Some("r"), Algorithm::RS256).is_some());
    assert!(
        keys.find(Some("r"), Algorithm::PS256).is_none(),
        "an RSA key without alg must not verify both RS256 and PS256"
    );
    assert!(keys.find(Some("ec-1"), Algorithm::ES256).is_some());
    // An issuer that signs PS256 says so in `algorithms`; a key no allowed algorithm
    // fits is dropped.
    let mut ps = keyset(
        serde_json::json!({"keys":[{"kty":"RSA","kid":"r","n":"AQAB","e":"AQAB"}, ec.jwk()]}),
    );
    ps.pin_algorithms(&[Algorithm::PS256]);
    assert!(ps.find(Some("r"), Algorithm::PS256).is_some());
    assert!(ps.find(Some("r"), Algorithm::RS256).is_none());
    assert!(!ps.has_kid("ec-1"));
}
