//! Scoreboard settings: the server's table of action types and their deltas, the live
//! board's connections, and how often the board cache is checked against Postgres.

use keel_domain::scoreboard::ActionTable;
use serde::Deserialize;

use super::ConfigError;

/// Scoreboard settings (`[scoreboard]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScoreboardSettings {
    /// `NAME=delta,…`: the action types clients may start and what each adds
    /// (`KEEL_SCORE_ACTIONS`).
    pub actions: String,
    /// Seconds between heartbeat comments on live connections
    /// (`KEEL_SCOREBOARD_HEARTBEAT_SECS`).
    pub live_heartbeat_secs: u64,
    /// Live connections one node keeps open at most; more get 503
    /// (`KEEL_SCOREBOARD_LIVE_MAX_CONNECTIONS`).
    pub live_max_connections: usize,
    /// Seconds between reads of the board by a node's live hub even without change signals
    /// (`KEEL_SCOREBOARD_LIVE_RESYNC_SECS`).
    pub live_resync_secs: u64,
    /// Seconds between drift checks of the board cache
    /// (`KEEL_SCOREBOARD_DRIFT_INTERVAL_SECS`, default 300).
    #[serde(default = "default_drift_interval_secs")]
    pub drift_interval_secs: u64,
}

fn default_drift_interval_secs() -> u64 {
    300
}

impl ScoreboardSettings {
    /// The parsed action table.
    pub fn table(&self) -> Result<ActionTable, ConfigError> {
        ActionTable::parse(&self.actions).map_err(|e| ConfigError::new("KEEL_SCORE_ACTIONS", e))
    }

    /// Checks the settings: the action table parses and the drift interval is positive.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.table()?;
        if self.drift_interval_secs == 0 {
            return Err(ConfigError::new(
                "KEEL_SCOREBOARD_DRIFT_INTERVAL_SECS",
                "must be 1 or more",
            ));
        }
        Ok(())
    }
}
