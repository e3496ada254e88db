//! The wallet use cases over a [`LedgerStore`], a [`PaymentProvider`] and a [`Clock`].

use std::sync::Arc;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::Balance;
use super::adjustment::{Adjustment, AdjustmentId, AdjustmentStatus, ApprovalPolicy};
use super::money::{Currency, Money};
use super::operation::{
    Direction, HistoryCursor, HistoryFilter, Operation, OperationId, OperationKind, OperationStatus,
};
use super::payout::SendPayout;
use super::provider::{
    Checkout, CheckoutRequest, PaymentProvider, ProviderError, ProviderEvent, ProviderStatus,
};
use super::reconcile::{Mismatch, MismatchKind};
use super::store::{
    AdjustmentReceipt, ApplyOutcome, Booked, LedgerStore, OperationReceipt, ReverseOutcome,
    SettleOutcome, Settlement,
};
use super::transaction::{Transaction, TransactionId};
use super::verify::LedgerReport;
use crate::identity::user::UserId;
use crate::jobs::JobKind;
use crate::{Clock, StoreError};

/// Longest payout destination accepted.
pub const MAX_DESTINATION_CHARS: usize = 100;
/// Longest reason of a reversal or adjustment.
pub const MAX_REASON_CHARS: usize = 500;

/// Why a wallet use case did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum WalletError {
    /// A field breaks a rule.
    #[error("invalid {field}: {message}")]
    Invalid {
        /// The request field.
        field: &'static str,
        /// What is wrong.
        message: String,
    },
    /// Not enough available funds (holds included).
    #[error("insufficient funds")]
    InsufficientFunds,
    /// No such operation, transaction or adjustment.
    #[error("not found")]
    NotFound,
    /// The transaction's kind cannot be reversed.
    #[error("this transaction cannot be reversed")]
    NotReversible,
    /// The transaction was reversed before.
    #[error("already reversed")]
    AlreadyReversed,
    /// The adjustment was applied before.
    #[error("already applied")]
    AlreadyApplied,
    /// Maker-checker: the proposer cannot approve their own adjustment.
    #[error("a second admin must approve this adjustment")]
    SameApprover,
    /// An admin cannot adjust their own wallet.
    #[error("admins cannot adjust their own wallet")]
    SelfAdjustment,
    /// The provider could not be reached; retry later.
    #[error(transparent)]
    Provider(#[from] ProviderError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The wallet's settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WalletPolicy {
    /// Maker-checker threshold of adjustments.
    pub approval: ApprovalPolicy,
    /// Pending operations older than this are asked about by reconciliation.
    pub reconcile_after: chrono::Duration,
    /// The currency of `GET /wallet/balance` without a `currency`.
    pub default_currency: Currency,
}

/// A deposit opened at the provider.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DepositOpened {
    /// The pending operation.
    pub operation: Operation,
    /// The provider's checkout.
    pub checkout: Checkout,
    /// The receipt was committed with the operation.
    pub receipt_stored: bool,
}

/// A stored operation and whether its receipt was committed with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recorded {
    /// The operation.
    pub operation: Operation,
    /// The receipt was committed with it.
    pub receipt_stored: bool,
}

/// What became of a provider event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventOutcome {
    /// Applied: the operation reached its final status.
    Settled,
    /// This event id was processed before.
    Duplicate,
    /// The operation was already final; nothing changed (`reason` says why it matters).
    AlreadyFinal {
        /// The status it already had.
        status: OperationStatus,
        /// Whether this event contradicts it (a failure after a success, or the reverse).
        contradicts: bool,
    },
    /// Not applied: the event does not match its operation (recorded as a mismatch).
    Mismatch(MismatchKind),
}

impl EventOutcome {
    /// Short reason for the webhook log.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Settled => "settled",
            Self::Duplicate => "duplicate-event",
            Self::AlreadyFinal {
                contradicts: true, ..
            } => "out-of-order",
            Self::AlreadyFinal { .. } => "already-settled",
            Self::Mismatch(kind) => kind.as_str(),
        }
    }
}

/// The wallet use cases.
#[derive(Clone)]
pub struct WalletService {
    store: Arc<dyn LedgerStore>,
    provider: Arc<dyn PaymentProvider>,
    clock: Arc<dyn Clock>,
    policy: WalletPolicy,
}

impl WalletService {
    /// The use cases over `store` and `provider`, with "now" from `clock`.
    pub fn new(
        store: Arc<dyn LedgerStore>,
        provider: Arc<dyn PaymentProvider>,
        clock: Arc<dyn Clock>,
        policy: WalletPolicy,
    ) -> Self {
        Self {
            store,
            provider,
            clock,
            policy,
        }
    }

