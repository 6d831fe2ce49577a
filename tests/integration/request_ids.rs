//! Request ids and trace context: the same ids reach the upstream, the client's answer,
//! the access line, the audit events and the error body, on every path (forwarded,
//! refused, handed to a subrequest).

use serde_json::{json, Value};

use crate::harness::{audit_events, client, log_when, Gateway, LOG_ALL};
use crate::idp::{Alg, Idp};
use crate::upstream::Upstream;

const RESOURCE: &str = "https://mcp.example.com/ids/mcp";
const PARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

struct Setup {
    idp: Idp,
    up: Upstream,
    gw: Gateway,
}

async fn setup() -> Setup {
    let idp = Idp::start().await;
    let up = Upstream::start().await;
    let routes = format!(
        r#"  - name: ids
    match: {{ path: /ids/mcp }}
    public_url: {RESOURCE}
    upstream: {{ url: '{}' }}
    auth: {{ issuers: [corp] }}
    policy:
      tools:
        echo: [tools:echo]
"#,
        up.url("/mcp")
    );
    let extra = format!(
        "{LOG_ALL}issuers:\n  - name: corp\n    issuer: {}\n",
        idp.issuer
    );
    let gw = Gateway::start_with(&routes, &extra).await;
    Setup { idp, up, gw }
}

fn call(id: &str, tool: &str, blob: usize) -> String {
    json!({"jsonrpc":"2.0","id":id,"method":"tools/call","params":{"name":tool,"arguments":{"blob":"q".repeat(blob)}}}).to_string()
}

async fn post(s: &Setup, headers: &[(&str, &str)], body: String) -> reqwest::Response {
    let token = s
        .idp
        .mint(Alg::ES256, &s.idp.claims(RESOURCE, "tools:echo"));
    let mut req = client()
        .post(s.gw.url("/ids/mcp"))
        .header("authorization", format!("Bearer {token}"));
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    req.body(body).send().await.unwrap()
}

/// The access line of the request with id `id` (waits for it, bounded).
async fn access_line(gw: &Gateway, id: &str) -> Value {
    let needle = format!(r#""request_id":"{id}""#);
    let log = log_when(gw, |log| {
        log.lines()
            .any(|l| l.contains("drawbridge::access") && l.contains(&needle))
    })
    .await;
    let line = log
        .lines()
        .find(|l| l.contains("drawbridge::access") && l.contains(&needle))
        .unwrap_or_else(|| panic!("no access line for {id}: {log}"));
    serde_json::from_str(line).unwrap()
}

fn header<'r>(resp: &'r reqwest::Response, name: &str) -> &'r str {
    resp.headers()[name].to_str().unwrap()
}

#[tokio::test]
async fn a_clients_ids_reach_the_upstream_the_answer_and_the_logs() {
    let s = setup().await;
    let resp = post(
        &s,
        &[
            ("x-request-id", "client-req-1"),
            ("traceparent", PARENT),
            ("tracestate", "vendor=abc"),
        ],
        call("1", "echo", 10),
    )
    .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(header(&resp, "x-request-id"), "client-req-1");
    let seen = s.up.seen();
    assert_eq!(seen.len(), 1);
    let h = &seen[0].headers;
    assert_eq!(h["x-request-id"], "client-req-1");
    assert_eq!(h["traceparent"], PARENT, "passed on byte for byte");
    assert_eq!(h["tracestate"], "vendor=abc");
    let line = access_line(&s.gw, "client-req-1").await;
    assert_eq!(line["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_eq!(line["client"], "127.0.0.1");
    let log = s.gw.log();
    let allowed = audit_events(&log, "authorization");
    assert!(
        allowed.iter().any(|e| e["request_id"] == "client-req-1"
            && e["trace_id"] == "4bf92f3577b34da6a3ce929d0e0e4736"),
        "{log}"
    );
}

#[tokio::test]
async fn missing_or_broken_ids_are_replaced_the_same_everywhere() {
    let s = setup().await;
    // A request id that could break a log line, and a traceparent in capitals (invalid).
    let resp = post(
        &s,
        &[
            ("x-request-id", "two words"),
            ("traceparent", &PARENT.to_uppercase()),
            ("tracestate", "vendor=abc"),
        ],
        call("2", "echo", 10),
    )
    .await;
    assert_eq!(resp.status(), 200);
    let id = header(&resp, "x-request-id").to_string();
    assert_eq!(id.len(), 32, "{id}");
    assert!(id.bytes().all(|b| b.is_ascii_hexdigit()));
    let seen = s.up.seen();
    let h = &seen[0].headers;
    assert_eq!(
        h["x-request-id"],
        id.as_str(),
        "the upstream has the same id"
    );
    let parent = h["traceparent"].to_str().unwrap();
    assert_ne!(parent, PARENT.to_uppercase());
    assert!(parent.starts_with("00-") && parent.ends_with("-00") && parent.len() == 55);
    assert!(
        h.get("tracestate").is_none(),
        "a broken trace's state is dropped"
    );
    let line = access_line(&s.gw, &id).await;
    assert_eq!(line["trace_id"], parent[3..35]);
    assert_eq!(h.get_all("x-request-id").iter().count(), 1);
}

#[tokio::test]
async fn a_refusal_names_its_request_in_body_header_audit_and_access_line() {
    let s = setup().await;
    let resp = post(
        &s,
        &[("x-request-id", "denied-1")],
        call("3", "delete_repo", 10),
    )
    .await;
    assert_eq!(resp.status(), 403);
    assert_eq!(header(&resp, "x-request-id"), "denied-1");
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["data"]["requestId"], "denied-1", "{body}");
    assert!(s.up.seen().is_empty());
    let line = access_line(&s.gw, "denied-1").await;
    assert_eq!(line["status"], 403);
    let log = s.gw.log();
    let denied = audit_events(&log, "authorization");
    assert!(
        denied
            .iter()
            .any(|e| e["request_id"] == "denied-1" && e["decision"] != "allow"),
        "{log}"
    );

    // Refused before any body is read (no token): a plain OAuth error, still named.
    let resp = client()
        .post(s.gw.url("/ids/mcp"))
        .header("x-request-id", "anonymous-1")
        .body(call("4", "echo", 1))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    assert_eq!(header(&resp, "x-request-id"), "anonymous-1");
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["request_id"], "anonymous-1");
    access_line(&s.gw, "anonymous-1").await;
}

