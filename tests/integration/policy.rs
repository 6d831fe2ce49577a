//! Per-tool, per-resource and per-prompt policy on real traffic, and the evasion suite:
//! every trick must be refused with the stated status while the upstream accepts no
//! connection at all.

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::harness::{client, sample, Gateway};
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
    auth: {{ issuers: [corp], required_scopes: [mcp:tools] }}
    policy:
      tools:
        echo: [tools:echo]
        "get-*": [tools:read]
        delete_repo: [repo:admin]
      resources:
        "test://static/resource/*": [resources:read]
      prompts:
        simple-prompt: [prompts:read]
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

fn tool_call(id: u64, name: &str) -> String {
    json!({"jsonrpc":"2.0","id":id,"method":"tools/call","params":{"name":name,"arguments":{"x":1}}}).to_string()
}

async fn send(s: &Setup, auth: &str, body: impl Into<reqwest::Body>) -> reqwest::Response {
    client()
        .post(s.gw.url("/tools/mcp"))
        .header("authorization", auth)
        .body(body)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn allowed_forbidden_and_unlisted_operations() {
    let s = setup().await;
    let user = token(&s.idp, "mcp:tools tools:echo tools:read resources:read");
    for body in [
        tool_call(1, "echo"),
        tool_call(2, "get-env"),
        json!({"jsonrpc":"2.0","id":3,"method":"resources/read","params":{"uri":"test://static/resource/7"}}).to_string(),
        json!({"jsonrpc":"2.0","id":4,"method":"tools/list"}).to_string(),
        json!({"jsonrpc":"2.0","method":"notifications/initialized"}).to_string(),
    ] {
        let resp = send(&s, &user, body.clone()).await;
        assert!(resp.status().is_success(), "{body}: {}", resp.status());
    }
    let allowed = s.up.seen().len();
    assert_eq!(allowed, 5);

    let resp = send(&s, &user, tool_call(9, "delete_repo")).await;
    assert_eq!(resp.status(), 403);
    let challenge = resp.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        challenge.contains(r#"scope="mcp:tools repo:admin""#),
        "{challenge}"
    );
    assert!(
        challenge.contains(r#"error="insufficient_scope""#),
        "{challenge}"
    );
    assert!(challenge.contains("resource_metadata=\"https://mcp.example.com/.well-known/oauth-protected-resource/tools/mcp\""));
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["id"], 9);
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("delete_repo") && message.contains("repo:admin"),
        "{message}"
    );

    // (body, what, can a scope help?)
    for (body, what, step_up) in [
        (tool_call(10, "unlisted"), "unlisted tool", false),
        (json!({"jsonrpc":"2.0","id":11,"method":"prompts/get","params":{"name":"simple-prompt"}}).to_string(), "prompt without its scope", true),
        (json!({"jsonrpc":"2.0","id":12,"method":"resources/read","params":{"uri":"file:///etc/passwd"}}).to_string(), "unlisted resource", false),
        (json!({"jsonrpc":"2.0","id":13,"method":"tasks/get","params":{}}).to_string(), "unknown method, default deny", false),
    ] {
        let resp = send(&s, &user, body).await;
        assert_eq!(resp.status(), 403, "{what}");
        // Only a refusal that more scopes could lift sends the client to step up.
        assert_eq!(resp.headers().contains_key("www-authenticate"), step_up, "{what}");
    }
    assert_eq!(
        s.up.seen().len(),
        allowed,
        "a denied call reached the upstream"
    );

    let m = s.gw.metrics().await;
    for (line, value) in [
        (
            r#"drawbridge_tool_calls_total{decision="allow",route="tools",tool="echo"}"#,
            1.0,
        ),
        (
            r#"drawbridge_tool_calls_total{decision="allow",route="tools",tool="get-*"}"#,
            1.0,
        ),
        (
            r#"drawbridge_tool_calls_total{decision="deny",route="tools",tool="delete_repo"}"#,
            1.0,
        ),
        (
            r#"drawbridge_tool_calls_total{decision="deny",route="tools",tool="other"}"#,
            1.0,
        ),
        (
            r#"drawbridge_mcp_operations_total{decision="allow",method="tools/list",route="tools"}"#,
            1.0,
        ),
        (
            r#"drawbridge_mcp_operations_total{decision="deny",method="tasks/get",route="tools"}"#,
            1.0,
        ),
    ] {
        assert_eq!(sample(&m, line), Some(value), "{line}\n{m}");
    }
}

