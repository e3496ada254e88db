//! The tamper-evident audit log: entries, the hash chain and the `AuditLog` port.
//!
//! Every entry records who (actor) did what (action) to what (subject), the masked state before
//! and after, the actor's reason, the request id and the time. The log is append-only and each
//! entry's hash covers its canonical encoding ([`canonical`]) and the previous entry's hash
//! ([`chain`]), so [`chain::verify`] finds the first edited, removed or reordered entry. Storage
//! adds its own guard (the Postgres table refuses `UPDATE`, `DELETE` and `TRUNCATE`); the chain
//! is what still catches a superuser who goes around it.

pub mod canonical;
pub mod chain;
mod entry;
mod log;
mod query;

pub use chain::{BreakReason, ChainBreak, ChainHead, ChainReport, ChainVerifier};
pub use entry::{Actor, AuditEntry, RecordedEntry};
pub use log::AuditLog;
pub use query::{AuditCursor, AuditLimit, AuditPage, AuditQuery, AuditQueryError};
