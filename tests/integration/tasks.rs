//! Task ids (tasks extension) bound to the caller: the client only ever sees sealed task
//! ids; the upstream gets its own back (in the body and in `Mcp-Name`) only when the
//! caller they were issued to presents them on the same route. Another caller's, a
//! tampered, raw or malformed id never reaches the upstream. Behind one upstream
//! credential, task lists and status notifications the gateway cannot attribute are
//! withheld; with token exchange each caller's own are sealed for them.

use serde_json::{json, Value};

use crate::harness::{assert_log_free_of, audit_events, client, log_when, sample, Gateway};
use crate::idp::{Alg, Idp, EXCHANGE_CLIENT_ID, EXCHANGE_CLIENT_SECRET};
use crate::upstream::{Upstream, TASK_PREFIX};

const RESOURCE_A: &str = "https://mcp.example.com/a/mcp";
const RESOURCE_B: &str = "https://mcp.example.com/b/mcp";
const RESOURCE_X: &str = "https://mcp.example.com/x/mcp";

/// Route `a`: no policy, no upstream credential (shared by every caller). Route `b`: a
/// default-deny policy that allows the tasks methods, same upstream. Route `x`: token
/// exchange (the upstream sees each caller).
async fn setup() -> (Idp, Upstream, Gateway) {
    let idp = Idp::start().await;
    let up = Upstream::start().await;
    let routes = format!(
        r#"  - name: a
    match: {{ path: /a/mcp }}
    public_url: {RESOURCE_A}
    upstream: {{ url: '{url}' }}
    auth: {{ issuers: [corp] }}
  - name: b
    match: {{ path: /b/mcp }}
    public_url: {RESOURCE_B}
    upstream: {{ url: '{url}' }}
    auth: {{ issuers: [corp] }}
    policy:
      default: deny
      tools: {{ work: [mcp:tools] }}
      methods: {{ "tasks/*": [mcp:tools] }}
  - name: x
    match: {{ path: /x/mcp }}
    public_url: {RESOURCE_X}
    upstream: {{ url: '{url}' }}
    auth: {{ issuers: [corp] }}
    upstream_auth: {{ token_exchange: {{ issuer: corp, client_id: {EXCHANGE_CLIENT_ID}, client_secret: {EXCHANGE_CLIENT_SECRET}, audience: upstream-aud, scopes: [mcp:tools] }} }}
"#,
        url = up.url("/mcp")
    );
    let issuers = format!("issuers:\n  - name: corp\n    issuer: {}\n", idp.issuer);
    let gw = Gateway::start_with(&routes, &issuers).await;
    (idp, up, gw)
}

fn token(idp: &Idp, resource: &str, sub: &str) -> String {
    let mut claims = idp.claims(resource, "mcp:tools");
    claims["sub"] = sub.into();
    claims["client_id"] = "agent".into();
    format!("Bearer {}", idp.mint(Alg::ES256, &claims))
}

const META: &str = "io.modelcontextprotocol/protocolVersion";
const RELATED: &str = "io.modelcontextprotocol/related-task";

/// A task-augmented call of `work`; the upstream names the task after `label`.
fn create(label: &str) -> Value {
    json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {
        "name": "work", "arguments": {"label": label}, "task": {"ttl": 60000},
        "_meta": {META: "2026-07-28"}}})
}

fn tasks(method: &str, task_id: Option<&str>) -> Value {
    let mut params = json!({"_meta": {META: "2026-07-28"}});
    if let Some(id) = task_id {
        params["taskId"] = id.into();
    }
    json!({"jsonrpc": "2.0", "id": 4, "method": method, "params": params})
}

