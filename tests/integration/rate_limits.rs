//! Rate limits on real traffic: counted per subject, per client address behind a trusted
//! proxy, per tool; what a refusal looks like (429, `Retry-After`, a JSON-RPC error that
//! names the limit, the metric, the audit event); the key cap; a reload. Every count is
//! checked against what the upstream received.

use serde_json::{json, Value};

use crate::harness::{audit_events, client, log_when, route, sample, Gateway, LOG_ALL};
use crate::idp::{Alg, Idp};
use crate::upstream::Upstream;

const RESOURCE: &str = "https://mcp.example.com/rl/mcp";

fn issuers(idp: &Idp) -> String {
    format!("issuers:\n  - name: corp\n    issuer: {}\n", idp.issuer)
}

/// A protected route on `/rl/mcp` with `extra` (indented four spaces) after its `auth`.
fn protected(up: &Upstream, extra: &str) -> String {
    format!(
        "  - name: rl\n    match: {{ path: /rl/mcp }}\n    public_url: {RESOURCE}\n    upstream: {{ url: '{}' }}\n    auth: {{ issuers: [corp] }}\n{extra}",
        up.url("/mcp")
    )
}

/// A bearer token for `subject`.
fn token(idp: &Idp, subject: &str) -> String {
    let mut claims = idp.claims(RESOURCE, "mcp");
    claims["sub"] = json!(subject);
    format!("Bearer {}", idp.mint(Alg::ES256, &claims))
}

fn tool_call(id: u64, name: &str) -> Value {
    json!({"jsonrpc":"2.0","id":id,"method":"tools/call","params":{"name":name,"arguments":{}}})
}

async fn post(gw: &Gateway, auth: Option<&str>, body: &Value) -> reqwest::Response {
    let mut req = client().post(gw.url("/rl/mcp")).body(body.to_string());
    if let Some(auth) = auth {
        req = req.header("authorization", auth);
    }
    req.send().await.unwrap()
}

/// The `tools/call` names the upstream received, in order.
fn called(up: &Upstream) -> Vec<String> {
    up.seen()
        .iter()
        .filter_map(|s| serde_json::from_slice::<Value>(&s.body).ok())
        .flat_map(|v| match v {
            Value::Array(items) => items,
            one => vec![one],
        })
        .filter(|m| m["method"] == "tools/call")
        .map(|m| m["params"]["name"].as_str().unwrap_or_default().to_string())
        .collect()
}

#[tokio::test]
async fn a_route_limit_by_subject_counts_each_subject_apart_and_the_upstream_sees_only_the_allowed()
{
    let idp = Idp::start().await;
    let up = Upstream::start().await;
    let routes = protected(
        &up,
        "    rate_limit: { requests: 2, per: 1h, key: subject }\n",
    );
    let gw = Gateway::start_with(&routes, &format!("{LOG_ALL}{}", issuers(&idp))).await;
    let (alice, bob) = (token(&idp, "alice-7f3a"), token(&idp, "bob"));
    let ping = json!({"jsonrpc":"2.0","id":1,"method":"ping"});
    for _ in 0..2 {
        assert_eq!(post(&gw, Some(&alice), &ping).await.status(), 200);
    }
    let refused = post(
        &gw,
        Some(&alice),
        &json!({"jsonrpc":"2.0","id":3,"method":"ping"}),
    )
    .await;
    assert_eq!(refused.status(), 429);
    // 2 an hour: the next one fits in 30 minutes.
    let retry: u32 = refused.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1_790..=1_800).contains(&retry), "{retry}");
    assert_eq!(refused.headers()["content-type"], "application/json");
    let body: Value = refused.json().await.unwrap();
    // Refused before the body was read: no id to answer.
    assert!(body["id"].is_null(), "{body}");
    assert_eq!(body["error"]["code"], -32008);
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("this route's rate limit") && message.contains("key: subject"),
        "{message}"
    );
    assert!(!message.contains("alice"), "{message}");
    // Bob has his own bucket.
    for _ in 0..2 {
        assert_eq!(post(&gw, Some(&bob), &ping).await.status(), 200);
    }
    assert_eq!(post(&gw, Some(&bob), &ping).await.status(), 429);
    assert_eq!(up.seen().len(), 4, "exactly the allowed requests arrived");

    // Requests are counted last (in the logging phase), after the refusal's own metric.
    let answered = r#"drawbridge_requests_total{method="POST",route="rl",status="429"}"#;
    let metrics = gw.metrics_when(answered, 2.0).await;
    assert_eq!(sample(&metrics, answered), Some(2.0), "{metrics}");
    assert_eq!(
        sample(
            &metrics,
            r#"drawbridge_rate_limited_total{key="subject",limit="route",route="rl"}"#
        ),
        Some(2.0),
        "{metrics}"
    );
    assert!(!metrics.contains("alice-7f3a"), "a subject in a label");
    let log = log_when(&gw, |log| audit_events(log, "rate_limited").len() == 2).await;
    let events = audit_events(&log, "rate_limited");
    assert_eq!(events.len(), 2, "{log}");
    assert_eq!(events[0]["subject"], "alice-7f3a");
    assert_eq!(events[0]["limit"], "route");
    assert_eq!(events[0]["key"], "subject");
    assert_eq!(events[1]["subject"], "bob");
}

