//! Scoreboard settings: the server's table of action types and their deltas.

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
}

impl ScoreboardSettings {
    /// The parsed action table.
    pub fn table(&self) -> Result<ActionTable, ConfigError> {
        ActionTable::parse(&self.actions).map_err(|e| ConfigError::new("KEEL_SCORE_ACTIONS", e))
    }
}
