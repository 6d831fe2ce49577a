//! `drawbridge explain` against the gateway itself: for the same configuration file, the
//! same token and the same body, explain's decision (status, error body, challenge) is
//! what the running gateway answers, and an allowed request is one the upstream received.
//! `--list` shows exactly the items the gateway lets through a filtered list. The token
//! is verified against the test issuer's keys, as the gateway verifies it.

use std::process::{Command, Stdio};

use serde_json::{json, Value};

use crate::harness::{client, drawbridge_bin, Gateway};
use crate::idp::{Alg, Idp};
use crate::upstream::Upstream;

const RESOURCE: &str = "https://mcp.example.com/tools/mcp";

struct Setup {
    idp: Idp,
    up: Upstream,
    gw: Gateway,
}

async fn setup() -> Setup {
    let idp = Idp::start().await;
    let up = Upstream::start().await;
    let routes = format!(
        r#"  - name: tools
    match: {{ path: /tools/mcp }}
    public_url: {RESOURCE}
    upstream: {{ url: '{}' }}
    auth: {{ issuers: [corp], required_scopes: [mcp] }}
    policy:
      tools:
        echo:
          scopes: [tools:echo]
          arguments:
            message: {{ max_length: 16 }}
            /options/mode: {{ one_of: [plain, loud], optional: true }}
        'get-*': [tools:read]
        delete_repo:
          scopes: [tools:admin]
          claims: {{ groups: [admins] }}
        secret-tool:
          scopes: [tools:secret]
          mode: shadow
      resources:
        'test://static/*': [res:read]
      prompts:
        simple-prompt: [prompts:use]
"#,
        up.url("/mcp")
    );
    let issuers = format!("issuers:\n  - name: corp\n    issuer: {}\n", idp.issuer);
    let gw = Gateway::start_with(&routes, &issuers).await;
    Setup { idp, up, gw }
}

fn token(idp: &Idp, scope: &str, extra: &[(&str, Value)]) -> String {
    let mut claims = idp.claims(RESOURCE, scope);
    for (k, v) in extra {
        claims[*k] = v.clone();
    }
    idp.mint(Alg::ES256, &claims)
}

/// Runs `drawbridge explain` on the gateway's own configuration file; the body (or list
/// answer) on stdin. Returns the exit code, stdout and stderr. Off the test's runtime,
/// which serves the issuer explain asks for its keys.
async fn explain(gw: &Gateway, args: &[&str], stdin: &str) -> (i32, String, String) {
    let config = gw.config_path().to_path_buf();
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    let stdin = stdin.to_string();
    tokio::task::spawn_blocking(move || run_explain(&config, &args, &stdin))
        .await
        .unwrap()
}

fn run_explain(config: &std::path::Path, args: &[String], stdin: &str) -> (i32, String, String) {
    let mut child = Command::new(drawbridge_bin())
        .arg("explain")
        .arg("-c")
        .arg(config)
        .args(["--route", "tools"])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let mut input = child.stdin.take().unwrap();
        // A usage error exits before reading its input: a broken pipe is no failure.
        let _ = input.write_all(stdin.as_bytes());
    }
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

async fn explain_json(gw: &Gateway, caller: &[&str], body: &str) -> (i32, Value) {
    let mut args = caller.to_vec();
    args.extend(["--request", "-", "--format", "json"]);
    let (code, out, err) = explain(gw, &args, body).await;
    let value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out} {err}"));
    (code, value)
}

/// The body without what names one request (`request_id`, `error.data.requestId`).
fn without_request_id(mut body: Value) -> Value {
    if let Value::Array(items) = body {
        return Value::Array(items.into_iter().map(without_request_id).collect());
    }
    if let Some(o) = body.as_object_mut() {
        o.remove("request_id");
    }
    if let Some(data) = body
        .pointer_mut("/error/data")
        .and_then(Value::as_object_mut)
    {
        data.remove("requestId");
        if data.is_empty() {
            body["error"].as_object_mut().unwrap().remove("data");
        }
    }
    body
}

