//! Outgoing mail: the `MailSender` port, the `Mailbox` that lists what was delivered, and the
//! `mail.send` job that delivers through the queue with retries.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::identity::user::UserId;
use crate::jobs::{Backoff, JobContext, JobFailure, JobHandler, JobKind, KindSettings};
use crate::{Clock, StoreError};

/// A message to deliver to one user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mail {
    /// Identity of the message: delivering the same id twice stores it once.
    pub id: Uuid,
    /// Recipient account.
    pub user_id: Uuid,
    /// Recipient address.
    pub to: String,
    /// Subject line.
    pub subject: String,
    /// Plain-text body.
    pub body: String,
}

/// A delivered message, as the recipient's mailbox lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveredMail {
    /// The message.
    pub mail: Mail,
    /// When it was delivered.
    pub sent_at: DateTime<Utc>,
}

/// Position after a mailbox page's last item (newest first).
pub type MailCursor = (DateTime<Utc>, Uuid);

/// Delivers mail. keel's built-in sender writes to a mailbox table that users read over HTTP;
/// an SMTP or API sender implements the same port.
#[cfg_attr(test, mockall::automock)]
#[async_trait]
pub trait MailSender: Send + Sync {
    /// Delivers `mail`; delivering the same `mail.id` again is a no-op (jobs run at least once).
    async fn send(&self, mail: &Mail, now: DateTime<Utc>) -> Result<(), StoreError>;
}

/// Reads the mail delivered to a user.
#[async_trait]
pub trait Mailbox: Send + Sync {
    /// Up to `limit` messages for `user`, newest first, after `cursor`.
    async fn list(
        &self,
        user: UserId,
        cursor: Option<MailCursor>,
        limit: u32,
    ) -> Result<Vec<DeliveredMail>, StoreError>;

    /// Deletes every message of `user` (the account was deleted); returns how many.
    async fn forget(&self, user: UserId) -> Result<u64, StoreError>;
}

/// The `mail.send` job: delivers one [`Mail`], retrying 2 s / 4 s / 8 s, then dead.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SendMail(pub Mail);

impl JobKind for SendMail {
    const KIND: &'static str = "mail.send";

    fn settings() -> KindSettings {
        KindSettings {
            max_attempts: 4,
            backoff: Backoff::seconds(&[2, 4, 8]),
            ..KindSettings::default()
        }
    }

    fn unique_key(&self) -> Option<String> {
        Some(self.0.id.to_string())
    }
}

/// Runs [`SendMail`] jobs through a [`MailSender`].
#[derive(Clone)]
pub struct SendMailHandler {
    sender: Arc<dyn MailSender>,
    clock: Arc<dyn Clock>,
}

impl SendMailHandler {
    /// A handler delivering through `sender`.
    pub fn new(sender: Arc<dyn MailSender>, clock: Arc<dyn Clock>) -> Self {
        Self { sender, clock }
    }
}

#[async_trait]
impl JobHandler<SendMail> for SendMailHandler {
    async fn run(&self, _ctx: &JobContext, job: SendMail) -> Result<(), JobFailure> {
        self.sender.send(&job.0, self.clock.now()).await?;
        Ok(())
    }
}
