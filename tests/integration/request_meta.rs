//! MCP 2026-07-28 request metadata (issue 23 item 2): a request whose body names its
//! protocol version in `params._meta` carries `MCP-Protocol-Version` equal to it,
//! `Mcp-Method`, and `Mcp-Name` on `tools/call` / `resources/read` / `prompts/get`
//! (Base64 sentinel decoded), or it is refused with the spec's `HeaderMismatch` (400,
//! -32020; -32602 when the body lacks the `_meta` version the header names) and the
//! upstream receives nothing, not even a connection. Older requests keep
//! their optional headers.

use base64::Engine as _;
use serde_json::{json, Value};

use crate::harness::{client, route, Gateway};
use crate::upstream::Upstream;

fn meta() -> Value {
    json!({
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": {}
    })
}

fn modern_call(id: u64, tool: &str) -> String {
    json!({"jsonrpc":"2.0","id":id,"method":"tools/call",
        "params":{"name":tool,"arguments":{},"_meta":meta()}})
    .to_string()
}

fn sentinel(value: &str) -> String {
    format!(
        "=?base64?{}?=",
        base64::engine::general_purpose::STANDARD.encode(value)
    )
}

async fn post(gw: &Gateway, body: &str, headers: &[(&str, &str)]) -> reqwest::Response {
    let mut req = client().post(gw.url("/r/mcp")).body(body.to_string());
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    req.send().await.unwrap()
}

const V: (&str, &str) = ("mcp-protocol-version", "2026-07-28");

/// What a case is about, its body, and its headers.
type Case<'a> = (&'a str, &'a str, Vec<(&'a str, &'a str)>);
const CALL: (&str, &str) = ("mcp-method", "tools/call");