async fn post(gw: &Gateway, bearer: &str, body: &str) -> reqwest::Response {
    post_with(gw, bearer, body, &[]).await
}

async fn post_with(
    gw: &Gateway,
    bearer: &str,
    body: &str,
    headers: &[(&str, &str)],
) -> reqwest::Response {
    let mut request = client().post(gw.url("/tools/mcp"));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request
        .header("authorization", format!("Bearer {bearer}"))
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("x-request-id", "explain-differential")
        .body(body.to_string())
        .send()
        .await
        .unwrap()
}

fn call(id: u64, tool: &str, arguments: Value) -> String {
    json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
           "params": {"name": tool, "arguments": arguments}})
    .to_string()
}

#[tokio::test]
async fn explain_decides_as_the_gateway_does() {
    let s = setup().await;
    let base = "mcp tools:echo tools:read res:read";
    let admins = json!(["admins"]);
    let read = |uri: &str| {
        json!({"jsonrpc": "2.0", "id": 9, "method": "resources/read", "params": {"uri": uri}})
            .to_string()
    };
    let cases: Vec<(String, String, &str)> = vec![
        (
            token(&s.idp, base, &[]),
            call(1, "echo", json!({"message": "hi"})),
            "allowed call",
        ),
        (
            token(&s.idp, base, &[]),
            call(2, "echo", json!({"message": "far too long a message"})),
            "argument too long",
        ),
        (
            token(&s.idp, base, &[]),
            call(3, "echo", json!({"message": "hi", "options": {"mode": 3}})),
            "nested argument of the wrong type",
        ),
        (
            token(&s.idp, "mcp tools:read", &[]),
            call(4, "echo", json!({"message": "hi"})),
            "missing scope: step-up",
        ),
        (
            token(&s.idp, base, &[]),
            call(5, "get-env", json!({})),
            "glob rule",
        ),
        (
            token(&s.idp, base, &[]),
            call(6, "rm-rf", json!({})),
            "no rule, default deny",
        ),
        (
            token(
                &s.idp,
                &format!("{base} tools:admin"),
                &[("groups", admins.clone())],
            ),
            call(7, "delete_repo", json!({})),
            "claim rule holds",
        ),
        (
            token(
                &s.idp,
                &format!("{base} tools:admin"),
                &[("groups", json!(["devs"]))],
            ),
            call(8, "delete_repo", json!({})),
            "claim rule fails",
        ),
        (
            token(&s.idp, base, &[]),
            call(10, "secret-tool", json!({})),
            "shadowed entry",
        ),
        (
            token(&s.idp, base, &[]),
            read("test://static/resource/1"),
            "resource allowed",
        ),
        (
            token(&s.idp, base, &[]),
            read("file:///etc/passwd"),
            "resource refused",
        ),
        (
            token(&s.idp, base, &[]),
            format!(
                "[{},{}]",
                call(11, "echo", json!({"message": "a"})),
                call(12, "rm", json!({}))
            ),
            "batch with one refused call",
        ),
        (
            token(&s.idp, base, &[]),
            "{\"jsonrpc\":\"2.0\",".into(),
            "malformed body",
        ),
        (
            token(&s.idp, "tools:echo", &[]),
            call(13, "echo", json!({"message": "hi"})),
            "route scope missing",
        ),
        (
            {
                let mut claims = s.idp.claims("https://other.example.com/mcp", base);
                claims["sub"] = "mallory".into();
                s.idp.mint(Alg::ES256, &claims)
            },
            call(14, "echo", json!({"message": "hi"})),
            "wrong audience",
        ),
        (
            s.idp
                .mint_with_foreign_key("stranger", &s.idp.claims(RESOURCE, base)),
            call(15, "echo", json!({"message": "hi"})),
            "signed by a key the issuer never published",
        ),
    ];
    for (bearer, body, what) in &cases {
        let before = s.up.seen().len();
        let (code, explained) = explain_json(&s.gw, &["--token", bearer], body).await;
        let resp = post(&s.gw, bearer, body).await;
        let status = resp.status().as_u16();
        let challenge = resp
            .headers()
            .get("www-authenticate")
            .map(|v| v.to_str().unwrap().to_string());
        let answer: Value = resp.json().await.unwrap_or(Value::Null);
        let forwarded = s.up.seen().len() > before;
        assert_eq!(explained["status"], status, "{what}: {explained:#}");
        assert_eq!(
            code,
            if forwarded { 0 } else { 1 },
            "{what}: explain's exit status"
        );
        assert_eq!(explained["decision"] == "allow", forwarded, "{what}");
        // --no-verify makes every check but the signature: the same decision, except
        // for a token only its signature gives away.
        let (_, unverified) = explain_json(&s.gw, &["--token", bearer, "--no-verify"], body).await;
        if what.starts_with("signed by a key") {
            assert_eq!(unverified["decision"], "allow", "{what}: {unverified:#}");
        } else {
            assert_eq!(
                unverified["status"], explained["status"],
                "{what}: {unverified:#}"
            );
            assert_eq!(unverified["body"], explained["body"], "{what}");
        }
        if !forwarded {
            assert_eq!(
                explained["body"],
                without_request_id(answer.clone()),
                "{what}: the same error body"
            );
            assert_eq!(
                explained["www_authenticate"].as_str(),
                challenge.as_deref(),
                "{what}: the same challenge"
            );
        }
    }
}

