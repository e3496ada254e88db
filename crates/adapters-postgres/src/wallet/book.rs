//! Writing ledger transactions: their rows, their postings and the balances they change, in ONE
//! statement ([`BOOK`]) whatever the number of transactions.
//!
//! The statement finds each leg's account by (owner, purpose, currency), locks the accounts it
//! changes in id order, adds each account's summed delta once, and inserts the transactions
//! and their postings. Whatever it refuses, it refuses with an error, so nothing of it stays
//! (see [`refusal`]): a taken link or id (a unique violation), an overdrawn wallet (the
//! `ledger_accounts_no_overdraft` CHECK), an account without a row yet (the postings'
//! `NOT NULL` account). That makes it safe on its own, outside any transaction ([`try_book`]):
//! one round trip per commit.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use diesel::pg::Pg;
use diesel::query_builder::{AstPass, QueryFragment, QueryId};
use diesel::result::{DatabaseErrorKind, Error, QueryResult};
use diesel::sql_types::{Array, BigInt, Integer, Nullable, Text, Timestamptz, Uuid as SqlUuid};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use keel_domain::wallet::{AccountRef, Transaction};
use uuid::Uuid;

use super::accounts;

/// Account rows per `INSERT` when creating accounts (6 bind parameters each, well under
/// Postgres' 65 535).
const ACCOUNTS_PER_INSERT: usize = 2_000;

/// Books a batch given as arrays: each `$?` is a bind parameter, in the order of
/// [`BookQuery::walk_ast`] (per leg: transaction, position, owner, purpose, currency, amount;
/// per transaction: id, kind, operation, reverses, resolves, creation time).
///
/// - `legs`: each leg with its account id, looked up by the unique (owner, purpose, currency);
///   NULL when the account has no row yet, which the postings' `NOT NULL` refuses.
/// - `deltas`, `locked`: each account's net change, its row locked in id order (the order
///   every writer takes, so writers cannot deadlock; `FOR NO KEY UPDATE` does not block the
///   foreign-key checks of concurrent postings), then changed once. The no-overdraft CHECK
///   refuses a wallet going below zero.
/// - Each array is read through a scalar subquery, `(SELECT $?::…[])`: the planner cannot see
///   its length, so every plan of the statement looks alike and Postgres keeps the prepared
///   statement's generic plan after its first executions instead of planning each call again
///   (planning this statement costs more than running it for one transfer).
/// - `transactions` runs first, before any account is locked (`locked` waits for its count): a
///   taken link or id is refused before an overdraft is looked at (a second reversal is
///   `already reversed`, not `insufficient funds`), and a racer for the same link waits on the
///   unique index without holding account locks. The postings `INSERT` runs to completion
///   after the update; the schema then checks the postings of each transaction (one complete,
///   balanced group per statement) and, at commit, that every transaction has them.
const BOOK: &str = "\
WITH legs AS ( \
    SELECT l.tx, l.position, l.amount, COALESCE( \
        (SELECT a.id FROM ledger_accounts a \
         WHERE a.user_id = l.owner AND a.purpose = l.purpose AND a.currency = l.currency), \
        (SELECT a.id FROM ledger_accounts a \
         WHERE l.owner IS NULL AND a.user_id IS NULL AND a.purpose = l.purpose \
           AND a.currency = l.currency)) AS account \
    FROM unnest((SELECT $?::uuid[]), (SELECT $?::int4[]), (SELECT $?::uuid[]), \
        (SELECT $?::text[]), (SELECT $?::bpchar[]), (SELECT $?::int8[])) \
        AS l(tx, position, owner, purpose, currency, amount) \
), deltas AS ( \
    SELECT account AS id, sum(amount)::bigint AS delta FROM legs \
    WHERE account IS NOT NULL GROUP BY account HAVING sum(amount) <> 0 \
), transactions AS ( \
    INSERT INTO ledger_transactions (id, kind, operation_id, reverses, resolves, created_at) \
    SELECT * FROM unnest((SELECT $?::uuid[]), (SELECT $?::text[]), (SELECT $?::uuid[]), \
        (SELECT $?::uuid[]), (SELECT $?::uuid[]), (SELECT $?::timestamptz[])) \
    RETURNING id \
), locked AS ( \
    SELECT a.id FROM ledger_accounts a \
    WHERE a.id IN (SELECT id FROM deltas) AND (SELECT count(*) FROM transactions) > 0 \
    ORDER BY a.id FOR NO KEY UPDATE \
), postings AS ( \
    INSERT INTO ledger_postings (transaction_id, position, account_id, amount) \
    SELECT tx, position, account, amount FROM legs \
) \
UPDATE ledger_accounts a SET balance = a.balance + d.delta \
FROM deltas d JOIN locked k ON k.id = d.id \
WHERE a.id = d.id";

