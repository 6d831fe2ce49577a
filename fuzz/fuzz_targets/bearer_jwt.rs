//! Bearer header parsing (`auth::bearer`) and JWT decoding (`auth::jwt`: header and
//! claims, before any signature check; JWKS documents too). On every input:
//! - nothing panics, whatever the header bytes, token segments or claim values;
//! - a token is taken only from exactly one `Authorization: Bearer` header, only when no
//!   query parameter could be read as `access_token`, and it is the header's token68
//!   text, whole, within the size limit;
//! - a decoded token's algorithm is the header's `alg`, one of the allowed ones, and no
//!   token with a critical extension is decoded;
//! - the time check saturates instead of overflowing on any stated time.
#![no_main]

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use drawbridge::auth::bearer::{bearer_token, BearerError, MAX_TOKEN_LEN};
use drawbridge::auth::jwt;
use drawbridge::auth::times::{check_times, MissingExp, TokenTimes};
use drawbridge::config::ClaimMapping;
use drawbridge::jose::Algorithm;
use drawbridge::target::query::Query;
use http::{HeaderMap, HeaderValue};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

/// The first line is the query string, each further line (at most four) the value of
/// one `Authorization` header.
fn bearer(data: &[u8]) {
    let mut lines = data.split(|b| *b == b'\n');
    let query = lines.next().and_then(|q| std::str::from_utf8(q).ok());
    let mut headers = HeaderMap::new();
    let mut values = Vec::new();
    for line in lines.take(4) {
        if let Ok(value) = HeaderValue::from_bytes(line) {
            headers.append(http::header::AUTHORIZATION, value);
            values.push(line);
        }
    }
    let query = query.filter(|q| !q.is_empty());
    // A query that does not parse never reaches this rule: the target step refuses it.
    let parsed = match query.map(Query::parse) {
        Some(Err(_)) => return,
        Some(Ok(parsed)) => parsed,
        None => Query::default(),
    };
    let result = bearer_token(&headers, &parsed);
    let token_in_query = query.is_some_and(|q| {
        url::form_urlencoded::parse(q.as_bytes())
            .any(|(name, _)| name.trim().eq_ignore_ascii_case("access_token"))
    });
    if token_in_query {
        assert_eq!(
            result,
            Err(BearerError::InQuery),
            "a token in the query was missed"
        );
    }
    if values.len() > 1 {
        assert!(result.is_err(), "a token taken from one of several headers");
    }
    let Ok(token) = result else { return };
    let [value] = values.as_slice() else {
        panic!("a token without exactly one header")
    };
    assert!(!token.is_empty() && token.len() <= MAX_TOKEN_LEN);
    assert!(
        token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~+/=".contains(&b)),
        "not token68: {token:?}"
    );
    assert!(value.len() > 7 && value[..6].eq_ignore_ascii_case(b"bearer") && value[6] == b' ');
    let rest = std::str::from_utf8(&value[7..]).expect("token68 is ASCII");
    assert_eq!(
        rest.trim_matches(' '),
        token,
        "the token is not the header's whole text"
    );
}

/// A token built from the input: JOSE header, NUL, claims, NUL, signature; or, without a
/// NUL, the input itself as a compact token.
fn jwt(data: &[u8]) {
    let mut parts = data.splitn(3, |b| *b == 0);
    let (Some(header), Some(claims)) = (parts.next(), parts.next()) else {
        if let Ok(token) = std::str::from_utf8(data) {
            let _ = jwt::looks_like_jwt(token);
            if let Ok(decoded) = jwt::decode(token, &Algorithm::DEFAULT) {
                check_decoded(&decoded, None);
            }
        }
        return;
    };
    let signature = parts
        .next()
        .filter(|s| !s.is_empty())
        .unwrap_or(b"signature");
    let token = format!(
        "{}.{}.{}",
        URL_SAFE_NO_PAD.encode(header),
        URL_SAFE_NO_PAD.encode(claims),
        URL_SAFE_NO_PAD.encode(signature)
    );
    assert!(jwt::looks_like_jwt(&token));
    for allowed in [&Algorithm::DEFAULT[..], &[Algorithm::ES256]] {
        match jwt::decode(&token, allowed) {
            Ok(decoded) => {
                assert!(allowed.contains(&decoded.alg));
                check_decoded(&decoded, Some(header));
            }
            Err(_) => continue,
        }
    }
}

fn check_decoded(decoded: &jwt::Decoded<'_>, header: Option<&[u8]>) {
    if let Some(header) = header {
        let value: Value = match serde_json::from_slice(header) {
            Ok(value) => value,
            // JSON with a number past f64's range in a member the header type ignores:
            // valid, but more than `Value` can hold.
            Err(e) if e.to_string().starts_with("number out of range") => return,
            Err(e) => panic!("a decoded header is not JSON: {e}"),
        };
        assert_eq!(
            value.get("alg").and_then(Value::as_str),
            Some(decoded.alg.name()),
            "the algorithm is not the header's"
        );
        assert!(
            value.get("crit").is_none_or(Value::is_null),
            "a critical extension was accepted"
        );
    }
    let claims = &decoded.claims;
    let _ = claims.client();
    // The issuer's claim mapping (subject, client, scopes and permissions) reads the
    // payload as JSON: never a panic, whatever the claims hold.
    if let Ok(json) = decoded.claims_json() {
        let _ = drawbridge::auth::claims::identity(&ClaimMapping::default(), &[], &json);
    }
    let accepted = ["at+jwt".to_string(), "jwt".to_string()];
    let _ = jwt::check_token_type(decoded.typ.as_deref(), claims, &accepted);
    for now in [i64::MIN, 0, 1_750_000_000, i64::MAX] {
        for leeway in [0, 60, i64::MAX] {
            let _ = check_times(TokenTimes::of_jwt(claims), MissingExp::Refused, now, leeway);
        }
    }
}

fuzz_target!(|data: &[u8]| {
    bearer(data);
    jwt(data);
    if let Ok(keys) = jwt::parse_jwks(data) {
        let _ = keys.find(Some("k1"), Algorithm::RS256);
    }
});
