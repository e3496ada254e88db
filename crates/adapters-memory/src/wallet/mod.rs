//! The wallet ledger in memory.
//!
//! One lock over accounts, transactions, operations and findings: a transaction's postings,
//! the balances they change, its operation and its jobs (through the queue's outbox) change
//! together while it is held, as one Postgres transaction does. Balances are checked before
//! anything is written, so a refused transfer leaves no trace.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use keel_domain::StoreError;
use keel_domain::identity::user::UserId;
use keel_domain::jobs::NewJob;
use keel_domain::wallet::{
    AccountDrift, AccountRef, Adjustment, AdjustmentId, AdjustmentReceipt, AdjustmentStatus,
    ApplyOutcome, Balance, Booked, Currency, HistoryCursor, HistoryFilter, LedgerReport,
    LedgerStore, Mismatch, MismatchKind, Operation, OperationId, OperationKind, OperationReceipt,
    OperationStatus, ReverseOutcome, SettleOutcome, Settlement, Transaction, TransactionId,
    WebhookDelivery, WebhookLogStore,
};

use crate::MemoryJobQueue;

#[derive(Debug, Default)]
struct State {
    balances: HashMap<AccountRef, i64>,
    transactions: HashMap<TransactionId, Transaction>,
    reversed: HashSet<TransactionId>,
    resolved: HashSet<TransactionId>,
    operations: HashMap<OperationId, Operation>,
    events: HashSet<String>,
    adjustments: HashMap<AdjustmentId, Adjustment>,
    mismatches: Vec<Mismatch>,
    mismatch_keys: HashSet<(OperationId, MismatchKind)>,
    webhooks: Vec<WebhookDelivery>,
}

impl State {
    /// Books `tx` if every wallet stays at or above zero; `false` (and nothing changed) if not.
    fn book(&mut self, tx: &Transaction) -> Result<bool, StoreError> {
        tx.validate()
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        if self.transactions.contains_key(&tx.id) {
            return Err(StoreError::Conflict(format!(
                "transaction {} exists",
                tx.id.0
            )));
        }
        let mut next: HashMap<AccountRef, i64> = HashMap::new();
        for posting in &tx.postings {
            let current = next
                .get(&posting.account)
                .copied()
                .unwrap_or_else(|| self.balance(&posting.account));
            let updated = current
                .checked_add(posting.amount)
                .ok_or_else(|| StoreError::Corrupt(format!("{} overflows", posting.account)))?;
            next.insert(posting.account, updated);
        }
        if next
            .iter()
            .any(|(account, balance)| *balance < 0 && !account.allows_negative())
        {
            return Ok(false);
        }
        self.balances.extend(next);
        if let Some(original) = tx.reverses {
            self.reversed.insert(original);
        }
        if let Some(hold) = tx.resolves {
            self.resolved.insert(hold);
        }
        self.transactions.insert(tx.id, tx.clone());
        Ok(true)
    }

    fn balance(&self, account: &AccountRef) -> i64 {
        self.balances.get(account).copied().unwrap_or(0)
    }

    fn insert_operation(&mut self, operation: &Operation) -> Result<(), StoreError> {
        if self.operations.contains_key(&operation.id) {
            return Err(StoreError::Conflict(format!(
                "operation {} exists",
                operation.id.0
            )));
        }
        self.operations.insert(operation.id, operation.clone());
        Ok(())
    }

    /// Books an approved adjustment: its transaction, its operation and its new status.
    fn apply(
        &mut self,
        adjustment: &mut Adjustment,
        approver: UserId,
        operation: &Operation,
        tx: &Transaction,
    ) -> Result<ApplyOutcome, StoreError> {
        if !self.book(tx)? {
            return Ok(ApplyOutcome::InsufficientFunds);
        }
        self.insert_operation(operation)?;
        adjustment.status = AdjustmentStatus::Applied;
        adjustment.approved_by = Some(approver);
        adjustment.operation_id = Some(operation.id);
        Ok(ApplyOutcome::Applied)
    }
}

