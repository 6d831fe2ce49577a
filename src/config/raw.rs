//! `gateway.yaml` as written: the serde model of version 1, before any checking.
//!
//! Every struct refuses unknown keys. Strings stay as written (with `${VAR}` references);
//! `validate` expands and checks them into the typed [`super::Config`]. Blocks that later
//! features implement are kept as opaque YAML here so that the validator can name them.

use serde::Deserialize;
use serde_yaml::Value;

use crate::secret::RawSecret;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    pub listen: Option<String>,
    pub admin: Option<RawAdmin>,
    /// Worker threads for the proxy; defaults to the number of CPUs.
    pub workers: Option<usize>,
    pub limits: Option<RawLimits>,
    /// After SIGTERM: how long in-flight requests may take to finish (default 10s).
    pub shutdown_grace: Option<String>,
    /// After SIGTERM and before the listeners stop: how long `/readyz` answers 503 while
    /// traffic is still served, so load balancers take the replica out (default 5s).
    pub shutdown_drain: Option<String>,
    pub sessions: Option<RawSessions>,
    /// The MCP listener speaks HTTPS with this certificate (absent: plain HTTP).
    pub tls: Option<RawListenerTls>,
    pub log: Option<RawLog>,
    /// How upstream host names are looked up again.
    pub dns: Option<RawDns>,
    /// Address blocks whose `X-Forwarded-For` names the client (`10.0.0.0/8`, ...).
    #[serde(default)]
    pub trusted_proxies: Vec<String>,
    #[serde(default)]
    pub issuers: Vec<RawIssuer>,
    #[serde(default)]
    pub routes: Vec<RawRoute>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAdmin {
    pub listen: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDns {
    /// How often every upstream host name is looked up again, e.g. `30s`.
    pub refresh: Option<String>,
    /// How long one lookup may take, e.g. `5s`.
    pub timeout: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawListenerTls {
    /// PEM file: the certificate, then the intermediates that chain it to a root.
    pub cert_file: String,
    /// PEM file: the certificate's private key (PKCS#8, PKCS#1 or SEC1).
    pub key_file: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLog {
    /// `all`, `errors` (default), `sampled:N` or `off`.
    pub access: Option<String>,
    /// `aggregate` (default) or `all`.
    pub refusals: Option<String>,
    /// How long refusals of one kind and source are aggregated, e.g. `10s`.
    pub interval: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLimits {
    /// Largest request body the gateway reads, e.g. `4MiB` or `65536`.
    pub max_body: Option<String>,
    /// Most messages in one JSON-RPC batch (default 100).
    pub max_batch: Option<usize>,
    /// How long a kept-alive client connection may wait for its next request header.
    pub client_idle_timeout: Option<String>,
    /// How long a new client connection may take to send its first request header.
    pub header_timeout: Option<String>,
    /// How long the gateway waits for a whole request body.
    pub body_timeout: Option<String>,
    /// Client connections open at once; past it new connections get 503 and are closed.
    pub max_connections: Option<usize>,
    /// Largest server-sent event the gateway holds to filter, e.g. `1MiB`.
    pub max_sse_event: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRoute {
    pub name: String,
    #[serde(rename = "match")]
    pub matcher: RawMatch,
    pub public_url: Option<String>,
    pub upstream: RawUpstream,
    pub auth: Option<RawAuth>,
    pub upstream_auth: Option<RawUpstreamAuth>,
    pub policy: Option<RawPolicy>,
    /// Browser origins (`https://app.example.com`) allowed to call this route.
    pub allowed_origins: Option<Vec<String>>,
    /// Requests per period on this route, per key.
    pub rate_limit: Option<RawRateLimit>,
}

/// `rate_limit`: `requests` per `per`, at most `burst` at once, counted per `key`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRateLimit {
    pub requests: u64,
    /// A duration, e.g. `1m`.
    pub per: String,
    /// Default: `requests`.
    pub burst: Option<u64>,
    /// `subject`, `client` or `route`.
    pub key: String,
    /// Keys tracked at most (default 100000).
    pub max_keys: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMatch {
    pub path: String,
    pub host: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUpstream {
    pub url: String,
    pub timeouts: Option<RawTimeouts>,
    pub tls: Option<RawUpstreamTls>,
    /// Forward the client's `Cookie` header to this upstream (default false: removed).
    pub forward_cookies: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUpstreamTls {
    /// PEM file of the CA certificates that may sign this upstream's certificate
    /// (replaces the system roots for this route).
    pub ca_file: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTimeouts {
    pub connect: Option<String>,
    pub read: Option<String>,
    /// Read timeout for long-lived GET event streams (server-to-client channel).
    pub stream_idle: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawIssuer {
    pub name: String,
    /// The issuer identifier: tokens' `iss` must equal it exactly.
    pub issuer: String,
    pub jwks_uri: Option<String>,
    pub algorithms: Option<Vec<String>>,
    /// Clock skew allowed on `exp`, `nbf` and `iat` (default 30s).
    pub leeway: Option<String>,
    pub introspection: Option<RawIntrospection>,
    /// Accept plain-http identity endpoints off loopback (test setups only).
    pub allow_insecure_http: Option<bool>,
    /// Accepted JWT `typ` values (`at+jwt`, `JWT`); default both (and no `typ`).
    pub token_types: Option<Vec<String>>,
    /// Where this issuer's tokens carry the subject, the client and permissions.
    pub claims: Option<RawClaimMapping>,
}

/// `issuers[].claims`. Claim names are member names or JSON pointers (`/a/b`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawClaimMapping {
    /// The subject claim (default `sub`), e.g. `oid` for Entra ID.
    pub subject: Option<String>,
    /// The client claims, first present wins (default `client_id`, `azp`, `cid`, `appid`).
    pub client: Option<Vec<String>>,
    /// Claims whose values are granted like scopes, e.g. `roles`, `permissions`.
    #[serde(default)]
    pub permissions: Vec<RawPermissionClaim>,
}

/// A permission claim: its name, or `{ claim, prefix }`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum RawPermissionClaim {
    Name(String),
    Prefixed(RawPrefixedClaim),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPrefixedClaim {
    pub claim: String,
    /// Put in front of each value, e.g. `role:` grants `role:admin` for `admin`.
    #[serde(default)]
    pub prefix: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawIntrospection {
    pub client_id: String,
    pub client_secret: RawSecret,
    /// Defaults to the issuer's discovered `introspection_endpoint`.
    pub endpoint: Option<String>,
    /// Longest time an introspection answer is reused (default 60s, never past `exp`).
    pub cache_max: Option<String>,
    /// Most introspection calls in flight at once (default 32); past it, 503.
    pub max_in_flight: Option<usize>,
    /// Accepted `token_type` values of an answer (default: access tokens only).
    pub token_types: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAuth {
    pub issuers: Vec<String>,
    /// Accepted `aud` values, compared exactly (default: the route's `public_url`).
    pub audiences: Option<Vec<String>>,
    #[serde(default)]
    pub required_scopes: Vec<String>,
    #[serde(default)]
    pub scopes_supported: Vec<String>,
    pub resource_name: Option<String>,
    pub resource_documentation: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPolicy {
    /// `deny` (the default) or `allow` for names no rule covers.
    pub default: Option<String>,
    /// Conditions on every request of the route.
    pub require: Option<RawRequire>,
    #[serde(default)]
    pub tools: std::collections::BTreeMap<String, RawRule>,
    #[serde(default)]
    pub resources: std::collections::BTreeMap<String, RawRule>,
    #[serde(default)]
    pub prompts: std::collections::BTreeMap<String, RawRule>,
    #[serde(default)]
    pub methods: std::collections::BTreeMap<String, RawRule>,
    /// `enforce` (the default) or `shadow`: decisions recorded, none enforced.
    pub mode: Option<String>,
    /// Pinned tool definitions (`policy::pins`).
    pub pins: Option<RawPins>,
}

/// `policy.pins`: the lock file `drawbridge pin` wrote, and what a changed tool gets.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPins {
    pub file: String,
    /// `hide` (the default) or `warn`.
    pub on_change: Option<String>,
}

/// `policy.require`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRequire {
    #[serde(default)]
    pub claims: RawClaimRules,
}

/// Claim name → accepted values (any one present passes), or the long form
/// `{values: [...], mode: shadow}`.
pub type RawClaimRules = std::collections::BTreeMap<String, RawClaimValues>;

/// One claim rule's accepted values: a list, or a mapping with a mode.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum RawClaimValues {
    Values(Vec<String>),
    Full(RawClaimRule),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawClaimRule {
    pub values: Vec<String>,
    /// `enforce` (the default) or `shadow`.
    pub mode: Option<String>,
}

/// One policy rule: the short form (a list of scopes) or the long form, a mapping that
/// later rule kinds extend with more keys.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum RawRule {
    Scopes(Vec<String>),
    Full(RawFullRule),
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFullRule {
    #[serde(default)]
    pub scopes: Vec<String>,
    #[serde(default)]
    pub claims: RawClaimRules,
    /// Argument name (or JSON pointer) → its rule (tools, prompts, resources).
    #[serde(default)]
    pub arguments: std::collections::BTreeMap<String, RawArgumentRule>,
    /// `allow` (the default) or `deny`: top-level arguments no rule names.
    pub additional_arguments: Option<String>,
    /// `enforce` (the default) or `shadow`.
    pub mode: Option<String>,
    /// Tools only: calls of the tools this rule matches, per period and key.
    pub rate_limit: Option<RawRateLimit>,
}

/// One argument rule: conditions that must all hold, its presence, its mode.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawArgumentRule {
    pub glob: Option<String>,
    pub prefix: Option<String>,
    pub one_of: Option<Vec<Value>>,
    pub max_length: Option<u64>,
    pub min: Option<f64>,
    pub max: Option<f64>,
    pub regex: Option<String>,
    /// An array every item of which satisfies these conditions (no `present`,
    /// `optional`, `mode` or `each` of its own).
    pub each: Option<Box<RawArgumentRule>>,
    /// `false`: must be absent; `true`: must be present (the default).
    pub present: Option<bool>,
    /// `true`: may be absent (present, it must satisfy the conditions).
    pub optional: Option<bool>,
    pub mode: Option<String>,
}

/// `routes[].upstream_auth`: exactly one member.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUpstreamAuth {
    pub token_exchange: Option<RawGrant>,
    pub client_credentials: Option<RawGrant>,
    pub on_behalf_of: Option<RawOnBehalfOf>,
    #[serde(rename = "static")]
    pub static_: Option<RawStatic>,
    pub none: Option<Value>,
    /// Not an option: named so the validator can explain why.
    pub passthrough: Option<Value>,
}

/// A token-endpoint grant (token exchange or client credentials).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawGrant {
    /// Issuer (by name) whose discovered `token_endpoint` is used.
    pub issuer: Option<String>,
    pub token_endpoint: Option<String>,
    pub client_id: String,
    pub client_secret: Option<RawSecret>,
    /// `client_secret_basic` (default), `client_secret_post` or `private_key_jwt`.
    pub client_auth: Option<String>,
    /// PEM private key for `private_key_jwt`.
    pub private_key_file: Option<String>,
    pub key_id: Option<String>,
    pub audience: Option<String>,
    pub resource: Option<String>,
    /// `per_operation` or a list of scopes.
    pub scopes: Option<Value>,
    pub timeout: Option<String>,
    /// With `scopes: per_operation`: what to request when an operation needs no scope.
    pub base_scopes: Option<Vec<String>>,
    /// Accept a plain-http `token_endpoint` off loopback (test setups only).
    pub allow_insecure_http: Option<bool>,
}

/// Microsoft Entra ID's on-behalf-of grant: the caller's token as an RFC 7523 JWT
/// bearer `assertion`, `requested_token_use=on_behalf_of`. Client authentication is in
/// the request body (a secret, or a certificate's signed assertion), as Entra documents.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawOnBehalfOf {
    /// Issuer (by name) whose discovered `token_endpoint` is used.
    pub issuer: Option<String>,
    pub token_endpoint: Option<String>,
    pub client_id: String,
    pub client_secret: Option<RawSecret>,
    pub client_secret_file: Option<String>,
    /// PEM private key whose certificate is registered with the application.
    pub private_key_file: Option<String>,
    /// PEM certificate of that key: its SHA-256 thumbprint is the assertion's `x5t#S256`.
    pub certificate_file: Option<String>,
    /// Sent as the assertion's `kid`.
    pub key_id: Option<String>,
    /// Scopes of the upstream's API, e.g. `api://upstream/.default`.
    pub scopes: Option<Vec<String>>,
    pub timeout: Option<String>,
    /// Accept a plain-http `token_endpoint` off loopback (test setups only).
    pub allow_insecure_http: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStatic {
    pub header: String,
    pub value: Option<RawSecret>,
    pub value_file: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSessions {
    /// The first key seals; every key opens (rotation).
    pub keys: Vec<RawSessionKey>,
    /// Sealed ids older than this are refused (default: no limit).
    pub max_age: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSessionKey {
    pub id: String,
    /// 32 random bytes, base64 (`drawbridge keygen` makes one).
    pub secret: Option<RawSecret>,
    pub secret_file: Option<String>,
}
