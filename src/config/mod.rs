//! `gateway.yaml`: loading, `${ENV}` interpolation and validation into an immutable,
//! typed [`Config`].
//!
//! Raw input ([`raw`]) is kept apart from checked settings (this file): nothing on the
//! request path parses or re-checks configuration. Errors carry file, line, column and the
//! key path, and never a configured value (values may be secrets).
//!
//! A near-leaf: the modules that run the gateway read `config`, and `config` reads none
//! of them. It uses only the small shared types at the crate root (`secret`, `jose`,
//! `oauth_client`, `managed_headers`) and the pure modules whose values validation
//! builds (`policy` rules, `ratelimit` limits, `mcp::session::SessionKeys`).

mod claim_mapping;
mod env;
pub mod listener_tls;
mod locate;
pub mod origin;
mod raw;
mod router;
mod units;
mod validate;
pub mod watch;

#[cfg(test)]
mod credential_tests;

use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use crate::secret::Secret;
pub use claim_mapping::{ClaimMapping, PermissionClaim};
pub use env::{interpolate, InterpolationError};
pub use locate::Position;
pub use router::{RouteMatch, Router};
pub use units::{parse_duration, parse_size};

/// The checked configuration the gateway runs with.
#[derive(Debug, Clone)]
pub struct Config {
    /// Address of the MCP listener, e.g. `0.0.0.0:8080`.
    pub listen: String,
    /// Address of the admin listener (`/metrics`, `/healthz`, `/readyz`).
    pub admin_listen: String,
    /// Proxy worker threads.
    pub workers: usize,
    /// Largest request body the gateway reads before refusing with 413.
    pub max_body_bytes: usize,
    /// Most messages in one JSON-RPC batch; longer batches are refused with 400.
    pub max_batch: usize,
    /// Timeouts and the connection limit for client connections.
    pub client: ClientLimits,
    /// Largest server-sent event the gateway holds to filter; a larger one ends the stream.
    pub max_sse_event_bytes: usize,
    /// After SIGTERM, how long in-flight requests may take to finish.
    pub shutdown_grace: Duration,
    /// After SIGTERM, before the listeners stop: `/readyz` answers 503 while requests are
    /// still served, so load balancers stop sending new ones.
    pub shutdown_drain: Duration,
    pub issuers: Vec<Arc<Issuer>>,
    pub routes: Vec<Arc<Route>>,
    /// Session sealing keys; `None`: a random key for this process only.
    pub sessions: Option<Sessions>,
    /// `tls`: the MCP listener speaks HTTPS (HTTP/2 and HTTP/1.1) with this certificate;
    /// `None`: plain HTTP/1.1.
    pub tls: Option<listener_tls::ListenerTls>,
    /// `log`: what the gateway writes at the default level (the log budget).
    pub log: LogSettings,
    /// `dns`: how upstream host names are looked up again.
    pub dns: DnsSettings,
    /// `trusted_proxies`: whose `X-Forwarded-For` names the client (for logs, the log
    /// budget and `key: client` rate limits; nothing is authorized by address).
    pub trusted_proxies: crate::client_addr::TrustedProxies,
}

/// `dns`: upstream host names are looked up at start-up and every `refresh` after, each
/// lookup bounded by `timeout` (docs/operations.md, "Upstream host names").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DnsSettings {
    pub refresh: Duration,
    pub timeout: Duration,
}

impl Default for DnsSettings {
    fn default() -> DnsSettings {
        DnsSettings {
            refresh: Duration::from_secs(30),
            timeout: Duration::from_secs(5),
        }
    }
}

/// `log`: the log budget (docs/operations.md, "Log volume").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogSettings {
    /// `log.access`: which requests get an access line.
    pub access: AccessLog,
    /// `log.refusals: aggregate` (default): refusals of the same kind from the same
    /// source are written once per `interval` and counted; `all`: each is written.
    pub aggregate_refusals: bool,
    /// `log.interval`: the aggregation interval (default 10s).
    pub interval: Duration,
}

impl Default for LogSettings {
    fn default() -> LogSettings {
        LogSettings {
            access: AccessLog::Errors,
            aggregate_refusals: true,
            interval: DEFAULT_LOG_INTERVAL,
        }
    }
}

