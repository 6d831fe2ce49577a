//! The Prometheus registry and every metric family of docs/ARCHITECTURE.md that the gateway records.
//! Names and labels are the contract for dashboards and alerts; label values are bounded
//! (route names from the config, fixed reason and kind words, the MCP methods of the
//! table in `mcp::methods`, tool names from the config or `other`).

use std::sync::{Arc, OnceLock};

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

use crate::auth::AuthMetrics;
use crate::exchange::ExchangeMetrics;
use crate::mcp::methods;

/// Request-duration buckets, in seconds: sub-millisecond proxy hops up to long tool calls.
const DURATION_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0, 300.0,
];

/// Route label for requests that matched no route.
pub const NO_ROUTE: &str = "none";

/// Label of the operation of a client answering a server request (sampling, elicitation).
const RESPONSE: &str = "response";
/// Label of every method the table of MCP methods does not name.
const OTHER: &str = "other";

/// HTTP methods and statuses whose `drawbridge_requests_total` counters a route keeps
/// resolved (others are looked up per request).
const HTTP_METHODS: &[&str] = &["GET", "POST", "DELETE"];
const COMMON_STATUSES: &[u16] = &[200, 202, 204, 400, 401, 403, 404, 413, 415, 502, 503, 504];
/// Decisions of `drawbridge_mcp_operations_total`.
const DECISIONS: &[&str] = &["allow", "deny"];

/// Counters of one family resolved on first use and kept, one slot per label
/// combination: `with_label_values` hashes the labels and takes a lock on every call.
/// Series still appear only once counted.
#[derive(Clone)]
struct Resolved(Arc<[OnceLock<IntCounter>]>);

impl Resolved {
    fn new(slots: usize) -> Resolved {
        Resolved((0..slots).map(|_| OnceLock::new()).collect())
    }

    /// Increments the counter in `slot` (resolved by `resolve` the first time), or, for a
    /// combination without a slot, the one `resolve` gives.
    fn inc(&self, slot: Option<usize>, resolve: impl FnOnce() -> IntCounter) {
        match slot.and_then(|i| self.0.get(i)) {
            Some(cell) => cell.get_or_init(resolve).inc(),
            None => resolve().inc(),
        }
    }
}

/// Position of `(a, b)` in a table of `a_len * b_len` slots.
fn slot(a: Option<usize>, b: Option<usize>, b_len: usize) -> Option<usize> {
    Some(a? * b_len + b?)
}

/// The label of an MCP method in `drawbridge_mcp_operations_total`: each method of the
/// table keeps its own ([`Method::label`](crate::mcp::methods::Method::label)), any
/// other is counted as `other`.
pub fn method_label(method: &str) -> &str {
    method_slot(method).1
}

/// The slot of a method's counters (the table's methods, then `response`, then `other`)
/// and its label.
fn method_slot(method: &str) -> (usize, &'static str) {
    let rows = methods::METHODS.len();
    match methods::position(method) {
        Some(i) => (i, methods::METHODS.get(i).map_or(OTHER, |m| m.label())),
        None if method == RESPONSE => (rows, RESPONSE),
        None => (rows + 1, OTHER),
    }
}

/// The standard `process_*` metrics (CPU, resident memory, open and maximum file
/// descriptors, threads, start time) of the gateway's own process, read from `/proc` when
/// scraped. Only Linux has them; elsewhere there is nothing to register.
#[cfg(target_os = "linux")]
fn register_process_collector(registry: &Registry) -> prometheus::Result<()> {
    registry.register(Box::new(
        prometheus::process_collector::ProcessCollector::for_self(),
    ))
}

#[cfg(not(target_os = "linux"))]
fn register_process_collector(_registry: &Registry) -> prometheus::Result<()> {
    Ok(())
}

