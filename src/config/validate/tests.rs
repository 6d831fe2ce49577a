use super::*;
use crate::config::UpstreamAuth;

fn errors(text: &str) -> Vec<String> {
    match validate("gw.yaml", text) {
        Ok(_) => vec![],
        Err(errors) => errors.iter().map(ToString::to_string).collect(),
    }
}

const GOOD: &str = "\
listen: 127.0.0.1:8080
admin:
  listen: 127.0.0.1:9090
routes:
  - name: everything
    match: { path: /everything/mcp/ }
    upstream:
      url: http://127.0.0.1:3001/mcp
      timeouts: { connect: 2s, read: 30s }
";

#[test]
fn shutdown_phases_default_and_are_bounded() {
    let loaded = validate("gw.yaml", GOOD).unwrap();
    assert_eq!(
        loaded.config.shutdown_grace,
        crate::config::DEFAULT_SHUTDOWN_GRACE
    );
    assert_eq!(
        loaded.config.shutdown_drain,
        crate::config::DEFAULT_SHUTDOWN_DRAIN
    );
    let set = format!("shutdown_drain: 0s\nshutdown_grace: 30s\n{GOOD}");
    let loaded = validate("gw.yaml", &set).unwrap();
    assert_eq!(loaded.config.shutdown_drain, std::time::Duration::ZERO);
    assert_eq!(
        loaded.config.shutdown_grace,
        std::time::Duration::from_secs(30)
    );
    let bad = errors(&format!("shutdown_drain: 2h\nshutdown_grace: soon\n{GOOD}"));
    assert!(bad.iter().any(|e| e.contains("shutdown_drain")), "{bad:?}");
    assert!(bad.iter().any(|e| e.contains("shutdown_grace")), "{bad:?}");
}

#[test]
fn dns_settings_default_and_are_bounded() {
    let loaded = validate("gw.yaml", GOOD).unwrap();
    assert_eq!(loaded.config.dns, crate::config::DnsSettings::default());
    assert_eq!(
        loaded.config.dns.refresh,
        std::time::Duration::from_secs(30)
    );
    let set = format!("dns: {{ refresh: 2m, timeout: 300ms }}\n{GOOD}");
    let dns = validate("gw.yaml", &set).unwrap().config.dns;
    assert_eq!(dns.refresh, std::time::Duration::from_secs(120));
    assert_eq!(dns.timeout, std::time::Duration::from_millis(300));
    for (bad, why) in [
        ("dns: { refresh: 500ms }", "1s to 1h"),
        ("dns: { refresh: 2h }", "1s to 1h"),
        ("dns: { timeout: 10ms }", "100ms to 1m"),
        (
            "dns: { refresh: 2s, timeout: 5s }",
            "shorter than dns.refresh",
        ),
        ("dns: { every: 2s }", "every"),
    ] {
        let errs = errors(&format!("{bad}\n{GOOD}"));
        assert!(
            errs.iter()
                .any(|e| e.contains("gw.yaml:1:") && e.contains(why)),
            "{bad}: {errs:?}"
        );
    }
}

#[test]
fn trusted_proxies_are_checked_blocks_and_every_address_is_warned_about() {
    let loaded = validate("gw.yaml", GOOD).unwrap();
    assert!(loaded.config.trusted_proxies.is_empty(), "none by default");
    let set = format!("trusted_proxies: [10.0.0.0/8, 192.0.2.7, '2001:db8::/32']\n{GOOD}");
    let loaded = validate("gw.yaml", &set).unwrap();
    assert!(!loaded.config.trusted_proxies.is_empty());
    assert!(!loaded
        .warnings
        .iter()
        .any(|w| w.contains("trusted_proxies")));
    let bad = format!("trusted_proxies:\n  - 10.0.0.0/8\n  - 10.1.2.3/8\n  - lb.internal\n{GOOD}");
    let errs = errors(&bad);
    assert_eq!(errs.len(), 2, "{errs:?}");
    assert!(
        errs[0].contains("gw.yaml:3:")
            && errs[0].contains("trusted_proxies[1]")
            && errs[0].contains("bits set past the prefix"),
        "{errs:?}"
    );
    assert!(
        errs[1].contains("gw.yaml:4:") && errs[1].contains("not an IP address"),
        "{errs:?}"
    );
    let all = format!("trusted_proxies: ['0.0.0.0/0']\n{GOOD}");
    let loaded = validate("gw.yaml", &all).unwrap();
    assert!(
        loaded
            .warnings
            .iter()
            .any(|w| w.contains("trusts every address")),
        "{:?}",
        loaded.warnings
    );
}

