//! Turns `gateway.yaml` text into a checked [`Config`], collecting every error it can find
//! (structure errors from serde stop at the first; semantic errors are all reported).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use super::locate::{Locations, Position};
use super::raw::{
    RawAuth, RawConfig, RawGrant, RawIntrospection, RawIssuer, RawPolicy, RawRoute, RawSessions,
    RawStatic, RawTimeouts, RawUpstreamAuth,
};
use super::{
    env, units, Config, ConfigError, Grant, GrantClient, GrantScopes, Introspection, Issuer,
    Loaded, Route, RouteAuth, Secret, SecretBytes, Sessions, Upstream, UpstreamAuth,
    DEFAULT_ADMIN_LISTEN, DEFAULT_CONNECT_TIMEOUT, DEFAULT_GRANT_TIMEOUT,
    DEFAULT_INTROSPECTION_CACHE_MAX, DEFAULT_LEEWAY, DEFAULT_LISTEN, DEFAULT_MAX_BATCH,
    DEFAULT_MAX_BODY, DEFAULT_READ_TIMEOUT, DEFAULT_STREAM_IDLE_TIMEOUT, MAX_MAX_BATCH,
};
use crate::auth::jwt::Algorithm;
use crate::mcp::session::SessionKeys;
use crate::policy::{Glob, Policy, Rule, RuleSet};

pub(super) fn validate(file: &str, text: &str) -> Result<Loaded, Vec<ConfigError>> {
    let locations = Locations::of(text);
    let raw: RawConfig = parse_structure(file, text, &locations)?;
    let mut checker = Checker {
        file,
        locations: &locations,
        errors: Vec::new(),
        warnings: Vec::new(),
        files: Vec::new(),
    };
    let config = checker.config(raw);
    match config {
        Some(config) if checker.errors.is_empty() => Ok(Loaded {
            config,
            warnings: checker.warnings,
            files: checker.files,
        }),
        _ => Err(checker.errors),
    }
}

fn parse_structure(
    file: &str,
    text: &str,
    locations: &Locations,
) -> Result<RawConfig, Vec<ConfigError>> {
    if text.trim().is_empty() {
        return Err(vec![ConfigError {
            file: file.to_string(),
            position: None,
            path: String::new(),
            message: "the file is empty: at least one route is needed".into(),
        }]);
    }
    let de = serde_yaml::Deserializer::from_str(text);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let path = if path == "." { String::new() } else { path };
        let inner = e.into_inner();
        let position = inner
            .location()
            .map(|l| Position {
                line: l.line(),
                column: l.column(),
            })
            .or_else(|| locations.position_of(&path));
        vec![ConfigError {
            file: file.to_string(),
            position,
            message: redact_values(&strip_serde_position(&inner.to_string(), &path)),
            path,
        }]
    })
}

/// serde_yaml appends " at line L column C" and may prefix the path; we print both ourselves.
fn strip_serde_position(message: &str, path: &str) -> String {
    let message = match message.rfind(" at line ") {
        Some(at) => &message[..at],
        None => message,
    };
    // serde_yaml names the enclosing mapping (`routes[0]: unknown field …`).
    match message.split_once(": ") {
        Some((prefix, rest)) if !prefix.is_empty() && path.starts_with(prefix) => rest.to_string(),
        _ => message.to_string(),
    }
}

/// A shape error names the kind of value found, never the value: `invalid type: string
/// "Bearer sk-live-…", expected …` becomes `invalid type: string, expected …` (the value
/// may be a secret written where a mapping was expected).
fn redact_values(message: &str) -> String {
    for marker in ["invalid type: ", "invalid value: "] {
        if let Some(start) = message.find(marker) {
            let after = start + marker.len();
            let rest = &message[after..];
            let end = rest.find(", expected").unwrap_or(rest.len());
            let kind = rest[..end].split(' ').next().unwrap_or_default();
            return format!("{}{kind}{}", &message[..after], &rest[end..]);
        }
    }
    message.to_string()
}

/// A scope token (RFC 6749 §3.3), also safe inside a quoted challenge parameter.
fn valid_scope(scope: &str) -> bool {
    !scope.is_empty()
        && scope
            .chars()
            .all(|c| c.is_ascii_graphic() && c != '"' && c != '\\')
}

struct Checker<'a> {
    file: &'a str,
    locations: &'a Locations,
    errors: Vec<ConfigError>,
    warnings: Vec<String>,
    /// Every file the configuration names and that was read, for `--watch`.
    files: Vec<std::path::PathBuf>,
}

