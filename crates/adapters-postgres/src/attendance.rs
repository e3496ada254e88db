//! Events, participants, attendances and certificates in Postgres.
//!
//! Natural keys are unique keys (`migrations/2026-11-26-000006_attendance`): a scan or a
//! certificate is `INSERT … ON CONFLICT (event_id, participant_id) DO NOTHING RETURNING …`, and
//! when nothing was inserted the stored row is read back. `ON CONFLICT` waits for a racing
//! inserter to commit, so of any number of concurrent calls (on any node) one inserts and every
//! other answers the same row. A certificate's document is a column of its row, so it is stored
//! exactly once, with it. Closing an event and enqueueing its certificate jobs
//! ([`crate::enqueue_in`]) is one transaction, holding the event row `FOR UPDATE`; a scan holds
//! it `FOR SHARE` while it inserts, so no attendance commits unseen by a close.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::result::Error as DieselError;
use diesel_async::{AsyncConnection, RunQueryDsl};
use keel_domain::StoreError;
use keel_domain::attendance::{
    Attendance, AttendanceStore, Certificate, CertificateId, CloseOutcome, Event, EventId,
    IssueCertificate, Participant, Recorded, ScanOutcome, VerificationCode,
};
use keel_domain::identity::user::UserId;
use keel_domain::jobs::{EnqueueOutcome, JobKind};
use uuid::Uuid;

use crate::PgPool;
use crate::error::query_error;
use crate::jobs::enqueue_in;

/// The tables of this module (hand-written, like `crate::schema`).
pub mod tables {
    diesel::table! {
        /// Events.
        events (id) {
            /// Event id.
            id -> Uuid,
            /// Title.
            title -> Text,
            /// Window start.
            starts_at -> Timestamptz,
            /// Window end.
            ends_at -> Timestamptz,
            /// Organizer (NULL once deleted).
            organizer_id -> Nullable<Uuid>,
            /// Creation time.
            created_at -> Timestamptz,
            /// Close time.
            closed_at -> Nullable<Timestamptz>,
        }
    }

    diesel::table! {
        /// Participants per event.
        event_participants (event_id, user_id) {
            /// Event id.
            event_id -> Uuid,
            /// Participant's user id.
            user_id -> Uuid,
            /// When added.
            added_at -> Timestamptz,
        }
    }

    diesel::table! {
        /// Attendances, one per (event, participant).
        attendances (event_id, participant_id) {
            /// Event id.
            event_id -> Uuid,
            /// Participant's user id.
            participant_id -> Uuid,
            /// Scanner (NULL once deleted).
            scanned_by -> Nullable<Uuid>,
            /// First scan.
            scanned_at -> Timestamptz,
        }
    }

    diesel::table! {
        /// Certificates, one per (event, participant), with their document.
        certificates (id) {
            /// Certificate id.
            id -> Uuid,
            /// Event id.
            event_id -> Uuid,
            /// Participant's user id.
            participant_id -> Uuid,
            /// Display name at issue.
            participant_name -> Text,
            /// Event title at issue.
            event_title -> Text,
            /// Public verification code.
            verification_code -> Text,
            /// Issue time.
            issued_at -> Timestamptz,
            /// The HTML document.
            document -> Text,
        }
    }
}

use tables::{attendances, certificates, event_participants, events};

/// [`AttendanceStore`] on Postgres.
#[derive(Debug, Clone)]
pub struct PgAttendanceStore {
    pool: PgPool,
}

impl PgAttendanceStore {
    /// A store on the database behind `pool`.
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }
}

#[derive(Queryable, Selectable)]
#[diesel(table_name = events)]
#[diesel(check_for_backend(diesel::pg::Pg))]
struct EventRow {
    id: Uuid,
    title: String,
    starts_at: DateTime<Utc>,
    ends_at: DateTime<Utc>,
    organizer_id: Option<Uuid>,
    created_at: DateTime<Utc>,
    closed_at: Option<DateTime<Utc>>,
}

impl From<EventRow> for Event {
    fn from(row: EventRow) -> Self {
        Self {
            id: EventId(row.id),
            title: row.title,
            starts_at: row.starts_at,
            ends_at: row.ends_at,
            organizer_id: row.organizer_id.map(UserId),
            created_at: row.created_at,
            closed_at: row.closed_at,
        }
    }
}

