//! The `AuditLog` port.

use async_trait::async_trait;

use super::{AuditEntry, AuditPage, AuditQuery, ChainReport, RecordedEntry};
use crate::StoreError;

/// The append-only, hash-chained audit log.
///
/// Implementations serialise appends, so the chain never forks: of any number of concurrent
/// appends each gets its own `seq`, one more than the entry before it, and links to that entry's
/// hash. Nothing is ever updated or deleted through this port.
#[cfg_attr(test, mockall::automock)]
#[async_trait]
pub trait AuditLog: Send + Sync {
    /// Appends `entry` at the end of the chain and returns it as recorded (normalised, with its
    /// `seq` and hashes).
    async fn append(&self, entry: AuditEntry) -> Result<RecordedEntry, StoreError>;

    /// One page of the entries matching `query`, newest first.
    async fn list(&self, query: &AuditQuery) -> Result<AuditPage, StoreError>;

    /// Recomputes the whole chain from the first entry and reports the first break, if any.
    ///
    /// A break is an answer, not an error: `Err` means the log could not be read.
    async fn verify(&self) -> Result<ChainReport, StoreError>;
}