/// POSTs `body` with the 2026-07-28 headers (`Mcp-Name` mirrors the tool name or the
/// task id, as the client sends it) and an optional upstream test mode.
async fn post(gw: &Gateway, path: &str, auth: &str, body: &Value, mode: &str) -> (u16, String) {
    let mut req = client()
        .post(gw.url(path))
        .header("authorization", auth)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2026-07-28")
        .header("x-test-mode", mode);
    if let Some(method) = body["method"].as_str() {
        req = req.header("mcp-method", method);
    }
    // `Mcp-Name` mirrors the task id on tasks/get, tasks/update and tasks/cancel only.
    let mirrors_task = ["tasks/get", "tasks/update", "tasks/cancel"]
        .iter()
        .any(|m| body["method"] == *m);
    let name = match mirrors_task {
        true => body["params"]["taskId"].as_str(),
        false => body["params"]["name"].as_str(),
    };
    if let Some(name) = name {
        req = req.header("mcp-name", name);
    }
    let resp = req.body(body.to_string()).send().await.unwrap();
    (resp.status().as_u16(), resp.text().await.unwrap())
}

/// The sealed task id of a task-augmented call's answer; the upstream's is not in it.
async fn created(gw: &Gateway, path: &str, auth: &str, label: &str) -> String {
    let (status, answer) = post(gw, path, auth, &create(label), "").await;
    assert_eq!(status, 200, "{answer}");
    assert!(!answer.contains(TASK_PREFIX), "{answer}");
    let v: Value = serde_json::from_str(&answer).unwrap();
    let sealed = v["result"]["task"]["taskId"].as_str().unwrap().to_string();
    assert!(sealed.starts_with("tk1.local."), "{sealed}");
    sealed
}

/// The last request the upstream received: its body and its `Mcp-Name`.
fn last_seen(up: &Upstream) -> (Value, Option<String>) {
    let seen = up.seen();
    let last = seen.last().unwrap();
    let name = last
        .headers
        .get("mcp-name")
        .map(|v| v.to_str().unwrap().to_string());
    (serde_json::from_slice(&last.body).unwrap(), name)
}

#[tokio::test]
async fn a_task_id_round_trips_for_its_caller_and_the_upstream_gets_its_own() {
    let (idp, up, gw) = setup().await;
    for (path, resource) in [("/a/mcp", RESOURCE_A), ("/b/mcp", RESOURCE_B)] {
        let alice = token(&idp, resource, "alice");
        let sealed = created(&gw, path, &alice, "alice").await;
        let raw = format!("{TASK_PREFIX}alice");
        for method in ["tasks/get", "tasks/cancel", "tasks/update"] {
            let (status, answer) = post(&gw, path, &alice, &tasks(method, Some(&sealed)), "").await;
            assert_eq!(status, 200, "{path} {method}: {answer}");
            // The upstream got its own id, in the body and in Mcp-Name.
            let (body, name) = last_seen(&up);
            assert_eq!(body["method"], method);
            assert_eq!(body["params"]["taskId"], raw.as_str(), "{path} {method}");
            assert_eq!(name.as_deref(), Some(raw.as_str()), "{path} {method}");
            // Its answer names the task sealed again, and the client can use that too.
            assert!(!answer.contains(TASK_PREFIX), "{answer}");
            let v: Value = serde_json::from_str(&answer).unwrap();
            let again = v["result"]["taskId"].as_str().unwrap();
            assert!(again.starts_with("tk1.local."), "{answer}");
            let (status, _) = post(&gw, path, &alice, &tasks("tasks/get", Some(again)), "").await;
            assert_eq!(status, 200);
            assert_eq!(last_seen(&up).0["params"]["taskId"], raw.as_str());
        }
        // tasks/result: the related-task `_meta` of the answer is sealed.
        let (status, answer) =
            post(&gw, path, &alice, &tasks("tasks/result", Some(&sealed)), "").await;
        assert_eq!(status, 200, "{answer}");
        let v: Value = serde_json::from_str(&answer).unwrap();
        let related = v["result"]["_meta"][RELATED]["taskId"].as_str().unwrap();
        assert!(related.starts_with("tk1.local."), "{answer}");
        // A related-task `_meta` the client sends is opened too.
        let mut call = create("again");
        call["params"]["_meta"][RELATED] = json!({"taskId": related});
        let (status, answer) = post(&gw, path, &alice, &call, "").await;
        assert_eq!(status, 200, "{answer}");
        let (body, _) = last_seen(&up);
        assert_eq!(body["params"]["_meta"][RELATED]["taskId"], raw.as_str());
    }
}

