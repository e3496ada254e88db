//! Reads: balances, operations and their history pages, transactions, the reconciliation work
//! list, findings, and the ledger check.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Nullable, Text};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use keel_domain::StoreError;
use keel_domain::wallet::{
    AccountDrift, HistoryCursor, HistoryFilter, LedgerReport, Operation, OperationId,
    OperationKind, OperationStatus, Posting, Transaction, TransactionId, TransactionKind,
};
use uuid::Uuid;

use super::rows::{
    OperationRow, account_ref, corrupt, ledger_accounts as a, ledger_postings as p,
    ledger_transactions as t, wallet_operations as o,
};
use crate::error::query_error;

/// One operation.
pub(crate) async fn operation(
    conn: &mut AsyncPgConnection,
    id: OperationId,
) -> Result<Option<Operation>, StoreError> {
    let row: Option<OperationRow> = o::table
        .filter(o::id.eq(id.0))
        .select(OperationRow::as_select())
        .first(conn)
        .await
        .optional()
        .map_err(query_error)?;
    row.map(OperationRow::into_operation).transpose()
}

/// A history page: newest first by (created_at, id), strictly after `after`.
pub(crate) async fn operations(
    conn: &mut AsyncPgConnection,
    user: Uuid,
    filter: &HistoryFilter,
    after: Option<HistoryCursor>,
    limit: u32,
) -> Result<Vec<Operation>, StoreError> {
    let mut query = o::table
        .filter(o::user_id.eq(user))
        .select(OperationRow::as_select())
        .order((o::created_at.desc(), o::id.desc()))
        .limit(i64::from(limit))
        .into_boxed();
    if let Some(kind) = filter.kind {
        query = query.filter(o::kind.eq(kind.as_str()));
    }
    if let Some(status) = filter.status {
        query = query.filter(o::status.eq(status.as_str()));
    }
    if let Some(from) = filter.from {
        query = query.filter(o::created_at.ge(from));
    }
    if let Some(to) = filter.to {
        query = query.filter(o::created_at.lt(to));
    }
    if let Some((at, id)) = after {
        query = query.filter(
            o::created_at
                .lt(at)
                .or(o::created_at.eq(at).and(o::id.lt(id.0))),
        );
    }
    let rows: Vec<OperationRow> = query.load(conn).await.map_err(query_error)?;
    rows.into_iter().map(OperationRow::into_operation).collect()
}

/// Pending deposits and withdrawals created before `before`, oldest first.
pub(crate) async fn stale_pending(
    conn: &mut AsyncPgConnection,
    before: DateTime<Utc>,
    limit: u32,
) -> Result<Vec<Operation>, StoreError> {
    let rows: Vec<OperationRow> = o::table
        .filter(o::status.eq(OperationStatus::Pending.as_str()))
        .filter(o::created_at.lt(before))
        .filter(o::kind.eq_any([
            OperationKind::Deposit.as_str(),
            OperationKind::Withdrawal.as_str(),
        ]))
        .select(OperationRow::as_select())
        .order((o::created_at.asc(), o::id.asc()))
        .limit(i64::from(limit))
        .load(conn)
        .await
        .map_err(query_error)?;
    rows.into_iter().map(OperationRow::into_operation).collect()
}

type TransactionHead = (
    Uuid,
    String,
    Option<Uuid>,
    Option<Uuid>,
    Option<Uuid>,
    DateTime<Utc>,
);

/// One transaction with its postings in order, checked against the ledger's rules.
pub(crate) async fn transaction(
    conn: &mut AsyncPgConnection,
    id: TransactionId,
) -> Result<Option<Transaction>, StoreError> {
    let head: Option<TransactionHead> = t::table
        .filter(t::id.eq(id.0))
        .select((
            t::id,
            t::kind,
            t::operation_id,
            t::reverses,
            t::resolves,
            t::created_at,
        ))
        .first(conn)
        .await
        .optional()
        .map_err(query_error)?;
    let Some((id, kind, operation, reverses, resolves, created_at)) = head else {
        return Ok(None);
    };
    let legs: Vec<(Option<Uuid>, String, String, i64)> = p::table
        .inner_join(a::table)
        .filter(p::transaction_id.eq(id))
        .order(p::position.asc())
        .select((a::user_id, a::purpose, a::currency, p::amount))
        .load(conn)
        .await
        .map_err(query_error)?;
    let postings = legs
        .into_iter()
        .map(|(user, purpose, currency, amount)| {
            Ok(Posting {
                account: account_ref(user, &purpose, &currency)?,
                amount,
            })
        })
        .collect::<Result<Vec<_>, StoreError>>()?;
    let tx = Transaction {
        id: TransactionId(id),
        kind: TransactionKind::parse(&kind)
            .ok_or_else(|| corrupt(format!("transaction kind {kind:?}")))?,
        operation: operation.map(OperationId),
        reverses: reverses.map(TransactionId),
        resolves: resolves.map(TransactionId),
        postings,
        created_at,
    };
    tx.validate()
        .map_err(|e| corrupt(format!("stored transaction {id}: {e}")))?;
    Ok(Some(tx))
}

