//! Scoreboard settings: the server's table of action types and their deltas, and the live
//! board's connections.

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
}

impl ScoreboardSettings {
    /// The parsed action table.
    pub fn table(&self) -> Result<ActionTable, ConfigError> {
        ActionTable::parse(&self.actions).map_err(|e| ConfigError::new("KEEL_SCORE_ACTIONS", e))
    }
}
