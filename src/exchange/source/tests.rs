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

/// A route with an `auth` block and `upstream_auth` as given (on-behalf-of needs one).
fn protected_route(upstream_auth: &str) -> Arc<Route> {
    let text = format!(
        "issuers:\n  - name: entra\n    issuer: https://login.microsoftonline.com/t/v2.0\nroutes:\n  - name: r\n    match: {{ path: /r }}\n    public_url: https://mcp.example.com/r\n    upstream: {{ url: 'http://127.0.0.1:3001/mcp' }}\n    auth: {{ issuers: [entra] }}\n    upstream_auth: {upstream_auth}\n"
    );
    crate::config::load_str("gw.yaml", &text)
        .unwrap()
        .config
        .routes[0]
        .clone()
}

/// Pinned: an on-behalf-of grant binds its kind, client, secret, endpoint and scopes;
/// its tokens are the caller's (the caller's token is kept for the grant).
#[test]
fn an_on_behalf_of_grant_is_bound_as_its_own_kind() {
    let obo = protected_route("{ on_behalf_of: { token_endpoint: 'https://login.microsoftonline.com/t/oauth2/v2.0/token', client_id: gw, client_secret: s3, scopes: ['api://up/.default'] } }");
    let source = CredentialSource::build(&obo, &[]).unwrap();
    assert!(source.exchanges_subject_token());
    // upstream, kind, client auth, id, secret, issuer (none), token endpoint, audience
    // and resource (none), scopes, base scopes (none).
    let fields: [&[u8]; 12] = [
        b"drawbridge route binding v1",
        b"http://127.0.0.1:3001/mcp",
        b"on_behalf_of",
        b"post",
        b"gw",
        b"s3",
        b"",
        b"https://login.microsoftonline.com/t/oauth2/v2.0/token",
        b"",
        b"",
        b"api://up/.default",
        b"",
    ];
    let expected = expected_fingerprint(&fields);
    assert_eq!(hex(binding_fingerprint(&obo, &[])), hex(expected));
    let exchange = protected_route("{ token_exchange: { token_endpoint: 'https://login.microsoftonline.com/t/oauth2/v2.0/token', client_id: gw, client_secret: s3, client_auth: client_secret_post, scopes: ['api://up/.default'], audience: x } }");
    assert_ne!(
        binding_fingerprint(&obo, &[]),
        binding_fingerprint(&exchange, &[])
    );
}

/// A renewed certificate for the same key is another credential at Entra: the binding
/// changes, so tokens obtained with the old one are not reused.
#[test]
fn an_on_behalf_of_certificate_is_part_of_the_binding() {
    let dir = tempfile::tempdir().unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let key_file = dir.path().join("k.pem");
    std::fs::write(&key_file, key.serialize_pem()).unwrap();
    let route_with = |name: &str| {
        let cert = rcgen::CertificateParams::new(vec![name.to_string()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let cert_file = dir.path().join(format!("{name}.crt"));
        std::fs::write(&cert_file, cert.pem()).unwrap();
        protected_route(&format!(
            "{{ on_behalf_of: {{ token_endpoint: 'https://login.microsoftonline.com/t/oauth2/v2.0/token', client_id: gw, private_key_file: '{}', certificate_file: '{}', scopes: ['api://up/.default'] }} }}",
            key_file.display(),
            cert_file.display()
        ))
    };
    let (first, renewed) = (route_with("first"), route_with("renewed"));
    assert_ne!(
        binding_fingerprint(&first, &[]),
        binding_fingerprint(&renewed, &[])
    );
    let CredentialSource::Grant(grant) = CredentialSource::build(&first, &[]).unwrap() else {
        panic!("not a grant");
    };
    let ClientAuth::PrivateKeyJwt { key, .. } = &grant.client else {
        panic!("not private_key_jwt");
    };
    assert!(key.certificate_thumbprint().is_some());
}
