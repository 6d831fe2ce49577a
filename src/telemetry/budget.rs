//! The log budget: refusals cost the gateway almost nothing to answer, so an
//! unauthenticated caller could otherwise make it write a log line (or two) per request
//! at its full request rate. Refusals of the same kind from the same source are written
//! once in full per interval; the rest of that interval only counts them, and one
//! `suppressed` line per kind and source reports the count when the interval ends.
//!
//! Owns: what makes two refusals "the same" ([`RefusalKey`]), the window and its bound on
//! distinct keys, and the `suppressed` line. Does not own: what is a refusal (the caller
//! asks only for refusals) or the exact counts, which the metrics keep.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use crate::config::AccessLog;

/// Distinct keys one interval tracks; refusals of further keys are counted together
/// (and reported in one line), so the lines per interval stay bounded however many
/// sources there are.
pub const MAX_KEYS: usize = 1024;

/// Who a refusal came from, as far as the gateway knows at that point.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Source {
    /// Before authentication: the client address.
    Client(IpAddr),
    /// A verified caller: its subject.
    Subject(String),
    Unknown,
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Client(ip) => write!(f, "client {ip}"),
            Source::Subject(subject) => write!(f, "subject {subject}"),
            Source::Unknown => f.write_str("unknown"),
        }
    }
}

/// What makes two refusals the same: the line it would write (an audit event name, or
/// `access`), the route, the reason (a fixed vocabulary) and the source.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RefusalKey {
    pub event: &'static str,
    pub route: String,
    /// A fixed word (`bad_signature`), or for a policy decision the rule that decided
    /// (`deny:claims:groups`, `shadow:tools:read_file:arguments:/path`): bounded by the
    /// configuration.
    pub reason: std::borrow::Cow<'static, str>,
    pub source: Source,
}

/// Refusals of one key (or, with `key: None`, of keys past [`MAX_KEYS`]) that were
/// counted and not written during an interval.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Suppressed {
    pub key: Option<RefusalKey>,
    pub count: u64,
}

/// One interval's count of refusals per key.
#[derive(Debug)]
pub struct Window {
    interval: Duration,
    started: Instant,
    /// Per key: refusals counted after the first (written) one.
    seen: HashMap<RefusalKey, u64>,
    /// Refusals of keys past [`MAX_KEYS`].
    overflow: u64,
}

impl Window {
    pub fn new(interval: Duration, now: Instant) -> Window {
        Window {
            interval,
            started: now,
            seen: HashMap::new(),
            overflow: 0,
        }
    }

    /// True when this refusal is to be written in full: the first of its key in the
    /// current interval. Also returns what the interval that just ended suppressed, if
    /// it ended.
    pub fn admit(&mut self, key: RefusalKey, now: Instant) -> (bool, Vec<Suppressed>) {
        let ended = self.take_ended(now);
        if let Some(count) = self.seen.get_mut(&key) {
            *count += 1;
            return (false, ended);
        }
        if self.seen.len() >= MAX_KEYS {
            self.overflow += 1;
            return (false, ended);
        }
        self.seen.insert(key, 0);
        (true, ended)
    }

    /// What the interval suppressed, once it has ended (a new one then starts).
    pub fn take_ended(&mut self, now: Instant) -> Vec<Suppressed> {
        if now.duration_since(self.started) < self.interval {
            return Vec::new();
        }
        self.started = now;
        let mut ended: Vec<Suppressed> = self
            .seen
            .drain()
            .filter(|(_, count)| *count > 0)
            .map(|(key, count)| Suppressed {
                key: Some(key),
                count,
            })
            .collect();
        if self.overflow > 0 {
            ended.push(Suppressed {
                key: None,
                count: std::mem::take(&mut self.overflow),
            });
        }
        ended
    }
}

/// How the process writes refusals: aggregated per interval, or each in full.
struct Budget {
    /// `None`: every refusal is written (`log.refusals: all`).
    window: Mutex<Option<Window>>,
}

fn budget() -> &'static Budget {
    static BUDGET: OnceLock<Budget> = OnceLock::new();
    BUDGET.get_or_init(|| Budget {
        window: Mutex::new(Some(Window::new(
            crate::config::DEFAULT_LOG_INTERVAL,
            Instant::now(),
        ))),
    })
}

/// Applies `log.refusals` and `log.interval` (at start-up and on every reload). The
/// first call starts the thread that reports ended intervals when no new refusal does.
pub fn configure(aggregate: bool, interval: Duration) {
    let ended = match budget().window.lock() {
        Ok(mut window) => {
            let ended = window
                .as_mut()
                .map(|w| w.take_ended(Instant::now() + w.interval))
                .unwrap_or_default();
            *window = aggregate.then(|| Window::new(interval, Instant::now()));
            ended
        }
        Err(_) => Vec::new(),
    };
    report(&ended, interval);
    static FLUSHER: OnceLock<()> = OnceLock::new();
    FLUSHER.get_or_init(|| {
        let spawned = std::thread::Builder::new()
            .name("drawbridge-log-budget".into())
            .spawn(|| loop {
                std::thread::sleep(Duration::from_millis(250));
                flush(Instant::now());
            });
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "cannot start the log budget thread; suppressed counts are reported with the next refusal");
        }
    });
}