/// `log.access`: which requests get an access line (target `drawbridge::access`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccessLog {
    /// Every request.
    All,
    /// Requests answered with a 4xx or 5xx, or not answered (default); aggregated like
    /// refusals unless `log.refusals: all`.
    Errors,
    /// One request in N, whatever its status.
    Sampled(std::num::NonZeroU32),
    /// None.
    Off,
}

/// `limits`: how long client connections may take, and how many may be open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientLimits {
    /// A kept-alive connection must send its next whole request header within this time
    /// after the previous answer ended, or it is closed.
    pub idle_timeout: Duration,
    /// A new connection must send its first whole request header within this time.
    pub header_timeout: Duration,
    /// The whole request body must arrive within this time (408 otherwise).
    pub body_timeout: Duration,
    /// Client connections open at once; new ones past it get 503 and are closed.
    pub max_connections: usize,
}

impl Default for ClientLimits {
    fn default() -> ClientLimits {
        ClientLimits {
            idle_timeout: DEFAULT_CLIENT_IDLE_TIMEOUT,
            header_timeout: DEFAULT_HEADER_TIMEOUT,
            body_timeout: DEFAULT_BODY_TIMEOUT,
            max_connections: DEFAULT_MAX_CONNECTIONS,
        }
    }
}

pub const DEFAULT_CLIENT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
pub const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(10);
pub const DEFAULT_BODY_TIMEOUT: Duration = Duration::from_secs(30);
pub const DEFAULT_MAX_CONNECTIONS: usize = 10_000;

/// `sessions`: keys that seal upstream session ids.
#[derive(Debug, Clone)]
pub struct Sessions {
    /// The keys, prepared at validation (`Debug` shows their ids only); the first seals.
    pub keys: Arc<crate::mcp::session::SessionKeys>,
    /// (id, key check value) of each key, in order: `drawbridge_session_key_info`
    /// (`mcp::session::key_check`, which names a key without revealing it).
    pub key_checks: Vec<(String, String)>,
    pub max_age: Option<Duration>,
}

/// One `issuers[]` entry: an authorization server whose tokens routes may accept.
#[derive(Debug, Clone, PartialEq)]
pub struct Issuer {
    pub name: String,
    /// Exact issuer identifier (compared byte for byte with `iss`).
    pub issuer: String,
    pub issuer_url: url::Url,
    pub jwks_uri: Option<url::Url>,
    pub algorithms: Vec<crate::jose::Algorithm>,
    pub leeway: Duration,
    pub introspection: Option<Introspection>,
    /// `allow_insecure_http`: plain-http identity endpoints off loopback are accepted
    /// (test setups only; logged loudly at start-up).
    pub allow_insecure_http: bool,
    /// Accepted JWT `typ` header values, lower-case without `application/`
    /// (`at+jwt`, `jwt`); an absent `typ` is accepted only with `jwt`.
    pub token_types: Vec<String>,
    /// `claims`: where tokens carry the subject, the client and permissions.
    pub claims: ClaimMapping,
}

/// RFC 7662 introspection settings of an issuer.
#[derive(Debug, Clone, PartialEq)]
pub struct Introspection {
    pub client_id: String,
    pub client_secret: Secret,
    pub endpoint: Option<url::Url>,
    pub cache_max: Duration,
    /// Most introspection calls to this issuer in flight at once; past it, 503.
    pub max_in_flight: usize,
    /// Accepted `token_type` values of an active answer (an absent one is accepted).
    pub token_types: Vec<String>,
}

/// The credential a route's upstream receives. There is no passthrough.
#[derive(Debug, Clone)]
pub enum UpstreamAuth {
    /// Nothing is added.
    None,
    /// RFC 8693: a token for the upstream, exchanged for the caller's.
    TokenExchange(Grant),
    /// The gateway's own service token (the upstream no longer sees the user).
    ClientCredentials(Grant),
    /// Microsoft Entra ID's on-behalf-of grant: a token for the upstream's API, obtained
    /// with the caller's token as the assertion. Its grant has no `audience` or
    /// `resource` (Entra names the API in the scopes) and fixed scopes.
    OnBehalfOf(Grant),
    /// A fixed header, e.g. an API key, parsed at validation. The value is marked
    /// sensitive, so `Debug` prints `Sensitive`, never the key; unlike a [`Secret`] it is
    /// not zeroized when dropped (no header value is).
    Static {
        /// Lower case, and never one of the headers the gateway manages.
        header: http::HeaderName,
        value: http::HeaderValue,
    },
}

