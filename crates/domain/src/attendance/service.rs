//! The use cases of the events product, over the ports and a clock.

use std::sync::Arc;

use super::document::{DocumentContent, render};
use super::error::AttendanceError;
use super::store::{AttendanceStore, CloseOutcome, Recorded, ScanOutcome};
use super::values::{
    Attendance, Certificate, CertificateId, Event, EventId, NewEvent, Participant, VerificationCode,
};
use crate::Clock;
use crate::identity::store::UserStore;
use crate::identity::user::UserId;
use crate::identity::values::Role;

/// Who asks: a user with a role, or the system itself (jobs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Actor {
    /// An authenticated user.
    User {
        /// The user's id.
        id: UserId,
        /// The user's role.
        role: Role,
    },
    /// keel itself (a job acting on an earlier authorised request).
    System,
}

impl Actor {
    /// A user acting with `role`.
    pub fn user(id: UserId, role: Role) -> Self {
        Self::User { id, role }
    }

    fn id(self) -> Option<UserId> {
        match self {
            Self::User { id, .. } => Some(id),
            Self::System => None,
        }
    }

    /// Whether the actor may create events (organizers and admins).
    pub fn may_create_events(self) -> bool {
        match self {
            Self::User { role, .. } => matches!(role, Role::Organizer | Role::Admin),
            Self::System => true,
        }
    }

    /// Whether the actor manages `event`: an admin, its organizer, or the system.
    pub fn manages(self, event: &Event) -> bool {
        match self {
            Self::User {
                role: Role::Admin, ..
            }
            | Self::System => true,
            Self::User {
                id,
                role: Role::Organizer,
            } => event.organizer_id == Some(id),
            Self::User { .. } => false,
        }
    }

    /// Whether the actor may read `certificate` of `event`: its participant, the event's
    /// manager, or support.
    pub fn may_read(self, certificate: &Certificate, event: Option<&Event>) -> bool {
        match self {
            Self::User {
                role: Role::Support,
                ..
            } => true,
            Self::User { id, .. } if id == certificate.participant_id => true,
            _ => event.is_some_and(|e| self.manages(e)),
        }
    }
}

/// The events product's use cases.
#[derive(Clone)]
pub struct AttendanceService {
    store: Arc<dyn AttendanceStore>,
    users: Arc<dyn UserStore>,
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for AttendanceService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AttendanceService").finish_non_exhaustive()
    }
}