#[derive(Queryable, Selectable)]
#[diesel(table_name = event_participants)]
#[diesel(check_for_backend(diesel::pg::Pg))]
struct ParticipantRow {
    event_id: Uuid,
    user_id: Uuid,
    added_at: DateTime<Utc>,
}

impl From<ParticipantRow> for Participant {
    fn from(row: ParticipantRow) -> Self {
        Self {
            event_id: EventId(row.event_id),
            user_id: UserId(row.user_id),
            added_at: row.added_at,
        }
    }
}

#[derive(Queryable, Selectable)]
#[diesel(table_name = attendances)]
#[diesel(check_for_backend(diesel::pg::Pg))]
struct AttendanceRow {
    event_id: Uuid,
    participant_id: Uuid,
    scanned_by: Option<Uuid>,
    scanned_at: DateTime<Utc>,
}

impl From<AttendanceRow> for Attendance {
    fn from(row: AttendanceRow) -> Self {
        Self {
            event_id: EventId(row.event_id),
            participant_id: UserId(row.participant_id),
            scanned_by: row.scanned_by.map(UserId),
            scanned_at: row.scanned_at,
        }
    }
}

#[derive(Queryable, Selectable)]
#[diesel(table_name = certificates)]
#[diesel(check_for_backend(diesel::pg::Pg))]
struct CertificateRow {
    id: Uuid,
    event_id: Uuid,
    participant_id: Uuid,
    participant_name: String,
    event_title: String,
    verification_code: String,
    issued_at: DateTime<Utc>,
    document: String,
}

impl From<CertificateRow> for Certificate {
    fn from(row: CertificateRow) -> Self {
        Self {
            id: CertificateId(row.id),
            event_id: EventId(row.event_id),
            participant_id: UserId(row.participant_id),
            participant_name: row.participant_name,
            event_title: row.event_title,
            verification_code: VerificationCode::from_stored(row.verification_code),
            issued_at: row.issued_at,
            document: row.document,
        }
    }
}

fn vanished(what: &str) -> StoreError {
    StoreError::Corrupt(format!(
        "{what} conflicted on insert but cannot be read back"
    ))
}

#[async_trait]
impl AttendanceStore for PgAttendanceStore {
    async fn create_event(&self, event: &Event) -> Result<(), StoreError> {
        let mut conn = self.pool.get().await?;
        diesel::insert_into(events::table)
            .values((
                events::id.eq(event.id.0),
                events::title.eq(&event.title),
                events::starts_at.eq(event.starts_at),
                events::ends_at.eq(event.ends_at),
                events::organizer_id.eq(event.organizer_id.map(UserId::as_uuid)),
                events::created_at.eq(event.created_at),
                events::closed_at.eq(event.closed_at),
            ))
            .execute(&mut conn)
            .await
            .map_err(query_error)?;
        Ok(())
    }

    async fn find_event(&self, id: EventId) -> Result<Option<Event>, StoreError> {
        let mut conn = self.pool.get().await?;
        let row: Option<EventRow> = events::table
            .find(id.0)
            .select(EventRow::as_select())
            .first(&mut conn)
            .await
            .optional()
            .map_err(query_error)?;
        Ok(row.map(Event::from))
    }

    async fn add_participant(
        &self,
        event: EventId,
        user: UserId,
        now: DateTime<Utc>,
    ) -> Result<Recorded<Participant>, StoreError> {
        let mut conn = self.pool.get().await?;
        let inserted: Option<ParticipantRow> = diesel::insert_into(event_participants::table)
            .values((
                event_participants::event_id.eq(event.0),
                event_participants::user_id.eq(user.0),
                event_participants::added_at.eq(now),
            ))
            .on_conflict((event_participants::event_id, event_participants::user_id))
            .do_nothing()
            .returning(ParticipantRow::as_returning())
            .get_result(&mut conn)
            .await
            .optional()
            .map_err(query_error)?;
        if let Some(row) = inserted {
            return Ok(Recorded::Inserted(row.into()));
        }
        let existing: Option<ParticipantRow> = event_participants::table
            .find((event.0, user.0))
            .select(ParticipantRow::as_select())
            .first(&mut conn)
            .await
            .optional()
            .map_err(query_error)?;
        existing
            .map(|row| Recorded::Existing(row.into()))
            .ok_or_else(|| vanished("a participant"))
    }