#[tokio::test]
async fn a_large_body_through_a_subrequest_keeps_its_ids() {
    let s = setup().await;
    let resp = post(&s, &[], call("5", "echo", 1 << 20)).await;
    assert_eq!(resp.status(), 200);
    let id = header(&resp, "x-request-id").to_string();
    let seen = s.up.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].headers["x-request-id"], id.as_str());
    let line = access_line(&s.gw, &id).await;
    assert_eq!(line["status"], 200);
    let parent = seen[0].headers["traceparent"].to_str().unwrap();
    assert_eq!(line["trace_id"], parent[3..35]);
}

#[tokio::test]
async fn behind_a_trusted_proxy_the_forwarded_client_is_logged() {
    let up = Upstream::start().await;
    let routes = crate::harness::route("open", "/open/mcp", &up.url("/mcp"));
    let gw = Gateway::start_with(
        &routes,
        &format!("{LOG_ALL}trusted_proxies: [127.0.0.1/32]\n"),
    )
    .await;
    let resp = client()
        .post(gw.url("/open/mcp"))
        .header("x-request-id", "xff-1")
        .header("x-forwarded-for", "1.1.1.1, 198.51.100.7")
        .body(r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let line = access_line(&gw, "xff-1").await;
    assert_eq!(
        line["client"], "198.51.100.7",
        "the proxy's word, not the forgery"
    );
    assert_eq!(line["peer"], "127.0.0.1");
    // The upstream's X-Forwarded-For is unchanged by this: the peer is appended.
    assert_eq!(
        up.seen()[0].headers["x-forwarded-for"],
        "1.1.1.1, 198.51.100.7, 127.0.0.1"
    );
}

#[tokio::test]
async fn without_trusted_proxies_a_forwarded_address_is_not_believed() {
    let up = Upstream::start().await;
    let routes = crate::harness::route("open", "/open/mcp", &up.url("/mcp"));
    let gw = Gateway::start_with(&routes, LOG_ALL).await;
    client()
        .post(gw.url("/open/mcp"))
        .header("x-request-id", "xff-2")
        .header("x-forwarded-for", "198.51.100.7")
        .body(r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#)
        .send()
        .await
        .unwrap();
    let line = access_line(&gw, "xff-2").await;
    assert_eq!(line["client"], "127.0.0.1");
    assert!(line.get("peer").is_none(), "{line}");
}

#[tokio::test]
async fn clients_behind_one_proxy_are_separate_sources_for_the_log_budget() {
    let idp = Idp::start().await;
    let up = Upstream::start().await;
    let routes = format!(
        "  - name: ids\n    match: {{ path: /ids/mcp }}\n    public_url: {RESOURCE}\n    upstream: {{ url: '{}' }}\n    auth: {{ issuers: [corp] }}\n",
        up.url("/mcp")
    );
    // The default budget: one refusal of a kind per source and interval is written.
    let extra = format!(
        "trusted_proxies: [127.0.0.1]\nissuers:\n  - name: corp\n    issuer: {}\n",
        idp.issuer
    );
    let gw = Gateway::start_with(&routes, &extra).await;
    for (id, from) in [
        ("a-1", "198.51.100.1"),
        ("a-2", "198.51.100.1"),
        ("b-1", "198.51.100.2"),
    ] {
        let resp = client()
            .post(gw.url("/ids/mcp"))
            .header("x-request-id", id)
            .header("x-forwarded-for", from)
            .body(r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 401);
    }
    let log = log_when(&gw, |log| log.contains(r#""request_id":"b-1""#)).await;
    let written: Vec<String> = audit_events(&log, "authentication_refused")
        .iter()
        .map(|e| e["request_id"].as_str().unwrap_or("").to_string())
        .collect();
    assert_eq!(written, ["a-1", "b-1"], "{log}");
}
