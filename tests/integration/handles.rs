//! Multi round-trip state (MCP 2026-07-28 `requestState`) bound to the caller: the
//! client only ever sees a sealed state; the upstream gets its own bytes back only when
//! the caller it was issued to presents it on the same route. Another caller's state, a
//! tampered, malformed or duplicated one never reaches the upstream.

use serde_json::{json, Value};

use crate::harness::{assert_log_free_of, audit_events, client, log_when, sample, Gateway};
use crate::idp::{Alg, Idp};
use crate::upstream::{Upstream, ASK_STATE};

const RESOURCE_A: &str = "https://mcp.example.com/a/mcp";
const RESOURCE_B: &str = "https://mcp.example.com/b/mcp";

/// Route `a` has no policy, route `b` a default-deny one that allows `ask`: the sealing
/// runs on both (plain JSON answers and event streams).
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
      tools: {{ ask: [mcp:tools] }}
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

fn ask(state: Option<&str>) -> String {
    let mut params = json!({"name": "ask", "arguments": {},
        "_meta": {"io.modelcontextprotocol/protocolVersion": "2026-07-28"}});
    if let Some(state) = state {
        params["requestState"] = state.into();
        params["inputResponses"] = json!({"q": {"action": "accept", "content": {}}});
    }
    json!({"jsonrpc": "2.0", "id": 5, "method": "tools/call", "params": params}).to_string()
}

/// The request metadata headers a 2026-07-28 client sends with `body`: the protocol
/// version (on a route without a policy only answers to such requests are read for a
/// state: `mcp::handles::version_has_request_state`), `Mcp-Method` and `Mcp-Name`, which
/// must agree with the body (`mcp::request_meta`).
fn modern_headers(body: &str) -> reqwest::header::HeaderMap {
    let mut headers = reqwest::header::HeaderMap::new();
    let v: Value = serde_json::from_str(body).unwrap_or_default();
    let claim = &v["params"]["_meta"]["io.modelcontextprotocol/protocolVersion"];
    let Some(version) = claim.as_str() else {
        return headers; // an older client's request: no metadata headers
    };
    headers.insert("mcp-protocol-version", version.parse().unwrap());
    if let Some(method) = v["method"].as_str() {
        headers.insert("mcp-method", method.parse().unwrap());
    }
    if let Some(name) = v["params"]["name"].as_str() {
        headers.insert("mcp-name", name.parse().unwrap());
    }
    headers
}

async fn post(gw: &Gateway, path: &str, auth: &str, body: String) -> (u16, String) {
    let resp = client()
        .post(gw.url(path))
        .header("authorization", auth)
        .header("content-type", "application/json")
        .headers(modern_headers(&body))
        .body(body)
        .send()
        .await
        .unwrap();
    (resp.status().as_u16(), resp.text().await.unwrap())
}

/// The sealed state of an input-required answer; the upstream's own is not in it.
fn sealed_state(answer: &str) -> String {
    assert!(!answer.contains("upstream-state"), "{answer}");
    let v: Value = serde_json::from_str(answer).unwrap();
    assert_eq!(v["result"]["resultType"], "input_required", "{answer}");
    let sealed = v["result"]["requestState"].as_str().unwrap().to_string();
    assert!(sealed.starts_with("rs1.local."), "{sealed}");
    sealed
}

/// The `params.requestState` of the last body the upstream received, as raw JSON text.
fn last_state_seen(up: &Upstream) -> (Value, String) {
    let seen = up.seen();
    let last = seen.last().unwrap();
    let text = String::from_utf8(last.body.to_vec()).unwrap();
    (serde_json::from_str(&text).unwrap(), text)
}

