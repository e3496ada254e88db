//! The `wallet.payout` job: sends a withdrawal's payout to the provider, and releases the hold
//! when every attempt failed.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::operation::OperationId;
use super::provider::ProviderError;
use super::service::{WalletError, WalletService};
use crate::jobs::{Backoff, JobContext, JobFailure, JobHandler, JobKind, KindSettings};

/// Sends the payout of one withdrawal (enqueued with the hold, in its transaction).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SendPayout {
    /// The withdrawal.
    pub operation_id: OperationId,
}

impl JobKind for SendPayout {
    const KIND: &'static str = "wallet.payout";

    /// Five attempts: at once, then after 1, 5 and 15 minutes (and once more after 15), then
    /// the dead-letter queue and the hold is released.
    fn settings() -> KindSettings {
        KindSettings {
            max_attempts: 5,
            backoff: Backoff::seconds(&[0, 60, 300, 900]),
            ..KindSettings::default()
        }
    }

    fn unique_key(&self) -> Option<String> {
        Some(self.operation_id.0.to_string())
    }
}

/// Runs [`SendPayout`].
#[derive(Clone)]
pub struct SendPayoutHandler {
    wallet: WalletService,
}

impl SendPayoutHandler {
    /// Sends payouts through `wallet`.
    pub fn new(wallet: WalletService) -> Self {
        Self { wallet }
    }
}

/// How a wallet failure maps to a job failure: provider refusals and missing rows are final.
pub(super) fn job_failure(error: WalletError) -> JobFailure {
    match error {
        WalletError::Provider(ProviderError::Unavailable(reason)) => JobFailure::retry(reason),
        WalletError::Store(e) => JobFailure::from(e),
        other => JobFailure::permanent(other),
    }
}

#[async_trait]
impl JobHandler<SendPayout> for SendPayoutHandler {
    async fn run(&self, _ctx: &JobContext, job: SendPayout) -> Result<(), JobFailure> {
        self.wallet
            .send_payout(job.operation_id)
            .await
            .map_err(job_failure)
    }

    async fn on_dead(&self, ctx: &JobContext, job: SendPayout) -> Result<(), JobFailure> {
        let reason = format!("payout failed after {} attempt(s)", ctx.attempt);
        self.wallet
            .release_withdrawal(job.operation_id, &reason)
            .await
            .map_err(|e| match e {
                WalletError::NotFound => JobFailure::permanent(e),
                other => JobFailure::retry(other),
            })
    }
}