    async fn is_participant(&self, event: EventId, user: UserId) -> Result<bool, StoreError> {
        let mut conn = self.pool.get().await?;
        diesel::select(diesel::dsl::exists(
            event_participants::table.find((event.0, user.0)),
        ))
        .get_result(&mut conn)
        .await
        .map_err(query_error)
    }

    /// One transaction: the event row is locked `FOR SHARE` (racing scans share it; a
    /// `close_event` holding it `FOR UPDATE` makes the scan wait and then see `closed_at`), so an
    /// attendance commits either before the close reads the attendees or not at all.
    async fn record_attendance(&self, attendance: &Attendance) -> Result<ScanOutcome, StoreError> {
        let mut conn = self.pool.get().await?;
        let (event, participant) = (attendance.event_id, attendance.participant_id);
        let result = conn
            .transaction(async |conn| {
                let closed_at: Option<Option<DateTime<Utc>>> = events::table
                    .find(event.0)
                    .select(events::closed_at)
                    .for_share()
                    .first(conn)
                    .await
                    .optional()?;
                if let Some(Some(_)) = closed_at {
                    // Closed: a repeat still answers the stored record; a new scan is refused.
                    let existing: Option<AttendanceRow> = attendances::table
                        .find((event.0, participant.0))
                        .select(AttendanceRow::as_select())
                        .first(conn)
                        .await
                        .optional()?;
                    return Ok(match existing {
                        Some(row) => ScanOutcome::Recorded(Recorded::Existing(row.into())),
                        None => ScanOutcome::EventClosed,
                    });
                }
                let inserted: Option<AttendanceRow> = diesel::insert_into(attendances::table)
                    .values((
                        attendances::event_id.eq(event.0),
                        attendances::participant_id.eq(participant.0),
                        attendances::scanned_by.eq(attendance.scanned_by.map(UserId::as_uuid)),
                        attendances::scanned_at.eq(attendance.scanned_at),
                    ))
                    .on_conflict((attendances::event_id, attendances::participant_id))
                    .do_nothing()
                    .returning(AttendanceRow::as_returning())
                    .get_result(conn)
                    .await
                    .optional()?;
                if let Some(row) = inserted {
                    return Ok(ScanOutcome::Recorded(Recorded::Inserted(row.into())));
                }
                // `first` without `optional`: a row that vanished is `NotFound`, reported below.
                let existing: AttendanceRow = attendances::table
                    .find((event.0, participant.0))
                    .select(AttendanceRow::as_select())
                    .first(conn)
                    .await?;
                Ok::<_, DieselError>(ScanOutcome::Recorded(Recorded::Existing(existing.into())))
            })
            .await;
        match result {
            Ok(outcome) => Ok(outcome),
            Err(DieselError::NotFound) => Err(vanished("an attendance")),
            Err(e) => Err(query_error(e)),
        }
    }

    async fn find_attendance(
        &self,
        event: EventId,
        participant: UserId,
    ) -> Result<Option<Attendance>, StoreError> {
        let mut conn = self.pool.get().await?;
        read_attendance(&mut conn, event, participant).await
    }

    async fn insert_certificate(
        &self,
        certificate: &Certificate,
    ) -> Result<Recorded<Certificate>, StoreError> {
        let mut conn = self.pool.get().await?;
        let inserted: Option<CertificateRow> = diesel::insert_into(certificates::table)
            .values((
                certificates::id.eq(certificate.id.0),
                certificates::event_id.eq(certificate.event_id.0),
                certificates::participant_id.eq(certificate.participant_id.0),
                certificates::participant_name.eq(&certificate.participant_name),
                certificates::event_title.eq(&certificate.event_title),
                certificates::verification_code.eq(certificate.verification_code.as_str()),
                certificates::issued_at.eq(certificate.issued_at),
                certificates::document.eq(&certificate.document),
            ))
            .on_conflict((certificates::event_id, certificates::participant_id))
            .do_nothing()
            .returning(CertificateRow::as_returning())
            .get_result(&mut conn)
            .await
            .optional()
            .map_err(query_error)?;
        if let Some(row) = inserted {
            return Ok(Recorded::Inserted(row.into()));
        }
        read_certificate_for(&mut conn, certificate.event_id, certificate.participant_id)
            .await?
            .map(Recorded::Existing)
            .ok_or_else(|| vanished("a certificate"))
    }

