//! Rate limits: how many requests a key (a subject, a client, the whole route) may make
//! in a period, decided by a token bucket per key.
//!
//! Owns: the shape of a limit as the gateway runs it ([`RateLimit`]), which key a request
//! counts against ([`Limiter::key`]), the bucket arithmetic (`gcra`) and the bounded map of
//! buckets (`table`). Free of I/O and of the rest of the crate; the clock is read in one
//! place ([`now`]) and passed in, so every rule is unit-tested with made-up times. Does not
//! own: where limits apply and what a refusal looks like (`proxy::limits`, `refusal`).
//!
//! The buckets live in this process: N replicas allow N times the limit. A shared
//! limiter would replace [`Limiter::take`] and [`Limiter::give_back`] (same key digest
//! input, same GCRA step against a TAT held in a shared store, one value per key), with
//! the step that calls them awaiting it (docs/operations.md, "Rate limits").

mod gcra;
mod table;

use std::hash::BuildHasher;
use std::net::IpAddr;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

pub use gcra::{Gcra, Nanos, Wait, MAX_PERIOD};
pub use table::{Judged, Table, SWEEP_EVERY};

/// What a limit counts by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyKind {
    /// The verified token's subject, per issuer.
    Subject,
    /// The OAuth client id (per issuer), or the client's address when the request has no
    /// client id (a public route, a token without a client claim).
    Client,
    /// One bucket for every request the limit covers.
    Route,
}

impl KeyKind {
    /// The word in the configuration, in metric labels and in messages.
    pub fn label(self) -> &'static str {
        match self {
            KeyKind::Subject => "subject",
            KeyKind::Client => "client",
            KeyKind::Route => "route",
        }
    }

    pub fn parse(text: &str) -> Option<KeyKind> {
        match text {
            "subject" => Some(KeyKind::Subject),
            "client" => Some(KeyKind::Client),
            "route" => Some(KeyKind::Route),
            _ => None,
        }
    }
}

/// A checked `rate_limit` block: `requests` per `per`, at most `burst` at once, per key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    pub requests: u32,
    pub per: Duration,
    pub burst: u32,
    pub key: KeyKind,
    /// Keys tracked at most (see `table`: past it, new keys share one bucket).
    pub max_keys: usize,
}

/// Default `max_keys`: about 3 MiB of buckets per limit at most.
pub const DEFAULT_MAX_KEYS: usize = 100_000;
/// Largest `max_keys`.
pub const MAX_MAX_KEYS: usize = 10_000_000;
/// Largest `requests` and `burst`.
pub const MAX_REQUESTS: u32 = 1_000_000;
/// Shortest and longest `per`.
pub const MIN_PER: Duration = Duration::from_secs(1);
pub const MAX_PER: Duration = Duration::from_secs(24 * 3600);

/// Who a request is, as far as keys go: borrowed from the verified principal and the
/// client address. Nothing of it is kept: keys are digests.
#[derive(Debug, Clone, Copy, Default)]
pub struct Who<'a> {
    pub issuer: Option<&'a str>,
    pub subject: Option<&'a str>,
    pub client_id: Option<&'a str>,
    pub address: Option<IpAddr>,
}

/// What a successful take used, to give it back if the request is refused later.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Taken {
    key: u64,
    n: u32,
    judged: Judged,
}

/// A refused take: how long to wait, and whether the shared overflow bucket judged it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refused {
    pub wait: Wait,
    pub judged: Judged,
}

/// One limit at run time: its rates and its buckets. Built with each configuration, so
/// a reload starts every bucket full.
#[derive(Debug)]
pub struct Limiter {
    limit: RateLimit,
    table: Table,
    /// Keys are digests under a random key of this limiter: bounded in size whatever a
    /// subject's length, and not predictable, so collisions cannot be aimed at.
    hasher: std::hash::RandomState,
}

impl Limiter {
    pub fn new(limit: RateLimit) -> Limiter {
        let gcra = Gcra::new(limit.requests, limit.per, limit.burst);
        Limiter {
            limit,
            table: Table::new(gcra, limit.max_keys),
            hasher: std::hash::RandomState::new(),
        }
    }

    pub fn limit(&self) -> &RateLimit {
        &self.limit
    }

    /// The bucket `who` counts against. `subject` without a subject (the configuration
    /// allows it only where there is one) and `client` without a client id fall back to
    /// the address; each kind of key is hashed with its own tag, so a client id that
    /// reads like an address is not that address.
    pub fn key(&self, who: &Who<'_>) -> u64 {
        let h = &self.hasher;
        match (self.limit.key, who.subject, who.client_id) {
            (KeyKind::Route, _, _) => h.hash_one(0u8),
            (KeyKind::Subject, Some(subject), _) => h.hash_one((1u8, who.issuer, subject)),
            (KeyKind::Client, _, Some(client)) => h.hash_one((2u8, who.issuer, client)),
            _ => h.hash_one((3u8, who.address)),
        }
    }

    /// Takes `n` requests' allowance for `who` at `now`.
    pub fn take(&self, who: &Who<'_>, n: u32, now: Nanos) -> Result<Taken, Refused> {
        let key = self.key(who);
        match self.table.take(key, n, now) {
            (Ok(()), judged) => Ok(Taken { key, n, judged }),
            (Err(wait), judged) => Err(Refused { wait, judged }),
        }
    }

    /// Returns what `taken` used (its request was refused by another limit).
    pub fn give_back(&self, taken: Taken) {
        self.table.give_back(taken.key, taken.n, taken.judged);
    }

    /// Whether the take was judged by the overflow bucket (the key map was full).
    pub fn overflowed(taken: &Taken) -> bool {
        taken.judged == Judged::Overflow
    }

    /// Keys tracked now.
    pub fn tracked(&self) -> usize {
        self.table.tracked()
    }
}

/// A route's limiters: its own and its tool rules'. Built with each configuration.
#[derive(Debug, Default)]
pub struct RouteLimiters {
    pub route: Option<Limiter>,
    /// By the tool rule's pattern (the tool label of the policy and the metrics).
    pub tools: Vec<(String, Limiter)>,
}

impl RouteLimiters {
    pub fn new(route: Option<RateLimit>, tools: &[(String, RateLimit)]) -> RouteLimiters {
        RouteLimiters {
            route: route.map(Limiter::new),
            tools: tools
                .iter()
                .map(|(label, limit)| (label.clone(), Limiter::new(*limit)))
                .collect(),
        }
    }
}

/// The limiters' clock: monotonic nanoseconds since the first call in this process.
pub fn now() -> Nanos {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    let epoch = *EPOCH.get_or_init(Instant::now);
    u64::try_from(epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests;
