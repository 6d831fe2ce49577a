//! The authorization server failing mid-traffic and at start-up, floods during an
//! outage, and signing key rotation under load.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use super::*;

// ---- 1. the authorization server fails --------------------------------------------------

#[derive(Debug, Clone, Copy)]
enum IdpFault {
    Down,
    /// Every answer (metadata, JWKS, token endpoint) takes 10 s.
    Slow,
    /// Metadata and JWKS are not JSON; the token endpoint answers an HTML page.
    Garbage,
}

fn inject(idp: &Idp, fault: IdpFault, on: bool) {
    match fault {
        IdpFault::Down => idp.set_down(on),
        IdpFault::Slow => {
            let delay = if on {
                Duration::from_secs(10)
            } else {
                Duration::ZERO
            };
            idp.set_keys_delay(delay);
            idp.set_token_delay(delay);
        }
        IdpFault::Garbage => {
            idp.set_keys_garbage(on);
            idp.set_token_response(
                on.then(|| (200, "<html><body>502 Bad Gateway</body></html>".to_string())),
            );
        }
    }
}

/// Mid-traffic: what is cached keeps serving, what needs the authorization server gets
/// 503 with `Retry-After` within the gateway's own timeouts, the upstream gets nothing
/// of it, `/readyz` names the issuer; after the fault, new callers are served again.
async fn authorization_server_fault(fault: IdpFault) {
    let (idp, up) = (Idp::start().await, Upstream::start().await);
    let gw = Gateway::start_with(&exchange_route(&up), &issuers(&idp)).await;
    let http = unpooled();
    let alice = user(&idp, Alg::RS256, "alice");
    assert_eq!(call(&http, &gw, "/x/mcp", Some(&alice)).await.status, 200);
    let exchanges = idp.token_requests();

    inject(&idp, fault, true);
    for _ in 0..5 {
        let seen = call(&http, &gw, "/x/mcp", Some(&alice)).await;
        assert_eq!(
            seen.status, 200,
            "{fault:?}: cached key and exchanged token"
        );
    }
    // A new caller with a known key needs an exchange.
    let bob = user(&idp, Alg::ES256, "bob");
    let seen = call(&http, &gw, "/x/mcp", Some(&bob)).await;
    eprintln!(
        "figures: {fault:?}: cache-miss exchange {} in {:?}",
        seen.status, seen.took
    );
    assert_try_again(&seen, &format!("{fault:?}: cache-miss exchange"));
    // A token signed with a key the gateway has not seen needs the JWKS.
    idp.rotate_rsa(true);
    let carol = user(&idp, Alg::RS256, "carol");
    let seen = call(&http, &gw, "/x/mcp", Some(&carol)).await;
    eprintln!(
        "figures: {fault:?}: unknown kid {} in {:?}",
        seen.status, seen.took
    );
    assert_try_again(&seen, &format!("{fault:?}: unknown kid"));
    assert_eq!(
        up.seen().len(),
        6,
        "{fault:?}: only alice's requests got through"
    );
    let (status, body) = readyz(&gw).await;
    assert_eq!(status, 200, "{fault:?}: the keys in use are still good");
    assert!(
        body.contains("issuer unreachable") && body.contains(&idp.issuer),
        "{fault:?}: /readyz does not name the issuer: {body:?}"
    );
    assert!(!body.contains(EXCHANGE_CLIENT_SECRET));

    eprintln!("figures: {fault:?}: readyz {status} {body:?}");
    inject(&idp, fault, false);
    // Failures of the token endpoint are held for the Retry-After (5 s), then asked again.
    let served = within(Duration::from_secs(15), || async {
        call(&http, &gw, "/x/mcp", Some(&bob)).await.status == 200
    })
    .await;
    assert!(served, "{fault:?}: bob is not served after the fault ended");
    assert_eq!(
        idp.token_requests(),
        exchanges + 2,
        "{fault:?}: bob's exchange was tried once in the fault, once after"
    );
    let m = gw.metrics().await;
    assert!(
        !m.lines()
            .any(|l| l.starts_with("drawbridge_requests_total") && l.contains("status=\"500\"")),
        "{fault:?}: a 500"
    );
}

#[tokio::test]
async fn authorization_server_down_mid_traffic() {
    authorization_server_fault(IdpFault::Down).await;
}

#[tokio::test]
async fn authorization_server_answering_in_10_s() {
    authorization_server_fault(IdpFault::Slow).await;
}

#[tokio::test]
async fn authorization_server_answering_garbage() {
    authorization_server_fault(IdpFault::Garbage).await;
}

#[tokio::test]
async fn an_issuer_answering_garbage_at_start_is_named_by_readyz_until_it_recovers() {
    let (idp, up) = (Idp::start().await, Upstream::start().await);
    idp.set_keys_garbage(true);
    let mut gw = Gateway::start_unready(&protected_route(&up), &issuers(&idp)).await;
    let named = within(Duration::from_secs(10), || async {
        let (status, body) = readyz(&gw).await;
        status == 503 && body.contains("issuer unreachable") && body.contains(&idp.issuer)
    })
    .await;
    assert!(named, "{:?}", readyz(&gw).await);
    let token = user(&idp, Alg::ES256, "alice");
    assert_try_again(
        &call(&unpooled(), &gw, "/x/mcp", Some(&token)).await,
        "no keys yet",
    );
    assert!(up.seen().is_empty(), "nothing reached the upstream");
    idp.set_keys_garbage(false);
    gw.wait_ready().await;
    let (_, body) = readyz(&gw).await;
    assert!(!body.contains("unreachable"), "{body:?}");
    assert_eq!(
        call(&unpooled(), &gw, "/x/mcp", Some(&token)).await.status,
        200
    );
}

