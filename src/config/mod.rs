//! `gateway.yaml`: loading, `${ENV}` interpolation and validation into an immutable,
//! typed [`Config`].
//!
//! Raw input ([`raw`]) is kept apart from checked settings (this file): nothing on the
//! request path parses or re-checks configuration. Errors carry file, line, column and the
//! key path, and never a configured value (values may be secrets).

mod env;
mod locate;
mod raw;
mod router;
mod secret;
mod units;
mod validate;
pub mod watch;

use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

pub use env::{interpolate, InterpolationError};
pub use locate::Position;
pub use router::{public_path_for, RouteMatch, Router};
pub use secret::{Secret, SecretBytes};
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
}

/// `sessions`: keys that seal upstream session ids.
#[derive(Debug, Clone)]
pub struct Sessions {
    /// (id, 32 key bytes, redacted); the first seals.
    pub keys: Vec<(String, SecretBytes)>,
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
    pub algorithms: Vec<crate::auth::jwt::Algorithm>,
    pub leeway: Duration,
    pub introspection: Option<Introspection>,
}

/// RFC 7662 introspection settings of an issuer.
#[derive(Debug, Clone, PartialEq)]
pub struct Introspection {
    pub client_id: String,
    pub client_secret: Secret,
    pub endpoint: Option<url::Url>,
    pub cache_max: Duration,
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
    /// A fixed header, e.g. an API key.
    Static { header: String, value: Secret },
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
}

/// Where a route's traffic goes.
#[derive(Debug, Clone)]
pub struct Upstream {
    pub url: url::Url,
    pub tls: bool,
    pub host: String,
    pub port: u16,
    /// `Host` header value sent upstream (`host` or `host:port` when not the default port).
    pub authority: String,
    /// Path of the upstream URL without a trailing slash (empty for `/`).
    pub base_path: String,
    pub connect_timeout: Duration,
    pub read_timeout: Duration,
    pub stream_idle_timeout: Duration,
    /// DER certificates trusted for this upstream instead of the system roots.
    pub ca_certs: Option<Vec<Vec<u8>>>,
}

pub const DEFAULT_LISTEN: &str = "0.0.0.0:8080";
pub const DEFAULT_ADMIN_LISTEN: &str = "127.0.0.1:9090";
pub const DEFAULT_MAX_BODY: usize = 4 << 20;

/// Default `limits.max_sse_event`: as large as the largest request, so that a tool result
/// carrying an image or a file of that size still passes, while one stream holds at most
/// this much (plus its filtered copy) however the upstream frames it.
pub const DEFAULT_MAX_SSE_EVENT: usize = 4 << 20;
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
pub const DEFAULT_READ_TIMEOUT: Duration = Duration::from_secs(300);
pub const DEFAULT_STREAM_IDLE_TIMEOUT: Duration = Duration::from_secs(3600);
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
pub const DEFAULT_SHUTDOWN_DRAIN: Duration = Duration::from_secs(5);
pub const DEFAULT_LEEWAY: Duration = Duration::from_secs(30);
pub const DEFAULT_INTROSPECTION_CACHE_MAX: Duration = Duration::from_secs(60);

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

/// Checks configuration text; `file` names it in errors.
pub fn load_str(file: &str, text: &str) -> Result<Loaded, Vec<ConfigError>> {
    validate::validate(file, text)
}
