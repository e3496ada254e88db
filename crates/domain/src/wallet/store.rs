//! The `LedgerStore` port (ledger, operations, adjustments, reconciliation findings) and the
//! `WebhookLogStore` port (every provider delivery, good or bad).

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::adjustment::{Adjustment, AdjustmentId};
use super::money::Currency;
use super::operation::{HistoryCursor, HistoryFilter, Operation, OperationId, OperationStatus};
use super::reconcile::Mismatch;
use super::transaction::{Transaction, TransactionId};
use super::verify::LedgerReport;
use super::webhook_log::WebhookDelivery;
use super::{AccountRef, Balance};
use crate::StoreError;
use crate::idempotency::{Claim, StoredResponse};
use crate::identity::user::UserId;
use crate::jobs::NewJob;

/// An idempotent response committed in the operation's own transaction, so the response and the
/// money move together (stores that cannot do so ignore it and say so).
pub trait OperationReceipt: Send + Sync {
    /// The `Idempotency-Key` claim the response completes.
    fn claim(&self) -> &Claim;

    /// The response to store for `operation`.
    fn response(&self, operation: &Operation) -> Result<StoredResponse, StoreError>;
}

/// An admin adjustment's response committed in the adjustment's own transaction, so a retry
/// replays it instead of booking again.
pub trait AdjustmentReceipt: Send + Sync {
    /// The `Idempotency-Key` claim the response completes.
    fn claim(&self) -> &Claim;

    /// The response to store for `adjustment` as stored.
    fn response(&self, adjustment: &Adjustment) -> Result<StoredResponse, StoreError>;
}

/// What a write that may spend wallet funds did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Booked {
    /// Stored, with everything it carries; whether the receipt was committed with it.
    Done {
        /// The receipt handed to the store was committed in the same transaction.
        receipt_stored: bool,
    },
    /// A wallet account would have gone below zero: nothing was written.
    InsufficientFunds,
}

/// A status change of a pending operation, with the transaction that books it.
#[derive(Debug, Clone, Copy)]
pub struct Settlement<'a> {
    /// The operation, which must still be [`OperationStatus::Pending`].
    pub operation: OperationId,
    /// Its final status.
    pub to: OperationStatus,
    /// The ledger transaction booked with the change (a deposit, a posted or voided hold).
    pub transaction: Option<&'a Transaction>,
    /// The provider event that caused it: stored with the change, once ever.
    pub provider_event: Option<&'a str>,
    /// Why it failed (for `Failed`).
    pub failure_reason: Option<&'a str>,
    /// When.
    pub at: DateTime<Utc>,
}

/// What [`LedgerStore::settle`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SettleOutcome {
    /// The operation moved to its final status and the transaction was booked.
    Settled,
    /// This provider event was already processed: nothing changed.
    DuplicateEvent,
    /// The operation was already final (this status): nothing changed.
    AlreadyFinal(OperationStatus),
    /// No such operation.
    NotFound,
    /// The transaction would overdraw a wallet: nothing changed.
    InsufficientFunds,
}

/// What [`LedgerStore::reverse`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReverseOutcome {
    /// The reversal and its operation are stored.
    Reversed {
        /// The receipt handed to the store was committed with it.
        receipt_stored: bool,
    },
    /// The transaction was reversed before.
    AlreadyReversed,
    /// The reversal would overdraw the wallet (the money was spent): nothing changed.
    InsufficientFunds,
}

/// What [`LedgerStore::apply_adjustment`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApplyOutcome {
    /// Approved and booked.
    Applied,
    /// Stored without a booking: it waits for a second admin.
    Proposed,
    /// No such adjustment.
    NotFound,
    /// It was applied before.
    AlreadyApplied,
    /// A debit larger than the available funds: nothing changed.
    InsufficientFunds,
}

