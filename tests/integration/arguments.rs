//! Argument rules and shadow mode on real traffic: a call whose arguments break a rule
//! never reaches the upstream (asserted on what the upstream received), whatever
//! spelling of the arguments carries the forbidden value; a shadowed rule lets the call
//! through and is counted and audited.

use serde_json::{json, Value};

use crate::harness::{client, sample, Gateway};
use crate::idp::{Alg, Idp};
use crate::upstream::Upstream;

const RESOURCE: &str = "https://mcp.example.com/files/mcp";

struct Setup {
    idp: Idp,
    up: Upstream,
    gw: Gateway,
}

async fn setup() -> Setup {
    let idp = Idp::start().await;
    let up = Upstream::start().await;
    let routes = format!(
        r#"  - name: files
    match: {{ path: /files/mcp }}
    public_url: {RESOURCE}
    upstream: {{ url: '{}' }}
    auth: {{ issuers: [corp] }}
    policy:
      tools:
        read_file:
          scopes: [files:read]
          additional_arguments: deny
          arguments:
            path: {{ glob: '/srv/data/**' }}
            mode: {{ one_of: [text, base64], optional: true }}
            /options/depth: {{ min: 0, max: 3, optional: true }}
        read_multiple_files:
          scopes: [files:read]
          arguments:
            paths: {{ max_length: 10, each: {{ glob: '/srv/data/**' }} }}
        search:
          scopes: [files:read]
          arguments:
            query: {{ regex: '[a-z ]+', mode: shadow }}
        write_file:
          scopes: [files:write]
          mode: shadow
          arguments:
            path: {{ prefix: /srv/out/ }}
      resources:
        'file:///*':
          scopes: [files:read]
          arguments:
            uri: {{ glob: 'file:///srv/data/*' }}
"#,
        up.url("/mcp")
    );
    let issuers = format!("issuers:\n  - name: corp\n    issuer: {}\n", idp.issuer);
    let gw = Gateway::start_with(&routes, &issuers).await;
    Setup { idp, up, gw }
}

fn token(idp: &Idp, scope: &str) -> String {
    format!(
        "Bearer {}",
        idp.mint(Alg::ES256, &idp.claims(RESOURCE, scope))
    )
}

async fn send(s: &Setup, auth: &str, body: impl Into<reqwest::Body>) -> reqwest::Response {
    client()
        .post(s.gw.url("/files/mcp"))
        .header("authorization", auth)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(body)
        .send()
        .await
        .unwrap()
}

fn read_file(id: u64, arguments: &str) -> String {
    format!(
        r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{{"name":"read_file","arguments":{arguments}}}}}"#
    )
}