#[tokio::test]
async fn a_state_round_trips_for_its_caller_and_the_upstream_gets_its_bytes() {
    let (idp, up, gw) = setup().await;
    let alice = token(&idp, RESOURCE_A, "alice");
    for path in ["/a/mcp", "/b/mcp"] {
        let auth = if path == "/a/mcp" {
            alice.clone()
        } else {
            token(&idp, RESOURCE_B, "alice")
        };
        let (status, answer) = post(&gw, path, &auth, ask(None)).await;
        assert_eq!(status, 200, "{answer}");
        let sealed = sealed_state(&answer);

        let retry = ask(Some(&sealed));
        let (status, answer) = post(&gw, path, &auth, retry.clone()).await;
        assert_eq!(status, 200, "{path}: {answer}");
        let v: Value = serde_json::from_str(&answer).unwrap();
        assert_eq!(v["result"]["receivedState"], ASK_STATE, "{answer}");

        // What the upstream received: its own literal, byte for byte, in a body of the
        // length the client sent, everything else as the client wrote it.
        let (value, text) = last_state_seen(&up);
        let literal = serde_json::to_string(ASK_STATE).unwrap();
        assert!(
            text.contains(&format!("\"requestState\":{literal}")),
            "{text}"
        );
        assert!(!text.contains(&sealed));
        assert_eq!(text.len(), retry.len());
        assert_eq!(value["params"]["inputResponses"]["q"]["action"], "accept");
        assert_eq!(value["id"], 5);
    }
}

#[tokio::test]
async fn a_state_in_an_event_stream_is_sealed_too() {
    let (idp, up, gw) = setup().await;
    for (path, resource) in [("/a/mcp", RESOURCE_A), ("/b/mcp", RESOURCE_B)] {
        let auth = token(&idp, resource, "alice");
        let resp = client()
            .post(gw.url(path))
            .header("authorization", &auth)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .header("x-test-mode", "sse")
            .headers(modern_headers(&ask(None)))
            .body(ask(None))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        up.release();
        let text = resp.text().await.unwrap();
        let data = text
            .lines()
            .filter_map(|l| l.strip_prefix("data: "))
            .find(|d| d.contains("requestState"))
            .unwrap_or_else(|| panic!("{text}"));
        let sealed = sealed_state(data);
        let (status, answer) = post(&gw, path, &auth, ask(Some(&sealed))).await;
        assert_eq!(status, 200, "{answer}");
        assert_eq!(last_state_seen(&up).0["params"]["requestState"], ASK_STATE);
    }
}