#[tokio::test]
async fn during_an_outage_200_concurrent_requests_cost_at_most_one_call_per_key() {
    let (idp, up) = (Idp::start().await, Upstream::start().await);
    let gw = Gateway::start_with(&exchange_route(&up), &issuers(&idp)).await;
    let http = unpooled();
    let alice = user(&idp, Alg::RS256, "alice");
    assert_eq!(call(&http, &gw, "/x/mcp", Some(&alice)).await.status, 200);
    idp.set_down(true);
    let (jwks, discovery, exchanges) = (
        idp.jwks_fetches(),
        idp.discovery_fetches(),
        idp.token_requests(),
    );

    // 200 different tokens, all naming one key the gateway does not know.
    let unknown_kid: Vec<String> = (0..200)
        .map(|i| {
            let mut claims = idp.claims(RESOURCE, "mcp:tools");
            claims["sub"] = format!("user-{i}").into();
            idp.mint_with_header(Alg::ES256, &json!({"kid": "ec-2"}), &claims)
        })
        .collect();
    let started = Instant::now();
    let seen = futures_util::future::join_all(
        unknown_kid
            .iter()
            .map(|t| call(&http, &gw, "/x/mcp", Some(t))),
    )
    .await;
    let burst = started.elapsed();
    for s in &seen {
        assert_try_again(s, "unknown kid during the outage");
    }
    // One fetch per refetch interval (10 s) at most: one, unless the machine is so busy
    // that the burst itself lasted longer.
    assert!(
        idp.jwks_fetches() - jwks <= calls_allowed(burst, Duration::from_secs(10)),
        "{} JWKS fetches for one unknown key in {burst:?}",
        idp.jwks_fetches() - jwks
    );
    assert_eq!(idp.discovery_fetches(), discovery);

    // 200 requests of one new caller: one exchange key.
    let bob = user(&idp, Alg::ES256, "bob");
    let started = Instant::now();
    let seen =
        futures_util::future::join_all((0..200).map(|_| call(&http, &gw, "/x/mcp", Some(&bob))))
            .await;
    let burst = started.elapsed();
    for s in &seen {
        assert_try_again(s, "cache-miss exchange during the outage");
    }
    // One call per hold (5 s, the Retry-After) at most.
    assert!(
        idp.token_requests() - exchanges <= calls_allowed(burst, Duration::from_secs(5)),
        "{} token requests for one key in {burst:?}",
        idp.token_requests() - exchanges
    );
    assert_eq!(up.seen().len(), 1, "only alice's first request got through");
    eprintln!(
        "figures: outage: 200 unknown-kid requests -> {} JWKS fetch(es); 200 cache-miss requests in {burst:?} -> {} token request(s); slowest answer {:?}",
        idp.jwks_fetches() - jwks,
        idp.token_requests() - exchanges,
        seen.iter().map(|s| s.took).max().unwrap_or_default()
    );
}

/// How many calls to the authorization server one key may cost in `burst` when the
/// gateway waits `interval` between two: one, plus one per whole interval the burst
/// lasted.
fn calls_allowed(burst: Duration, interval: Duration) -> usize {
    1 + (burst.as_millis() / interval.as_millis()) as usize
}

// ---- 2. signing key rotation under load -------------------------------------------------

#[tokio::test]
async fn signing_key_rotation_under_load_fails_no_valid_token() {
    let (idp, up) = (Arc::new(Idp::start().await), Upstream::start().await);
    let gw = Arc::new(Gateway::start_with(&protected_route(&up), &issuers(&idp)).await);
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let mut workers = Vec::new();
    for w in 0..4 {
        let (idp, gw, stop, ok, failed) = (
            idp.clone(),
            gw.clone(),
            stop.clone(),
            ok.clone(),
            failed.clone(),
        );
        workers.push(tokio::spawn(async move {
            let http = reqwest::Client::new();
            for i in 0..100_000 {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                // A fresh token each time: every request is a signature check.
                let token = user(&idp, Alg::RS256, &format!("w{w}-{i}"));
                match call(&http, &gw, "/x/mcp", Some(&token)).await.status {
                    200 => ok.fetch_add(1, Ordering::SeqCst),
                    _ => failed.fetch_add(1, Ordering::SeqCst),
                };
            }
        }));
    }
    // Some load on the old key first (counted, not timed: the machine may be busy).
    let warmed = within(Duration::from_secs(30), || async {
        ok.load(Ordering::SeqCst) >= 20
    })
    .await;
    let before = ok.load(Ordering::SeqCst);
    // The IdP publishes a new key and signs with it from now on.
    let new_kid = idp.rotate_rsa(true);
    let first = user(&idp, Alg::RS256, "first-with-new-kid");
    let first_status = call(&reqwest::Client::new(), &gw, "/x/mcp", Some(&first))
        .await
        .status;
    let after = within(Duration::from_secs(30), || async {
        ok.load(Ordering::SeqCst) >= before + 20
    })
    .await;
    stop.store(true, Ordering::SeqCst);
    for w in workers {
        w.await.unwrap();
    }
    let (ok, failed) = (ok.load(Ordering::SeqCst), failed.load(Ordering::SeqCst));
    assert_eq!(first_status, 200, "the first token with kid {new_kid}");
    assert_eq!(failed, 0, "valid tokens refused during the rotation");
    assert!(
        warmed && after,
        "the load ran on both keys: {before} then {ok}"
    );
    assert_eq!(up.seen().len(), ok + 1);
    eprintln!("figures: rotation: {before} ok before, {ok} ok in all, {failed} failed, first new-kid request {first_status}");
}