/// A body, the headers sent with it, and what the case is.
type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], &'a str);

#[tokio::test]
async fn headers_given_are_judged_as_the_gateway_judges_them() {
    let s = setup().await;
    let bearer = token(&s.idp, "mcp tools:echo", &[]);
    let echo = call(1, "echo", json!({"message": "hi"}));
    let ping = r#"{"jsonrpc":"2.0","id":2,"method":"ping"}"#;
    let batch = format!("[{ping},{ping}]");
    let cases: [Case<'_>; 4] = [
        (
            &echo,
            &[("mcp-method", "tools/call"), ("mcp-name", "echo")],
            "agreeing",
        ),
        (
            &echo,
            &[("mcp-method", "tools/call"), ("mcp-name", "delete_repo")],
            "lying name",
        ),
        (
            &batch,
            &[("mcp-protocol-version", "2025-06-18")],
            "batch, no batches",
        ),
        (
            &batch,
            &[("mcp-protocol-version", "2025-03-26")],
            "batch, older version",
        ),
    ];
    for (body, headers, what) in cases {
        let mut args = vec!["--token", bearer.as_str()];
        let given: Vec<String> = headers.iter().map(|(n, v)| format!("{n}: {v}")).collect();
        for h in &given {
            args.extend(["--header", h.as_str()]);
        }
        let (code, explained) = explain_json(&s.gw, &args, body).await;
        let resp = post_with(&s.gw, &bearer, body, headers).await;
        let status = resp.status().as_u16();
        assert_eq!(explained["status"], status, "{what}: {explained:#}");
        assert_eq!(code == 0, status == 200, "{what}");
        if status != 200 {
            let answer: Value = resp.json().await.unwrap();
            assert_eq!(explained["body"], without_request_id(answer), "{what}");
        }
    }
}

#[tokio::test]
async fn scopes_and_claims_given_by_hand_decide_as_a_token_carrying_them() {
    let s = setup().await;
    let dir = tempfile::tempdir().unwrap();
    let claims = dir.path().join("claims.json");
    for (groups, tool) in [
        ("admins", "delete_repo"),
        ("devs", "delete_repo"),
        ("admins", "echo"),
    ] {
        std::fs::write(&claims, json!({"groups": [groups]}).to_string()).unwrap();
        let body = call(1, tool, json!({"message": "x"}));
        let scopes = "mcp tools:admin tools:echo";
        let (code, explained) = explain_json(
            &s.gw,
            &["--scopes", scopes, "--claims", claims.to_str().unwrap()],
            &body,
        )
        .await;
        let bearer = token(&s.idp, scopes, &[("groups", json!([groups]))]);
        let status = post(&s.gw, &bearer, &body).await.status().as_u16();
        assert_eq!(
            explained["status"], status,
            "{groups} {tool}: {explained:#}"
        );
        assert_eq!(code == 0, status == 200);
    }
}

