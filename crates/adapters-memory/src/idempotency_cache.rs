//! A bounded in-process [`IdempotencyCache`]: each node's near layer for completed responses.
//!
//! A completed idempotency record never changes until it expires, so a node may keep a copy and
//! answer replays without a network round trip. The cache is bounded by entries and by bytes and
//! evicts the oldest entries first; expired entries are never returned.

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, MutexGuard};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use keel_domain::StoreError;
use keel_domain::idempotency::{
    CachedState, IdempotencyCache, IdempotencyKey, RequestFingerprint, Scope, StoredResponse,
};

type EntryKey = (Scope, IdempotencyKey);

/// Bounds of a [`MemoryIdempotencyCache`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheBounds {
    /// Most entries kept.
    pub max_entries: usize,
    /// Most response bytes (bodies and header values) kept.
    pub max_bytes: usize,
}

impl Default for CacheBounds {
    /// 10 000 entries, 32 MiB.
    fn default() -> Self {
        Self {
            max_entries: 10_000,
            max_bytes: 32 * 1024 * 1024,
        }
    }
}

#[derive(Debug, Default)]
struct Entries {
    map: HashMap<EntryKey, (CachedState, usize)>,
    /// Insertion order, oldest first; may hold keys already removed (skipped on eviction).
    order: VecDeque<EntryKey>,
    bytes: usize,
}

impl Entries {
    fn remove(&mut self, key: &EntryKey) {
        if let Some((_, size)) = self.map.remove(key) {
            self.bytes -= size;
        }
    }

    fn insert(&mut self, key: EntryKey, state: CachedState, size: usize, bounds: CacheBounds) {
        self.remove(&key);
        while !self.map.is_empty()
            && (self.map.len() >= bounds.max_entries || self.bytes + size > bounds.max_bytes)
        {
            match self.order.pop_front() {
                Some(oldest) => self.remove(&oldest),
                None => break,
            }
        }
        self.order.push_back(key.clone());
        self.bytes += size;
        self.map.insert(key, (state, size));
        // Keys of removed entries linger in `order`; compact once they dominate.
        if self.order.len() > 2 * self.map.len() + 64 {
            let map = &self.map;
            self.order.retain(|k| map.contains_key(k));
        }
    }
}

/// [`IdempotencyCache`] in process memory, bounded; clones do not share entries.
#[derive(Debug, Default)]
pub struct MemoryIdempotencyCache {
    entries: Mutex<Entries>,
    bounds: CacheBounds,
}

impl MemoryIdempotencyCache {
    /// An empty cache within `bounds`.
    pub fn new(bounds: CacheBounds) -> Self {
        Self {
            entries: Mutex::default(),
            bounds,
        }
    }

    /// Entries held (expired ones included until evicted or replaced).
    pub fn len(&self) -> usize {
        self.lock().map.len()
    }

    /// Whether the cache is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> MutexGuard<'_, Entries> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn size_of(response: &StoredResponse) -> usize {
    response.body.len()
        + response
            .headers
            .iter()
            .map(|(name, value)| name.len() + value.len())
            .sum::<usize>()
}

#[async_trait]
impl IdempotencyCache for MemoryIdempotencyCache {
    async fn get(
        &self,
        scope: &Scope,
        key: &IdempotencyKey,
    ) -> Result<Option<CachedState>, StoreError> {
        let mut entries = self.lock();
        let entry_key = (scope.clone(), key.clone());
        let found = entries.map.get(&entry_key).map(|(state, _)| state.clone());
        // Like a Redis TTL: an expired copy is dropped, so a layer behind it is asked instead.
        if let Some(CachedState::Completed { expires_at, .. }) = &found
            && *expires_at <= Utc::now()
        {
            entries.remove(&entry_key);
            return Ok(None);
        }
        Ok(found)
    }

    async fn try_lease(
        &self,
        scope: &Scope,
        key: &IdempotencyKey,
        fingerprint: &RequestFingerprint,
        lease_until: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let mut entries = self.lock();
        let entry_key = (scope.clone(), key.clone());
        if entries.map.contains_key(&entry_key) {
            return Ok(false);
        }
        let state = CachedState::Leased {
            fingerprint: *fingerprint,
            lease_until,
        };
        entries.insert(entry_key, state, 0, self.bounds);
        Ok(true)
    }

