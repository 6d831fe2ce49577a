//! `explain` on each step of the request path, from a configuration text.

use super::*;
use crate::auth::jwt::TokenError;

const ISSUER: &str = "issuers:\n  - name: corp\n    issuer: https://idp.example.com\n";

fn config(routes: &str) -> crate::config::Config {
    let text = format!("{ISSUER}routes:\n{routes}");
    match crate::config::load_str("gw.yaml", &text) {
        Ok(loaded) => loaded.config,
        Err(e) => panic!("{e:?}"),
    }
}

const FILES: &str = "  - name: files
    match: { path: /files/mcp }
    public_url: https://mcp.example.com/files/mcp
    upstream: { url: 'http://127.0.0.1:3001/mcp' }
    auth: { issuers: [corp], required_scopes: [mcp] }
    policy:
      require:
        claims: { tid: { values: [t1], mode: shadow } }
      tools:
        read_file:
          scopes: [files:read]
          additional_arguments: deny
          arguments:
            path: { glob: '/srv/data/**' }
            /options/depth: { max: 3, optional: true }
        deploy:
          scopes: [ops]
          claims: { groups: [admins] }
        write_file:
          scopes: [files:write]
          mode: shadow
      resources:
        'file:///srv/*': [files:read]
      prompts:
        summarize: [prompts:use]
";

fn given(scopes: &[&str]) -> Identity {
    Identity::Given {
        scopes: scopes.iter().map(|s| s.to_string()).collect(),
        claims: ClaimSet::EMPTY,
    }
}

fn call(tool: &str, arguments: &str) -> Vec<u8> {
    format!(
        r#"{{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{{"name":"{tool}","arguments":{arguments}}}}}"#
    )
    .into_bytes()
}

fn post(body: &[u8]) -> Request<'_> {
    static NONE: std::sync::LazyLock<HeaderMap> = std::sync::LazyLock::new(HeaderMap::new);
    Request {
        body,
        headers: &NONE,
    }
}

fn run(routes: &str, identity: &Identity, body: &[u8]) -> Explanation {
    let config = config(routes);
    explain(&config.routes[0], (1 << 20, 3), identity, &post(body))
}

fn step<'e>(ex: &'e Explanation, name: &str) -> Vec<&'e str> {
    ex.steps
        .iter()
        .filter(|s| s.step == name)
        .map(|s| s.detail.as_str())
        .collect()
}

#[test]
fn an_allowed_call_names_its_rule_and_each_argument_rule() {
    let ex = run(
        FILES,
        &given(&["mcp", "files:read"]),
        &call(
            "read_file",
            r#"{"path":"/srv/data/a.txt","options":{"depth":2}}"#,
        ),
    );
    assert!(ex.allowed(), "{}", ex.render_text());
    assert_eq!(
        step(&ex, "rule"),
        ["tools `read_file` needs scopes [files:read]"]
    );
    let arguments = step(&ex, "argument");
    assert!(
        arguments.contains(&"arguments:/path: holds"),
        "{arguments:?}"
    );
    assert!(arguments.contains(&"arguments:/options/depth: holds"));
    assert_eq!(step(&ex, "required"), ["the route's scopes [mcp] held"]);
    assert!(step(&ex, "upstream")[0].contains("http://127.0.0.1:3001/mcp"));
    // The route's `require` rule is in shadow mode: recorded as it would decide.
    assert!(step(&ex, "shadow")[0].contains("require:claims:tid"));
    let json = ex.to_json();
    assert_eq!(json["decision"], "allow");
    assert_eq!(json["status"], 200);
    assert_eq!(json["body"], Value::Null);
}

