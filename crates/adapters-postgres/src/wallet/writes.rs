//! The use cases that write: each runs in one transaction on one connection, and anything it
//! refuses (insufficient funds, a duplicate event, a final operation) rolls the whole unit back.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use keel_domain::StoreError;
use keel_domain::identity::user::UserId;
use keel_domain::jobs::NewJob;
use keel_domain::wallet::{
    Adjustment, AdjustmentId, AdjustmentReceipt, AdjustmentStatus, ApplyOutcome, Booked, Operation,
    OperationKind, OperationReceipt, OperationStatus, ReverseOutcome, SettleOutcome, Settlement,
    Transaction,
};
use uuid::Uuid;

use super::book::{Booking, book, book_all};
use super::rows::{
    corrupt, insert_operation, provider_events as e, wallet_adjustments as adj,
    wallet_operations as o,
};
use crate::error::query_error;
use crate::idempotency::complete_in;
use crate::jobs::enqueue_in;

/// Why a unit of work stopped before its commit.
pub(crate) enum Abort<O> {
    /// A query failed.
    Db(diesel::result::Error),
    /// Something else failed (the receipt could not be stored, a corrupt row).
    Store(StoreError),
    /// Rolled back on purpose: this is the business answer.
    Outcome(O),
}

impl<O> From<diesel::result::Error> for Abort<O> {
    fn from(e: diesel::result::Error) -> Self {
        Self::Db(e)
    }
}

impl<O> From<StoreError> for Abort<O> {
    fn from(e: StoreError) -> Self {
        Self::Store(e)
    }
}

impl<O> Abort<O> {
    /// The same abort with its business answer mapped by `f`.
    pub(crate) fn map<P>(self, f: impl FnOnce(O) -> P) -> Abort<P> {
        match self {
            Self::Db(e) => Abort::Db(e),
            Self::Store(e) => Abort::Store(e),
            Self::Outcome(o) => Abort::Outcome(f(o)),
        }
    }
}

/// The answer of a unit of work, whether it committed or rolled back on purpose.
pub(crate) fn outcome<O>(result: Result<O, Abort<O>>) -> Result<O, StoreError> {
    match result {
        Ok(outcome) | Err(Abort::Outcome(outcome)) => Ok(outcome),
        Err(Abort::Db(e)) => Err(query_error(e)),
        Err(Abort::Store(e)) => Err(e),
    }
}

/// Checks the ledger's rules again before anything is written.
pub(crate) fn validated(tx: &Transaction) -> Result<(), StoreError> {
    tx.validate()
        .map_err(|e| corrupt(format!("transaction {}: {e}", tx.id.0)))
}

fn link_taken(tx: &Transaction) -> StoreError {
    StoreError::Conflict(format!(
        "the link of {} transaction {} is taken",
        tx.kind.as_str(),
        tx.id.0
    ))
}

async fn store_receipt(
    conn: &mut AsyncPgConnection,
    receipt: Option<&dyn OperationReceipt>,
    operation: &Operation,
) -> Result<bool, StoreError> {
    let Some(receipt) = receipt else {
        return Ok(false);
    };
    let response = receipt.response(operation)?;
    complete_in(conn, receipt.claim(), &response).await?;
    Ok(true)
}

pub(crate) async fn open_deposit_on(
    conn: &mut AsyncPgConnection,
    operation: &Operation,
    receipt: Option<&dyn OperationReceipt>,
) -> Result<bool, Abort<bool>> {
    insert_operation(conn, operation).await?;
    Ok(store_receipt(conn, receipt, operation).await?)
}

pub(crate) async fn attach_checkout_on(
    conn: &mut AsyncPgConnection,
    operation: &Operation,
    receipt: Option<&dyn OperationReceipt>,
) -> Result<bool, Abort<bool>> {
    let updated = diesel::update(
        o::table
            .filter(o::id.eq(operation.id.0))
            .filter(o::status.eq(OperationStatus::Pending.as_str())),
    )
    .set(o::provider_reference.eq(operation.provider_reference.as_deref()))
    .execute(conn)
    .await?;
    // Not pending: settled already by a webhook that beat this call (final rows never change),
    // or gone.
    if updated == 0 {
        let exists: bool = diesel::select(diesel::dsl::exists(
            o::table.filter(o::id.eq(operation.id.0)),
        ))
        .get_result(conn)
        .await?;
        if !exists {
            return Err(Abort::Store(StoreError::Conflict(format!(
                "deposit {} is gone",
                operation.id.0
            ))));
        }
    }
    Ok(store_receipt(conn, receipt, operation).await?)
}

/// Stores an adjustment's idempotent response in the current transaction.
pub(crate) async fn store_adjustment_receipt(
    conn: &mut AsyncPgConnection,
    receipt: Option<&dyn AdjustmentReceipt>,
    adjustment: &Adjustment,
) -> Result<bool, StoreError> {
    let Some(receipt) = receipt else {
        return Ok(false);
    };
    let response = receipt.response(adjustment)?;
    complete_in(conn, receipt.claim(), &response).await?;
    Ok(true)
}

