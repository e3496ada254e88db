//! Ledger accounts: created on first use, balances changed only by conditional updates.

use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use keel_domain::wallet::AccountRef;
use uuid::Uuid;

use super::rows::ledger_accounts as a;

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
