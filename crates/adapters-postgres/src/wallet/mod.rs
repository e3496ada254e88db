//! The wallet ledger in Postgres: [`PgLedgerStore`] implements `LedgerStore` and
//! `WebhookLogStore`.
//!
//! - Every write is one transaction on one pooled connection: the operation row, the ledger
//!   transaction with its postings, the balance updates, the jobs ([`enqueue_in`]) and the
//!   idempotent receipt (`complete_in`) commit together or not at all.
//! - A ledger transaction (or a batch of them) is booked by ONE statement (`book`): it locks the
//!   accounts it changes in account id order (so concurrent writers cannot deadlock), adds each
//!   account's net delta once and inserts the transactions and their postings. It refuses with
//!   errors (an overdrawn wallet is refused by the no-overdraft CHECK, a taken link by a unique
//!   index), so the whole unit of work rolls back with that business answer. `book` and
//!   `book_batch` run it outside any transaction: one round trip, one commit.
//! - The schema restates the rules (see `migrations/…_wallet` and `…_ledger_fast_checks`): the
//!   no-overdraft CHECK, unique `reverses` / `resolves` links, append-only triggers, a statement
//!   trigger that refuses postings that are not one complete balanced group per transaction, a
//!   deferred trigger that refuses a transaction without postings at commit, and a trigger that
//!   keeps final operations final.
//!
//! [`enqueue_in`]: crate::jobs::enqueue_in

mod accounts;
mod book;
mod queries;
mod rows;
mod webhook_log;
mod writes;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncConnection, RunQueryDsl};
use keel_domain::StoreError;
use keel_domain::identity::user::UserId;
use keel_domain::jobs::NewJob;
use keel_domain::wallet::{
    AccountRef, Adjustment, AdjustmentId, AdjustmentReceipt, ApplyOutcome, Balance, Booked,
    Currency, HistoryCursor, HistoryFilter, LedgerReport, LedgerStore, Mismatch, Operation,
    OperationId, OperationReceipt, ReverseOutcome, SettleOutcome, Settlement, Transaction,
    TransactionId, WebhookDelivery, WebhookLogStore,
};

use crate::PgPool;
use crate::error::query_error;
use book::Refusal;
use rows::{AdjustmentRow, MismatchRow, reconciliation_mismatches as m, wallet_adjustments as adj};
use writes::{outcome, validated};

/// [`LedgerStore`] and [`WebhookLogStore`] on Postgres.
#[derive(Debug, Clone)]
pub struct PgLedgerStore {
    pool: PgPool,
}

impl PgLedgerStore {
    /// A store on the database behind `pool`; withdrawals enqueue their payout jobs in the same
    /// database's `jobs` table.
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }

    /// Books one validated transaction on its own (no operation, receipt or job), in one
    /// database transaction: `Booked::InsufficientFunds` (nothing written) when it would
    /// overdraw a wallet, a conflict when its link is taken.
    pub async fn book(&self, tx: &Transaction) -> Result<Booked, StoreError> {
        self.book_batch(std::slice::from_ref(tx)).await
    }

    /// Books many validated transactions in ONE database transaction, all or nothing: when the
    /// batch would overdraw any wallet, nothing is written and the answer is
    /// `Booked::InsufficientFunds`; a taken link fails the whole batch with a conflict.
    ///
    /// One statement, run outside any transaction (one round trip, one commit); only when an
    /// account has no row yet does it run again in a transaction that creates it first. Each
    /// account's balance changes once, by the sum of its postings across the batch, locked in
    /// account id order (the order every writer takes): concurrent batches and single bookings
    /// cannot deadlock. The overdraft rule applies to the batch's net change per account.
    pub async fn book_batch(&self, transactions: &[Transaction]) -> Result<Booked, StoreError> {
        for tx in transactions {
            validated(tx)?;
        }
        let done = Booked::Done {
            receipt_stored: false,
        };
        if transactions.is_empty() {
            return Ok(done);
        }
        let mut conn = self.pool.get().await?;
        // First as one statement outside any transaction: it commits, or leaves nothing.
        match book::try_book(&mut conn, transactions).await {
            Ok(()) => return Ok(done),
            Err(e) => match book::refusal(&e) {
                Some(Refusal::Answer(booking)) => {
                    return outcome(writes::batch_answer(booking, transactions.len()));
                }
                // First use of an account: create it and book in one unit of work.
                Some(Refusal::NoAccount) => {}
                None => return Err(query_error(e)),
            },
        }
        outcome(
            conn.transaction(async |conn| writes::book_batch_on(conn, transactions).await)
                .await,
        )
    }
}

