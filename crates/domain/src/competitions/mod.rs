//! Competitions: registration with a seat capacity that is never oversold.
//!
//! - [`values`]: the competition and registration types and the validation of a new competition.
//! - [`store`]: the [`CompetitionStore`] port. Its contract (proved for every adapter by
//!   `testkit::competition_store`): the seat count and the registration row change together,
//!   atomically, so `0 ≤ seats_taken ≤ capacity` and `seats_taken = rows` hold under any race.
//! - [`definitions`]: the competition definitions a node keeps for registrations (they never
//!   change after creation; the store re-checks what matters under its lock).
//! - [`service`]: the use cases (create, get, list, register, withdraw, release a deleted user).
//! - [`release`]: the periodic sweep that frees the seats of deleted accounts even when the
//!   best-effort `UserDeleted` event was lost.
//! - [`mails`]: the confirmation mail and the reminder job, enqueued in the registration's own
//!   transaction (transactional outbox), with deterministic mail ids so re-runs deliver once.

pub mod definitions;
pub mod mails;
pub mod release;
pub mod service;
pub mod store;
pub mod values;

pub use definitions::DefinitionCache;
pub use mails::{SendReminder, SendReminderHandler, confirmation_mail, mail_id, reminder_mail};
pub use release::{ReleaseDeletedSeats, ReleaseDeletedSeatsHandler};
pub use service::{CompetitionError, CompetitionService, Registered};
pub use store::{CompetitionStore, RegisterOutcome, RegistrationReceipt, WithdrawOutcome};
pub use values::{
    Competition, CompetitionDraft, CompetitionId, FieldViolation, MAX_CAPACITY, MAX_TITLE_CHARS,
    NewRegistration, Registration, RegistrationId,
};

#[cfg(test)]
pub use store::MockCompetitionStore;
