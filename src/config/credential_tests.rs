//! Configuration rules of the credential paths: https for identity endpoints, token
//! kinds, `base_scopes`, and secrets that never show in errors, `Debug` prints or
//! readable files.

use super::raw::RawConfig;
use super::{load_file, load_str, GrantScopes, UpstreamAuth};

const ROUTE: &str = "\
routes:
  - name: secure
    match: { path: /secure/mcp }
    public_url: https://mcp.example.com/secure/mcp
    upstream: { url: 'http://127.0.0.1:3001/mcp' }
    auth: { issuers: [corp] }
";

fn with_issuer(issuer: &str) -> String {
    format!("issuers:\n  - name: corp\n{issuer}{ROUTE}")
}

fn errors(text: &str) -> Vec<String> {
    match load_str("gw.yaml", text) {
        Ok(_) => vec![],
        Err(errors) => errors.iter().map(ToString::to_string).collect(),
    }
}

fn warnings(text: &str) -> Vec<String> {
    match load_str("gw.yaml", text) {
        Ok(loaded) => loaded.warnings,
        Err(errors) => panic!("{errors:?}"),
    }
}

#[test]
fn identity_endpoints_need_https_off_loopback() {
    for bad in [
        "    issuer: http://idp.example.com\n",
        "    issuer: https://idp.example.com\n    jwks_uri: http://keys.example.com/jwks\n",
        "    issuer: https://idp.example.com\n    introspection: { client_id: gw, client_secret: s, endpoint: 'http://10.0.0.1/introspect' }\n",
    ] {
        let errs = errors(&with_issuer(bad));
        assert!(errs[0].contains("must use https"), "{bad}: {errs:?}");
    }
    for good in [
        "    issuer: https://idp.example.com\n",
        "    issuer: http://127.0.0.1:9000\n",
        "    issuer: http://localhost:9000/realms/x\n    jwks_uri: 'http://[::1]:9000/jwks'\n",
    ] {
        assert_eq!(errors(&with_issuer(good)), Vec::<String>::new(), "{good}");
    }
    let opted_out =
        with_issuer("    issuer: http://idp.example.com\n    allow_insecure_http: true\n");
    let warned = warnings(&opted_out);
    assert!(
        warned
            .iter()
            .any(|w| w.contains("allow_insecure_http is on")),
        "{warned:?}"
    );
}

#[test]
fn token_endpoints_need_https_off_loopback() {
    let route = |grant: &str| {
        format!(
            "issuers:\n  - name: corp\n    issuer: https://idp.example.com\n{ROUTE}    upstream_auth:\n      token_exchange: {{ token_endpoint: '{grant}', client_id: gw, client_secret: s, audience: up }}\n"
        )
    };
    let errs = errors(&route("http://idp.example.com/token"));
    assert!(
        errs.iter().any(|e| e.contains("must use https")),
        "{errs:?}"
    );
    assert_eq!(
        errors(&route("http://127.0.0.1:9/token")),
        Vec::<String>::new()
    );
}

#[test]
fn token_types_are_checked_and_normalised() {
    let loaded = load_str(
        "gw.yaml",
        &with_issuer(
            "    issuer: https://idp.example.com\n    token_types: [application/AT+JWT]\n",
        ),
    )
    .unwrap();
    assert_eq!(loaded.config.issuers[0].token_types, vec!["at+jwt"]);
    let default = load_str(
        "gw.yaml",
        &with_issuer("    issuer: https://idp.example.com\n"),
    )
    .unwrap();
    assert_eq!(default.config.issuers[0].token_types, vec!["at+jwt", "jwt"]);
    let errs = errors(&with_issuer(
        "    issuer: https://idp.example.com\n    token_types: [id_token]\n",
    ));
    assert!(errs[0].contains("unknown token type"), "{errs:?}");
    let errs = errors(&with_issuer(
        "    issuer: https://idp.example.com\n    introspection: { client_id: gw, client_secret: s, token_types: [refresh] }\n",
    ));
    assert!(errs[0].contains("unknown token type"), "{errs:?}");
}

#[test]
fn base_scopes_belong_to_per_operation() {
    let grant = |extra: &str| {
        format!(
            "issuers:\n  - name: corp\n    issuer: https://idp.example.com\n{ROUTE}    upstream_auth:\n      token_exchange: {{ issuer: corp, client_id: gw, client_secret: s, audience: up{extra} }}\n"
        )
    };
    let loaded = load_str(
        "gw.yaml",
        &grant(", scopes: per_operation, base_scopes: [mcp:base]"),
    )
    .unwrap();
    match &loaded.config.routes[0].upstream_auth {
        UpstreamAuth::TokenExchange(g) => {
            assert_eq!(g.scopes, GrantScopes::PerOperation);
            assert_eq!(g.base_scopes, vec!["mcp:base"]);
        }
        other => panic!("{other:?}"),
    }
    let warned = warnings(&grant(", scopes: per_operation"));
    assert!(
        warned.iter().any(|w| w.contains("without base_scopes")),
        "{warned:?}"
    );
    let errs = errors(&grant(", scopes: [a], base_scopes: [b]"));
    assert!(errs[0].contains("per_operation` only"), "{errs:?}");
}

#[test]
fn shape_errors_never_echo_values() {
    let text = format!(
        "issuers:\n  - name: corp\n    issuer: https://idp.example.com\n{ROUTE}    upstream_auth:\n      static: 'Bearer sk-live-0123456789'\n"
    );
    let errs = errors(&text);
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(!errs[0].contains("sk-live"), "{errs:?}");
    assert!(errs[0].contains("expected a mapping"), "{errs:?}");
    assert!(errs[0].contains("found text"), "{errs:?}");
    let errs = errors(&with_issuer(
        "    issuer: https://idp.example.com\n    introspection: { client_id: gw, client_secret: { nested: hunter2 } }\n",
    ));
    assert!(!errs.iter().any(|e| e.contains("hunter2")), "{errs:?}");
}

