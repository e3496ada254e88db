//! One record per webhook delivery, whatever became of it.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// What became of a delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryOutcome {
    /// Verified and applied.
    Processed,
    /// Verified; the event was processed before.
    Duplicate,
    /// Verified but not applied (out of order, unknown reference, amount mismatch).
    Ignored,
    /// Refused: bad signature, stale timestamp, malformed.
    Rejected,
    /// Verified but applying it failed (the provider will retry).
    Failed,
}

impl DeliveryOutcome {
    /// Stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Processed => "processed",
            Self::Duplicate => "duplicate",
            Self::Ignored => "ignored",
            Self::Rejected => "rejected",
            Self::Failed => "failed",
        }
    }

    /// Parses a stored name.
    pub fn parse(name: &str) -> Option<Self> {
        [
            Self::Processed,
            Self::Duplicate,
            Self::Ignored,
            Self::Rejected,
            Self::Failed,
        ]
        .into_iter()
        .find(|o| o.as_str() == name)
    }
}

/// One webhook delivery as logged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookDelivery {
    /// Identity of the log row.
    pub id: Uuid,
    /// When it arrived.
    pub received_at: DateTime<Utc>,
    /// The event id header, if it had a readable one.
    pub event_id: Option<String>,
    /// The event type, if the body was read.
    pub event_type: Option<String>,
    /// What became of it.
    pub outcome: DeliveryOutcome,
    /// Why (e.g. `bad-signature`, `settled`, `out-of-order`).
    pub reason: String,
    /// The raw body as text (lossy), at most [`MAX_LOGGED_BODY`] bytes.
    pub body: String,
}

/// Largest body kept in the log.
pub const MAX_LOGGED_BODY: usize = 16 * 1024;
/// Largest body kept for a rejected delivery.
pub const MAX_LOGGED_REJECTED_BODY: usize = 1024;

impl WebhookDelivery {
    /// A log entry for `body` received at `at`.
    pub fn new(
        at: DateTime<Utc>,
        event_id: Option<String>,
        outcome: DeliveryOutcome,
        reason: impl Into<String>,
        body: &[u8],
    ) -> Self {
        let limit = match outcome {
            // Anyone can send a refused delivery: keep just enough to diagnose it.
            DeliveryOutcome::Rejected => MAX_LOGGED_REJECTED_BODY,
            _ => MAX_LOGGED_BODY,
        };
        let kept = &body[..body.len().min(limit)];
        Self {
            id: Uuid::now_v7(),
            received_at: at,
            event_id,
            event_type: None,
            outcome,
            reason: reason.into(),
            // Postgres text cannot hold NUL.
            body: String::from_utf8_lossy(kept).replace('\0', "\u{FFFD}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_are_kept_as_text_postgres_can_store() {
        let at = Utc::now();
        let kept = WebhookDelivery::new(at, None, DeliveryOutcome::Processed, "ok", b"a\0b\xff");
        assert_eq!(kept.body, "a\u{FFFD}b\u{FFFD}");
        let big = vec![b'x'; 100_000];
        let rejected = WebhookDelivery::new(at, None, DeliveryOutcome::Rejected, "bad", &big);
        assert_eq!(rejected.body.len(), MAX_LOGGED_REJECTED_BODY);
        let processed = WebhookDelivery::new(at, None, DeliveryOutcome::Processed, "ok", &big);
        assert_eq!(processed.body.len(), MAX_LOGGED_BODY);
    }
}
