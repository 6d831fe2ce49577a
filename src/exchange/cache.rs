//! The cache of issued upstream tokens. Without it every forwarded request would cost a
//! round trip to the authorization server; with it, one user's stream of requests costs
//! one exchange per token lifetime.
//!
//! - Key: route, SHA-256 of the subject token (the token itself is not kept), the
//!   sorted scope set, audience, resource, and a fingerprint of the grant and upstream. Client-credentials tokens have no subject.
//! - Lifetime: until shortly before the issued token expires — a refresh margin of
//!   30 s or 10 % of its lifetime, whichever is smaller — and never past the subject
//!   token's own expiry. A token with under 5 s left is used once and not kept.
//! - Concurrent misses for one key are coalesced (moka `or_try_insert_with`): one call
//!   to the token endpoint, every waiter gets its result. Refusals are not cached; a
//!   failure that means the authorization server is unavailable (unreachable, timed
//!   out, 5xx, an answer that is not JSON) is held for [`UNAVAILABLE_HOLD`], so that a
//!   burst of requests during an outage costs one call per key, not one per request.
//! - Bounded by entry count; tokens live in memory only.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use moka::future::Cache;

use super::{ExchangeError, FailureKind, IssuedToken};

/// Largest refresh margin: a token is replaced this long before it expires, at most.
const MAX_REFRESH_MARGIN: Duration = Duration::from_secs(30);
/// A token with less life than this left is not cached.
const MIN_CACHEABLE_LIFE: Duration = Duration::from_secs(5);
/// How long an unavailable authorization server's failure answers for its key: the
/// `Retry-After` the caller is given, so a client that waits as told gets a new call.
pub const UNAVAILABLE_HOLD: Duration = Duration::from_secs(5);

/// What identifies one upstream credential.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct CacheKey {
    route: Arc<str>,
    /// SHA-256 of the subject token; `None` for the gateway's own (client-credentials) token.
    subject: Option<[u8; 32]>,
    /// Sorted and deduplicated: the same set in another order is the same token.
    scopes: Vec<String>,
    audience: Option<Arc<str>>,
    resource: Option<Arc<str>>,
    /// Fingerprint of the route's grant and upstream ([`CacheKey::bound_to`]): a reload
    /// that rotates the client or repoints the upstream makes old tokens unreachable.
    binding: [u8; 32],
}

impl std::fmt::Debug for CacheKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CacheKey")
            .field("route", &self.route)
            .field("user_token", &self.subject.is_some())
            .field("scopes", &self.scopes)
            .field("audience", &self.audience)
            .field("resource", &self.resource)
            .finish()
    }
}

impl CacheKey {
    /// The key of a token-exchange result. `subject_hash` is [`subject_token_hash`] of
    /// the inbound token (authentication may already have computed it).
    pub fn exchange(
        route: Arc<str>,
        subject_hash: [u8; 32],
        scopes: &[String],
        audience: Option<Arc<str>>,
        resource: Option<Arc<str>>,
    ) -> CacheKey {
        CacheKey {
            route,
            subject: Some(subject_hash),
            scopes: scope_set(scopes),
            audience,
            resource,
            binding: [0; 32],
        }
    }

    /// The same key, bound to `fingerprint` (of the grant and the upstream).
    pub fn bound_to(mut self, fingerprint: [u8; 32]) -> CacheKey {
        self.binding = fingerprint;
        self
    }

    /// The key of the gateway's own client-credentials token for a route.
    pub fn client_credentials(
        route: Arc<str>,
        scopes: &[String],
        audience: Option<Arc<str>>,
        resource: Option<Arc<str>>,
    ) -> CacheKey {
        CacheKey {
            route,
            subject: None,
            scopes: scope_set(scopes),
            audience,
            resource,
            binding: [0; 32],
        }
    }
}

fn scope_set(scopes: &[String]) -> Vec<String> {
    let mut set = scopes.to_vec();
    set.sort_unstable();
    set.dedup();
    set
}

/// The digest of the caller's token in a [`CacheKey`]: the request's `token_key`, hashed
/// once, in `auth`.
pub use crate::auth::token_key as subject_token_hash;

/// The `Instant` of a Unix time in seconds (such as `Principal::expires_at`).
pub fn instant_at_unix(unix_secs: i64) -> Instant {
    let now_unix = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let now = Instant::now();
    let ahead = unix_secs.saturating_sub(now_unix);
    if ahead <= 0 {
        now
    } else {
        now.checked_add(Duration::from_secs(ahead as u64))
            .unwrap_or(now)
    }
}

/// How a look-up was served, for `drawbridge_cache_requests_total{cache="exchange"}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheOutcome {
    /// A cached token.
    Hit,
    /// This call ran the exchange.
    Miss,
    /// Another call's exchange for the same key was already running, or failed a
    /// moment ago because the authorization server is unavailable; this call got its
    /// result and made no call of its own.
    Joined,
}

#[derive(Clone)]
struct Cached {
    token: Arc<IssuedToken>,
    /// When the entry stops being served.
    keep_until: Instant,
}