    async fn put_completed(
        &self,
        scope: &Scope,
        key: &IdempotencyKey,
        fingerprint: &RequestFingerprint,
        response: &StoredResponse,
        expires_at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let size = size_of(response);
        if size > self.bounds.max_bytes {
            return Ok(()); // too big to keep; the far layer still answers
        }
        let state = CachedState::Completed {
            fingerprint: *fingerprint,
            response: response.clone(),
            expires_at,
        };
        self.lock()
            .insert((scope.clone(), key.clone()), state, size, self.bounds);
        Ok(())
    }

    async fn remove(&self, scope: &Scope, key: &IdempotencyKey) -> Result<(), StoreError> {
        self.lock().remove(&(scope.clone(), key.clone()));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: usize) -> (Scope, IdempotencyKey) {
        (
            Scope::user("u"),
            IdempotencyKey::parse(&format!("k{n}")).expect("valid key"),
        )
    }

    fn response(bytes: usize) -> StoredResponse {
        StoredResponse {
            status: 201,
            headers: vec![],
            body: vec![b'x'; bytes],
        }
    }

    async fn put(cache: &MemoryIdempotencyCache, n: usize, bytes: usize) {
        let (scope, k) = key(n);
        let fp = RequestFingerprint::compute("POST", "/x", "u", b"{}");
        cache
            .put_completed(
                &scope,
                &k,
                &fp,
                &response(bytes),
                Utc::now() + chrono::Duration::hours(1),
            )
            .await
            .expect("memory");
    }

    async fn has(cache: &MemoryIdempotencyCache, n: usize) -> bool {
        let (scope, k) = key(n);
        cache.get(&scope, &k).await.expect("memory").is_some()
    }

    #[tokio::test]
    async fn evicts_the_oldest_entries_beyond_its_bounds() {
        let cache = MemoryIdempotencyCache::new(CacheBounds {
            max_entries: 3,
            max_bytes: 1_000,
        });
        for n in 0..5 {
            put(&cache, n, 10).await;
        }
        assert_eq!(cache.len(), 3);
        assert!(!has(&cache, 0).await && !has(&cache, 1).await);
        assert!(has(&cache, 4).await);

        put(&cache, 9, 995).await; // needs almost every byte: older entries go
        assert!(has(&cache, 9).await);
        assert_eq!(cache.len(), 1);
        put(&cache, 10, 5_000).await; // larger than the whole cache: not kept
        assert!(!has(&cache, 10).await && has(&cache, 9).await);
    }

    #[tokio::test]
    async fn an_expired_response_is_never_returned() {
        let cache = MemoryIdempotencyCache::new(CacheBounds::default());
        let (scope, k) = key(1);
        let fp = RequestFingerprint::compute("POST", "/x", "u", b"{}");
        let past = Utc::now() - chrono::Duration::seconds(1);
        cache
            .put_completed(&scope, &k, &fp, &response(3), past)
            .await
            .expect("memory");
        assert_eq!(cache.get(&scope, &k).await.expect("memory"), None);
        assert!(cache.is_empty(), "dropped on sight");
    }

    #[tokio::test]
    async fn a_lease_is_set_only_on_an_empty_key_and_removal_frees_it() {
        let cache = MemoryIdempotencyCache::new(CacheBounds::default());
        let (scope, k) = key(1);
        let fp = RequestFingerprint::compute("POST", "/x", "u", b"{}");
        assert!(
            cache
                .try_lease(&scope, &k, &fp, Utc::now())
                .await
                .expect("memory")
        );
        assert!(
            !cache
                .try_lease(&scope, &k, &fp, Utc::now())
                .await
                .expect("memory")
        );
        cache.remove(&scope, &k).await.expect("memory");
        assert!(
            cache
                .try_lease(&scope, &k, &fp, Utc::now())
                .await
                .expect("memory")
        );
    }

    #[tokio::test]
    async fn replacing_an_entry_keeps_the_byte_count_exact() {
        let cache = MemoryIdempotencyCache::new(CacheBounds {
            max_entries: 10,
            max_bytes: 100,
        });
        for _ in 0..50 {
            put(&cache, 1, 60).await;
        }
        assert_eq!(cache.len(), 1);
        put(&cache, 2, 40).await;
        assert!(
            has(&cache, 1).await && has(&cache, 2).await,
            "60 + 40 fit in 100"
        );
    }
}
