//! Callers see only what they may use: list answers are filtered by the same policy that
//! judges calls, in JSON and in event streams, and an answer that cannot be filtered is
//! never passed on.

use std::collections::BTreeSet;

use futures_util::StreamExt;
use serde_json::{json, Value};

use crate::harness::{client, sample, Gateway};
use crate::idp::{Alg, Idp};
use crate::upstream::Upstream;

const RESOURCE: &str = "https://mcp.example.com/l/mcp";
const TOOLS: [&str; 4] = ["echo", "get-env", "delete_repo", "secret-tool"];

async fn setup() -> (Idp, Upstream, Gateway) {
    let idp = Idp::start().await;
    let up = Upstream::start().await;
    let routes = format!(
        r#"  - name: l
    match: {{ path: /l/mcp }}
    public_url: {RESOURCE}
    upstream: {{ url: '{}' }}
    auth: {{ issuers: [corp] }}
    policy:
      tools: {{ echo: [tools:echo], "get-*": [tools:read], delete_repo: [repo:admin] }}
      prompts: {{ simple-prompt: [prompts:read] }}
      resources: {{ "test://static/resource/*": [resources:read] }}
"#,
        up.url("/mcp")
    );
    let issuers = format!("issuers:\n  - name: corp\n    issuer: {}\n", idp.issuer);
    let gw = Gateway::start_with(&routes, &issuers).await;
    (idp, up, gw)
}

fn bearer(idp: &Idp, scope: &str) -> String {
    format!(
        "Bearer {}",
        idp.mint(Alg::ES256, &idp.claims(RESOURCE, scope))
    )
}

async fn rpc(gw: &Gateway, auth: &str, body: Value) -> reqwest::Response {
    client()
        .post(gw.url("/l/mcp"))
        .header("authorization", auth)
        .body(body.to_string())
        .send()
        .await
        .unwrap()
}

