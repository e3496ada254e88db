//! What can go wrong in the attendance use cases.

use crate::StoreError;

/// A business outcome that refuses a request, or a store failure.
#[derive(Debug, thiserror::Error)]
pub enum AttendanceError {
    /// Fields broke validation rules: (field, message) pairs.
    #[error("invalid fields: {0:?}")]
    Invalid(Vec<(String, String)>),
    /// No such event.
    #[error("no such event")]
    EventNotFound,
    /// No such user.
    #[error("no such user")]
    UserNotFound,
    /// No such certificate.
    #[error("no such certificate")]
    CertificateNotFound,
    /// The caller may not do this to this event or certificate.
    #[error("{0}")]
    Forbidden(&'static str),
    /// A scan before the event starts, after it ends or once it is closed.
    #[error("{0}")]
    OutsideWindow(&'static str),
    /// The scanned user is not a participant of the event.
    #[error("the user is not a participant of this event")]
    NotAParticipant,
    /// A certificate for a participant without a recorded attendance.
    #[error("the participant has no recorded attendance at this event")]
    NotAttended,
    /// A store could not serve.
    #[error(transparent)]
    Store(#[from] StoreError),
}