impl AttendanceService {
    /// The use cases over `store`, with display names from `users` and time from `clock`.
    pub fn new(
        store: Arc<dyn AttendanceStore>,
        users: Arc<dyn UserStore>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            store,
            users,
            clock,
        }
    }

    /// Creates an event organized by `by` (an organizer or admin).
    pub async fn create_event(&self, by: Actor, new: NewEvent) -> Result<Event, AttendanceError> {
        let (Some(organizer), true) = (by.id(), by.may_create_events()) else {
            return Err(AttendanceError::Forbidden(
                "only organizers and admins create events",
            ));
        };
        let event = new
            .validate(organizer, self.clock.now())
            .map_err(AttendanceError::Invalid)?;
        self.store.create_event(&event).await?;
        Ok(event)
    }

    /// The event with this id.
    pub async fn event(&self, id: EventId) -> Result<Event, AttendanceError> {
        self.store
            .find_event(id)
            .await?
            .ok_or(AttendanceError::EventNotFound)
    }

    async fn managed_event(&self, by: Actor, id: EventId) -> Result<Event, AttendanceError> {
        let event = self.event(id).await?;
        if by.manages(&event) {
            Ok(event)
        } else {
            Err(AttendanceError::Forbidden(
                "only the event's organizer or an admin may do this",
            ))
        }
    }

    /// Adds `user` to the event's participants; a repeat returns the existing participation.
    pub async fn add_participant(
        &self,
        by: Actor,
        event: EventId,
        user: UserId,
    ) -> Result<Recorded<Participant>, AttendanceError> {
        let event = self.managed_event(by, event).await?;
        if self.users.find_by_id(user).await?.is_none() {
            return Err(AttendanceError::UserNotFound);
        }
        Ok(self
            .store
            .add_participant(event.id, user, self.clock.now())
            .await?)
    }

    /// Records `participant`'s attendance, scanned by `by` (the event's organizer or an admin):
    /// the first scan inserts, every repeat returns the same record. A repeat after the window
    /// still answers the stored record, so a scanner retrying after a timeout is always safe.
    pub async fn scan(
        &self,
        by: Actor,
        event: EventId,
        participant: UserId,
    ) -> Result<Recorded<Attendance>, AttendanceError> {
        let event = self.managed_event(by, event).await?;
        let now = self.clock.now();
        if let Err(why) = event.check_scan_time(now) {
            return match self.store.find_attendance(event.id, participant).await? {
                Some(existing) => Ok(Recorded::Existing(existing)),
                None => Err(AttendanceError::OutsideWindow(why)),
            };
        }
        if !self.store.is_participant(event.id, participant).await? {
            return Err(AttendanceError::NotAParticipant);
        }
        let attendance = Attendance {
            event_id: event.id,
            participant_id: participant,
            scanned_by: by.id(),
            scanned_at: now,
        };
        match self.store.record_attendance(&attendance).await? {
            ScanOutcome::Recorded(recorded) => Ok(recorded),
            // Closed between the window check above and the insert.
            ScanOutcome::EventClosed => Err(AttendanceError::OutsideWindow("the event is closed")),
        }
    }

    /// Issues `participant`'s certificate for the event (manually by its organizer or an admin,
    /// or by the close job as [`Actor::System`]). The document is rendered before the insert and
    /// stored in the same row, so however many requests race, one certificate and one document
    /// exist; every caller gets that one.
    pub async fn issue_certificate(
        &self,
        by: Actor,
        event: EventId,
        participant: UserId,
    ) -> Result<Recorded<Certificate>, AttendanceError> {
        let event = self.managed_event(by, event).await?;
        if let Some(existing) = self
            .store
            .find_certificate_for(event.id, participant)
            .await?
        {
            return Ok(Recorded::Existing(existing));
        }
        if self
            .store
            .find_attendance(event.id, participant)
            .await?
            .is_none()
        {
            return Err(AttendanceError::NotAttended);
        }
        let user = self
            .users
            .find_by_id(participant)
            .await?
            .ok_or(AttendanceError::UserNotFound)?;
        let id = CertificateId::new();
        let code = VerificationCode::generate()?;
        let issued_at = self.clock.now();
        let participant_name = user.display_name.as_str().to_owned();
        let document = render(&DocumentContent {
            certificate_id: id,
            event_title: &event.title,
            participant_name: &participant_name,
            starts_at: event.starts_at,
            ends_at: event.ends_at,
            issued_at,
            verification_code: &code,
        });
        let certificate = Certificate {
            id,
            event_id: event.id,
            participant_id: participant,
            participant_name,
            event_title: event.title.clone(),
            verification_code: code,
            issued_at,
            document,
        };
        Ok(self.store.insert_certificate(&certificate).await?)
    }

    /// Closes the event and enqueues, atomically, one certificate job per attendee. Closing
    /// again keeps the first `closed_at` and enqueues no duplicates.
    pub async fn close(&self, by: Actor, event: EventId) -> Result<CloseOutcome, AttendanceError> {
        let event = self.managed_event(by, event).await?;
        self.store
            .close_event(event.id, self.clock.now())
            .await?
            .ok_or(AttendanceError::EventNotFound)
    }

    /// The certificate with this id, if `by` may read it (its participant, the event's
    /// organizer, support or admin).
    pub async fn certificate(
        &self,
        by: Actor,
        id: CertificateId,
    ) -> Result<Certificate, AttendanceError> {
        let certificate = self
            .store
            .find_certificate(id)
            .await?
            .ok_or(AttendanceError::CertificateNotFound)?;
        let event = self.store.find_event(certificate.event_id).await?;
        if by.may_read(&certificate, event.as_ref()) {
            Ok(certificate)
        } else {
            Err(AttendanceError::Forbidden(
                "only the participant, the event's organizer, support or an admin may read this certificate",
            ))
        }
    }

    /// The certificate with this public verification code (a malformed code finds nothing).
    pub async fn verify(&self, code: &str) -> Result<Certificate, AttendanceError> {
        if !VerificationCode::is_well_formed(code) {
            return Err(AttendanceError::CertificateNotFound);
        }
        self.store
            .find_certificate_by_code(code)
            .await?
            .ok_or(AttendanceError::CertificateNotFound)
    }
}

#[cfg(test)]
mod tests {
    use chrono::{DateTime, Duration, Utc};
    use mockall::predicate::eq;

    use super::super::store::MockAttendanceStore;
    use super::*;

    struct FixedClock(DateTime<Utc>);
    impl Clock for FixedClock {
        fn now(&self) -> DateTime<Utc> {
            self.0
        }
    }

