//! Keeping the board cache honest: its metrics and logs, and the `scoreboard.drift` job.
//!
//! - `keel_scoreboard_cache_fallbacks_total{read,reason}`: reads answered by Postgres instead of
//!   the cache (`error`, `stale`, `unbuilt`);
//! - `keel_scoreboard_drift`: board positions the cache had wrong at the last drift check.

use std::sync::Arc;
use std::time::Duration;

use keel_domain::jobs::{Every, JobRegistry, PeriodicJob, ScheduleError};
use keel_domain::scoreboard::{
    BoardCache, CacheEvent, CheckBoardDrift, CheckBoardDriftHandler, DriftReport, FallbackReason,
    LeaderboardCache,
};

use crate::state::AppState;

/// Counter of board reads answered by the store instead of the cache, labelled `read` and
/// `reason`.
pub const CACHE_FALLBACKS_TOTAL: &str = "keel_scoreboard_cache_fallbacks_total";
/// Gauge of board positions the cache had wrong at the last drift check.
pub const DRIFT: &str = "keel_scoreboard_drift";

/// Describes the product's metrics to the recorder (installed before the state is built).
pub fn describe_metrics() {
    metrics::describe_counter!(
        CACHE_FALLBACKS_TOTAL,
        "Scoreboard reads answered by Postgres instead of the Redis board"
    );
    metrics::describe_gauge!(
        DRIFT,
        "Board positions the Redis board had wrong at the last drift check"
    );
}

/// `port` as this process's board cache, counting and logging what happens to it.
pub fn board_cache(port: Arc<dyn LeaderboardCache>) -> BoardCache {
    BoardCache::new(port).with_observer(Arc::new(observe))
}

fn observe(event: CacheEvent<'_>) {
    match event {
        CacheEvent::Fallback { read, reason } => {
            let label = match reason {
                FallbackReason::Error(error) => {
                    tracing::warn!(read, %error, "board cache failed: answered from the store");
                    "error"
                }
                FallbackReason::Stale => "stale",
                FallbackReason::Unbuilt => {
                    tracing::warn!(read, "board cache holds no board: it will be rebuilt");
                    "unbuilt"
                }
            };
            metrics::counter!(CACHE_FALLBACKS_TOTAL, "read" => read, "reason" => label)
                .increment(1);
        }
        CacheEvent::WriteFailed { write, error } => {
            tracing::warn!(write, %error, "board cache missed a write: stale until rebuilt");
        }
        CacheEvent::Rebuilt { entries } => {
            tracing::info!(entries, "board cache rebuilt from the store");
        }
        CacheEvent::RebuildFailed { error } => {
            tracing::warn!(%error, "board cache rebuild failed: still answering from the store");
        }
    }
}

fn report_drift(report: &DriftReport) {
    metrics::gauge!(DRIFT).set(f64::from(report.wrong));
    if report.wrong > 0 {
        tracing::warn!(
            compared = report.compared,
            wrong = report.wrong,
            repaired = report.repaired,
            "board cache drifted from the store"
        );
    } else {
        tracing::info!(
            compared = report.compared,
            repaired = report.repaired,
            "board cache checked"
        );
    }
}

/// Registers the product's job kinds: the drift check.
pub fn register_jobs(registry: &mut JobRegistry, state: &AppState) {
    let observer = Arc::new(report_drift);
    registry.register::<CheckBoardDrift>(CheckBoardDriftHandler::new(
        super::service(state),
        Some(observer),
    ));
}

/// The product's periodic jobs: the drift check every `KEEL_SCOREBOARD_DRIFT_INTERVAL_SECS`.
pub fn periodic_jobs(state: &AppState) -> Result<Vec<PeriodicJob>, ScheduleError> {
    let every = Duration::from_secs(state.settings.scoreboard.drift_interval_secs);
    let drift = PeriodicJob::new(Every::interval(every)?, &CheckBoardDrift).map_err(|e| {
        ScheduleError::Cron {
            expression: "payload".into(),
            reason: e.to_string(),
        }
    })?;
    Ok(vec![drift])
}
