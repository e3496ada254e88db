//! What is written to the audit log, and what the log gives back once an entry is chained.

use std::fmt;

use chrono::{DateTime, SubsecRound, Utc};
use serde_json::Value;

use super::chain;

/// Who did something: a user (`user:<id>`) or keel itself (`system`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Actor(String);

impl Actor {
    /// An authenticated user.
    pub fn user(user_id: impl fmt::Display) -> Self {
        Self(format!("user:{user_id}"))
    }

    /// keel itself: jobs, webhooks, startup tasks.
    pub fn system() -> Self {
        Self("system".to_owned())
    }

    /// Rebuilds an actor read back from storage (or named by an admin's filter).
    pub fn from_stored(raw: impl Into<String>) -> Self {
        Self(raw.into())
    }

    /// The actor as stored.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Actor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A new audit entry, before the log gives it a place in the chain.
///
/// `before` and `after` are snapshots of what changed. Callers pass them already masked: personal
/// data (phone, address, national id, …) never enters the audit log in clear. `Some(Value::Null)`
/// and `None` are different entries (a JSON `null` snapshot versus no snapshot).
///
/// The log keeps `at` to the microsecond (what Postgres stores): sub-microsecond digits are
/// dropped when the entry is chained.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditEntry {
    /// Who acted.
    pub actor: Actor,
    /// What was done, dotted and past tense: `user.role_changed`, `pii.read`.
    pub action: String,
    /// What it was done to, e.g. `user:<id>` or `ledger_tx:<id>`.
    pub subject: String,
    /// The subject before the action (masked), if it makes sense.
    pub before: Option<Value>,
    /// The subject after the action (masked), if it makes sense.
    pub after: Option<Value>,
    /// Why, as given by the actor (mandatory for support reads of PII).
    pub reason: Option<String>,
    /// The id of the request that did it, to join with the request logs.
    pub request_id: Option<String>,
    /// When it happened.
    pub at: DateTime<Utc>,
}

impl AuditEntry {
    /// An entry with no snapshots, reason or request id; add them with the `with_*` methods.
    pub fn new(
        actor: Actor,
        action: impl Into<String>,
        subject: impl Into<String>,
        at: DateTime<Utc>,
    ) -> Self {
        Self {
            actor,
            action: action.into(),
            subject: subject.into(),
            before: None,
            after: None,
            reason: None,
            request_id: None,
            at,
        }
    }

    /// Sets the (masked) snapshot before the action.
    pub fn with_before(mut self, before: Value) -> Self {
        self.before = Some(before);
        self
    }

    /// Sets the (masked) snapshot after the action.
    pub fn with_after(mut self, after: Value) -> Self {
        self.after = Some(after);
        self
    }

    /// Sets the actor's reason.
    pub fn with_reason(mut self, reason: impl Into<String>) -> Self {
        self.reason = Some(reason.into());
        self
    }

    /// Sets the request id.
    pub fn with_request_id(mut self, request_id: impl Into<String>) -> Self {
        self.request_id = Some(request_id.into());
        self
    }

    /// The entry as the log keeps it: `at` truncated to whole microseconds.
    pub fn normalized(mut self) -> Self {
        self.at = self.at.trunc_subsecs(6);
        self
    }
}

/// An entry in its place in the chain.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedEntry {
    /// Position in the chain: 1 for the first entry, then +1 per entry, with no gaps.
    pub seq: i64,
    /// The entry itself (normalised, see [`AuditEntry::normalized`]).
    pub entry: AuditEntry,
    /// Hash of the previous entry ([`chain::GENESIS`] for the first one).
    pub prev_hash: [u8; 32],
    /// [`chain::hash`] of this entry: covers `seq`, every field of `entry` and `prev_hash`.
    pub hash: [u8; 32],
}

impl RecordedEntry {
    /// Chains `entry` at `seq` after an entry whose hash is `prev_hash`: normalises it and computes
    /// its hash.
    pub fn seal(seq: i64, prev_hash: [u8; 32], entry: AuditEntry) -> Self {
        let entry = entry.normalized();
        let hash = chain::hash(&prev_hash, seq, &entry);
        Self {
            seq,
            entry,
            prev_hash,
            hash,
        }
    }

    /// Whether the stored hash is still the hash of the stored content (false once edited).
    pub fn is_intact(&self) -> bool {
        chain::hash(&self.prev_hash, self.seq, &self.entry) == self.hash
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actors_are_prefixed() {
        assert_eq!(Actor::user(42).as_str(), "user:42");
        assert_eq!(Actor::system().to_string(), "system");
        assert_eq!(Actor::from_stored("user:7"), Actor::user(7));
    }

    #[test]
    fn sealing_drops_sub_microsecond_digits_and_hashes() {
        let at = DateTime::from_timestamp(1_700_000_000, 123_456_789).unwrap_or_default();
        let sealed = RecordedEntry::seal(
            1,
            chain::GENESIS,
            AuditEntry::new(Actor::system(), "a.b", "s", at),
        );
        assert_eq!(sealed.entry.at.timestamp_subsec_nanos(), 123_456_000);
        assert!(sealed.is_intact());
        // The nanoseconds never mattered to the hash.
        let again = RecordedEntry::seal(
            1,
            chain::GENESIS,
            AuditEntry::new(Actor::system(), "a.b", "s", sealed.entry.at),
        );
        assert_eq!(again.hash, sealed.hash);
    }
}
