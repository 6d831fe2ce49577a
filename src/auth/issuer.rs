//! One configured issuer at run time: its discovered metadata and its signing keys.
//!
//! Keys are swapped in whole (readers never wait); a background task refreshes them on a
//! schedule (Cache-Control max-age, bounded), an unknown `kid` triggers an immediate
//! refetch at most once every [`REFETCH_INTERVAL`] per issuer (a flood of forged kids
//! cannot hammer the IdP), and the last good keys stay in use while the IdP is down.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::{ArcSwap, ArcSwapOption};
use prometheus::IntCounterVec;

use super::discovery::{discover, ServerMetadata};
use super::jwt::{parse_jwks, KeySet};
use crate::config::Issuer;

/// Shortest time between two refetches caused by unknown kids.
pub const REFETCH_INTERVAL: Duration = Duration::from_secs(10);
/// Bounds and default of the scheduled refresh.
pub const MIN_REFRESH: Duration = Duration::from_secs(60);
pub const MAX_REFRESH: Duration = Duration::from_secs(3600);
pub const DEFAULT_REFRESH: Duration = Duration::from_secs(300);
/// A JWKS fetch that worked but gave no key drawbridge can use (metric label and
/// message prefix).
const NO_USABLE_KEY: &str = "the JWKS has no usable key";
const NO_USABLE_KEY_LABEL: &str = "no_usable_key";
/// How often discovery metadata is fetched again (at the next key refresh after this).
pub const METADATA_REFRESH: Duration = Duration::from_secs(3600);

pub struct IssuerRuntime {
    pub config: Arc<Issuer>,
    keys: ArcSwap<KeySet>,
    metadata: ArcSwapOption<ServerMetadata>,
    /// When the metadata was last discovered.
    metadata_fetched: std::sync::Mutex<Option<Instant>>,
    ready: AtomicBool,
    /// See [`IssuerRuntime::keys_stale`].
    stale_keys: AtomicBool,
    /// See [`IssuerRuntime::unreachable`].
    unreachable: AtomicBool,
    /// Introspection calls in flight to this issuer are bounded (a flood of junk tokens
    /// must not get the gateway's client throttled by the authorization server).
    pub(super) introspection_slots: Arc<tokio::sync::Semaphore>,
    /// When the last unknown-kid refetch ran; the lock also makes concurrent misses wait
    /// for one fetch instead of each starting their own.
    last_refetch: tokio::sync::Mutex<Option<Instant>>,
    http: reqwest::Client,
    refreshes: IntCounterVec,
}

impl IssuerRuntime {
    pub fn new(config: Arc<Issuer>, http: reqwest::Client, refreshes: IntCounterVec) -> Self {
        // Exported at 0 so that alerts on increase() see the first failure.
        for result in ["success", "failure", NO_USABLE_KEY_LABEL] {
            refreshes.with_label_values(&[config.name.as_str(), result]);
        }
        if config.allow_insecure_http {
            tracing::warn!(issuer = %config.name, "allow_insecure_http is on: this issuer's keys, introspection answers and the gateway's client secret may travel over plain HTTP; never use it in production");
        }
        let slots = config.introspection.as_ref().map_or(1, |i| i.max_in_flight);
        IssuerRuntime {
            config,
            keys: ArcSwap::from_pointee(KeySet::default()),
            metadata: ArcSwapOption::empty(),
            metadata_fetched: std::sync::Mutex::new(None),
            ready: AtomicBool::new(false),
            stale_keys: AtomicBool::new(false),
            unreachable: AtomicBool::new(false),
            introspection_slots: Arc::new(tokio::sync::Semaphore::new(slots)),
            last_refetch: tokio::sync::Mutex::new(None),
            http,
            refreshes,
        }
    }

    /// True once metadata and keys have been fetched successfully (stays true).
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    pub fn keys(&self) -> Arc<KeySet> {
        self.keys.load_full()
    }

    pub fn metadata(&self) -> Option<Arc<ServerMetadata>> {
        self.metadata.load_full()
    }

    /// Discovers metadata (when due) and fetches the JWKS. Returns when to refresh next.
    pub async fn refresh(&self) -> Result<Duration, String> {
        let result = self.refresh_inner().await;
        let outcome = match &result {
            Ok(_) => "success",
            Err(e) if e.starts_with(NO_USABLE_KEY) => NO_USABLE_KEY_LABEL,
            Err(_) => "failure",
        };
        self.unreachable
            .store(outcome == "failure", Ordering::Release);
        self.refreshes
            .with_label_values(&[self.config.name.as_str(), outcome])
            .inc();
        result
    }

    async fn refresh_inner(&self) -> Result<Duration, String> {
        let metadata = self.current_metadata().await?;
        let jwks_uri = self
            .config
            .jwks_uri
            .clone()
            .or_else(|| metadata.and_then(|m| m.jwks_uri.clone()))
            .ok_or("the issuer publishes no jwks_uri and none is configured")?;
        let (mut keys, max_age) = self.fetch_jwks(&jwks_uri).await?;
        keys.pin_algorithms(&self.config.algorithms);
        if keys.keys.is_empty() {
            // A JWKS that is empty, or whose every key was filtered out, never evicts a
            // usable set: an IdP glitch (or an attacker on the path) must not turn every
            // valid token away. The failure is counted and `/readyz` names it.
            let kept = !self.keys().keys.is_empty();
            self.stale_keys.store(kept, Ordering::Release);
            return Err(if kept {
                format!("{NO_USABLE_KEY}; keeping the last usable keys")
            } else {
                NO_USABLE_KEY.to_string()
            });
        }
        self.keys.store(Arc::new(keys));
        self.stale_keys.store(false, Ordering::Release);
        self.ready.store(true, Ordering::Release);
        Ok(max_age.map_or(DEFAULT_REFRESH, |a| a.clamp(MIN_REFRESH, MAX_REFRESH)))
    }

