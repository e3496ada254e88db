//! Events, participants, attendances and certificates in memory.
//!
//! One lock over all four maps makes every natural key (participant, attendance and certificate
//! per (event, user), verification code) atomic, as the unique keys do in Postgres. Closing an
//! event commits its certificate jobs through a [`MemoryOutbox`](crate::MemoryOutbox) while the
//! lock is held, so the event is closed iff its jobs are enqueued.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use keel_domain::StoreError;
use keel_domain::attendance::{
    Attendance, AttendanceStore, Certificate, CertificateId, CloseOutcome, Event, EventId,
    IssueCertificate, Participant, Recorded, ScanOutcome,
};
use keel_domain::identity::user::UserId;
use keel_domain::jobs::{EnqueueOutcome, JobKind};

use crate::MemoryJobQueue;

type Pair = (EventId, UserId);

#[derive(Debug, Default)]
struct State {
    events: HashMap<EventId, Event>,
    participants: HashMap<Pair, Participant>,
    attendances: HashMap<Pair, Attendance>,
    certificates: HashMap<CertificateId, Certificate>,
    certificate_of: HashMap<Pair, CertificateId>,
    codes: HashSet<String>,
}

/// [`AttendanceStore`] in memory. Clones share one store.
#[derive(Debug, Clone)]
pub struct MemoryAttendanceStore {
    state: Arc<Mutex<State>>,
    jobs: MemoryJobQueue,
}