struct UntilRefresh;

impl moka::Expiry<CacheKey, Cached> for UntilRefresh {
    fn expire_after_create(
        &self,
        _key: &CacheKey,
        value: &Cached,
        created_at: Instant,
    ) -> Option<Duration> {
        Some(value.keep_until.saturating_duration_since(created_at))
    }
}

/// Upstream tokens by [`CacheKey`]; shared by all requests.
pub struct CredentialCache {
    inner: Cache<CacheKey, Cached>,
    /// Recent failures of kind [`FailureKind::Unavailable`], by key.
    unavailable: Cache<CacheKey, ExchangeError>,
}

impl CredentialCache {
    pub fn new(max_entries: u64) -> CredentialCache {
        CredentialCache {
            inner: Cache::builder()
                .max_capacity(max_entries)
                .expire_after(UntilRefresh)
                .build(),
            unavailable: Cache::builder()
                .max_capacity(max_entries)
                .time_to_live(UNAVAILABLE_HOLD)
                .build(),
        }
    }

    /// The cached token for `key`, or the result of `fetch` (which runs at most once
    /// across all concurrent callers with this key). `subject_expires_at` caps how long
    /// the result is kept; see [`instant_at_unix`].
    pub async fn get_or_exchange<F, Fut>(
        &self,
        key: CacheKey,
        subject_expires_at: Option<Instant>,
        fetch: F,
    ) -> (Result<Arc<IssuedToken>, ExchangeError>, CacheOutcome)
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<IssuedToken, ExchangeError>>,
    {
        if let Some(failed) = self.unavailable.get(&key).await {
            return (Err(failed), CacheOutcome::Joined);
        }
        let ran = AtomicBool::new(false);
        let held = key.clone();
        // Lazy: moka polls this only when no value is cached and no one else is already
        // fetching one, so the failure it holds is seen by every later look-up.
        let init = async {
            if let Some(failed) = self.unavailable.get(&held).await {
                return Err(failed);
            }
            ran.store(true, Ordering::Relaxed);
            let token = match fetch().await {
                Ok(token) => token,
                Err(e) => {
                    if e.kind() == FailureKind::Unavailable {
                        self.unavailable.insert(held.clone(), e.clone()).await;
                    }
                    return Err(e);
                }
            };
            let keep_until = keep_until(&token, subject_expires_at, Instant::now());
            Ok::<_, ExchangeError>(Cached {
                token: Arc::new(token),
                keep_until,
            })
        };
        let result = self.inner.entry(key).or_try_insert_with(init).await;
        let outcome = if ran.load(Ordering::Relaxed) {
            CacheOutcome::Miss
        } else {
            match &result {
                Ok(entry) if !entry.is_fresh() => CacheOutcome::Hit,
                _ => CacheOutcome::Joined,
            }
        };
        let result = result
            .map(|entry| entry.into_value().token)
            .map_err(|shared| (*shared).clone());
        (result, outcome)
    }
}

/// When to stop serving `token` from the cache (`now` if it should not be kept at all).
fn keep_until(token: &IssuedToken, subject_expires_at: Option<Instant>, now: Instant) -> Instant {
    let left = token.expires_at.saturating_duration_since(now);
    if left < MIN_CACHEABLE_LIFE {
        return now;
    }
    let margin = MAX_REFRESH_MARGIN.min(left / 10);
    let until = token.expires_at.checked_sub(margin).unwrap_or(now);
    match subject_expires_at {
        Some(subject) => until.min(subject).max(now),
        None => until,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(expires_in: u64, now: Instant) -> IssuedToken {
        IssuedToken::new("t", now + Duration::from_secs(expires_in)).unwrap()
    }

    #[test]
    fn refresh_margin_is_the_smaller_of_30s_and_a_tenth() {
        let now = Instant::now();
        assert_eq!(
            keep_until(&token(40, now), None, now),
            now + Duration::from_secs(36)
        );
        assert_eq!(
            keep_until(&token(3600, now), None, now),
            now + Duration::from_secs(3570)
        );
        assert_eq!(keep_until(&token(3, now), None, now), now);
        assert_eq!(keep_until(&token(0, now), None, now), now);
    }

    #[test]
    fn never_outlives_the_subject_token() {
        let now = Instant::now();
        let subject = now + Duration::from_secs(60);
        assert_eq!(keep_until(&token(300, now), Some(subject), now), subject);
        assert_eq!(keep_until(&token(300, now), Some(now), now), now);
    }

    #[test]
    fn scope_order_does_not_matter() {
        let route: Arc<str> = Arc::from("r");
        let a = CacheKey::exchange(
            route.clone(),
            subject_token_hash("t"),
            &["b".into(), "a".into()],
            None,
            None,
        );
        let b = CacheKey::exchange(
            route,
            subject_token_hash("t"),
            &["a".into(), "b".into(), "a".into()],
            None,
            None,
        );
        assert!(a == b);
    }
}