    /// The metadata to use: discovered once, then again every [`METADATA_REFRESH`]
    /// (endpoints move); a failed re-discovery keeps the last good document.
    async fn current_metadata(&self) -> Result<Option<Arc<ServerMetadata>>, String> {
        let current = self.metadata();
        let fetched = self.metadata_fetched.lock().map_or(None, |at| *at);
        if current.is_some() && !metadata_due(fetched, Instant::now()) {
            return Ok(current);
        }
        let discovered = discover(&self.http, &self.config.issuer)
            .await
            .and_then(|m| m.check_schemes(self.config.allow_insecure_http).map(|()| m));
        match discovered {
            Ok(m) => {
                let m = Arc::new(m);
                self.metadata.store(Some(m.clone()));
                if let Ok(mut at) = self.metadata_fetched.lock() {
                    *at = Some(Instant::now());
                }
                Ok(Some(m))
            }
            Err(e) if current.is_some() => {
                tracing::warn!(issuer = %self.config.name, error = %e, "metadata refresh failed; keeping the last good metadata");
                Ok(current)
            }
            // With an explicit jwks_uri, keys do not depend on discovery.
            Err(e) if self.config.jwks_uri.is_some() => {
                tracing::warn!(issuer = %self.config.name, error = %e, "discovery failed; using the configured jwks_uri");
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// True while the latest attempt to fetch the metadata or the keys failed (no answer
    /// in time, an error status, or an answer that is not a metadata document or a
    /// JWKS). Cleared by the next fetch that works.
    pub fn unreachable(&self) -> bool {
        self.unreachable.load(Ordering::Acquire)
    }

    /// True while the keys in use are an older set kept because the latest JWKS fetch
    /// yielded no usable key.
    pub fn keys_stale(&self) -> bool {
        self.stale_keys.load(Ordering::Acquire)
    }

    async fn fetch_jwks(&self, url: &url::Url) -> Result<(KeySet, Option<Duration>), String> {
        let resp = self
            .http
            .get(url.clone())
            .header(http::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|e| format!("JWKS fetch: {e}"))?;
        if !resp.status().is_success() {
            return Err(format!("JWKS fetch: HTTP {}", resp.status()));
        }
        let max_age = resp
            .headers()
            .get(http::header::CACHE_CONTROL)
            .and_then(|v| v.to_str().ok())
            .and_then(max_age);
        let body = resp.bytes().await.map_err(|e| format!("JWKS fetch: {e}"))?;
        let keys = parse_jwks(&body)?;
        Ok((keys, max_age))
    }

    /// Called when a token names a `kid` the current keys lack: refetches unless that was
    /// done less than [`REFETCH_INTERVAL`] ago. Returns the keys to use afterwards.
    pub async fn refetch_for_unknown_kid(&self, kid: &str) -> Arc<KeySet> {
        let mut last = self.last_refetch.lock().await;
        // Another request may have fetched while this one waited.
        let current = self.keys();
        if current.has_kid(kid) {
            return current;
        }
        if last.is_some_and(|t| t.elapsed() < REFETCH_INTERVAL) {
            return current;
        }
        *last = Some(Instant::now());
        if let Err(e) = self.refresh().await {
            tracing::warn!(issuer = %self.config.name, error = %e, "JWKS refetch for an unknown kid failed; keeping the last good keys");
        }
        self.keys()
    }
}

/// Whether metadata discovered at `fetched` should be discovered again at `now`.
fn metadata_due(fetched: Option<Instant>, now: Instant) -> bool {
    fetched.is_none_or(|at| now.saturating_duration_since(at) >= METADATA_REFRESH)
}

/// `max-age=N` from a Cache-Control value.
fn max_age(value: &str) -> Option<Duration> {
    value.split(',').find_map(|d| {
        let (k, v) = d.trim().split_once('=')?;
        k.eq_ignore_ascii_case("max-age")
            .then(|| v.trim().parse::<u64>().ok())
            .flatten()
            .map(Duration::from_secs)
    })
}

/// Keeps an issuer fresh until shutdown: retries with backoff (1 s doubling to 30 s)
/// while fetches fail, then refreshes on the schedule the JWKS response asks for.
pub async fn keep_fresh(
    issuer: Arc<IssuerRuntime>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let mut backoff = Duration::from_secs(1);
    loop {
        let wait = match issuer.refresh().await {
            Ok(next) => {
                backoff = Duration::from_secs(1);
                next
            }
            Err(e) => {
                tracing::warn!(issuer = %issuer.config.name, error = %e, retry_in = ?backoff, "issuer metadata or keys unavailable");
                let wait = backoff;
                backoff = (backoff * 2).min(Duration::from_secs(30));
                wait
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = shutdown.changed() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_is_discovered_again_after_an_hour() {
        let now = Instant::now();
        assert!(metadata_due(None, now));
        assert!(!metadata_due(Some(now), now + Duration::from_secs(60)));
        assert!(metadata_due(Some(now), now + METADATA_REFRESH));
    }

    #[test]
    fn reads_max_age() {
        assert_eq!(
            max_age("public, max-age=600"),
            Some(Duration::from_secs(600))
        );
        assert_eq!(max_age("no-store"), None);
        assert_eq!(max_age("max-age=abc"), None);
    }
}
