//! Users and refresh tokens in Postgres: `users`, `user_pii` and `refresh_tokens`.
//!
//! Creating a user writes its row and its sealed personal data in one transaction; the unique
//! constraint on the (normalised) email decides races between registrations. A user is read in
//! one statement (a left join), so it is never seen without its personal data. Deleting a user
//! cascades to its personal data and refresh tokens.
//!
//! A rotation is one transaction that locks the presented token's row (`SELECT … FOR UPDATE`),
//! applies the domain's [`decide_rotation`] to it and carries the decision out, so concurrent
//! rotations of one token run one after the other and exactly one of them wins.
//!
//! Key rotation reads `user_pii` as a keyset scan over its primary key `(user_id, field)`:
//! `uuid` order, then the field names in `text` order (the names start with distinct letters, so
//! every collation agrees with the port's byte order of names). A rotated value is written back
//! with one `UPDATE … WHERE user_id = $1 AND field = $2 AND key_id = $3`, so a value changed
//! meanwhile is never overwritten.

use std::collections::BTreeMap;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::result::{DatabaseErrorKind, Error as DieselError};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use keel_domain::StoreError;
use keel_domain::identity::refresh::{
    RefreshRecord, RefreshTokenStore, RotateOutcome, RotationDecision, StoredRefreshToken,
    decide_rotation,
};
use keel_domain::identity::store::{UserStore, UserStoreError};
use keel_domain::identity::user::{NewUser, User, UserId};
use keel_domain::identity::values::{DisplayName, Email, Role};
use keel_domain::pii::{NONCE_LEN, PiiField, Sealed};
use uuid::Uuid;

use crate::PgPool;
use crate::error::query_error;
use crate::schema::{refresh_tokens, user_pii, users};

/// Name of the unique constraint on `users.email` (Postgres' default name).
const EMAIL_UNIQUE: &str = "users_email_key";

/// [`UserStore`] on Postgres.
#[derive(Debug, Clone)]
pub struct PgUserStore {
    pool: PgPool,
}

impl PgUserStore {
    /// A store on the database behind `pool`.
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }
}

/// [`RefreshTokenStore`] on Postgres.
#[derive(Debug, Clone)]
pub struct PgRefreshTokenStore {
    pool: PgPool,
}

impl PgRefreshTokenStore {
    /// A store on the database behind `pool`.
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }
}

type UserColumns = (
    users::id,
    users::email,
    users::display_name,
    users::role,
    users::password_hash,
    users::created_at,
);

const USER_COLUMNS: UserColumns = (
    users::id,
    users::email,
    users::display_name,
    users::role,
    users::password_hash,
    users::created_at,
);

type PiiColumns = (
    user_pii::field,
    user_pii::key_id,
    user_pii::nonce,
    user_pii::ciphertext,
);

const PII_COLUMNS: PiiColumns = (
    user_pii::field,
    user_pii::key_id,
    user_pii::nonce,
    user_pii::ciphertext,
);

type UserRow = (Uuid, String, String, String, String, DateTime<Utc>);
type PiiRow = (String, String, Vec<u8>, Vec<u8>);

/// A role column's value, or why the row is corrupt.
fn stored_role(role: &str, id: impl std::fmt::Display) -> Result<Role, StoreError> {
    role.parse::<Role>()
        .map_err(|_| corrupt(format!("role {role:?} of {id}")))
}

fn corrupt(what: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("users: {what}"))
}

fn sealed_from_row(
    (field, key_id, nonce, ciphertext): PiiRow,
) -> Result<(PiiField, Sealed), StoreError> {
    let field =
        PiiField::from_name(&field).ok_or_else(|| corrupt(format!("PII field {field:?}")))?;
    let nonce = <[u8; NONCE_LEN]>::try_from(nonce.as_slice())
        .map_err(|_| corrupt(format!("nonce of {field} is not {NONCE_LEN} bytes")))?;
    Ok((
        field,
        Sealed {
            key_id,
            nonce,
            ciphertext,
        },
    ))
}