#[tokio::test]
async fn evasion_suite_never_reaches_the_upstream() {
    let s = setup().await;
    let user = token(&s.idp, "mcp:tools tools:echo");
    let deep = format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"echo","arguments":{}{}}}}}"#,
        "[".repeat(10_000),
        "]".repeat(10_000)
    );
    let huge = format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"echo","arguments":{{"blob":"{}"}}}}}}"#,
        "z".repeat(10 << 20)
    );
    let cases: Vec<(&str, String, Option<&str>, u16)> = vec![
        ("batch hiding a forbidden call", format!("[{},{}]", tool_call(1, "echo"), tool_call(2, "delete_repo")), None, 403),
        ("duplicate method keys", r#"{"jsonrpc":"2.0","id":1,"method":"tools/list","method":"tools/call","params":{"name":"delete_repo"}}"#.into(), None, 400),
        ("duplicate name keys", r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","name":"delete_repo"}}"#.into(), None, 400),
        ("escaped method and tool", r#"{"jsonrpc":"2.0","id":1,"method":"tools\/c\u0061ll","params":{"name":"delete\u005frepo"}}"#.into(), None, 403),
        ("tool name in another case", tool_call(1, "ECHO"), None, 403),
        ("text/plain content type", tool_call(1, "echo"), Some("text/plain"), 415),
        ("byte order mark", format!("\u{feff}{}", tool_call(1, "echo")), None, 415),
        ("trailing garbage", format!("{} {}", tool_call(1, "echo"), tool_call(2, "delete_repo")), None, 400),
        ("nesting 10,000 deep", deep, None, 400),
        ("10 MiB body", huge, None, 413),
        ("empty body", String::new(), None, 400),
        ("jsonrpc 1.0", r#"{"jsonrpc":"1.0","id":1,"method":"tools/call","params":{"name":"echo"}}"#.into(), None, 400),
    ];
    for (case, body, content_type, status) in cases {
        let mut req = client()
            .post(s.gw.url("/tools/mcp"))
            .header("authorization", &user)
            .body(body);
        if let Some(ct) = content_type {
            req = req.header("content-type", ct);
        }
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status().as_u16(), status, "{case}");
    }
    let gzip = client()
        .post(s.gw.url("/tools/mcp"))
        .header("authorization", &user)
        .header("content-encoding", "gzip")
        .body(tool_call(1, "echo"))
        .send()
        .await
        .unwrap();
    assert_eq!(gzip.status(), 415, "gzip-encoded body");
    let mismatch = client()
        .post(s.gw.url("/tools/mcp"))
        .header("authorization", &user)
        .header("mcp-method", "tools/call")
        .header("mcp-name", "echo")
        .body(tool_call(1, "delete_repo"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        mismatch.status(),
        400,
        "Mcp-Name header disagreeing with the body"
    );

    // Raw HTTP/1.1: a chunked body split inside the tool name, and request smuggling.
    let forbidden = tool_call(1, "delete_repo");
    let cut = forbidden.find("delete").unwrap() + 3;
    let (a, b) = forbidden.split_at(cut);
    let chunked = format!(
        "POST /tools/mcp HTTP/1.1\r\nHost: x\r\nAuthorization: {user}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n{:x}\r\n{a}\r\n{:x}\r\n{b}\r\n0\r\n\r\n",
        a.len(),
        b.len()
    );
    assert!(
        raw(&s.gw, &chunked).await.starts_with("HTTP/1.1 403"),
        "chunked split mid-token"
    );
    let smuggle = format!(
        "POST /tools/mcp HTTP/1.1\r\nHost: x\r\nAuthorization: {user}\r\nContent-Type: application/json\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n{:x}\r\n{forbidden}\r\n0\r\n\r\n",
        forbidden.len()
    );
    let answer = raw(&s.gw, &smuggle).await;
    assert!(
        answer.starts_with("HTTP/1.1 400")
            || answer.starts_with("HTTP/1.1 403")
            || answer.is_empty(),
        "Transfer-Encoding with Content-Length: {answer}"
    );

    assert_eq!(s.up.connections(), 0, "the upstream accepted a connection");
    assert!(s.up.seen().is_empty());
}

async fn raw(gw: &Gateway, request: &str) -> String {
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", gw.port))
        .await
        .unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        stream.read_to_end(&mut out),
    )
    .await;
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test]
async fn a_large_allowed_call_carries_its_permit_through_the_subrequest() {
    let s = setup().await;
    let user = token(&s.idp, "mcp:tools tools:echo");
    let body = json!({"jsonrpc":"2.0","id":"big","method":"tools/call","params":{"name":"echo","arguments":{"blob":"q".repeat(1 << 20)}}}).to_string();
    let resp = send(&s, &user, body.clone()).await;
    assert_eq!(resp.status(), 200);
    let seen = s.up.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].body, body.as_bytes());
    assert!(seen[0].headers.get("authorization").is_none());
    let denied = json!({"jsonrpc":"2.0","id":"big","method":"tools/call","params":{"name":"delete_repo","arguments":{"blob":"q".repeat(1 << 20)}}}).to_string();
    assert_eq!(send(&s, &user, denied).await.status(), 403);
    assert_eq!(s.up.seen().len(), 1);
}