struct Families {
    requests: IntCounterVec,
    duration: HistogramVec,
    upstream_errors: IntCounterVec,
    active_streams: IntGaugeVec,
    auth_failures: IntCounterVec,
    mcp_operations: IntCounterVec,
    tool_calls: IntCounterVec,
    policy_shadow_decisions: IntCounterVec,
    token_exchanges: IntCounterVec,
    token_exchange_duration: HistogramVec,
    cache_requests: IntCounterVec,
    session_rejections: IntCounterVec,
    handle_rejections: IntCounterVec,
    rate_limited: IntCounterVec,
    rate_limit_keys_full: IntCounterVec,
    list_items_removed: IntCounterVec,
    list_filter_failures: IntCounterVec,
    tool_pin_mismatches: IntCounterVec,
    stream_errors: IntCounterVec,
    jwks_refreshes: IntCounterVec,
    config_reloads: IntCounterVec,
    upstream_dns_lookups: IntCounterVec,
    last_reload_success: prometheus::Gauge,
    last_reload_successful: IntGauge,
    session_keys: IntGaugeVec,
}

/// All metric families, registered in one registry.
pub struct Metrics {
    registry: Registry,
    families: Arc<Families>,
}

/// Handles for one route; hot handles are resolved once so the request path does no
/// label lookups for them.
#[derive(Clone)]
pub struct RouteMetrics {
    pub name: String,
    pub duration: prometheus::Histogram,
    pub active_streams: IntGauge,
    families: Arc<Families>,
    requests: Resolved,
    operations: Resolved,
}

impl RouteMetrics {
    pub fn request(&self, method: &str, status: u16) {
        let method_at = HTTP_METHODS.iter().position(|m| *m == method);
        let status_at = COMMON_STATUSES.iter().position(|s| *s == status);
        self.requests
            .inc(slot(method_at, status_at, COMMON_STATUSES.len()), || {
                let mut code = itoa::Buffer::new();
                self.families.requests.with_label_values(&[
                    self.name.as_str(),
                    method,
                    code.format(status),
                ])
            });
    }

    pub fn upstream_error(&self, kind: &str) {
        self.families
            .upstream_errors
            .with_label_values(&[self.name.as_str(), kind])
            .inc();
    }

    pub fn auth_failure(&self, reason: &str) {
        self.families
            .auth_failures
            .with_label_values(&[self.name.as_str(), reason])
            .inc();
    }

    /// One MCP operation's decision (`method` is bounded here).
    pub fn operation(&self, method: &str, decision: &str) {
        let (method_at, method) = method_slot(method);
        let decision_at = DECISIONS.iter().position(|d| *d == decision);
        self.operations
            .inc(slot(Some(method_at), decision_at, DECISIONS.len()), || {
                self.families.mcp_operations.with_label_values(&[
                    self.name.as_str(),
                    method,
                    decision,
                ])
            });
    }

    /// Items removed from a list answer by the policy.
    pub fn list_items_removed(&self, method: &str, n: usize) {
        self.families
            .list_items_removed
            .with_label_values(&[self.name.as_str(), method])
            .inc_by(n as u64);
    }

    /// A list answer that could not be filtered (the client got an error instead).
    pub fn list_filter_failure(&self) {
        self.families
            .list_filter_failures
            .with_label_values(&[self.name.as_str()])
            .inc();
    }

    /// A tool whose definition is not its pin: `tool` is the pinned name or `other`,
    /// `action` `hidden`, `warned` or `call_refused` (`proxy::pins`).
    pub fn tool_pin_mismatch(&self, tool: &str, action: &str) {
        self.families
            .tool_pin_mismatches
            .with_label_values(&[self.name.as_str(), tool, action])
            .inc();
    }

    /// A server-to-client stream ended by the gateway (`reason` from `mcp::stream`).
    pub fn stream_error(&self, reason: &str) {
        self.families
            .stream_errors
            .with_label_values(&[self.name.as_str(), reason])
            .inc();
    }

    /// A sealed session id refused (`reason` from the session module).
    pub fn session_rejection(&self, reason: &str) {
        self.families
            .session_rejections
            .with_label_values(&[self.name.as_str(), reason])
            .inc();
    }

