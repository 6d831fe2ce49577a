//! MCP 2026-07-28 on a default-deny route: the requests that replace the handshake and
//! the GET stream (`server/discover`, `subscriptions/listen`) need only the route's
//! `required_scopes`, so a modern client is never pushed back to the 2025 handshake and a
//! modern-only server stays reachable. Forbidden tools stay forbidden in that mode too.

use serde_json::json;

use crate::harness::{client, Gateway};
use crate::idp::{Alg, Idp};
use crate::upstream::Upstream;

const RESOURCE: &str = "https://mcp.example.com/modern/mcp";

#[tokio::test]
async fn discover_and_listen_pass_a_default_deny_route() {
    let idp = Idp::start().await;
    let up = Upstream::start().await;
    let routes = format!(
        r#"  - name: modern
    match: {{ path: /modern/mcp }}
    public_url: {RESOURCE}
    upstream: {{ url: '{}' }}
    auth: {{ issuers: [corp], required_scopes: [mcp:tools] }}
    policy:
      default: deny
      tools:
        echo: [tools:echo]
"#,
        up.url("/mcp")
    );
    let issuers = format!("issuers:\n  - name: corp\n    issuer: {}\n", idp.issuer);
    let gw = Gateway::start_with(&routes, &issuers).await;
    let bearer = format!(
        "Bearer {}",
        idp.mint(Alg::ES256, &idp.claims(RESOURCE, "mcp:tools"))
    );
    let meta = json!({"io.modelcontextprotocol/protocolVersion": "2026-07-28"});
    let discover =
        json!({"jsonrpc":"2.0","id":1,"method":"server/discover","params":{"_meta": meta}});
    let listen = json!({"jsonrpc":"2.0","id":2,"method":"subscriptions/listen",
        "params":{"_meta": meta, "notifications": {"toolsListChanged": true}}});
    for (body, method) in [
        (&discover, "server/discover"),
        (&listen, "subscriptions/listen"),
    ] {
        let resp = client()
            .post(gw.url("/modern/mcp"))
            .header("authorization", &bearer)
            .header("content-type", "application/json")
            .header("mcp-protocol-version", "2026-07-28")
            .header("mcp-method", method)
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        assert!(resp.status().is_success(), "{method}: {}", resp.status());
    }
    let methods: Vec<String> = up
        .seen()
        .iter()
        .filter_map(|s| serde_json::from_slice::<serde_json::Value>(&s.body).ok())
        .filter_map(|v| v["method"].as_str().map(str::to_string))
        .collect();
    assert_eq!(methods, ["server/discover", "subscriptions/listen"]);

    // The same caller, same mode: a tool outside its scopes is still refused, unsent.
    let before = up.seen().len();
    let call = json!({"jsonrpc":"2.0","id":3,"method":"tools/call",
        "params":{"name":"echo","arguments":{},"_meta": meta}});
    let resp = client()
        .post(gw.url("/modern/mcp"))
        .header("authorization", &bearer)
        .header("content-type", "application/json")
        .header("mcp-protocol-version", "2026-07-28")
        .header("mcp-method", "tools/call")
        .header("mcp-name", "echo")
        .body(call.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    assert_eq!(
        up.seen().len(),
        before,
        "a refused call reached the upstream"
    );
}
