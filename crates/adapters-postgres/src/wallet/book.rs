//! Writing one ledger transaction: its row, its postings and the balances they change.

use std::collections::BTreeMap;

use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use keel_domain::wallet::{AccountRef, Transaction};
use uuid::Uuid;

use super::accounts;
use super::rows::{ledger_postings as p, ledger_transactions as t};

/// What [`book`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Booking {
    /// Stored, balances changed.
    Booked,
    /// A wallet account would go below zero: the caller rolls the unit of work back.
    InsufficientFunds,
    /// Its `reverses` or `resolves` link (or its id) is taken: nothing was written.
    LinkTaken,
}

/// Books `tx` (already validated) on `conn`, inside the caller's transaction.
///
/// Accounts are created in [`AccountRef`] order and their balances updated in account id
/// order, the same order for every writer, so concurrent transfers cannot deadlock. Any
/// `Booking::InsufficientFunds` leaves partial writes that the caller must roll back.
pub(crate) async fn book(
    conn: &mut AsyncPgConnection,
    tx: &Transaction,
) -> Result<Booking, diesel::result::Error> {
    // A taken link makes the insert do nothing (a racer's insert waits for the other to end).
    let inserted: Option<Uuid> = diesel::insert_into(t::table)
        .values((
            t::id.eq(tx.id.0),
            t::kind.eq(tx.kind.as_str()),
            t::operation_id.eq(tx.operation.map(|o| o.0)),
            t::reverses.eq(tx.reverses.map(|r| r.0)),
            t::resolves.eq(tx.resolves.map(|r| r.0)),
            t::created_at.eq(tx.created_at),
        ))
        .on_conflict_do_nothing()
        .returning(t::id)
        .get_result(conn)
        .await
        .optional()?;
    if inserted.is_none() {
        return Ok(Booking::LinkTaken);
    }
    let mut ids: BTreeMap<AccountRef, Uuid> = BTreeMap::new();
    let mut refs: Vec<AccountRef> = tx.postings.iter().map(|leg| leg.account).collect();
    refs.sort_unstable();
    refs.dedup();
    for account in refs {
        let id = accounts::get_or_create(conn, &account).await?;
        ids.insert(account, id);
    }
    let mut legs = Vec::with_capacity(tx.postings.len());
    for (position, leg) in tx.postings.iter().enumerate() {
        let account = *ids
            .get(&leg.account)
            .ok_or(diesel::result::Error::NotFound)?;
        let position = i32::try_from(position)
            .map_err(|_| diesel::result::Error::QueryBuilderError("too many postings".into()))?;
        legs.push((account, position, leg.amount));
    }
    let rows: Vec<_> = legs
        .iter()
        .map(|(account, position, amount)| {
            (
                p::transaction_id.eq(tx.id.0),
                p::position.eq(*position),
                p::account_id.eq(*account),
                p::amount.eq(*amount),
            )
        })
        .collect();
    diesel::insert_into(p::table)
        .values(&rows)
        .execute(conn)
        .await?;
    legs.sort_unstable_by_key(|(account, position, _)| (*account, *position));
    for (account, _, amount) in legs {
        if !accounts::apply(conn, account, amount).await? {
            return Ok(Booking::InsufficientFunds);
        }
    }
    Ok(Booking::Booked)
}
