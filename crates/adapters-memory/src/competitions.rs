//! Competitions and registrations in memory.
//!
//! One lock over every competition and registration: a registration takes its seat, stores its
//! row and commits its jobs to the queue's outbox while holding it, so the seat count, the rows
//! and the jobs change together, as one transaction does in Postgres.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use keel_domain::StoreError;
use keel_domain::competitions::{
    Competition, CompetitionId, CompetitionStore, NewRegistration, RegisterOutcome, Registration,
    RegistrationId, RegistrationReceipt, SendReminder, WithdrawOutcome,
};
use keel_domain::identity::user::UserId;
use keel_domain::jobs::{JobChange, JobId, JobKind, JobQueue, NewJob};

use crate::MemoryJobQueue;

#[derive(Debug)]
struct Stored {
    registration: Registration,
    /// The pending reminder job, cancelled with the registration.
    reminder: Option<JobId>,
}

#[derive(Debug, Default)]
struct State {
    competitions: HashMap<CompetitionId, Competition>,
    registrations: HashMap<RegistrationId, Stored>,
    by_user: HashMap<(CompetitionId, UserId), RegistrationId>,
}

impl State {
    /// Removes a registration and frees its seat; returns its reminder job.
    fn remove(&mut self, id: RegistrationId) -> Option<JobId> {
        let stored = self.registrations.remove(&id)?;
        let r = &stored.registration;
        if let Some(user) = r.user_id {
            self.by_user.remove(&(r.competition_id, user));
        }
        if let Some(c) = self.competitions.get_mut(&r.competition_id) {
            c.free_seat();
        }
        stored.reminder
    }
}

/// [`CompetitionStore`] in memory. Clones share one store.
#[derive(Debug, Clone)]
pub struct MemoryCompetitionStore {
    state: Arc<Mutex<State>>,
    jobs: MemoryJobQueue,
}

