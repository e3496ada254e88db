//! The competition use cases, over a [`CompetitionStore`] and a [`Clock`].

use std::sync::Arc;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::definitions::DefinitionCache;
use super::mails::{SendReminder, confirmation_mail};
use super::store::{CompetitionStore, RegisterOutcome, RegistrationReceipt, WithdrawOutcome};
use super::values::{
    Competition, CompetitionDraft, CompetitionId, FieldViolation, NewRegistration, Registration,
    RegistrationId,
};
use crate::identity::user::UserId;
use crate::jobs::JobKind;
use crate::mail::SendMail;
use crate::{Clock, StoreError};

/// Why a competition use case did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum CompetitionError {
    /// The request breaks validation rules.
    #[error("invalid competition: {} field(s)", .0.len())]
    Invalid(Vec<FieldViolation>),
    /// No such competition.
    #[error("no such competition")]
    NotFound,
    /// The registration deadline has passed.
    #[error("registration is closed")]
    Closed,
    /// Every seat is taken.
    #[error("every seat is taken")]
    Full,
    /// The user already holds a seat.
    #[error("already registered")]
    AlreadyRegistered,
    /// The user holds no seat to withdraw.
    #[error("not registered")]
    NotRegistered,
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A successful registration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registered {
    /// The stored registration.
    pub registration: Registration,
    /// Seats left right after it.
    pub seats_left: u32,
    /// Whether the store committed the receipt with the registration.
    pub receipt_stored: bool,
}

/// The competition use cases.
#[derive(Clone)]
pub struct CompetitionService {
    store: Arc<dyn CompetitionStore>,
    clock: Arc<dyn Clock>,
    definitions: Arc<DefinitionCache>,
}

impl CompetitionService {
    /// The use cases over `store`, with "now" from `clock`.
    pub fn new(store: Arc<dyn CompetitionStore>, clock: Arc<dyn Clock>) -> Self {
        Self {
            store,
            clock,
            definitions: Arc::default(),
        }
    }

    /// The same use cases keeping competition definitions in `definitions` (share one cache
    /// between the services of a node, e.g. one service per request).
    pub fn with_definitions(self, definitions: Arc<DefinitionCache>) -> Self {
        Self {
            definitions,
            ..self
        }
    }

    /// Validates and stores a new competition created by `creator`.
    pub async fn create(
        &self,
        draft: &CompetitionDraft,
        creator: UserId,
    ) -> Result<Competition, CompetitionError> {
        let competition = Competition::create(
            CompetitionId(Uuid::now_v7()),
            draft,
            creator,
            self.clock.now(),
        )
        .map_err(CompetitionError::Invalid)?;
        self.store.create(&competition).await?;
        Ok(competition)
    }

    /// One competition.
    pub async fn get(&self, id: CompetitionId) -> Result<Competition, CompetitionError> {
        self.store.get(id).await?.ok_or(CompetitionError::NotFound)
    }

    /// A page of competitions, newest first.
    pub async fn list(
        &self,
        after: Option<(DateTime<Utc>, CompetitionId)>,
        limit: u32,
    ) -> Result<Vec<Competition>, CompetitionError> {
        Ok(self.store.list(after, limit).await?)
    }

    /// Registers `user` for `competition`: one seat, a confirmation mail and a reminder 24 h
    /// before the start, all committed together (with `receipt`, where the store can). The mails
    /// go to the address the account has when they are sent.
    pub async fn register(
        &self,
        competition: CompetitionId,
        user: UserId,
        receipt: Option<&dyn RegistrationReceipt>,
    ) -> Result<Registered, CompetitionError> {
        let now = self.clock.now();
        let found = match self.definitions.get(competition) {
            Some(kept) => kept,
            None => self.definitions.keep(self.get(competition).await?),
        };
        if !found.registration_open(now) {
            return Err(CompetitionError::Closed);
        }
        let registration = NewRegistration {
            id: RegistrationId(Uuid::now_v7()),
            competition_id: competition,
            user_id: user,
            registered_at: now,
        };
        let jobs = registration_jobs(&registration, &found, now)?;
        match self
            .store
            .register(&registration, &jobs, receipt, now)
            .await?
        {
            RegisterOutcome::Registered {
                seats_left,
                receipt_stored,
            } => Ok(Registered {
                registration: Registration {
                    id: registration.id,
                    competition_id: competition,
                    user_id: Some(user),
                    registered_at: now,
                },
                seats_left,
                receipt_stored,
            }),
            RegisterOutcome::NotFound => Err(CompetitionError::NotFound),
            RegisterOutcome::Closed => Err(CompetitionError::Closed),
            RegisterOutcome::AlreadyRegistered => Err(CompetitionError::AlreadyRegistered),
            RegisterOutcome::Full => Err(CompetitionError::Full),
        }
    }

    /// Withdraws `user` from `competition` before the deadline, freeing the seat.
    pub async fn withdraw(
        &self,
        competition: CompetitionId,
        user: UserId,
    ) -> Result<RegistrationId, CompetitionError> {
        match self
            .store
            .withdraw(competition, user, self.clock.now())
            .await?
        {
            WithdrawOutcome::Withdrawn { registration } => Ok(registration),
            WithdrawOutcome::NotFound => Err(CompetitionError::NotFound),
            WithdrawOutcome::Closed => Err(CompetitionError::Closed),
            WithdrawOutcome::NotRegistered => Err(CompetitionError::NotRegistered),
        }
    }

    /// Frees the seats of a deleted account in competitions that have not started.
    pub async fn release_user(&self, user: UserId) -> Result<u64, CompetitionError> {
        Ok(self.store.release_user(user, self.clock.now()).await?)
    }