impl MemoryAttendanceStore {
    /// An empty store whose certificate jobs go to `jobs`.
    pub fn new(jobs: &MemoryJobQueue) -> Self {
        Self {
            state: Arc::default(),
            jobs: jobs.clone(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Forgets everything of a deleted user, as the foreign keys do in Postgres: their
    /// participations, attendances and certificates go; events they organized stay, without an
    /// organizer.
    pub fn forget_user(&self, user: UserId) {
        let mut state = self.lock();
        state.participants.retain(|(_, u), _| *u != user);
        state.attendances.retain(|(_, u), _| *u != user);
        for attendance in state.attendances.values_mut() {
            if attendance.scanned_by == Some(user) {
                attendance.scanned_by = None;
            }
        }
        let gone: Vec<CertificateId> = state
            .certificates
            .values()
            .filter(|c| c.participant_id == user)
            .map(|c| c.id)
            .collect();
        for id in gone {
            if let Some(c) = state.certificates.remove(&id) {
                state.codes.remove(c.verification_code.as_str());
                state.certificate_of.remove(&(c.event_id, c.participant_id));
            }
        }
        for event in state.events.values_mut() {
            if event.organizer_id == Some(user) {
                event.organizer_id = None;
            }
        }
    }
}

fn missing(what: &str) -> StoreError {
    StoreError::Conflict(format!("{what} does not exist"))
}

#[async_trait]
impl AttendanceStore for MemoryAttendanceStore {
    async fn create_event(&self, event: &Event) -> Result<(), StoreError> {
        let mut state = self.lock();
        if state.events.contains_key(&event.id) {
            return Err(StoreError::Conflict("the event exists already".into()));
        }
        state.events.insert(event.id, event.clone());
        Ok(())
    }

    async fn find_event(&self, id: EventId) -> Result<Option<Event>, StoreError> {
        Ok(self.lock().events.get(&id).cloned())
    }

    async fn add_participant(
        &self,
        event: EventId,
        user: UserId,
        now: DateTime<Utc>,
    ) -> Result<Recorded<Participant>, StoreError> {
        let mut state = self.lock();
        if !state.events.contains_key(&event) {
            return Err(missing("the event"));
        }
        if let Some(existing) = state.participants.get(&(event, user)) {
            return Ok(Recorded::Existing(existing.clone()));
        }
        let participant = Participant {
            event_id: event,
            user_id: user,
            added_at: now,
        };
        state
            .participants
            .insert((event, user), participant.clone());
        Ok(Recorded::Inserted(participant))
    }

    async fn is_participant(&self, event: EventId, user: UserId) -> Result<bool, StoreError> {
        Ok(self.lock().participants.contains_key(&(event, user)))
    }

    async fn record_attendance(&self, attendance: &Attendance) -> Result<ScanOutcome, StoreError> {
        let key = (attendance.event_id, attendance.participant_id);
        let mut state = self.lock();
        if let Some(existing) = state.attendances.get(&key) {
            return Ok(ScanOutcome::Recorded(Recorded::Existing(existing.clone())));
        }
        if !state.participants.contains_key(&key) {
            return Err(missing("the participant"));
        }
        // Re-checked under the lock `close_event` holds while it reads the attendees: an
        // attendance is either seen by the close or refused after it.
        match state.events.get(&attendance.event_id) {
            None => return Err(missing("the event")),
            Some(event) if event.closed_at.is_some() => return Ok(ScanOutcome::EventClosed),
            Some(_) => {}
        }
        state.attendances.insert(key, attendance.clone());
        Ok(ScanOutcome::Recorded(Recorded::Inserted(
            attendance.clone(),
        )))
    }

    async fn find_attendance(
        &self,
        event: EventId,
        participant: UserId,
    ) -> Result<Option<Attendance>, StoreError> {
        Ok(self.lock().attendances.get(&(event, participant)).cloned())
    }

    async fn insert_certificate(
        &self,
        certificate: &Certificate,
    ) -> Result<Recorded<Certificate>, StoreError> {
        let key = (certificate.event_id, certificate.participant_id);
        let mut state = self.lock();
        if let Some(existing) = state
            .certificate_of
            .get(&key)
            .and_then(|id| state.certificates.get(id))
        {
            return Ok(Recorded::Existing(existing.clone()));
        }
        if !state.attendances.contains_key(&key) {
            return Err(missing("the attendance"));
        }
        if state.certificates.contains_key(&certificate.id)
            || state.codes.contains(certificate.verification_code.as_str())
        {
            return Err(StoreError::Conflict(
                "the certificate id or verification code is taken".into(),
            ));
        }
        state
            .codes
            .insert(certificate.verification_code.as_str().to_owned());
        state.certificate_of.insert(key, certificate.id);
        state
            .certificates
            .insert(certificate.id, certificate.clone());
        Ok(Recorded::Inserted(certificate.clone()))
    }

    async fn find_certificate(&self, id: CertificateId) -> Result<Option<Certificate>, StoreError> {
        Ok(self.lock().certificates.get(&id).cloned())
    }

    async fn find_certificate_for(
        &self,
        event: EventId,
        participant: UserId,
    ) -> Result<Option<Certificate>, StoreError> {
        let state = self.lock();
        Ok(state
            .certificate_of
            .get(&(event, participant))
            .and_then(|id| state.certificates.get(id))
            .cloned())
    }

    async fn find_certificate_by_code(
        &self,
        code: &str,
    ) -> Result<Option<Certificate>, StoreError> {
        Ok(self
            .lock()
            .certificates
            .values()
            .find(|c| c.verification_code.as_str() == code)
            .cloned())
    }

    async fn close_event(
        &self,
        id: EventId,
        now: DateTime<Utc>,
    ) -> Result<Option<CloseOutcome>, StoreError> {
        let mut state = self.lock();
        let attendees: Vec<UserId> = state
            .attendances
            .keys()
            .filter(|(event, _)| *event == id)
            .map(|(_, user)| *user)
            .collect();
        let Some(event) = state.events.get_mut(&id) else {
            return Ok(None);
        };
        let newly_closed = event.closed_at.is_none();
        if newly_closed {
            event.closed_at = Some(now);
        }
        let event = event.clone();
        let mut outbox = self.jobs.outbox();
        for participant in attendees {
            let job = IssueCertificate::new(id, participant)
                .to_new_job(now)
                .map_err(|e| StoreError::Corrupt(e.to_string()))?;
            outbox.push(job);
        }
        // Committed while the lock is held: the close and its jobs happen as one step.
        let jobs_enqueued = outbox
            .commit(now)
            .into_iter()
            .filter(|o| matches!(o, EnqueueOutcome::Enqueued(_)))
            .count();
        drop(state);
        Ok(Some(CloseOutcome {
            event,
            newly_closed,
            jobs_enqueued,
        }))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use keel_domain::testkit::attendance_store;

    use super::*;
    use crate::{MemoryJobQueue, MemoryUserStore};

    #[tokio::test(flavor = "multi_thread")]
    async fn keeps_the_attendance_store_contract() {
        let jobs = MemoryJobQueue::new();
        attendance_store::run_all(
            Arc::new(MemoryAttendanceStore::new(&jobs)),
            Arc::new(MemoryUserStore::new()),
            Arc::new(jobs),
        )
        .await;
    }
}
