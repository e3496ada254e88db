//! The mailbox in Postgres: keel's built-in [`MailSender`] stores each message in `mailbox`,
//! where its recipient reads it ([`Mailbox`]).
//!
//! A message's id is the row's primary key, so delivering it twice (mail jobs run at least once)
//! stores it once. Rows are listed by recipient account and go with it (`ON DELETE CASCADE`);
//! the address a message was sent to is not stored (it is personal data, and the account has it).

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use keel_domain::StoreError;
use keel_domain::identity::user::UserId;
use keel_domain::identity::values::Email;
use keel_domain::mail::{DeliveredMail, Mail, MailCursor, MailSender, Mailbox};
use uuid::Uuid;

use crate::PgPool;
use crate::error::query_error;
use crate::schema::mailbox::{self as mailbox_table, dsl};

/// [`MailSender`] and [`Mailbox`] on Postgres.
#[derive(Debug, Clone)]
pub struct PgMailbox {
    pool: PgPool,
}

impl PgMailbox {
    /// A mailbox on the database behind `pool`.
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }
}

#[derive(Queryable, Selectable)]
#[diesel(table_name = mailbox_table)]
#[diesel(check_for_backend(diesel::pg::Pg))]
struct Row {
    id: Uuid,
    user_id: Uuid,
    subject: String,
    body: String,
    sent_at: DateTime<Utc>,
}

impl From<Row> for DeliveredMail {
    fn from(row: Row) -> Self {
        Self {
            mail: Mail {
                id: row.id,
                user_id: row.user_id,
                subject: row.subject,
                body: row.body,
            },
            sent_at: row.sent_at,
        }
    }
}

#[async_trait]
impl MailSender for PgMailbox {
    async fn send(&self, mail: &Mail, _to: &Email, now: DateTime<Utc>) -> Result<(), StoreError> {
        let mut conn = self.pool.get().await?;
        diesel::insert_into(mailbox_table::table)
            .values((
                dsl::id.eq(mail.id),
                dsl::user_id.eq(mail.user_id),
                dsl::subject.eq(&mail.subject),
                dsl::body.eq(&mail.body),
                dsl::sent_at.eq(now),
            ))
            .on_conflict(dsl::id)
            .do_nothing()
            .execute(&mut conn)
            .await
            .map_err(query_error)?;
        Ok(())
    }
}

#[async_trait]
impl Mailbox for PgMailbox {
    async fn list(
        &self,
        user: UserId,
        cursor: Option<MailCursor>,
        limit: u32,
    ) -> Result<Vec<DeliveredMail>, StoreError> {
        let mut conn = self.pool.get().await?;
        let mut query = mailbox_table::table
            .filter(dsl::user_id.eq(user.0))
            .select(Row::as_select())
            .order((dsl::sent_at.desc(), dsl::id.desc()))
            .limit(i64::from(limit))
            .into_boxed();
        if let Some((sent_at, id)) = cursor {
            query = query.filter(
                dsl::sent_at
                    .lt(sent_at)
                    .or(dsl::sent_at.eq(sent_at).and(dsl::id.lt(id))),
            );
        }
        let rows: Vec<Row> = query.load(&mut conn).await.map_err(query_error)?;
        Ok(rows.into_iter().map(DeliveredMail::from).collect())
    }

    async fn forget(&self, user: UserId) -> Result<u64, StoreError> {
        let mut conn = self.pool.get().await?;
        let deleted = diesel::delete(mailbox_table::table.filter(dsl::user_id.eq(user.0)))
            .execute(&mut conn)
            .await
            .map_err(query_error)?;
        Ok(deleted as u64)
    }
}