#[test]
fn batch_limit_and_cookie_forwarding_default_and_are_checked() {
    let loaded = validate("gw.yaml", GOOD).unwrap();
    assert_eq!(loaded.config.max_batch, crate::config::DEFAULT_MAX_BATCH);
    assert!(!loaded.config.routes[0].upstream.forward_cookies);
    let set = format!("limits: {{ max_batch: 5 }}\n{GOOD}")
        .replace("      url:", "      forward_cookies: true\n      url:");
    let loaded = validate("gw.yaml", &set).unwrap();
    assert_eq!(loaded.config.max_batch, 5);
    assert!(loaded.config.routes[0].upstream.forward_cookies);
    for bad in ["0", "10001"] {
        let errs = errors(&format!("limits: {{ max_batch: {bad} }}\n{GOOD}"));
        assert!(
            errs.len() == 1 && errs[0].contains("limits.max_batch"),
            "{errs:?}"
        );
    }
}

#[test]
fn the_sse_event_cap_defaults_and_is_bounded() {
    let loaded = validate("gw.yaml", GOOD).unwrap();
    assert_eq!(
        loaded.config.max_sse_event_bytes,
        crate::config::DEFAULT_MAX_SSE_EVENT
    );
    let set = format!("limits:\n  max_sse_event: 64KiB\n{GOOD}");
    let loaded = validate("gw.yaml", &set).unwrap();
    assert_eq!(loaded.config.max_sse_event_bytes, 64 << 10);
    for bad in ["100", "lots"] {
        let errs = errors(&format!("limits:\n  max_sse_event: {bad}\n{GOOD}"));
        assert!(
            errs.iter().any(|e| e.contains("limits.max_sse_event")),
            "{errs:?}"
        );
    }
}

#[test]
fn a_good_file_gives_typed_settings() {
    let loaded = validate("gw.yaml", GOOD).unwrap();
    let route = &loaded.config.routes[0];
    assert_eq!(route.path_prefix, "/everything/mcp");
    assert_eq!(route.upstream.base_path, "/mcp");
    assert_eq!(route.upstream.authority, "127.0.0.1:3001");
    assert_eq!(route.upstream.connect_timeout.as_secs(), 2);
    assert!(!route.upstream.tls);
    assert_eq!(loaded.warnings.len(), 1, "public route warned about");
}

/// The `Host` the upstream receives is parsed at validation, as the runtime sends it.
#[test]
fn the_upstream_authority_is_a_parsed_host_header() {
    for (url, authority) in [
        ("http://127.0.0.1:3001/mcp", "127.0.0.1:3001"),
        ("http://[::1]/mcp", "[::1]"),
        ("https://Up.Example.com:443/mcp", "up.example.com"),
        ("https://up.example.com:8443/", "up.example.com:8443"),
        ("http://b\u{fc}cher.example/mcp", "xn--bcher-kva.example"),
    ] {
        let text = GOOD.replace("http://127.0.0.1:3001/mcp", url);
        let loaded = validate("gw.yaml", &text).unwrap();
        let got: &http::HeaderValue = &loaded.config.routes[0].upstream.authority;
        assert_eq!(got, authority, "{url}");
    }
}

#[test]
fn unknown_key_is_located() {
    let text = GOOD.replace("      url:", "      colour: red\n      url:");
    let errs = errors(&text);
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(errs[0].starts_with("gw.yaml:8:"), "{}", errs[0]);
    assert!(errs[0].contains("routes[0].upstream"), "{}", errs[0]);
    assert!(errs[0].contains("unknown field `colour`"), "{}", errs[0]);
}

#[test]
fn every_semantic_error_is_reported_with_its_line() {
    let text = GOOD
        .replace("http://127.0.0.1:3001/mcp", "ftp://x/mcp")
        .replace("listen: 127.0.0.1:8080", "listen: nowhere")
        .replace("connect: 2s", "connect: 2 fortnights");
    let errs = errors(&text);
    assert_eq!(errs.len(), 3, "{errs:?}");
    assert!(errs.iter().any(|e| e.starts_with("gw.yaml:1:9: listen:")));
    assert!(errs
        .iter()
        .any(|e| e.starts_with("gw.yaml:8:12: routes[0].upstream.url: the scheme")));
    assert!(errs
        .iter()
        .any(|e| e.contains("routes[0].upstream.timeouts.connect")));
}

