//! Fault injection (issue 17): the authorization server and the upstream failing on cue,
//! signing keys rotating, reloads and shutdowns, all under traffic. Each test asserts
//! what the client observed (status, `Retry-After`, how long it waited) and what the
//! peer received (the upstream's own record, the authorization server's counters, the
//! gateway's open file descriptors). docs/RELIABILITY.md lists the figures.
//!
//! `authorization_server`: outages, slowness and garbage, floods during an outage, key
//! rotation; `upstream`: upstreams that refuse, stall, reset, truncate or answer
//! garbage; `lifecycle`: reloads, SIGTERM behind a load balancer, the exit.

mod authorization_server;
mod lifecycle;
mod upstream;

use std::time::{Duration, Instant};

use crate::harness::Gateway;
use crate::idp::{Alg, Idp, EXCHANGE_CLIENT_ID, EXCHANGE_CLIENT_SECRET};
use crate::upstream::Upstream;

const RESOURCE: &str = "https://mcp.example.com/x/mcp";
const ECHO: &str = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo"}}"#;
/// A generous upper bound for "the gateway answered instead of hanging": its own
/// timeouts here are 2 s (token endpoint, upstream read) and 5 s (issuer fetches), the
/// faults last 10 s or for ever.
const ANSWERED_WITHIN: Duration = Duration::from_secs(9);

// ---- helpers ------------------------------------------------------------------------------

fn issuers(idp: &Idp) -> String {
    format!("issuers:\n  - name: corp\n    issuer: {}\n", idp.issuer)
}

/// A protected route whose upstream gets an exchanged token (token endpoint timeout 2 s).
fn exchange_route(up: &Upstream) -> String {
    format!(
        "  - name: x\n    match: {{ path: /x/mcp }}\n    public_url: {RESOURCE}\n    upstream: {{ url: '{}' }}\n    auth: {{ issuers: [corp], required_scopes: [mcp:tools] }}\n    upstream_auth: {{ token_exchange: {{ issuer: corp, client_id: {EXCHANGE_CLIENT_ID}, client_secret: {EXCHANGE_CLIENT_SECRET}, audience: upstream-aud, scopes: [tools:echo], timeout: 2s }} }}\n",
        up.url("/mcp")
    )
}

/// A protected route without an upstream credential.
fn protected_route(up: &Upstream) -> String {
    format!(
        "  - name: x\n    match: {{ path: /x/mcp }}\n    public_url: {RESOURCE}\n    upstream: {{ url: '{}' }}\n    auth: {{ issuers: [corp], required_scopes: [mcp:tools] }}\n",
        up.url("/mcp")
    )
}

fn user(idp: &Idp, alg: Alg, sub: &str) -> String {
    let mut claims = idp.claims(RESOURCE, "mcp:tools tools:echo");
    claims["sub"] = sub.into();
    idp.mint(alg, &claims)
}

/// A client that opens a new connection per request, so the gateway's descriptors and
/// a closing listener are not hidden by a pooled connection.
fn unpooled() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .expect("HTTP client")
}

/// What a client saw: status, `Retry-After`, how long the answer took.
struct Seen {
    status: u16,
    retry_after: Option<String>,
    took: Duration,
}

async fn call(http: &reqwest::Client, gw: &Gateway, path: &str, token: Option<&str>) -> Seen {
    let started = Instant::now();
    let mut req = http
        .post(gw.url(path))
        .header("content-type", "application/json")
        .body(ECHO);
    if let Some(token) = token {
        req = req.header("authorization", format!("Bearer {token}"));
    }
    match req.send().await {
        Ok(resp) => {
            let retry_after = resp
                .headers()
                .get("retry-after")
                .map(|v| v.to_str().unwrap_or_default().to_string());
            let status = resp.status().as_u16();
            // The whole answer, so that `took` covers it.
            let _ = resp.bytes().await;
            Seen {
                status,
                retry_after,
                took: started.elapsed(),
            }
        }
        Err(_) => Seen {
            status: 0,
            retry_after: None,
            took: started.elapsed(),
        },
    }
}

/// Asserts the refusal of something that cannot be served during an outage.
fn assert_try_again(seen: &Seen, what: &str) {
    assert_eq!(seen.status, 503, "{what}");
    assert_eq!(seen.retry_after.as_deref(), Some("5"), "{what}");
    assert!(
        seen.took < ANSWERED_WITHIN,
        "{what}: answered after {:?}",
        seen.took
    );
}

async fn readyz(gw: &Gateway) -> (u16, String) {
    let resp = reqwest::Client::new()
        .get(gw.admin_url("/readyz"))
        .timeout(Duration::from_secs(2))
        .send()
        .await
        .expect("readyz");
    let status = resp.status().as_u16();
    (status, resp.text().await.unwrap_or_default())
}

/// Polls `check` every 50 ms until it holds or `within` has passed; true if it held.
async fn within<F, Fut>(within: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    loop {
        if check().await {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