#[test]
fn a_failed_argument_rule_is_named_without_its_value_and_offers_no_step_up() {
    let secret = "etc/shadow-secret";
    let ex = run(
        FILES,
        &given(&["mcp", "files:read"]),
        &call("read_file", &format!(r#"{{"path":"/{secret}"}}"#)),
    );
    let refusal = ex.refusal.as_ref().expect("refused");
    assert_eq!(refusal.status(), 403);
    assert_eq!(refusal.www_authenticate(), None, "no scope would help");
    let text = ex.render_text();
    assert!(text.contains("argument `/path` does not match"), "{text}");
    assert!(!text.contains(secret), "the value is never printed: {text}");
    let body = ex.refusal_body().expect("a JSON-RPC error");
    assert_eq!(body["id"], 7);
    assert_eq!(body["error"]["code"], -32005);
}

#[test]
fn a_missing_scope_is_a_step_up_challenge_naming_it() {
    let ex = run(
        FILES,
        &given(&["mcp"]),
        &call("read_file", r#"{"path":"/srv/data/a"}"#),
    );
    let refusal = ex.refusal.as_ref().expect("refused");
    assert_eq!(refusal.status(), 403);
    let challenge = refusal.www_authenticate().expect("a challenge");
    assert!(
        challenge.contains(r#"scope="mcp files:read""#),
        "{challenge}"
    );
    assert!(challenge.contains("insufficient_scope"));
    assert_eq!(step(&ex, "decision"), ["deny: missing scope(s) files:read"]);
    // Argument rules are judged only once the scopes allow the call.
    assert!(step(&ex, "argument").is_empty());
}

#[test]
fn the_routes_required_scopes_refuse_before_the_body_is_judged() {
    let ex = run(FILES, &given(&["files:read"]), b"not even json");
    let refusal = ex.refusal.as_ref().expect("refused");
    assert_eq!(refusal.kind(), "insufficient_scope");
    assert_eq!(refusal.status(), 403);
    assert!(step(&ex, "body").is_empty());
}

#[test]
fn a_refused_token_is_the_gateways_401_with_its_challenge() {
    let identity = Identity::Refused {
        failure: AuthFailure::Token(TokenError::WrongAudience),
        verified: true,
    };
    let ex = run(FILES, &identity, &call("read_file", "{}"));
    let refusal = ex.refusal.as_ref().expect("refused");
    assert_eq!(refusal.status(), 401);
    assert!(refusal
        .www_authenticate()
        .is_some_and(|c| c.contains("invalid_token")));
    assert!(
        step(&ex, "caller")[0].contains("wrong_audience"),
        "{:?}",
        ex.steps
    );
}

#[test]
fn a_claim_rule_decides_before_scopes_and_reads_given_claims() {
    let config = config(FILES);
    let route = &config.routes[0];
    let body = call("deploy", "{}");
    let claims = |groups: &str| {
        let value: Value = serde_json::from_str(&format!(r#"{{"groups":[{groups}]}}"#)).unwrap();
        caller::given(&config, "mcp ops", Some(&value)).unwrap()
    };
    let ex = explain(route, (1 << 20, 3), &claims(r#""admins""#), &post(&body));
    assert!(ex.allowed(), "{}", ex.render_text());
    let ex = explain(route, (1 << 20, 3), &claims(r#""users""#), &post(&body));
    assert_eq!(ex.refusal.as_ref().map(Refusal::status), Some(403));
    assert_eq!(
        step(&ex, "decision"),
        ["deny: claim rule claims:groups fails"]
    );
    assert!(step(&ex, "rule")[0].contains("claims:groups"));
}

#[test]
fn a_shadowed_entry_passes_and_says_what_it_would_have_done() {
    let ex = run(FILES, &given(&["mcp"]), &call("write_file", "{}"));
    assert!(ex.allowed(), "{}", ex.render_text());
    let shadow = step(&ex, "shadow");
    assert!(
        shadow
            .iter()
            .any(|s| s.contains("tools:write_file") && s.contains("would deny")),
        "{shadow:?}"
    );
}

#[test]
fn bodies_the_inspection_refuses_are_refused_as_the_gateway_refuses_them() {
    let identity = given(&["mcp", "files:read"]);
    let duplicate = br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"read_file","name":"write_file"}}"#;
    let ex = run(FILES, &identity, duplicate);
    assert_eq!(ex.refusal.as_ref().map(Refusal::status), Some(400));
    assert!(step(&ex, "body")[0].starts_with("refused"));

    let removed = br#"{"jsonrpc":"2.0","id":1,"method":"resources/subscribe","params":{"uri":"file:///srv/a","_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}"#;
    let ex = run(FILES, &identity, removed);
    assert_eq!(
        ex.refusal.as_ref().map(Refusal::kind),
        Some(Refusal::MethodRemoved.kind())
    );

    let ping = r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#;
    let batch = format!("[{ping},{ping},{ping},{ping}]");
    let ex = run(FILES, &identity, batch.as_bytes());
    assert_eq!(
        ex.refusal.as_ref().map(Refusal::kind),
        Some(Refusal::BatchTooLong.kind())
    );
    let ex = run(FILES, &identity, format!("[{ping},{ping}]").as_bytes());
    assert!(ex.allowed());
    assert!(step(&ex, "batch")[0].contains("MCP-Protocol-Version"));

    let config = config(FILES);
    let ex = explain(
        &config.routes[0],
        (10, 3),
        &identity,
        &post(ping.as_bytes()),
    );
    assert_eq!(ex.refusal.as_ref().map(Refusal::status), Some(413));
}

#[test]
fn headers_given_are_judged_against_the_body_and_decide_batches() {
    let config = config(FILES);
    let route = &config.routes[0];
    let identity = given(&["mcp", "files:read"]);
    let headers = |pairs: &[(&'static str, &'static str)]| {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, http::HeaderValue::from_static(value));
        }
        map
    };
    let body = call("read_file", r#"{"path":"/srv/data/a"}"#);
    let judge = |map: &HeaderMap, body: &[u8]| {
        let request = Request { body, headers: map };
        explain(route, (1 << 20, 3), &identity, &request)
    };
    let agreeing = headers(&[("mcp-method", "tools/call"), ("mcp-name", "read_file")]);
    let ex = judge(&agreeing, &body);
    assert!(ex.allowed(), "{}", ex.render_text());
    assert_eq!(step(&ex, "headers"), ["agree with the body"]);
    assert!(!ex.render_text().contains("none given with --header"));
    let lying = headers(&[("mcp-method", "tools/call"), ("mcp-name", "echo")]);
    let ex = judge(&lying, &body);
    assert_eq!(ex.refusal.as_ref().map(Refusal::status), Some(400));
    assert!(step(&ex, "headers")[0].starts_with("refused"));
    let ping = r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#;
    let batch = format!("[{ping},{ping}]");
    let modern = headers(&[("mcp-protocol-version", "2025-06-18")]);
    let ex = judge(&modern, batch.as_bytes());
    assert_eq!(
        ex.refusal.as_ref().map(Refusal::kind),
        Some(Refusal::BatchNotSupported.kind())
    );
    let older = headers(&[("mcp-protocol-version", "2025-03-26")]);
    assert!(judge(&older, batch.as_bytes()).allowed());
}

#[test]
fn one_refused_operation_refuses_a_batch_and_each_is_explained() {
    let body = br#"[{"jsonrpc":"2.0","id":1,"method":"prompts/get","params":{"name":"summarize"}},{"jsonrpc":"2.0","id":2,"method":"resources/read","params":{"uri":"file:///etc/passwd"}}]"#;
    let ex = run(FILES, &given(&["mcp", "prompts:use", "files:read"]), body);
    assert_eq!(ex.refusal.as_ref().map(Refusal::status), Some(403));
    let decisions: Vec<_> = ex
        .steps
        .iter()
        .filter(|s| s.step == "decision")
        .map(|s| (s.operation, s.detail.as_str()))
        .collect();
    assert_eq!(
        decisions,
        [
            (Some(0), "allow"),
            (
                Some(1),
                "deny: not permitted on this route (no scope would help)"
            )
        ]
    );
    assert!(ex.render_text().contains("resource `file:///etc/passwd`"));
}

#[test]
fn a_public_route_reads_no_token_and_has_no_policy() {
    let routes = "  - name: open
    match: { path: /open }
    upstream: { url: 'http://127.0.0.1:3001/mcp' }
";
    let ex = run(routes, &given(&["tools:echo"]), &call("echo", "{}"));
    assert!(ex.allowed(), "{}", ex.render_text());
    assert!(step(&ex, "caller")[0].starts_with("public route"));
    assert!(step(&ex, "policy")[0].starts_with("none on this route"));
}

#[test]
fn unpinned_tools_are_refused_under_hide_and_pinned_ones_pass() {
    let dir = tempfile::tempdir().unwrap();
    let lock = dir.path().join("tools.lock");
    let digest = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    std::fs::write(
        &lock,
        format!("version: 1\ndigest: sha256-jcs\ncreated: '2026-12-05T12:00:00Z'\nsource: test\ntools:\n  echo: '{digest}'\n"),
    )
    .unwrap();
    let routes = |on_change: &str| {
        format!(
            "  - name: pinned
    match: {{ path: /p }}
    public_url: https://mcp.example.com/p
    upstream: {{ url: 'http://127.0.0.1:3001/mcp' }}
    auth: {{ issuers: [corp] }}
    policy:
      default: allow
      pins: {{ file: '{}', on_change: {on_change} }}
",
            lock.display()
        )
    };
    let nobody = given(&[]);
    let ex = run(&routes("hide"), &nobody, &call("echo", "{}"));
    assert!(ex.allowed(), "{}", ex.render_text());
    assert!(step(&ex, "pins")[0].contains("is pinned"));
    let ex = run(&routes("hide"), &nobody, &call("exfiltrate", "{}"));
    let refusal = ex.refusal.as_ref().expect("refused");
    assert_eq!(
        refusal.message(),
        Refusal::tool_not_pinned("exfiltrate").message()
    );
    let ex = run(&routes("warn"), &nobody, &call("exfiltrate", "{}"));
    assert!(ex.allowed());
    assert!(step(&ex, "pins")[0].contains("warning"));
}

/// Each listed item's name and whether it is shown.
fn shown(items: &[ListedItem]) -> Vec<(&str, bool)> {
    items
        .iter()
        .map(|i| (i.name.as_str(), i.hidden.is_none()))
        .collect()
}

#[test]
fn a_saved_list_answer_is_filtered_by_the_gateways_rules() {
    let config = config(FILES);
    let route = &config.routes[0];
    let answer = r#"{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"read_file","inputSchema":{"type":"object"}},{"name":"deploy","inputSchema":{"type":"object"}},{"name":"shell","inputSchema":{"type":"object"}},{"name":"write_file","inputSchema":{"type":"object"}}]}}"#;
    let items = list_answer(route, &given(&["mcp", "files:read"]), answer).unwrap();
    let seen = shown(&items);
    assert_eq!(
        seen,
        [
            ("read_file", true),
            ("deploy", false),
            ("shell", false),
            // Shadowed entries hide nothing.
            ("write_file", true),
        ]
    );
    assert_eq!(
        items[2].hidden.as_deref(),
        Some("deny: not permitted on this route (no scope would help)")
    );
    assert_eq!(
        items[3].shadowed.as_deref(),
        Some("deny: missing scope(s) files:write"),
        "shown only because its entry is in shadow mode"
    );
    assert_eq!(items[0].shadowed, None);
    let templates = r#"{"resourceTemplates":[{"uriTemplate":"file:///srv/{name}","name":"a"},{"uriTemplate":"db://{table}","name":"b"}],"prompts":[{"name":"summarize"}]}"#;
    let items = list_answer(route, &given(&["mcp", "files:read"]), templates).unwrap();
    let seen = shown(&items);
    assert_eq!(
        seen,
        [
            ("file:///srv/{name}", true),
            ("db://{table}", false),
            ("summarize", false)
        ]
    );
    assert!(list_answer(route, &given(&[]), r#"{"result":{}}"#).is_err());
    assert!(list_answer(route, &given(&[]), r#"{"tools":{}}"#).is_err());
}

#[test]
fn the_rules_listing_says_what_each_rule_shows() {
    let config = config(FILES);
    let lines = list_rules(&config.routes[0], &given(&["mcp", "files:read"]));
    assert!(
        lines.contains(&"tools read_file: shown".to_string()),
        "{lines:?}"
    );
    let shadowed =
        "tools write_file: shown (shadow mode; enforced: hidden, deny: missing scope(s) files:write)";
    assert!(lines.contains(&shadowed.to_string()), "{lines:?}");
    assert!(lines
        .iter()
        .any(|l| l.starts_with("tools deploy: hidden (deny: claim rule")));
    assert!(lines
        .contains(&"prompts summarize: hidden (deny: missing scope(s) prompts:use)".to_string()));
    assert_eq!(
        lines.last().map(String::as_str),
        Some("anything else: hidden (default deny)")
    );
}
