//! `drawbridge pin`: writes the lock file of a route's tool definitions (`policy.pins`)
//! from a saved `tools/list` answer, or from the route's upstream itself (initialize,
//! then `tools/list` page by page). The digests are `mcp::canonical`'s, the file format
//! `policy::pins`'s.
//!
//! The upstream is reached with the route's own upstream credential, obtained as the
//! gateway obtains it (`exchange::CredentialSource`): none, the `static` header, the
//! gateway's `client_credentials` token, or, for a route whose upstream gets a token
//! made from the caller's (`token_exchange`, `on_behalf_of`), one made from the caller
//! token given with `--token`. Without one, such a route is pinned from a saved answer
//! (`--from`).

use std::collections::BTreeMap;
use std::fmt;

use serde::Deserialize;
use serde_json::value::RawValue;

use crate::auth::{token_key, Authenticator};
use crate::config::{Config, Route, UpstreamAuth};
use crate::exchange::{CredentialCache, CredentialRequest, CredentialSource, ExchangeCounters};
use crate::mcp::canonical::tool_digest;
use crate::mcp::sse::EventReader;

/// Most `tools/list` pages read from an upstream (a bound on a cursor that never ends).
pub const MAX_PAGES: usize = 1_000;

/// Largest answer read from an upstream.
const MAX_ANSWER: usize = 16 << 20;

/// The protocol version the pinning client asks for.
const PROTOCOL_VERSION: &str = "2025-06-18";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PinError(pub String);

impl fmt::Display for PinError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn fail<T>(message: impl Into<String>) -> Result<T, PinError> {
    Err(PinError(message.into()))
}

/// One page of a `tools/list` result: digests by tool name, and the next cursor.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Page {
    pub digests: BTreeMap<String, String>,
    pub next_cursor: Option<String>,
}

#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(borrow)]
    result: Option<&'a RawValue>,
    #[serde(borrow)]
    error: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct ToolsResult<'a> {
    #[serde(borrow)]
    tools: Vec<&'a RawValue>,
    #[serde(rename = "nextCursor")]
    next_cursor: Option<String>,
}

#[derive(Deserialize)]
struct Named {
    name: String,
}

/// Reads a `tools/list` answer: a JSON-RPC answer, or its `result` alone.
pub fn read_answer(text: &str) -> Result<Page, PinError> {
    let Ok(envelope) = serde_json::from_str::<Envelope<'_>>(text) else {
        return fail("the answer is not a JSON object");
    };
    let result = match (envelope.result, envelope.error) {
        (_, Some(_)) => return fail("the answer is a JSON-RPC error, not a tools/list result"),
        (Some(result), None) => result.get(),
        (None, None) => text,
    };
    let tools: ToolsResult<'_> = serde_json::from_str(result)
        .map_err(|e| PinError(format!("not a tools/list result: {e}")))?;
    let mut page = Page {
        next_cursor: tools.next_cursor,
        ..Page::default()
    };
    for (i, item) in tools.tools.iter().enumerate() {
        let Ok(Named { name }) = serde_json::from_str::<Named>(item.get()) else {
            return fail(format!("tools[{i}] has no string `name`"));
        };
        let digest = tool_digest(item.get()).map_err(|e| {
            PinError(format!(
                "tool `{name}` has no canonical form ({e:?}): it could not be pinned"
            ))
        })?;
        if page.digests.insert(name.clone(), digest).is_some() {
            return fail(format!("tool `{name}` is listed twice"));
        }
    }
    Ok(page)
}

/// Adds a page to what earlier pages listed; a tool on two pages is an error.
pub fn merge(
    into: &mut BTreeMap<String, String>,
    page: BTreeMap<String, String>,
) -> Result<(), PinError> {
    for (name, digest) in page {
        if into.insert(name.clone(), digest).is_some() {
            return fail(format!("tool `{name}` is listed on two pages"));
        }
    }
    Ok(())
}

/// The JSON-RPC answer with `id` in an answer body: the body itself (JSON), or the data
/// of the event that answers it (an event stream).
fn answer_in(body: &str, event_stream: bool, id: u64) -> Result<String, PinError> {
    if !event_stream {
        return Ok(body.to_string());
    }
    let mut reader = EventReader::new(MAX_ANSWER);
    let events = reader.push(body.as_bytes(), true).map_err(|e| {
        PinError(format!(
            "the upstream's event stream is unreadable ({})",
            e.reason()
        ))
    })?;
    #[derive(Deserialize)]
    struct Id {
        id: Option<serde_json::Value>,
    }
    for data in events.iter().filter_map(|e| e.data()) {
        let answers = serde_json::from_str::<Id>(&data)
            .is_ok_and(|m| m.id.as_ref().and_then(serde_json::Value::as_u64) == Some(id));
        if answers {
            return Ok(data);
        }
    }
    fail("the upstream's event stream ended without the answer")
}

