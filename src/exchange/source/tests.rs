//! Building a route's credential source from the validated config, and the binding
//! fingerprint, which must not change when the config carries parsed values: cached
//! tokens and sealed session ids of a running gateway are bound to it.

use super::*;

fn route(upstream_auth: &str, files: &[(&str, &str)]) -> (Arc<Route>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let mut text = format!(
        "routes:\n  - name: r\n    match: {{ path: /r }}\n    upstream: {{ url: 'http://127.0.0.1:3001/mcp' }}\n    upstream_auth: {upstream_auth}\n"
    );
    for (name, content) in files {
        let path = dir.path().join(name);
        std::fs::write(&path, content).unwrap();
        text = text.replace(&format!("@{name}"), &path.display().to_string());
    }
    let config = crate::config::load_str("gw.yaml", &text).unwrap().config;
    (config.routes[0].clone(), dir)
}

fn hex(bytes: [u8; 32]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The fingerprint's encoding, written out: each field as its big-endian u64 length
/// and its bytes.
fn expected_fingerprint(fields: &[&[u8]]) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for f in fields {
        h.update((f.len() as u64).to_be_bytes());
        h.update(f);
    }
    h.finalize().into()
}

#[test]
fn a_static_credential_is_the_validated_header_sensitive() {
    let (route, _dir) = route("{ static: { header: X-Api-Key, value: k-123 } }", &[]);
    let source = CredentialSource::build(&route, &[]).unwrap();
    let CredentialSource::Static { header, value } = &source else {
        panic!("not a static source");
    };
    assert_eq!(header.as_str(), "x-api-key");
    assert_eq!(value.as_bytes(), b"k-123");
    assert!(value.is_sensitive(), "an API key must never be logged");
    assert!(!source.exchanges_subject_token());
}

/// Pinned: the value the gateway computed before the config carried parsed headers.
#[test]
fn the_static_binding_fingerprint_is_unchanged() {
    let (route, _dir) = route("{ static: { header: X-Api-Key, value: k-123 } }", &[]);
    let fields: [&[u8]; 5] = [
        b"drawbridge route binding v1",
        b"http://127.0.0.1:3001/mcp",
        b"static",
        b"x-api-key",
        b"k-123",
    ];
    assert_eq!(
        binding_fingerprint(&route, &[]),
        expected_fingerprint(&fields)
    );
    assert_eq!(
        hex(binding_fingerprint(&route, &[])),
        PINNED_STATIC_FINGERPRINT
    );
    assert_eq!(
        session_binding(&route, &[]),
        format!("r#{PINNED_STATIC_FINGERPRINT}")
    );
}

const PINNED_STATIC_FINGERPRINT: &str =
    "3f036daa885410903b6f0d0bedf0c07fefe520ecbc882777fe7294b61bf4ca33";

/// The decoded key does not enter the fingerprint; the PEM text it was read from does,
/// as before validation kept the key.
#[test]
fn a_private_key_jwt_grant_signs_with_the_validated_key_and_binds_its_pem() {
    use ring::rand::SystemRandom;
    use ring::signature::{EcdsaKeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
    let pkcs8 =
        EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new())
            .unwrap();
    let body = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, pkcs8);
    let pem = format!("-----BEGIN PRIVATE KEY-----\n{body}\n-----END PRIVATE KEY-----\n");
    let (route, _dir) = route(
        "{ client_credentials: { token_endpoint: 'https://idp.example.com/token', client_id: gw, client_auth: private_key_jwt, private_key_file: '@gw.key', key_id: k-1, scopes: [a, b] } }",
        &[("gw.key", &pem)],
    );
    let source = CredentialSource::build(&route, &[]).unwrap();
    let CredentialSource::Grant(grant) = &source else {
        panic!("not a grant");
    };
    let ClientAuth::PrivateKeyJwt {
        client_id,
        key,
        kid,
    } = &grant.client
    else {
        panic!("not private_key_jwt");
    };
    assert_eq!(client_id, "gw");
    assert_eq!(kid.as_deref(), Some("k-1"));
    assert_eq!(key.algorithm(), "ES256");
    assert!(key.sign(b"header.payload").is_some());
    let fields: [&[u8]; 13] = [
        b"drawbridge route binding v1",
        b"http://127.0.0.1:3001/mcp",
        b"client_credentials",
        b"private_key_jwt",
        b"gw",
        pem.as_bytes(),
        b"k-1",
        b"", // issuer
        b"https://idp.example.com/token",
        b"", // audience
        b"", // resource
        b"a b",
        b"", // base_scopes
    ];
    assert_eq!(
        binding_fingerprint(&route, &[]),
        expected_fingerprint(&fields)
    );
    assert_eq!(grant.fingerprint, binding_fingerprint(&route, &[]));
}