#[tokio::test]
async fn list_shows_what_the_gateway_lets_through() {
    let s = setup().await;
    let bearer = token(&s.idp, "mcp tools:echo res:read", &[]);
    for method in [
        "tools/list",
        "resources/list",
        "resources/templates/list",
        "prompts/list",
    ] {
        let request = json!({"jsonrpc": "2.0", "id": 1, "method": method}).to_string();
        // What the upstream lists (no caller token reaches it), and what the gateway passes.
        let raw = client()
            .post(s.up.url("/mcp"))
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .body(request.clone())
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let filtered: Value = post(&s.gw, &bearer, &request).await.json().await.unwrap();
        let field = match method {
            "tools/list" => "tools",
            "resources/list" => "resources",
            "resources/templates/list" => "resourceTemplates",
            _ => "prompts",
        };
        let key = match field {
            "resources" => "uri",
            "resourceTemplates" => "uriTemplate",
            _ => "name",
        };
        let passed: Vec<String> = filtered["result"][field]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i[key].as_str().unwrap().to_string())
            .collect();
        let (code, out, err) = explain(
            &s.gw,
            &[
                "--token",
                &bearer,
                "--list",
                "--request",
                "-",
                "--format",
                "json",
            ],
            &raw,
        )
        .await;
        assert_eq!(code, 0, "{err}");
        let listed: Value = serde_json::from_str(&out).unwrap();
        let items = listed["items"].as_array().unwrap();
        let shown: Vec<String> = items
            .iter()
            .filter(|i| i["shown"] == true)
            .map(|i| i["name"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(shown, passed, "{method}");
        assert!(
            items.len() > shown.len() || method == "resources/templates/list",
            "{method}: something is hidden, so the comparison can fail: {out}"
        );
        for hidden in items.iter().filter(|i| i["shown"] == false) {
            assert!(hidden["why"].as_str().is_some_and(|w| !w.is_empty()));
        }
    }
}

#[tokio::test]
async fn usage_and_verification_errors_exit_2() {
    let s = setup().await;
    let body = call(1, "echo", json!({"message": "hi"}));
    // No caller.
    let (code, _, err) = explain(&s.gw, &["--request", "-"], &body).await;
    assert_eq!(code, 2, "{err}");
    // An unknown route names the routes there are.
    let out = Command::new(drawbridge_bin())
        .args(["explain", "-c"])
        .arg(s.gw.config_path())
        .args(["--route", "nope", "--scopes", "mcp", "--list"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("routes: tools"));
    // An opaque token cannot be decoded without its issuer.
    let (code, _, err) = explain(
        &s.gw,
        &["--token", "opaque-token", "--no-verify", "--request", "-"],
        &body,
    )
    .await;
    assert_eq!(code, 2);
    assert!(err.contains("introspection"), "{err}");
    // The issuer down: the gateway would answer 503; explain says it cannot verify, and
    // --no-verify decides with a warning.
    let bearer = token(&s.idp, "mcp tools:echo", &[]);
    s.idp.set_down(true);
    let (code, _, err) = explain(&s.gw, &["--token", &bearer, "--request", "-"], &body).await;
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--no-verify"), "{err}");
    let (code, out, err) = explain(
        &s.gw,
        &["--token", &bearer, "--no-verify", "--request", "-"],
        &body,
    )
    .await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(err.contains("signature was not checked"), "{err}");
    assert!(out.contains("DECODED, NOT VERIFIED"), "{out}");
    // A token from a file, and the text form naming the failed argument, not its value.
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), &bearer).unwrap();
    let at = format!("@{}", file.path().display());
    let secret = "never-print-this-value";
    let (code, out, _) = explain(
        &s.gw,
        &["--token", &at, "--no-verify", "--request", "-"],
        &call(1, "echo", json!({"message": secret})),
    )
    .await;
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("argument `/message`"), "{out}");
    assert!(!out.contains(secret), "{out}");
}