/// The route's upstream credential, obtained as the gateway obtains it for a request
/// that needs no scope of its own (a `tools/list`): `caller` is the caller's token a
/// `token_exchange` or `on_behalf_of` grant is made from.
async fn upstream_credential(
    config: &Config,
    route: &Route,
    caller: Option<&str>,
) -> Result<Option<(http::HeaderName, http::HeaderValue)>, PinError> {
    let grant = match &route.upstream_auth {
        UpstreamAuth::None => return Ok(None),
        UpstreamAuth::Static { header, value } => return Ok(Some((header.clone(), value.clone()))),
        UpstreamAuth::TokenExchange(_) | UpstreamAuth::OnBehalfOf(_) if caller.is_none() => {
            return fail(format!(
                "route `{}`'s upstream gets a token made from each caller's, and `drawbridge pin` has no caller: give a caller's access token for the route with --token, or pin a saved tools/list answer with --from FILE",
                route.name
            ))
        }
        UpstreamAuth::TokenExchange(g)
        | UpstreamAuth::OnBehalfOf(g)
        | UpstreamAuth::ClientCredentials(g) => g,
    };
    let caller =
        caller.filter(|_| !matches!(route.upstream_auth, UpstreamAuth::ClientCredentials(_)));
    let metrics =
        crate::telemetry::Metrics::new().map_err(|e| PinError(format!("metrics: {e}")))?;
    let auth = Authenticator::new(config, &metrics, None).map_err(PinError)?;
    // A grant without a `token_endpoint` reads it from its issuer's metadata.
    if let (None, Some(issuer)) = (
        &grant.token_endpoint,
        grant.issuer.and_then(|i| auth.issuers().get(i)),
    ) {
        issuer.refresh().await.map_err(|e| {
            PinError(format!(
                "issuer `{}`: cannot read its metadata: {e}",
                issuer.config.name
            ))
        })?;
    }
    let source = CredentialSource::build(route, auth.issuers()).map_err(PinError)?;
    let counter = || {
        prometheus::IntCounter::new("pin_exchange", "unused").map_err(|e| PinError(e.to_string()))
    };
    let counters = ExchangeCounters {
        hit: counter()?,
        miss: counter()?,
    };
    let request = CredentialRequest {
        subject_token: caller,
        subject_key: caller.map(token_key),
        subject_expires_at: None,
        permit_scopes: &[],
    };
    source
        .obtain(&request, &CredentialCache::new(1), &counters, &Uncounted)
        .await
        .map_err(|e| {
            PinError(format!(
                "cannot obtain the route's upstream credential: {e}"
            ))
        })
}

/// The exchange metrics of a command that serves no traffic.
struct Uncounted;

impl crate::exchange::ExchangeMetrics for Uncounted {
    fn token_exchange(&self, _result: &str, _seconds: f64) {}
}

/// Connects to the route's upstream, with the route's upstream credential (made from
/// `caller`'s token where the route exchanges it), and reads every page of its
/// `tools/list`.
pub async fn from_upstream(
    config: &Config,
    route: &Route,
    caller: Option<&str>,
) -> Result<(BTreeMap<String, String>, usize), PinError> {
    let credential = upstream_credential(config, route, caller).await?;
    let mut builder = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(
            route
                .upstream
                .read_timeout
                .min(std::time::Duration::from_secs(60)),
        )
        .connect_timeout(route.upstream.connect_timeout);
    if let Some(certs) = &route.upstream.ca_certs {
        builder = builder.tls_built_in_root_certs(false);
        for der in certs {
            let cert = reqwest::Certificate::from_der(der)
                .map_err(|e| PinError(format!("the route's ca_file: {e}")))?;
            builder = builder.add_root_certificate(cert);
        }
    }
    let client = builder
        .build()
        .map_err(|e| PinError(format!("cannot make an HTTP client: {e}")))?;
    let mut session = Upstream {
        client,
        url: route.upstream.url.clone(),
        credential,
        session_id: None,
    };
    let init = serde_json::json!({
        "jsonrpc": "2.0", "id": 0, "method": "initialize",
        "params": {
            "protocolVersion": PROTOCOL_VERSION,
            "capabilities": {},
            "clientInfo": {"name": "drawbridge-pin", "version": env!("CARGO_PKG_VERSION")}
        }
    });
    let answer = session.call(&init, Some(0)).await?;
    if serde_json::from_str::<Envelope<'_>>(&answer).is_ok_and(|e| e.error.is_some()) {
        return fail("the upstream refused `initialize`");
    }
    let initialized = serde_json::json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
    session.call(&initialized, None).await?;
    let mut digests = BTreeMap::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        if pages == MAX_PAGES {
            return fail(format!(
                "the upstream's tools/list has more than {MAX_PAGES} pages"
            ));
        }
        pages += 1;
        let id = pages as u64;
        let params = match &cursor {
            Some(c) => serde_json::json!({ "cursor": c }),
            None => serde_json::json!({}),
        };
        let request = serde_json::json!({"jsonrpc": "2.0", "id": id, "method": "tools/list", "params": params});
        let answer = session.call(&request, Some(id)).await?;
        let page = read_answer(&answer)?;
        merge(&mut digests, page.digests)?;
        match page.next_cursor {
            Some(next) if Some(&next) != cursor.as_ref() => cursor = Some(next),
            Some(_) => return fail("the upstream gave the same cursor twice"),
            None => break,
        }
    }
    session.close().await;
    Ok((digests, pages))
}

