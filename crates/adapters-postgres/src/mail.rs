//! The mailbox in Postgres: keel's built-in [`MailSender`] stores each message in `mailbox`,
//! where its recipient reads it ([`Mailbox`]).
//!
//! A message's id is the row's primary key, so delivering it twice (mail jobs run at least once)
//! stores it once. Rows are listed by recipient account and go with it (`ON DELETE CASCADE`);
//! the address a message was sent to is not stored (it is personal data, and the account has it).
//!
//! Concurrent sends (a node's job workers) are group-committed ([`crate::group`]): one
//! multi-row insert per group. A group the database refuses (one recipient deleted meanwhile) is
//! stored one message at a time, so only that message fails.

use std::sync::Arc;

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
use crate::group::{GroupStats, GroupWork, Grouper};
use crate::schema::mailbox::{self as mailbox_table, dsl};

/// [`MailSender`] and [`Mailbox`] on Postgres.
#[derive(Debug, Clone)]
pub struct PgMailbox {
    pool: PgPool,
    sends: Arc<Grouper<Sends>>,
}

impl PgMailbox {
    /// A mailbox on the database behind `pool`.
    pub fn new(pool: PgPool) -> Self {
        Self {
            sends: Arc::new(Grouper::new(Sends { pool: pool.clone() })),
            pool,
        }
    }

    /// The group commit of sends so far: groups run, messages stored in them, largest group.
    pub fn send_stats(&self) -> GroupStats {
        self.sends.stats()
    }
}

/// One message to store, and when it was sent.
type Outgoing = (Mail, DateTime<Utc>);

/// Stores messages in groups.
struct Sends {
    pool: PgPool,
}

/// Stores `sends` in one statement; a message already stored (the same id) is kept as it was.
async fn store(pool: &PgPool, sends: &[Outgoing]) -> Result<(), StoreError> {
    let rows: Vec<_> = sends
        .iter()
        .map(|(mail, now)| {
            (
                dsl::id.eq(mail.id),
                dsl::user_id.eq(mail.user_id),
                dsl::subject.eq(&mail.subject),
                dsl::body.eq(&mail.body),
                dsl::sent_at.eq(*now),
            )
        })
        .collect();
    let mut conn = pool.get().await?;
    diesel::insert_into(mailbox_table::table)
        .values(rows)
        .on_conflict(dsl::id)
        .do_nothing()
        .execute(&mut conn)
        .await
        .map_err(query_error)?;
    Ok(())
}

#[async_trait]
impl GroupWork for Sends {
    type Item = Outgoing;
    type Output = ();
    const MAX_GROUP: usize = 64;
    const MAX_IN_FLIGHT: usize = 1;
    const NAME: &'static str = "the mailbox inserts";

    async fn run(&self, sends: &[Outgoing]) -> Vec<Result<(), StoreError>> {
        match store(&self.pool, sends).await {
            Ok(()) => sends.iter().map(|_| Ok(())).collect(),
            Err(e) if sends.len() == 1 => vec![Err(e)],
            Err(_) => {
                let mut outcomes = Vec::with_capacity(sends.len());
                for send in sends {
                    outcomes.push(store(&self.pool, std::slice::from_ref(send)).await);
                }
                outcomes
            }
        }
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
        self.sends.call((mail.clone(), now)).await
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
