//! Delivering one event like a real provider: signed per attempt, retried with backoff.

use std::time::Duration;

use chrono::Utc;

use super::signing::SimSigning;
use super::sink::WebhookSink;

/// How often and how patiently a failed delivery (transport error or 5xx) is retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included (at least 1).
    pub attempts: u32,
    /// Pause before the first retry; doubled before each later one.
    pub first_backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            attempts: 5,
            first_backoff: Duration::from_millis(200),
        }
    }
}

/// Why delivery stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum DeliveryResult {
    /// The receiver answered 2xx.
    Accepted,
    /// The receiver answered 4xx: retrying cannot help.
    Refused(u16),
    /// Every attempt failed (transport error or 5xx), or signing failed.
    GaveUp,
}

/// Signs `body` as event `event_id` at each attempt (fresh timestamp) and delivers it until
/// the receiver answers 2xx or 4xx or the attempts run out.
pub(super) async fn deliver(
    sink: &dyn WebhookSink,
    signing: &SimSigning,
    retry: RetryPolicy,
    event_id: &str,
    body: &[u8],
) -> DeliveryResult {
    let mut backoff = retry.first_backoff;
    for attempt in 1..=retry.attempts.max(1) {
        if attempt > 1 {
            tokio::time::sleep(backoff).await;
            backoff = backoff.saturating_mul(2);
        }
        let Ok(webhook) = signing.sign(event_id, Utc::now().timestamp(), body.to_vec()) else {
            tracing::error!(event_id, "revio simulator: cannot sign the webhook");
            return DeliveryResult::GaveUp;
        };
        match sink.deliver(&webhook).await {
            Ok(status @ 200..=299) => {
                tracing::debug!(
                    event_id,
                    status,
                    attempt,
                    "revio simulator: webhook accepted"
                );
                return DeliveryResult::Accepted;
            }
            Ok(status @ 400..=499) => {
                tracing::warn!(
                    event_id,
                    status,
                    attempt,
                    "revio simulator: webhook refused"
                );
                return DeliveryResult::Refused(status);
            }
            Ok(status) => {
                tracing::warn!(event_id, status, attempt, "revio simulator: webhook failed");
            }
            Err(error) => {
                tracing::warn!(event_id, %error, attempt, "revio simulator: webhook not delivered");
            }
        }
    }
    tracing::error!(event_id, "revio simulator: webhook given up");
    DeliveryResult::GaveUp
}