    fn now() -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000, 0).unwrap()
    }

    fn event(organizer: UserId, starts_in: i64, ends_in: i64) -> Event {
        Event {
            id: EventId::new(),
            title: "t".into(),
            starts_at: now() + Duration::seconds(starts_in),
            ends_at: now() + Duration::seconds(ends_in),
            organizer_id: Some(organizer),
            created_at: now(),
            closed_at: None,
        }
    }

    fn service(store: MockAttendanceStore) -> AttendanceService {
        AttendanceService::new(
            Arc::new(store),
            Arc::new(crate::identity::store::MockUserStore::new()),
            Arc::new(FixedClock(now())),
        )
    }

    fn find(store: &mut MockAttendanceStore, event: &Event) {
        let found = event.clone();
        store
            .expect_find_event()
            .with(eq(event.id))
            .returning(move |_| Ok(Some(found.clone())));
    }

    #[test]
    fn a_scan_outside_the_window_is_refused_unless_it_repeats_a_recorded_one() {
        let organizer = UserId::new_random();
        let by = Actor::user(organizer, Role::Organizer);
        let participant = UserId::new_random();
        let later = event(organizer, 60, 120);
        let mut store = MockAttendanceStore::new();
        find(&mut store, &later);
        store.expect_find_attendance().returning(|_, _| Ok(None));
        store.expect_record_attendance().never();
        let refused = futures_executor::block_on(service(store).scan(by, later.id, participant));
        assert!(matches!(
            refused,
            Err(AttendanceError::OutsideWindow(
                "the event has not started yet"
            ))
        ));

        let ended = event(organizer, -120, -60);
        let recorded = Attendance {
            event_id: ended.id,
            participant_id: participant,
            scanned_by: Some(organizer),
            scanned_at: now() - Duration::seconds(90),
        };
        let mut store = MockAttendanceStore::new();
        find(&mut store, &ended);
        let answer = recorded.clone();
        store
            .expect_find_attendance()
            .returning(move |_, _| Ok(Some(answer.clone())));
        let repeat = futures_executor::block_on(service(store).scan(by, ended.id, participant));
        assert_eq!(repeat.unwrap(), Recorded::Existing(recorded));
    }

    #[test]
    fn only_participants_are_scanned_and_only_by_the_events_manager() {
        let organizer = UserId::new_random();
        let running = event(organizer, -60, 60);
        let mut store = MockAttendanceStore::new();
        find(&mut store, &running);
        store.expect_is_participant().returning(|_, _| Ok(false));
        store.expect_record_attendance().never();
        let svc = service(store);
        let scan = |by| futures_executor::block_on(svc.scan(by, running.id, UserId::new_random()));
        assert!(matches!(
            scan(Actor::user(organizer, Role::Organizer)),
            Err(AttendanceError::NotAParticipant)
        ));
        assert!(matches!(
            scan(Actor::user(UserId::new_random(), Role::Organizer)),
            Err(AttendanceError::Forbidden(_))
        ));
        assert!(matches!(
            scan(Actor::user(organizer, Role::Participant)),
            Err(AttendanceError::Forbidden(_))
        ));
        assert!(matches!(
            scan(Actor::user(UserId::new_random(), Role::Admin)),
            Err(AttendanceError::NotAParticipant)
        ));
    }

    #[test]
    fn a_scan_racing_the_close_is_refused_as_closed() {
        let organizer = UserId::new_random();
        let running = event(organizer, -60, 60);
        let mut store = MockAttendanceStore::new();
        find(&mut store, &running);
        store.expect_is_participant().returning(|_, _| Ok(true));
        store
            .expect_record_attendance()
            .times(1)
            .returning(|_| Ok(ScanOutcome::EventClosed));
        let refused = futures_executor::block_on(service(store).scan(
            Actor::user(organizer, Role::Organizer),
            running.id,
            UserId::new_random(),
        ));
        assert!(matches!(
            refused,
            Err(AttendanceError::OutsideWindow("the event is closed"))
        ));
    }

    #[test]
    fn a_certificate_needs_an_attendance() {
        let organizer = UserId::new_random();
        let running = event(organizer, -60, 60);
        let mut store = MockAttendanceStore::new();
        find(&mut store, &running);
        store
            .expect_find_certificate_for()
            .returning(|_, _| Ok(None));
        store.expect_find_attendance().returning(|_, _| Ok(None));
        store.expect_insert_certificate().never();
        let issued = futures_executor::block_on(service(store).issue_certificate(
            Actor::System,
            running.id,
            UserId::new_random(),
        ));
        assert!(matches!(issued, Err(AttendanceError::NotAttended)));
    }

    #[test]
    fn certificates_are_read_by_their_participant_the_manager_and_staff() {
        let organizer = UserId::new_random();
        let participant = UserId::new_random();
        let ev = event(organizer, -60, 60);
        let certificate = Certificate {
            id: CertificateId::new(),
            event_id: ev.id,
            participant_id: participant,
            participant_name: "n".into(),
            event_title: "t".into(),
            verification_code: VerificationCode::from_stored("c".into()),
            issued_at: now(),
            document: String::new(),
        };
        let may = |id, role| Actor::user(id, role).may_read(&certificate, Some(&ev));
        assert!(may(participant, Role::Participant));
        assert!(may(organizer, Role::Organizer));
        assert!(may(UserId::new_random(), Role::Support));
        assert!(may(UserId::new_random(), Role::Admin));
        assert!(!may(UserId::new_random(), Role::Participant));
        assert!(!may(UserId::new_random(), Role::Organizer));
    }
}