#[tokio::test]
async fn a_tool_limit_counts_calls_of_that_tool_and_a_refused_batch_uses_nothing() {
    let idp = Idp::start().await;
    let up = Upstream::start().await;
    let routes = protected(
        &up,
        "    policy:
      tools:
        echo: []
        deploy:
          scopes: []
          rate_limit: { requests: 1, per: 1h, key: subject }
        \"ship-*\":
          rate_limit: { requests: 2, per: 1h, key: subject }
",
    );
    let gw = Gateway::start_with(&routes, &format!("{LOG_ALL}{}", issuers(&idp))).await;
    // Every configured limit has its series from the start, at 0.
    let metrics = gw.metrics().await;
    for limit in ["deploy", "ship-*"] {
        let series =
            format!(r#"drawbridge_rate_limited_total{{key="subject",limit="{limit}",route="rl"}}"#);
        assert_eq!(sample(&metrics, &series), Some(0.0), "{series}\n{metrics}");
    }
    let alice = token(&idp, "alice");
    assert_eq!(
        post(&gw, Some(&alice), &tool_call(1, "deploy"))
            .await
            .status(),
        200
    );
    let refused = post(&gw, Some(&alice), &tool_call(2, "deploy")).await;
    assert_eq!(refused.status(), 429);
    assert!(refused.headers().contains_key("retry-after"));
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["id"], 2, "answered with the call's id");
    assert_eq!(body["error"]["code"], -32008);
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("tool `deploy`"), "{message}");
    // Other tools are not limited by it.
    assert_eq!(
        post(&gw, Some(&alice), &tool_call(3, "echo"))
            .await
            .status(),
        200
    );
    // A pattern's limit is shared by the tools it matches.
    assert_eq!(
        post(&gw, Some(&alice), &tool_call(4, "ship-a"))
            .await
            .status(),
        200
    );

    // Bob: a batch with one deploy and three ship-* calls needs 3 of ship-*'s 2:
    // refused whole, and the deploy it took first is given back.
    let bob = token(&idp, "bob");
    let batch = json!([
        tool_call(5, "deploy"),
        tool_call(6, "ship-a"),
        tool_call(7, "ship-b"),
        tool_call(11, "ship-c")
    ]);
    let refused = post(&gw, Some(&bob), &batch).await;
    assert_eq!(refused.status(), 429);
    assert!(
        !refused.headers().contains_key("retry-after"),
        "waiting never lets 3 calls into a bucket of 2"
    );
    let body: Value = refused.json().await.unwrap();
    let ids: Vec<&Value> = body.as_array().unwrap().iter().map(|e| &e["id"]).collect();
    assert_eq!(ids, [&json!(5), &json!(6), &json!(7), &json!(11)]);
    let batch = json!([tool_call(8, "ship-a"), tool_call(9, "ship-b")]);
    assert_eq!(post(&gw, Some(&bob), &batch).await.status(), 200);
    assert_eq!(
        post(&gw, Some(&bob), &tool_call(10, "deploy"))
            .await
            .status(),
        200
    );

    assert_eq!(
        called(&up),
        ["deploy", "echo", "ship-a", "ship-a", "ship-b", "deploy"],
        "exactly the allowed calls arrived"
    );
    let metrics = gw
        .metrics_when(
            r#"drawbridge_rate_limited_total{key="subject",limit="deploy",route="rl"}"#,
            1.0,
        )
        .await;
    for (series, value) in [
        (
            r#"drawbridge_rate_limited_total{key="subject",limit="deploy",route="rl"}"#,
            Some(1.0),
        ),
        (
            r#"drawbridge_rate_limited_total{key="subject",limit="ship-*",route="rl"}"#,
            Some(1.0),
        ),
        (
            r#"drawbridge_rate_limited_total{key="subject",limit="echo",route="rl"}"#,
            None,
        ),
    ] {
        assert_eq!(sample(&metrics, series), value, "{series}\n{metrics}");
    }
}

