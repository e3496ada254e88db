//! The server's table of action types and the score each is worth (config, never the client).

use std::collections::BTreeMap;

use super::ranking::MAX_SCORE;
use super::token::valid_action_type;

/// The action types the server starts, and the score delta of each.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActionTable(BTreeMap<String, i64>);

/// Why an action table is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ActionTableError {
    /// The text is not `NAME=delta,…`.
    #[error("expected NAME=delta entries separated by commas, got {0:?}")]
    Syntax(String),
    /// A name breaks the `A–Z 0–9 _` rule.
    #[error("action type {0:?} must be 1–64 of A–Z, 0–9, _")]
    Name(String),
    /// A delta outside `1..=MAX_SCORE`.
    #[error("the delta of {0} must be 1..={MAX_SCORE}")]
    Delta(String),
    /// No entries.
    #[error("the action table is empty")]
    Empty,
}

impl ActionTable {
    /// The default table: `COMPLETE_TASK=10,DAILY_LOGIN=1,WIN_MATCH=25`.
    pub fn default_table() -> Self {
        Self(BTreeMap::from([
            ("COMPLETE_TASK".to_owned(), 10),
            ("DAILY_LOGIN".to_owned(), 1),
            ("WIN_MATCH".to_owned(), 25),
        ]))
    }

    /// Parses `NAME=delta,NAME=delta` (the `KEEL_SCORE_ACTIONS` setting).
    pub fn parse(text: &str) -> Result<Self, ActionTableError> {
        let mut table = BTreeMap::new();
        for entry in text.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let (name, delta) = entry
                .split_once('=')
                .ok_or_else(|| ActionTableError::Syntax(entry.to_owned()))?;
            let name = name.trim();
            if !valid_action_type(name) {
                return Err(ActionTableError::Name(name.to_owned()));
            }
            let delta = delta
                .trim()
                .parse::<i64>()
                .ok()
                .filter(|d| (1..=MAX_SCORE).contains(d))
                .ok_or_else(|| ActionTableError::Delta(name.to_owned()))?;
            table.insert(name.to_owned(), delta);
        }
        if table.is_empty() {
            return Err(ActionTableError::Empty);
        }
        Ok(Self(table))
    }

    /// The delta of `action_type`, if the server knows it.
    pub fn delta(&self, action_type: &str) -> Option<i64> {
        self.0.get(action_type).copied()
    }

    /// Every action type and its delta.
    pub fn entries(&self) -> impl Iterator<Item = (&str, i64)> {
        self.0.iter().map(|(k, v)| (k.as_str(), *v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_parse_strictly() {
        let table = ActionTable::parse("COMPLETE_TASK=10, WIN=3").expect("valid");
        assert_eq!(table.delta("WIN"), Some(3));
        assert_eq!(table.delta("LOSE"), None);
        assert!(matches!(
            ActionTable::parse(""),
            Err(ActionTableError::Empty)
        ));
        assert!(matches!(
            ActionTable::parse("WIN"),
            Err(ActionTableError::Syntax(_))
        ));
        assert!(matches!(
            ActionTable::parse("win=3"),
            Err(ActionTableError::Name(_))
        ));
        assert!(matches!(
            ActionTable::parse("WIN=0"),
            Err(ActionTableError::Delta(_))
        ));
        assert!(matches!(
            ActionTable::parse("WIN=-4"),
            Err(ActionTableError::Delta(_))
        ));
        assert!(matches!(
            ActionTable::parse("WIN=99999999"),
            Err(ActionTableError::Delta(_))
        ));
        assert_eq!(
            ActionTable::default_table().delta("COMPLETE_TASK"),
            Some(10)
        );
    }
}