/// What [`book`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Booking {
    /// Stored, balances changed.
    Booked,
    /// A wallet account would go below zero: the caller rolls the unit of work back.
    InsufficientFunds,
    /// Its `reverses` or `resolves` link (or its id) is taken: the caller rolls back.
    LinkTaken,
}

/// Why [`BOOK`] refused, when the error is one of its business refusals.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// A business answer ([`Booking::InsufficientFunds`] or [`Booking::LinkTaken`]).
    Answer(Booking),
    /// A leg's account has no row yet: create it ([`accounts::ensure`]) and book again.
    NoAccount,
}

/// What a failed [`BOOK`] means: `None` for an error that is not one of its refusals.
pub(crate) fn refusal(error: &Error) -> Option<Refusal> {
    let Error::DatabaseError(kind, info) = error else {
        return None;
    };
    match (kind, info.table_name(), info.constraint_name()) {
        (DatabaseErrorKind::CheckViolation, _, Some("ledger_accounts_no_overdraft")) => {
            Some(Refusal::Answer(Booking::InsufficientFunds))
        }
        // A taken link or id (`ledger_transactions`); a posting's key taken can only mean its
        // transaction's id was.
        (
            DatabaseErrorKind::UniqueViolation,
            Some("ledger_transactions" | "ledger_postings"),
            _,
        ) => Some(Refusal::Answer(Booking::LinkTaken)),
        (DatabaseErrorKind::NotNullViolation, Some("ledger_postings"), _)
            if info.column_name() == Some("account_id") =>
        {
            Some(Refusal::NoAccount)
        }
        _ => None,
    }
}

/// Books `tx` (already validated) on `conn`, inside the caller's transaction.
pub(crate) async fn book(conn: &mut AsyncPgConnection, tx: &Transaction) -> Result<Booking, Error> {
    book_all(conn, std::slice::from_ref(tx)).await
}

/// Books every transaction of `txs` (each already validated) on `conn`, inside the caller's
/// transaction: all of them or, once the caller rolls back, none.
///
/// Missing accounts are created first (in [`AccountRef`] order, the same for every writer),
/// then [`BOOK`] writes the batch. A refusal answers with its [`Booking`]; the statement failed,
/// so the caller's transaction is aborted and must roll back (which every caller does for any
/// answer but `Booking::Booked`). The overdraft rule applies to each account's net change
/// across the batch.
pub(crate) async fn book_all(
    conn: &mut AsyncPgConnection,
    txs: &[Transaction],
) -> Result<Booking, Error> {
    let refs: BTreeSet<AccountRef> = txs
        .iter()
        .flat_map(|tx| tx.postings.iter().map(|leg| leg.account))
        .collect();
    let refs: Vec<AccountRef> = refs.into_iter().collect();
    for chunk in refs.chunks(ACCOUNTS_PER_INSERT) {
        accounts::ensure(conn, chunk).await?;
    }
    match try_book(conn, txs).await {
        Ok(()) => Ok(Booking::Booked),
        Err(e) => match refusal(&e) {
            Some(Refusal::Answer(answer)) => Ok(answer),
            // Every account was just created or found: a row missing now is an error.
            Some(Refusal::NoAccount) | None => Err(e),
        },
    }
}

