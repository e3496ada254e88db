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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use chrono::Utc;
    use uuid::Uuid;

    use super::*;
    use crate::SystemClock;
    use crate::identity::user::UserId;
    use crate::jobs::JobId;
    use crate::wallet::{
        ApprovalPolicy, Currency, MockLedgerStore, MockPaymentProvider, Money, Operation,
        OperationKind, SettleOutcome, Transaction, WalletPolicy,
    };

    fn ctx(attempt: u32) -> JobContext {
        JobContext {
            id: JobId(Uuid::now_v7()),
            attempt,
            max_attempts: 5,
            created_at: Utc::now(),
        }
    }

    fn withdrawal() -> (Operation, Transaction) {
        let money = Money::parse(100, "ZAR").expect("valid");
        let mut op = Operation::new(
            UserId(Uuid::now_v7()),
            OperationKind::Withdrawal,
            money,
            Utc::now(),
        );
        let hold = Transaction::hold(op.user_id, money, op.id, op.created_at);
        op.transaction_id = Some(hold.id);
        op.destination = Some("bank:1".into());
        (op, hold)
    }

    fn handler(store: MockLedgerStore, provider: MockPaymentProvider) -> SendPayoutHandler {
        let policy = WalletPolicy {
            approval: ApprovalPolicy {
                approval_threshold: 0,
            },
            reconcile_after: chrono::Duration::minutes(10),
            default_currency: Currency::parse("ZAR").expect("valid"),
        };
        SendPayoutHandler::new(WalletService::new(
            Arc::new(store),
            Arc::new(provider),
            Arc::new(SystemClock),
            policy,
        ))
    }

    #[test]
    fn the_schedule_is_at_once_then_1_5_and_15_minutes() {
        let settings = SendPayout::settings();
        assert_eq!(settings.max_attempts, 5);
        assert_eq!(settings.backoff, Backoff::seconds(&[0, 60, 300, 900]));
        let job = SendPayout {
            operation_id: OperationId(Uuid::now_v7()),
        };
        assert_eq!(job.unique_key(), Some(job.operation_id.0.to_string()));
    }

    #[test]
    fn an_unavailable_provider_is_retried_and_a_refusal_is_final() {
        for (answer, retryable) in [
            (ProviderError::Unavailable("503".into()), true),
            (ProviderError::Rejected("closed account".into()), false),
        ] {
            let (op, _) = withdrawal();
            let id = op.id;
            let mut store = MockLedgerStore::new();
            store
                .expect_operation()
                .returning(move |_| Ok(Some(op.clone())));
            let mut provider = MockPaymentProvider::new();
            let answer = answer.clone();
            provider
                .expect_create_payout()
                .withf(move |r| r.reference == id && r.destination == "bank:1")
                .times(1)
                .returning(move |_| Err(answer.clone()));
            let failure = futures_executor::block_on(
                handler(store, provider).run(&ctx(1), SendPayout { operation_id: id }),
            )
            .expect_err("the provider failed");
            assert_eq!(failure.is_retryable(), retryable);
        }
    }

    #[test]
    fn a_dead_payout_voids_its_hold() {
        let (op, hold) = withdrawal();
        let (id, hold_id) = (op.id, hold.id);
        let mut store = MockLedgerStore::new();
        store
            .expect_operation()
            .returning(move |_| Ok(Some(op.clone())));
        store
            .expect_transaction()
            .returning(move |_| Ok(Some(hold.clone())));
        store
            .expect_settle()
            .withf(move |s| {
                s.operation == id
                    && s.to == crate::wallet::OperationStatus::Failed
                    && s.transaction.is_some_and(|t| t.resolves == Some(hold_id))
                    && s.failure_reason == Some("payout failed after 5 attempt(s)")
            })
            .times(1)
            .returning(|_| Ok(SettleOutcome::Settled));
        let mut provider = MockPaymentProvider::new();
        provider
            .expect_status()
            .times(1)
            .returning(|_| Ok(crate::wallet::ProviderStatus::Unknown));
        futures_executor::block_on(
            handler(store, provider).on_dead(&ctx(5), SendPayout { operation_id: id }),
        )
        .expect("released");
    }

    #[test]
    fn a_dead_payout_the_provider_made_is_posted_and_one_in_flight_is_left_pending() {
        let (op, hold) = withdrawal();
        let (id, money, hold_id) = (op.id, op.money, hold.id);
        let mut store = MockLedgerStore::new();
        store
            .expect_operation()
            .returning(move |_| Ok(Some(op.clone())));
        store
            .expect_transaction()
            .returning(move |_| Ok(Some(hold.clone())));
        store
            .expect_settle()
            .withf(move |s| {
                s.to == crate::wallet::OperationStatus::Succeeded
                    && s.transaction.is_some_and(|t| {
                        t.resolves == Some(hold_id)
                            && t.kind == crate::wallet::TransactionKind::PostHold
                    })
            })
            .times(1)
            .returning(|_| Ok(SettleOutcome::Settled));
        let mut provider = MockPaymentProvider::new();
        let mut answers = vec![
            Ok(crate::wallet::ProviderStatus::Pending),
            Ok(crate::wallet::ProviderStatus::Succeeded { money }),
        ];
        provider.expect_status().times(2).returning(move |_| {
            answers
                .pop()
                .unwrap_or(Err(ProviderError::Unavailable("x".into())))
        });
        let handler = handler(store, provider);
        // First the provider has paid: posted. (The mock answers from the end of the list.)
        futures_executor::block_on(handler.on_dead(&ctx(5), SendPayout { operation_id: id }))
            .expect("posted");
        // Then (another dead job of the same payout) it is still in flight: nothing is settled.
        futures_executor::block_on(handler.on_dead(&ctx(5), SendPayout { operation_id: id }))
            .expect("left pending");
    }

    #[test]
    fn a_provider_that_cannot_be_asked_keeps_the_hold_until_it_can() {
        let (op, _) = withdrawal();
        let id = op.id;
        let mut store = MockLedgerStore::new();
        store
            .expect_operation()
            .returning(move |_| Ok(Some(op.clone())));
        store.expect_settle().never();
        let mut provider = MockPaymentProvider::new();
        provider
            .expect_status()
            .returning(|_| Err(ProviderError::Unavailable("down".into())));
        let failure = futures_executor::block_on(
            handler(store, provider).on_dead(&ctx(5), SendPayout { operation_id: id }),
        )
        .expect_err("asked again later");
        assert!(failure.is_retryable());
    }
}
