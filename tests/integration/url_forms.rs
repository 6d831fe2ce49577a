//! What the URL says: request targets the upstream could read differently from the
//! gateway (dot segments, encoded separators, tokens and session ids in disguised query
//! parameters) never reach it; what passes reaches it in the form the gateway wrote.
//! Requests go over a raw socket: an HTTP client library would normalise the very
//! targets under test.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::harness::{route, Gateway};
use crate::idp::{Alg, Idp};
use crate::upstream::Upstream;

const PING: &str = r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#;

/// Sends one request with exactly `target` in its request line; returns the status and
/// the whole answer, head and body (the connection is closed by the request).
async fn raw(gw: &Gateway, method: &str, target: &str, extra_headers: &str) -> (u16, String) {
    raw_with_body(gw, method, target, extra_headers, PING).await
}

async fn raw_with_body(
    gw: &Gateway,
    method: &str,
    target: &str,
    extra_headers: &str,
    body: &str,
) -> (u16, String) {
    let base = gw.url("");
    let addr = base
        .strip_prefix("http://")
        .and_then(|a| a.split('/').next())
        .expect("gateway address");
    let mut stream = tokio::net::TcpStream::connect(addr)
        .await
        .expect("connect to the gateway");
    // A fixed request id: a generated one is hex, and could hold a test's sentinel
    // (`abc`) that must not appear in the answer.
    let request = format!(
        "{method} {target} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nAccept: application/json, text/event-stream\r\nContent-Length: {}\r\nConnection: close\r\nX-Request-Id: url-forms\r\n{extra_headers}\r\n{body}",
        body.len()
    );
    stream
        .write_all(request.as_bytes())
        .await
        .expect("send the request");
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer))
        .await
        .expect("the gateway answers and closes within 10 s")
        .expect("read the answer");
    let answer = String::from_utf8_lossy(&answer).into_owned();
    let status = answer
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {answer:?}"));
    (status, answer)
}

fn seen_targets(up: &Upstream) -> Vec<String> {
    up.seen().into_iter().map(|s| s.path_and_query).collect()
}

#[tokio::test]
async fn ambiguous_paths_never_reach_the_upstream() {
    let up = Upstream::start().await;
    let routes = format!(
        "{}{}",
        route("mcp", "/mcp", &up.url("/mcp")),
        route("root", "/", &up.url("/root"))
    );
    let gw = Gateway::start(&routes).await;
    // Absolute-form naming the gateway itself (the `Host` header agrees).
    let absolute = gw.url("/mcp/x");
    for target in [
        "/mcp/../other",
        "/mcp/..",
        "/mcp/.",
        "/mcp/%2e%2e/other",
        "/mcp/%2E%2E",
        "/mcp/.%2E/other",
        "/mcp/%2e",
        "/mcp%2fother",
        "/mcp/%2F..%2Fother",
        "/mcp/%5c..%5cother",
        "/mcp/%00",
        "/mcp/x%0d%0aX-Injected:%201",
        "/mcp//other",
        "//127.0.0.1/mcp",
        "/mcp/..;/other",
        "/mcp/%252e%252e/other",
        "/mcp/%zz",
        "/mcp/%c0%ae%c0%ae/other",
        &absolute,
    ] {
        let (status, body) = raw(&gw, "POST", target, "").await;
        assert_eq!(status, 400, "{target}: {body}");
        assert!(body.contains("bad_path"), "{target}: {body}");
    }
    // Asterisk-form, a raw backslash, absolute-form naming another host: refused, by the
    // gateway or by the HTTP layer below it.
    for (method, target) in [
        ("OPTIONS", "*"),
        ("POST", "/mcp\\..\\other"),
        ("POST", "http://127.0.0.1/mcp/x"),
    ] {
        let (status, body) = raw(&gw, method, target, "").await;
        assert_eq!(status, 400, "{target}: {body}");
    }
    assert!(
        up.seen().is_empty(),
        "the upstream received {:?}",
        seen_targets(&up)
    );
    assert_eq!(up.connections(), 0, "a refused request opened a connection");

    // What passes reaches the upstream normalised: `%6D` is `m`, routed and forwarded as
    // the upstream would read it, and so is a percent-encoded unreserved byte elsewhere.
    let (status, _) = raw(&gw, "POST", "/%6Dcp/a%2Db%7e", "").await;
    assert_eq!(status, 200);
    let (status, _) = raw(&gw, "POST", "/mcp/", "").await;
    assert_eq!(status, 200);
    assert_eq!(seen_targets(&up), ["/mcp/a-b~", "/mcp/"]);
}