/// How to get a token from a token endpoint.
#[derive(Debug, Clone)]
pub struct Grant {
    /// Index into `Config::issuers`, for the discovered token endpoint.
    pub issuer: Option<usize>,
    pub token_endpoint: Option<url::Url>,
    pub client: GrantClient,
    pub audience: Option<String>,
    pub resource: Option<String>,
    pub scopes: GrantScopes,
    pub timeout: Duration,
    /// `per_operation` only: what to ask for when an operation needs no scope. Empty:
    /// such requests are refused rather than getting the server's default scope.
    pub base_scopes: Vec<String>,
    /// A plain-http `token_endpoint` off loopback is accepted (test setups only).
    pub allow_insecure_http: bool,
}

/// The gateway's client authentication at the token endpoint.
#[derive(Debug, Clone)]
pub enum GrantClient {
    Basic {
        client_id: String,
        secret: Secret,
    },
    Post {
        client_id: String,
        secret: Secret,
    },
    PrivateKeyJwt {
        client_id: String,
        /// The key, decoded at validation: the runtime signs with it as is.
        key: crate::jose::SigningKey,
        /// The PEM text it was read from, kept only for the route's binding
        /// fingerprint (`exchange::binding_fingerprint` hashes it).
        key_pem: Secret,
        key_id: Option<String>,
    },
}

/// Which scopes to request for the upstream token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GrantScopes {
    /// Exactly the scopes the policy required for the operation (downscoping).
    PerOperation,
    Fixed(Vec<String>),
}

pub const DEFAULT_GRANT_TIMEOUT: Duration = Duration::from_secs(5);

/// A route's `auth` block: who may call it.
#[derive(Debug, Clone)]
pub struct RouteAuth {
    /// The route's `public_url`: the audience its tokens must carry. Part of this block,
    /// so a protected route cannot exist without it.
    pub public_url: url::Url,
    /// `audiences`: the `aud` values accepted, compared exactly; empty: `public_url`
    /// (compared as a URI). The metadata's `resource` stays `public_url` either way.
    pub audiences: Vec<String>,
    /// Indexes into `Config::issuers`.
    pub issuers: Vec<usize>,
    pub required_scopes: Vec<String>,
    pub scopes_supported: Vec<String>,
    pub resource_name: Option<String>,
    pub resource_documentation: Option<url::Url>,
}

/// One `routes[]` entry.
#[derive(Debug, Clone)]
pub struct Route {
    pub name: String,
    /// Lower-case host without port; `None` matches any host.
    pub host: Option<String>,
    /// Path prefix without a trailing slash (`/` only for the root route).
    pub path_prefix: String,
    /// The canonical resource URI of this route: the token audience (required with `auth`).
    pub public_url: Option<url::Url>,
    pub upstream: Upstream,
    /// `None`: a public route.
    pub auth: Option<RouteAuth>,
    /// What the upstream receives instead of the caller's token.
    pub upstream_auth: UpstreamAuth,
    /// Per-tool/resource/prompt/method rules; `None`: the route's scopes suffice.
    pub policy: Option<crate::policy::Policy>,
    /// `policy.pins`: the tool definitions this route's upstream may list.
    pub pins: Option<Arc<crate::policy::pins::ToolPins>>,
    /// Serialised origins (`scheme://host[:port]`) whose browser pages may call this
    /// route; a request with any other `Origin` is refused. Empty: no browser origin.
    pub allowed_origins: Vec<String>,
    /// `rate_limit`: every request on the route counts (before its body is read).
    pub rate_limit: Option<crate::ratelimit::RateLimit>,
    /// The `rate_limit` of `policy.tools` rules, by the rule's pattern (the tool label of
    /// `Policy::tool_label`): each `tools/call` the rule decides counts.
    pub tool_rate_limits: Vec<(String, crate::ratelimit::RateLimit)>,
}