fn names(result: &Value, field: &str, key: &str) -> BTreeSet<String> {
    result[field]
        .as_array()
        .unwrap_or_else(|| panic!("no {field} in {result}"))
        .iter()
        .map(|t| t[key].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn each_caller_lists_exactly_what_they_can_call() {
    let (idp, up, gw) = setup().await;
    let cases = [
        ("tools:echo", vec!["echo"]),
        ("tools:echo tools:read", vec!["echo", "get-env"]),
        ("tools:read repo:admin", vec!["get-env", "delete_repo"]),
    ];
    for (scope, expected) in cases {
        let auth = bearer(&idp, scope);
        let resp = rpc(
            &gw,
            &auth,
            json!({"jsonrpc":"2.0","id":1,"method":"tools/list"}),
        )
        .await;
        assert_eq!(resp.status(), 200);
        let body: Value = resp.json().await.unwrap();
        let listed = names(&body["result"], "tools", "name");
        let expected: BTreeSet<String> = expected.iter().map(|s| s.to_string()).collect();
        assert_eq!(listed, expected, "{scope}");
        assert_eq!(body["result"]["nextCursor"], "page-2", "other members kept");
        // Listing and calling agree, tool by tool.
        for tool in TOOLS {
            let call = rpc(
                &gw,
                &auth,
                json!({"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":tool}}),
            )
            .await;
            assert_eq!(
                call.status() == 200,
                listed.contains(tool),
                "{scope}: {tool}"
            );
        }
    }
    let m = gw.metrics().await;
    assert_eq!(
        sample(
            &m,
            r#"drawbridge_list_items_removed_total{method="tools/list",route="l"}"#
        ),
        Some(7.0),
        "{m}"
    );
    assert!(up.seen().len() >= 3);
}

#[tokio::test]
async fn prompts_resources_and_templates_are_filtered_in_a_batch() {
    let (idp, _up, gw) = setup().await;
    let auth = bearer(&idp, "prompts:read resources:read");
    let batch = json!([
        {"jsonrpc":"2.0","id":"p","method":"prompts/list"},
        {"jsonrpc":"2.0","id":"r","method":"resources/list"},
        {"jsonrpc":"2.0","id":"t","method":"resources/templates/list"},
        {"jsonrpc":"2.0","id":"x","method":"ping"}
    ]);
    let body: Value = rpc(&gw, &auth, batch).await.json().await.unwrap();
    let by_id = |id: &str| {
        body.as_array()
            .unwrap()
            .iter()
            .find(|m| m["id"] == id)
            .unwrap()["result"]
            .clone()
    };
    assert_eq!(
        names(&by_id("p"), "prompts", "name"),
        BTreeSet::from(["simple-prompt".to_string()])
    );
    assert_eq!(
        names(&by_id("r"), "resources", "uri"),
        BTreeSet::from(["test://static/resource/1".to_string()])
    );
    assert_eq!(
        names(&by_id("t"), "resourceTemplates", "uriTemplate"),
        BTreeSet::from(["test://static/resource/{id}".to_string()])
    );
    assert_eq!(by_id("x")["method"], "ping");
}

#[tokio::test]
async fn event_stream_lists_are_filtered_without_delaying_other_events() {
    let (idp, up, gw) = setup().await;
    let resp = client()
        .post(gw.url("/l/mcp"))
        .header("authorization", bearer(&idp, "tools:echo"))
        .header("x-test-mode", "sse")
        .body(json!({"jsonrpc":"2.0","id":5,"method":"tools/list"}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let mut stream = resp.bytes_stream();
    let mut seen = String::new();
    // The notification the upstream sent first arrives while the list is still held
    // upstream: filtering does not delay unrelated events.
    while !seen.contains("notifications/progress") {
        let chunk = tokio::time::timeout(std::time::Duration::from_secs(5), stream.next())
            .await
            .expect("notification before the list")
            .unwrap()
            .unwrap();
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert!(
        seen.starts_with("id: ev-1\n"),
        "event ids preserved: {seen:?}"
    );
    assert!(!seen.contains("tools"));
    up.release();
    while let Some(chunk) = stream.next().await {
        seen.push_str(&String::from_utf8_lossy(&chunk.unwrap()));
    }
    let list_event = seen
        .split("\n\n")
        .find(|e| e.contains("\"tools\""))
        .unwrap();
    assert!(list_event.starts_with("id: ev-2\n"), "{list_event}");
    let data: Value = serde_json::from_str(list_event.split("data: ").nth(1).unwrap()).unwrap();
    assert_eq!(
        names(&data["result"], "tools", "name"),
        BTreeSet::from(["echo".to_string()])
    );
}

#[tokio::test]
async fn an_unfilterable_list_is_an_error_never_the_list() {
    let (idp, _up, gw) = setup().await;
    let resp = client()
        .post(gw.url("/l/mcp"))
        .header("authorization", bearer(&idp, "tools:echo"))
        .header("x-test-mode", "malformed-list")
        .body(json!({"jsonrpc":"2.0","id":9,"method":"tools/list"}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 502, "fail closed with a 502");
    let text = resp.text().await.unwrap();
    let body: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(body["id"], 9);
    assert_eq!(body["error"]["code"], -32002);
    assert!(!text.contains("not a list"));
    let m = gw
        .metrics_when(
            r#"drawbridge_requests_total{method="POST",route="l",status="502"}"#,
            1.0,
        )
        .await;
    assert_eq!(
        sample(&m, r#"drawbridge_list_filter_failures_total{route="l"}"#),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &m,
            r#"drawbridge_requests_total{method="POST",route="l",status="502"}"#
        ),
        Some(1.0),
        "{m}"
    );
    assert!(gw.log().contains("list_filter_failed"), "audit event");
}

#[tokio::test]
async fn a_truncated_json_list_answer_is_a_502_and_leaks_nothing() {
    let (idp, _up, gw) = setup().await;
    let resp = client()
        .post(gw.url("/l/mcp"))
        .header("authorization", bearer(&idp, "tools:echo"))
        .header("x-test-mode", "truncated")
        .body(json!({"jsonrpc":"2.0","id":"t","method":"tools/list"}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 502);
    let text = resp.text().await.unwrap();
    let body: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(body["id"], "t");
    assert_eq!(body["error"]["code"], -32002);
    assert!(
        !text.contains("get-env") && !text.contains("echo"),
        "{text}"
    );
}

#[tokio::test]
async fn a_json_list_answer_in_many_pieces_is_filtered_whole_with_its_length() {
    let (idp, _up, gw) = setup().await;
    let resp = client()
        .post(gw.url("/l/mcp"))
        .header("authorization", bearer(&idp, "tools:echo"))
        .header("x-test-mode", "chunked")
        .body(json!({"jsonrpc":"2.0","id":3,"method":"tools/list"}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let length: usize = resp.headers()["content-length"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let text = resp.text().await.unwrap();
    assert_eq!(length, text.len());
    let body: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        names(&body["result"], "tools", "name"),
        BTreeSet::from(["echo".to_string()])
    );
    assert_eq!(body["result"]["nextCursor"], "page-2");
}

#[tokio::test]
async fn an_unfilterable_list_in_an_event_stream_ends_in_an_error_event() {
    let (idp, up, gw) = setup().await;
    let resp = client()
        .post(gw.url("/l/mcp"))
        .header("authorization", bearer(&idp, "tools:echo"))
        .header("accept", "application/json, text/event-stream")
        .header("x-test-mode", "sse-malformed-list")
        .body(json!({"jsonrpc":"2.0","id":9,"method":"tools/list"}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "the stream's status went out first");
    assert!(resp.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    let text = tokio::time::timeout(std::time::Duration::from_secs(15), resp.text())
        .await
        .expect("the stream ends")
        .unwrap();
    assert_eq!(up.seen().len(), 1);
    for hidden in ["secret-tool", "delete_repo"] {
        assert!(
            !text.contains(hidden),
            "an unfiltered entry reached the client: {text}"
        );
    }
    let events: Vec<Value> = text
        .split("\n\n")
        .flat_map(|event| event.lines())
        .filter_map(|line| line.strip_prefix("data:"))
        .map(|data| serde_json::from_str(data.trim()).unwrap())
        .collect();
    assert_eq!(
        events.first().map(|e| e["method"].clone()),
        Some(json!("notifications/progress")),
        "{text}"
    );
    let last = events.last().unwrap();
    assert_eq!(last["id"], 9, "{text}");
    assert_eq!(last["error"]["code"], -32002, "{text}");
    assert!(last.get("result").is_none(), "{text}");
    let failures = r#"drawbridge_list_filter_failures_total{route="l"}"#;
    let m = gw.metrics_when(failures, 1.0).await;
    assert_eq!(sample(&m, failures), Some(1.0), "{m}");
}