#[async_trait]
impl LedgerStore for PgLedgerStore {
    /// The receipt commits with the operation (`complete_in`).
    async fn open_deposit<'a>(
        &self,
        operation: &Operation,
        receipt: Option<&'a dyn OperationReceipt>,
    ) -> Result<bool, StoreError> {
        let mut conn = self.pool.get().await?;
        outcome(
            conn.transaction(async |conn| writes::open_deposit_on(conn, operation, receipt).await)
                .await,
        )
    }

    /// The receipt commits with the reference (`complete_in`).
    async fn attach_checkout<'a>(
        &self,
        operation: &Operation,
        receipt: Option<&'a dyn OperationReceipt>,
    ) -> Result<bool, StoreError> {
        let mut conn = self.pool.get().await?;
        outcome(
            conn.transaction(async |conn| {
                writes::attach_checkout_on(conn, operation, receipt).await
            })
            .await,
        )
    }

    async fn place_withdrawal<'a>(
        &self,
        operation: &Operation,
        hold: &Transaction,
        jobs: &[NewJob],
        receipt: Option<&'a dyn OperationReceipt>,
    ) -> Result<Booked, StoreError> {
        validated(hold)?;
        let mut conn = self.pool.get().await?;
        outcome(
            conn.transaction(async |conn| {
                writes::place_withdrawal_on(conn, operation, hold, jobs, receipt).await
            })
            .await,
        )
    }

    async fn settle<'a>(&self, settlement: Settlement<'a>) -> Result<SettleOutcome, StoreError> {
        if let Some(tx) = settlement.transaction {
            validated(tx)?;
        }
        let mut conn = self.pool.get().await?;
        outcome(
            conn.transaction(async |conn| writes::settle_on(conn, &settlement).await)
                .await,
        )
    }

    async fn reverse<'a>(
        &self,
        reversal: &Transaction,
        operation: &Operation,
        receipt: Option<&'a dyn OperationReceipt>,
    ) -> Result<ReverseOutcome, StoreError> {
        validated(reversal)?;
        let mut conn = self.pool.get().await?;
        outcome(
            conn.transaction(async |conn| {
                writes::reverse_on(conn, reversal, operation, receipt).await
            })
            .await,
        )
    }

    /// The receipt commits with the adjustment (`complete_in`).
    async fn create_adjustment<'a>(
        &self,
        adjustment: &Adjustment,
        booking: Option<(&'a Operation, &'a Transaction)>,
        receipt: Option<&'a dyn AdjustmentReceipt>,
    ) -> Result<(ApplyOutcome, bool), StoreError> {
        if let Some((_, tx)) = booking {
            validated(tx)?;
        }
        let mut conn = self.pool.get().await?;
        outcome(
            conn.transaction(async |conn| {
                let applied = writes::create_adjustment_on(conn, adjustment, booking)
                    .await
                    .map_err(|a| a.map(|o| (o, false)))?;
                let stored = match applied {
                    ApplyOutcome::Applied | ApplyOutcome::Proposed => {
                        let mut stored = adjustment.clone();
                        if let Some((operation, _)) = booking {
                            stored.status = keel_domain::wallet::AdjustmentStatus::Applied;
                            stored.operation_id = Some(operation.id);
                        }
                        writes::store_adjustment_receipt(conn, receipt, &stored).await?
                    }
                    _ => false,
                };
                Ok((applied, stored))
            })
            .await,
        )
    }

    async fn apply_adjustment(
        &self,
        id: AdjustmentId,
        approver: UserId,
        operation: &Operation,
        transaction: &Transaction,
    ) -> Result<ApplyOutcome, StoreError> {
        validated(transaction)?;
        let mut conn = self.pool.get().await?;
        outcome(
            conn.transaction(async |conn| {
                writes::apply_adjustment_on(conn, id, approver, operation, transaction).await
            })
            .await,
        )
    }

    async fn adjustment(&self, id: AdjustmentId) -> Result<Option<Adjustment>, StoreError> {
        let mut conn = self.pool.get().await?;
        let row: Option<AdjustmentRow> = adj::table
            .filter(adj::id.eq(id.0))
            .select(AdjustmentRow::as_select())
            .first(&mut conn)
            .await
            .optional()
            .map_err(query_error)?;
        row.map(AdjustmentRow::into_adjustment).transpose()
    }

    async fn balance(&self, user: UserId, currency: Currency) -> Result<Balance, StoreError> {
        let mut conn = self.pool.get().await?;
        // Both parts in one statement, so one snapshot: a hold never shows twice or not at all.
        let parts: Vec<(String, i64)> = rows::ledger_accounts::table
            .filter(rows::ledger_accounts::user_id.eq(user.0))
            .filter(rows::ledger_accounts::currency.eq(currency.as_str().to_owned()))
            .select((
                rows::ledger_accounts::purpose,
                rows::ledger_accounts::balance,
            ))
            .load(&mut conn)
            .await
            .map_err(query_error)?;
        let part = |account: AccountRef| {
            parts
                .iter()
                .find(|(purpose, _)| purpose == account.purpose())
                .map_or(0, |(_, balance)| *balance)
        };
        let available = part(AccountRef::available(user, currency));
        let held = part(AccountRef::held(user, currency));
        Balance::from_parts(available, held, currency)
            .ok_or_else(|| rows::corrupt("the balance overflows"))
    }

    async fn account_balance(&self, account: AccountRef) -> Result<i64, StoreError> {
        let mut conn = self.pool.get().await?;
        let found = accounts::find(&mut conn, &account)
            .await
            .map_err(query_error)?;
        Ok(found.map_or(0, |(_, balance)| balance))
    }

    async fn operation(&self, id: OperationId) -> Result<Option<Operation>, StoreError> {
        let mut conn = self.pool.get().await?;
        queries::operation(&mut conn, id).await
    }

    async fn operations(
        &self,
        user: UserId,
        filter: &HistoryFilter,
        after: Option<HistoryCursor>,
        limit: u32,
    ) -> Result<Vec<Operation>, StoreError> {
        let mut conn = self.pool.get().await?;
        queries::operations(&mut conn, user.0, filter, after, limit).await
    }

    async fn transaction(&self, id: TransactionId) -> Result<Option<Transaction>, StoreError> {
        let mut conn = self.pool.get().await?;
        queries::transaction(&mut conn, id).await
    }

    async fn stale_pending(
        &self,
        before: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<Operation>, StoreError> {
        let mut conn = self.pool.get().await?;
        queries::stale_pending(&mut conn, before, limit).await
    }

    async fn verify(&self) -> Result<LedgerReport, StoreError> {
        let mut conn = self.pool.get().await?;
        queries::verify(&mut conn).await
    }

    /// Kept once per (operation, kind) by a partial unique index; findings without an
    /// operation are all kept.
    async fn record_mismatch(&self, mismatch: &Mismatch) -> Result<bool, StoreError> {
        let mut conn = self.pool.get().await?;
        let stored = diesel::insert_into(m::table)
            .values((
                m::id.eq(mismatch.id),
                m::operation_id.eq(mismatch.operation_id.map(|op| op.0)),
                m::kind.eq(mismatch.kind.as_str()),
                m::detail.eq(&mismatch.detail),
                m::found_at.eq(mismatch.found_at),
            ))
            .on_conflict_do_nothing()
            .execute(&mut conn)
            .await
            .map_err(query_error)?;
        Ok(stored == 1)
    }

    async fn mismatches(&self, limit: u32) -> Result<Vec<Mismatch>, StoreError> {
        let mut conn = self.pool.get().await?;
        let rows: Vec<MismatchRow> = m::table
            .select(MismatchRow::as_select())
            .order((m::found_at.desc(), m::id.desc()))
            .limit(i64::from(limit))
            .load(&mut conn)
            .await
            .map_err(query_error)?;
        rows.into_iter().map(MismatchRow::into_mismatch).collect()
    }
}

#[async_trait]
impl WebhookLogStore for PgLedgerStore {
    async fn record(&self, delivery: &WebhookDelivery) -> Result<(), StoreError> {
        let mut conn = self.pool.get().await?;
        webhook_log::record(&mut conn, delivery).await
    }

    async fn recent(&self, limit: u32) -> Result<Vec<WebhookDelivery>, StoreError> {
        let mut conn = self.pool.get().await?;
        webhook_log::recent(&mut conn, limit).await
    }
}
