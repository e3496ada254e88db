//! In-process event bus: a bounded broadcast channel.

use async_trait::async_trait;
use keel_domain::StoreError;
use keel_domain::events::{DomainEvent, EventBus, EventSubscription};
use tokio::sync::broadcast;

/// Events buffered per subscriber before the slowest one starts missing events.
pub const CAPACITY: usize = 1024;

/// [`EventBus`] within one process.
#[derive(Debug, Clone)]
pub struct MemoryEventBus {
    sender: broadcast::Sender<DomainEvent>,
}

impl Default for MemoryEventBus {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryEventBus {
    /// A bus with no subscribers.
    pub fn new() -> Self {
        Self {
            sender: broadcast::channel(CAPACITY).0,
        }
    }
}

#[async_trait]
impl EventBus for MemoryEventBus {
    async fn publish(&self, event: DomainEvent) -> Result<(), StoreError> {
        // No subscriber is not an error: nobody needed to hear it.
        let _ = self.sender.send(event);
        Ok(())
    }

    fn subscribe(&self) -> Box<dyn EventSubscription> {
        Box::new(MemorySubscription {
            receiver: self.sender.subscribe(),
        })
    }
}

struct MemorySubscription {
    receiver: broadcast::Receiver<DomainEvent>,
}

#[async_trait]
impl EventSubscription for MemorySubscription {
    async fn next(&mut self) -> Option<DomainEvent> {
        loop {
            match self.receiver.recv().await {
                Ok(event) => return Some(event),
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    tracing::warn!(missed, "event subscriber fell behind and missed events");
                }
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use keel_domain::identity::user::UserId;

    use super::*;

    #[tokio::test]
    async fn every_subscriber_sees_each_event_once() {
        let bus = MemoryEventBus::new();
        let mut a = bus.subscribe();
        let mut b = bus.subscribe();
        let event = DomainEvent::UserDeleted {
            user_id: UserId::new_random(),
        };
        bus.publish(event.clone()).await.unwrap();
        assert_eq!(a.next().await, Some(event.clone()));
        assert_eq!(b.next().await, Some(event));
    }

    #[tokio::test]
    async fn a_lagging_subscriber_skips_ahead_instead_of_blocking_the_bus() {
        let bus = MemoryEventBus::new();
        let mut slow = bus.subscribe();
        let ids: Vec<UserId> = (0..CAPACITY + 10).map(|_| UserId::new_random()).collect();
        for id in &ids {
            bus.publish(DomainEvent::UserDeleted { user_id: *id })
                .await
                .unwrap();
        }
        // The oldest ten were dropped for this subscriber; it resumes with the eleventh.
        assert_eq!(
            slow.next().await,
            Some(DomainEvent::UserDeleted { user_id: ids[10] })
        );
    }

    #[tokio::test]
    async fn publishing_without_subscribers_is_fine() {
        let bus = MemoryEventBus::new();
        let event = DomainEvent::UserDeleted {
            user_id: UserId::new_random(),
        };
        assert!(bus.publish(event).await.is_ok());
    }
}
