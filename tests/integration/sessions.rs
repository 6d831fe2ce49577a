//! Sealed session ids: bound to the caller's identity (not the token's bytes) and the
//! route; useless to anyone else; stateless across gateway processes sharing the keys;
//! rotatable.

use base64::Engine;
use serde_json::json;

use crate::harness::{
    assert_log_free_of, audit_events, client, log_when, sample, Gateway, LOG_ALL,
};
use crate::idp::{Alg, Idp};
use crate::upstream::Upstream;

const RESOURCE_A: &str = "https://mcp.example.com/a/mcp";
const RESOURCE_B: &str = "https://mcp.example.com/b/mcp";

fn key(seed: u8) -> String {
    let bytes: Vec<u8> = (0..32u8)
        .map(|i| i.wrapping_mul(7).wrapping_add(seed))
        .collect();
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn config(idp: &Idp, keys: &[(&str, u8)]) -> String {
    let mut out = format!(
        "issuers:\n  - name: corp\n    issuer: {}\nsessions:\n  keys:\n",
        idp.issuer
    );
    for (id, seed) in keys {
        out.push_str(&format!("    - {{ id: {id}, secret: '{}' }}\n", key(*seed)));
    }
    out
}

fn routes(up: &Upstream) -> String {
    let mut out = String::new();
    for (name, resource) in [("a", RESOURCE_A), ("b", RESOURCE_B)] {
        out.push_str(&format!(
            "  - name: {name}\n    match: {{ path: /{name}/mcp }}\n    public_url: {resource}\n    upstream: {{ url: '{}' }}\n    auth: {{ issuers: [corp] }}\n",
            up.url("/mcp")
        ));
    }
    out
}

fn token(idp: &Idp, resource: &str, sub: &str, client_id: &str) -> String {
    let mut claims = idp.claims(resource, "mcp:tools");
    claims["sub"] = sub.into();
    claims["client_id"] = client_id.into();
    format!("Bearer {}", idp.mint(Alg::ES256, &claims))
}

const PING: &str = r#"{"jsonrpc":"2.0","id":2,"method":"ping"}"#;

async fn initialize(gw: &Gateway, path: &str, auth: &str) -> String {
    let resp = client()
        .post(gw.url(path))
        .header("authorization", auth)
        .body(json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":{}}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let sealed = resp.headers()["mcp-session-id"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(sealed.starts_with("v1.k1."), "{sealed}");
    assert!(sealed.bytes().all(|b| (0x21..=0x7e).contains(&b)));
    sealed
}

async fn send_ping(gw: &Gateway, path: &str, auth: &str, session: &str) -> reqwest::Response {
    client()
        .post(gw.url(path))
        .header("authorization", auth)
        .header("mcp-session-id", session)
        .body(PING)
        .send()
        .await
        .unwrap()
}

async fn ping(gw: &Gateway, path: &str, auth: &str, session: &str) -> u16 {
    send_ping(gw, path, auth, session).await.status().as_u16()
}

#[tokio::test]
async fn a_session_id_is_useless_to_anyone_else() {
    let (idp, up) = (Idp::start().await, Upstream::start().await);
    let gw = Gateway::start_with(
        &routes(&up),
        &format!("{LOG_ALL}{}", config(&idp, &[("k1", 1)])),
    )
    .await;
    let alice = token(&idp, RESOURCE_A, "alice", "agent");
    let sealed = initialize(&gw, "/a/mcp", &alice).await;
    assert_eq!(ping(&gw, "/a/mcp", &alice, &sealed).await, 200);
    assert_eq!(up.seen()[1].headers["mcp-session-id"], "upstream-session-1");
    let before = up.seen().len();

    let bob = token(&idp, RESOURCE_A, "bob", "agent");
    let alice_other_client = token(&idp, RESOURCE_A, "alice", "another-agent");
    let alice_on_b = token(&idp, RESOURCE_B, "alice", "agent");
    let mut tampered = sealed.clone().into_bytes();
    let at = tampered.len() - 5;
    tampered[at] = if tampered[at] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).unwrap();
    for (case, path, auth, session) in [
        ("another user's token", "/a/mcp", &bob, sealed.as_str()),
        (
            "same user, another client",
            "/a/mcp",
            &alice_other_client,
            sealed.as_str(),
        ),
        ("another route", "/b/mcp", &alice_on_b, sealed.as_str()),
        ("tampered", "/a/mcp", &alice, tampered.as_str()),
        (
            "the upstream's raw id",
            "/a/mcp",
            &alice,
            "upstream-session-1",
        ),
    ] {
        assert_eq!(ping(&gw, path, auth, session).await, 404, "{case}");
    }
    let get = client()
        .get(gw.url("/a/mcp"))
        .header("authorization", &bob)
        .header("mcp-session-id", &sealed)
        .send()
        .await
        .unwrap();
    assert_eq!(get.status(), 404, "GET stream with a stolen id");
    let delete = client()
        .delete(gw.url("/a/mcp"))
        .header("authorization", &bob)
        .header("mcp-session-id", &sealed)
        .send()
        .await
        .unwrap();
    assert_eq!(delete.status(), 404, "DELETE with a stolen id");
    assert_eq!(up.seen().len(), before, "the upstream saw a hijack attempt");

    let m = gw.metrics().await;
    for (reason, n) in [("wrong_identity", 4.0), ("wrong_route", 1.0)] {
        let line = format!(
            r#"drawbridge_session_rejections_total{{reason="{reason}",route="{}"}}"#,
            if reason == "wrong_route" { "b" } else { "a" }
        );
        assert_eq!(sample(&m, &line), Some(n), "{line}\n{m}");
    }

    // A refreshed token for the same user and client keeps the session.
    let refreshed = token(&idp, RESOURCE_A, "alice", "agent");
    assert_ne!(refreshed, alice);
    assert_eq!(ping(&gw, "/a/mcp", &refreshed, &sealed).await, 200);

    let twice = client()
        .post(gw.url("/a/mcp"))
        .header("authorization", &alice)
        .header("mcp-session-id", &sealed)
        .header("mcp-session-id", &sealed)
        .body(PING)
        .send()
        .await
        .unwrap();
    assert_eq!(twice.status(), 400);

    // Each hijack attempt is audited with its reason and the presenting caller; no log
    // line carries a token or a session id, sealed or raw.
    let log = log_when(&gw, |log| audit_events(log, "session_rejected").len() >= 7).await;
    let rejected = audit_events(&log, "session_rejected");
    let wrong_identity: Vec<_> = rejected
        .iter()
        .filter(|e| e["reason"] == "wrong_identity")
        .collect();
    assert_eq!(wrong_identity.len(), 4, "{rejected:?}");
    assert!(
        wrong_identity
            .iter()
            .any(|e| e["subject"] == "bob" && e["route"] == "a"),
        "{rejected:?}"
    );
    assert!(
        rejected
            .iter()
            .any(|e| e["reason"] == "wrong_route" && e["route"] == "b"),
        "{rejected:?}"
    );
    let bare = |t: &str| t.trim_start_matches("Bearer ").to_string();
    assert_log_free_of(
        &log,
        &[
            &bare(&alice),
            &bare(&bob),
            &bare(&refreshed),
            &sealed,
            &tampered,
            "upstream-session-1",
        ],
    );
}

#[tokio::test]
async fn gateways_sharing_keys_serve_each_others_sessions_and_rotate() {
    let (idp, up) = (Idp::start().await, Upstream::start().await);
    let first = Gateway::start_with(&routes(&up), &config(&idp, &[("k1", 1)])).await;
    // Another process: a new key seals, the old one still opens.
    let second = Gateway::start_with(&routes(&up), &config(&idp, &[("k2", 2), ("k1", 1)])).await;
    // A third that never had k1.
    let stranger = Gateway::start_with(&routes(&up), &config(&idp, &[("k3", 3)])).await;
    let alice = token(&idp, RESOURCE_A, "alice", "agent");
    let sealed = initialize(&first, "/a/mcp", &alice).await;
    assert_eq!(
        ping(&second, "/a/mcp", &alice, &sealed).await,
        200,
        "continued through another process"
    );
    assert_eq!(up.seen()[1].headers["mcp-session-id"], "upstream-session-1");
    assert_eq!(
        ping(&stranger, "/a/mcp", &alice, &sealed).await,
        404,
        "unknown key"
    );
    let m = stranger.metrics().await;
    assert_eq!(
        sample(
            &m,
            r#"drawbridge_session_rejections_total{reason="unknown_key",route="a"}"#
        ),
        Some(1.0)
    );
    // What the second process seals, it seals with its first key.
    let resp = client()
        .post(second.url("/a/mcp"))
        .header("authorization", &alice)
        .body(json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":{}}).to_string())
        .send()
        .await
        .unwrap();
    assert!(resp.headers()["mcp-session-id"]
        .to_str()
        .unwrap()
        .starts_with("v1.k2."));
    // The key check values: the same secret shows the same check on both processes, the
    // sealing key is marked, and another key another check.
    let key_info = |m: &str| -> Vec<(String, String, String)> {
        m.lines()
            .filter_map(|l| l.strip_prefix("drawbridge_session_key_info{"))
            .map(|l| {
                let label = |name: &str| {
                    let at = l.find(&format!("{name}=\"")).unwrap() + name.len() + 2;
                    l[at..at + l[at..].find('"').unwrap()].to_string()
                };
                (label("key"), label("check"), label("seals"))
            })
            .collect()
    };
    let first_keys = key_info(&first.metrics().await);
    let mut second_keys = key_info(&second.metrics().await);
    second_keys.sort();
    assert_eq!(first_keys.len(), 1, "{first_keys:?}");
    let (k1, k1_check, k1_seals) = &first_keys[0];
    assert_eq!((k1.as_str(), k1_seals.as_str()), ("k1", "true"));
    assert_eq!(k1_check.len(), 8);
    assert_eq!(second_keys.len(), 2, "{second_keys:?}");
    assert_eq!(
        second_keys[0],
        ("k1".to_string(), k1_check.clone(), "false".to_string())
    );
    assert_eq!(second_keys[1].0, "k2");
    assert_eq!(second_keys[1].2, "true");
    assert_ne!(&second_keys[1].1, k1_check);
}

/// The `Mcp-Session-Id` the gateway answers a ping within `session` with.
async fn session_in_answer(gw: &Gateway, auth: &str, session: &str) -> String {
    let resp = send_ping(gw, "/a/mcp", auth, session).await;
    assert_eq!(resp.status(), 200);
    resp.headers()["mcp-session-id"]
        .to_str()
        .unwrap()
        .to_string()
}

#[tokio::test]
async fn a_young_sealed_id_comes_back_unchanged_and_a_new_key_reseals_it() {
    let (idp, up) = (Idp::start().await, Upstream::start().await);
    let first = Gateway::start_with(&routes(&up), &config(&idp, &[("k1", 1)])).await;
    let second = Gateway::start_with(&routes(&up), &config(&idp, &[("k2", 2), ("k1", 1)])).await;
    let alice = token(&idp, RESOURCE_A, "alice", "agent");
    let sealed = initialize(&first, "/a/mcp", &alice).await;
    // The upstream names the same session in every answer: nothing to seal anew.
    assert_eq!(session_in_answer(&first, &alice, &sealed).await, sealed);
    // Where another key seals, the session moves to it.
    let moved = session_in_answer(&second, &alice, &sealed).await;
    assert!(moved.starts_with("v1.k2."), "{moved}");
    assert_eq!(session_in_answer(&second, &alice, &moved).await, moved);
    assert_eq!(
        ping(&first, "/a/mcp", &alice, &moved).await,
        404,
        "k2 is unknown there"
    );
    for seen in &up.seen()[1..] {
        assert_eq!(seen.headers["mcp-session-id"], "upstream-session-1");
    }
}

#[tokio::test]
async fn a_session_older_than_max_age_is_not_found() {
    let (idp, up) = (Idp::start().await, Upstream::start().await);
    let extra = config(&idp, &[("k1", 1)]) + "  max_age: 2s\n";
    let gw = Gateway::start_with(&routes(&up), &extra).await;
    let alice = token(&idp, RESOURCE_A, "alice", "agent");
    let sealed = initialize(&gw, "/a/mcp", &alice).await;
    let sealed_at = std::time::Instant::now();
    assert_eq!(ping(&gw, "/a/mcp", &alice, &sealed).await, 200);
    // Poll (bounded) until the id has aged out; ages count in whole seconds.
    let mut status = 200;
    let mut forwarded = 2;
    while status == 200 && sealed_at.elapsed() < std::time::Duration::from_secs(15) {
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
        status = ping(&gw, "/a/mcp", &alice, &sealed).await;
        if status == 200 {
            forwarded += 1;
        }
    }
    assert_eq!(status, 404, "a sealed id outlived max_age");
    assert!(
        sealed_at.elapsed() >= std::time::Duration::from_secs(1),
        "refused before max_age: {:?}",
        sealed_at.elapsed()
    );
    assert_eq!(
        up.seen().len(),
        forwarded,
        "the expired session reached the upstream"
    );
    let expired = r#"drawbridge_session_rejections_total{reason="expired",route="a"}"#;
    let m = gw.metrics_when(expired, 1.0).await;
    assert_eq!(sample(&m, expired), Some(1.0), "{m}");
    // The same caller starts over with a new session.
    let fresh = initialize(&gw, "/a/mcp", &alice).await;
    assert_eq!(ping(&gw, "/a/mcp", &alice, &fresh).await, 200);
}