pub(crate) async fn place_withdrawal_on(
    conn: &mut AsyncPgConnection,
    operation: &Operation,
    hold: &Transaction,
    jobs: &[NewJob],
    receipt: Option<&dyn OperationReceipt>,
) -> Result<Booked, Abort<Booked>> {
    insert_operation(conn, operation).await?;
    match book(conn, hold).await? {
        Booking::Booked => {}
        Booking::InsufficientFunds => return Err(Abort::Outcome(Booked::InsufficientFunds)),
        Booking::LinkTaken => return Err(Abort::Store(link_taken(hold))),
    }
    for job in jobs {
        enqueue_in(conn, job, operation.created_at).await?;
    }
    let receipt_stored = store_receipt(conn, receipt, operation).await?;
    Ok(Booked::Done { receipt_stored })
}

pub(crate) async fn settle_on(
    conn: &mut AsyncPgConnection,
    s: &Settlement<'_>,
) -> Result<SettleOutcome, Abort<SettleOutcome>> {
    if !s.to.is_final() {
        return Err(Abort::Store(StoreError::Conflict(
            "an operation settles to a final status".into(),
        )));
    }
    // FOR NO KEY UPDATE: enough to serialise settlements, without blocking the foreign-key
    // checks of rows that reference the operation.
    let current: Option<(String, String, Option<Uuid>)> = o::table
        .filter(o::id.eq(s.operation.0))
        .select((o::status, o::kind, o::transaction_id))
        .for_no_key_update()
        .first(conn)
        .await
        .optional()?;
    let Some((status, kind, hold)) = current else {
        return Ok(SettleOutcome::NotFound);
    };
    if let Some(tx) = s.transaction {
        let own_hold = kind != OperationKind::Withdrawal.as_str()
            || (tx.resolves.is_some() && tx.resolves.map(|t| t.0) == hold);
        if tx.operation != Some(s.operation) || !own_hold {
            return Err(Abort::Store(corrupt(format!(
                "transaction {} does not settle operation {}",
                tx.id.0, s.operation.0
            ))));
        }
    }
    if let Some(event) = s.provider_event {
        let recorded = diesel::insert_into(e::table)
            .values((
                e::event_id.eq(event),
                e::operation_id.eq(s.operation.0),
                e::processed_at.eq(s.at),
            ))
            .on_conflict_do_nothing()
            .execute(conn)
            .await?;
        if recorded == 0 {
            return Err(Abort::Outcome(SettleOutcome::DuplicateEvent));
        }
    }
    let current = OperationStatus::parse(&status)
        .ok_or_else(|| corrupt(format!("operation status {status:?}")))?;
    if current.is_final() {
        // Rolls the event id back too: it did not change anything.
        return Err(Abort::Outcome(SettleOutcome::AlreadyFinal(current)));
    }
    if let Some(tx) = s.transaction {
        match book(conn, tx).await? {
            Booking::Booked => {}
            Booking::InsufficientFunds => {
                return Err(Abort::Outcome(SettleOutcome::InsufficientFunds));
            }
            Booking::LinkTaken => return Err(Abort::Store(link_taken(tx))),
        }
    }
    diesel::update(o::table.filter(o::id.eq(s.operation.0)))
        .set((
            o::status.eq(s.to.as_str()),
            o::updated_at.eq(s.at),
            o::failure_reason.eq(s.failure_reason),
            // A withdrawal keeps naming its hold; a deposit now names its booking.
            o::transaction_id.eq(diesel::dsl::sql::<
                diesel::sql_types::Nullable<diesel::sql_types::Uuid>,
            >("COALESCE(transaction_id, ")
            .bind::<diesel::sql_types::Nullable<diesel::sql_types::Uuid>, _>(
                s.transaction.map(|t| t.id.0),
            )
            .sql(")")),
        ))
        .execute(conn)
        .await?;
    Ok(SettleOutcome::Settled)
}

pub(crate) async fn reverse_on(
    conn: &mut AsyncPgConnection,
    reversal: &Transaction,
    operation: &Operation,
    receipt: Option<&dyn OperationReceipt>,
) -> Result<ReverseOutcome, Abort<ReverseOutcome>> {
    insert_operation(conn, operation).await?;
    match book(conn, reversal).await? {
        Booking::Booked => {}
        Booking::InsufficientFunds => {
            return Err(Abort::Outcome(ReverseOutcome::InsufficientFunds));
        }
        Booking::LinkTaken => return Err(Abort::Outcome(ReverseOutcome::AlreadyReversed)),
    }
    let receipt_stored = store_receipt(conn, receipt, operation).await?;
    Ok(ReverseOutcome::Reversed { receipt_stored })
}