    /// A sealed server-minted handle refused (`handle`: `request_state`, `task_id`; `reason` from
    /// the session module).
    pub fn handle_rejection(&self, handle: &str, reason: &str) {
        self.families
            .handle_rejections
            .with_label_values(&[self.name.as_str(), handle, reason])
            .inc();
    }

    /// One call to a token endpoint for this route's upstream credential.
    pub fn token_exchange(&self, result: &str, seconds: f64) {
        self.families
            .token_exchanges
            .with_label_values(&[self.name.as_str(), result])
            .inc();
        self.families
            .token_exchange_duration
            .with_label_values(&[self.name.as_str()])
            .observe(seconds);
    }

    /// Exports `drawbridge_rate_limited_total` at 0 for each of the route's limits (its
    /// `limit` and `key` labels), so that dashboards and `increase()` see a series before
    /// the first refusal.
    pub fn rate_limits_configured<'l>(&self, limits: impl IntoIterator<Item = (&'l str, &'l str)>) {
        for (limit, key) in limits {
            self.families
                .rate_limited
                .with_label_values(&[self.name.as_str(), limit, key]);
        }
    }

    /// A request refused by a rate limit: `limit` is `route` or a tool label (bounded
    /// like `tool_call`'s), `key` the key kind; never the key itself.
    pub fn rate_limited(&self, limit: &str, key: &str) {
        self.families
            .rate_limited
            .with_label_values(&[self.name.as_str(), limit, key])
            .inc();
    }

    /// A request judged by a limit's shared overflow bucket: its key map was full.
    pub fn rate_limit_keys_full(&self, limit: &str) {
        self.families
            .rate_limit_keys_full
            .with_label_values(&[self.name.as_str(), limit])
            .inc();
    }

    /// One `tools/call`; `tool` must already be bounded (configured name or `other`).
    pub fn tool_call(&self, tool: &str, decision: &str) {
        self.families
            .tool_calls
            .with_label_values(&[self.name.as_str(), tool, decision])
            .inc();
    }

    /// What a rule in shadow mode would have decided; `rule` is bounded by the
    /// configuration (`policy`, `tools:read_file`, `tools:read_file:arguments:/path`).
    pub fn shadow_decision(&self, rule: &str, decision: &str) {
        self.families
            .policy_shadow_decisions
            .with_label_values(&[self.name.as_str(), rule, decision])
            .inc();
    }
}

fn counter(
    registry: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
) -> Result<IntCounterVec, prometheus::Error> {
    let vec = IntCounterVec::new(Opts::new(name, help), labels)?;
    registry.register(Box::new(vec.clone()))?;
    Ok(vec)
}