/// Builds users from the rows of the users ⟕ user_pii join (rows of one user are adjacent or not:
/// both work, the first row of a user decides its columns).
fn users_from_rows(rows: Vec<(UserRow, Option<PiiRow>)>) -> Result<Option<User>, StoreError> {
    let mut user: Option<User> = None;
    for ((id, email, display_name, role, password_hash, created_at), pii) in rows {
        let user = match &mut user {
            Some(user) => user,
            None => user.insert(User {
                id: UserId(id),
                email: Email::parse(&email).map_err(|e| corrupt(format!("email of {id}: {e}")))?,
                display_name: DisplayName::parse(&display_name)
                    .map_err(|e| corrupt(format!("display name of {id}: {e}")))?,
                role: stored_role(&role, id)?,
                password_hash,
                pii: BTreeMap::new(),
                created_at,
            }),
        };
        if let Some(pii) = pii {
            let (field, sealed) = sealed_from_row(pii)?;
            user.pii.insert(field, sealed);
        }
    }
    Ok(user)
}

async fn insert_user(
    conn: &mut AsyncPgConnection,
    user: &NewUser,
) -> Result<DateTime<Utc>, DieselError> {
    let created_at = diesel::insert_into(users::table)
        .values((
            users::id.eq(user.id.as_uuid()),
            users::email.eq(user.email.as_str()),
            users::display_name.eq(user.display_name.as_str()),
            users::role.eq(user.role.as_str()),
            users::password_hash.eq(&user.password_hash),
            users::created_at.eq(user.created_at),
        ))
        .returning(users::created_at)
        .get_result(conn)
        .await?;
    if !user.pii.is_empty() {
        let rows: Vec<_> = user
            .pii
            .iter()
            .map(|(field, sealed)| {
                (
                    user_pii::user_id.eq(user.id.as_uuid()),
                    user_pii::field.eq(field.as_str()),
                    user_pii::key_id.eq(sealed.key_id.as_str()),
                    user_pii::nonce.eq(sealed.nonce.to_vec()),
                    user_pii::ciphertext.eq(sealed.ciphertext.as_slice()),
                )
            })
            .collect();
        diesel::insert_into(user_pii::table)
            .values(rows)
            .execute(conn)
            .await?;
    }
    Ok(created_at)
}

fn is_email_taken(error: &DieselError) -> bool {
    matches!(
        error,
        DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, info)
            if info.constraint_name() == Some(EMAIL_UNIQUE)
    )
}

#[async_trait]
impl UserStore for PgUserStore {
    async fn create(&self, user: &NewUser) -> Result<User, UserStoreError> {
        let mut conn = self.pool.get().await?;
        let created_at = conn
            .transaction(async |conn| insert_user(conn, user).await)
            .await
            .map_err(|e| {
                if is_email_taken(&e) {
                    UserStoreError::EmailTaken
                } else {
                    UserStoreError::Store(query_error(e))
                }
            })?;
        Ok(User {
            created_at,
            ..user.clone().into_user()
        })
    }

    async fn find_by_email(&self, email: &Email) -> Result<Option<User>, StoreError> {
        let mut conn = self.pool.get().await?;
        let rows = users::table
            .left_join(user_pii::table)
            .filter(users::email.eq(email.as_str()))
            .select((USER_COLUMNS, PII_COLUMNS.nullable()))
            .load::<(UserRow, Option<PiiRow>)>(&mut conn)
            .await
            .map_err(query_error)?;
        users_from_rows(rows)
    }

    async fn find_by_id(&self, id: UserId) -> Result<Option<User>, StoreError> {
        let mut conn = self.pool.get().await?;
        let rows = users::table
            .left_join(user_pii::table)
            .filter(users::id.eq(id.as_uuid()))
            .select((USER_COLUMNS, PII_COLUMNS.nullable()))
            .load::<(UserRow, Option<PiiRow>)>(&mut conn)
            .await
            .map_err(query_error)?;
        users_from_rows(rows)
    }

    async fn role_and_email(&self, id: UserId) -> Result<Option<(Role, Email)>, StoreError> {
        let mut conn = self.pool.get().await?;
        let row: Option<(String, String)> = users::table
            .filter(users::id.eq(id.as_uuid()))
            .select((users::role, users::email))
            .first(&mut conn)
            .await
            .optional()
            .map_err(query_error)?;
        row.map(|(role, email)| {
            let email = Email::parse(&email).map_err(|e| corrupt(format!("email of {id}: {e}")))?;
            Ok((stored_role(&role, id.as_uuid())?, email))
        })
        .transpose()
    }