#[derive(QueryableByName)]
struct AccountCheck {
    #[diesel(sql_type = Nullable<diesel::sql_types::Uuid>)]
    user_id: Option<Uuid>,
    #[diesel(sql_type = Text)]
    purpose: String,
    #[diesel(sql_type = Text)]
    currency: String,
    #[diesel(sql_type = BigInt)]
    stored: i64,
    #[diesel(sql_type = BigInt)]
    rebuilt: i64,
}

#[derive(QueryableByName)]
struct Unbalanced {
    #[diesel(sql_type = diesel::sql_types::Uuid)]
    id: Uuid,
}

#[derive(QueryableByName)]
struct Counts {
    #[diesel(sql_type = BigInt)]
    accounts: i64,
    #[diesel(sql_type = BigInt)]
    transactions: i64,
}

/// Stored balances that differ from the sum of their postings.
const DRIFTED: &str = "\
    SELECT a.user_id, a.purpose, a.currency::text AS currency, a.balance AS stored, \
           COALESCE(sum(p.amount), 0)::bigint AS rebuilt \
    FROM ledger_accounts a LEFT JOIN ledger_postings p ON p.account_id = a.id \
    GROUP BY a.id \
    HAVING a.balance <> COALESCE(sum(p.amount), 0) \
    ORDER BY a.id";

/// Transactions with fewer than two postings or a non-zero sum in some currency.
const UNBALANCED: &str = "\
    SELECT t.id FROM ledger_transactions t \
    WHERE (SELECT count(*) FROM ledger_postings p WHERE p.transaction_id = t.id) < 2 \
       OR EXISTS (SELECT 1 FROM ledger_postings p JOIN ledger_accounts a ON a.id = p.account_id \
                  WHERE p.transaction_id = t.id GROUP BY a.currency HAVING sum(p.amount) <> 0) \
    ORDER BY t.id";

/// Wallet accounts below zero.
const OVERDRAWN: &str = "\
    SELECT user_id, purpose, currency::text AS currency, balance AS stored, balance AS rebuilt \
    FROM ledger_accounts WHERE user_id IS NOT NULL AND balance < 0 ORDER BY id";

const COUNTS: &str = "\
    SELECT (SELECT count(*) FROM ledger_accounts) AS accounts, \
           (SELECT count(*) FROM ledger_transactions) AS transactions";

/// The ledger check, in SQL: each finding is one statement, so it reads one snapshot.
pub(crate) async fn verify(conn: &mut AsyncPgConnection) -> Result<LedgerReport, StoreError> {
    let drifted: Vec<AccountCheck> = diesel::sql_query(DRIFTED)
        .load(conn)
        .await
        .map_err(query_error)?;
    let unbalanced: Vec<Unbalanced> = diesel::sql_query(UNBALANCED)
        .load(conn)
        .await
        .map_err(query_error)?;
    let overdrawn: Vec<AccountCheck> = diesel::sql_query(OVERDRAWN)
        .load(conn)
        .await
        .map_err(query_error)?;
    let counts: Counts = diesel::sql_query(COUNTS)
        .get_result(conn)
        .await
        .map_err(query_error)?;
    let count = |n: i64| u64::try_from(n).map_err(|_| corrupt("negative count"));
    Ok(LedgerReport {
        accounts: count(counts.accounts)?,
        transactions: count(counts.transactions)?,
        drifted: drifted
            .into_iter()
            .map(|row| {
                Ok(AccountDrift {
                    account: account_ref(row.user_id, &row.purpose, &row.currency)?,
                    stored: row.stored,
                    rebuilt: row.rebuilt,
                })
            })
            .collect::<Result<_, StoreError>>()?,
        unbalanced: unbalanced
            .into_iter()
            .map(|row| TransactionId(row.id))
            .collect(),
        overdrawn: overdrawn
            .into_iter()
            .map(|row| account_ref(row.user_id, &row.purpose, &row.currency))
            .collect::<Result<_, StoreError>>()?,
    })
}