#[tokio::test]
async fn another_callers_or_a_forged_task_id_never_reaches_the_upstream() {
    let (idp, up, gw) = setup().await;
    let alice = token(&idp, RESOURCE_A, "alice");
    let bob = token(&idp, RESOURCE_A, "bob");
    let alice_on_b = token(&idp, RESOURCE_B, "alice");
    let sealed = created(&gw, "/a/mcp", &alice, "alice").await;
    let mut tampered = sealed.clone().into_bytes();
    let at = tampered.len() - 3;
    tampered[at] = if tampered[at] == b'x' { b'y' } else { b'x' };
    let tampered = String::from_utf8(tampered).unwrap();
    // A sealed requestState of the same caller is not a task id (another purpose).
    let ask = json!({"jsonrpc": "2.0", "id": 5, "method": "tools/call",
        "params": {"name": "ask", "arguments": {}, "_meta": {META: "2026-07-28"}}});
    let (_, answer) = post(&gw, "/a/mcp", &alice, &ask, "").await;
    let v: Value = serde_json::from_str(&answer).unwrap();
    let state = v["result"]["requestState"].as_str().unwrap().to_string();
    assert!(state.starts_with("rs1."), "{answer}");
    let raw = format!("{TASK_PREFIX}alice");

    let before = up.seen().len();
    for (who, path, id, reason) in [
        (&bob, "/a/mcp", sealed.as_str(), "wrong_identity"),
        (&alice_on_b, "/b/mcp", sealed.as_str(), "wrong_route"),
        (&alice, "/a/mcp", tampered.as_str(), "tampered"),
        (&alice, "/a/mcp", raw.as_str(), "malformed"),
        (&alice, "/a/mcp", state.as_str(), "malformed"),
        (&alice, "/a/mcp", "tk1.other.AAAA", "unknown_key"),
    ] {
        for method in ["tasks/get", "tasks/result", "tasks/cancel"] {
            let (status, answer) = post(&gw, path, who, &tasks(method, Some(id)), "").await;
            assert_eq!(status, 400, "{reason} {method}: {answer}");
            let v: Value = serde_json::from_str(&answer).unwrap();
            assert_eq!(v["id"], 4, "{answer}");
            assert_eq!(v["error"]["code"], -32602, "{answer}");
            assert!(!answer.contains(id), "the refusal echoes the task id");
        }
        // The same id in a related-task `_meta`.
        let mut call = create("x");
        call["params"]["_meta"][RELATED] = json!({"taskId": id});
        let (status, _) = post(&gw, path, who, &call, "").await;
        assert_eq!(status, 400, "{reason}: related-task");
    }
    // Not one string: refused as invalid params, unread by the upstream too.
    for bad in [json!(7), json!(null), json!({"taskId": sealed})] {
        let mut body = tasks("tasks/get", None);
        body["params"]["taskId"] = bad;
        let (status, answer) = post(&gw, "/a/mcp", &alice, &body, "").await;
        assert_eq!(status, 400, "{answer}");
    }
    assert_eq!(
        up.seen().len(),
        before,
        "a refused task id reached the upstream"
    );

    let m = gw.metrics().await;
    for (route, reason, n) in [
        ("a", "wrong_identity", 4.0),
        ("b", "wrong_route", 4.0),
        ("a", "tampered", 4.0),
        ("a", "malformed", 8.0),
        ("a", "unknown_key", 4.0),
    ] {
        let line = format!(
            r#"drawbridge_handle_rejections_total{{handle="task_id",reason="{reason}",route="{route}"}}"#
        );
        assert_eq!(sample(&m, &line), Some(n), "{line}\n{m}");
    }
    let log = log_when(&gw, |log| audit_events(log, "handle_rejected").len() >= 24).await;
    let rejected = audit_events(&log, "handle_rejected");
    assert!(
        rejected.iter().any(|e| e["subject"] == "bob"
            && e["reason"] == "wrong_identity"
            && e["handle"] == "task_id"),
        "{rejected:?}"
    );
    let bare = |t: &str| t.trim_start_matches("Bearer ").to_string();
    assert_log_free_of(&log, &[&bare(&alice), &bare(&bob), &sealed, &raw]);

    // The owner still uses it afterwards.
    let (status, _) = post(
        &gw,
        "/a/mcp",
        &alice,
        &tasks("tasks/get", Some(&sealed)),
        "",
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(last_seen(&up).0["params"]["taskId"], raw.as_str());
}

#[tokio::test]
async fn behind_a_shared_credential_unattributable_tasks_are_withheld() {
    let (idp, _up, gw) = setup().await;
    for (path, resource) in [("/a/mcp", RESOURCE_A), ("/b/mcp", RESOURCE_B)] {
        let alice = token(&idp, resource, "alice");
        // tasks/list: the upstream lists everyone's tasks; the caller gets none.
        let (status, answer) = post(&gw, path, &alice, &tasks("tasks/list", None), "").await;
        assert_eq!(status, 200, "{answer}");
        let v: Value = serde_json::from_str(&answer).unwrap();
        assert_eq!(v["result"]["tasks"], json!([]), "{path}: {answer}");
        // Status notifications on the answer stream: only the task the request named
        // (the caller's own, opened for them) passes, sealed.
        // A task no other caller's list names (the upstream broadcasts the statuses of
        // alice's and bob's listed tasks too).
        let sealed = created(&gw, path, &alice, "mine").await;
        let (status, text) = post(
            &gw,
            path,
            &alice,
            &tasks("tasks/get", Some(&sealed)),
            "sse-tasks",
        )
        .await;
        assert_eq!(status, 200, "{text}");
        assert!(!text.contains(TASK_PREFIX), "{text}");
        let notes: Vec<Value> = text
            .lines()
            .filter_map(|l| l.strip_prefix("data: "))
            .map(|d| serde_json::from_str(d).unwrap())
            .collect();
        let statuses: Vec<&Value> = notes
            .iter()
            .filter(|n| n["method"] == "notifications/tasks/status")
            .collect();
        assert_eq!(statuses.len(), 1, "{path}: {text}");
        let id = statuses[0]["params"]["taskId"].as_str().unwrap();
        assert!(id.starts_with("tk1.local."), "{text}");
        assert!(
            notes.iter().any(|n| n["id"] == 4),
            "the answer passes: {text}"
        );
    }
}

#[tokio::test]
async fn with_token_exchange_every_listed_task_is_sealed_for_the_caller() {
    let (idp, _up, gw) = setup().await;
    let alice = token(&idp, RESOURCE_X, "alice");
    let bob = token(&idp, RESOURCE_X, "bob");
    let (status, answer) = post(&gw, "/x/mcp", &alice, &tasks("tasks/list", None), "").await;
    assert_eq!(status, 200, "{answer}");
    assert!(!answer.contains(TASK_PREFIX), "{answer}");
    let v: Value = serde_json::from_str(&answer).unwrap();
    let listed: Vec<String> = v["result"]["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["taskId"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(listed.len(), 2, "{answer}");
    // Sealed for alice: she may use them, bob may not.
    let (status, _) = post(
        &gw,
        "/x/mcp",
        &alice,
        &tasks("tasks/get", Some(&listed[0])),
        "",
    )
    .await;
    assert_eq!(status, 200);
    let (status, _) = post(
        &gw,
        "/x/mcp",
        &bob,
        &tasks("tasks/get", Some(&listed[0])),
        "",
    )
    .await;
    assert_eq!(status, 400);
}