    /// The settings.
    pub fn policy(&self) -> &WalletPolicy {
        &self.policy
    }

    /// Opens a deposit of `money` for `user`: a checkout at the provider and a pending
    /// operation the provider's webhook settles.
    pub async fn deposit(
        &self,
        user: UserId,
        money: Money,
        receipt: Option<&dyn OperationReceipt>,
    ) -> Result<DepositOpened, WalletError> {
        let mut operation = Operation::new(user, OperationKind::Deposit, money, self.clock.now());
        // The operation exists before the provider hears of it, so its webhook always finds it.
        self.store.open_deposit(&operation, None).await?;
        let request = CheckoutRequest {
            reference: operation.id,
            money,
        };
        let checkout = match self.provider.create_checkout(&request).await {
            Ok(checkout) => checkout,
            Err(e) => {
                let reason = format!("the checkout could not be opened: {e}");
                self.finish(&operation, false, None, Some(&reason)).await?;
                return Err(e.into());
            }
        };
        operation.provider_reference = Some(checkout.checkout_reference.clone());
        let receipt_stored = self.store.attach_checkout(&operation, receipt).await?;
        Ok(DepositOpened {
            operation,
            checkout,
            receipt_stored,
        })
    }

    /// Places a withdrawal of `money` to `destination`: the funds are held at once and a payout
    /// job is enqueued in the same unit of work.
    pub async fn withdraw(
        &self,
        user: UserId,
        money: Money,
        destination: &str,
        receipt: Option<&dyn OperationReceipt>,
    ) -> Result<Recorded, WalletError> {
        let destination = checked_text("destination", destination, MAX_DESTINATION_CHARS)?;
        let now = self.clock.now();
        let mut operation = Operation::new(user, OperationKind::Withdrawal, money, now);
        let hold = Transaction::hold(user, money, operation.id, now);
        operation.destination = Some(destination);
        operation.transaction_id = Some(hold.id);
        let payout = SendPayout {
            operation_id: operation.id,
        }
        .to_new_job(now)
        .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        match self
            .store
            .place_withdrawal(&operation, &hold, &[payout], receipt)
            .await?
        {
            Booked::Done { receipt_stored } => Ok(Recorded {
                operation,
                receipt_stored,
            }),
            Booked::InsufficientFunds => Err(WalletError::InsufficientFunds),
        }
    }

    /// `user`'s funds in `currency` (the default currency when `None`).
    pub async fn balance(
        &self,
        user: UserId,
        currency: Option<Currency>,
    ) -> Result<Balance, WalletError> {
        let currency = currency.unwrap_or(self.policy.default_currency);
        Ok(self.store.balance(user, currency).await?)
    }

    /// A page of `user`'s history, newest first.
    pub async fn history(
        &self,
        user: UserId,
        filter: &HistoryFilter,
        after: Option<HistoryCursor>,
        limit: u32,
    ) -> Result<Vec<Operation>, WalletError> {
        Ok(self.store.operations(user, filter, after, limit).await?)
    }

    /// One of `user`'s operations.
    pub async fn operation(&self, user: UserId, id: OperationId) -> Result<Operation, WalletError> {
        match self.store.operation(id).await? {
            Some(op) if op.user_id == user => Ok(op),
            _ => Err(WalletError::NotFound),
        }
    }

    /// Applies a verified provider event: settles its operation once, whatever the order or
    /// number of deliveries.
    pub async fn handle_event(&self, event: &ProviderEvent) -> Result<EventOutcome, WalletError> {
        let Some(operation) = self.store.operation(event.data.reference).await? else {
            self.report(None, MismatchKind::UnknownReference, &event.id)
                .await?;
            return Ok(EventOutcome::Mismatch(MismatchKind::UnknownReference));
        };
        let expected_kind = match event.event_type.as_str().split('.').next() {
            Some("deposit") => OperationKind::Deposit,
            _ => OperationKind::Withdrawal,
        };
        if operation.kind != expected_kind {
            return self
                .mismatch(
                    &operation,
                    MismatchKind::WrongEventType,
                    event.event_type.as_str(),
                )
                .await;
        }
        if event.data.amount_minor != operation.money.amount.minor()
            || event.data.currency != operation.money.currency
        {
            let detail = format!(
                "event {} reports {} {}, expected {}",
                event.id, event.data.amount_minor, event.data.currency, operation.money
            );
            return self
                .mismatch(&operation, MismatchKind::AmountDiffers, &detail)
                .await;
        }
        let succeeded = event.event_type.succeeded();
        let reason = event
            .data
            .reason
            .as_deref()
            .or(Some("provider reported a failure"));
        match self
            .finish(&operation, succeeded, Some(&event.id), reason)
            .await?
        {
            SettleOutcome::Settled => Ok(EventOutcome::Settled),
            SettleOutcome::DuplicateEvent => Ok(EventOutcome::Duplicate),
            SettleOutcome::AlreadyFinal(status) => {
                self.already_final(&operation, status, succeeded, &event.id)
                    .await
            }
            SettleOutcome::NotFound => Err(WalletError::NotFound),
            SettleOutcome::InsufficientFunds => Err(WalletError::InsufficientFunds),
        }
    }

