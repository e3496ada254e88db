//! The board cache in front of the store: reads go to the cache first and fall back to the
//! store on any cache failure; a cache that missed a write is *stale* and is not read again
//! until it has been rebuilt from the store.
//!
//! # Staleness
//!
//! A failed write (or a failed read: the cache was found unreachable) marks the cache stale.
//! While stale, reads come from the store and writes are skipped (the rebuild brings them in).
//! The next read after [`REBUILD_RETRY`] probes the cache and, if it answers, rebuilds it from
//! the store ([`ScoreService::rebuild`]); only a successful rebuild makes it fresh again, and only
//! if no other write failed while it ran (each failure bumps a counter; a rebuild clears the
//! failures it saw before it started). One rebuild runs at a time per node; other readers use the
//! store meanwhile. A cache that lost its board (a Redis restart) says so
//! ([`CacheRead::Unbuilt`]) on every node, which rebuilds it the same way.
//!
//! # Display names
//!
//! The cache holds ids, scores and times only; a board read from it is named by the store
//! ([`ScoreStore::display_names`](super::ScoreStore::display_names), one primary-key lookup for
//! the page). Names change and accounts are deleted in the users table alone, so a copy in the
//! cache would need invalidation hooks from identity and could show a deleted user's name; the
//! lookup of at most [`super::MAX_TOP`] ids is cheap next to the ranking query the cache saves.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};

use chrono::{DateTime, Duration, Utc};

use super::ranking::Standing;
use super::service::{ScoreError, ScoreService};
use super::store::{CacheRead, LeaderboardCache, RankedStanding};
use crate::StoreError;
use crate::identity::user::UserId;

/// How long a stale cache is left alone after a failed write, read or rebuild before a read
/// tries to rebuild it again.
pub const REBUILD_RETRY: Duration = Duration::seconds(5);

/// Why a read was answered by the store instead of the cache.
#[derive(Debug, Clone, Copy)]
pub enum FallbackReason<'a> {
    /// The cache failed this read.
    Error(&'a StoreError),
    /// The cache is stale (it missed writes) and could not be rebuilt yet.
    Stale,
    /// The cache holds no built board.
    Unbuilt,
}

/// Something the cache layer did, for metrics and logs (the domain does not log).
#[derive(Debug, Clone, Copy)]
pub enum CacheEvent<'a> {
    /// The read `read` (`top`, `rank`) was answered by the store.
    Fallback {
        /// Which read.
        read: &'static str,
        /// Why.
        reason: FallbackReason<'a>,
    },
    /// The write `write` (`record`, `remove`) failed: the cache is stale.
    WriteFailed {
        /// Which write.
        write: &'static str,
        /// The cache's error.
        error: &'a StoreError,
    },
    /// The cache was rebuilt from the store with `entries` standings.
    Rebuilt {
        /// Standings written.
        entries: u64,
    },
    /// A rebuild failed; the cache stays stale.
    RebuildFailed {
        /// The error.
        error: &'a StoreError,
    },
}