impl Checker<'_> {
    /// Reads a file the configuration names, and remembers it.
    fn read(&mut self, path: &str) -> std::io::Result<Vec<u8>> {
        self.files.push(path.into());
        std::fs::read(path)
    }

    /// [`Checker::read`], as UTF-8 text.
    fn read_text(&mut self, path: &str) -> std::io::Result<String> {
        String::from_utf8(self.read(path)?)
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidData, "not UTF-8 text"))
    }

    /// [`Checker::read_text`] for a file holding a secret: warns when group or others
    /// may read it.
    fn read_secret(&mut self, at: &str, path: &str) -> std::io::Result<String> {
        let text = self.read_text(path)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            if let Ok(meta) = std::fs::metadata(path) {
                let mode = meta.permissions().mode() & 0o777;
                if mode & 0o077 != 0 {
                    self.warnings.push(format!(
                        "{at}: `{path}` holds a secret but is readable by group or others (mode {mode:o}); make it 0600 or 0400"
                    ));
                }
            }
        }
        Ok(text)
    }

    fn error(&mut self, path: &str, message: impl Into<String>) {
        self.errors.push(ConfigError {
            file: self.file.to_string(),
            position: self.locations.position_of(path),
            path: path.to_string(),
            message: message.into(),
        });
    }

    /// Expands `${VAR}` references; on error records it and returns `None`.
    fn expand(&mut self, path: &str, value: &str) -> Option<String> {
        match env::interpolate(value) {
            Ok(v) => Some(v),
            Err(e) => {
                self.error(path, e.to_string());
                None
            }
        }
    }

    fn socket_addr(&mut self, path: &str, value: &str) -> Option<String> {
        let value = self.expand(path, value)?;
        match value.parse::<SocketAddr>() {
            Ok(_) => Some(value),
            Err(_) => {
                self.error(
                    path,
                    "expected an IP address and port such as `0.0.0.0:8080`",
                );
                None
            }
        }
    }

    fn config(&mut self, raw: RawConfig) -> Option<Config> {
        let listen = self.socket_addr("listen", raw.listen.as_deref().unwrap_or(DEFAULT_LISTEN));
        let admin_listen = self.socket_addr(
            "admin.listen",
            raw.admin
                .as_ref()
                .map_or(DEFAULT_ADMIN_LISTEN, |a| a.listen.as_str()),
        );
        if let (Some(l), Some(a)) = (&listen, &admin_listen) {
            if l == a {
                self.error("admin.listen", "must differ from `listen`");
            }
        }
        let workers = match raw.workers {
            Some(0) => {
                self.error("workers", "must be at least 1");
                1
            }
            Some(n) => n,
            None => std::thread::available_parallelism().map_or(1, |n| n.get()),
        };
        let max_body_bytes = match raw.limits.as_ref().and_then(|l| l.max_body.as_deref()) {
            None => DEFAULT_MAX_BODY,
            Some(text) => match units::parse_size(text) {
                Ok(0) => {
                    self.error("limits.max_body", "must be more than 0");
                    DEFAULT_MAX_BODY
                }
                Ok(n) => n,
                Err(e) => {
                    self.error("limits.max_body", e);
                    DEFAULT_MAX_BODY
                }
            },
        };
        let max_batch = match raw.limits.as_ref().and_then(|l| l.max_batch) {
            None => DEFAULT_MAX_BATCH,
            Some(n) if (1..=MAX_MAX_BATCH).contains(&n) => n,
            Some(_) => {
                self.error(
                    "limits.max_batch",
                    format!("must be between 1 and {MAX_MAX_BATCH}"),
                );
                DEFAULT_MAX_BATCH
            }
        };
        let client = self.client_limits(raw.limits.as_ref());
        let max_sse_event_bytes = match raw.limits.as_ref().and_then(|l| l.max_sse_event.as_deref())
        {
            None => super::DEFAULT_MAX_SSE_EVENT,
            Some(text) => match units::parse_size(text) {
                Ok(n) if n < 1024 => {
                    self.error("limits.max_sse_event", "must be at least 1KiB");
                    super::DEFAULT_MAX_SSE_EVENT
                }
                Ok(n) => n,
                Err(e) => {
                    self.error("limits.max_sse_event", e);
                    super::DEFAULT_MAX_SSE_EVENT
                }
            },
        };
        let shutdown_grace = self.shutdown_duration(
            "shutdown_grace",
            raw.shutdown_grace.as_deref(),
            super::DEFAULT_SHUTDOWN_GRACE,
        );
        let shutdown_drain = self.shutdown_duration(
            "shutdown_drain",
            raw.shutdown_drain.as_deref(),
            super::DEFAULT_SHUTDOWN_DRAIN,
        );
        let sessions = match &raw.sessions {
            None => None,
            Some(s) => self.sessions(s),
        };
        let issuers: Vec<Arc<Issuer>> = raw
            .issuers
            .iter()
            .enumerate()
            .filter_map(|(i, r)| self.issuer(&format!("issuers[{i}]"), r))
            .map(Arc::new)
            .collect();
        let mut issuer_names: HashMap<&str, usize> = HashMap::new();
        for (i, issuer) in issuers.iter().enumerate() {
            if issuer_names.insert(&issuer.name, i).is_some() {
                self.error(
                    &format!("issuers[{i}].name"),
                    format!("duplicate issuer name `{}`", issuer.name),
                );
            }
        }
        if raw.routes.is_empty() {
            self.error("routes", "at least one route is needed");
        }
        let routes: Vec<Arc<Route>> = raw
            .routes
            .iter()
            .enumerate()
            .filter_map(|(i, r)| self.route(&format!("routes[{i}]"), r, &issuer_names))
            .map(Arc::new)
            .collect();
        self.check_unique(&routes);
        if raw.sessions.is_none() && routes.iter().any(|r| r.auth.is_some()) {
            self.warnings.push(
                "no `sessions.keys`: session ids are sealed with a random key of this process; replicas cannot serve each other's sessions and a restart ends them".into(),
            );
        }
        for route in routes.iter().filter(|r| r.auth.is_none()) {
            self.warnings.push(format!(
                "route `{}` is public: it has no `auth` block, so no token is required",
                route.name
            ));
        }
        Some(Config {
            listen: listen?,
            admin_listen: admin_listen?,
            workers,
            max_body_bytes,
            max_batch,
            client,
            max_sse_event_bytes,
            shutdown_grace,
            shutdown_drain,
            issuers,
            routes,
            sessions,
        })
    }

    /// A shutdown phase's length: up to an hour, the default when absent.
    fn shutdown_duration(
        &mut self,
        key: &str,
        text: Option<&str>,
        default: std::time::Duration,
    ) -> std::time::Duration {
        let Some(text) = text else { return default };
        match units::parse_duration(text) {
            Ok(d) if d <= std::time::Duration::from_secs(3600) => d,
            _ => {
                self.error(key, "a duration up to 1h, such as `10s`");
                default
            }
        }
    }

    fn sessions(&mut self, raw: &RawSessions) -> Option<Sessions> {
        let mut keys = Vec::new();
        for (i, key) in raw.keys.iter().enumerate() {
            let at = format!("sessions.keys[{i}]");
            let text = match (&key.secret, &key.secret_file) {
                (Some(s), None) => self.expand(&format!("{at}.secret"), s)?,
                (None, Some(path)) => {
                    let path = self.expand(&format!("{at}.secret_file"), path)?;
                    match self.read_secret(&format!("{at}.secret_file"), &path) {
                        Ok(text) => text,
                        Err(e) => {
                            self.error(
                                &format!("{at}.secret_file"),
                                format!("cannot read `{path}`: {e}"),
                            );
                            return None;
                        }
                    }
                }
                _ => {
                    self.error(&at, "give exactly one of `secret` and `secret_file`");
                    return None;
                }
            };
            match SessionKeys::decode_key(&text) {
                Ok(bytes) => keys.push((key.id.clone(), bytes)),
                Err(e) => {
                    self.error(&at, e);
                    return None;
                }
            }
        }
        if let Err(e) = SessionKeys::new(keys.clone()) {
            self.error("sessions.keys", e);
            return None;
        }
        let max_age = match &raw.max_age {
            None => None,
            Some(text) => match units::parse_duration(text) {
                Ok(d) if !d.is_zero() => Some(d),
                _ => {
                    self.error("sessions.max_age", "a duration such as `12h`");
                    None
                }
            },
        };
        Some(Sessions {
            keys: keys
                .into_iter()
                .map(|(id, bytes)| (id, SecretBytes::new(bytes)))
                .collect(),
            max_age,
        })
    }

    fn issuer(&mut self, at: &str, raw: &RawIssuer) -> Option<Issuer> {
        self.name(&format!("{at}.name"), &raw.name);
        let allow_insecure_http = raw.allow_insecure_http.unwrap_or(false);
        if allow_insecure_http {
            self.warnings.push(format!(
                "{at}: allow_insecure_http is on: keys, introspection answers and client secrets of issuer `{}` may travel over plain HTTP (test setups only)",
                raw.name
            ));
        }
        let issuer = self.expand(&format!("{at}.issuer"), &raw.issuer)?;
        let issuer_url =
            self.identity_url(&format!("{at}.issuer"), &issuer, allow_insecure_http)?;
        let jwks_uri = match &raw.jwks_uri {
            None => None,
            Some(u) => {
                let at = format!("{at}.jwks_uri");
                let u = self.expand(&at, u)?;
                Some(self.identity_url(&at, &u, allow_insecure_http)?)
            }
        };
        let token_types = self.token_types(
            &format!("{at}.token_types"),
            raw.token_types.as_deref(),
            &["at+jwt", "jwt"],
            &crate::config::DEFAULT_JWT_TYPES,
        );
        let algorithms = match &raw.algorithms {
            None => Algorithm::DEFAULT.to_vec(),
            Some(names) => {
                let mut algs = Vec::new();
                for (i, name) in names.iter().enumerate() {
                    let at = format!("{at}.algorithms[{i}]");
                    match Algorithm::from_name(name) {
                        Some(a) => algs.push(a),
                        None if name == "none" || name.starts_with("HS") => self.error(
                            &at,
                            format!("`{name}` is never accepted: access tokens must be signed with an asymmetric key"),
                        ),
                        None => self.error(&at, format!("unsupported algorithm `{name}` (use RS256, PS256, ES256 or EdDSA)")),
                    }
                }
                if algs.is_empty() && names.is_empty() {
                    self.error(&format!("{at}.algorithms"), "list at least one algorithm");
                }
                algs
            }
        };
        let leeway = match &raw.leeway {
            None => DEFAULT_LEEWAY,
            Some(text) => match units::parse_duration(text) {
                Ok(d) if d <= std::time::Duration::from_secs(300) => d,
                Ok(_) => {
                    self.error(&format!("{at}.leeway"), "at most 5m");
                    DEFAULT_LEEWAY
                }
                Err(e) => {
                    self.error(&format!("{at}.leeway"), e);
                    DEFAULT_LEEWAY
                }
            },
        };
        let introspection = match &raw.introspection {
            None => None,
            Some(i) => {
                Some(self.introspection(&format!("{at}.introspection"), i, allow_insecure_http)?)
            }
        };
        Some(Issuer {
            name: raw.name.clone(),
            issuer,
            issuer_url,
            jwks_uri,
            algorithms,
            leeway,
            introspection,
            allow_insecure_http,
            token_types,
        })
    }

    /// A list of token kinds drawn from `known` (compared case-insensitively, without an
    /// `application/` prefix), lower-cased; `default` when the key is absent.
    fn token_types(
        &mut self,
        at: &str,
        raw: Option<&[String]>,
        known: &[&str],
        default: &[&str],
    ) -> Vec<String> {
        let Some(raw) = raw else {
            return default.iter().map(|t| t.to_string()).collect();
        };
        if raw.is_empty() {
            self.error(at, "list at least one token type");
        }
        let mut types = Vec::new();
        for (i, name) in raw.iter().enumerate() {
            let normal = crate::auth::jwt::normalize_media_type(name);
            if known.contains(&normal.as_str()) {
                types.push(normal);
            } else {
                self.error(
                    &format!("{at}[{i}]"),
                    format!("unknown token type (use {})", known.join(", ")),
                );
            }
        }
        types
    }

    /// [`Checker::http_url`] for an identity endpoint (issuer, JWKS, introspection, token
    /// endpoint): `https`, unless the host is loopback or the operator opted out.
    fn identity_url(&mut self, at: &str, value: &str, allow_insecure: bool) -> Option<url::Url> {
        let url = self.http_url(at, value)?;
        if !allow_insecure && crate::auth::discovery::needs_tls(&url) {
            self.error(
                at,
                "identity endpoints must use https (plain http is allowed on loopback only; `allow_insecure_http: true` opts out for test setups)",
            );
            return None;
        }
        Some(url)
    }

    fn introspection(
        &mut self,
        at: &str,
        raw: &RawIntrospection,
        allow_insecure_http: bool,
    ) -> Option<Introspection> {
        let client_id = self.expand(&format!("{at}.client_id"), &raw.client_id)?;
        let client_secret = self.expand(&format!("{at}.client_secret"), &raw.client_secret)?;
        if client_id.is_empty() || client_secret.is_empty() {
            self.error(at, "client_id and client_secret must not be empty");
            return None;
        }
        let endpoint = match &raw.endpoint {
            None => None,
            Some(u) => {
                let at = format!("{at}.endpoint");
                let u = self.expand(&at, u)?;
                Some(self.identity_url(&at, &u, allow_insecure_http)?)
            }
        };
        let cache_max = match &raw.cache_max {
            None => DEFAULT_INTROSPECTION_CACHE_MAX,
            Some(text) => match units::parse_duration(text) {
                Ok(d) => d,
                Err(e) => {
                    self.error(&format!("{at}.cache_max"), e);
                    DEFAULT_INTROSPECTION_CACHE_MAX
                }
            },
        };
        let max_in_flight = match raw.max_in_flight {
            None => crate::config::DEFAULT_INTROSPECTION_MAX_IN_FLIGHT,
            Some(0) => {
                self.error(&format!("{at}.max_in_flight"), "must be at least 1");
                1
            }
            Some(n) => n,
        };
        let token_types = self.token_types(
            &format!("{at}.token_types"),
            raw.token_types.as_deref(),
            &[
                "access_token",
                "bearer",
                "urn:ietf:params:oauth:token-type:access_token",
                "refresh_token",
                "urn:ietf:params:oauth:token-type:refresh_token",
                "n_a",
                "dpop",
            ],
            &crate::config::DEFAULT_INTROSPECTION_TOKEN_TYPES,
        );
        Some(Introspection {
            client_id,
            client_secret: Secret::new(client_secret),
            endpoint,
            cache_max,
            max_in_flight,
            token_types,
        })
    }

    fn name(&mut self, at: &str, name: &str) {
        let ok = !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if !ok {
            self.error(
                at,
                "use letters, digits, `-`, `_` or `.` (the name is a metric label)",
            );
        }
    }

    fn auth(
        &mut self,
        at: &str,
        raw: &RawAuth,
        issuer_names: &HashMap<&str, usize>,
        has_public_url: bool,
    ) -> Option<RouteAuth> {
        if !has_public_url {
            self.error(
                at,
                "a protected route needs `public_url`: it is the audience tokens must carry",
            );
        }
        if raw.issuers.is_empty() {
            self.error(&format!("{at}.issuers"), "name at least one issuer");
        }
        let mut issuers = Vec::new();
        for (i, name) in raw.issuers.iter().enumerate() {
            match issuer_names.get(name.as_str()) {
                Some(index) => issuers.push(*index),
                None => self.error(
                    &format!("{at}.issuers[{i}]"),
                    format!("no issuer named `{name}` in `issuers`"),
                ),
            }
        }
        for (key, scopes) in [
            ("required_scopes", &raw.required_scopes),
            ("scopes_supported", &raw.scopes_supported),
        ] {
            for (i, scope) in scopes.iter().enumerate() {
                if !valid_scope(scope) {
                    self.error(
                        &format!("{at}.{key}[{i}]"),
                        "a scope is printable ASCII without spaces, quotes or backslashes",
                    );
                }
            }
        }
        let resource_documentation = match &raw.resource_documentation {
            None => None,
            Some(u) => {
                let at = format!("{at}.resource_documentation");
                let u = self.expand(&at, u)?;
                Some(self.http_url(&at, &u)?)
            }
        };
        let scopes_supported = if raw.scopes_supported.is_empty() {
            raw.required_scopes.clone()
        } else {
            raw.scopes_supported.clone()
        };
        Some(RouteAuth {
            issuers,
            required_scopes: raw.required_scopes.clone(),
            scopes_supported,
            resource_name: raw.resource_name.clone(),
            resource_documentation,
        })
    }

    fn route(
        &mut self,
        at: &str,
        raw: &RawRoute,
        issuer_names: &HashMap<&str, usize>,
    ) -> Option<Route> {
        self.name(&format!("{at}.name"), &raw.name);
        let upstream_auth = match &raw.upstream_auth {
            None => {
                if raw.auth.is_some() {
                    self.warnings.push(format!(
                        "route `{}` has no `upstream_auth`: its upstream receives no credential",
                        raw.name
                    ));
                }
                Some(UpstreamAuth::None)
            }
            Some(u) => self.upstream_auth(
                &format!("{at}.upstream_auth"),
                u,
                issuer_names,
                raw.auth.is_some(),
            ),
        };
        let policy = match &raw.policy {
            None => None,
            Some(p) => {
                if raw.auth.is_none() {
                    self.error(
                        &format!("{at}.policy"),
                        "a policy needs an `auth` block: scopes come from verified tokens",
                    );
                }
                Some(self.policy(&format!("{at}.policy"), p))
            }
        };
        let path_prefix = self.path_prefix(&format!("{at}.match.path"), &raw.matcher.path);
        let host = match &raw.matcher.host {
            None => None,
            Some(h) => self.host(&format!("{at}.match.host"), h),
        };
        let public_url = match &raw.public_url {
            None => None,
            Some(u) => self.public_url(&format!("{at}.public_url"), u),
        };
        let upstream = self.upstream(at, raw);
        let allowed_origins = self.allowed_origins(
            &format!("{at}.allowed_origins"),
            raw.allowed_origins.as_deref().unwrap_or_default(),
        );
        let auth = match &raw.auth {
            None => None,
            Some(a) => Some(self.auth(
                &format!("{at}.auth"),
                a,
                issuer_names,
                raw.public_url.is_some(),
            )?),
        };
        Some(Route {
            name: raw.name.clone(),
            host,
            path_prefix: path_prefix?,
            public_url,
            upstream: upstream?,
            auth,
            upstream_auth: upstream_auth?,
            policy,
            allowed_origins,
        })
    }

    /// `limits`: client-connection timeouts (whole seconds, 1s to 1h) and the connection
    /// limit. Pingora counts keep-alive timeouts in whole seconds.
    fn client_limits(&mut self, raw: Option<&super::raw::RawLimits>) -> super::ClientLimits {
        let defaults = super::ClientLimits::default();
        let Some(raw) = raw else { return defaults };
        let mut timeout = |key: &str, text: Option<&str>, default: std::time::Duration| {
            let Some(text) = text else { return default };
            match units::parse_duration(text) {
                Ok(d) if d.subsec_nanos() == 0 && (1..=3600).contains(&d.as_secs()) => d,
                _ => {
                    self.error(
                        &format!("limits.{key}"),
                        "whole seconds from 1s up to 1h, such as `30s`",
                    );
                    default
                }
            }
        };
        let idle_timeout = timeout(
            "client_idle_timeout",
            raw.client_idle_timeout.as_deref(),
            defaults.idle_timeout,
        );
        let header_timeout = timeout(
            "header_timeout",
            raw.header_timeout.as_deref(),
            defaults.header_timeout,
        );
        let body_timeout = timeout(
            "body_timeout",
            raw.body_timeout.as_deref(),
            defaults.body_timeout,
        );
        let max_connections = match raw.max_connections {
            None => defaults.max_connections,
            Some(0) => {
                self.error("limits.max_connections", "must be at least 1");
                defaults.max_connections
            }
            Some(n) => n,
        };
        super::ClientLimits {
            idle_timeout,
            header_timeout,
            body_timeout,
            max_connections,
        }
    }

    /// `allowed_origins`: each an origin as browsers send it, `scheme://host[:port]`
    /// (http or https, no path, no wildcard), kept in its serialised form.
    fn allowed_origins(&mut self, at: &str, raw: &[String]) -> Vec<String> {
        let mut origins = Vec::new();
        for (i, text) in raw.iter().enumerate() {
            let at = format!("{at}[{i}]");
            let Some(text) = self.expand(&at, text) else {
                continue;
            };
            match crate::config::origin::serialise(&text) {
                Ok(origin) => {
                    if !origins.contains(&origin) {
                        origins.push(origin);
                    }
                }
                Err(why) => self.error(&at, why),
            }
        }
        origins
    }

    fn upstream_auth(
        &mut self,
        at: &str,
        raw: &RawUpstreamAuth,
        issuer_names: &HashMap<&str, usize>,
        protected: bool,
    ) -> Option<UpstreamAuth> {
        if raw.passthrough.is_some() {
            self.error(
                &format!("{at}.passthrough"),
                "token passthrough does not exist: the MCP specification forbids forwarding a token issued for the gateway; use token_exchange (the upstream gets its own token for the same user), client_credentials, static or none",
            );
            return None;
        }
        let chosen = [
            raw.token_exchange.is_some(),
            raw.client_credentials.is_some(),
            raw.static_.is_some(),
            raw.none.is_some(),
        ]
        .iter()
        .filter(|x| **x)
        .count();
        if chosen != 1 {
            self.error(
                at,
                "choose exactly one of token_exchange, client_credentials, static, none",
            );
            return None;
        }
        if let Some(g) = &raw.token_exchange {
            if !protected {
                self.error(
                    &format!("{at}.token_exchange"),
                    "token exchange needs the caller's token: give the route an `auth` block",
                );
            }
            let grant = self.grant(&format!("{at}.token_exchange"), g, issuer_names, true)?;
            return Some(UpstreamAuth::TokenExchange(grant));
        }
        if let Some(g) = &raw.client_credentials {
            let grant = self.grant(&format!("{at}.client_credentials"), g, issuer_names, false)?;
            return Some(UpstreamAuth::ClientCredentials(grant));
        }
        if let Some(st) = &raw.static_ {
            return self.static_credential(&format!("{at}.static"), st);
        }
        Some(UpstreamAuth::None)
    }

    fn static_credential(&mut self, at: &str, raw: &RawStatic) -> Option<UpstreamAuth> {
        let header = raw.header.to_ascii_lowercase();
        if http::HeaderName::from_bytes(header.as_bytes()).is_err() {
            self.error(&format!("{at}.header"), "not a valid header name");
            return None;
        }
        if matches!(
            header.as_str(),
            "host" | "content-length" | "transfer-encoding" | "connection"
        ) {
            self.error(
                &format!("{at}.header"),
                "this header is managed by the gateway",
            );
            return None;
        }
        let value = match (&raw.value, &raw.value_file) {
            (Some(v), None) => self.expand(&format!("{at}.value"), v)?,
            (None, Some(path)) => {
                let at = format!("{at}.value_file");
                let path = self.expand(&at, path)?;
                match self.read_secret(&at, &path) {
                    Ok(v) => v.trim_end_matches(['\n', '\r']).to_string(),
                    Err(e) => {
                        self.error(&at, format!("cannot read `{path}`: {e}"));
                        return None;
                    }
                }
            }
            _ => {
                self.error(at, "give exactly one of `value` and `value_file`");
                return None;
            }
        };
        if value.is_empty() || http::HeaderValue::from_str(&value).is_err() {
            self.error(at, "the value is empty or not a valid header value");
            return None;
        }
        Some(UpstreamAuth::Static {
            header,
            value: Secret::new(value),
        })
    }

    fn grant(
        &mut self,
        at: &str,
        raw: &RawGrant,
        issuer_names: &HashMap<&str, usize>,
        exchange: bool,
    ) -> Option<Grant> {
        let issuer = match &raw.issuer {
            None => None,
            Some(name) => match issuer_names.get(name.as_str()) {
                Some(i) => Some(*i),
                None => {
                    self.error(
                        &format!("{at}.issuer"),
                        format!("no issuer named `{name}` in `issuers`"),
                    );
                    return None;
                }
            },
        };
        let allow_insecure_http = raw.allow_insecure_http.unwrap_or(false);
        if allow_insecure_http {
            self.warnings.push(format!(
                "{at}: allow_insecure_http is on: client secrets and subject tokens may travel over plain HTTP (test setups only)"
            ));
        }
        let token_endpoint = match &raw.token_endpoint {
            None => None,
            Some(u) => {
                let at = format!("{at}.token_endpoint");
                let u = self.expand(&at, u)?;
                Some(self.identity_url(&at, &u, allow_insecure_http)?)
            }
        };
        if issuer.is_none() && token_endpoint.is_none() {
            self.error(
                at,
                "name an `issuer` (its discovered token endpoint) or a `token_endpoint`",
            );
            return None;
        }
        let client_id = self.expand(&format!("{at}.client_id"), &raw.client_id)?;
        let secret = match &raw.client_secret {
            None => None,
            Some(s) => Some(Secret::new(self.expand(&format!("{at}.client_secret"), s)?)),
        };
        let client = match raw.client_auth.as_deref().unwrap_or("client_secret_basic") {
            method @ ("client_secret_basic" | "client_secret_post") => {
                let Some(secret) = secret else {
                    self.error(
                        &format!("{at}.client_secret"),
                        format!("{method} needs a client_secret"),
                    );
                    return None;
                };
                if method == "client_secret_basic" {
                    GrantClient::Basic { client_id, secret }
                } else {
                    GrantClient::Post { client_id, secret }
                }
            }
            "private_key_jwt" => {
                let key_at = format!("{at}.private_key_file");
                let Some(path) = &raw.private_key_file else {
                    self.error(&key_at, "private_key_jwt needs a private_key_file");
                    return None;
                };
                let path = self.expand(&key_at, path)?;
                let pem = match self.read_secret(&key_at, &path) {
                    Ok(pem) => pem,
                    Err(e) => {
                        self.error(&key_at, format!("cannot read `{path}`: {e}"));
                        return None;
                    }
                };
                if let Err(e) = crate::exchange::SigningKey::from_pem(&pem) {
                    self.error(&key_at, format!("`{path}`: {e}"));
                    return None;
                }
                GrantClient::PrivateKeyJwt {
                    client_id,
                    key_pem: Secret::new(pem),
                    key_id: raw.key_id.clone(),
                }
            }
            _ => {
                self.error(
                    &format!("{at}.client_auth"),
                    "use client_secret_basic, client_secret_post or private_key_jwt",
                );
                return None;
            }
        };
        let audience = match &raw.audience {
            None => None,
            Some(a) => Some(self.expand(&format!("{at}.audience"), a)?),
        };
        let resource = match &raw.resource {
            None => None,
            Some(r) => Some(self.expand(&format!("{at}.resource"), r)?),
        };
        if exchange && audience.is_none() && resource.is_none() {
            self.error(at, "name the upstream with `audience` and/or `resource`");
            return None;
        }
        let scopes = match &raw.scopes {
            None => GrantScopes::Fixed(Vec::new()),
            Some(serde_yaml::Value::String(s)) if s == "per_operation" && exchange => {
                GrantScopes::PerOperation
            }
            Some(serde_yaml::Value::Sequence(items)) => {
                let scopes: Vec<String> = items
                    .iter()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect();
                if scopes.len() != items.len() || !scopes.iter().all(|s| valid_scope(s)) {
                    self.error(&format!("{at}.scopes"), "a list of scope strings");
                    return None;
                }
                GrantScopes::Fixed(scopes)
            }
            Some(_) => {
                let hint = if exchange {
                    "`per_operation` or a list of scopes"
                } else {
                    "a list of scopes"
                };
                self.error(&format!("{at}.scopes"), format!("expected {hint}"));
                return None;
            }
        };
        let timeout = match &raw.timeout {
            None => DEFAULT_GRANT_TIMEOUT,
            Some(t) => match units::parse_duration(t) {
                Ok(d) if !d.is_zero() => d,
                _ => {
                    self.error(&format!("{at}.timeout"), "a duration such as `5s`");
                    DEFAULT_GRANT_TIMEOUT
                }
            },
        };
        let base_scopes = raw.base_scopes.clone().unwrap_or_default();
        if !base_scopes.iter().all(|s| valid_scope(s)) {
            self.error(&format!("{at}.base_scopes"), "a list of scope strings");
        }
        if raw.base_scopes.is_some() && scopes != GrantScopes::PerOperation {
            self.error(
                &format!("{at}.base_scopes"),
                "base_scopes applies to `scopes: per_operation` only",
            );
        }
        if scopes == GrantScopes::PerOperation && base_scopes.is_empty() {
            self.warnings.push(format!(
                "{at}: scopes: per_operation without base_scopes: requests whose operations need no scope (initialize, list methods) are refused rather than given the authorization server's default scope"
            ));
        }
        Some(Grant {
            issuer,
            token_endpoint,
            client,
            audience,
            resource,
            scopes,
            timeout,
            base_scopes,
            allow_insecure_http,
        })
    }

    fn policy(&mut self, at: &str, raw: &RawPolicy) -> Policy {
        let default_allow = match raw.default.as_deref() {
            None | Some("deny") => false,
            Some("allow") => true,
            Some(_) => {
                self.error(&format!("{at}.default"), "must be `deny` or `allow`");
                false
            }
        };
        let mut set = |kind: &str, map: &std::collections::BTreeMap<String, Vec<String>>| {
            let mut rules = Vec::new();
            for (pattern, scopes) in map {
                let path = format!("{at}.{kind}.{pattern}");
                if pattern.is_empty() {
                    self.error(&path, "an empty pattern matches nothing");
                }
                for scope in scopes {
                    if !valid_scope(scope) {
                        self.error(
                            &path,
                            "a scope is printable ASCII without spaces, quotes or backslashes",
                        );
                    }
                }
                rules.push(Rule {
                    glob: Glob::new(pattern),
                    scopes: scopes.clone(),
                });
            }
            let (set, ambiguous) = RuleSet::new(rules);
            for (a, b) in ambiguous {
                self.error(
                    &format!("{at}.{kind}"),
                    format!("patterns `{a}` and `{b}` can match the same name with equal specificity; make one more specific"),
                );
            }
            set
        };
        let tools = set("tools", &raw.tools);
        let resources = set("resources", &raw.resources);
        let prompts = set("prompts", &raw.prompts);
        let methods = set("methods", &raw.methods);
        Policy {
            default_allow,
            tools,
            resources,
            prompts,
            methods,
        }
    }

    fn path_prefix(&mut self, at: &str, value: &str) -> Option<String> {
        let value = self.expand(at, value)?;
        if !value.starts_with('/') || value.contains(['?', '#', ' ']) {
            self.error(
                at,
                "must be an absolute path such as `/everything/mcp` (no query, fragment or spaces)",
            );
            return None;
        }
        let trimmed = value.trim_end_matches('/');
        Some(if trimmed.is_empty() {
            "/".to_string()
        } else {
            trimmed.to_string()
        })
    }

    fn host(&mut self, at: &str, value: &str) -> Option<String> {
        let value = self.expand(at, value)?.to_ascii_lowercase();
        let ok = !value.is_empty()
            && value
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.'));
        if !ok {
            self.error(
                at,
                "must be a host name such as `mcp.example.com` (no scheme or port)",
            );
            return None;
        }
        Some(value)
    }

    fn public_url(&mut self, at: &str, value: &str) -> Option<url::Url> {
        let value = self.expand(at, value)?;
        let url = self.http_url(at, &value)?;
        if url.query().is_some() {
            self.error(at, "must not have a query");
            return None;
        }
        Some(url)
    }

    /// An absolute http(s) URL with a host, no credentials and no fragment.
    fn http_url(&mut self, at: &str, value: &str) -> Option<url::Url> {
        let url = match url::Url::parse(value) {
            Ok(u) => u,
            Err(e) => {
                self.error(at, format!("not a valid absolute URL ({e})"));
                return None;
            }
        };
        if !matches!(url.scheme(), "http" | "https") {
            self.error(at, "the scheme must be http or https");
            return None;
        }
        if url.host_str().is_none_or(str::is_empty) {
            self.error(at, "the URL needs a host");
            return None;
        }
        if !url.username().is_empty() || url.password().is_some() {
            self.error(
                at,
                "credentials in the URL are not allowed: use upstream_auth instead",
            );
            return None;
        }
        if url.fragment().is_some() {
            self.error(at, "must not have a fragment");
            return None;
        }
        Some(url)
    }

    fn upstream(&mut self, at: &str, raw: &RawRoute) -> Option<Upstream> {
        let timeouts = self.timeouts(&format!("{at}.upstream.timeouts"), &raw.upstream.timeouts);
        let url_at = format!("{at}.upstream.url");
        let value = self.expand(&url_at, &raw.upstream.url)?;
        let url = self.http_url(&url_at, &value)?;
        if url.query().is_some() {
            self.error(&url_at, "must not have a query");
            return None;
        }
        let ca_certs = match &raw.upstream.tls {
            None => None,
            Some(tls) => {
                let at = format!("{at}.upstream.tls.ca_file");
                if url.scheme() != "https" {
                    self.error(&at, "a CA file only applies to https upstreams");
                    return None;
                }
                Some(self.ca_file(&at, &tls.ca_file)?)
            }
        };
        let host = url.host_str()?.trim_matches(['[', ']']).to_string();
        let port = url.port_or_known_default()?;
        let authority = match url.port() {
            Some(p) => format!("{}:{p}", url.host_str()?),
            None => url.host_str()?.to_string(),
        };
        let base_path = url.path().trim_end_matches('/').to_string();
        let (connect_timeout, read_timeout, stream_idle_timeout) = timeouts;
        Some(Upstream {
            tls: url.scheme() == "https",
            host,
            port,
            authority,
            base_path,
            connect_timeout,
            read_timeout,
            stream_idle_timeout,
            ca_certs,
            forward_cookies: raw.upstream.forward_cookies.unwrap_or(false),
            url,
        })
    }

    /// Reads a PEM file of CA certificates; each must parse as X.509.
    fn ca_file(&mut self, at: &str, path: &str) -> Option<Vec<Vec<u8>>> {
        let path = self.expand(at, path)?;
        let pem = match self.read(&path) {
            Ok(pem) => pem,
            Err(e) => {
                self.error(at, format!("cannot read `{path}`: {e}"));
                return None;
            }
        };
        let certs: Result<Vec<Vec<u8>>, _> = rustls_pemfile::certs(&mut pem.as_slice())
            .map(|c| c.map(|der| der.as_ref().to_vec()))
            .collect();
        match certs {
            Ok(certs)
                if !certs.is_empty()
                    && certs
                        .iter()
                        .all(|der| x509_parser::parse_x509_certificate(der).is_ok()) =>
            {
                Some(certs)
            }
            _ => {
                self.error(at, format!("`{path}` holds no valid PEM certificate"));
                None
            }
        }
    }

    fn timeouts(
        &mut self,
        at: &str,
        raw: &Option<RawTimeouts>,
    ) -> (
        std::time::Duration,
        std::time::Duration,
        std::time::Duration,
    ) {
        let mut pick = |key: &str, value: Option<&String>, default| match value {
            None => default,
            Some(text) => match units::parse_duration(text) {
                Ok(d) if !d.is_zero() => d,
                Ok(_) => {
                    self.error(&format!("{at}.{key}"), "must be more than 0");
                    default
                }
                Err(e) => {
                    self.error(&format!("{at}.{key}"), e);
                    default
                }
            },
        };
        let raw = raw.as_ref();
        (
            pick(
                "connect",
                raw.and_then(|t| t.connect.as_ref()),
                DEFAULT_CONNECT_TIMEOUT,
            ),
            pick(
                "read",
                raw.and_then(|t| t.read.as_ref()),
                DEFAULT_READ_TIMEOUT,
            ),
            pick(
                "stream_idle",
                raw.and_then(|t| t.stream_idle.as_ref()),
                DEFAULT_STREAM_IDLE_TIMEOUT,
            ),
        )
    }

    fn check_unique(&mut self, routes: &[Arc<Route>]) {
        let mut names: HashMap<&str, usize> = HashMap::new();
        let mut matches: HashMap<(Option<&str>, &str), &str> = HashMap::new();
        for (i, route) in routes.iter().enumerate() {
            if let Some(first) = names.insert(&route.name, i) {
                let _ = first;
                self.error(
                    &format!("routes[{i}].name"),
                    format!("duplicate route name `{}`", route.name),
                );
            }
            let key = (route.host.as_deref(), route.path_prefix.as_str());
            if let Some(other) = matches.insert(key, &route.name) {
                self.error(
                    &format!("routes[{i}].match"),
                    format!("same host and path as route `{other}`: one of them could never match"),
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errors(text: &str) -> Vec<String> {
        match validate("gw.yaml", text) {
            Ok(_) => vec![],
            Err(errors) => errors.iter().map(ToString::to_string).collect(),
        }
    }

    const GOOD: &str = "\
listen: 127.0.0.1:8080
admin:
  listen: 127.0.0.1:9090
routes:
  - name: everything
    match: { path: /everything/mcp/ }
    upstream:
      url: http://127.0.0.1:3001/mcp
      timeouts: { connect: 2s, read: 30s }
";

    #[test]
    fn shutdown_phases_default_and_are_bounded() {
        let loaded = validate("gw.yaml", GOOD).unwrap();
        assert_eq!(
            loaded.config.shutdown_grace,
            crate::config::DEFAULT_SHUTDOWN_GRACE
        );
        assert_eq!(
            loaded.config.shutdown_drain,
            crate::config::DEFAULT_SHUTDOWN_DRAIN
        );
        let set = format!("shutdown_drain: 0s\nshutdown_grace: 30s\n{GOOD}");
        let loaded = validate("gw.yaml", &set).unwrap();
        assert_eq!(loaded.config.shutdown_drain, std::time::Duration::ZERO);
        assert_eq!(
            loaded.config.shutdown_grace,
            std::time::Duration::from_secs(30)
        );
        let bad = errors(&format!("shutdown_drain: 2h\nshutdown_grace: soon\n{GOOD}"));
        assert!(bad.iter().any(|e| e.contains("shutdown_drain")), "{bad:?}");
        assert!(bad.iter().any(|e| e.contains("shutdown_grace")), "{bad:?}");
    }

    #[test]
    fn batch_limit_and_cookie_forwarding_default_and_are_checked() {
        let loaded = validate("gw.yaml", GOOD).unwrap();
        assert_eq!(loaded.config.max_batch, crate::config::DEFAULT_MAX_BATCH);
        assert!(!loaded.config.routes[0].upstream.forward_cookies);
        let set = format!("limits: {{ max_batch: 5 }}\n{GOOD}")
            .replace("      url:", "      forward_cookies: true\n      url:");
        let loaded = validate("gw.yaml", &set).unwrap();
        assert_eq!(loaded.config.max_batch, 5);
        assert!(loaded.config.routes[0].upstream.forward_cookies);
        for bad in ["0", "10001"] {
            let errs = errors(&format!("limits: {{ max_batch: {bad} }}\n{GOOD}"));
            assert!(
                errs.len() == 1 && errs[0].contains("limits.max_batch"),
                "{errs:?}"
            );
        }
    }

    #[test]
    fn the_sse_event_cap_defaults_and_is_bounded() {
        let loaded = validate("gw.yaml", GOOD).unwrap();
        assert_eq!(
            loaded.config.max_sse_event_bytes,
            crate::config::DEFAULT_MAX_SSE_EVENT
        );
        let set = format!("limits:\n  max_sse_event: 64KiB\n{GOOD}");
        let loaded = validate("gw.yaml", &set).unwrap();
        assert_eq!(loaded.config.max_sse_event_bytes, 64 << 10);
        for bad in ["100", "lots"] {
            let errs = errors(&format!("limits:\n  max_sse_event: {bad}\n{GOOD}"));
            assert!(
                errs.iter().any(|e| e.contains("limits.max_sse_event")),
                "{errs:?}"
            );
        }
    }

    #[test]
    fn a_good_file_gives_typed_settings() {
        let loaded = validate("gw.yaml", GOOD).unwrap();
        let route = &loaded.config.routes[0];
        assert_eq!(route.path_prefix, "/everything/mcp");
        assert_eq!(route.upstream.base_path, "/mcp");
        assert_eq!(route.upstream.authority, "127.0.0.1:3001");
        assert_eq!(route.upstream.connect_timeout.as_secs(), 2);
        assert!(!route.upstream.tls);
        assert_eq!(loaded.warnings.len(), 1, "public route warned about");
    }

    #[test]
    fn unknown_key_is_located() {
        let text = GOOD.replace("      url:", "      colour: red\n      url:");
        let errs = errors(&text);
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert!(errs[0].starts_with("gw.yaml:8:"), "{}", errs[0]);
        assert!(errs[0].contains("routes[0].upstream"), "{}", errs[0]);
        assert!(errs[0].contains("unknown field `colour`"), "{}", errs[0]);
    }

    #[test]
    fn every_semantic_error_is_reported_with_its_line() {
        let text = GOOD
            .replace("http://127.0.0.1:3001/mcp", "ftp://x/mcp")
            .replace("listen: 127.0.0.1:8080", "listen: nowhere")
            .replace("connect: 2s", "connect: 2 fortnights");
        let errs = errors(&text);
        assert_eq!(errs.len(), 3, "{errs:?}");
        assert!(errs.iter().any(|e| e.starts_with("gw.yaml:1:9: listen:")));
        assert!(errs
            .iter()
            .any(|e| e.starts_with("gw.yaml:8:12: routes[0].upstream.url: the scheme")));
        assert!(errs
            .iter()
            .any(|e| e.contains("routes[0].upstream.timeouts.connect")));
    }

    #[test]
    fn missing_variable_is_named_and_no_value_is_printed() {
        std::env::set_var("DRAWBRIDGE_TEST_UPSTREAM_HOST", "10.9.8.7");
        let text = GOOD.replace(
            "127.0.0.1:3001",
            "${DRAWBRIDGE_TEST_UPSTREAM_HOST}:${DRAWBRIDGE_TEST_NOPE}",
        );
        let errs = errors(&text);
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert!(errs[0].contains("`DRAWBRIDGE_TEST_NOPE` is not set"));
        assert!(!errs[0].contains("10.9.8.7"));
    }

    #[test]
    fn credentials_in_urls_are_refused_without_echoing_them() {
        let text = GOOD.replace("http://127.0.0.1", "http://user:hunter2@127.0.0.1");
        let errs = errors(&text);
        assert_eq!(errs.len(), 1);
        assert!(errs[0].contains("credentials in the URL"));
        assert!(!errs[0].contains("hunter2"));
    }

    #[test]
    fn duplicate_names_and_identical_matches_are_errors() {
        let route = "  - name: everything\n    match: { path: /everything/mcp }\n    upstream: { url: http://127.0.0.1:1/ }\n";
        let errs = errors(&format!("{GOOD}{route}"));
        assert_eq!(errs.len(), 2, "{errs:?}");
        assert!(errs[0].contains("duplicate route name `everything`"));
        assert!(errs[1].contains("same host and path as route `everything`"));
    }

    #[test]
    fn session_keys_are_checked_and_never_echoed() {
        let key = "c2Vzc2lvbi1rZXktZm9yLXRlc3RzLTAxMjM0NTY3ODk=";
        let good = format!(
            "{GOOD}sessions:\n  keys:\n    - {{ id: k1, secret: '{key}' }}\n  max_age: 12h\n"
        );
        let loaded = validate("gw.yaml", &good).unwrap();
        let sessions = loaded.config.sessions.unwrap();
        assert_eq!(sessions.keys[0].0, "k1");
        assert_eq!(
            sessions.max_age,
            Some(std::time::Duration::from_secs(12 * 3600))
        );
        let weak = format!("{GOOD}sessions:\n  keys:\n    - {{ id: k1, secret: 'AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=' }}\n");
        let errs = errors(&weak);
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert!(errs[0].starts_with("gw.yaml:"), "{errs:?}");
        let short = format!("{GOOD}sessions:\n  keys:\n    - {{ id: k1, secret: 'c2hvcnQ=' }}\n");
        let errs = errors(&short);
        assert!(errs[0].contains("sessions.keys[0]"), "{errs:?}");
        assert!(!errs[0].contains("c2hvcnQ"), "{errs:?}");
        let empty = format!("{GOOD}sessions:\n  keys: []\n");
        assert_eq!(errors(&empty).len(), 1);
    }

    #[test]
    fn passthrough_is_refused_with_the_reason() {
        let text = format!("{GOOD}    upstream_auth: {{ passthrough: true }}\n");
        let errs = errors(&text);
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert!(errs[0]
            .contains("routes[0].upstream_auth.passthrough: token passthrough does not exist"));
    }

    #[test]
    fn upstream_auth_shapes() {
        let with = |block: &str| format!("{GOOD}    upstream_auth: {block}\n");
        assert!(errors(&with("{ none: {} }")).is_empty());
        std::env::set_var("DRAWBRIDGE_TEST_API_KEY", "k-123");
        let loaded = validate(
            "gw.yaml",
            &with("{ static: { header: X-Api-Key, value: '${DRAWBRIDGE_TEST_API_KEY}' } }"),
        )
        .unwrap();
        match &loaded.config.routes[0].upstream_auth {
            UpstreamAuth::Static { header, value } => {
                assert_eq!(header, "x-api-key");
                assert_eq!(value.expose(), "k-123");
            }
            other => panic!("{other:?}"),
        }
        let errs = errors(&with("{ none: {}, static: { header: x, value: y } }"));
        assert!(errs[0].contains("exactly one"), "{errs:?}");
        let errs = errors(&with("{ token_exchange: { token_endpoint: 'https://idp/token', client_id: gw, client_secret: s, audience: up } }"));
        assert!(errs[0].contains("needs the caller's token"), "{errs:?}");
        let errs = errors(&with(
            "{ client_credentials: { client_id: gw, client_secret: s } }",
        ));
        assert!(errs[0].contains("name an `issuer`"), "{errs:?}");
        let errs = errors(&with("{ client_credentials: { token_endpoint: 'https://idp/token', client_id: gw, client_auth: client_secret_post } }"));
        assert!(errs[0].contains("needs a client_secret"), "{errs:?}");
    }

    #[test]
    fn policies_need_auth_and_unambiguous_patterns() {
        let text = format!(
            "{GOOD}    policy:\n      default: maybe\n      tools:\n        \"get-*\": [read]\n        \"*-env\": [env]\n"
        );
        let errs = errors(&text);
        assert_eq!(errs.len(), 3, "{errs:?}");
        assert!(errs.iter().any(|e| e.contains("needs an `auth` block")));
        assert!(errs
            .iter()
            .any(|e| e.contains("routes[0].policy.default: must be")));
        assert!(errs
            .iter()
            .any(|e| e.contains("`*-env` and `get-*` can match the same name")));
    }

    #[test]
    fn ca_files_must_exist_hold_certificates_and_serve_https() {
        let with_ca = |url: &str, file: &str| {
            GOOD.replace("http://127.0.0.1:3001/mcp", url).replace(
                "      timeouts:",
                &format!("      tls: {{ ca_file: {file} }}\n      timeouts:"),
            )
        };
        let errs = errors(&with_ca("http://127.0.0.1:1/", "/nonexistent.pem"));
        assert!(errs[0].contains("only applies to https"), "{errs:?}");
        let errs = errors(&with_ca("https://127.0.0.1:1/", "/nonexistent.pem"));
        assert!(
            errs[0].contains("routes[0].upstream.tls.ca_file: cannot read"),
            "{errs:?}"
        );
        let junk = std::env::temp_dir().join("drawbridge-test-not-a-cert.pem");
        std::fs::write(&junk, "hello").unwrap();
        let errs = errors(&with_ca(
            "https://127.0.0.1:1/",
            &junk.display().to_string(),
        ));
        assert!(errs[0].contains("no valid PEM certificate"), "{errs:?}");
    }

    #[test]
    fn empty_file_and_no_routes() {
        assert!(errors("")[0].contains("empty"));
        assert!(errors("listen: 127.0.0.1:1\n")[0].contains("at least one route"));
    }
    #[test]
    fn client_limits_have_defaults_and_are_checked() {
        let loaded = validate("gw.yaml", GOOD).unwrap();
        assert_eq!(loaded.config.client, super::super::ClientLimits::default());
        let set = format!(
            "limits:\n  client_idle_timeout: 5s\n  header_timeout: 2s\n  body_timeout: 7s\n  max_connections: 3\n{GOOD}"
        );
        let client = validate("gw.yaml", &set).unwrap().config.client;
        assert_eq!(client.idle_timeout, std::time::Duration::from_secs(5));
        assert_eq!(client.header_timeout, std::time::Duration::from_secs(2));
        assert_eq!(client.body_timeout, std::time::Duration::from_secs(7));
        assert_eq!(client.max_connections, 3);
        let bad = errors(&format!(
            "limits:\n  client_idle_timeout: 500ms\n  header_timeout: 2h\n  body_timeout: 0s\n  max_connections: 0\n{GOOD}"
        ));
        for key in [
            "limits.client_idle_timeout",
            "limits.header_timeout",
            "limits.body_timeout",
            "limits.max_connections",
        ] {
            assert!(bad.iter().any(|e| e.contains(key)), "{key}: {bad:?}");
        }
    }

    #[test]
    fn allowed_origins_are_exact_origins() {
        let good = format!(
            "{GOOD}    allowed_origins: [\"https://App.example.com\", \"http://127.0.0.1:8123\"]\n"
        );
        let loaded = validate("gw.yaml", &good).unwrap();
        assert_eq!(
            loaded.config.routes[0].allowed_origins,
            ["https://app.example.com", "http://127.0.0.1:8123"]
        );
        assert!(validate("gw.yaml", GOOD).unwrap().config.routes[0]
            .allowed_origins
            .is_empty());
        for bad in [
            "\"*\"",
            "\"https://*.example.com\"",
            "\"https://app.example.com/mcp\"",
            "null",
        ] {
            let errs = errors(&format!("{GOOD}    allowed_origins: [{bad}]\n"));
            assert!(
                errs.iter()
                    .any(|e| e.contains("routes[0].allowed_origins[0]")),
                "{bad}: {errs:?}"
            );
        }
    }
}
