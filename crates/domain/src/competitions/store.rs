//! The `CompetitionStore` port.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::values::{Competition, CompetitionId, NewRegistration, Registration, RegistrationId};
use crate::StoreError;
use crate::idempotency::{Claim, StoredResponse};
use crate::identity::user::UserId;
use crate::jobs::NewJob;

/// What [`CompetitionStore::register`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegisterOutcome {
    /// The seat is taken and the registration stored (with its jobs); seats left after it.
    Registered {
        /// Seats still free once this registration committed.
        seats_left: u32,
        /// Whether the receipt handed to the store was committed with the registration.
        receipt_stored: bool,
    },
    /// No such competition.
    NotFound,
    /// The registration deadline has passed.
    Closed,
    /// The user already holds a seat.
    AlreadyRegistered,
    /// Every seat is taken.
    Full,
}

/// What [`CompetitionStore::withdraw`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WithdrawOutcome {
    /// The registration is gone, its seat free and its reminder cancelled.
    Withdrawn {
        /// The removed registration.
        registration: RegistrationId,
    },
    /// No such competition.
    NotFound,
    /// The registration deadline has passed.
    Closed,
    /// The user holds no seat.
    NotRegistered,
}

/// An idempotent response to commit in the registration's own transaction, so the response and
/// the seat are stored together (stores that cannot do so ignore it and say so).
pub trait RegistrationReceipt: Send + Sync {
    /// The `Idempotency-Key` claim the response completes.
    fn claim(&self) -> &Claim;

    /// The response to store for `registration`, given the seats left after it.
    fn response(
        &self,
        registration: &NewRegistration,
        seats_left: u32,
    ) -> Result<StoredResponse, StoreError>;
}

/// Competitions and their registrations.
///
/// Contract (proved for every adapter by `keel_domain::testkit::competition_store`):
/// - a registration takes a seat and stores its row atomically, only while
///   `seats_taken < capacity` and `now < registration_deadline`, at most once per
///   (competition, user); the jobs handed to it are enqueued in the same unit of work;
/// - a withdrawal removes the row, frees the seat and cancels the registration's pending
///   [`super::SendReminder`] job atomically;
/// - so under any interleaving `0 ≤ seats_taken ≤ capacity` and `seats_taken` equals the number
///   of registration rows.
#[cfg_attr(test, mockall::automock)]
#[async_trait]
pub trait CompetitionStore: Send + Sync {
    /// Stores a new competition.
    async fn create(&self, competition: &Competition) -> Result<(), StoreError>;

    /// One competition with its current seat count.
    async fn get(&self, id: CompetitionId) -> Result<Option<Competition>, StoreError>;

    /// Up to `limit` competitions, newest first (by `created_at`, then id), strictly after
    /// `after` (the previous page's last item).
    async fn list(
        &self,
        after: Option<(DateTime<Utc>, CompetitionId)>,
        limit: u32,
    ) -> Result<Vec<Competition>, StoreError>;

    /// Takes a seat for `registration` if one is free and the deadline (checked against `now`)
    /// has not passed, storing the row, enqueuing `jobs` and (where the store can) committing
    /// `receipt` in the same transaction.
    async fn register<'a>(
        &self,
        registration: &NewRegistration,
        jobs: &[NewJob],
        receipt: Option<&'a dyn RegistrationReceipt>,
        now: DateTime<Utc>,
    ) -> Result<RegisterOutcome, StoreError>;

    /// Removes `user`'s registration to `competition` before the deadline, freeing its seat and
    /// cancelling its reminder in the same transaction.
    async fn withdraw(
        &self,
        competition: CompetitionId,
        user: UserId,
        now: DateTime<Utc>,
    ) -> Result<WithdrawOutcome, StoreError>;

    /// One registration (the reminder checks it still exists).
    async fn registration(&self, id: RegistrationId) -> Result<Option<Registration>, StoreError>;

    /// Registrations of `competition` (its rows, for checks and reports).
    async fn registration_count(&self, competition: CompetitionId) -> Result<u64, StoreError>;

    /// Frees every seat `user` holds in competitions that have not started at `now` (the account
    /// was deleted), with their reminders; also the seats of registrations already anonymised by
    /// an account deletion. Returns how many seats were freed. Idempotent.
    async fn release_user(&self, user: UserId, now: DateTime<Utc>) -> Result<u64, StoreError>;

    /// Frees the seats of every registration already anonymised by an account deletion
    /// (`user_id` cleared) in competitions that have not started at `now`, with their
    /// reminders: the periodic sweep behind [`super::ReleaseDeletedSeats`], for deletions whose
    /// `UserDeleted` event was lost. Returns how many seats were freed. Idempotent. Stores that
    /// never anonymise a registration (the memory store) free nothing.
    async fn release_anonymised(&self, now: DateTime<Utc>) -> Result<u64, StoreError>;
}
