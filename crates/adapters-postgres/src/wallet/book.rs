//! Writing ledger transactions: their rows, their postings and the balances they change.
//!
//! One transaction ([`book`]) and a batch of them ([`book_all`], one database transaction for
//! all) share the same steps: insert the transaction rows, resolve (or create) every account in
//! [`AccountRef`] order, insert the postings, then apply the summed delta of each account once,
//! in account id order, with the conditional update that refuses an overdraft.

use std::collections::{BTreeMap, BTreeSet};

use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection};
use keel_domain::wallet::{AccountRef, Transaction};
use uuid::Uuid;

use super::accounts;
use super::rows::{ledger_postings as p, ledger_transactions as t};

/// Rows per multi-row INSERT (well under Postgres' 65 535 bind parameters).
const ROWS_PER_INSERT: usize = 2_000;
/// Up to this many accounts, balances change with one conditional UPDATE each; above it, the
/// rows are locked in id order by one statement and changed by another.
const PER_ACCOUNT_UPDATES: usize = 4;

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

/// Books `tx` (already validated) on `conn`, inside the caller's transaction.
///
/// Accounts are created in [`AccountRef`] order and their balances updated in account id
/// order, the same order for every writer, so concurrent transfers cannot deadlock. Any
/// outcome but `Booking::Booked` may leave partial writes that the caller must roll back.
pub(crate) async fn book(
    conn: &mut AsyncPgConnection,
    tx: &Transaction,
) -> Result<Booking, diesel::result::Error> {
    book_all(conn, std::slice::from_ref(tx)).await
}

/// Books every transaction of `txs` (each already validated) on `conn`, inside the caller's
/// transaction: all of them or, once the caller rolls back, none.
///
/// The locking order is global across the batch: accounts are resolved in [`AccountRef`] order
/// over all postings, and each account's balance changes once, by the sum of its postings, in
/// account id order. A batch is refused as a whole when that sum would overdraw a wallet.
pub(crate) async fn book_all(
    conn: &mut AsyncPgConnection,
    txs: &[Transaction],
) -> Result<Booking, diesel::result::Error> {
    if !insert_transactions(conn, txs).await? {
        return Ok(Booking::LinkTaken);
    }
    let refs: BTreeSet<AccountRef> = txs
        .iter()
        .flat_map(|tx| tx.postings.iter().map(|leg| leg.account))
        .collect();
    let ids = account_ids(conn, &refs).await?;
    let mut rows = Vec::with_capacity(txs.iter().map(|tx| tx.postings.len()).sum());
    let mut deltas: BTreeMap<Uuid, i128> = BTreeMap::new();
    for tx in txs {
        for (position, leg) in tx.postings.iter().enumerate() {
            let account = *ids
                .get(&leg.account)
                .ok_or(diesel::result::Error::NotFound)?;
            let position = i32::try_from(position).map_err(|_| {
                diesel::result::Error::QueryBuilderError("too many postings".into())
            })?;
            *deltas.entry(account).or_default() += i128::from(leg.amount);
            rows.push((
                p::transaction_id.eq(tx.id.0),
                p::position.eq(position),
                p::account_id.eq(account),
                p::amount.eq(leg.amount),
            ));
        }
    }
    for chunk in rows.chunks(ROWS_PER_INSERT) {
        diesel::insert_into(p::table)
            .values(chunk)
            .execute(conn)
            .await?;
    }
    if txs.len() > 1 {
        // Run the schema's deferred balance checks of the batch now, before its balances are
        // locked, rather than at COMMIT with hundreds of row locks held; later writes of the
        // caller's transaction are checked at COMMIT as usual.
        conn.batch_execute(
            "SET CONSTRAINTS ledger_transactions_balanced, ledger_postings_balanced IMMEDIATE; \
             SET CONSTRAINTS ledger_transactions_balanced, ledger_postings_balanced DEFERRED",
        )
        .await?;
    }
    let mut changes = BTreeMap::new();
    for (account, delta) in deltas {
        let delta = i64::try_from(delta).map_err(|_| {
            diesel::result::Error::QueryBuilderError("a balance change overflows".into())
        })?;
        if delta != 0 {
            changes.insert(account, delta);
        }
    }
    let applied = if changes.len() <= PER_ACCOUNT_UPDATES {
        let mut all = true;
        for (account, delta) in &changes {
            if !accounts::apply(conn, *account, *delta).await? {
                all = false;
                break;
            }
        }
        all
    } else {
        accounts::apply_all(conn, &changes).await?
    };
    Ok(if applied {
        Booking::Booked
    } else {
        Booking::InsufficientFunds
    })
}

/// Inserts the transaction rows; `false` when a link (or an id) is taken. A taken link makes
/// its row's insert do nothing (a racer's insert waits for the other to end).
async fn insert_transactions(
    conn: &mut AsyncPgConnection,
    txs: &[Transaction],
) -> Result<bool, diesel::result::Error> {
    for chunk in txs.chunks(ROWS_PER_INSERT) {
        let rows: Vec<_> = chunk
            .iter()
            .map(|tx| {
                (
                    t::id.eq(tx.id.0),
                    t::kind.eq(tx.kind.as_str()),
                    t::operation_id.eq(tx.operation.map(|o| o.0)),
                    t::reverses.eq(tx.reverses.map(|r| r.0)),
                    t::resolves.eq(tx.resolves.map(|r| r.0)),
                    t::created_at.eq(tx.created_at),
                )
            })
            .collect();
        let inserted: Vec<Uuid> = diesel::insert_into(t::table)
            .values(&rows)
            .on_conflict_do_nothing()
            .returning(t::id)
            .get_results(conn)
            .await?;
        if inserted.len() != chunk.len() {
            return Ok(false);
        }
    }
    Ok(true)
}

/// The row ids of `refs`: the wallet accounts that exist are found by one query; the others
/// (and system accounts) are created on first use, in [`AccountRef`] order.
async fn account_ids(
    conn: &mut AsyncPgConnection,
    refs: &BTreeSet<AccountRef>,
) -> Result<BTreeMap<AccountRef, Uuid>, diesel::result::Error> {
    let users: BTreeSet<Uuid> = refs.iter().filter_map(|r| r.user()).map(|u| u.0).collect();
    let mut ids = accounts::find_wallets(conn, &users, refs).await?;
    let missing: Vec<AccountRef> = refs
        .iter()
        .filter(|r| r.user().is_some() && !ids.contains_key(r))
        .copied()
        .collect();
    if !missing.is_empty() {
        // New wallets: created together (in AccountRef order), then found like the others.
        for chunk in missing.chunks(ROWS_PER_INSERT) {
            accounts::create_all(conn, chunk).await?;
        }
        ids.extend(accounts::find_wallets(conn, &users, refs).await?);
    }
    for account in refs {
        if !ids.contains_key(account) {
            let id = accounts::get_or_create(conn, account).await?;
            ids.insert(*account, id);
        }
    }
    Ok(ids)
}