#[tokio::test]
async fn a_state_from_another_caller_or_route_never_reaches_the_upstream() {
    let (idp, up, gw) = setup().await;
    let alice = token(&idp, RESOURCE_A, "alice");
    let bob = token(&idp, RESOURCE_A, "bob");
    let bob_on_b = token(&idp, RESOURCE_B, "bob");
    let alice_on_b = token(&idp, RESOURCE_B, "alice");
    let (_, answer) = post(&gw, "/a/mcp", &alice, ask(None)).await;
    let sealed = sealed_state(&answer);

    let mut tampered = sealed.clone().into_bytes();
    let at = tampered.len() - 3;
    tampered[at] = if tampered[at] == b'x' { b'y' } else { b'x' };
    let tampered = String::from_utf8(tampered).unwrap();
    // A sealed session id of the same caller is not a state (another purpose).
    let init = client()
        .post(gw.url("/a/mcp"))
        .header("authorization", &alice)
        .header("content-type", "application/json")
        .body(r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{}}"#)
        .send()
        .await
        .unwrap();
    let session_id = init.headers()["mcp-session-id"]
        .to_str()
        .unwrap()
        .to_string();
    let before = up.seen().len();
    for (who, path, state, reason) in [
        (&bob, "/a/mcp", sealed.as_str(), "wrong_identity"),
        (&alice_on_b, "/b/mcp", sealed.as_str(), "wrong_route"),
        (&bob_on_b, "/b/mcp", sealed.as_str(), "wrong_route"),
        (&alice, "/a/mcp", tampered.as_str(), "tampered"),
        (&alice, "/a/mcp", ASK_STATE, "malformed"),
        (&alice, "/a/mcp", "rs1.other.AAAA", "unknown_key"),
        (&alice, "/a/mcp", session_id.as_str(), "malformed"),
    ] {
        let (status, answer) = post(&gw, path, who, ask(Some(state))).await;
        assert_eq!(status, 400, "{reason}: {answer}");
        let v: Value = serde_json::from_str(&answer).unwrap();
        assert_eq!(v["id"], 5, "{answer}");
        assert_eq!(v["error"]["code"], -32602, "{answer}");
        assert!(!answer.contains(state), "the refusal echoes the state");
    }
    assert_eq!(
        up.seen().len(),
        before,
        "a refused state reached the upstream"
    );

    let m = gw.metrics().await;
    for (route, reason, n) in [
        ("a", "wrong_identity", 1.0),
        ("b", "wrong_route", 2.0),
        ("a", "tampered", 1.0),
        ("a", "malformed", 2.0),
        ("a", "unknown_key", 1.0),
    ] {
        let line = format!(
            r#"drawbridge_handle_rejections_total{{handle="request_state",reason="{reason}",route="{route}"}}"#
        );
        assert_eq!(sample(&m, &line), Some(n), "{line}\n{m}");
    }
    let log = log_when(&gw, |log| audit_events(log, "handle_rejected").len() >= 7).await;
    let rejected = audit_events(&log, "handle_rejected");
    assert!(
        rejected.iter().any(|e| e["subject"] == "bob"
            && e["reason"] == "wrong_identity"
            && e["handle"] == "request_state"),
        "{rejected:?}"
    );
    let bare = |t: &str| t.trim_start_matches("Bearer ").to_string();
    assert_log_free_of(
        &log,
        &[&bare(&alice), &bare(&bob), &sealed, "upstream-state"],
    );

    // The owner still resumes with it afterwards.
    let (status, _) = post(&gw, "/a/mcp", &alice, ask(Some(&sealed))).await;
    assert_eq!(status, 200);
    assert_eq!(last_state_seen(&up).0["params"]["requestState"], ASK_STATE);
}