    async fn find_certificate(&self, id: CertificateId) -> Result<Option<Certificate>, StoreError> {
        let mut conn = self.pool.get().await?;
        let row: Option<CertificateRow> = certificates::table
            .find(id.0)
            .select(CertificateRow::as_select())
            .first(&mut conn)
            .await
            .optional()
            .map_err(query_error)?;
        Ok(row.map(Certificate::from))
    }

    async fn find_certificate_for(
        &self,
        event: EventId,
        participant: UserId,
    ) -> Result<Option<Certificate>, StoreError> {
        let mut conn = self.pool.get().await?;
        read_certificate_for(&mut conn, event, participant).await
    }

    async fn find_certificate_by_code(
        &self,
        code: &str,
    ) -> Result<Option<Certificate>, StoreError> {
        let mut conn = self.pool.get().await?;
        let row: Option<CertificateRow> = certificates::table
            .filter(certificates::verification_code.eq(code))
            .select(CertificateRow::as_select())
            .first(&mut conn)
            .await
            .optional()
            .map_err(query_error)?;
        Ok(row.map(Certificate::from))
    }

    async fn close_event(
        &self,
        id: EventId,
        now: DateTime<Utc>,
    ) -> Result<Option<CloseOutcome>, StoreError> {
        let mut conn = self.pool.get().await?;
        conn.transaction(async |conn| {
            // The row lock orders concurrent closes; the first `closed_at` is kept.
            let before: Option<Option<DateTime<Utc>>> = events::table
                .find(id.0)
                .select(events::closed_at)
                .for_update()
                .first(conn)
                .await
                .optional()?;
            let Some(before) = before else {
                return Ok(None);
            };
            let row: EventRow = diesel::update(events::table.find(id.0))
                .set(events::closed_at.eq(before.unwrap_or(now)))
                .returning(EventRow::as_returning())
                .get_result(conn)
                .await?;
            let attendees: Vec<Uuid> = attendances::table
                .filter(attendances::event_id.eq(id.0))
                .select(attendances::participant_id)
                .order(attendances::participant_id)
                .load(conn)
                .await?;
            let mut jobs_enqueued = 0;
            for participant in attendees {
                let job = IssueCertificate::new(id, UserId(participant))
                    .to_new_job(now)
                    .map_err(|e| DieselError::SerializationError(Box::new(e)))?;
                if let EnqueueOutcome::Enqueued(_) = enqueue_in(conn, &job, now).await? {
                    jobs_enqueued += 1;
                }
            }
            Ok::<_, DieselError>(Some(CloseOutcome {
                event: row.into(),
                newly_closed: before.is_none(),
                jobs_enqueued,
            }))
        })
        .await
        .map_err(query_error)
    }
}

async fn read_attendance(
    conn: &mut diesel_async::AsyncPgConnection,
    event: EventId,
    participant: UserId,
) -> Result<Option<Attendance>, StoreError> {
    let row: Option<AttendanceRow> = attendances::table
        .find((event.0, participant.0))
        .select(AttendanceRow::as_select())
        .first(conn)
        .await
        .optional()
        .map_err(query_error)?;
    Ok(row.map(Attendance::from))
}

async fn read_certificate_for(
    conn: &mut diesel_async::AsyncPgConnection,
    event: EventId,
    participant: UserId,
) -> Result<Option<Certificate>, StoreError> {
    let row: Option<CertificateRow> = certificates::table
        .filter(certificates::event_id.eq(event.0))
        .filter(certificates::participant_id.eq(participant.0))
        .select(CertificateRow::as_select())
        .first(conn)
        .await
        .optional()
        .map_err(query_error)?;
    Ok(row.map(Certificate::from))
}