/// Observes the cache layer (wired to metrics and logs by the app).
pub type CacheObserver = Arc<dyn Fn(CacheEvent<'_>) + Send + Sync>;

/// What this node knows about the cache's freshness; shared by every clone of a [`BoardCache`].
#[derive(Debug, Default)]
struct Freshness {
    /// Writes the cache missed (failures), ever.
    missed: AtomicU64,
    /// `missed` as it was when the last successful rebuild started.
    covered: AtomicU64,
    /// Writes through this node (after the store committed them), ever: a rebuild during which
    /// this moves may have replaced the board with a copy read before such a write.
    writes: AtomicU64,
    /// A rebuild started by a read is running.
    rebuilding: AtomicBool,
    /// Unix milliseconds before which reads do not try to rebuild.
    retry_at_ms: AtomicI64,
}

/// A [`LeaderboardCache`] with this node's knowledge of its freshness and an observer. Build
/// one per process and clone it: clones share the freshness.
#[derive(Clone)]
pub struct BoardCache {
    port: Arc<dyn LeaderboardCache>,
    freshness: Arc<Freshness>,
    observer: CacheObserver,
}

impl BoardCache {
    /// `port`, assumed fresh (a lost board says so itself).
    pub fn new(port: Arc<dyn LeaderboardCache>) -> Self {
        Self {
            port,
            freshness: Arc::default(),
            observer: Arc::new(|_| {}),
        }
    }

    /// Reports every [`CacheEvent`] to `observer`.
    pub fn with_observer(mut self, observer: CacheObserver) -> Self {
        self.observer = observer;
        self
    }

    /// The cache itself.
    pub fn port(&self) -> &dyn LeaderboardCache {
        self.port.as_ref()
    }

    /// Whether the cache missed writes since its last rebuild.
    pub fn is_stale(&self) -> bool {
        self.freshness.missed.load(Ordering::SeqCst) > self.freshness.covered.load(Ordering::SeqCst)
    }

    /// Marks the cache stale; reads try to rebuild it from `retry_at` on.
    pub(super) fn mark_stale(&self, retry_at: DateTime<Utc>) {
        self.freshness.missed.fetch_add(1, Ordering::SeqCst);
        self.freshness
            .retry_at_ms
            .store(retry_at.timestamp_millis(), Ordering::SeqCst);
    }

    /// The failure count a rebuild starting now covers once it succeeds.
    pub(super) fn missed(&self) -> u64 {
        self.freshness.missed.load(Ordering::SeqCst)
    }

    /// The write count; a rebuild compares it before reading the store and after switching.
    pub(super) fn writes(&self) -> u64 {
        self.freshness.writes.load(Ordering::SeqCst)
    }

    fn note_write(&self) {
        self.freshness.writes.fetch_add(1, Ordering::SeqCst);
    }

    /// A rebuild that started when the failure count was `missed` succeeded.
    pub(super) fn mark_rebuilt(&self, missed: u64) {
        self.freshness.covered.fetch_max(missed, Ordering::SeqCst);
    }

    /// Claims the right to rebuild from a read at `now`: due and no other such rebuild running.
    fn claim_rebuild(&self, now: DateTime<Utc>) -> Option<RebuildClaim<'_>> {
        if now.timestamp_millis() < self.freshness.retry_at_ms.load(Ordering::SeqCst) {
            return None;
        }
        self.freshness
            .rebuilding
            .compare_exchange(false, true, Ordering::SeqCst, Ordering::SeqCst)
            .ok()
            .map(|_| RebuildClaim(self))
    }

    /// Tells the observer.
    pub(super) fn observe(&self, event: CacheEvent<'_>) {
        (self.observer)(event);
    }
}

/// The running read-triggered rebuild; released when dropped (also when the read is cancelled).
struct RebuildClaim<'a>(&'a BoardCache);

impl Drop for RebuildClaim<'_> {
    fn drop(&mut self) {
        self.0.freshness.rebuilding.store(false, Ordering::SeqCst);
    }
}

impl std::fmt::Debug for BoardCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BoardCache")
            .field("stale", &self.is_stale())
            .finish_non_exhaustive()
    }
}

impl ScoreService {
    /// The best `limit` standings: from the cache when it is fresh and answers, else the store.
    pub(super) async fn read_top(&self, limit: u32) -> Result<Vec<RankedStanding>, ScoreError> {
        if let Some(cache) = self.cache()
            && let Some(standings) = self
                .cached_answer(cache, "top", cache.port().top(limit))
                .await
        {
            let ranked = standings
                .into_iter()
                .enumerate()
                .map(|(i, s)| (i as u64 + 1, s))
                .collect();
            return self.named(ranked).await;
        }
        Ok(self.store().top(limit).await?)
    }