#[test]
fn missing_variable_is_named_and_no_value_is_printed() {
    std::env::set_var("DRAWBRIDGE_TEST_UPSTREAM_HOST", "10.9.8.7");
    let text = GOOD.replace(
        "127.0.0.1:3001",
        "${DRAWBRIDGE_TEST_UPSTREAM_HOST}:${DRAWBRIDGE_TEST_NOPE}",
    );
    let errs = errors(&text);
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(errs[0].contains("`DRAWBRIDGE_TEST_NOPE` is not set"));
    assert!(!errs[0].contains("10.9.8.7"));
}

#[test]
fn credentials_in_urls_are_refused_without_echoing_them() {
    let text = GOOD.replace("http://127.0.0.1", "http://user:hunter2@127.0.0.1");
    let errs = errors(&text);
    assert_eq!(errs.len(), 1);
    assert!(errs[0].contains("credentials in the URL"));
    assert!(!errs[0].contains("hunter2"));
}

#[test]
fn duplicate_names_and_identical_matches_are_errors() {
    let route = "  - name: everything\n    match: { path: /everything/mcp }\n    upstream: { url: http://127.0.0.1:1/ }\n";
    let errs = errors(&format!("{GOOD}{route}"));
    assert_eq!(errs.len(), 2, "{errs:?}");
    assert!(errs[0].contains("duplicate route name `everything`"));
    assert!(errs[1].contains("same host and path as route `everything`"));
}

#[test]
fn session_keys_are_checked_and_never_echoed() {
    let key = "c2Vzc2lvbi1rZXktZm9yLXRlc3RzLTAxMjM0NTY3ODk=";
    let good =
        format!("{GOOD}sessions:\n  keys:\n    - {{ id: k1, secret: '{key}' }}\n  max_age: 12h\n");
    let loaded = validate("gw.yaml", &good).unwrap();
    let sessions = loaded.config.sessions.unwrap();
    // The keys are prepared by validation; the runtime seals with them as they are.
    assert_eq!(
        format!("{:?}", sessions.keys),
        r#"SessionKeys { ids: ["k1"], .. }"#
    );
    let bytes = crate::mcp::session::SessionKeys::decode_key(key).unwrap();
    assert_eq!(
        sessions.key_checks,
        [("k1".to_string(), crate::mcp::session::key_check(&bytes))]
    );
    assert_eq!(
        sessions.max_age,
        Some(std::time::Duration::from_secs(12 * 3600))
    );
    let weak = format!("{GOOD}sessions:\n  keys:\n    - {{ id: k1, secret: 'AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=' }}\n");
    let errs = errors(&weak);
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(errs[0].starts_with("gw.yaml:"), "{errs:?}");
    let short = format!("{GOOD}sessions:\n  keys:\n    - {{ id: k1, secret: 'c2hvcnQ=' }}\n");
    let errs = errors(&short);
    assert!(errs[0].contains("sessions.keys[0]"), "{errs:?}");
    assert!(!errs[0].contains("c2hvcnQ"), "{errs:?}");
    let empty = format!("{GOOD}sessions:\n  keys: []\n");
    assert_eq!(errors(&empty).len(), 1);
}

#[test]
fn passthrough_is_refused_with_the_reason() {
    let text = format!("{GOOD}    upstream_auth: {{ passthrough: true }}\n");
    let errs = errors(&text);
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(
        errs[0].contains("routes[0].upstream_auth.passthrough: token passthrough does not exist")
    );
}

#[test]
fn upstream_auth_shapes() {
    let with = |block: &str| format!("{GOOD}    upstream_auth: {block}\n");
    assert!(errors(&with("{ none: {} }")).is_empty());
    std::env::set_var("DRAWBRIDGE_TEST_API_KEY", "k-123");
    let loaded = validate(
        "gw.yaml",
        &with("{ static: { header: X-Api-Key, value: '${DRAWBRIDGE_TEST_API_KEY}' } }"),
    )
    .unwrap();
    match &loaded.config.routes[0].upstream_auth {
        UpstreamAuth::Static { header, value } => {
            assert_eq!(header, "x-api-key");
            assert_eq!(value.as_bytes(), b"k-123");
            assert!(value.is_sensitive());
        }
        other => panic!("{other:?}"),
    }
    let printed = format!("{:?}", loaded.config);
    assert!(!printed.contains("k-123"), "the static value is printed");
    assert!(printed.contains("value: Sensitive"), "{printed}");
    let errs = errors(&with("{ none: {}, static: { header: x, value: y } }"));
    assert!(errs[0].contains("exactly one"), "{errs:?}");
    let errs = errors(&with("{ token_exchange: { token_endpoint: 'https://idp/token', client_id: gw, client_secret: s, audience: up } }"));
    assert!(errs[0].contains("needs the caller's token"), "{errs:?}");
    let errs = errors(&with(
        "{ client_credentials: { client_id: gw, client_secret: s } }",
    ));
    assert!(errs[0].contains("name an `issuer`"), "{errs:?}");
    let errs = errors(&with("{ client_credentials: { token_endpoint: 'https://idp/token', client_id: gw, client_auth: client_secret_post } }"));
    assert!(errs[0].contains("needs a client_secret"), "{errs:?}");
}

