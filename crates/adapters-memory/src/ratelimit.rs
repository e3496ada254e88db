//! In-memory GCRA rate limiter: one TAT per key in a map behind a mutex.
//!
//! Budgets are per process; a cluster of nodes shares them only through the Redis adapter.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Mutex, PoisonError};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use keel_domain::StoreError;
use keel_domain::ratelimit::{RateDecision, RateLimiter, RatePolicy, gcra};

/// Default for [`MemoryRateLimiter::with_max_keys`].
pub const DEFAULT_MAX_KEYS: usize = 100_000;

/// The [`RateLimiter`] of a single node, applying [`gcra::decide`] under one lock.
///
/// **Bound:** a key whose TAT is not after `now` is in the same state as an unseen key, so it can
/// be forgotten. When adding a key would take the map past its sweep threshold (initially
/// `max_keys`), every such expired key is dropped first. If live keys alone are more than that
/// (more distinct subjects within one period than `max_keys`), none is evicted, since that would
/// hand out fresh budgets; the threshold becomes twice the live count instead, so sweeps stay
/// amortised O(1), and it falls back to `max_keys` once a sweep frees the room. The map
/// therefore holds at most `max(max_keys, 2 × live keys)` entries.
pub struct MemoryRateLimiter {
    state: Mutex<State>,
}

struct State {
    tats: HashMap<String, i64>,
    max_keys: usize,
    sweep_at: usize,
}

impl MemoryRateLimiter {
    /// A limiter that sweeps expired keys beyond [`DEFAULT_MAX_KEYS`] keys.
    pub fn new() -> Self {
        Self::with_max_keys(DEFAULT_MAX_KEYS)
    }

    /// A limiter that sweeps expired keys once it holds `max_keys` keys (at least 1).
    pub fn with_max_keys(max_keys: usize) -> Self {
        let max_keys = max_keys.max(1);
        Self {
            state: Mutex::new(State {
                tats: HashMap::new(),
                max_keys,
                sweep_at: max_keys,
            }),
        }
    }

    /// Number of keys currently held, expired ones not yet swept included.
    pub fn len(&self) -> usize {
        self.lock().tats.len()
    }

    /// Whether no key is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The synchronous core of [`RateLimiter::check`]: counts one request of `key` at `now`.
    pub fn decide(&self, key: &str, policy: &RatePolicy, now: DateTime<Utc>) -> RateDecision {
        let now = gcra::micros(now);
        let mut state = self.lock();
        // One hash of the key for a known key (the hot path); an unseen one costs a second.
        if let Some(tat) = state.tats.get_mut(key) {
            let (decision, new_tat) = gcra::decide(Some(*tat), now, policy);
            if let Some(new_tat) = new_tat {
                *tat = new_tat;
            }
            return decision;
        }
        let (decision, new_tat) = gcra::decide(None, now, policy);
        if let Some(new_tat) = new_tat {
            state.insert(key, new_tat, now);
        }
        decision
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // The map is consistent after every statement, so a panic elsewhere cannot poison it.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl State {
    fn insert(&mut self, key: &str, tat: i64, now: i64) {
        if self.tats.len() >= self.sweep_at {
            self.tats.retain(|_, tat| *tat > now);
            self.sweep_at = self.max_keys.max(self.tats.len().saturating_mul(2));
        }
        self.tats.insert(key.to_owned(), tat);
    }
}

impl Default for MemoryRateLimiter {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for MemoryRateLimiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.lock();
        f.debug_struct("MemoryRateLimiter")
            .field("keys", &state.tats.len())
            .field("max_keys", &state.max_keys)
            .finish()
    }
}

#[async_trait]
impl RateLimiter for MemoryRateLimiter {
    async fn check(
        &self,
        key: &str,
        policy: &RatePolicy,
        now: DateTime<Utc>,
    ) -> Result<RateDecision, StoreError> {
        Ok(self.decide(key, policy, now))
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeDelta;
    use keel_domain::ratelimit::Period;

    use super::*;

    fn per_second(count: u32) -> RatePolicy {
        RatePolicy {
            count,
            period: Period::Second,
        }
    }

    #[tokio::test]
    async fn keeps_the_rate_limiter_contract() {
        keel_domain::testkit::rate_limiter::run_all(&MemoryRateLimiter::new()).await;
    }

    #[test]
    fn expired_keys_are_swept_when_the_map_is_full() {
        let limiter = MemoryRateLimiter::with_max_keys(4);
        let now = Utc::now();
        for i in 0..4 {
            assert!(
                limiter
                    .decide(&format!("k{i}"), &per_second(1), now)
                    .allowed
            );
        }
        assert_eq!(limiter.len(), 4);
        let later = now + TimeDelta::seconds(2);
        assert!(limiter.decide("fresh", &per_second(1), later).allowed);
        assert_eq!(
            limiter.len(),
            1,
            "expired keys are dropped, the new one kept"
        );
        assert!(!limiter.decide("fresh", &per_second(1), later).allowed);
    }

    #[test]
    fn live_keys_are_never_evicted() {
        let limiter = MemoryRateLimiter::with_max_keys(2);
        let now = Utc::now();
        for i in 0..10 {
            assert!(
                limiter
                    .decide(&format!("k{i}"), &per_second(1), now)
                    .allowed
            );
        }
        assert_eq!(limiter.len(), 10);
        for i in 0..10 {
            assert!(
                !limiter
                    .decide(&format!("k{i}"), &per_second(1), now)
                    .allowed,
                "k{i} kept its budget"
            );
        }
        let later = now + TimeDelta::seconds(1);
        for i in 0..20 {
            limiter.decide(&format!("n{i}"), &per_second(1), later);
        }
        assert_eq!(
            limiter.len(),
            20,
            "the 10 expired keys were swept on the way"
        );
    }
}
