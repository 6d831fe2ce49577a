use std::path::Path;

use crate::config::validate::validate;
use crate::config::{GrantClient, GrantScopes, UpstreamAuth};

const BASE: &str = "\
issuers:
  - name: entra
    issuer: https://login.microsoftonline.com/3f0c0000-0000-0000-0000-000000000000/v2.0
routes:
  - name: x
    match: { path: /x/mcp }
    public_url: https://mcp.example.com/x/mcp
    upstream: { url: 'http://127.0.0.1:3001/mcp' }
    auth: { issuers: [entra] }
";

fn with(block: &str) -> String {
    format!("{BASE}    upstream_auth:\n      on_behalf_of: {block}\n")
}

fn errors(text: &str) -> Vec<String> {
    match validate("gw.yaml", text) {
        Ok(_) => vec![],
        Err(errors) => errors.iter().map(ToString::to_string).collect(),
    }
}

fn grant(text: &str) -> crate::config::Grant {
    let loaded = validate("gw.yaml", text).unwrap();
    match &loaded.config.routes[0].upstream_auth {
        UpstreamAuth::OnBehalfOf(g) => g.clone(),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_secret_block_becomes_a_post_client_with_fixed_scopes() {
    std::env::set_var("DRAWBRIDGE_TEST_OBO_SECRET", "obo-s3cret");
    let text = with("{ issuer: entra, client_id: gw-app, client_secret: '${DRAWBRIDGE_TEST_OBO_SECRET}', scopes: ['api://upstream/.default'] }");
    let g = grant(&text);
    assert_eq!(g.issuer, Some(0));
    assert_eq!(g.token_endpoint, None);
    assert_eq!(
        g.scopes,
        GrantScopes::Fixed(vec!["api://upstream/.default".into()])
    );
    assert_eq!((g.audience, g.resource), (None, None));
    match &g.client {
        GrantClient::Post { client_id, secret } => {
            assert_eq!(client_id, "gw-app");
            assert_eq!(secret.expose(), "obo-s3cret");
        }
        other => panic!("{other:?}"),
    }
    let printed = format!("{:?}", validate("gw.yaml", &text).unwrap().config);
    assert!(!printed.contains("obo-s3cret"), "the secret is printed");
}

#[test]
fn a_secret_file_is_read_without_its_newline() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("obo.secret");
    std::fs::write(&file, "from-file\n").unwrap();
    let g = grant(&with(&format!(
        "{{ token_endpoint: 'https://login.microsoftonline.com/t/oauth2/v2.0/token', client_id: gw, client_secret_file: '{}', scopes: [api://up/.default] }}",
        file.display()
    )));
    match &g.client {
        GrantClient::Post { secret, .. } => assert_eq!(secret.expose(), "from-file"),
        other => panic!("{other:?}"),
    }
    let missing = errors(&with(
        "{ issuer: entra, client_id: gw, client_secret_file: /nonexistent/obo.secret, scopes: [s] }",
    ));
    assert_eq!(missing.len(), 1, "{missing:?}");
    assert!(
        missing[0].contains("routes[0].upstream_auth.on_behalf_of.client_secret_file: cannot read `/nonexistent/obo.secret`"),
        "{missing:?}"
    );
}

/// Writes a fresh key and its certificate; returns their paths.
fn key_files(dir: &Path, name: &str) -> (String, String) {
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["drawbridge".to_string()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let key_file = dir.join(format!("{name}.key"));
    let cert_file = dir.join(format!("{name}.crt"));
    std::fs::write(&key_file, key.serialize_pem()).unwrap();
    std::fs::write(&cert_file, cert.pem()).unwrap();
    (
        key_file.display().to_string(),
        cert_file.display().to_string(),
    )
}

#[test]
fn a_certificate_key_carries_its_thumbprint_and_key_id() {
    let dir = tempfile::tempdir().unwrap();
    let (key, cert) = key_files(dir.path(), "a");
    let g = grant(&with(&format!(
        "{{ issuer: entra, client_id: gw, private_key_file: '{key}', certificate_file: '{cert}', key_id: k-1, scopes: [api://up/.default] }}"
    )));
    match &g.client {
        GrantClient::PrivateKeyJwt { key, key_id, .. } => {
            assert!(key.certificate_thumbprint().is_some());
            assert_eq!(key_id.as_deref(), Some("k-1"));
        }
        other => panic!("{other:?}"),
    }
    let (_, other_cert) = key_files(dir.path(), "b");
    let errs = errors(&with(&format!(
        "{{ issuer: entra, client_id: gw, private_key_file: '{key}', certificate_file: '{other_cert}', scopes: [s] }}"
    )));
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(
        errs[0].contains("on_behalf_of.certificate_file: `")
            && errs[0]
                .ends_with("the certificate is not the private key's (its public key differs)"),
        "{errs:?}"
    );
    let errs = errors(&with(&format!(
        "{{ issuer: entra, client_id: gw, private_key_file: '{key}', scopes: [s] }}"
    )));
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(
        errs[0].contains("on_behalf_of.private_key_file: name the key's `certificate_file`"),
        "{errs:?}"
    );
}

/// Bad blocks are refused with the position and path of what is wrong, never a value.
#[test]
fn bad_blocks_are_refused_with_their_position() {
    let cases: [(&str, &str); 9] = [
        (
            "{ issuer: entra, client_id: gw, scopes: [s] }",
            "gw.yaml:11:21: routes[0].upstream_auth.on_behalf_of: give exactly one of `client_secret`, `client_secret_file` and `private_key_file`",
        ),
        (
            "{ issuer: entra, client_id: gw, client_secret: hunter2, private_key_file: /k.pem, scopes: [s] }",
            "gw.yaml:11:21: routes[0].upstream_auth.on_behalf_of: give exactly one of `client_secret`, `client_secret_file` and `private_key_file`",
        ),
        (
            "{ issuer: entra, client_id: gw, client_secret: hunter2, key_id: k, scopes: [s] }",
            "gw.yaml:11:85: routes[0].upstream_auth.on_behalf_of.key_id: applies to `private_key_file` only",
        ),
        (
            "{ issuer: entra, client_id: gw, client_secret: hunter2 }",
            "gw.yaml:11:21: routes[0].upstream_auth.on_behalf_of: name the upstream's API with `scopes`, e.g. [api://upstream/.default]",
        ),
        (
            "{ issuer: entra, client_id: gw, client_secret: hunter2, scopes: [] }",
            "gw.yaml:11:85: routes[0].upstream_auth.on_behalf_of.scopes: a non-empty list of scope strings, e.g. [api://upstream/.default]",
        ),
        (
            "{ client_id: gw, client_secret: hunter2, scopes: [s] }",
            "gw.yaml:11:21: routes[0].upstream_auth.on_behalf_of: name an `issuer` (its discovered token endpoint) or a `token_endpoint`",
        ),
        (
            "{ issuer: corp, client_id: gw, client_secret: hunter2, scopes: [s] }",
            "gw.yaml:11:31: routes[0].upstream_auth.on_behalf_of.issuer: no issuer named `corp` in `issuers`",
        ),
        (
            "{ token_endpoint: 'http://login.example.com/token', client_id: gw, client_secret: hunter2, scopes: [s] }",
            "gw.yaml:11:39: routes[0].upstream_auth.on_behalf_of.token_endpoint: identity endpoints must use https (plain http is allowed on loopback only; `allow_insecure_http: true` opts out for test setups)",
        ),
        (
            "{ issuer: entra, client_id: gw, client_secret: hunter2, scopes: ['a\"b'] }",
            "gw.yaml:11:85: routes[0].upstream_auth.on_behalf_of.scopes: a non-empty list of scope strings, e.g. [api://upstream/.default]",
        ),
    ];
    for (block, expected) in cases {
        let errs = errors(&with(block));
        assert_eq!(errs, [expected.to_string()], "{block}");
        assert!(!errs[0].contains("hunter2"));
    }
}

#[test]
fn on_behalf_of_is_one_mode_and_needs_an_authenticated_route() {
    let both = format!(
        "{BASE}    upstream_auth:\n      on_behalf_of: {{ issuer: entra, client_id: gw, client_secret: s, scopes: [s] }}\n      none: {{}}\n"
    );
    let errs = errors(&both);
    assert_eq!(
        errs,
        ["gw.yaml:11:19: routes[0].upstream_auth: choose exactly one of token_exchange, on_behalf_of, client_credentials, static, none"]
    );
    let public = with("{ issuer: entra, client_id: gw, client_secret: s, scopes: [s] }")
        .replace("    auth: { issuers: [entra] }\n", "");
    let errs = errors(&public);
    assert!(
        errs.iter().any(|e| e.ends_with(
            "routes[0].upstream_auth.on_behalf_of: on-behalf-of needs the caller's token: give the route an `auth` block"
        )),
        "{errs:?}"
    );
    let foreign = errors(&with(
        "{ issuer: entra, client_id: gw, client_secret: s, scopes: [s], audience: up }",
    ));
    assert_eq!(foreign.len(), 1, "{foreign:?}");
    assert!(
        foreign[0].contains("upstream_auth.on_behalf_of") && foreign[0].contains("audience"),
        "{foreign:?}"
    );
}
