//! Ledger accounts: created on first use, balances changed only by conditional updates.

use std::collections::{BTreeMap, BTreeSet};

use diesel::prelude::*;
use diesel::sql_types::{Array, BigInt, Uuid as SqlUuid};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use keel_domain::wallet::AccountRef;
use uuid::Uuid;

use super::rows::{account_ref, ledger_accounts as a};

/// The stored id and balance of `account`, if it has a row yet.
pub(crate) async fn find(
    conn: &mut AsyncPgConnection,
    account: &AccountRef,
) -> Result<Option<(Uuid, i64)>, diesel::result::Error> {
    let currency = account.currency();
    let mut query = a::table
        .filter(a::purpose.eq(account.purpose()))
        .filter(a::currency.eq(currency.as_str().to_owned()))
        .select((a::id, a::balance))
        .into_boxed();
    query = match account.user() {
        Some(user) => query.filter(a::user_id.eq(user.0)),
        None => query.filter(a::user_id.is_null()),
    };
    query.first(conn).await.optional()
}

/// The id of `account`, creating its row (balance 0) on first use. `INSERT … ON CONFLICT DO
/// NOTHING` never waits for locks on an existing row, so it does not serialise writers.
pub(crate) async fn get_or_create(
    conn: &mut AsyncPgConnection,
    account: &AccountRef,
) -> Result<Uuid, diesel::result::Error> {
    let created: Option<Uuid> = diesel::insert_into(a::table)
        .values((
            a::id.eq(Uuid::now_v7()),
            a::user_id.eq(account.user().map(|u| u.0)),
            a::purpose.eq(account.purpose()),
            a::currency.eq(account.currency().as_str()),
            a::balance.eq(0_i64),
            a::allow_negative.eq(account.allows_negative()),
        ))
        .on_conflict_do_nothing()
        .returning(a::id)
        .get_result(conn)
        .await
        .optional()?;
    match created {
        Some(id) => Ok(id),
        None => find(conn, account)
            .await?
            .map(|(id, _)| id)
            .ok_or(diesel::result::Error::NotFound),
    }
}

/// Creates the rows of `accounts` (balance 0) that do not exist yet, in the order given, with
/// one `INSERT … ON CONFLICT DO NOTHING`.
pub(crate) async fn create_all(
    conn: &mut AsyncPgConnection,
    accounts: &[AccountRef],
) -> Result<(), diesel::result::Error> {
    let rows: Vec<_> = accounts
        .iter()
        .map(|account| {
            (
                a::id.eq(Uuid::now_v7()),
                a::user_id.eq(account.user().map(|u| u.0)),
                a::purpose.eq(account.purpose()),
                a::currency.eq(account.currency().as_str().to_owned()),
                a::balance.eq(0_i64),
                a::allow_negative.eq(account.allows_negative()),
            )
        })
        .collect();
    diesel::insert_into(a::table)
        .values(&rows)
        .on_conflict_do_nothing()
        .execute(conn)
        .await?;
    Ok(())
}

/// Adds `delta` to the balance of account `id` unless a wallet account would go below zero
/// (the row lock taken by the update serialises racers; a loser re-checks the condition on the
/// winner's row). Returns whether the balance changed.
pub(crate) async fn apply(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    delta: i64,
) -> Result<bool, diesel::result::Error> {
    // `balance + delta >= 0` written as `balance >= -delta` (delta is never i64::MIN: validated).
    let floor = delta.checked_neg().unwrap_or(i64::MAX);
    let updated = diesel::update(
        a::table
            .filter(a::id.eq(id))
            .filter(a::allow_negative.or(a::balance.ge(floor))),
    )
    .set(a::balance.eq(a::balance + delta))
    .execute(conn)
    .await?;
    Ok(updated == 1)
}

/// The ids of the wallet accounts of `wanted` that exist, found by one query over the accounts
/// of `users` (wanted's owners).
pub(crate) async fn find_wallets(
    conn: &mut AsyncPgConnection,
    users: &BTreeSet<Uuid>,
    wanted: &BTreeSet<AccountRef>,
) -> Result<BTreeMap<AccountRef, Uuid>, diesel::result::Error> {
    if users.is_empty() {
        return Ok(BTreeMap::new());
    }
    let owners: Vec<Uuid> = users.iter().copied().collect();
    let rows: Vec<(Uuid, Option<Uuid>, String, String)> = a::table
        .filter(a::user_id.eq_any(owners))
        .select((a::id, a::user_id, a::purpose, a::currency))
        .load(conn)
        .await?;
    let mut found = BTreeMap::new();
    for (id, user, purpose, currency) in rows {
        // A purpose this build does not know is not one it was asked for.
        if let Ok(account) = account_ref(user, &purpose, &currency)
            && wanted.contains(&account)
        {
            found.insert(account, id);
        }
    }
    Ok(found)
}

/// Adds each delta of `changes` to its account's balance, all or none: the rows are locked in
/// account id order (`FOR NO KEY UPDATE`, which does not block the foreign-key checks of
/// concurrent postings), then changed by one conditional update. Returns whether every balance
/// changed; `false` means a wallet would go below zero and the caller rolls back.
pub(crate) async fn apply_all(
    conn: &mut AsyncPgConnection,
    changes: &BTreeMap<Uuid, i64>,
) -> Result<bool, diesel::result::Error> {
    let ids: Vec<Uuid> = changes.keys().copied().collect();
    let deltas: Vec<i64> = changes.values().copied().collect();
    let locked: Vec<Uuid> = a::table
        .filter(a::id.eq_any(&ids))
        .order(a::id)
        .select(a::id)
        .for_no_key_update()
        .load(conn)
        .await?;
    if locked.len() != ids.len() {
        return Err(diesel::result::Error::NotFound);
    }
    let updated = diesel::sql_query(
        "UPDATE ledger_accounts AS a SET balance = a.balance + d.delta \
         FROM unnest($1, $2) AS d(id, delta) \
         WHERE a.id = d.id AND (a.allow_negative OR a.balance + d.delta >= 0)",
    )
    .bind::<Array<SqlUuid>, _>(&ids)
    .bind::<Array<BigInt>, _>(&deltas)
    .execute(conn)
    .await?;
    Ok(updated == ids.len())
}
