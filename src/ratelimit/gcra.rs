//! The bucket arithmetic: GCRA (the generic cell rate algorithm), a token bucket kept as
//! one number per key, the *theoretical arrival time* (TAT): when the bucket will be
//! full again. No timer refills anything; a request compares its arrival with the TAT.
//!
//! Times are nanoseconds on a monotonic clock ([`super::now`]); every sum saturates, so
//! no configured `per` or `burst` and no clock reading can overflow or panic.

use std::time::Duration;

/// Nanoseconds since the limiter's epoch.
pub type Nanos = u64;

/// The longest period the arithmetic takes (2^62 ns, about 146 years): a full bucket and
/// a process's uptime then add up without reaching `u64::MAX`, so no sum saturates in
/// practice and a take is exact.
pub const MAX_PERIOD: Nanos = 1 << 62;

/// One limit's rates, prepared from its configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gcra {
    /// Time one request's allowance takes to come back: `per / requests` (at least 1 ns).
    interval: Nanos,
    /// `burst` requests may arrive at once: the bucket holds `burst × interval`.
    capacity: Nanos,
    burst: u32,
}

/// Why a take was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wait {
    /// The allowance comes back after this long.
    For(Nanos),
    /// More than `burst` at once: no wait makes room for it.
    Never,
}

impl Wait {
    /// Whole seconds for `Retry-After`: rounded up, at least 1 (a client told `0` would
    /// come back at once and be refused again); `None` for [`Wait::Never`].
    pub fn retry_after_secs(self) -> Option<u32> {
        match self {
            Wait::Never => None,
            Wait::For(ns) => {
                let secs = ns.div_ceil(1_000_000_000).max(1);
                Some(u32::try_from(secs).unwrap_or(u32::MAX))
            }
        }
    }
}

impl Gcra {
    /// `requests` per `per`, at most `burst` at once. What the configuration refuses is
    /// read so that the sums stay exact: zero counts as 1, a `burst` above `requests` as
    /// `requests` (a full bucket never holds more than `per`), `per` as at most
    /// [`MAX_PERIOD`].
    pub fn new(requests: u32, per: Duration, burst: u32) -> Gcra {
        let requests = requests.max(1);
        let per = u64::try_from(per.as_nanos()).map_or(MAX_PERIOD, |p| p.min(MAX_PERIOD));
        let interval = (per / u64::from(requests)).max(1);
        let burst = burst.clamp(1, requests);
        Gcra {
            interval,
            capacity: interval.saturating_mul(u64::from(burst)),
            burst,
        }
    }

    /// The time from an empty bucket to a full one: past it, a key's state is the same
    /// as a fresh key's, and may be forgotten.
    pub fn refill(&self) -> Nanos {
        self.capacity
    }

    /// Takes `n` requests' allowance at `now` from a bucket whose TAT is `tat` (0 for a
    /// key never seen). `Ok`: the new TAT to store; `Err`: how long until `n` fit.
    ///
    /// A TAT further ahead than a full bucket (the clock went backwards, or the state came
    /// from another clock) is read as a bucket just emptied: never a wait longer than one
    /// full refill.
    pub fn take(&self, tat: Nanos, now: Nanos, n: u32) -> Result<Nanos, Wait> {
        if n > self.burst {
            return Err(Wait::Never);
        }
        let latest = now.saturating_add(self.capacity);
        let start = tat.clamp(now, latest);
        let cost = self.interval.saturating_mul(u64::from(n));
        let new_tat = start.saturating_add(cost);
        // Allowed when the bucket, after this take, still fits within its capacity.
        let allowed_at = new_tat.saturating_sub(self.capacity);
        if allowed_at > now {
            return Err(Wait::For(allowed_at - now));
        }
        Ok(new_tat)
    }

    /// The TAT after giving back `n` requests' allowance taken before (a refused batch).
    pub fn give_back(&self, tat: Nanos, n: u32) -> Nanos {
        tat.saturating_sub(self.interval.saturating_mul(u64::from(n)))
    }

    /// True when a bucket with this TAT is full at `now`: nothing to remember.
    pub fn is_full(&self, tat: Nanos, now: Nanos) -> bool {
        tat <= now
    }
}