/// One client session with an upstream.
struct Upstream {
    client: reqwest::Client,
    url: url::Url,
    credential: Option<(http::HeaderName, http::HeaderValue)>,
    session_id: Option<String>,
}

impl Upstream {
    fn request(&self, method: reqwest::Method) -> reqwest::RequestBuilder {
        let mut req = self
            .client
            .request(method, self.url.clone())
            .header("accept", "application/json, text/event-stream")
            .header("mcp-protocol-version", PROTOCOL_VERSION);
        if let Some((name, value)) = &self.credential {
            req = req.header(name.as_str(), value.as_bytes());
        }
        if let Some(id) = &self.session_id {
            req = req.header("mcp-session-id", id);
        }
        req
    }

    /// Sends one message; for a request (`id`), returns its answer's JSON text.
    async fn call(
        &mut self,
        message: &serde_json::Value,
        id: Option<u64>,
    ) -> Result<String, PinError> {
        let resp = self
            .request(reqwest::Method::POST)
            .header("content-type", "application/json")
            .body(message.to_string())
            .send()
            .await
            .map_err(|e| PinError(format!("cannot reach the upstream: {}", e.without_url())))?;
        let status = resp.status();
        if !status.is_success() {
            return fail(format!("the upstream answered HTTP {status}"));
        }
        if let Some(sid) = resp
            .headers()
            .get("mcp-session-id")
            .and_then(|v| v.to_str().ok())
        {
            self.session_id = Some(sid.to_string());
        }
        let Some(id) = id else {
            return Ok(String::new());
        };
        let event_stream = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|t| {
                t.trim_start()
                    .to_ascii_lowercase()
                    .starts_with("text/event-stream")
            });
        let body = resp.bytes().await.map_err(|e| {
            PinError(format!(
                "cannot read the upstream's answer: {}",
                e.without_url()
            ))
        })?;
        if body.len() > MAX_ANSWER {
            return fail("the upstream's answer is too large");
        }
        let text = std::str::from_utf8(&body)
            .map_err(|_| PinError("the upstream's answer is not UTF-8".into()))?;
        answer_in(text, event_stream, id)
    }

    /// Ends the session (best effort: the lock file does not depend on it).
    async fn close(self) {
        if self.session_id.is_some() {
            let _ = self.request(reqwest::Method::DELETE).send().await;
        }
    }
}

/// `now` (seconds since the Unix epoch) as RFC 3339 UTC, for the lock file's header.
pub fn rfc3339(now: u64) -> String {
    let days = (now / 86_400) as i64;
    let secs = now % 86_400;
    // Days to a civil date (proleptic Gregorian), after H. Hinnant's algorithm.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_answer_or_its_result_gives_the_same_digests() {
        let result = r#"{"tools":[{"name":"a","description":"x"},{"name":"b"}],"nextCursor":"2"}"#;
        let answer = format!(r#"{{"jsonrpc":"2.0","id":1,"result":{result}}}"#);
        let page = read_answer(result).unwrap();
        assert_eq!(read_answer(&answer).unwrap(), page);
        assert_eq!(page.next_cursor.as_deref(), Some("2"));
        assert_eq!(page.digests.len(), 2);
        assert_eq!(
            page.digests["a"],
            tool_digest(r#"{"description":"x","name":"a"}"#).unwrap()
        );
    }

    #[test]
    fn unreadable_answers_are_refused() {
        for bad in [
            "[]",
            r#"{"jsonrpc":"2.0","id":1,"error":{"code":-1,"message":"no"}}"#,
            r#"{"tools":[{"description":"no name"}]}"#,
            r#"{"tools":[{"name":"a"},{"name":"a"}]}"#,
            r#"{"tools":[{"name":"a","x":1,"x":2}]}"#,
            r#"{"tools":{}}"#,
        ] {
            assert!(read_answer(bad).is_err(), "{bad}");
        }
        let mut all = BTreeMap::from([("a".to_string(), "d".to_string())]);
        assert!(merge(
            &mut all,
            BTreeMap::from([("a".to_string(), "e".to_string())])
        )
        .is_err());
    }

    #[test]
    fn an_event_stream_answer_is_the_event_with_the_id() {
        let body = "event: message\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/message\"}\n\ndata: {\"jsonrpc\":\"2.0\",\"id\":3,\"result\":{\"tools\":[]}}\n\n";
        assert_eq!(
            answer_in(body, true, 3).unwrap(),
            "{\"jsonrpc\":\"2.0\",\"id\":3,\"result\":{\"tools\":[]}}"
        );
        assert!(answer_in(body, true, 4).is_err());
    }

    #[test]
    fn times_are_written_in_rfc3339() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_796_474_096), "2026-12-05T12:34:56Z");
    }
}