    /// Frees the seats of registrations anonymised by account deletions, in competitions that
    /// have not started (the sweep for deletions whose event was lost).
    pub async fn release_anonymised(&self) -> Result<u64, CompetitionError> {
        Ok(self.store.release_anonymised(self.clock.now()).await?)
    }
}

/// The jobs a registration enqueues in its transaction: the confirmation mail (due now) and the
/// reminder (due [`super::mails::reminder_lead`] before the start, or now).
pub fn registration_jobs(
    registration: &NewRegistration,
    competition: &Competition,
    now: DateTime<Utc>,
) -> Result<Vec<crate::jobs::NewJob>, StoreError> {
    let corrupt = |e: serde_json::Error| StoreError::Corrupt(e.to_string());
    let confirmation = SendMail(confirmation_mail(
        registration.id,
        registration.user_id,
        competition,
    ));
    let reminder = SendReminder {
        registration_id: registration.id,
        competition_id: competition.id,
        user_id: registration.user_id.as_uuid(),
        title: competition.title.clone(),
        starts_at: competition.starts_at,
    };
    Ok(vec![
        confirmation.to_new_job(now).map_err(corrupt)?,
        reminder.to_new_job(reminder.run_at(now)).map_err(corrupt)?,
    ])
}

#[cfg(test)]
mod tests {
    use chrono::Duration;

    use super::*;
    use crate::SystemClock;
    use crate::competitions::MockCompetitionStore;

    fn competition(deadline_in: Duration) -> Competition {
        let now = Utc::now();
        Competition {
            id: CompetitionId(Uuid::new_v4()),
            title: "Open".into(),
            capacity: 2,
            seats_taken: 0,
            registration_deadline: now + deadline_in,
            starts_at: now + deadline_in + Duration::hours(1),
            created_by: UserId(Uuid::nil()),
            created_at: now,
        }
    }

    fn service(store: MockCompetitionStore) -> CompetitionService {
        CompetitionService::new(Arc::new(store), Arc::new(SystemClock))
    }

    #[test]
    fn register_enqueues_a_confirmation_and_a_reminder() {
        let c = competition(Duration::hours(2));
        let mut store = MockCompetitionStore::new();
        let found = c.clone();
        store
            .expect_get()
            .returning(move |_| Ok(Some(found.clone())));
        store
            .expect_register()
            .withf(|_, jobs, receipt, _| {
                jobs.len() == 2
                    && jobs[0].kind == SendMail::KIND
                    && jobs[1].kind == SendReminder::KIND
                    && jobs[1].run_at <= Utc::now()
                    && receipt.is_none()
            })
            .returning(|_, _, _, _| {
                Ok(RegisterOutcome::Registered {
                    seats_left: 1,
                    receipt_stored: false,
                })
            });
        let done =
            futures_executor::block_on(service(store).register(c.id, UserId(Uuid::new_v4()), None));
        assert_eq!(done.map(|r| r.seats_left).ok(), Some(1));
    }

    #[test]
    fn registrations_read_a_competition_once_per_shared_cache() {
        let c = competition(Duration::hours(2));
        let mut store = MockCompetitionStore::new();
        let found = c.clone();
        store
            .expect_get()
            .times(1)
            .returning(move |_| Ok(Some(found.clone())));
        store.expect_register().times(3).returning(|_, _, _, _| {
            Ok(RegisterOutcome::Registered {
                seats_left: 1,
                receipt_stored: false,
            })
        });
        let store: Arc<dyn CompetitionStore> = Arc::new(store);
        let cache = Arc::new(DefinitionCache::default());
        for _ in 0..3 {
            // A new service per call, as a handler builds one per request.
            let service = CompetitionService::new(Arc::clone(&store), Arc::new(SystemClock))
                .with_definitions(Arc::clone(&cache));
            let done =
                futures_executor::block_on(service.register(c.id, UserId(Uuid::new_v4()), None));
            assert!(done.is_ok());
        }
        assert_eq!(cache.len(), 1);
    }

    #[test]
    fn register_after_the_deadline_is_closed_without_touching_seats() {
        let c = competition(-Duration::hours(1));
        let mut store = MockCompetitionStore::new();
        store.expect_get().returning(move |_| Ok(Some(c.clone())));
        store.expect_register().never();
        let done = futures_executor::block_on(service(store).register(
            CompetitionId(Uuid::nil()),
            UserId(Uuid::new_v4()),
            None,
        ));
        assert!(matches!(done, Err(CompetitionError::Closed)));
    }

    #[test]
    fn store_outcomes_become_errors() {
        for (outcome, expected) in [
            (RegisterOutcome::Full, "every seat is taken"),
            (RegisterOutcome::AlreadyRegistered, "already registered"),
            (RegisterOutcome::Closed, "registration is closed"),
            (RegisterOutcome::NotFound, "no such competition"),
        ] {
            let c = competition(Duration::hours(2));
            let mut store = MockCompetitionStore::new();
            store.expect_get().returning(move |_| Ok(Some(c.clone())));
            store
                .expect_register()
                .returning(move |_, _, _, _| Ok(outcome));
            let done = futures_executor::block_on(service(store).register(
                CompetitionId(Uuid::nil()),
                UserId(Uuid::new_v4()),
                None,
            ));
            assert_eq!(done.err().map(|e| e.to_string()).as_deref(), Some(expected));
        }
    }

    #[test]
    fn invalid_drafts_are_not_stored() {
        let mut store = MockCompetitionStore::new();
        store.expect_create().never();
        let now = Utc::now();
        let draft = CompetitionDraft {
            title: String::new(),
            capacity: 5,
            registration_deadline: now,
            starts_at: now,
        };
        let done = futures_executor::block_on(service(store).create(&draft, UserId(Uuid::nil())));
        assert!(matches!(done, Err(CompetitionError::Invalid(v)) if v.len() == 2));
    }
}
