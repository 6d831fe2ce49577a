//! The buckets of one limit: a bounded map from a key's digest to its TAT, in shards
//! behind short locks.
//!
//! Bounded: at most `max_keys` keys are tracked. A key whose bucket is full again holds
//! nothing worth keeping (GCRA: its state equals a fresh key's), so when the map is full
//! such keys are dropped first (a sweep, at most once per [`SWEEP_EVERY`]). When every
//! tracked key is still refilling, a new key is judged by one shared *overflow* bucket
//! with the same limit: memory stays bounded, keys already tracked keep their own
//! buckets, and a flood of new keys (an attacker minting subjects or addresses) is held
//! together to what one key may do — neither a free pass for the flood nor a lock-out of
//! the callers already known.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;

use super::gcra::{Gcra, Nanos, Wait};

/// Shards of the map: concurrent requests for different keys rarely share a lock.
const SHARDS: usize = 16;

/// Sweeps of a full map happen at most this often (1 s): a flood of new keys at the cap
/// costs one pass over the map per second, not one per request.
pub const SWEEP_EVERY: Nanos = 1_000_000_000;

/// How a take was judged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Judged {
    /// By the key's own bucket.
    Own,
    /// By the shared overflow bucket: the map was full.
    Overflow,
}

/// One limit's buckets.
#[derive(Debug)]
pub struct Table {
    gcra: Gcra,
    max_keys: usize,
    shards: Vec<Mutex<HashMap<u64, Nanos>>>,
    /// Keys tracked, over all shards.
    tracked: AtomicUsize,
    /// When the next sweep may run.
    next_sweep: AtomicU64,
    /// The TAT of the bucket shared by keys that found the map full.
    overflow: AtomicU64,
}

impl Table {
    pub fn new(gcra: Gcra, max_keys: usize) -> Table {
        Table {
            gcra,
            max_keys: max_keys.max(1),
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            tracked: AtomicUsize::new(0),
            next_sweep: AtomicU64::new(0),
            overflow: AtomicU64::new(0),
        }
    }

    /// Keys tracked now.
    pub fn tracked(&self) -> usize {
        self.tracked.load(Ordering::Relaxed)
    }

    fn shard(&self, key: u64) -> Option<&Mutex<HashMap<u64, Nanos>>> {
        // The key is already a keyed hash: its low bits spread evenly.
        self.shards.get((key % SHARDS as u64) as usize)
    }

    /// Takes `n` from `key`'s bucket at `now`. A poisoned shard lock (a panic elsewhere
    /// while it was held: nothing here panics) is recovered: the map holds plain numbers.
    pub fn take(&self, key: u64, n: u32, now: Nanos) -> (Result<(), Wait>, Judged) {
        if let Some(result) = self.take_tracked(key, n, now) {
            return (result, Judged::Own);
        }
        self.sweep(now);
        if let Some(result) = self.take_tracked(key, n, now) {
            return (result, Judged::Own);
        }
        (self.take_overflow(n, now), Judged::Overflow)
    }

    /// Gives `n` back to `key`'s bucket (or to the overflow bucket if that judged it).
    pub fn give_back(&self, key: u64, n: u32, judged: Judged) {
        match judged {
            Judged::Overflow => {
                let _ = self
                    .overflow
                    .fetch_update(Ordering::AcqRel, Ordering::Acquire, |tat| {
                        Some(self.gcra.give_back(tat, n))
                    });
            }
            Judged::Own => {
                let Some(shard) = self.shard(key) else { return };
                let mut map = shard.lock().unwrap_or_else(|e| e.into_inner());
                if let Some(tat) = map.get_mut(&key) {
                    *tat = self.gcra.give_back(*tat, n);
                }
            }
        }
    }

    /// The take on a tracked key, or on a new one if the map has room; `None` when the
    /// key is new and the map is full.
    fn take_tracked(&self, key: u64, n: u32, now: Nanos) -> Option<Result<(), Wait>> {
        let shard = self.shard(key)?;
        let mut map = shard.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(tat) = map.get_mut(&key) {
            return Some(self.gcra.take(*tat, now, n).map(|new| *tat = new));
        }
        let room = self
            .tracked
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |t| {
                (t < self.max_keys).then_some(t + 1)
            })
            .is_ok();
        if !room {
            return None;
        }
        match self.gcra.take(0, now, n) {
            Ok(new) => {
                map.insert(key, new);
                Some(Ok(()))
            }
            Err(wait) => {
                // Nothing to remember of a key refused on its first request.
                self.tracked.fetch_sub(1, Ordering::AcqRel);
                Some(Err(wait))
            }
        }
    }

    /// Drops the keys whose buckets are full again, if the last sweep is old enough.
    /// One shard lock at a time, never two.
    fn sweep(&self, now: Nanos) {
        let due = self.next_sweep.load(Ordering::Acquire);
        if now < due
            || self
                .next_sweep
                .compare_exchange(
                    due,
                    now.saturating_add(SWEEP_EVERY),
                    Ordering::AcqRel,
                    Ordering::Acquire,
                )
                .is_err()
        {
            return;
        }
        for shard in &self.shards {
            let mut map = shard.lock().unwrap_or_else(|e| e.into_inner());
            let before = map.len();
            map.retain(|_, tat| !self.gcra.is_full(*tat, now));
            self.tracked.fetch_sub(before - map.len(), Ordering::AcqRel);
        }
    }

    fn take_overflow(&self, n: u32, now: Nanos) -> Result<(), Wait> {
        let mut refused = None;
        let _ = self
            .overflow
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |tat| {
                match self.gcra.take(tat, now, n) {
                    Ok(new) => {
                        refused = None;
                        Some(new)
                    }
                    Err(wait) => {
                        refused = Some(wait);
                        None
                    }
                }
            });
        refused.map_or(Ok(()), Err)
    }
}
