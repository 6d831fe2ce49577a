//! Turns `gateway.yaml` text into a checked [`Config`], collecting every error it can find:
//! the shape of each part of the file (`structure`), then the meaning of each setting, by
//! concern (`limits`, `issuers`, `routes`, `upstream_auth`, `tls`).

mod arguments;
mod claims;
mod issuers;
mod limits;
mod on_behalf_of;
mod pins;
mod rate_limits;
mod routes;
mod structure;
mod tls;
mod upstream_auth;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use super::locate::{Locations, Position};
use super::raw::RawConfig;
use super::{
    env, units, Config, ConfigError, Issuer, Loaded, Route, DEFAULT_ADMIN_LISTEN, DEFAULT_LISTEN,
    DEFAULT_MAX_BATCH, DEFAULT_MAX_BODY, MAX_MAX_BATCH,
};

pub(super) fn validate(file: &str, text: &str) -> Result<Loaded, Vec<ConfigError>> {
    validate_for(file, text, false)
}

/// `pinning`: for `drawbridge pin`, which makes the lock files: one that does not exist
/// yet is no error.
pub(super) fn validate_for(
    file: &str,
    text: &str,
    pinning: bool,
) -> Result<Loaded, Vec<ConfigError>> {
    let locations = Locations::of(text);
    let raw: RawConfig = structure::parse_structure(file, text, &locations)?;
    let mut checker = Checker {
        file,
        locations: &locations,
        errors: Vec::new(),
        warnings: Vec::new(),
        files: Vec::new(),
        pinning,
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
    /// Checking for `drawbridge pin`: a missing lock file is no error.
    pinning: bool,
}

/// The groups of this process (effective and supplementary), from `/proc/self/status`;
/// none where that cannot be read (every group-readable secret file is then warned about).
#[cfg(unix)]
fn own_groups() -> Vec<u32> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    groups_in_status(&status)
}

/// `Gid:` (real, effective, saved, file system) and `Groups:` of a `/proc/PID/status`.
pub(in crate::config) fn groups_in_status(status: &str) -> Vec<u32> {
    status
        .lines()
        .filter_map(|line| {
            line.strip_prefix("Gid:")
                .or_else(|| line.strip_prefix("Groups:"))
        })
        .flat_map(|ids| ids.split_whitespace().filter_map(|id| id.parse().ok()))
        .collect()
}

impl Checker<'_> {
    /// Reads a file the configuration names, and remembers it.
    pub(super) fn read(&mut self, path: &str) -> std::io::Result<Vec<u8>> {
        self.files.push(path.into());
        std::fs::read(path)
    }

    /// [`Checker::read`], as UTF-8 text.
    pub(super) fn read_text(&mut self, path: &str) -> std::io::Result<String> {
        String::from_utf8(self.read(path)?)
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidData, "not UTF-8 text"))
    }

    /// [`Checker::read_text`] for a file holding a secret: warns when others may read
    /// it, or a group the gateway is not in. A group the gateway's own process belongs to
    /// may: that is how a Kubernetes Secret volume reaches a non-root container (owner
    /// root, group the pod's `fsGroup`, mode 0440), and how Debian shares keys
    /// (`root:ssl-cert`, 0640).
    pub(super) fn read_secret(&mut self, at: &str, path: &str) -> std::io::Result<String> {
        let text = self.read_text(path)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::{MetadataExt, PermissionsExt};
            if let Ok(meta) = std::fs::metadata(path) {
                let mode = meta.permissions().mode() & 0o777;
                let foreign_group = mode & 0o070 != 0 && !own_groups().contains(&meta.gid());
                if mode & 0o007 != 0 || foreign_group {
                    self.warnings.push(format!(
                        "{at}: `{path}` holds a secret but is readable by others or by a group the gateway is not in (mode {mode:o}, group {}); make it 0600 or 0400, or give it the gateway's group",
                        meta.gid()
                    ));
                }
            }
        }
        Ok(text)
    }

    pub(super) fn error(&mut self, path: &str, message: impl Into<String>) {
        self.errors.push(ConfigError {
            file: self.file.to_string(),
            position: Some(self.locations.position_of(path).unwrap_or(Position::TOP)),
            path: path.to_string(),
            message: message.into(),
        });
    }

    /// Expands `${VAR}` references; on error records it and returns `None`.
    pub(super) fn expand(&mut self, path: &str, value: &str) -> Option<String> {
        match env::interpolate(value) {
            Ok(v) => Some(v),
            Err(e) => {
                self.error(path, e.to_string());
                None
            }
        }
    }

    pub(super) fn socket_addr(&mut self, path: &str, value: &str) -> Option<String> {
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

    pub(super) fn config(&mut self, raw: RawConfig) -> Option<Config> {
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
        let tls = raw.tls.as_ref().map(|t| self.listener_tls(t));
        let log = self.log_settings(raw.log.as_ref());
        let trusted_proxies = self.trusted_proxies(&raw.trusted_proxies);
        let dns = self.dns_settings(raw.dns.as_ref());
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
        self.issuer_warnings(&issuers, &routes);
        if raw.tls.is_some() {
            self.tls_warnings(&routes);
        }
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
            // A `tls` block that failed its checks recorded an error: no config.
            tls: match tls {
                None => None,
                Some(checked) => Some(checked?),
            },
            log,
            dns,
            trusted_proxies,
        })
    }

    pub(super) fn name(&mut self, at: &str, name: &str) {
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
}

#[cfg(test)]
mod claims_tests;
#[cfg(test)]
mod pins_tests;
#[cfg(test)]
mod rate_limits_tests;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tls_tests;
