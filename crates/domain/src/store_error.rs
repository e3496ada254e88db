//! The one error every storage port may return besides its business outcomes.

/// A failure of the storage behind a port, as the domain sees it.
///
/// Adapters translate driver errors into these variants; business outcomes (a full
/// competition, a replayed key) are never expressed as a `StoreError`.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// The dependency (Postgres, Redis, …) could not be reached or timed out; retrying later may work.
    #[error("{dependency} is unavailable: {reason}")]
    Unavailable {
        /// Which dependency failed, e.g. `"postgres"` or `"redis"`.
        dependency: &'static str,
        /// Operator-facing reason (never shown to clients).
        reason: String,
    },
    /// A concurrent writer won and this operation's precondition no longer holds.
    #[error("conflict: {0}")]
    Conflict(String),
    /// Stored data broke an invariant the adapter relies on; this is a bug or tampering.
    #[error("stored data is invalid: {0}")]
    Corrupt(String),
}

impl StoreError {
    /// Shorthand for [`StoreError::Unavailable`].
    pub fn unavailable(dependency: &'static str, reason: impl std::fmt::Display) -> Self {
        Self::Unavailable {
            dependency,
            reason: reason.to_string(),
        }
    }
}