/// A `private_key_jwt` key is decoded once, by validation: the typed config carries the
/// key the runtime signs with (and the PEM text, which the route's binding fingerprint
/// hashes); a file that holds no usable key is refused with its path, never its content.
#[test]
fn private_key_jwt_config_holds_the_decoded_key() {
    use ring::rand::SystemRandom;
    use ring::signature::{EcdsaKeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
    let dir = tempfile::tempdir().unwrap();
    let pkcs8 =
        EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new())
            .unwrap();
    let body = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, pkcs8);
    let pem = format!("-----BEGIN PRIVATE KEY-----\n{body}\n-----END PRIVATE KEY-----\n");
    let key_file = dir.path().join("gw.key");
    std::fs::write(&key_file, &pem).unwrap();
    let with_key = |file: &std::path::Path| {
        format!(
            "{GOOD}    upstream_auth:\n      client_credentials: {{ token_endpoint: 'https://idp.example.com/token', client_id: gw, client_auth: private_key_jwt, private_key_file: '{}', key_id: k-1 }}\n",
            file.display()
        )
    };
    let loaded = validate("gw.yaml", &with_key(&key_file)).unwrap();
    let UpstreamAuth::ClientCredentials(grant) = &loaded.config.routes[0].upstream_auth else {
        panic!("{:?}", loaded.config.routes[0].upstream_auth);
    };
    match &grant.client {
        crate::config::GrantClient::PrivateKeyJwt {
            client_id,
            key,
            key_pem,
            key_id,
        } => {
            assert_eq!(client_id, "gw");
            assert_eq!(key.algorithm(), "ES256");
            assert!(key.sign(b"header.payload").is_some());
            assert_eq!(key_pem.expose(), pem);
            assert_eq!(key_id.as_deref(), Some("k-1"));
        }
        other => panic!("{other:?}"),
    }
    let printed = format!("{:?}", loaded.config);
    assert!(!printed.contains(&body[..40]), "the key is printed");
    assert!(printed.contains("SigningKey(ES256)"), "{printed}");

    let junk = dir.path().join("junk.key");
    std::fs::write(&junk, "secret-looking-junk").unwrap();
    let errs = errors(&with_key(&junk));
    assert_eq!(
        errs,
        [format!(
            "gw.yaml:11:141: routes[0].upstream_auth.client_credentials.private_key_file: `{}`: no PKCS#8 private key in the PEM text",
            junk.display()
        )]
    );
}

#[test]
fn policies_need_auth_and_unambiguous_patterns() {
    let text = format!(
            "{GOOD}    policy:\n      default: maybe\n      tools:\n        \"get-*\": [read]\n        \"*-env\": [env]\n"
        );
    let errs = errors(&text);
    assert_eq!(errs.len(), 3, "{errs:?}");
    assert!(errs.iter().any(|e| e.contains("needs an `auth` block")));
    assert!(errs
        .iter()
        .any(|e| e.contains("routes[0].policy.default: must be")));
    assert!(errs
        .iter()
        .any(|e| e.contains("`*-env` and `get-*` can match the same name")));
}