impl Metrics {
    pub fn new() -> Result<Metrics, prometheus::Error> {
        let registry = Registry::new();
        let requests = counter(
            &registry,
            "drawbridge_requests_total",
            "Requests answered, by route, HTTP method and status.",
            &["route", "method", "status"],
        )?;
        let duration = HistogramVec::new(
            HistogramOpts::new(
                "drawbridge_request_duration_seconds",
                "Time from request start to the end of the response (whole stream for SSE).",
            )
            .buckets(DURATION_BUCKETS.to_vec()),
            &["route"],
        )?;
        registry.register(Box::new(duration.clone()))?;
        let upstream_errors = counter(
            &registry,
            "drawbridge_upstream_errors_total",
            "Failures talking to upstreams, by kind.",
            &["route", "kind"],
        )?;
        let active_streams = IntGaugeVec::new(
            Opts::new(
                "drawbridge_active_streams",
                "Event streams (SSE responses) open now.",
            ),
            &["route"],
        )?;
        registry.register(Box::new(active_streams.clone()))?;
        let auth_failures = counter(
            &registry,
            "drawbridge_auth_failures_total",
            "Requests refused by authentication, by route and reason.",
            &["route", "reason"],
        )?;
        let mcp_operations = counter(
            &registry,
            "drawbridge_mcp_operations_total",
            "JSON-RPC messages judged by policy, by route, method and decision.",
            &["route", "method", "decision"],
        )?;
        let tool_calls = counter(
            &registry,
            "drawbridge_tool_calls_total",
            "tools/call decisions, by route, tool (configured name, pattern or other) and decision.",
            &["route", "tool", "decision"],
        )?;
        let policy_shadow_decisions = counter(
            &registry,
            "drawbridge_policy_shadow_decisions_total",
            "Decisions of policy rules in shadow mode (recorded, not enforced), by route, rule and decision.",
            &["route", "rule", "decision"],
        )?;
        let token_exchanges = counter(
            &registry,
            "drawbridge_token_exchange_total",
            "Calls to token endpoints for upstream credentials, by route and result.",
            &["route", "result"],
        )?;
        let token_exchange_duration = HistogramVec::new(
            HistogramOpts::new(
                "drawbridge_token_exchange_duration_seconds",
                "Time taken by calls to token endpoints for upstream credentials.",
            )
            .buckets(DURATION_BUCKETS.to_vec()),
            &["route"],
        )?;
        registry.register(Box::new(token_exchange_duration.clone()))?;
        let cache_requests = counter(
            &registry,
            "drawbridge_cache_requests_total",
            "Cache look-ups, by cache (token, introspection, exchange) and result (hit, miss).",
            &["cache", "result"],
        )?;
        let session_rejections = counter(
            &registry,
            "drawbridge_session_rejections_total",
            "Session ids refused (not found for this caller), by route and reason.",
            &["route", "reason"],
        )?;
        let handle_rejections = counter(
            &registry,
            "drawbridge_handle_rejections_total",
            "Server-minted handles (requestState, task ids) refused before the upstream, by route, handle and reason.",
            &["route", "handle", "reason"],
        )?;
        let rate_limited = counter(
            &registry,
            "drawbridge_rate_limited_total",
            "Requests refused by a rate limit (429), by route, limit (route or the tool label) and key kind.",
            &["route", "limit", "key"],
        )?;
        let rate_limit_keys_full = counter(
            &registry,
            "drawbridge_rate_limit_keys_full_total",
            "Requests whose new key found the limit's key map full (judged by its shared overflow bucket), by route and limit.",
            &["route", "limit"],
        )?;
        let list_items_removed = counter(
            &registry,
            "drawbridge_list_items_removed_total",
            "Items removed from list answers by policy, by route and list method.",
            &["route", "method"],
        )?;
        let list_filter_failures = counter(
            &registry,
            "drawbridge_list_filter_failures_total",
            "List answers that could not be filtered (an error was sent instead), by route.",
            &["route"],
        )?;
        let tool_pin_mismatches = counter(
            &registry,
            "drawbridge_tool_pin_mismatches_total",
            "Listed tools whose definition is not their pin (policy.pins), and calls of such \
             tools refused, by route, pinned tool name (`other`: not pinned) and action.",
            &["route", "tool", "action"],
        )?;
        let stream_errors = counter(
            &registry,
            "drawbridge_stream_errors_total",
            "Answers and event streams the gateway ended because it could not filter them \
             (oversized or non-UTF-8 event, unfilterable message, unmappable endpoint, \
             compressed answer), by route and reason.",
            &["route", "reason"],
        )?;
        let jwks_refreshes = counter(
            &registry,
            "drawbridge_jwks_refresh_total",
            "Issuer metadata and JWKS fetches, by issuer and result.",
            &["issuer", "result"],
        )?;
        let config_reloads = counter(
            &registry,
            "drawbridge_config_reloads_total",
            "Configuration reloads (SIGHUP), by result.",
            &["result"],
        )?;
        let upstream_dns_lookups = counter(
            &registry,
            "drawbridge_upstream_dns_lookups_total",
            "Lookups of upstream host names after start-up, by host and result (`same`, \
             `moved`: a new address; `failed`: the last good address stays).",
            &["host", "result"],
        )?;
        let build_info = IntGaugeVec::new(
            Opts::new(
                "drawbridge_build_info",
                "Always 1; labels say which build runs.",
            ),
            &["version"],
        )?;
        build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);
        registry.register(Box::new(build_info))?;
        let session_keys = IntGaugeVec::new(
            Opts::new(
                "drawbridge_session_key_info",
                "Always 1, one series per configured session key: its id, a check value of \
                 its secret (replicas sharing the key show the same), and whether it seals.",
            ),
            &["key", "check", "seals"],
        )?;
        registry.register(Box::new(session_keys.clone()))?;
        for result in ["success", "failure"] {
            config_reloads.with_label_values(&[result]);
        }
        let last_reload_success = prometheus::Gauge::with_opts(Opts::new(
            "drawbridge_config_last_reload_success_timestamp_seconds",
            "When the configuration in use was loaded (start-up or the last accepted reload), \
             in seconds since the Unix epoch.",
        ))?;
        registry.register(Box::new(last_reload_success.clone()))?;
        let last_reload_successful = IntGauge::with_opts(Opts::new(
            "drawbridge_config_last_reload_successful",
            "1 if the last configuration load or reload was accepted, 0 if it was refused \
             (the previous configuration then stays in use).",
        ))?;
        registry.register(Box::new(last_reload_successful.clone()))?;
        register_process_collector(&registry)?;
        Ok(Metrics {
            registry,
            families: Arc::new(Families {
                requests,
                duration,
                upstream_errors,
                active_streams,
                auth_failures,
                mcp_operations,
                tool_calls,
                policy_shadow_decisions,
                token_exchanges,
                token_exchange_duration,
                cache_requests,
                session_rejections,
                handle_rejections,
                rate_limited,
                rate_limit_keys_full,
                list_items_removed,
                list_filter_failures,
                tool_pin_mismatches,
                stream_errors,
                jwks_refreshes,
                config_reloads,
                upstream_dns_lookups,
                last_reload_success,
                last_reload_successful,
                session_keys,
            }),
        })
    }

    /// Handles for a route (or for [`NO_ROUTE`]). Counters that alerts watch with
    /// `increase()` are exported at 0 from the start, so their first event is seen.
    pub fn for_route(&self, name: &str) -> RouteMetrics {
        self.families
            .list_filter_failures
            .with_label_values(&[name]);
        RouteMetrics {
            name: name.to_string(),
            duration: self.families.duration.with_label_values(&[name]),
            active_streams: self.families.active_streams.with_label_values(&[name]),
            families: self.families.clone(),
            requests: Resolved::new(HTTP_METHODS.len() * COMMON_STATUSES.len()),
            operations: Resolved::new((methods::METHODS.len() + 2) * DECISIONS.len()),
        }
    }

    /// The counter for one cache and result (`hit` or `miss`), resolved once.
    pub fn cache_counter(&self, cache: &str, result: &str) -> prometheus::IntCounter {
        self.families
            .cache_requests
            .with_label_values(&[cache, result])
    }

    /// `drawbridge_jwks_refresh_total`, for issuers to count their fetches.
    pub fn jwks_refreshes(&self) -> IntCounterVec {
        self.families.jwks_refreshes.clone()
    }

    /// The configured session keys as (id, check value), the sealing key first; replaces
    /// what an earlier configuration showed.
    pub fn session_keys(&self, keys: &[(&str, String)]) {
        let family = &self.families.session_keys;
        family.reset();
        for (i, (id, check)) in keys.iter().enumerate() {
            let seals = if i == 0 { "true" } else { "false" };
            family
                .with_label_values(&[id, check.as_str(), seals])
                .set(1);
        }
    }

    /// Counts one reload attempt (`success` or `failure`) and, for a success, records
    /// when it happened.
    pub fn config_reload(&self, result: &str) {
        self.families
            .config_reloads
            .with_label_values(&[result])
            .inc();
        let accepted = result == "success";
        if accepted {
            self.config_loaded();
        }
        self.families
            .last_reload_successful
            .set(i64::from(accepted));
    }

    /// Counts one background lookup of an upstream host name.
    pub fn upstream_dns_lookup(&self, host: &str, result: &str) {
        self.families
            .upstream_dns_lookups
            .with_label_values(&[host, result])
            .inc();
    }

    /// Records that the configuration in use was loaded now (at start-up, and by every
    /// accepted reload).
    pub fn config_loaded(&self) {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        self.families.last_reload_success.set(now);
        self.families.last_reload_successful.set(1);
    }

    /// The registry, for modules that own metric families of their own.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(8 * 1024);
        let encoder = TextEncoder::new();
        if let Err(e) = encoder.encode(&self.registry.gather(), &mut out) {
            tracing::error!(error = %e, "failed to encode metrics");
        }
        out
    }
}