    /// Sends the payout of a pending withdrawal (the payout job). Does nothing once the
    /// withdrawal is final.
    pub async fn send_payout(&self, id: OperationId) -> Result<(), WalletError> {
        let operation = self
            .store
            .operation(id)
            .await?
            .ok_or(WalletError::NotFound)?;
        if operation.kind != OperationKind::Withdrawal || operation.status.is_final() {
            return Ok(());
        }
        let destination = operation.destination.clone().unwrap_or_default();
        self.provider
            .create_payout(&super::provider::PayoutRequest {
                reference: operation.id,
                money: operation.money,
                destination,
            })
            .await?;
        Ok(())
    }

    /// Settles a withdrawal whose payout job is dead, as the provider knows it: a payout the
    /// provider made is posted, one it still processes is left pending (for its webhook or
    /// reconciliation), and one it never made or refused is failed and its hold released.
    /// Idempotent. A provider that cannot be asked is an error: the caller asks again later.
    pub async fn release_withdrawal(
        &self,
        id: OperationId,
        reason: &str,
    ) -> Result<(), WalletError> {
        let operation = self
            .store
            .operation(id)
            .await?
            .ok_or(WalletError::NotFound)?;
        if operation.status.is_final() {
            return Ok(());
        }
        let succeeded = match self.provider.status(operation.id).await {
            Ok(ProviderStatus::Succeeded { money }) if money == operation.money => true,
            Ok(ProviderStatus::Succeeded { money }) => {
                let detail = format!("provider paid {money}, expected {}", operation.money);
                self.report(Some(operation.id), MismatchKind::AmountDiffers, &detail)
                    .await?;
                return Ok(());
            }
            Ok(ProviderStatus::Pending) => return Ok(()),
            // Refused or never seen (a 4xx on the status call means the provider has no such
            // payout): the money did not leave.
            Ok(ProviderStatus::Failed { .. } | ProviderStatus::Unknown)
            | Err(ProviderError::Rejected(_)) => false,
            Err(e @ ProviderError::Unavailable(_)) => return Err(e.into()),
        };
        match self
            .finish(&operation, succeeded, None, Some(reason))
            .await?
        {
            SettleOutcome::Settled
            | SettleOutcome::AlreadyFinal(_)
            | SettleOutcome::DuplicateEvent => Ok(()),
            SettleOutcome::NotFound => Err(WalletError::NotFound),
            SettleOutcome::InsufficientFunds => Err(WalletError::InsufficientFunds),
        }
    }

    /// Moves a pending operation to success or failure with the transaction that books it.
    pub(super) async fn finish(
        &self,
        operation: &Operation,
        succeeded: bool,
        provider_event: Option<&str>,
        failure_reason: Option<&str>,
    ) -> Result<SettleOutcome, WalletError> {
        let now = self.clock.now();
        let transaction = match (operation.kind, succeeded) {
            (OperationKind::Deposit, true) => Some(Transaction::deposit(
                operation.user_id,
                operation.money,
                operation.id,
                now,
            )),
            (OperationKind::Withdrawal, _) => {
                let hold = self.hold_of(operation).await?;
                let resolution = if succeeded {
                    Transaction::post_hold(&hold, now)
                } else {
                    Transaction::void_hold(&hold, now)
                };
                // Settling a withdrawal without resolving its hold would strand the money.
                Some(resolution.ok_or_else(|| {
                    StoreError::Corrupt(format!("withdrawal {} holds no hold", operation.id.0))
                })?)
            }
            _ => None,
        };
        let settlement = Settlement {
            operation: operation.id,
            to: if succeeded {
                OperationStatus::Succeeded
            } else {
                OperationStatus::Failed
            },
            transaction: transaction.as_ref(),
            provider_event,
            failure_reason: if succeeded { None } else { failure_reason },
            at: now,
        };
        Ok(self.store.settle(settlement).await?)
    }

