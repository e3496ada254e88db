//! Events: attendance scans and certificates, each issued exactly once.
//!
//! - [`values`]: events, participants, attendances and certificates, with their validation.
//! - [`store`]: the [`AttendanceStore`] port. Its natural keys are the idempotency keys of this
//!   product: one attendance and one certificate per (event, participant), enforced by the store
//!   (a unique key in Postgres, one lock in memory), so every repeat or race answers the first
//!   record.
//! - [`service`]: the use cases (create an event, add a participant, scan, issue a certificate,
//!   close an event) over the ports and a [`crate::Clock`].
//! - [`document`]: the certificate's self-contained HTML document (pure, escaped).
//! - [`job`]: the `certificates.issue` job kind enqueued by closing an event.

pub mod document;
pub mod error;
pub mod job;
pub mod service;
pub mod store;
pub mod values;

pub use error::AttendanceError;
pub use job::{IssueCertificate, IssueCertificateHandler};
pub use service::{Actor, AttendanceService};
#[cfg(test)]
pub use store::MockAttendanceStore;
pub use store::{AttendanceStore, CloseOutcome, Recorded, ScanOutcome};
pub use values::{
    Attendance, Certificate, CertificateId, Event, EventId, EventTitle, NewEvent, Participant,
    VerificationCode,
};
