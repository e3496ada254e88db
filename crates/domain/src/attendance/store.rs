//! The [`AttendanceStore`] port.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::values::{Attendance, Certificate, CertificateId, Event, EventId, Participant};
use crate::StoreError;
use crate::identity::user::UserId;

/// A record written by this call or found already there under the same natural key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recorded<T> {
    /// This call stored it (HTTP 201).
    Inserted(T),
    /// It existed already; this is the stored record, unchanged (HTTP 200, same body).
    Existing(T),
}

impl<T> Recorded<T> {
    /// The record.
    pub fn into_inner(self) -> T {
        match self {
            Self::Inserted(t) | Self::Existing(t) => t,
        }
    }

    /// The record, by reference.
    pub fn get(&self) -> &T {
        match self {
            Self::Inserted(t) | Self::Existing(t) => t,
        }
    }

    /// Whether this call stored it.
    pub fn is_inserted(&self) -> bool {
        matches!(self, Self::Inserted(_))
    }
}

/// What [`AttendanceStore::record_attendance`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScanOutcome {
    /// The attendance is stored: by this call, or found under its natural key.
    Recorded(Recorded<Attendance>),
    /// The event is closed and the participant has no attendance: nothing was stored (a scan
    /// may not slip in after [`AttendanceStore::close_event`] read the attendees).
    EventClosed,
}

/// What closing an event did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloseOutcome {
    /// The event as stored after closing (its first `closed_at` is kept).
    pub event: Event,
    /// Whether this call closed it (false when it was closed already).
    pub newly_closed: bool,
    /// `certificates.issue` jobs newly enqueued (duplicates of existing jobs are not counted).
    pub jobs_enqueued: usize,
}

/// Events, participants, attendances and certificates.
///
/// Natural keys are enforced by the store itself, so concurrent callers on any number of nodes
/// agree: (event, user) for participants, (event, participant) for attendances and certificates,
/// the verification code for certificates. Attendances and certificates are append-only.
#[cfg_attr(test, mockall::automock)]
#[async_trait]
pub trait AttendanceStore: Send + Sync {
    /// Stores a new event.
    async fn create_event(&self, event: &Event) -> Result<(), StoreError>;

    /// The event with this id.
    async fn find_event(&self, id: EventId) -> Result<Option<Event>, StoreError>;

    /// Adds `user` to the event's participants, or returns the existing participation.
    async fn add_participant(
        &self,
        event: EventId,
        user: UserId,
        now: DateTime<Utc>,
    ) -> Result<Recorded<Participant>, StoreError>;

    /// Whether `user` is a participant of the event.
    async fn is_participant(&self, event: EventId, user: UserId) -> Result<bool, StoreError>;

    /// Records an attendance unless one exists for its (event, participant): of any number of
    /// concurrent calls exactly one gets [`Recorded::Inserted`], the rest the same stored record.
    /// The participant must be one of the event's.
    ///
    /// The insert is atomic with the event being open: it is refused with
    /// [`ScanOutcome::EventClosed`] once the event is closed, and a racing
    /// [`Self::close_event`] either sees the new attendance (and enqueues its certificate job)
    /// or closes first (and the insert is refused). An existing attendance is still returned
    /// after the close.
    async fn record_attendance(&self, attendance: &Attendance) -> Result<ScanOutcome, StoreError>;

    /// The attendance of `participant` at the event.
    async fn find_attendance(
        &self,
        event: EventId,
        participant: UserId,
    ) -> Result<Option<Attendance>, StoreError>;

    /// Stores a certificate, with its document, unless one exists for its (event, participant):
    /// of any number of concurrent calls exactly one gets [`Recorded::Inserted`], the rest the
    /// stored certificate (whose document is the only one ever stored). The participant must
    /// have an attendance.
    async fn insert_certificate(
        &self,
        certificate: &Certificate,
    ) -> Result<Recorded<Certificate>, StoreError>;

    /// The certificate with this id.
    async fn find_certificate(&self, id: CertificateId) -> Result<Option<Certificate>, StoreError>;

    /// The certificate of `participant` at the event.
    async fn find_certificate_for(
        &self,
        event: EventId,
        participant: UserId,
    ) -> Result<Option<Certificate>, StoreError>;

    /// The certificate with this verification code.
    async fn find_certificate_by_code(&self, code: &str)
    -> Result<Option<Certificate>, StoreError>;

    /// Closes the event (keeping an earlier `closed_at`) and, in the same atomic step, enqueues
    /// one [`super::IssueCertificate`] job per attendee (uniqueness key `event:participant`, so
    /// closing again enqueues no duplicates). `None` when there is no such event.
    async fn close_event(
        &self,
        id: EventId,
        now: DateTime<Utc>,
    ) -> Result<Option<CloseOutcome>, StoreError>;
}