#[tokio::test]
async fn calls_breaking_an_argument_rule_never_reach_the_upstream() {
    let s = setup().await;
    let user = token(&s.idp, "files:read");
    let secret = "etc/shadow";
    for (id, arguments) in [
        (1, r#"{"path":"/srv/data/report.txt"}"#.to_string()),
        (
            2,
            r#"{"path":"/srv/data/a","mode":"text","options":{"depth":2}}"#.to_string(),
        ),
    ] {
        let resp = send(&s, &user, read_file(id, &arguments)).await;
        assert_eq!(resp.status(), 200, "{arguments}");
    }
    let allowed = s.up.seen();
    assert_eq!(allowed.len(), 2);
    let received: Value = serde_json::from_slice(&allowed[0].body).unwrap();
    assert_eq!(
        received["params"]["arguments"]["path"],
        "/srv/data/report.txt"
    );

    // (arguments, why) — each must be refused before the upstream sees a byte.
    let refused = [
        (format!(r#"{{"path":"/{secret}"}}"#), "outside the glob"),
        (
            format!(r#"{{"path":"/srv/data/../../{secret}"}}"#),
            "dot segments",
        ),
        (
            format!(r#"{{"path":"/srv/data/%2e%2e/%2e%2e/{secret}"}}"#),
            "percent-encoded dot segments",
        ),
        (
            format!(r#"{{"path":"/srv/data/a","path":"/{secret}"}}"#),
            "duplicate key, last wins",
        ),
        (
            format!(r#"{{"path":"/{secret}","path":"/srv/data/a"}}"#),
            "duplicate key, first wins",
        ),
        (
            format!(r#"{{"path":"/srv/data/a","p\u0061th":"/{secret}"}}"#),
            "escaped duplicate key",
        ),
        (
            format!(r#"{{"path":"/srv/data/a","PATH":"/{secret}"}}"#),
            "a second spelling by case",
        ),
        (
            r#"{"path":"/srv/data/a","options":{"depth":1,"depth":99}}"#.to_string(),
            "nested duplicate",
        ),
        (
            r#"{"path":"/srv/data/a","options":{"depth":9}}"#.to_string(),
            "nested value out of range",
        ),
        (
            r#"{"path":"/srv/data/a","options":{"depth":"1"}}"#.to_string(),
            "nested wrong type",
        ),
        (r#"{"path":["/srv/data/a"]}"#.to_string(), "wrong type"),
        (r#"{"path":null}"#.to_string(), "null"),
        (r#"{"mode":"text"}"#.to_string(), "missing"),
        (
            r#"{"path":"/srv/data/a","mode":"exec"}"#.to_string(),
            "not one of",
        ),
        (
            r#"{"path":"/srv/data/a","extra":1}"#.to_string(),
            "additional argument",
        ),
        (r#"{"path":"/srv/data/a\u0000.txt"}"#.to_string(), "NUL"),
        (
            r#"{"path":"/srv/data/a","__proto__":{"path":"/etc"}}"#.to_string(),
            "__proto__",
        ),
        (r#""/srv/data/a""#.to_string(), "arguments not an object"),
        (
            r#"{"path":"/srv/data/a","options":{"depth":1e400}}"#.to_string(),
            "number out of range",
        ),
        (
            r#"{"path":"/srv/data/\ud800"}"#.to_string(),
            "lone surrogate",
        ),
    ];
    for (i, (arguments, why)) in refused.iter().enumerate() {
        let resp = send(&s, &user, read_file(100 + i as u64, arguments)).await;
        let status = resp.status().as_u16();
        assert!(matches!(status, 400 | 403), "{why}: {status}");
        assert!(
            !resp.headers().contains_key("www-authenticate"),
            "{why}: no step-up can lift an argument rule"
        );
        let text = resp.text().await.unwrap();
        assert!(
            !text.contains(secret),
            "{why}: the refusal echoes the value: {text}"
        );
        if status == 403 {
            assert!(text.contains("argument"), "{why}: {text}");
        }
    }
    assert_eq!(s.up.seen().len(), 2, "a refused call reached the upstream");

    // A batch is refused whole when one call breaks a rule.
    let batch = format!(
        "[{},{}]",
        read_file(200, r#"{"path":"/srv/data/a"}"#),
        read_file(201, r#"{"path":"/etc/passwd"}"#)
    );
    assert_eq!(send(&s, &user, batch).await.status(), 403);
    // Resource URIs: the glob alone would match this one; the rule refuses its dot segments.
    let read = |uri: &str| {
        json!({"jsonrpc":"2.0","id":300,"method":"resources/read","params":{"uri":uri}}).to_string()
    };
    assert_eq!(
        send(&s, &user, read("file:///srv/data/a")).await.status(),
        200
    );
    assert_eq!(
        send(&s, &user, read("file:///srv/data/../../etc/passwd"))
            .await
            .status(),
        403
    );
    let seen = s.up.seen();
    assert_eq!(
        seen.len(),
        3,
        "only the allowed resource read reached the upstream"
    );
    assert!(seen
        .iter()
        .all(|r| !String::from_utf8_lossy(&r.body).contains("passwd")));
    assert!(seen
        .iter()
        .all(|r| !String::from_utf8_lossy(&r.body).contains(secret)));

    let log = crate::harness::log_when(&s.gw, |log| {
        crate::harness::audit_events(log, "authorization")
            .iter()
            .any(|e| e["rule"] == "arguments:/path")
    })
    .await;
    let decisions = crate::harness::audit_events(&log, "authorization");
    let denied = decisions
        .iter()
        .find(|e| e["rule"] == "arguments:/path")
        .unwrap();
    assert_eq!(denied["decision"], "deny");
    assert_eq!(denied["name"], "read_file");
    crate::harness::assert_log_free_of(&log, &[secret]);
}

#[tokio::test]
async fn shadow_rules_count_and_audit_but_do_not_refuse() {
    let s = setup().await;
    let reader = token(&s.idp, "files:read");
    let call = |id: u64, name: &str, arguments: Value| {
        json!({"jsonrpc":"2.0","id":id,"method":"tools/call","params":{"name":name,"arguments":arguments}}).to_string()
    };
    // A shadow argument rule: the odd query passes, and is recorded.
    let resp = send(
        &s,
        &reader,
        call(1, "search", json!({"query": "DROP TABLE"})),
    )
    .await;
    assert_eq!(resp.status(), 200);
    let resp = send(
        &s,
        &reader,
        call(2, "search", json!({"query": "fine words"})),
    )
    .await;
    assert_eq!(resp.status(), 200);
    // A shadow entry: the caller lacks files:write and breaks the prefix; passes.
    let resp = send(
        &s,
        &reader,
        call(3, "write_file", json!({"path": "/etc/cron.d/x"})),
    )
    .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(s.up.seen().len(), 3, "shadowed calls reach the upstream");

    let m = s.gw.metrics().await;
    for (line, value) in [
        (
            r#"drawbridge_policy_shadow_decisions_total{decision="deny",route="files",rule="tools:search:arguments:/query"}"#,
            1.0,
        ),
        (
            r#"drawbridge_policy_shadow_decisions_total{decision="allow",route="files",rule="tools:search:arguments:/query"}"#,
            1.0,
        ),
        (
            r#"drawbridge_policy_shadow_decisions_total{decision="deny",route="files",rule="tools:write_file"}"#,
            1.0,
        ),
    ] {
        assert_eq!(sample(&m, line), Some(value), "{line}\n{m}");
    }
    let log = crate::harness::log_when(&s.gw, |log| {
        crate::harness::audit_events(log, "authorization")
            .iter()
            .filter(|e| e["shadow"] == true)
            .count()
            >= 2
    })
    .await;
    let shadowed: Vec<Value> = crate::harness::audit_events(&log, "authorization")
        .into_iter()
        .filter(|e| e["shadow"] == true)
        .collect();
    let query = shadowed
        .iter()
        .find(|e| e["rule"] == "tools:search:arguments:/query")
        .unwrap_or_else(|| panic!("{shadowed:?}"));
    assert_eq!(query["decision"], "deny");
    assert_eq!(query["failed"], "arguments:/query");
    let entry = shadowed
        .iter()
        .find(|e| e["rule"] == "tools:write_file")
        .unwrap_or_else(|| panic!("{shadowed:?}"));
    assert_eq!(entry["failed"], "scopes");
    crate::harness::assert_log_free_of(&log, &["DROP TABLE", "cron.d"]);
}

/// `each` holds every item of an array argument to the rule: one forbidden path among
/// allowed ones, a smuggled dot segment, or an item of another type keeps the whole call
/// from the upstream.
#[tokio::test]
async fn every_item_of_an_array_argument_is_judged() {
    let s = setup().await;
    let user = token(&s.idp, "files:read");
    let call = |id: u64, paths: &str| {
        format!(
            r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{{"name":"read_multiple_files","arguments":{{"paths":{paths}}}}}}}"#
        )
    };
    let ok = send(&s, &user, call(1, r#"["/srv/data/a","/srv/data/b/c"]"#)).await;
    assert_eq!(ok.status(), 200);
    assert_eq!(s.up.seen().len(), 1);
    for (i, (paths, why)) in [
        (r#"["/srv/data/a","/etc/shadow"]"#, "has an item that does not match"),
        (r#"["/srv/data/../etc/shadow"]"#, "has an item with a `..` segment"),
        (r#"["/srv/data/a",["/etc/shadow"]]"#, "has an item of the wrong type"),
        (r#""/etc/shadow""#, "has the wrong type"),
        (r#"["/srv/data/a","/srv/data/a","/srv/data/a","/srv/data/a","/srv/data/a","/srv/data/a","/srv/data/a","/srv/data/a","/srv/data/a","/srv/data/a","/srv/data/a"]"#, "is too long"),
    ]
    .into_iter()
    .enumerate()
    {
        let resp = send(&s, &user, call(10 + i as u64, paths)).await;
        assert_eq!(resp.status(), 403, "{paths}");
        let text = resp.text().await.unwrap();
        assert!(text.contains("argument `/paths`") && text.contains(why), "{why}: {text}");
        assert!(!text.contains("shadow"), "the refusal echoes a value: {text}");
    }
    let seen = s.up.seen();
    assert_eq!(seen.len(), 1, "a refused call reached the upstream");
    assert!(seen
        .iter()
        .all(|r| !String::from_utf8_lossy(&r.body).contains("/etc/")));
}