/// The ledger, its stored balances and the wallet operations they belong to.
///
/// Contract (proved for every adapter by `keel_domain::testkit::ledger_store`):
/// - every transaction is stored with its postings, and each posting changes its account's
///   stored balance, in one unit of work; a wallet (user) account never goes below zero, checked
///   under a row lock or conditional update, so concurrent debits can never overspend;
/// - transactions and postings are never changed or removed; a hold is resolved (posted or
///   voided) at most once, a transaction reversed at most once (unique links);
/// - an operation leaves `pending` at most once, and a provider event id is processed at most
///   once;
/// - the balances rebuilt from postings always equal the stored ones ([`Self::verify`]).
#[cfg_attr(test, mockall::automock)]
#[async_trait]
pub trait LedgerStore: Send + Sync {
    /// Stores a new pending deposit (no money moves until it settles), with `receipt`.
    async fn open_deposit<'a>(
        &self,
        operation: &Operation,
        receipt: Option<&'a dyn OperationReceipt>,
    ) -> Result<bool, StoreError>;

    /// Records the provider's checkout reference (`operation.provider_reference`) on a pending
    /// deposit, with `receipt`. A deposit the provider already settled (its webhook beat this
    /// call) stays as settled and still gets `receipt`: the checkout did open. A deposit that is
    /// gone is a `Conflict`.
    async fn attach_checkout<'a>(
        &self,
        operation: &Operation,
        receipt: Option<&'a dyn OperationReceipt>,
    ) -> Result<bool, StoreError>;

    /// Stores a withdrawal with its hold and enqueues `jobs` (the payout) in one unit of work,
    /// unless the hold would overdraw the wallet.
    async fn place_withdrawal<'a>(
        &self,
        operation: &Operation,
        hold: &Transaction,
        jobs: &[NewJob],
        receipt: Option<&'a dyn OperationReceipt>,
    ) -> Result<Booked, StoreError>;

    /// Moves a pending operation to its final status with its transaction, once. The operation
    /// then names the transaction, unless it already named one (a withdrawal keeps its hold).
    /// The transaction must belong to the operation (`transaction.operation`), and a withdrawal's
    /// must resolve its own hold; anything else is `Corrupt` and nothing changes.
    async fn settle<'a>(&self, settlement: Settlement<'a>) -> Result<SettleOutcome, StoreError>;

    /// Books `reversal` (of `reversal.reverses`) with its operation.
    async fn reverse<'a>(
        &self,
        reversal: &Transaction,
        operation: &Operation,
        receipt: Option<&'a dyn OperationReceipt>,
    ) -> Result<ReverseOutcome, StoreError>;

    /// Stores an adjustment; when `booking` is given (under the approval threshold) it is
    /// applied in the same unit of work, and so is `receipt`. Returns the outcome and whether
    /// the receipt was stored.
    async fn create_adjustment<'a>(
        &self,
        adjustment: &Adjustment,
        booking: Option<(&'a Operation, &'a Transaction)>,
        receipt: Option<&'a dyn AdjustmentReceipt>,
    ) -> Result<(ApplyOutcome, bool), StoreError>;

    /// Approves a pending adjustment by `approver` and books it, once.
    async fn apply_adjustment(
        &self,
        id: AdjustmentId,
        approver: UserId,
        operation: &Operation,
        transaction: &Transaction,
    ) -> Result<ApplyOutcome, StoreError>;

    /// One adjustment.
    async fn adjustment(&self, id: AdjustmentId) -> Result<Option<Adjustment>, StoreError>;

    /// `user`'s funds in `currency` (zeros when they have none).
    async fn balance(&self, user: UserId, currency: Currency) -> Result<Balance, StoreError>;

    /// The stored balance of any account (0 if it has none yet).
    async fn account_balance(&self, account: AccountRef) -> Result<i64, StoreError>;

    /// One operation.
    async fn operation(&self, id: OperationId) -> Result<Option<Operation>, StoreError>;

    /// `user`'s operations passing `filter`, newest first (creation time, then id), strictly
    /// after `after`, at most `limit`.
    async fn operations(
        &self,
        user: UserId,
        filter: &HistoryFilter,
        after: Option<HistoryCursor>,
        limit: u32,
    ) -> Result<Vec<Operation>, StoreError>;

    /// One transaction with its postings.
    async fn transaction(&self, id: TransactionId) -> Result<Option<Transaction>, StoreError>;

    /// Pending deposits and withdrawals created before `before`, oldest first, at most `limit`
    /// (the reconciliation's work list).
    async fn stale_pending(
        &self,
        before: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<Operation>, StoreError>;

    /// Rebuilds every balance from the postings and compares it with the stored one; also
    /// finds unbalanced transactions and overdrawn wallets.
    async fn verify(&self) -> Result<LedgerReport, StoreError>;

    /// Records a reconciliation finding; a finding of the same kind for the same operation is
    /// kept once. Returns whether it is new.
    async fn record_mismatch(&self, mismatch: &Mismatch) -> Result<bool, StoreError>;

    /// The latest findings, newest first.
    async fn mismatches(&self, limit: u32) -> Result<Vec<Mismatch>, StoreError>;
}

/// Every webhook delivery, good or bad, with its outcome.
#[cfg_attr(test, mockall::automock)]
#[async_trait]
pub trait WebhookLogStore: Send + Sync {
    /// Appends one delivery.
    async fn record(&self, delivery: &WebhookDelivery) -> Result<(), StoreError>;

    /// The latest deliveries, newest first.
    async fn recent(&self, limit: u32) -> Result<Vec<WebhookDelivery>, StoreError>;
}