/// [`LedgerStore`] and [`WebhookLogStore`] in memory. Clones share one store.
#[derive(Debug, Clone)]
pub struct MemoryLedgerStore {
    state: Arc<Mutex<State>>,
    jobs: MemoryJobQueue,
}

impl MemoryLedgerStore {
    /// An empty ledger whose withdrawals enqueue their payout jobs on `jobs`.
    pub fn new(jobs: MemoryJobQueue) -> Self {
        Self {
            state: Arc::default(),
            jobs,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The transaction that booked `operation` (its settlement, or the booking itself), for
    /// tests and examples that follow an operation into the ledger.
    pub fn transaction_of(&self, operation: OperationId) -> Option<Transaction> {
        let state = self.lock();
        state
            .transactions
            .values()
            .filter(|t| t.operation == Some(operation))
            .max_by_key(|t| (t.created_at, t.id))
            .cloned()
    }
}

#[async_trait]
impl LedgerStore for MemoryLedgerStore {
    /// The receipt is not stored: the memory idempotency store is separate, so the caller
    /// completes its claim itself.
    async fn open_deposit<'a>(
        &self,
        operation: &Operation,
        _receipt: Option<&'a dyn OperationReceipt>,
    ) -> Result<bool, StoreError> {
        self.lock().insert_operation(operation)?;
        Ok(false)
    }

    async fn attach_checkout<'a>(
        &self,
        operation: &Operation,
        _receipt: Option<&'a dyn OperationReceipt>,
    ) -> Result<bool, StoreError> {
        let mut state = self.lock();
        match state.operations.get_mut(&operation.id) {
            Some(stored) => {
                if stored.status == OperationStatus::Pending {
                    stored.provider_reference = operation.provider_reference.clone();
                }
                Ok(false)
            }
            None => Err(StoreError::Conflict(format!(
                "deposit {} is gone",
                operation.id.0
            ))),
        }
    }