    /// `user`'s rank: from the cache when it is fresh and answers, else the store.
    pub(super) async fn read_rank(
        &self,
        user: UserId,
    ) -> Result<Option<RankedStanding>, ScoreError> {
        if let Some(cache) = self.cache()
            && let Some(found) = self
                .cached_answer(cache, "rank", cache.port().rank(user))
                .await
        {
            return Ok(self.named(found.into_iter().collect()).await?.pop());
        }
        Ok(self.store().rank(user).await?)
    }

    /// Writes `standing` through to the cache after the store committed it; a failure (or a
    /// stale cache, which a rebuild will bring up to date) leaves the cache stale.
    pub(super) async fn write_through(&self, standing: &Standing) {
        let Some(cache) = self.cache() else {
            return;
        };
        cache.note_write();
        if !cache.is_stale()
            && let Err(e) = cache.port().record(standing).await
        {
            self.missed_write(cache, "record", &e);
        }
    }

    /// Removes `user` from the cache after the store removed them.
    pub(super) async fn remove_through(&self, user: UserId) {
        let Some(cache) = self.cache() else {
            return;
        };
        cache.note_write();
        if let Err(e) = cache.port().remove(user).await {
            self.missed_write(cache, "remove", &e);
        }
    }

    fn missed_write(&self, cache: &BoardCache, write: &'static str, error: &StoreError) {
        cache.mark_stale(self.now() + REBUILD_RETRY);
        cache.observe(CacheEvent::WriteFailed { write, error });
    }

    /// `answer` if the cache is (or can be made) fresh and answers it; `None` after telling the
    /// observer why the store must answer.
    async fn cached_answer<T>(
        &self,
        cache: &BoardCache,
        read: &'static str,
        answer: impl Future<Output = Result<CacheRead<T>, StoreError>>,
    ) -> Option<T> {
        if cache.is_stale() && !self.rebuild_for_read(cache).await {
            cache.observe(CacheEvent::Fallback {
                read,
                reason: FallbackReason::Stale,
            });
            return None;
        }
        let (retry_at, reason) = match answer.await {
            Ok(CacheRead::Answer(found)) => return Some(found),
            // Reachable but empty: rebuild on the next read.
            Ok(CacheRead::Unbuilt) => (self.now(), FallbackReason::Unbuilt),
            Err(e) => {
                cache.mark_stale(self.now() + REBUILD_RETRY);
                cache.observe(CacheEvent::Fallback {
                    read,
                    reason: FallbackReason::Error(&e),
                });
                return None;
            }
        };
        cache.mark_stale(retry_at);
        cache.observe(CacheEvent::Fallback { read, reason });
        None
    }

    /// Rebuilds a stale cache for a read, when due and no other read is rebuilding it; whether
    /// the cache is fresh now.
    async fn rebuild_for_read(&self, cache: &BoardCache) -> bool {
        let Some(_claim) = cache.claim_rebuild(self.now()) else {
            return false;
        };
        // A cheap probe first: an unreachable cache costs no scan of the store.
        if let Err(e) = cache.port().top(1).await {
            cache.mark_stale(self.now() + REBUILD_RETRY);
            cache.observe(CacheEvent::RebuildFailed { error: &e });
            return false;
        }
        self.rebuild_cache(cache).await.is_ok()
    }

    /// `ranked` standings with the store's display names.
    async fn named(&self, ranked: Vec<(u64, Standing)>) -> Result<Vec<RankedStanding>, ScoreError> {
        let ids: Vec<UserId> = ranked.iter().map(|(_, s)| s.user_id).collect();
        let mut names = if ids.is_empty() {
            Default::default()
        } else {
            self.store().display_names(&ids).await?
        };
        Ok(ranked
            .into_iter()
            .map(|(rank, standing)| RankedStanding {
                rank,
                display_name: names.remove(&standing.user_id),
                standing,
            })
            .collect())
    }
}

#[cfg(test)]
mod tests;