#[tokio::test]
async fn tokens_in_any_spelling_of_the_query_never_reach_the_upstream() {
    let idp = Idp::start().await;
    let up = Upstream::start().await;
    let resource = "https://mcp.example.com/secure/mcp";
    let routes = format!(
        "  - name: secure\n    match: {{ path: /secure/mcp }}\n    public_url: {resource}\n    upstream: {{ url: '{}' }}\n    auth: {{ issuers: [corp], required_scopes: [mcp:tools] }}\n{}",
        up.url("/mcp"),
        route("open", "/open/mcp", &up.url("/open")),
    );
    let extra = format!("issuers:\n  - name: corp\n    issuer: {}\n", idp.issuer);
    let gw = Gateway::start_with(&routes, &extra).await;
    let token = idp.mint(Alg::RS256, &idp.claims(resource, "mcp:tools"));
    let auth = format!("Authorization: Bearer {token}\r\n");
    // The valid header alone is served, and a parameter merely containing the name too.
    let (status, body) = raw(&gw, "POST", "/secure/mcp?my_access_token=1", &auth).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(seen_targets(&up), ["/mcp?my_access_token=1"]);
    for query in [
        "access_token=stolen",
        "ACCESS_TOKEN=stolen",
        "Access_Token=stolen",
        "access%5Ftoken=stolen",
        "access%5ftoken=stolen",
        "%61ccess_token=stolen",
        "x=1;access_token=stolen",
        "x=1&access_token%3D=stolen",
        "access_token%3Dstolen",
        "access_token[]=stolen",
        "access_token.x=stolen",
        "+access_token=stolen",
        "access_token",
    ] {
        // A protected route answers as to any misplaced token (401 `invalid_request`,
        // with the challenge); a public route takes no token at all (400).
        for (path, headers, status, error) in [
            ("/secure/mcp", auth.as_str(), 401, "invalid_request"),
            ("/open/mcp", "", 400, "token_in_query"),
        ] {
            let target = format!("{path}?{query}");
            let (got, body) = raw(&gw, "POST", &target, headers).await;
            assert_eq!(got, status, "{target}: {body}");
            assert!(body.contains(error), "{target}: {body}");
            assert!(!body.contains("stolen"), "{target}: {body}");
            assert_eq!(
                body.to_ascii_lowercase()
                    .contains("www-authenticate: bearer"),
                status == 401,
                "{target}: {body}"
            );
        }
    }
    // A request line the HTTP parser itself refuses (a raw `"` in the query), with the
    // valid header: 400, and Pingora's error (which quotes the request) is not logged.
    let (status, _) = raw(&gw, "POST", "/secure/mcp?access_token=stolen\"", &auth).await;
    assert_eq!(status, 400);
    assert_eq!(seen_targets(&up), ["/mcp?my_access_token=1"]);
    // No log line carries the query's secret.
    let log = gw.log();
    assert!(!log.contains("stolen"), "a token reached the log:\n{log}");
    assert!(!log.contains(&token), "the bearer token reached the log");
}