    async fn place_withdrawal<'a>(
        &self,
        operation: &Operation,
        hold: &Transaction,
        jobs: &[NewJob],
        _receipt: Option<&'a dyn OperationReceipt>,
    ) -> Result<Booked, StoreError> {
        let mut state = self.lock();
        if state.operations.contains_key(&operation.id) {
            return Err(StoreError::Conflict(format!(
                "operation {} exists",
                operation.id.0
            )));
        }
        if !state.book(hold)? {
            return Ok(Booked::InsufficientFunds);
        }
        state.insert_operation(operation)?;
        // The jobs commit while the lock is held: they exist iff the hold does.
        let mut outbox = self.jobs.outbox();
        for job in jobs {
            outbox.push(job.clone());
        }
        outbox.commit(operation.created_at);
        Ok(Booked::Done {
            receipt_stored: false,
        })
    }

    async fn settle<'a>(&self, settlement: Settlement<'a>) -> Result<SettleOutcome, StoreError> {
        let mut state = self.lock();
        if let Some(event) = settlement.provider_event
            && state.events.contains(event)
        {
            return Ok(SettleOutcome::DuplicateEvent);
        }
        let Some(current) = state.operations.get(&settlement.operation).cloned() else {
            return Ok(SettleOutcome::NotFound);
        };
        if current.status.is_final() {
            return Ok(SettleOutcome::AlreadyFinal(current.status));
        }
        if let Some(tx) = settlement.transaction {
            let own_hold = current.kind != OperationKind::Withdrawal
                || (tx.resolves.is_some() && tx.resolves == current.transaction_id);
            if tx.operation != Some(current.id) || !own_hold {
                return Err(StoreError::Corrupt(format!(
                    "transaction {} does not settle operation {}",
                    tx.id.0, current.id.0
                )));
            }
            if tx
                .resolves
                .is_some_and(|hold| state.resolved.contains(&hold))
            {
                return Err(StoreError::Conflict("the hold is already resolved".into()));
            }
            if !state.book(tx)? {
                return Ok(SettleOutcome::InsufficientFunds);
            }
        }
        if let Some(event) = settlement.provider_event {
            state.events.insert(event.to_owned());
        }
        if let Some(operation) = state.operations.get_mut(&settlement.operation) {
            operation.status = settlement.to;
            operation.updated_at = settlement.at;
            operation.failure_reason = settlement.failure_reason.map(str::to_owned);
            // A withdrawal keeps naming its hold; a deposit now names its booking.
            if operation.transaction_id.is_none() {
                operation.transaction_id = settlement.transaction.map(|t| t.id);
            }
        }
        Ok(SettleOutcome::Settled)
    }

    async fn reverse<'a>(
        &self,
        reversal: &Transaction,
        operation: &Operation,
        _receipt: Option<&'a dyn OperationReceipt>,
    ) -> Result<ReverseOutcome, StoreError> {
        let mut state = self.lock();
        let original = reversal
            .reverses
            .ok_or_else(|| StoreError::Corrupt("a reversal without its original".into()))?;
        if state.reversed.contains(&original) {
            return Ok(ReverseOutcome::AlreadyReversed);
        }
        if !state.book(reversal)? {
            return Ok(ReverseOutcome::InsufficientFunds);
        }
        state.insert_operation(operation)?;
        Ok(ReverseOutcome::Reversed {
            receipt_stored: false,
        })
    }

    /// The receipt is not stored (see [`Self::open_deposit`]).
    async fn create_adjustment<'a>(
        &self,
        adjustment: &Adjustment,
        booking: Option<(&'a Operation, &'a Transaction)>,
        _receipt: Option<&'a dyn AdjustmentReceipt>,
    ) -> Result<(ApplyOutcome, bool), StoreError> {
        let mut state = self.lock();
        if state.adjustments.contains_key(&adjustment.id) {
            return Err(StoreError::Conflict("adjustment exists".into()));
        }
        let mut stored = adjustment.clone();
        let Some((operation, tx)) = booking else {
            state.adjustments.insert(stored.id, stored);
            return Ok((ApplyOutcome::Proposed, false));
        };
        let outcome = state.apply(&mut stored, adjustment.proposed_by, operation, tx)?;
        if outcome == ApplyOutcome::Applied {
            state.adjustments.insert(stored.id, stored);
        }
        Ok((outcome, false))
    }

    async fn apply_adjustment(
        &self,
        id: AdjustmentId,
        approver: UserId,
        operation: &Operation,
        transaction: &Transaction,
    ) -> Result<ApplyOutcome, StoreError> {
        let mut state = self.lock();
        let Some(mut adjustment) = state.adjustments.get(&id).cloned() else {
            return Ok(ApplyOutcome::NotFound);
        };
        if adjustment.status == AdjustmentStatus::Applied {
            return Ok(ApplyOutcome::AlreadyApplied);
        }
        if adjustment.proposed_by == approver {
            return Err(StoreError::Conflict(
                "the proposer cannot approve their own adjustment".into(),
            ));
        }
        let outcome = state.apply(&mut adjustment, approver, operation, transaction)?;
        if outcome == ApplyOutcome::Applied {
            state.adjustments.insert(id, adjustment);
        }
        Ok(outcome)
    }

    async fn adjustment(&self, id: AdjustmentId) -> Result<Option<Adjustment>, StoreError> {
        Ok(self.lock().adjustments.get(&id).cloned())
    }

    async fn balance(&self, user: UserId, currency: Currency) -> Result<Balance, StoreError> {
        let state = self.lock();
        let available = state.balance(&AccountRef::available(user, currency));
        let held = state.balance(&AccountRef::held(user, currency));
        Balance::from_parts(available, held, currency)
            .ok_or_else(|| StoreError::Corrupt("the balance overflows".into()))
    }

    async fn account_balance(&self, account: AccountRef) -> Result<i64, StoreError> {
        Ok(self.lock().balance(&account))
    }

    async fn operation(&self, id: OperationId) -> Result<Option<Operation>, StoreError> {
        Ok(self.lock().operations.get(&id).cloned())
    }

    async fn operations(
        &self,
        user: UserId,
        filter: &HistoryFilter,
        after: Option<HistoryCursor>,
        limit: u32,
    ) -> Result<Vec<Operation>, StoreError> {
        let state = self.lock();
        let mut items: Vec<&Operation> = state
            .operations
            .values()
            .filter(|o| o.user_id == user && filter.matches(o))
            .filter(|o| after.is_none_or(|a| (o.created_at, o.id) < a))
            .collect();
        items.sort_by_key(|o| std::cmp::Reverse((o.created_at, o.id)));
        Ok(items.into_iter().take(limit as usize).cloned().collect())
    }

    async fn transaction(&self, id: TransactionId) -> Result<Option<Transaction>, StoreError> {
        Ok(self.lock().transactions.get(&id).cloned())
    }

    async fn stale_pending(
        &self,
        before: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<Operation>, StoreError> {
        let state = self.lock();
        let mut items: Vec<&Operation> = state
            .operations
            .values()
            .filter(|o| o.status == OperationStatus::Pending && o.created_at < before)
            .collect();
        items.sort_by_key(|o| (o.created_at, o.id));
        Ok(items.into_iter().take(limit as usize).cloned().collect())
    }

    async fn verify(&self) -> Result<LedgerReport, StoreError> {
        let state = self.lock();
        let mut rebuilt: HashMap<AccountRef, i64> = HashMap::new();
        let mut report = LedgerReport {
            transactions: state.transactions.len() as u64,
            ..LedgerReport::default()
        };
        for tx in state.transactions.values() {
            if tx.validate().is_err() {
                report.unbalanced.push(tx.id);
            }
            for posting in &tx.postings {
                let sum = rebuilt.entry(posting.account).or_default();
                *sum = sum.saturating_add(posting.amount);
            }
        }
        let accounts: HashSet<&AccountRef> = state.balances.keys().chain(rebuilt.keys()).collect();
        report.accounts = accounts.len() as u64;
        for account in accounts {
            let stored = state.balance(account);
            let sum = rebuilt.get(account).copied().unwrap_or(0);
            if stored != sum {
                report.drifted.push(AccountDrift {
                    account: *account,
                    stored,
                    rebuilt: sum,
                });
            }
            if stored < 0 && !account.allows_negative() {
                report.overdrawn.push(*account);
            }
        }
        Ok(report)
    }

    async fn record_mismatch(&self, mismatch: &Mismatch) -> Result<bool, StoreError> {
        let mut state = self.lock();
        if let Some(operation) = mismatch.operation_id
            && !state.mismatch_keys.insert((operation, mismatch.kind))
        {
            return Ok(false);
        }
        state.mismatches.push(mismatch.clone());
        Ok(true)
    }

    async fn mismatches(&self, limit: u32) -> Result<Vec<Mismatch>, StoreError> {
        let state = self.lock();
        Ok(state
            .mismatches
            .iter()
            .rev()
            .take(limit as usize)
            .cloned()
            .collect())
    }
}

#[async_trait]
impl WebhookLogStore for MemoryLedgerStore {
    async fn record(&self, delivery: &WebhookDelivery) -> Result<(), StoreError> {
        self.lock().webhooks.push(delivery.clone());
        Ok(())
    }

    async fn recent(&self, limit: u32) -> Result<Vec<WebhookDelivery>, StoreError> {
        let state = self.lock();
        Ok(state
            .webhooks
            .iter()
            .rev()
            .take(limit as usize)
            .cloned()
            .collect())
    }
}

#[cfg(test)]
mod tests;
