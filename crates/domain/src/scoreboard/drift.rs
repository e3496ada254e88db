//! Keeping the cache equal to the store: the full rebuild (admins, and reads of a stale cache)
//! and the drift check (the `scoreboard.drift` periodic job), which compares the cache's top
//! [`DRIFT_WINDOW`] with the store's and rebuilds the cache when they differ.
//!
//! A rebuild reads the store's standings page by page, then replaces the whole board at once. A
//! score that commits while the pages are read can be missing from the new board until the next
//! write of that user or the next drift check.

use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::cache::{BoardCache, CacheEvent, REBUILD_RETRY};
use super::ranking::Standing;
use super::service::{ScoreError, ScoreService};
use super::store::CacheRead;
use crate::jobs::{JobContext, JobFailure, JobHandler, JobKind, KindSettings};

/// Standings compared by the drift check (the board's public page).
pub const DRIFT_WINDOW: u32 = 100;
/// Standings read from the store per page while rebuilding.
pub const REBUILD_PAGE: u32 = 1000;

/// What one drift check found and did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DriftReport {
    /// Board positions compared (the longer of the two top lists).
    pub compared: u32,
    /// Positions where the cache and the store disagree (user, score or time).
    pub wrong: u32,
    /// Whether the cache was rebuilt (drift, a stale or unbuilt cache).
    pub repaired: bool,
}

/// Positions where `cached` differs from `truth`, compared up to the longer of the two.
pub fn compare(truth: &[Standing], cached: &[Standing]) -> DriftReport {
    let compared = truth.len().max(cached.len());
    let wrong = (0..compared)
        .filter(|&i| truth.get(i) != cached.get(i))
        .count();
    DriftReport {
        compared: u32::try_from(compared).unwrap_or(u32::MAX),
        wrong: u32::try_from(wrong).unwrap_or(u32::MAX),
        repaired: false,
    }
}

impl ScoreService {
    /// Replaces the whole cache with the store's standings; how many it wrote (0 without a
    /// cache). Makes a stale cache fresh.
    pub async fn rebuild(&self) -> Result<u64, ScoreError> {
        match self.cache() {
            Some(cache) => self.rebuild_cache(cache).await,
            None => Ok(0),
        }
    }

    /// Compares the cache's top [`DRIFT_WINDOW`] with the store's and rebuilds the cache when
    /// they differ (or it is stale or unbuilt). A cache that cannot be read is an error (and is
    /// marked stale).
    pub async fn repair_drift(&self) -> Result<DriftReport, ScoreError> {
        let Some(cache) = self.cache() else {
            return Ok(DriftReport::default());
        };
        let cached = match cache.port().top(DRIFT_WINDOW).await {
            Ok(read) => read,
            Err(e) => {
                cache.mark_stale(self.now() + REBUILD_RETRY);
                return Err(e.into());
            }
        };
        let truth = self.store().standings(None, DRIFT_WINDOW).await?;
        let (mut report, built) = match &cached {
            CacheRead::Answer(board) => (compare(&truth, board), true),
            CacheRead::Unbuilt => (compare(&truth, &[]), false),
        };
        if report.wrong > 0 || !built || cache.is_stale() {
            self.rebuild_cache(cache).await?;
            report.repaired = true;
        }
        Ok(report)
    }

    /// Rebuilds `cache` from the store; on success it is fresh unless another write failed
    /// meanwhile, on failure it stays stale.
    pub(super) async fn rebuild_cache(&self, cache: &BoardCache) -> Result<u64, ScoreError> {
        let missed = cache.missed();
        let writes = cache.writes();
        let standings = self.all_standings().await?;
        match cache.port().replace_all(&standings).await {
            Ok(()) => {
                cache.mark_rebuilt(missed);
                // A write of this node landed meanwhile: the copy may predate it (a removed user
                // put back, a score lost), so the next read rebuilds again.
                if cache.writes() != writes {
                    cache.mark_stale(self.now());
                }
                let entries = standings.len() as u64;
                cache.observe(CacheEvent::Rebuilt { entries });
                Ok(entries)
            }
            Err(e) => {
                cache.mark_stale(self.now() + REBUILD_RETRY);
                cache.observe(CacheEvent::RebuildFailed { error: &e });
                Err(e.into())
            }
        }
    }

    /// Every standing in the store, best first, read in pages of [`REBUILD_PAGE`].
    async fn all_standings(&self) -> Result<Vec<Standing>, ScoreError> {
        let mut all: Vec<Standing> = Vec::new();
        loop {
            let page = self
                .store()
                .standings(all.last().cloned(), REBUILD_PAGE)
                .await?;
            let full = page.len() == REBUILD_PAGE as usize;
            all.extend(page);
            if !full {
                return Ok(all);
            }
        }
    }
}

/// Compares the cache with the store and repairs it (every 5 minutes, once across nodes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckBoardDrift;

impl JobKind for CheckBoardDrift {
    const KIND: &'static str = "scoreboard.drift";

    fn settings() -> KindSettings {
        KindSettings {
            max_attempts: 2,
            ..KindSettings::default()
        }
    }
}

/// Called with the report of every drift check (metrics, logs).
pub type DriftObserver = Arc<dyn Fn(&DriftReport) + Send + Sync>;

/// Runs [`CheckBoardDrift`].
#[derive(Clone)]
pub struct CheckBoardDriftHandler {
    scores: ScoreService,
    observer: Option<DriftObserver>,
}

impl CheckBoardDriftHandler {
    /// Checks through `scores`, telling `observer` each run's report.
    pub fn new(scores: ScoreService, observer: Option<DriftObserver>) -> Self {
        Self { scores, observer }
    }
}

#[async_trait]
impl JobHandler<CheckBoardDrift> for CheckBoardDriftHandler {
    async fn run(&self, _ctx: &JobContext, _job: CheckBoardDrift) -> Result<(), JobFailure> {
        let report = self.scores.repair_drift().await.map_err(|e| match e {
            ScoreError::Store(e) => JobFailure::from(e),
            other => JobFailure::permanent(other),
        })?;
        if let Some(observer) = &self.observer {
            observer(&report);
        }
        Ok(())
    }
}