#[test]
fn the_raw_model_never_prints_secrets() {
    let text = format!(
        "sessions:\n  keys:\n    - {{ id: k1, secret: 'c2Vzc2lvbi1rZXktZm9yLXRlc3RzLTAxMjM0NTY3ODk=' }}\nissuers:\n  - name: corp\n    issuer: https://idp.example.com\n    introspection: {{ client_id: gw, client_secret: introspect-hunter2 }}\n{ROUTE}    upstream_auth:\n      token_exchange: {{ issuer: corp, client_id: gw, client_secret: exchange-hunter2, audience: up }}\n  - name: s\n    match: {{ path: /s }}\n    upstream: {{ url: 'http://127.0.0.1:1/' }}\n    upstream_auth: {{ static: {{ header: X-Key, value: static-hunter2 }} }}\n"
    );
    let raw: RawConfig = serde_yaml::from_str(&text).unwrap();
    let printed = format!("{raw:?}");
    for secret in [
        "introspect-hunter2",
        "exchange-hunter2",
        "static-hunter2",
        "c2Vzc2lvbi1rZXk",
    ] {
        assert!(!printed.contains(secret), "{secret} printed");
    }
    let loaded = load_str("gw.yaml", &text).unwrap();
    let printed = format!("{:?}", loaded.config);
    assert!(!printed.contains("hunter2"));
}

#[cfg(unix)]
#[test]
fn readable_secret_files_are_warned_about() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("api-key");
    std::fs::write(&secret, "not-a-real-key\n").unwrap();
    let config = dir.path().join("gw.yaml");
    std::fs::write(
        &config,
        format!(
            "routes:\n  - name: s\n    match: {{ path: /s }}\n    upstream: {{ url: 'http://127.0.0.1:1/' }}\n    upstream_auth: {{ static: {{ header: X-Key, value_file: '{}' }} }}\n",
            secret.display()
        ),
    )
    .unwrap();
    let warned = |mode: u32| {
        std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(mode)).unwrap();
        load_file(&config)
            .unwrap()
            .warnings
            .into_iter()
            .any(|w| w.contains("holds a secret but is readable"))
    };
    assert!(warned(0o644));
    assert!(warned(0o604));
    assert!(!warned(0o600));
    assert!(!warned(0o400));
    // The file's group is this process's own (a new file takes it): it may read.
    assert!(!warned(0o640));
    assert!(!warned(0o440), "a Kubernetes Secret volume under fsGroup");
    // Another group may not. (The suite runs as root, which may give a file any group.)
    std::os::unix::fs::chown(&secret, None, Some(65_534)).expect("chown to nogroup");
    assert!(warned(0o640));
    assert!(!warned(0o600));
}

#[test]
fn the_process_groups_are_read_from_proc_status() {
    let status = "Name:\tdrawbridge\nUid:\t65532\t65532\t65532\t65532\nGid:\t65532\t65532\t65532\t65532\nFDSize:\t64\nGroups:\t65532 10 \n";
    let groups = super::validate::groups_in_status(status);
    assert!(
        groups.contains(&65_532) && groups.contains(&10),
        "{groups:?}"
    );
    assert!(!groups.contains(&64));
}

#[test]
fn a_static_credential_may_not_name_a_gateway_managed_header() {
    for name in [
        "Mcp-Session-Id",
        "x-forwarded-for",
        "content-type",
        "Host",
        "cookie",
        "accept-encoding",
        "transfer-encoding",
    ] {
        let text = format!(
            "routes:\n  - name: s\n    match: {{ path: /s }}\n    upstream: {{ url: 'http://127.0.0.1:1/' }}\n    upstream_auth: {{ static: {{ header: {name}, value: forged-hunter2 }} }}\n"
        );
        let errs = errors(&text);
        assert_eq!(errs.len(), 1, "{name}: {errs:?}");
        assert!(
            errs[0].contains("routes[0].upstream_auth.static.header"),
            "{errs:?}"
        );
        assert!(errs[0].contains("managed by the gateway"), "{errs:?}");
        assert!(!errs[0].contains("hunter2"), "{errs:?}");
    }
    // An ordinary credential header is still accepted.
    let text = "routes:\n  - name: s\n    match: { path: /s }\n    upstream: { url: 'http://127.0.0.1:1/' }\n    upstream_auth: { static: { header: X-Api-Key, value: k } }\n";
    assert!(errors(text).is_empty(), "{:?}", errors(text));
}

/// The static header is parsed once, by validation; what cannot be a header is refused
/// there with these messages (unchanged since the build step stopped re-parsing it),
/// without the value.
#[test]
fn a_static_credential_must_be_a_valid_header() {
    let with = |block: &str| {
        format!(
            "routes:\n  - name: s\n    match: {{ path: /s }}\n    upstream: {{ url: 'http://127.0.0.1:1/' }}\n    upstream_auth: {{ static: {block} }}\n"
        )
    };
    assert_eq!(
        errors(&with("{ header: 'X Api-Key', value: k-hunter2 }")),
        ["gw.yaml:5:40: routes[0].upstream_auth.static.header: not a valid header name"]
    );
    for value in ["''", "\"k-hunter2\\u0001\"", "\"k-hunter2\\n\""] {
        assert_eq!(
            errors(&with(&format!("{{ header: X-Api-Key, value: {value} }}"))),
            ["gw.yaml:5:30: routes[0].upstream_auth.static: the value is empty or not a valid header value"],
            "{value}"
        );
    }
}
