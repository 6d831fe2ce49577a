//! `rate_limit` blocks: on a route (`routes[].rate_limit`) and on a tool rule of its
//! policy (`policy.tools.NAME.rate_limit`). Resource, prompt and method rules take none.

use super::Checker;
use crate::config::raw::{RawPolicy, RawRateLimit, RawRule};
use crate::config::units;
use crate::ratelimit::{
    KeyKind, RateLimit, DEFAULT_MAX_KEYS, MAX_MAX_KEYS, MAX_PER, MAX_REQUESTS, MIN_PER,
};

impl Checker<'_> {
    /// One `rate_limit` block. `protected`: the route has an `auth` block, so requests
    /// have a verified subject to count by.
    pub(super) fn rate_limit(
        &mut self,
        at: &str,
        raw: &RawRateLimit,
        protected: bool,
    ) -> Option<RateLimit> {
        let requests = match u32::try_from(raw.requests) {
            Ok(n) if (1..=MAX_REQUESTS).contains(&n) => Some(n),
            _ => {
                self.error(
                    &format!("{at}.requests"),
                    format!("must be a whole number from 1 to {MAX_REQUESTS}"),
                );
                None
            }
        };
        let per = match units::parse_duration(&raw.per) {
            Ok(d) if (MIN_PER..=MAX_PER).contains(&d) => Some(d),
            Ok(_) => {
                self.error(&format!("{at}.per"), "must be from 1s to 24h");
                None
            }
            Err(e) => {
                self.error(&format!("{at}.per"), e);
                None
            }
        };
        let burst = match (raw.burst, requests) {
            // Not judged against a `requests` that is itself wrong.
            (None, requests) | (Some(_), requests @ None) => requests,
            (Some(b), Some(requests)) if b >= 1 && b <= u64::from(requests) => {
                u32::try_from(b).ok()
            }
            (Some(_), _) => {
                self.error(
                    &format!("{at}.burst"),
                    "must be from 1 to `requests`: a full bucket holds at most one period's requests",
                );
                None
            }
        };
        let key = match KeyKind::parse(&raw.key) {
            Some(KeyKind::Subject) if !protected => {
                self.error(
                    &format!("{at}.key"),
                    "`subject` needs an `auth` block: a public route has no verified subject (use `client` or `route`)",
                );
                None
            }
            Some(key) => Some(key),
            None => {
                self.error(
                    &format!("{at}.key"),
                    "must be `subject`, `client` or `route`",
                );
                None
            }
        };
        let max_keys = match raw.max_keys.map(usize::try_from) {
            None => Some(DEFAULT_MAX_KEYS),
            Some(Ok(n)) if (1..=MAX_MAX_KEYS).contains(&n) => Some(n),
            Some(_) => {
                self.error(
                    &format!("{at}.max_keys"),
                    format!("must be a whole number from 1 to {MAX_MAX_KEYS}"),
                );
                None
            }
        };
        Some(RateLimit {
            requests: requests?,
            per: per?,
            burst: burst?,
            key: key?,
            max_keys: max_keys?,
        })
    }

    /// The `rate_limit` of each tool rule in the long form, by its pattern; a
    /// `rate_limit` on a resource, prompt or method rule is an error.
    pub(super) fn tool_rate_limits(
        &mut self,
        at: &str,
        raw: &RawPolicy,
    ) -> Vec<(String, RateLimit)> {
        let mut limits = Vec::new();
        for (pattern, rule) in &raw.tools {
            if let RawRule::Full(full) = rule {
                if let Some(limit) = &full.rate_limit {
                    let at = format!("{at}.tools.{pattern}.rate_limit");
                    // A policy needs `auth` (checked with the policy): subjects exist.
                    if let Some(limit) = self.rate_limit(&at, limit, true) {
                        limits.push((pattern.clone(), limit));
                    }
                }
            }
        }
        for (kind, rules) in [
            ("resources", &raw.resources),
            ("prompts", &raw.prompts),
            ("methods", &raw.methods),
        ] {
            for (pattern, rule) in rules {
                if matches!(rule, RawRule::Full(full) if full.rate_limit.is_some()) {
                    self.error(
                        &format!("{at}.{kind}.{pattern}.rate_limit"),
                        "rate limits apply to tools (and whole routes) only",
                    );
                }
            }
        }
        limits
    }
}