/// Runs [`BOOK`] once for `txs` (each already validated): `Ok` when everything is written;
/// otherwise the error, which [`refusal`] reads. On a connection outside any transaction the
/// statement is its own transaction: it commits, or leaves nothing.
pub(crate) async fn try_book(
    conn: &mut AsyncPgConnection,
    txs: &[Transaction],
) -> Result<(), Error> {
    BookQuery(Arrays::of(txs)?).execute(conn).await?;
    Ok(())
}

/// [`BOOK`] with its arrays bound: one SQL text whatever the batch, so the connection keeps it
/// prepared (its plan is made once per connection; `sql_query` would plan it every time).
struct BookQuery(Arrays);

impl QueryId for BookQuery {
    type QueryId = ();
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl QueryFragment<Pg> for BookQuery {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        let b = &self.0;
        for (i, sql) in BOOK.split("$?").enumerate() {
            out.push_sql(sql);
            match i {
                0 => out.push_bind_param::<Array<SqlUuid>, _>(&b.leg_transactions)?,
                1 => out.push_bind_param::<Array<Integer>, _>(&b.positions)?,
                2 => out.push_bind_param::<Array<Nullable<SqlUuid>>, _>(&b.owners)?,
                3 => out.push_bind_param::<Array<Text>, _>(&b.purposes)?,
                4 => out.push_bind_param::<Array<Text>, _>(&b.currencies)?,
                5 => out.push_bind_param::<Array<BigInt>, _>(&b.amounts)?,
                6 => out.push_bind_param::<Array<SqlUuid>, _>(&b.ids)?,
                7 => out.push_bind_param::<Array<Text>, _>(&b.kinds)?,
                8 => out.push_bind_param::<Array<Nullable<SqlUuid>>, _>(&b.operations)?,
                9 => out.push_bind_param::<Array<Nullable<SqlUuid>>, _>(&b.reverses)?,
                10 => out.push_bind_param::<Array<Nullable<SqlUuid>>, _>(&b.resolves)?,
                11 => out.push_bind_param::<Array<Timestamptz>, _>(&b.created_at)?,
                _ => {}
            }
        }
        Ok(())
    }
}

/// A batch as the columns [`BOOK`] binds.
#[derive(Default)]
struct Arrays {
    ids: Vec<Uuid>,
    kinds: Vec<&'static str>,
    operations: Vec<Option<Uuid>>,
    reverses: Vec<Option<Uuid>>,
    resolves: Vec<Option<Uuid>>,
    created_at: Vec<DateTime<Utc>>,
    leg_transactions: Vec<Uuid>,
    positions: Vec<i32>,
    owners: Vec<Option<Uuid>>,
    purposes: Vec<&'static str>,
    currencies: Vec<String>,
    amounts: Vec<i64>,
}

impl Arrays {
    fn of(txs: &[Transaction]) -> Result<Self, Error> {
        let mut batch = Self::default();
        for tx in txs {
            batch.ids.push(tx.id.0);
            batch.kinds.push(tx.kind.as_str());
            batch.operations.push(tx.operation.map(|o| o.0));
            batch.reverses.push(tx.reverses.map(|r| r.0));
            batch.resolves.push(tx.resolves.map(|r| r.0));
            batch.created_at.push(tx.created_at);
            for (position, leg) in tx.postings.iter().enumerate() {
                let position = i32::try_from(position)
                    .map_err(|_| Error::QueryBuilderError("too many postings".into()))?;
                batch.leg_transactions.push(tx.id.0);
                batch.positions.push(position);
                batch.owners.push(leg.account.user().map(|u| u.0));
                batch.purposes.push(leg.account.purpose());
                batch
                    .currencies
                    .push(leg.account.currency().as_str().to_owned());
                batch.amounts.push(leg.amount);
            }
        }
        Ok(batch)
    }
}

#[cfg(test)]
mod tests {
    use super::BOOK;

    #[test]
    fn the_statement_has_one_placeholder_per_bound_array() {
        assert_eq!(BOOK.matches("$?").count(), 12);
        assert!(!BOOK.contains("$1"), "placeholders are numbered by diesel");
    }
}
