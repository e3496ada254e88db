//! Domain events and the `EventBus` port: how one capability tells others that something
//! happened (a user was deleted, …) without knowing who listens.

use async_trait::async_trait;

use crate::StoreError;
use crate::identity::user::UserId;

/// Something that happened, for other capabilities to react to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DomainEvent {
    /// An account and its personal data were removed; boards, registrations and the like drop
    /// or anonymise what they hold for this user.
    UserDeleted {
        /// The removed account.
        user_id: UserId,
    },
}

/// Publishes domain events to every current subscriber.
///
/// Delivery is at most once per subscriber and best effort: a subscriber that falls too far
/// behind misses events (and is told so by its adapter). Work that must not be lost belongs on
/// the durable job queue, not here.
#[cfg_attr(test, mockall::automock)]
#[async_trait]
pub trait EventBus: Send + Sync {
    /// Sends `event` to every subscriber.
    async fn publish(&self, event: DomainEvent) -> Result<(), StoreError>;

    /// A new subscription that sees every event published from now on.
    fn subscribe(&self) -> Box<dyn EventSubscription>;
}

/// One subscriber's stream of events.
#[async_trait]
pub trait EventSubscription: Send {
    /// The next event; `None` once the bus is gone.
    async fn next(&mut self) -> Option<DomainEvent>;
}