impl MemoryCompetitionStore {
    /// An empty store whose registrations enqueue their jobs on `jobs`.
    pub fn new(jobs: MemoryJobQueue) -> Self {
        Self {
            state: Arc::default(),
            jobs,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Deletes reminder jobs that have not started (a running one finds its registration gone
    /// and skips).
    async fn cancel(&self, reminders: Vec<JobId>) -> Result<(), StoreError> {
        for id in reminders {
            match self.jobs.delete(id).await? {
                JobChange::Changed(_) | JobChange::NotFound | JobChange::NotAllowed(_) => {}
            }
        }
        Ok(())
    }
}

#[async_trait]
impl CompetitionStore for MemoryCompetitionStore {
    async fn create(&self, competition: &Competition) -> Result<(), StoreError> {
        let mut state = self.lock();
        if state.competitions.contains_key(&competition.id) {
            return Err(StoreError::Conflict(format!(
                "competition {} exists",
                competition.id
            )));
        }
        state
            .competitions
            .insert(competition.id, competition.clone());
        Ok(())
    }

    async fn get(&self, id: CompetitionId) -> Result<Option<Competition>, StoreError> {
        Ok(self.lock().competitions.get(&id).cloned())
    }

    async fn list(
        &self,
        after: Option<(DateTime<Utc>, CompetitionId)>,
        limit: u32,
    ) -> Result<Vec<Competition>, StoreError> {
        let state = self.lock();
        let mut items: Vec<&Competition> = state
            .competitions
            .values()
            .filter(|c| after.is_none_or(|a| (c.created_at, c.id) < a))
            .collect();
        items.sort_by_key(|c| std::cmp::Reverse((c.created_at, c.id)));
        Ok(items.into_iter().take(limit as usize).cloned().collect())
    }

    /// The receipt is not stored: the memory idempotency store is separate, so the caller
    /// completes its claim itself (`receipt_stored: false`).
    async fn register<'a>(
        &self,
        registration: &NewRegistration,
        jobs: &[NewJob],
        _receipt: Option<&'a dyn RegistrationReceipt>,
        now: DateTime<Utc>,
    ) -> Result<RegisterOutcome, StoreError> {
        let mut state = self.lock();
        let key = (registration.competition_id, registration.user_id);
        let Some(competition) = state.competitions.get(&registration.competition_id) else {
            return Ok(RegisterOutcome::NotFound);
        };
        if !competition.registration_open(now) {
            return Ok(RegisterOutcome::Closed);
        }
        if state.by_user.contains_key(&key) {
            return Ok(RegisterOutcome::AlreadyRegistered);
        }
        let Some(competition) = state.competitions.get_mut(&registration.competition_id) else {
            return Ok(RegisterOutcome::NotFound);
        };
        let Some(seats_left) = competition.take_seat() else {
            return Ok(RegisterOutcome::Full);
        };
        // The jobs commit while the lock is held: they exist iff the registration does.
        let mut outbox = self.jobs.outbox();
        for job in jobs {
            outbox.push(job.clone());
        }
        let outcomes = outbox.commit(now);
        let reminder = jobs
            .iter()
            .zip(outcomes)
            .find(|(job, _)| job.kind == SendReminder::KIND)
            .map(|(_, outcome)| outcome.id());
        state.by_user.insert(key, registration.id);
        state.registrations.insert(
            registration.id,
            Stored {
                registration: Registration {
                    id: registration.id,
                    competition_id: registration.competition_id,
                    user_id: Some(registration.user_id),
                    registered_at: registration.registered_at,
                },
                reminder,
            },
        );
        Ok(RegisterOutcome::Registered {
            seats_left,
            receipt_stored: false,
        })
    }

    async fn withdraw(
        &self,
        competition: CompetitionId,
        user: UserId,
        now: DateTime<Utc>,
    ) -> Result<WithdrawOutcome, StoreError> {
        let (outcome, reminder) = {
            let mut state = self.lock();
            match state.competitions.get(&competition) {
                None => return Ok(WithdrawOutcome::NotFound),
                Some(c) if !c.registration_open(now) => return Ok(WithdrawOutcome::Closed),
                Some(_) => {}
            }
            let Some(id) = state.by_user.get(&(competition, user)).copied() else {
                return Ok(WithdrawOutcome::NotRegistered);
            };
            let reminder = state.remove(id);
            (WithdrawOutcome::Withdrawn { registration: id }, reminder)
        };
        self.cancel(reminder.into_iter().collect()).await?;
        Ok(outcome)
    }

    async fn registration(&self, id: RegistrationId) -> Result<Option<Registration>, StoreError> {
        Ok(self
            .lock()
            .registrations
            .get(&id)
            .map(|s| s.registration.clone()))
    }

    async fn registration_count(&self, competition: CompetitionId) -> Result<u64, StoreError> {
        let state = self.lock();
        Ok(state
            .registrations
            .values()
            .filter(|s| s.registration.competition_id == competition)
            .count() as u64)
    }

    async fn release_user(&self, user: UserId, now: DateTime<Utc>) -> Result<u64, StoreError> {
        let reminders = {
            let mut state = self.lock();
            let ids: Vec<RegistrationId> = state
                .by_user
                .iter()
                .filter(|((c, u), _)| {
                    *u == user
                        && state
                            .competitions
                            .get(c)
                            .is_some_and(|c| !c.has_started(now))
                })
                .map(|(_, id)| *id)
                .collect();
            ids.into_iter()
                .map(|id| state.remove(id))
                .collect::<Vec<_>>()
        };
        let released = reminders.len() as u64;
        self.cancel(reminders.into_iter().flatten().collect())
            .await?;
        Ok(released)
    }

    /// Nothing to sweep: memory registrations are never anonymised (a deleted account's seats
    /// are freed by [`CompetitionStore::release_user`] only).
    async fn release_anonymised(&self, _now: DateTime<Utc>) -> Result<u64, StoreError> {
        Ok(0)
    }
}

#[cfg(test)]
mod tests {
    use keel_domain::testkit::competition_store::{
        Fixture, SeatOp, random_ops_keep_seats_equal_to_rows, run_all,
    };

    use super::*;
    use crate::MemoryUserStore;

    #[tokio::test]
    async fn memory_store_keeps_the_contract() {
        let jobs = MemoryJobQueue::new();
        let store = MemoryCompetitionStore::new(jobs.clone());
        let users = MemoryUserStore::new();
        run_all(&Fixture {
            store: &store,
            users: &users,
            jobs: &jobs,
        })
        .await;
    }

    fn seat_op() -> impl proptest::strategy::Strategy<Value = SeatOp> {
        use proptest::prelude::*;
        prop_oneof![
            3 => (0usize..6).prop_map(SeatOp::Register),
            1 => (0usize..6).prop_map(SeatOp::Withdraw),
            1 => (0usize..6).prop_map(SeatOp::Release),
        ]
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(128))]

        /// Random register / withdraw / release sequences of a few users through the port keep
        /// `0 ≤ seats_taken ≤ capacity` and `seats_taken = rows` after every step, and a
        /// registration succeeds iff a seat was free and the user held none.
        #[test]
        fn random_sequences_through_the_port_keep_the_seat_rules(
            capacity in 1u32..5,
            ops in proptest::collection::vec(seat_op(), 0..60),
        ) {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                let jobs = MemoryJobQueue::new();
                let store = MemoryCompetitionStore::new(jobs.clone());
                let users = MemoryUserStore::new();
                let people: Vec<UserId> = (0..6).map(|_| UserId(uuid::Uuid::new_v4())).collect();
                let fixture = Fixture { store: &store, users: &users, jobs: &jobs };
                random_ops_keep_seats_equal_to_rows(&fixture, &people, capacity, &ops).await;
            });
        }
    }

    /// Random interleavings (seeded) of registrations and withdrawals racing on threads keep
    /// `0 ≤ seats_left ≤ capacity` and `seats_taken = rows` after every round.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn random_interleavings_keep_seats_equal_to_rows() {
        use chrono::Duration;
        use keel_domain::competitions::{CompetitionDraft, CompetitionService};

        let mut seed: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let jobs = MemoryJobQueue::new();
        let store = MemoryCompetitionStore::new(jobs);
        let service =
            CompetitionService::new(Arc::new(store.clone()), Arc::new(keel_domain::SystemClock));
        for _ in 0..30 {
            let now = Utc::now();
            let capacity = 1 + (next() % 5) as i64;
            let c = service
                .create(
                    &CompetitionDraft {
                        title: "Random".into(),
                        capacity,
                        registration_deadline: now + Duration::hours(1),
                        starts_at: now + Duration::hours(2),
                    },
                    UserId(uuid::Uuid::new_v4()),
                )
                .await
                .unwrap();
            let users: Vec<UserId> = (0..8).map(|_| UserId(uuid::Uuid::new_v4())).collect();
            for _ in 0..6 {
                let tasks: Vec<_> = (0..10)
                    .map(|_| {
                        let (service, user) = (service.clone(), users[(next() % 8) as usize]);
                        let register = next() % 3 != 0;
                        tokio::spawn(async move {
                            if register {
                                let _ = service.register(c.id, user, None).await;
                            } else {
                                let _ = service.withdraw(c.id, user).await;
                            }
                        })
                    })
                    .collect();
                for task in tasks {
                    task.await.unwrap();
                }
                let now = store.get(c.id).await.unwrap().unwrap();
                assert!(now.seats_taken <= now.capacity);
                assert!(now.seats_left() <= now.capacity);
                assert_eq!(
                    u64::from(now.seats_taken),
                    store.registration_count(c.id).await.unwrap()
                );
            }
        }
    }
}