/// Books `txs` together: all of them, or none when any wallet would be overdrawn.
pub(crate) async fn book_batch_on(
    conn: &mut AsyncPgConnection,
    txs: &[Transaction],
) -> Result<Booked, Abort<Booked>> {
    batch_answer(book_all(conn, txs).await?, txs.len())
}

/// The answer of a batch of `len` transactions that booked as `booking`.
pub(crate) fn batch_answer(booking: Booking, len: usize) -> Result<Booked, Abort<Booked>> {
    match booking {
        Booking::Booked => Ok(Booked::Done {
            receipt_stored: false,
        }),
        Booking::InsufficientFunds => Err(Abort::Outcome(Booked::InsufficientFunds)),
        Booking::LinkTaken => Err(Abort::Store(StoreError::Conflict(format!(
            "a link (or an id) of the {len} transactions of the batch is taken"
        )))),
    }
}

async fn insert_adjustment(
    conn: &mut AsyncPgConnection,
    a: &Adjustment,
    decided_at: Option<DateTime<Utc>>,
) -> Result<bool, diesel::result::Error> {
    let stored = diesel::insert_into(adj::table)
        .values((
            adj::id.eq(a.id.0),
            adj::user_id.eq(a.user_id.0),
            adj::amount_minor.eq(a.money.amount.minor()),
            adj::currency.eq(a.money.currency.as_str()),
            adj::direction.eq(a.direction.as_str()),
            adj::reason.eq(&a.reason),
            adj::proposed_by.eq(a.proposed_by.0),
            adj::needs_approval.eq(a.needs_approval),
            adj::approved_by.eq(a.approved_by.map(|u| u.0)),
            adj::status.eq(a.status.as_str()),
            adj::operation_id.eq(a.operation_id.map(|op| op.0)),
            adj::created_at.eq(a.created_at),
            adj::decided_at.eq(decided_at),
        ))
        .on_conflict_do_nothing()
        .execute(conn)
        .await?;
    Ok(stored == 1)
}

async fn book_adjustment(
    conn: &mut AsyncPgConnection,
    transaction: &Transaction,
) -> Result<(), Abort<ApplyOutcome>> {
    match book(conn, transaction).await? {
        Booking::Booked => Ok(()),
        Booking::InsufficientFunds => Err(Abort::Outcome(ApplyOutcome::InsufficientFunds)),
        Booking::LinkTaken => Err(Abort::Store(link_taken(transaction))),
    }
}

pub(crate) async fn create_adjustment_on(
    conn: &mut AsyncPgConnection,
    adjustment: &Adjustment,
    booking: Option<(&Operation, &Transaction)>,
) -> Result<ApplyOutcome, Abort<ApplyOutcome>> {
    let Some((operation, transaction)) = booking else {
        if !insert_adjustment(conn, adjustment, None).await? {
            return Err(Abort::Store(StoreError::Conflict(format!(
                "adjustment {} exists",
                adjustment.id.0
            ))));
        }
        // Stored, waiting for its approval: nothing to book yet.
        return Ok(ApplyOutcome::Proposed);
    };
    insert_operation(conn, operation).await?;
    book_adjustment(conn, transaction).await?;
    let applied = Adjustment {
        status: AdjustmentStatus::Applied,
        approved_by: adjustment.approved_by.or(Some(adjustment.proposed_by)),
        operation_id: Some(operation.id),
        ..adjustment.clone()
    };
    if !insert_adjustment(conn, &applied, Some(operation.created_at)).await? {
        return Err(Abort::Outcome(ApplyOutcome::AlreadyApplied));
    }
    Ok(ApplyOutcome::Applied)
}

pub(crate) async fn apply_adjustment_on(
    conn: &mut AsyncPgConnection,
    id: AdjustmentId,
    approver: UserId,
    operation: &Operation,
    transaction: &Transaction,
) -> Result<ApplyOutcome, Abort<ApplyOutcome>> {
    insert_operation(conn, operation).await?;
    // The row lock taken here serialises racing approvals: the loser sees `applied`.
    let approved: Option<Uuid> = diesel::update(
        adj::table
            .filter(adj::id.eq(id.0))
            .filter(adj::status.eq(AdjustmentStatus::PendingApproval.as_str())),
    )
    .set((
        adj::status.eq(AdjustmentStatus::Applied.as_str()),
        adj::approved_by.eq(approver.0),
        adj::operation_id.eq(operation.id.0),
        adj::decided_at.eq(operation.created_at),
    ))
    .returning(adj::id)
    .get_result(conn)
    .await
    .optional()?;
    if approved.is_none() {
        let exists: Option<Uuid> = adj::table
            .filter(adj::id.eq(id.0))
            .select(adj::id)
            .first(conn)
            .await
            .optional()?;
        return Err(Abort::Outcome(match exists {
            Some(_) => ApplyOutcome::AlreadyApplied,
            None => ApplyOutcome::NotFound,
        }));
    }
    book_adjustment(conn, transaction).await?;
    Ok(ApplyOutcome::Applied)
}