#[tokio::test]
async fn behind_a_trusted_proxy_each_forwarded_client_has_its_own_bucket_on_a_public_route() {
    let up = Upstream::start().await;
    let routes = format!(
        "{}    rate_limit: {{ requests: 1, per: 1h, key: client }}\n",
        route("rl", "/rl/mcp", &up.url("/mcp"))
    );
    let gw = Gateway::start_with(&routes, "trusted_proxies: [127.0.0.1]\n").await;
    let ping = json!({"jsonrpc":"2.0","id":1,"method":"ping"}).to_string();
    let from = |address: &'static str| {
        client()
            .post(gw.url("/rl/mcp"))
            .header("x-forwarded-for", address)
            .body(ping.clone())
            .send()
    };
    assert_eq!(from("198.51.100.1").await.unwrap().status(), 200);
    assert_eq!(from("198.51.100.1").await.unwrap().status(), 429);
    // A forged entry left of the proxy's own does not make a new client.
    assert_eq!(
        from("203.0.113.5, 198.51.100.1").await.unwrap().status(),
        429
    );
    assert_eq!(from("198.51.100.2").await.unwrap().status(), 200);
    assert_eq!(up.seen().len(), 2);
    let metrics = gw
        .metrics_when(
            r#"drawbridge_rate_limited_total{key="client",limit="route",route="rl"}"#,
            2.0,
        )
        .await;
    assert!(!metrics.contains("198.51.100"), "an address in a label");
}

#[tokio::test]
async fn past_the_key_cap_new_subjects_share_one_bucket_and_known_ones_keep_theirs() {
    let idp = Idp::start().await;
    let up = Upstream::start().await;
    let routes = protected(
        &up,
        "    rate_limit: { requests: 1, per: 1h, key: subject, max_keys: 2 }\n",
    );
    let gw = Gateway::start_with(&routes, &issuers(&idp)).await;
    let ping = json!({"jsonrpc":"2.0","id":1,"method":"ping"});
    let status = |subject: &'static str| {
        let auth = token(&idp, subject);
        let gw = &gw;
        let ping = &ping;
        async move { post(gw, Some(&auth), ping).await.status().as_u16() }
    };
    assert_eq!(status("a").await, 200);
    assert_eq!(status("b").await, 200);
    // The map is full (both buckets are refilling): c takes the shared bucket, d finds
    // it used up; a keeps its own state and is not reset.
    assert_eq!(status("c").await, 200);
    assert_eq!(status("d").await, 429);
    assert_eq!(status("a").await, 429);
    assert_eq!(up.seen().len(), 3);
    let metrics = gw
        .metrics_when(
            r#"drawbridge_rate_limit_keys_full_total{limit="route",route="rl"}"#,
            2.0,
        )
        .await;
    assert_eq!(
        sample(
            &metrics,
            r#"drawbridge_rate_limit_keys_full_total{limit="route",route="rl"}"#
        ),
        Some(2.0),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_reload_applies_a_changed_limit_to_new_requests() {
    let up = Upstream::start().await;
    let limited = |requests: u32| {
        format!(
            "{}    rate_limit: {{ requests: {requests}, per: 1h, key: route }}\n",
            route("rl", "/rl/mcp", &up.url("/mcp"))
        )
    };
    let gw = Gateway::start(&limited(1)).await;
    let ping = json!({"jsonrpc":"2.0","id":1,"method":"ping"});
    assert_eq!(post(&gw, None, &ping).await.status(), 200);
    assert_eq!(post(&gw, None, &ping).await.status(), 429);
    gw.reload_with(&limited(3), "");
    let log = log_when(&gw, |log| log.contains("configuration reloaded")).await;
    assert!(log.contains("configuration reloaded"), "{log}");
    // The new limit, with full buckets: three more, then refused.
    for _ in 0..3 {
        assert_eq!(post(&gw, None, &ping).await.status(), 200);
    }
    assert_eq!(post(&gw, None, &ping).await.status(), 429);
    assert_eq!(up.seen().len(), 4);
}