/// Where a route's traffic goes.
#[derive(Debug, Clone)]
pub struct Upstream {
    pub url: url::Url,
    pub tls: bool,
    pub host: String,
    pub port: u16,
    /// `Host` header value sent upstream (`host` or `host:port` when not the default port),
    /// parsed at validation.
    pub authority: http::HeaderValue,
    /// Path of the upstream URL without a trailing slash (empty for `/`).
    pub base_path: String,
    pub connect_timeout: Duration,
    pub read_timeout: Duration,
    pub stream_idle_timeout: Duration,
    /// DER certificates trusted for this upstream instead of the system roots.
    pub ca_certs: Option<Vec<Vec<u8>>>,
    /// The client's `Cookie` header reaches this upstream (otherwise it is removed).
    pub forward_cookies: bool,
}

pub const DEFAULT_LISTEN: &str = "0.0.0.0:8080";
pub const DEFAULT_ADMIN_LISTEN: &str = "127.0.0.1:9090";
pub const DEFAULT_MAX_BODY: usize = 4 << 20;
pub const DEFAULT_MAX_BATCH: usize = 100;
/// Largest `limits.max_batch` accepted: bounds the work one request can ask for.
pub const MAX_MAX_BATCH: usize = 10_000;

/// Default `limits.max_sse_event`: as large as the largest request, so that a tool result
/// carrying an image or a file of that size still passes, while one stream holds at most
/// this much (plus its filtered copy) however the upstream frames it.
pub const DEFAULT_MAX_SSE_EVENT: usize = 4 << 20;
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
pub const DEFAULT_READ_TIMEOUT: Duration = Duration::from_secs(300);
pub const DEFAULT_STREAM_IDLE_TIMEOUT: Duration = Duration::from_secs(3600);
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
pub const DEFAULT_SHUTDOWN_DRAIN: Duration = Duration::from_secs(5);
pub const DEFAULT_LOG_INTERVAL: Duration = Duration::from_secs(10);
pub const DEFAULT_LEEWAY: Duration = Duration::from_secs(30);
pub const DEFAULT_INTROSPECTION_CACHE_MAX: Duration = Duration::from_secs(60);
pub const DEFAULT_INTROSPECTION_MAX_IN_FLIGHT: usize = 32;
/// JWT `typ` values accepted by default: RFC 9068 `at+jwt` and the plain `JWT` (or no
/// `typ`) that Entra ID and Keycloak put on access tokens.
pub const DEFAULT_JWT_TYPES: [&str; 2] = ["at+jwt", "jwt"];
/// Introspection `token_type` values accepted by default: access tokens only.
pub const DEFAULT_INTROSPECTION_TOKEN_TYPES: [&str; 3] = [
    "access_token",
    "bearer",
    "urn:ietf:params:oauth:token-type:access_token",
];

/// One problem found in a configuration file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: String,
    pub position: Option<Position>,
    /// Key path such as `routes[1].upstream.url`; empty for the whole document.
    pub path: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if let Some(p) = self.position {
            write!(f, ":{}:{}", p.line, p.column)?;
        }
        if !self.path.is_empty() {
            write!(f, ": {}", self.path)?;
        }
        write!(f, ": {}", self.message)
    }
}

/// The outcome of checking a file: a config, plus warnings worth telling an operator.
#[derive(Debug)]
pub struct Loaded {
    pub config: Config,
    pub warnings: Vec<String>,
    /// The files the configuration names (secrets, keys, CA bundles) that were read.
    pub files: Vec<std::path::PathBuf>,
}

/// Reads and checks a configuration file.
pub fn load_file(path: &Path) -> Result<Loaded, Vec<ConfigError>> {
    let name = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| {
        vec![ConfigError {
            file: name.clone(),
            position: None,
            path: String::new(),
            message: format!("cannot read the file: {e}"),
        }]
    })?;
    load_str(&name, &text)
}

/// [`load_file`] for `drawbridge pin`, which writes the lock files routes name: one that
/// does not exist yet is no error (its route's pins are then empty).
pub fn load_file_for_pinning(path: &Path) -> Result<Loaded, Vec<ConfigError>> {
    let name = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| {
        vec![ConfigError {
            file: name.clone(),
            position: None,
            path: String::new(),
            message: format!("cannot read the file: {e}"),
        }]
    })?;
    validate::validate_for(&name, &text, true)
}

/// Checks configuration text; `file` names it in errors.
pub fn load_str(file: &str, text: &str) -> Result<Loaded, Vec<ConfigError>> {
    validate::validate(file, text)
}
