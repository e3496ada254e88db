//! Ledger accounts: found by owner, purpose and currency, created on first use. Balances
//! change only with the postings that book them (`book`).

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

/// Creates the rows of `accounts` (balance 0) that do not exist yet, in the order given, with
/// one `INSERT … ON CONFLICT DO NOTHING` (which never waits for locks on an existing row, so
/// it does not serialise writers).
pub(crate) async fn ensure(
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