/// True when this refusal is to be written in full; otherwise it was counted.
pub fn admit(key: RefusalKey) -> bool {
    let (write, ended, interval) = match budget().window.lock() {
        Ok(mut guard) => match guard.as_mut() {
            None => return true,
            Some(window) => {
                let (write, ended) = window.admit(key, Instant::now());
                (write, ended, window.interval)
            }
        },
        // A poisoned lock never costs a line: write in full.
        Err(_) => return true,
    };
    report(&ended, interval);
    write
}

/// Whether a request gets its access line under `log.access`: every one, none, one in N,
/// or (`errors`, the default) those answered with 4xx or 5xx or not at all, within the
/// budget like any refusal (`key` is asked for only then).
pub fn access_line(mode: AccessLog, status: u16, key: impl FnOnce() -> RefusalKey) -> bool {
    match mode {
        AccessLog::All => true,
        AccessLog::Off => false,
        AccessLog::Sampled(n) => {
            static SEEN: AtomicU64 = AtomicU64::new(0);
            SEEN.fetch_add(1, Ordering::Relaxed) % u64::from(n.get()) == 0
        }
        AccessLog::Errors => (status == 0 || status >= 400) && admit(key()),
    }
}

fn flush(now: Instant) {
    let (ended, interval) = match budget().window.lock() {
        Ok(mut guard) => match guard.as_mut() {
            Some(window) => (window.take_ended(now), window.interval),
            None => return,
        },
        Err(_) => return,
    };
    report(&ended, interval);
}

/// One `suppressed` line per key, on the target its refusals are written to.
fn report(ended: &[Suppressed], interval: Duration) {
    for s in ended {
        let interval_s = interval.as_secs_f64();
        match &s.key {
            Some(key) if key.event == "access" => tracing::info!(
                target: "drawbridge::access",
                event = "suppressed",
                of = key.event,
                route = %key.route,
                reason = %key.reason,
                source = %key.source,
                count = s.count,
                interval_s,
                "access lines of refused requests like this one were counted, not written"
            ),
            Some(key) => tracing::info!(
                target: "audit",
                event = "suppressed",
                of = key.event,
                route = %key.route,
                reason = %key.reason,
                source = %key.source,
                count = s.count,
                interval_s,
                "refusals like this one were counted, not written"
            ),
            None => tracing::warn!(
                target: "audit",
                event = "suppressed",
                count = s.count,
                interval_s,
                keys = MAX_KEYS,
                "refusals from more sources than the log budget tracks were counted, not written"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn access_lines_follow_the_mode() {
        let never = || -> RefusalKey { panic!("the key is asked for only for errors") };
        assert!(access_line(AccessLog::All, 200, never));
        assert!(!access_line(AccessLog::Off, 500, never));
        assert!(!access_line(AccessLog::Errors, 200, never));
        assert!(!access_line(AccessLog::Errors, 304, never));
        let three = AccessLog::Sampled(std::num::NonZeroU32::new(3).unwrap());
        let written = (0..300).filter(|_| access_line(three, 200, never)).count();
        // Other tests may share the counter: one in three, give or take their calls.
        assert!((95..=105).contains(&written), "{written}");
    }

    fn key(source: u8) -> RefusalKey {
        RefusalKey {
            event: "authentication_refused",
            route: "r".into(),
            reason: "bad_signature".into(),
            source: Source::Client(IpAddr::from([127, 0, 0, source])),
        }
    }

    #[test]
    fn the_first_refusal_of_a_key_is_written_and_the_rest_counted() {
        let t0 = Instant::now();
        let mut w = Window::new(Duration::from_secs(10), t0);
        assert_eq!(w.admit(key(1), t0), (true, vec![]));
        for _ in 0..49_999 {
            assert!(!w.admit(key(1), t0).0);
        }
        assert!(w.admit(key(2), t0).0, "another source is written in full");
        assert!(w.take_ended(t0 + Duration::from_secs(9)).is_empty());
        let ended = w.take_ended(t0 + Duration::from_secs(10));
        assert_eq!(
            ended,
            vec![Suppressed {
                key: Some(key(1)),
                count: 49_999
            }],
            "one line counts the rest; a key with nothing suppressed gets none"
        );
        let t1 = t0 + Duration::from_secs(10);
        assert!(
            w.admit(key(1), t1).0,
            "a new interval writes the first again"
        );
    }

    #[test]
    fn keys_past_the_bound_are_counted_together() {
        let t0 = Instant::now();
        let mut w = Window::new(Duration::from_secs(1), t0);
        let mut written = 0;
        for i in 0..(MAX_KEYS as u32 + 500) {
            let k = RefusalKey {
                source: Source::Client(IpAddr::from(i.to_be_bytes())),
                ..key(0)
            };
            written += usize::from(w.admit(k, t0).0);
        }
        assert_eq!(written, MAX_KEYS);
        let ended = w.take_ended(t0 + Duration::from_secs(1));
        assert_eq!(
            ended,
            vec![Suppressed {
                key: None,
                count: 500
            }]
        );
    }
}