#[tokio::test]
async fn escaped_names_are_decoded_on_a_route_that_allows_by_default() {
    // Under `default: allow`, an undecoded spelling would be an unlisted name and pass:
    // only decoding the escapes finds the rule that denies it.
    let idp = Idp::start().await;
    let up = Upstream::start().await;
    let routes = format!(
        r#"  - name: open
    match: {{ path: /open/mcp }}
    public_url: {RESOURCE}
    upstream: {{ url: '{}' }}
    auth: {{ issuers: [corp], required_scopes: [mcp:tools] }}
    policy:
      default: allow
      tools:
        delete_repo: [repo:admin]
      prompts:
        secret-prompt: [prompts:admin]
      resources:
        "file:///*": [files:admin]
"#,
        up.url("/mcp")
    );
    let issuers = format!("issuers:\n  - name: corp\n    issuer: {}\n", idp.issuer);
    let gw = Gateway::start_with(&routes, &issuers).await;
    let user = token(&idp, "mcp:tools");
    let send = |body: &'static str| {
        client()
            .post(gw.url("/open/mcp"))
            .header("authorization", &user)
            .body(body)
            .send()
    };
    let denied: [(&str, &'static str); 5] = [
        (
            "escaped tool name",
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"delete\u005frepo"}}"#,
        ),
        (
            "escaped method",
            r#"{"jsonrpc":"2.0","id":1,"method":"tools\/c\u0061ll","params":{"name":"delete_repo"}}"#,
        ),
        (
            "escaped method and tool",
            r#"{"jsonrpc":"2.0","id":1,"method":"tools\/c\u0061ll","params":{"name":"d\u0065lete_repo"}}"#,
        ),
        (
            "escaped prompt name",
            r#"{"jsonrpc":"2.0","id":1,"method":"prompts/get","params":{"name":"secret\u002dprompt"}}"#,
        ),
        (
            "escaped resource URI",
            r#"{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":"file:\/\/\/etc\/passwd"}}"#,
        ),
    ];
    for (case, body) in denied {
        let resp = send(body).await.unwrap();
        assert_eq!(resp.status(), 403, "{case}");
    }
    assert!(up.seen().is_empty(), "a denied call reached the upstream");
    // The default still allows what no rule names, escaped or not.
    let allowed = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"ech\u006f"}}"#;
    assert_eq!(send(allowed).await.unwrap().status(), 200);
    assert_eq!(up.seen().len(), 1);
}

#[tokio::test]
async fn decisions_are_audited_without_tokens_or_arguments() {
    let s = setup().await;
    let user = token(&s.idp, "mcp:tools tools:echo");
    let argument = "argument-value-4b1d9e0c";
    let call = |name: &str| {
        json!({"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":name,"arguments":{"text":argument}}}).to_string()
    };
    assert_eq!(send(&s, &user, call("echo")).await.status(), 200);
    assert_eq!(send(&s, &user, call("delete_repo")).await.status(), 403);
    let forged = format!("{}x", user);
    assert_eq!(send(&s, &forged, call("echo")).await.status(), 401);
    let resp = client()
        .post(s.gw.url("/tools/mcp"))
        .body(call("echo"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);

    let log = crate::harness::log_when(&s.gw, |log| {
        crate::harness::audit_events(log, "authentication_refused").len() >= 2
            && crate::harness::audit_events(log, "authorization").len() >= 2
    })
    .await;
    let decisions = crate::harness::audit_events(&log, "authorization");
    let allow = decisions
        .iter()
        .find(|e| e["name"] == "echo")
        .unwrap_or_else(|| panic!("no decision for echo: {decisions:?}"));
    assert_eq!(allow["method"], "tools/call");
    assert_eq!(allow["decision"], "allow", "{allow}");
    assert_eq!(allow["subject"], "alice");
    assert_eq!(allow["route"], "tools");
    let deny = decisions
        .iter()
        .find(|e| e["name"] == "delete_repo")
        .unwrap_or_else(|| panic!("no decision for delete_repo: {decisions:?}"));
    assert_eq!(deny["method"], "tools/call");
    assert_ne!(deny["decision"], "allow", "{deny}");
    assert_eq!(deny["missing"], "repo:admin", "{deny}");
    let refused = crate::harness::audit_events(&log, "authentication_refused");
    let reasons: Vec<&str> = refused
        .iter()
        .filter_map(|e| e["reason"].as_str())
        .collect();
    assert!(reasons.contains(&"missing_token"), "{refused:?}");
    assert!(refused.iter().all(|e| e["route"] == "tools"), "{refused:?}");
    assert_eq!(refused.len(), 2, "{refused:?}");
    crate::harness::assert_log_free_of(
        &log,
        &[
            user.trim_start_matches("Bearer "),
            forged.trim_start_matches("Bearer "),
            argument,
        ],
    );
}