/// Opens the legacy stream and returns the endpoint the gateway announced (with the
/// sealed session id) and the stream, which must stay open while the session is used.
async fn legacy_endpoint(gw: &Gateway) -> (String, reqwest::Response) {
    let resp = crate::harness::client()
        .get(gw.url("/tools/legacy/sse"))
        .header("accept", "text/event-stream")
        .send()
        .await
        .expect("open the legacy stream");
    assert_eq!(resp.status(), 200);
    let mut stream = resp;
    let mut seen = String::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !seen.contains("\n\n") {
        let chunk = tokio::time::timeout_at(deadline, stream.chunk())
            .await
            .expect("the endpoint event within 10 s")
            .expect("read the stream")
            .expect("the stream ended early");
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
    let endpoint = seen
        .split('\n')
        .find_map(|l| l.strip_prefix("data: "))
        .unwrap_or_else(|| panic!("{seen:?}"))
        .trim()
        .to_string();
    assert!(
        endpoint.starts_with("/tools/legacy/messages?sessionId=v1."),
        "{endpoint}"
    );
    (endpoint, stream)
}

#[tokio::test]
async fn legacy_session_ids_in_disguise_never_reach_the_upstream() {
    let up = Upstream::start().await;
    let gw = Gateway::start(&route("legacy", "/tools/legacy", &up.url("/"))).await;
    let (endpoint, stream) = legacy_endpoint(&gw).await;
    let sealed = endpoint
        .split_once("sessionId=")
        .map(|(_, s)| s.to_string())
        .expect("sealed id");
    // The upstream's raw id is `abc` (see upstream.rs).
    for query in [
        "session%5Fid=abc".to_string(),
        "session%5fid=abc".into(),
        "session%49d=abc".into(),
        "%73essionId=abc".into(),
        "sessionid=abc".into(),
        "SESSION_ID=abc".into(),
        "sessionId[]=abc".into(),
        "sessionId[0]=abc".into(),
        "sessionId.x=abc".into(),
        "sessionId%3D=abc".into(),
        "sessionId%00=abc".into(),
        format!("sessionId={sealed}&sessionId=abc"),
        format!("sessionId={sealed};sessionId=abc"),
        format!("sessionId={sealed}&session_id=abc"),
        format!("sessionId={sealed}&session%5Fid=abc"),
        format!("sessionId={sealed}&sessionId[]=abc"),
        format!("sessionId={sealed}&sessionId"),
    ] {
        let target = format!("/tools/legacy/messages?{query}");
        let (status, body) = raw(&gw, "POST", &target, "").await;
        assert_eq!(status, 400, "{target}: {body}");
        assert!(body.contains("bad_query"), "{target}: {body}");
        assert!(!body.contains("abc"), "{target}: {body}");
    }
    // The plain spelling is opened, and the upstream gets the query the gateway wrote:
    // its own id, every other parameter re-encoded, `;` turned into `&`.
    let target = format!("{endpoint};x=a+b%2c&y");
    let (status, body) = raw(&gw, "POST", &target, "").await;
    assert_eq!(status, 202, "{body}");
    // Also when the request is handed to a subrequest (list answers to filter).
    let list = r#"{"jsonrpc":"2.0","id":2,"method":"tools/list"}"#;
    let (status, body) = raw_with_body(&gw, "POST", &format!("{endpoint};z"), "", list).await;
    assert_eq!(status, 202, "{body}");
    drop(stream);
    assert_eq!(
        seen_targets(&up),
        [
            "/sse",
            "/messages?sessionId=abc&x=a%20b%2C&y",
            "/messages?sessionId=abc&z"
        ]
    );
}

#[tokio::test]
async fn a_bare_raw_session_id_is_not_found_and_never_forwarded() {
    let up = Upstream::start().await;
    let gw = Gateway::start(&route("legacy", "/tools/legacy", &up.url("/"))).await;
    for query in ["sessionId=abc", "session_id=abc", "sessionId="] {
        let target = format!("/tools/legacy/messages?{query}");
        let (status, body) = raw(&gw, "POST", &target, "").await;
        assert_eq!(status, 404, "{target}: {body}");
    }
    assert!(up.seen().is_empty(), "{:?}", seen_targets(&up));
}