#[tokio::test]
async fn a_state_the_upstream_could_read_two_ways_is_refused_unsent() {
    let (idp, up, gw) = setup().await;
    let alice = token(&idp, RESOURCE_A, "alice");
    let (_, answer) = post(&gw, "/a/mcp", &alice, ask(None)).await;
    let sealed = sealed_state(&answer);
    let before = up.seen().len();
    let raw = serde_json::to_string(ASK_STATE).unwrap();
    let call = |params: &str| {
        format!(
            r#"{{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{{"name":"ask",{params}}}}}"#
        )
    };
    for body in [
        // One opened, the other forwarded: duplicates in any spelling.
        call(&format!(
            r#""requestState":"{sealed}","requestState":{raw}"#
        )),
        call(&format!(
            r#""requestState":{raw},"request\u0053tate":"{sealed}""#
        )),
        call(&format!(
            r#""requestState":"{sealed}","RequestState":{raw}"#
        )),
        call(&format!(
            r#""requestState":"{sealed}","requeststate":{raw}"#
        )),
        // Not a string; beside params; in a batch; on a notification.
        call(r#""requestState":{"v":1}"#),
        call(r#""requestState":null"#),
        format!(
            r#"{{"jsonrpc":"2.0","id":5,"method":"tools/call","requestState":"{sealed}","params":{{"name":"ask"}}}}"#
        ),
        format!("[{}]", call(&format!(r#""requestState":"{sealed}""#))),
        format!(
            r#"{{"jsonrpc":"2.0","method":"notifications/progress","params":{{"requestState":"{sealed}"}}}}"#
        ),
    ] {
        let (status, answer) = post(&gw, "/a/mcp", &alice, body.clone()).await;
        assert_eq!(status, 400, "{body}: {answer}");
    }
    assert_eq!(
        up.seen().len(),
        before,
        "a refused body reached the upstream"
    );
    // An escaped sealed state, and an escaped member name, are read as the client's
    // JSON says: the upstream gets its state.
    let escaped: String = sealed
        .chars()
        .map(|c| {
            if c == 's' {
                "\\u0073".to_string()
            } else {
                c.to_string()
            }
        })
        .collect();
    let body = call(&format!(r#""request\u0053tate":"{escaped}""#));
    let (status, answer) = post(&gw, "/a/mcp", &alice, body).await;
    assert_eq!(status, 200, "{answer}");
    let (value, text) = last_state_seen(&up);
    assert_eq!(value["params"]["requestState"], ASK_STATE);
    assert!(
        text.contains(&format!(r#""request\u0053tate":{raw}"#)),
        "{text}"
    );
}

#[tokio::test]
async fn a_large_or_chunked_retry_reaches_the_upstream_restored() {
    let (idp, up, gw) = setup().await;
    let alice = token(&idp, RESOURCE_A, "alice");
    let (_, answer) = post(&gw, "/a/mcp", &alice, ask(None)).await;
    let sealed = sealed_state(&answer);
    // Over Pingora's 64 KiB retry buffer, with Content-Length.
    let mut big: Value = serde_json::from_str(&ask(Some(&sealed))).unwrap();
    big["params"]["arguments"]["pad"] = "x".repeat(100 * 1024).into();
    let big = big.to_string();
    let (status, answer) = post(&gw, "/a/mcp", &alice, big.clone()).await;
    assert_eq!(status, 200, "{answer}");
    let (value, text) = last_state_seen(&up);
    assert_eq!(value["params"]["requestState"], ASK_STATE);
    assert_eq!(text.len(), big.len());
    // Chunked, without a Content-Length: the upstream gets the gateway's length.
    let retry = ask(Some(&sealed));
    let pieces: Vec<Result<bytes::Bytes, std::io::Error>> = retry
        .as_bytes()
        .chunks(50)
        .map(|c| Ok(bytes::Bytes::copy_from_slice(c)))
        .collect();
    let resp = client()
        .post(gw.url("/a/mcp"))
        .header("authorization", &alice)
        .header("content-type", "application/json")
        .headers(modern_headers(&retry))
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
            pieces,
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let seen = up.seen();
    let last = seen.last().unwrap();
    let text = String::from_utf8(last.body.to_vec()).unwrap();
    let value: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(value["params"]["requestState"], ASK_STATE);
    assert_eq!(
        last.headers["content-length"].to_str().unwrap(),
        retry.len().to_string()
    );
}

#[tokio::test]
async fn on_public_routes_a_state_is_bound_to_its_route() {
    let up = Upstream::start().await;
    let routes = format!(
        "{}{}",
        crate::harness::route("p", "/p/mcp", &up.url("/mcp")),
        crate::harness::route("q", "/q/mcp", &up.url("/mcp"))
    );
    let gw = Gateway::start(&routes).await;
    let anonymous = |path: &'static str, body: String| {
        let gw = &gw;
        async move {
            let resp = client()
                .post(gw.url(path))
                .header("content-type", "application/json")
                .headers(modern_headers(&body))
                .body(body)
                .send()
                .await
                .unwrap();
            (resp.status().as_u16(), resp.text().await.unwrap())
        }
    };
    let (status, answer) = anonymous("/p/mcp", ask(None)).await;
    assert_eq!(status, 200, "{answer}");
    let sealed = sealed_state(&answer);
    let before = up.seen().len();
    let (status, _) = anonymous("/q/mcp", ask(Some(&sealed))).await;
    assert_eq!(status, 400, "a state of route p used on route q");
    let (status, _) = anonymous("/p/mcp", ask(Some(ASK_STATE))).await;
    assert_eq!(status, 400, "the upstream's raw state");
    assert_eq!(up.seen().len(), before);
    let (status, answer) = anonymous("/p/mcp", ask(Some(&sealed))).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(last_state_seen(&up).0["params"]["requestState"], ASK_STATE);
}