    async fn set_role(&self, id: UserId, role: Role) -> Result<Option<(Role, Role)>, StoreError> {
        let mut conn = self.pool.get().await?;
        let before: Option<String> = conn
            .transaction(async |conn| {
                let before: Option<String> = users::table
                    .filter(users::id.eq(id.as_uuid()))
                    .select(users::role)
                    .for_update()
                    .first(conn)
                    .await
                    .optional()?;
                if before.is_some() {
                    diesel::update(users::table.filter(users::id.eq(id.as_uuid())))
                        .set(users::role.eq(role.as_str()))
                        .execute(conn)
                        .await?;
                }
                Ok::<_, DieselError>(before)
            })
            .await
            .map_err(query_error)?;
        before
            .map(|before| Ok((stored_role(&before, id.as_uuid())?, role)))
            .transpose()
    }

    async fn delete(&self, id: UserId) -> Result<bool, StoreError> {
        let mut conn = self.pool.get().await?;
        // user_pii and refresh_tokens rows go with it (ON DELETE CASCADE).
        let deleted = diesel::delete(users::table.filter(users::id.eq(id.as_uuid())))
            .execute(&mut conn)
            .await
            .map_err(query_error)?;
        Ok(deleted == 1)
    }

    async fn pii_not_under_key(
        &self,
        active_key_id: &str,
        after: Option<(UserId, PiiField)>,
        limit: u32,
    ) -> Result<Vec<(UserId, PiiField, Sealed)>, StoreError> {
        let mut conn = self.pool.get().await?;
        let mut query = user_pii::table
            .filter(user_pii::key_id.ne(active_key_id))
            .select((user_pii::user_id, PII_COLUMNS))
            .order((user_pii::user_id.asc(), user_pii::field.asc()))
            .limit(i64::from(limit))
            .into_boxed();
        if let Some((user, field)) = after {
            // (user_id, field) > (user, field), with a plain lower bound on the index's first column.
            let user = user.as_uuid();
            query = query.filter(
                user_pii::user_id.ge(user).and(
                    user_pii::user_id
                        .gt(user)
                        .or(user_pii::field.gt(field.as_str())),
                ),
            );
        }
        let rows = query
            .load::<(Uuid, PiiRow)>(&mut conn)
            .await
            .map_err(query_error)?;
        rows.into_iter()
            .map(|(user, pii)| {
                let (field, sealed) = sealed_from_row(pii)?;
                Ok((UserId(user), field, sealed))
            })
            .collect()
    }

    async fn replace_pii(
        &self,
        user: UserId,
        field: PiiField,
        expected_key_id: &str,
        sealed: &Sealed,
    ) -> Result<bool, StoreError> {
        let mut conn = self.pool.get().await?;
        let replaced = diesel::update(
            user_pii::table.filter(
                user_pii::user_id
                    .eq(user.as_uuid())
                    .and(user_pii::field.eq(field.as_str()))
                    .and(user_pii::key_id.eq(expected_key_id)),
            ),
        )
        .set((
            user_pii::key_id.eq(sealed.key_id.as_str()),
            user_pii::nonce.eq(sealed.nonce.as_slice()),
            user_pii::ciphertext.eq(sealed.ciphertext.as_slice()),
        ))
        .execute(&mut conn)
        .await
        .map_err(query_error)?;
        Ok(replaced == 1)
    }
}

type TokenRow = (
    Vec<u8>,
    Uuid,
    Uuid,
    DateTime<Utc>,
    Option<DateTime<Utc>>,
    Option<DateTime<Utc>>,
);

fn stored_token(
    (token_hash, family_id, user_id, expires_at, used_at, revoked_at): TokenRow,
) -> Result<StoredRefreshToken, DieselError> {
    let token_hash = <[u8; 32]>::try_from(token_hash.as_slice()).map_err(|_| {
        DieselError::DeserializationError("refresh_tokens: token_hash is not 32 bytes".into())
    })?;
    Ok(StoredRefreshToken {
        record: RefreshRecord {
            token_hash,
            family_id,
            user_id: UserId(user_id),
            expires_at,
        },
        used_at,
        revoked_at,
    })
}

