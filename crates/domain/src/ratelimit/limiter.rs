//! The `RateLimiter` port.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::{RateDecision, RatePolicy};
use crate::StoreError;

/// Keeps one GCRA budget per key and counts requests against it.
///
/// Implementations apply [`super::gcra::decide`] atomically per key, with `now` as given (never
/// their own clock), so concurrent checks of one key never allow more than the policy does.
#[cfg_attr(test, mockall::automock)]
#[async_trait]
pub trait RateLimiter: Send + Sync {
    /// Counts one request of `key` under `policy` at `now`, or refuses it.
    ///
    /// `key` is an opaque subject built by the caller, e.g. `"auth:ip:1.2.3.4"`; one key must
    /// always be checked with the same policy. A refused request is not counted.
    async fn check(
        &self,
        key: &str,
        policy: &RatePolicy,
        now: DateTime<Utc>,
    ) -> Result<RateDecision, StoreError>;
}
