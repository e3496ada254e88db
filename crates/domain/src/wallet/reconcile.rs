//! Reconciliation: the `wallet.reconcile` periodic job asks the provider about pending
//! operations older than a threshold, settles what it can and records what does not match.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::operation::{OperationId, OperationKind};
use super::provider::ProviderStatus;
use super::service::WalletService;
use super::store::SettleOutcome;
use crate::jobs::{JobContext, JobFailure, JobHandler, JobKind, KindSettings};

/// What kind of disagreement a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MismatchKind {
    /// The provider reports another amount or currency.
    AmountDiffers,
    /// The provider succeeded after keel had failed the operation (money moved anyway).
    SucceededAfterFailure,
    /// A webhook names no operation of ours.
    UnknownReference,
    /// The provider does not know a deposit of ours.
    MissingAtProvider,
    /// A deposit event for a withdrawal or the reverse.
    WrongEventType,
}

impl MismatchKind {
    /// Stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::AmountDiffers => "amount-differs",
            Self::SucceededAfterFailure => "succeeded-after-failure",
            Self::UnknownReference => "unknown-reference",
            Self::MissingAtProvider => "missing-at-provider",
            Self::WrongEventType => "wrong-event-type",
        }
    }

    /// Parses a stored name.
    pub fn parse(name: &str) -> Option<Self> {
        [
            Self::AmountDiffers,
            Self::SucceededAfterFailure,
            Self::UnknownReference,
            Self::MissingAtProvider,
            Self::WrongEventType,
        ]
        .into_iter()
        .find(|k| k.as_str() == name)
    }
}

/// A disagreement between keel and the provider, for an admin to look at.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mismatch {
    /// Identity.
    pub id: Uuid,
    /// The operation, when one is known.
    pub operation_id: Option<OperationId>,
    /// What kind.
    pub kind: MismatchKind,
    /// Details (event id, amounts); never secrets.
    pub detail: String,
    /// When it was found.
    pub found_at: DateTime<Utc>,
}

/// What one reconciliation run did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReconcileReport {
    /// Operations asked about.
    pub checked: u32,
    /// Operations settled from the provider's answer.
    pub settled: u32,
    /// Operations still pending at the provider.
    pub still_pending: u32,
    /// New findings recorded.
    pub mismatches: u32,
    /// Provider calls or settlements that failed (retried on the next run).
    pub errors: u32,
}

/// Most operations one run asks about.
pub const RECONCILE_BATCH: u32 = 500;

impl WalletService {
    /// Asks the provider about every pending operation older than the policy's threshold.
    pub async fn reconcile(&self) -> Result<ReconcileReport, super::WalletError> {
        let before = self.now() - self.policy().reconcile_after;
        let stale = self.store().stale_pending(before, RECONCILE_BATCH).await?;
        let mut report = ReconcileReport::default();
        for operation in stale {
            report.checked += 1;
            let status = match self.provider().status(operation.id).await {
                Ok(status) => status,
                Err(_) => {
                    // The domain does not log: failed calls are counted in the report.
                    report.errors += 1;
                    continue;
                }
            };
            let finding = match status {
                ProviderStatus::Pending => {
                    report.still_pending += 1;
                    None
                }
                // A payout the provider never saw is still the payout job's to send or release.
                ProviderStatus::Unknown if operation.kind == OperationKind::Withdrawal => {
                    report.still_pending += 1;
                    None
                }
                ProviderStatus::Unknown => Some((MismatchKind::MissingAtProvider, String::new())),
                ProviderStatus::Succeeded { money } if money != operation.money => Some((
                    MismatchKind::AmountDiffers,
                    format!("provider settled {money}, expected {}", operation.money),
                )),
                ProviderStatus::Succeeded { .. } => {
                    self.settle_from_provider(&operation, true, None, &mut report)
                        .await;
                    None
                }
                ProviderStatus::Failed { reason } => {
                    self.settle_from_provider(&operation, false, Some(&reason), &mut report)
                        .await;
                    None
                }
            };
            if let Some((kind, detail)) = finding
                && self.report(Some(operation.id), kind, &detail).await?
            {
                report.mismatches += 1;
            }
        }
        Ok(report)
    }

    /// Settles one operation from the provider's answer; a failure is counted, not fatal, so
    /// one bad item never stops the run.
    async fn settle_from_provider(
        &self,
        operation: &super::Operation,
        succeeded: bool,
        reason: Option<&str>,
        report: &mut ReconcileReport,
    ) {
        match self.finish(operation, succeeded, None, reason).await {
            Ok(SettleOutcome::Settled) => report.settled += 1,
            Ok(_) => {}
            Err(_) => report.errors += 1,
        }
    }
}

/// Reconciles pending operations with the provider (every 15 minutes, once across nodes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReconcileWallet;

impl JobKind for ReconcileWallet {
    const KIND: &'static str = "wallet.reconcile";

    fn settings() -> KindSettings {
        KindSettings {
            max_attempts: 3,
            ..KindSettings::default()
        }
    }
}

/// Called with the report of every reconciliation run (metrics, logs).
pub type ReconcileObserver = Arc<dyn Fn(&ReconcileReport) + Send + Sync>;

/// Runs [`ReconcileWallet`].
#[derive(Clone)]
pub struct ReconcileWalletHandler {
    wallet: WalletService,
    observer: Option<ReconcileObserver>,
}

impl ReconcileWalletHandler {
    /// Reconciles through `wallet`, telling `observer` each run's report.
    pub fn new(wallet: WalletService, observer: Option<ReconcileObserver>) -> Self {
        Self { wallet, observer }
    }
}

#[async_trait]
impl JobHandler<ReconcileWallet> for ReconcileWalletHandler {
    async fn run(&self, _ctx: &JobContext, _job: ReconcileWallet) -> Result<(), JobFailure> {
        let report = self
            .wallet
            .reconcile()
            .await
            .map_err(super::payout::job_failure)?;
        if let Some(observer) = &self.observer {
            observer(&report);
        }
        if report.errors > 0 && report.errors == report.checked {
            return Err(JobFailure::retry("the provider answered no status request"));
        }
        Ok(())
    }
}
