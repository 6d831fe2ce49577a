//! Caches of verified tokens, keyed by the SHA-256 of the token (the token itself is
//! not kept as a key). An entry lives no longer than the token (`exp`) and never longer
//! than the cache's own maximum, so a steady stream of requests with one token costs one
//! signature check (or one introspection call), not one per request.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use moka::sync::Cache;
use sha2::{Digest, Sha256};

use super::Verified;

pub type TokenKey = [u8; 32];

/// The SHA-256 of a bearer token: the only place a token is hashed. It keys the
/// verified-token caches here and, as `subject_key`, the upstream credential cache.
pub fn token_key(token: &str) -> TokenKey {
    Sha256::digest(token.as_bytes()).into()
}

pub fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

struct UntilExpiry {
    max: Duration,
}

impl moka::Expiry<TokenKey, Arc<Verified>> for UntilExpiry {
    fn expire_after_create(
        &self,
        _key: &TokenKey,
        value: &Arc<Verified>,
        _created_at: Instant,
    ) -> Option<Duration> {
        let left = value.principal.expires_at.saturating_sub(unix_now()).max(0) as u64;
        Some(Duration::from_secs(left).min(self.max).min(value.cache_for))
    }
}

/// A bounded cache of verified tokens.
pub struct TokenCache {
    inner: Cache<TokenKey, Arc<Verified>>,
}

impl TokenCache {
    pub fn new(capacity: u64, max_ttl: Duration) -> TokenCache {
        TokenCache {
            inner: Cache::builder()
                .max_capacity(capacity)
                .expire_after(UntilExpiry { max: max_ttl })
                .build(),
        }
    }

    pub fn get(&self, key: &TokenKey) -> Option<Arc<Verified>> {
        self.inner.get(key)
    }

    pub fn insert(&self, key: TokenKey, value: Arc<Verified>) {
        self.inner.insert(key, value);
    }
}