#[test]
fn ca_files_must_exist_hold_certificates_and_serve_https() {
    let with_ca = |url: &str, file: &str| {
        GOOD.replace("http://127.0.0.1:3001/mcp", url).replace(
            "      timeouts:",
            &format!("      tls: {{ ca_file: {file} }}\n      timeouts:"),
        )
    };
    let errs = errors(&with_ca("http://127.0.0.1:1/", "/nonexistent.pem"));
    assert!(errs[0].contains("only applies to https"), "{errs:?}");
    let errs = errors(&with_ca("https://127.0.0.1:1/", "/nonexistent.pem"));
    assert!(
        errs[0].contains("routes[0].upstream.tls.ca_file: cannot read"),
        "{errs:?}"
    );
    let junk = std::env::temp_dir().join("drawbridge-test-not-a-cert.pem");
    std::fs::write(&junk, "hello").unwrap();
    let errs = errors(&with_ca(
        "https://127.0.0.1:1/",
        &junk.display().to_string(),
    ));
    assert!(errs[0].contains("no valid PEM certificate"), "{errs:?}");
}

#[test]
fn empty_file_and_no_routes() {
    assert!(errors("")[0].contains("empty"));
    assert!(errors("listen: 127.0.0.1:1\n")[0].contains("at least one route"));
}

#[test]
fn a_missing_key_points_at_the_document_or_the_top_of_the_file() {
    // Found by fuzz/fuzz_targets/config.rs: a file of comments only (and one without
    // `routes` among its keys) got "routes: at least one route is needed" with no line.
    assert_eq!(
        errors("# comments only\n# nothing else\n"),
        ["gw.yaml:1:1: routes: at least one route is needed"]
    );
    assert_eq!(
        errors("# a comment\nlisten: 127.0.0.1:1\n"),
        ["gw.yaml:2:7: routes: at least one route is needed"]
    );
}
#[test]
fn client_limits_have_defaults_and_are_checked() {
    let loaded = validate("gw.yaml", GOOD).unwrap();
    assert_eq!(loaded.config.client, super::super::ClientLimits::default());
    let set = format!(
            "limits:\n  client_idle_timeout: 5s\n  header_timeout: 2s\n  body_timeout: 7s\n  max_connections: 3\n{GOOD}"
        );
    let client = validate("gw.yaml", &set).unwrap().config.client;
    assert_eq!(client.idle_timeout, std::time::Duration::from_secs(5));
    assert_eq!(client.header_timeout, std::time::Duration::from_secs(2));
    assert_eq!(client.body_timeout, std::time::Duration::from_secs(7));
    assert_eq!(client.max_connections, 3);
    let bad = errors(&format!(
            "limits:\n  client_idle_timeout: 500ms\n  header_timeout: 2h\n  body_timeout: 0s\n  max_connections: 0\n{GOOD}"
        ));
    for key in [
        "limits.client_idle_timeout",
        "limits.header_timeout",
        "limits.body_timeout",
        "limits.max_connections",
    ] {
        assert!(bad.iter().any(|e| e.contains(key)), "{key}: {bad:?}");
    }
}

#[test]
fn allowed_origins_are_exact_origins() {
    let good = format!(
        "{GOOD}    allowed_origins: [\"https://App.example.com\", \"http://127.0.0.1:8123\"]\n"
    );
    let loaded = validate("gw.yaml", &good).unwrap();
    assert_eq!(
        loaded.config.routes[0].allowed_origins,
        ["https://app.example.com", "http://127.0.0.1:8123"]
    );
    assert!(validate("gw.yaml", GOOD).unwrap().config.routes[0]
        .allowed_origins
        .is_empty());
    for bad in [
        "\"*\"",
        "\"https://*.example.com\"",
        "\"https://app.example.com/mcp\"",
        "null",
    ] {
        let errs = errors(&format!("{GOOD}    allowed_origins: [{bad}]\n"));
        assert!(
            errs.iter()
                .any(|e| e.contains("routes[0].allowed_origins[0]")),
            "{bad}: {errs:?}"
        );
    }
}

/// Shape errors in the operator's words, with the message before each change.
#[test]
fn shape_errors_name_what_was_expected_never_a_rust_type_or_the_value() {
    let cases = [
        // Before: `workers: invalid type: string "two", expected usize`.
        (
            format!("workers: two\n{GOOD}"),
            "gw.yaml:1:10: workers: expected a whole number, found text",
        ),
        (
            format!("workers: -1\n{GOOD}"),
            "gw.yaml:1:10: workers: expected a whole number, neither negative nor this large",
        ),
        // Before: `sessions.keys[0]: invalid type: string, expected struct RawSessionKey`.
        (
            format!("{GOOD}sessions:\n  keys:\n    - k1\n"),
            "gw.yaml:12:7: sessions.keys[0]: expected a key such as `{ id: k1, secret_file: /run/secrets/session-key }`, found text",
        ),
        // Before: `required_scopes: invalid type: string, expected a sequence`.
        (
            format!("{GOOD}    auth: {{ issuers: [corp], required_scopes: mcp:tools }}\n"),
            "gw.yaml:10:47: routes[0].auth.required_scopes: expected a list, e.g. [mcp:tools], found text",
        ),
        (
            format!("{GOOD}    upstream_auth:\n      static: 'Bearer sk-live-0123456789'\n"),
            "gw.yaml:11:15: routes[0].upstream_auth.static: expected a mapping (`key: value` lines or `{ key: value }`), found text",
        ),
    ];
    for (text, expected) in cases {
        assert_eq!(errors(&text), [expected]);
    }
}