    async fn hold_of(&self, operation: &Operation) -> Result<Transaction, WalletError> {
        let id = operation.transaction_id.ok_or_else(|| {
            StoreError::Corrupt(format!("withdrawal {} has no hold", operation.id.0))
        })?;
        self.store
            .transaction(id)
            .await?
            .ok_or_else(|| StoreError::Corrupt(format!("hold {} is missing", id.0)).into())
    }

    async fn already_final(
        &self,
        operation: &Operation,
        status: OperationStatus,
        succeeded: bool,
        event_id: &str,
    ) -> Result<EventOutcome, WalletError> {
        let contradicts = (status == OperationStatus::Succeeded) != succeeded;
        if contradicts && succeeded {
            // The provider moved money we already gave up on: someone must look at it.
            self.report(
                Some(operation.id),
                MismatchKind::SucceededAfterFailure,
                event_id,
            )
            .await?;
        }
        Ok(EventOutcome::AlreadyFinal {
            status,
            contradicts,
        })
    }

    async fn mismatch(
        &self,
        operation: &Operation,
        kind: MismatchKind,
        detail: &str,
    ) -> Result<EventOutcome, WalletError> {
        self.report(Some(operation.id), kind, detail).await?;
        Ok(EventOutcome::Mismatch(kind))
    }

    pub(super) async fn report(
        &self,
        operation: Option<OperationId>,
        kind: MismatchKind,
        detail: &str,
    ) -> Result<bool, WalletError> {
        let mismatch = Mismatch {
            id: Uuid::now_v7(),
            operation_id: operation,
            kind,
            detail: detail.to_owned(),
            found_at: self.clock.now(),
        };
        Ok(self.store.record_mismatch(&mismatch).await?)
    }

    /// Reverses a deposit or adjustment (admin, with a reason): a new transaction mirrors it,
    /// at most once.
    pub async fn reverse(
        &self,
        transaction: TransactionId,
        reason: &str,
        receipt: Option<&dyn OperationReceipt>,
    ) -> Result<Recorded, WalletError> {
        let reason = checked_text("reason", reason, MAX_REASON_CHARS)?;
        let original = self
            .store
            .transaction(transaction)
            .await?
            .ok_or(WalletError::NotFound)?;
        let user = original.user().ok_or(WalletError::NotReversible)?;
        let now = self.clock.now();
        let placeholder = OperationId(Uuid::now_v7());
        let reversal = Transaction::reversal_of(&original, placeholder, now)
            .ok_or(WalletError::NotReversible)?;
        let currency = reversal
            .postings
            .first()
            .map(|p| p.account.currency())
            .ok_or(WalletError::NotReversible)?;
        let wallet_change = reversal.net_on(&super::AccountRef::available(user, currency));
        let money = Money {
            amount: super::money::Amount::new(wallet_change.saturating_abs())
                .map_err(|_| WalletError::NotReversible)?,
            currency,
        };
        let mut operation = Operation::new(user, OperationKind::Reversal, money, now);
        operation.id = placeholder;
        operation.direction = if wallet_change > 0 {
            Direction::Credit
        } else {
            Direction::Debit
        };
        operation.status = OperationStatus::Succeeded;
        operation.transaction_id = Some(reversal.id);
        operation.memo = Some(reason);
        match self.store.reverse(&reversal, &operation, receipt).await? {
            ReverseOutcome::Reversed { receipt_stored } => Ok(Recorded {
                operation,
                receipt_stored,
            }),
            ReverseOutcome::AlreadyReversed => Err(WalletError::AlreadyReversed),
            ReverseOutcome::InsufficientFunds => Err(WalletError::InsufficientFunds),
        }
    }