impl AuthMetrics for Metrics {
    fn cache_counter(&self, cache: &str, result: &str) -> IntCounter {
        Metrics::cache_counter(self, cache, result)
    }

    fn jwks_refreshes(&self) -> IntCounterVec {
        Metrics::jwks_refreshes(self)
    }
}

impl ExchangeMetrics for RouteMetrics {
    fn token_exchange(&self, result: &str, seconds: f64) {
        RouteMetrics::token_exchange(self, result, seconds)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn route_handles_record_into_the_registry() {
        let m = Metrics::new().unwrap();
        let r = m.for_route("everything");
        r.request("POST", 200);
        r.request("POST", 200);
        r.upstream_error("connect");
        r.active_streams.inc();
        r.duration.observe(0.01);
        r.operation("tools/call", "allow");
        r.operation("made/up", "deny");
        r.tool_call("echo", "allow");
        r.rate_limited("route", "subject");
        r.rate_limit_keys_full("get-*");
        let text = String::from_utf8(m.render()).unwrap();
        assert!(
            text.contains(
                r#"drawbridge_requests_total{method="POST",route="everything",status="200"} 2"#
            ),
            "{text}"
        );
        assert!(text
            .contains(r#"drawbridge_upstream_errors_total{kind="connect",route="everything"} 1"#));
        assert!(text.contains(r#"drawbridge_active_streams{route="everything"} 1"#));
        assert!(text.contains(r#"drawbridge_request_duration_seconds_count{route="everything"} 1"#));
        assert!(text.contains(r#"drawbridge_mcp_operations_total{decision="allow",method="tools/call",route="everything"} 1"#));
        assert!(text.contains(r#"drawbridge_mcp_operations_total{decision="deny",method="other",route="everything"} 1"#));
        assert!(text.contains(
            r#"drawbridge_tool_calls_total{decision="allow",route="everything",tool="echo"} 1"#
        ));
        assert!(text.contains("drawbridge_build_info{version="));
        assert!(text.contains(
            r#"drawbridge_rate_limited_total{key="subject",limit="route",route="everything"} 1"#
        ));
        assert!(text.contains(
            r#"drawbridge_rate_limit_keys_full_total{limit="get-*",route="everything"} 1"#
        ));
    }

    /// The value of an unlabelled sample in the text exposition.
    fn sample(text: &str, name: &str) -> Option<f64> {
        text.lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
    }

    #[test]
    fn reloads_record_when_and_whether_the_configuration_was_accepted() {
        let m = Metrics::new().unwrap();
        let text = String::from_utf8(m.render()).unwrap();
        let when = "drawbridge_config_last_reload_success_timestamp_seconds";
        let ok = "drawbridge_config_last_reload_successful";
        assert_eq!(sample(&text, when), Some(0.0), "{text}");
        m.config_loaded();
        let text = String::from_utf8(m.render()).unwrap();
        let loaded = sample(&text, when).unwrap();
        assert!(loaded > 1.7e9, "{loaded}");
        assert_eq!(sample(&text, ok), Some(1.0));
        m.config_reload("failure");
        let text = String::from_utf8(m.render()).unwrap();
        assert_eq!(sample(&text, ok), Some(0.0), "a refused reload shows");
        assert_eq!(
            sample(&text, when),
            Some(loaded),
            "the time of the last success stays"
        );
        m.config_reload("success");
        let text = String::from_utf8(m.render()).unwrap();
        assert_eq!(sample(&text, ok), Some(1.0));
        assert!(sample(&text, when).unwrap() >= loaded);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn the_process_metrics_describe_this_process() {
        let m = Metrics::new().unwrap();
        let text = String::from_utf8(m.render()).unwrap();
        let fds = sample(&text, "process_open_fds").unwrap();
        let open_now = std::fs::read_dir("/proc/self/fd").unwrap().count() as f64;
        assert!(fds >= 3.0 && fds <= open_now + 16.0, "{fds} vs {open_now}");
        assert!(sample(&text, "process_resident_memory_bytes").unwrap() > 1e6);
        assert!(sample(&text, "process_max_fds").unwrap() >= fds);
        assert!(sample(&text, "process_start_time_seconds").unwrap() > 1.7e9);
    }

    #[test]
    fn session_keys_are_shown_and_replaced_on_reload() {
        let m = Metrics::new().unwrap();
        m.session_keys(&[("new", "0a0b0c0d".into()), ("old", "01020304".into())]);
        let text = String::from_utf8(m.render()).unwrap();
        assert!(text
            .contains(r#"drawbridge_session_key_info{check="0a0b0c0d",key="new",seals="true"} 1"#));
        assert!(text.contains(
            r#"drawbridge_session_key_info{check="01020304",key="old",seals="false"} 1"#
        ));
        m.session_keys(&[("new", "0a0b0c0d".into())]);
        let text = String::from_utf8(m.render()).unwrap();
        assert!(text.contains(r#"key="new""#));
        assert!(!text.contains(r#"key="old""#), "{text}");
    }

    #[test]
    fn resolved_and_looked_up_counters_count_alike() {
        let m = Metrics::new().unwrap();
        let r = m.for_route("a");
        let again = m.for_route("a"); // a reload: new handles, same series
        for (method, status) in [("POST", 200), ("PATCH", 200), ("POST", 299), ("GET", 504)] {
            r.request(method, status);
            again.request(method, status);
        }
        for (method, decision) in [("ping", "allow"), ("made/up", "deny"), ("ping", "maybe")] {
            r.operation(method, decision);
            again.operation(method, decision);
        }
        let text = String::from_utf8(m.render()).unwrap();
        for line in [
            r#"drawbridge_requests_total{method="POST",route="a",status="200"} 2"#,
            r#"drawbridge_requests_total{method="PATCH",route="a",status="200"} 2"#,
            r#"drawbridge_requests_total{method="POST",route="a",status="299"} 2"#,
            r#"drawbridge_requests_total{method="GET",route="a",status="504"} 2"#,
            r#"drawbridge_mcp_operations_total{decision="allow",method="ping",route="a"} 2"#,
            r#"drawbridge_mcp_operations_total{decision="deny",method="other",route="a"} 2"#,
            r#"drawbridge_mcp_operations_total{decision="maybe",method="ping",route="a"} 2"#,
        ] {
            assert!(text.contains(line), "{line} missing from\n{text}");
        }
        assert!(!text.contains(r#"status="404""#), "unused series appear");
    }

    #[test]
    fn every_method_of_the_table_has_its_own_label() {
        let mut labels = std::collections::HashSet::new();
        for row in methods::METHODS {
            assert_eq!(method_label(row.name), row.label());
            assert!(labels.insert(row.label()), "{} shares a label", row.name);
            assert!(!["other", "response"].contains(&row.label()));
        }
        assert_eq!(method_label("response"), "response");
        assert_eq!(method_label("made/up"), "other");
        assert_eq!(method_label("notifications/made_up"), "other");
    }
}