#[test]
fn syntax_errors_have_no_invented_key_path_and_one_position() {
    // Before: `gw.yaml:8:20: routes[0].upstream.?: mapping values are not allowed in this
    // context at line 8 column 20`.
    let colon = GOOD.replace("url: http://127.0.0.1:3001/mcp", "url: http://a: b");
    assert_eq!(
        errors(&colon),
        ["gw.yaml:8:20: mapping values are not allowed in this context (a value with `: ` in it needs quotes)"]
    );
    // Before: `…: found character that cannot start any token at line 3 column 1, while
    // scanning for the next token at line 3 column 1`.
    let tab = GOOD.replace("admin:\n  listen", "admin:\n\tlisten");
    let errs = errors(&tab);
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(errs[0].starts_with("gw.yaml:3:1: "), "{errs:?}");
    assert!(
        !errs[0].contains("line"),
        "position printed twice: {errs:?}"
    );
    assert!(errs[0].contains("indent with spaces"), "{errs:?}");
    // Before: `gw.yaml:4:1: found a tab character that violates indentation at line 4
    // column 1, while scanning a plain scalar`.
    let tab = GOOD.replace("9090\n", "9090\n\tx: 1\n");
    assert_eq!(
        errors(&tab),
        ["gw.yaml:4:1: found a tab character that violates indentation, while scanning a plain scalar (a tab? indent with spaces only)"]
    );
}

#[test]
fn a_file_of_several_documents_is_refused_where_the_second_starts() {
    // Found by fuzz/fuzz_targets/config.rs with "---\n...\n---\nroutes: []\n": serde_yaml
    // refuses several documents without a position, and the error had none.
    assert_eq!(
        errors("---\n...\n---\nroutes: []\n"),
        ["gw.yaml:3:1: deserializing from YAML containing more than one document is not supported"]
    );
    let two = format!("{GOOD}---\n{GOOD}");
    let errs = errors(&two);
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(errs[0].starts_with("gw.yaml:10:1: "), "{errs:?}");
}

#[test]
fn a_file_with_three_shape_errors_reports_all_three_in_file_order() {
    // Before: only the first (`workers`).
    let text = format!(
        "workers: two\n{GOOD}    allowed_origins: https://a.example\n  - name: b\n    match: {{ path: /b }}\n    upstream: 3\n"
    );
    assert_eq!(
        errors(&text),
        [
            "gw.yaml:1:10: workers: expected a whole number, found text",
            "gw.yaml:11:22: routes[0].allowed_origins: expected a list, e.g. [\"https://app.example.com\"], found text",
            "gw.yaml:14:15: routes[1].upstream: expected a mapping such as `{ url: http://127.0.0.1:3001/mcp }`, found a number",
        ]
    );
    // Two errors in one route are both found.
    let text =
        format!("{GOOD}    allowed_origins: https://a.example\n    auth: {{ issuers: corp }}\n");
    assert_eq!(
        errors(&text),
        [
            "gw.yaml:10:22: routes[0].allowed_origins: expected a list, e.g. [\"https://app.example.com\"], found text",
            "gw.yaml:11:22: routes[0].auth.issuers: expected a list, e.g. [a, b] or `- a` lines, found text",
        ]
    );
    // An unknown top-level key and a missing one in a route are both found too.
    let text = format!("colour: red\n{GOOD}  - name: b\n    upstream: {{ url: http://x/ }}\n");
    let errs = errors(&text);
    assert_eq!(errs.len(), 2, "{errs:?}");
    assert!(errs[0].starts_with("gw.yaml:1:"), "{errs:?}");
    assert!(errs[0].contains("unknown field `colour`"), "{errs:?}");
    assert!(
        errs[1].contains("routes[1]: the key `match` is required here"),
        "{errs:?}"
    );
}