async fn insert_token(
    conn: &mut AsyncPgConnection,
    record: &RefreshRecord,
) -> Result<(), DieselError> {
    diesel::insert_into(refresh_tokens::table)
        .values((
            refresh_tokens::token_hash.eq(record.token_hash.as_slice()),
            refresh_tokens::family_id.eq(record.family_id),
            refresh_tokens::user_id.eq(record.user_id.as_uuid()),
            refresh_tokens::expires_at.eq(record.expires_at),
        ))
        .execute(conn)
        .await?;
    Ok(())
}

/// Revokes the not yet revoked tokens of a family on `conn`; returns how many.
async fn revoke_family_on(
    conn: &mut AsyncPgConnection,
    family_id: Uuid,
    now: DateTime<Utc>,
) -> Result<u64, DieselError> {
    let revoked = diesel::update(
        refresh_tokens::table.filter(
            refresh_tokens::family_id
                .eq(family_id)
                .and(refresh_tokens::revoked_at.is_null()),
        ),
    )
    .set(refresh_tokens::revoked_at.eq(Some(now)))
    .execute(conn)
    .await?;
    Ok(revoked as u64)
}

/// The rotation on `conn`, which must be inside a transaction (the row lock lasts until its end).
async fn rotate_on(
    conn: &mut AsyncPgConnection,
    presented_hash: &[u8; 32],
    next_hash: &[u8; 32],
    next_expires_at: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<RotateOutcome, DieselError> {
    let this_token = refresh_tokens::token_hash.eq(presented_hash.as_slice());
    let row: Option<TokenRow> = refresh_tokens::table
        .filter(this_token)
        .select((
            refresh_tokens::token_hash,
            refresh_tokens::family_id,
            refresh_tokens::user_id,
            refresh_tokens::expires_at,
            refresh_tokens::used_at,
            refresh_tokens::revoked_at,
        ))
        .for_update()
        .first(conn)
        .await
        .optional()?;
    let stored = row.map(stored_token).transpose()?;
    let decision = decide_rotation(stored.as_ref(), now);
    match decision {
        RotationDecision::Refuse(_) => {}
        RotationDecision::RevokeFamily { family_id, .. } => {
            revoke_family_on(conn, family_id, now).await?;
        }
        RotationDecision::Rotate { user_id, family_id } => {
            diesel::update(refresh_tokens::table.filter(this_token))
                .set(refresh_tokens::used_at.eq(Some(now)))
                .execute(conn)
                .await?;
            insert_token(
                conn,
                &RefreshRecord {
                    token_hash: *next_hash,
                    family_id,
                    user_id,
                    expires_at: next_expires_at,
                },
            )
            .await?;
        }
    }
    Ok(decision.outcome())
}

#[async_trait]
impl RefreshTokenStore for PgRefreshTokenStore {
    async fn issue(&self, record: &RefreshRecord) -> Result<(), StoreError> {
        let mut conn = self.pool.get().await?;
        insert_token(&mut conn, record).await.map_err(query_error)
    }

    async fn rotate(
        &self,
        presented_hash: &[u8; 32],
        next_hash: &[u8; 32],
        next_expires_at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<RotateOutcome, StoreError> {
        let mut conn = self.pool.get().await?;
        conn.transaction(async |conn| {
            rotate_on(conn, presented_hash, next_hash, next_expires_at, now).await
        })
        .await
        .map_err(query_error)
    }

    async fn revoke_family(&self, family_id: Uuid, now: DateTime<Utc>) -> Result<u64, StoreError> {
        let mut conn = self.pool.get().await?;
        revoke_family_on(&mut conn, family_id, now)
            .await
            .map_err(query_error)
    }

    async fn revoke_user(&self, user_id: UserId, now: DateTime<Utc>) -> Result<u64, StoreError> {
        let mut conn = self.pool.get().await?;
        let revoked = diesel::update(
            refresh_tokens::table.filter(
                refresh_tokens::user_id
                    .eq(user_id.as_uuid())
                    .and(refresh_tokens::revoked_at.is_null()),
            ),
        )
        .set(refresh_tokens::revoked_at.eq(Some(now)))
        .execute(&mut conn)
        .await
        .map_err(query_error)?;
        Ok(revoked as u64)
    }
}