#[tokio::test]
async fn modern_requests_whose_headers_disagree_with_the_body_never_reach_the_upstream() {
    let up = Upstream::start().await;
    let gw = Gateway::start(&route("r", "/r/mcp", &up.url("/mcp"))).await;
    let echo = modern_call(7, "echo");
    let encoded_other = sentinel("admin-delete");
    let list =
        json!({"jsonrpc":"2.0","id":7,"method":"tools/list","params":{"_meta":meta()}}).to_string();
    let task = json!({"jsonrpc":"2.0","id":7,"method":"tasks/get",
        "params":{"taskId":"task-1","_meta":meta()}})
    .to_string();
    let legacy_echo =
        json!({"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"echo"}}).to_string();
    let cases: Vec<Case> = vec![
        (
            "no MCP-Protocol-Version",
            &echo,
            vec![CALL, ("mcp-name", "echo")],
        ),
        (
            "another MCP-Protocol-Version",
            &echo,
            vec![
                ("mcp-protocol-version", "2025-11-25"),
                CALL,
                ("mcp-name", "echo"),
            ],
        ),
        (
            "a modern header over a body naming no version",
            &legacy_echo,
            vec![V, CALL, ("mcp-name", "echo")],
        ),
        ("no Mcp-Method", &echo, vec![V, ("mcp-name", "echo")]),
        (
            "another Mcp-Method",
            &echo,
            vec![V, ("mcp-method", "tools/list"), ("mcp-name", "echo")],
        ),
        ("no Mcp-Name", &echo, vec![V, CALL]),
        (
            "another Mcp-Name",
            &echo,
            vec![V, CALL, ("mcp-name", "admin-delete")],
        ),
        (
            "another Mcp-Name, Base64-encoded",
            &echo,
            vec![V, CALL, ("mcp-name", &encoded_other)],
        ),
        (
            "a malformed Base64 sentinel",
            &echo,
            vec![V, CALL, ("mcp-name", "=?base64?ZWNobx==?=")],
        ),
        (
            "Mcp-Name on a list",
            &list,
            vec![V, ("mcp-method", "tools/list"), ("mcp-name", "echo")],
        ),
        (
            "Mcp-Name naming another task",
            &task,
            vec![V, ("mcp-method", "tasks/get"), ("mcp-name", "task-2")],
        ),
        (
            "Mcp-Param on a list",
            &list,
            vec![V, ("mcp-method", "tools/list"), ("mcp-param-region", "eu")],
        ),
    ];
    for (what, body, headers) in cases {
        let resp = post(&gw, body, &headers).await;
        assert_eq!(resp.status(), 400, "{what}");
        let error: Value = resp.json().await.unwrap();
        // A body missing its `_meta` version is invalid params (the conformance suite's
        // `sep-2575-request-meta-invalid-missing-meta`); every other case a mismatch.
        let code = if what == "a modern header over a body naming no version" {
            -32602
        } else {
            -32020
        };
        assert_eq!(error["error"]["code"], code, "{what}: {error}");
        assert_eq!(error["id"], 7, "{what}");
        assert!(up.seen().is_empty(), "{what}: the upstream received it");
        assert_eq!(
            up.connections(),
            0,
            "{what}: an upstream connection was opened"
        );
    }
    // A batch naming 2026-07-28 is refused as a batch: that revision has none.
    let batch = format!(
        "[{},{}]",
        modern_call(1, "echo"),
        json!({"jsonrpc":"2.0","id":2,"method":"ping"})
    );
    let resp = post(&gw, &batch, &[]).await;
    assert_eq!(resp.status(), 400);
    let error: Value = resp.json().await.unwrap();
    assert_eq!(error[0]["error"]["code"], -32600, "{error}");
    assert!(up.seen().is_empty(), "the batch reached the upstream");
    assert_eq!(up.connections(), 0);
}

#[tokio::test]
async fn agreeing_headers_pass_and_reach_the_upstream_as_sent() {
    let up = Upstream::start().await;
    let gw = Gateway::start(&route("r", "/r/mcp", &up.url("/mcp"))).await;
    // A name outside visible ASCII travels in the Base64 sentinel.
    let name = "wetter-für-köln";
    let body = modern_call(1, name);
    let encoded = sentinel(name);
    let resp = post(
        &gw,
        &body,
        &[
            V,
            CALL,
            ("mcp-name", &encoded),
            ("mcp-param-city", "=?base64?S8O2bG4=?="),
        ],
    )
    .await;
    assert_eq!(resp.status(), 200);
    let read = json!({"jsonrpc":"2.0","id":2,"method":"resources/read",
        "params":{"uri":"file:///a.txt","_meta":meta()}})
    .to_string();
    let resp = post(
        &gw,
        &read,
        &[
            V,
            ("mcp-method", "resources/read"),
            ("mcp-name", "file:///a.txt"),
        ],
    )
    .await;
    assert_eq!(resp.status(), 200);
    // On the tasks methods Mcp-Name mirrors the task id, the sealed one the client holds
    // (a task-augmented call gets it); the upstream gets its own in both (see tasks.rs).
    let create = json!({"jsonrpc":"2.0","id":4,"method":"tools/call",
        "params":{"name":"work","arguments":{"label":"1"},"task":{},"_meta":meta()}})
    .to_string();
    let resp = post(&gw, &create, &[V, CALL, ("mcp-name", "work")]).await;
    assert_eq!(resp.status(), 200);
    let created: Value = resp.json().await.unwrap();
    let sealed = created["result"]["task"]["taskId"].as_str().unwrap();
    let task = json!({"jsonrpc":"2.0","id":4,"method":"tasks/get",
        "params":{"taskId":sealed,"_meta":meta()}})
    .to_string();
    let resp = post(
        &gw,
        &task,
        &[V, ("mcp-method", "tasks/get"), ("mcp-name", sealed)],
    )
    .await;
    assert_eq!(resp.status(), 200);
    // Before 2026-07-28 the headers are optional.
    let legacy = json!({"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"echo"}});
    let resp = post(
        &gw,
        &legacy.to_string(),
        &[("mcp-protocol-version", "2025-11-25")],
    )
    .await;
    assert_eq!(resp.status(), 200);
    let seen = up.seen();
    assert_eq!(seen.len(), 5);
    assert_eq!(seen[0].headers["mcp-name"], encoded.as_str());
    assert_eq!(seen[0].headers["mcp-param-city"], "=?base64?S8O2bG4=?=");
    let forwarded: Value = serde_json::from_slice(&seen[0].body).unwrap();
    assert_eq!(forwarded["params"]["name"], name);
    assert_eq!(seen[1].headers["mcp-name"], "file:///a.txt");
    assert_eq!(seen[3].headers["mcp-name"], "upstream-task-1");
    let forwarded: Value = serde_json::from_slice(&seen[4].body).unwrap();
    assert_eq!(forwarded["params"]["name"], "echo");
}

/// `resources/subscribe` and `resources/unsubscribe` are gone in MCP 2026-07-28: a request
/// naming that revision gets "method not found" (404, -32601) from the gateway, as the
/// revision's servers answer it, and the upstream sees nothing. Named by an older request
/// (no `_meta` version), the method keeps its meaning and its `uri` rule.
#[tokio::test]
async fn methods_the_named_revision_removed_are_not_found() {
    let up = Upstream::start().await;
    let gw = Gateway::start(&route("r", "/r/mcp", &up.url("/mcp"))).await;
    for method in ["resources/subscribe", "resources/unsubscribe"] {
        let body =
            json!({"jsonrpc":"2.0","id":3,"method":method,"params":{"_meta":meta()}}).to_string();
        let resp = post(&gw, &body, &[V, ("mcp-method", method)]).await;
        assert_eq!(resp.status(), 404, "{method}");
        let answer: Value = resp.json().await.unwrap();
        assert_eq!(answer["error"]["code"], -32601, "{answer}");
        assert_eq!(answer["id"], 3, "{answer}");
    }
    assert!(up.seen().is_empty(), "the upstream saw {:?}", up.seen());
    // An older request without its target is still malformed, not "not found".
    let old =
        json!({"jsonrpc":"2.0","id":4,"method":"resources/subscribe","params":{}}).to_string();
    let resp = post(&gw, &old, &[]).await;
    assert_eq!(resp.status(), 400);
    assert!(up.seen().is_empty());
}