    /// Proposes an adjustment of `user`'s wallet by `admin`; applied at once when at or below
    /// the approval threshold, else waiting for a second admin.
    pub async fn adjust(
        &self,
        admin: UserId,
        user: UserId,
        money: Money,
        direction: Direction,
        reason: &str,
        receipt: Option<&dyn AdjustmentReceipt>,
    ) -> Result<(Adjustment, bool), WalletError> {
        let reason = checked_text("reason", reason, MAX_REASON_CHARS)?;
        if admin == user {
            return Err(WalletError::SelfAdjustment);
        }
        let needs_approval = self.policy.approval.needs_approval(&money);
        let mut adjustment = Adjustment {
            id: AdjustmentId(Uuid::now_v7()),
            user_id: user,
            money,
            direction,
            reason,
            proposed_by: admin,
            needs_approval,
            approved_by: None,
            status: AdjustmentStatus::PendingApproval,
            operation_id: None,
            created_at: self.clock.now(),
        };
        if needs_approval {
            return match self
                .store
                .create_adjustment(&adjustment, None, receipt)
                .await?
            {
                (ApplyOutcome::Proposed, stored) => Ok((adjustment, stored)),
                (other, _) => Err(StoreError::Corrupt(format!(
                    "a proposed adjustment was stored as {other:?}"
                ))
                .into()),
            };
        }
        let (operation, transaction) = self.adjustment_booking(&adjustment);
        adjustment.approved_by = Some(admin);
        adjustment.status = AdjustmentStatus::Applied;
        adjustment.operation_id = Some(operation.id);
        match self
            .store
            .create_adjustment(&adjustment, Some((&operation, &transaction)), receipt)
            .await?
        {
            (ApplyOutcome::Applied, stored) => Ok((adjustment, stored)),
            (ApplyOutcome::InsufficientFunds, _) => Err(WalletError::InsufficientFunds),
            (ApplyOutcome::NotFound | ApplyOutcome::Proposed, _) => Err(WalletError::NotFound),
            (ApplyOutcome::AlreadyApplied, _) => Err(WalletError::AlreadyApplied),
        }
    }

    /// Approves `id` by `admin` (not its proposer) and books it, once.
    pub async fn approve(
        &self,
        admin: UserId,
        id: AdjustmentId,
    ) -> Result<Adjustment, WalletError> {
        let mut adjustment = self
            .store
            .adjustment(id)
            .await?
            .ok_or(WalletError::NotFound)?;
        if adjustment.status == AdjustmentStatus::Applied {
            return Err(WalletError::AlreadyApplied);
        }
        if adjustment.proposed_by == admin {
            return Err(WalletError::SameApprover);
        }
        let (operation, transaction) = self.adjustment_booking(&adjustment);
        match self
            .store
            .apply_adjustment(id, admin, &operation, &transaction)
            .await?
        {
            ApplyOutcome::Applied => {
                adjustment.approved_by = Some(admin);
                adjustment.status = AdjustmentStatus::Applied;
                adjustment.operation_id = Some(operation.id);
                Ok(adjustment)
            }
            ApplyOutcome::NotFound | ApplyOutcome::Proposed => Err(WalletError::NotFound),
            ApplyOutcome::AlreadyApplied => Err(WalletError::AlreadyApplied),
            ApplyOutcome::InsufficientFunds => Err(WalletError::InsufficientFunds),
        }
    }

    fn adjustment_booking(&self, adjustment: &Adjustment) -> (Operation, Transaction) {
        let now = self.clock.now();
        let mut operation = Operation::new(
            adjustment.user_id,
            OperationKind::Adjustment,
            adjustment.money,
            now,
        );
        operation.direction = adjustment.direction;
        operation.status = OperationStatus::Succeeded;
        operation.memo = Some(adjustment.reason.clone());
        let transaction = Transaction::adjustment(
            adjustment.user_id,
            adjustment.money,
            adjustment.direction == Direction::Credit,
            operation.id,
            now,
        );
        operation.transaction_id = Some(transaction.id);
        (operation, transaction)
    }

    /// Rebuilds every balance from the postings and compares.
    pub async fn verify(&self) -> Result<LedgerReport, WalletError> {
        Ok(self.store.verify().await?)
    }

    /// The latest reconciliation findings.
    pub async fn mismatches(&self, limit: u32) -> Result<Vec<Mismatch>, WalletError> {
        Ok(self.store.mismatches(limit).await?)
    }

    pub(super) fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    pub(super) fn store(&self) -> &Arc<dyn LedgerStore> {
        &self.store
    }

    pub(super) fn provider(&self) -> &Arc<dyn PaymentProvider> {
        &self.provider
    }
}

/// Trims `text` and checks it is 1–`max` characters without control characters.
fn checked_text(field: &'static str, text: &str, max: usize) -> Result<String, WalletError> {
    let text = text.trim();
    let count = text.chars().count();
    if count == 0 || count > max || text.chars().any(char::is_control) {
        return Err(WalletError::Invalid {
            field,
            message: format!("must be 1–{max} characters without control characters"),
        });
    }
    Ok(text.to_owned())
}
