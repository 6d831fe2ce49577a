//! Process-wide settings: shutdown phases, client-connection limits, session keys and
//! the log budget.

use super::Checker;
use crate::client_addr::{Cidr, TrustedProxies};
use crate::config::raw::{RawDns, RawLimits, RawLog, RawSessions};
use crate::config::{units, AccessLog, ClientLimits, DnsSettings, LogSettings, Sessions};
use crate::mcp::session::{self, SessionKeys};
use std::sync::Arc;

impl Checker<'_> {
    /// A shutdown phase's length: up to an hour, the default when absent.
    pub(super) fn shutdown_duration(
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

    /// `trusted_proxies`: address blocks, each checked; a block that trusts every address
    /// is allowed but warned about (any client could then choose the address it is
    /// logged under).
    pub(super) fn trusted_proxies(&mut self, raw: &[String]) -> TrustedProxies {
        let mut blocks = Vec::with_capacity(raw.len());
        for (i, text) in raw.iter().enumerate() {
            match Cidr::parse(text) {
                Ok(block) => {
                    if block.prefix() == 0 {
                        self.warnings.push(format!(
                            "trusted_proxies[{i}] `{text}` trusts every address: any client can choose the address it is logged under"
                        ));
                    }
                    blocks.push(block);
                }
                Err(why) => self.error(&format!("trusted_proxies[{i}]"), why),
            }
        }
        TrustedProxies::new(blocks)
    }

    /// `dns`: the refresh interval (1s to 1h) and the lookup timeout (100ms to 1m, and
    /// less than the interval).
    pub(super) fn dns_settings(&mut self, raw: Option<&RawDns>) -> DnsSettings {
        let defaults = DnsSettings::default();
        let Some(raw) = raw else { return defaults };
        let mut bounded =
            |key: &str, text: Option<&str>, min: u64, max: u64, what: &str, default| match text
                .map(units::parse_duration)
            {
                None => default,
                Some(Ok(d)) if (min..=max).contains(&(d.as_millis() as u64)) => d,
                Some(_) => {
                    self.error(key, what);
                    default
                }
            };
        let refresh = bounded(
            "dns.refresh",
            raw.refresh.as_deref(),
            1_000,
            3_600_000,
            "a duration from 1s to 1h, such as `30s`",
            defaults.refresh,
        );
        let timeout = bounded(
            "dns.timeout",
            raw.timeout.as_deref(),
            100,
            60_000,
            "a duration from 100ms to 1m, such as `5s`",
            defaults.timeout,
        );
        if timeout >= refresh {
            self.error("dns.timeout", "must be shorter than dns.refresh");
        }
        DnsSettings { refresh, timeout }
    }

    /// `log`: the access-line mode, refusal aggregation and its interval (1s to 1h).
    pub(super) fn log_settings(&mut self, raw: Option<&RawLog>) -> LogSettings {
        let defaults = LogSettings::default();
        let Some(raw) = raw else { return defaults };
        let access = match raw.access.as_deref() {
            None => defaults.access,
            Some("all") => AccessLog::All,
            Some("errors") => AccessLog::Errors,
            Some("off") => AccessLog::Off,
            Some(other) => match other
                .strip_prefix("sampled:")
                .and_then(|n| n.trim().parse::<std::num::NonZeroU32>().ok())
            {
                Some(n) => AccessLog::Sampled(n),
                None => {
                    self.error(
                        "log.access",
                        "must be `all`, `errors`, `sampled:N` (N a whole number from 1) or `off`",
                    );
                    defaults.access
                }
            },
        };
        let aggregate_refusals = match raw.refusals.as_deref() {
            None | Some("aggregate") => true,
            Some("all") => false,
            Some(_) => {
                self.error("log.refusals", "must be `aggregate` or `all`");
                true
            }
        };
        let interval = match raw.interval.as_deref().map(units::parse_duration) {
            None => defaults.interval,
            Some(Ok(d)) if (1..=3600).contains(&d.as_secs()) && d.subsec_nanos() == 0 => d,
            Some(_) => {
                self.error(
                    "log.interval",
                    "a whole number of seconds from 1s to 1h, such as `10s`",
                );
                defaults.interval
            }
        };
        LogSettings {
            access,
            aggregate_refusals,
            interval,
        }
    }

    /// `limits`: client-connection timeouts (whole seconds, 1s to 1h) and the connection
    /// limit. Pingora counts keep-alive timeouts in whole seconds.
    pub(super) fn client_limits(&mut self, raw: Option<&RawLimits>) -> ClientLimits {
        let defaults = ClientLimits::default();
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
        ClientLimits {
            idle_timeout,
            header_timeout,
            body_timeout,
            max_connections,
        }
    }

    pub(super) fn sessions(&mut self, raw: &RawSessions) -> Option<Sessions> {
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
        // Checks before the key bytes move into the prepared keys.
        let key_checks = keys
            .iter()
            .map(|(id, bytes)| (id.clone(), session::key_check(bytes)))
            .collect();
        let keys = match SessionKeys::new(keys) {
            Ok(keys) => Arc::new(keys),
            Err(e) => {
                self.error("sessions.keys", e);
                return None;
            }
        };
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
            keys,
            key_checks,
            max_age,
        })
    }
}
