//! Outgoing mail: the `MailSender` port, the `Mailbox` that lists what was delivered, and the
//! `mail.send` job that delivers through the queue with retries.
//!
//! A [`Mail`] names its recipient by account id, never by address: the address is personal data,
//! so it is looked up when the mail is sent ([`deliver`]) instead of sitting in job payloads and
//! stored messages, and an account deleted before its mail went out gets none.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::identity::store::UserStore;
use crate::identity::user::UserId;
use crate::identity::values::Email;
use crate::jobs::{Backoff, JobContext, JobFailure, JobHandler, JobKind, KindSettings};
use crate::{Clock, StoreError};

/// A message to deliver to one user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mail {
    /// Identity of the message: delivering the same id twice stores it once.
    pub id: Uuid,
    /// Recipient account (its address is looked up at send time).
    pub user_id: Uuid,
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
    /// Delivers `mail` to `to`, its recipient's current address; delivering the same `mail.id`
    /// again is a no-op (jobs run at least once). A sender that stores what it sent should not
    /// keep `to` in the clear.
    async fn send(&self, mail: &Mail, to: &Email, now: DateTime<Utc>) -> Result<(), StoreError>;
}

/// Whether [`deliver`] sent the mail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// Sent to the recipient's current address.
    Sent,
    /// Not sent: the recipient's account no longer exists.
    NoRecipient,
}

/// Sends `mail` to the current address of its recipient, read from `users` (one read, no sealed
/// data); a deleted account gets nothing.
pub async fn deliver(
    users: &dyn UserStore,
    sender: &dyn MailSender,
    mail: &Mail,
    now: DateTime<Utc>,
) -> Result<Delivery, StoreError> {
    let Some((_, to)) = users.role_and_email(UserId(mail.user_id)).await? else {
        return Ok(Delivery::NoRecipient);
    };
    sender.send(mail, &to, now).await?;
    Ok(Delivery::Sent)
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

/// Runs [`SendMail`] jobs: [`deliver`] through a [`MailSender`] to addresses read from a
/// [`UserStore`].
#[derive(Clone)]
pub struct SendMailHandler {
    users: Arc<dyn UserStore>,
    sender: Arc<dyn MailSender>,
    clock: Arc<dyn Clock>,
}

impl SendMailHandler {
    /// A handler delivering through `sender` to the addresses of `users`.
    pub fn new(
        users: Arc<dyn UserStore>,
        sender: Arc<dyn MailSender>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            users,
            sender,
            clock,
        }
    }
}

#[async_trait]
impl JobHandler<SendMail> for SendMailHandler {
    async fn run(&self, _ctx: &JobContext, job: SendMail) -> Result<(), JobFailure> {
        deliver(&*self.users, &*self.sender, &job.0, self.clock.now()).await?;
        Ok(())
    }
}

/// Fixtures shared by the tests of mail jobs.
#[cfg(test)]
pub(crate) mod fixtures {
    use std::sync::Mutex;

    use super::*;
    use crate::identity::store::MockUserStore;
    use crate::identity::values::Role;

    /// A [`MailSender`] that records what it sends, with the address it was given.
    #[derive(Default)]
    pub(crate) struct Outbox(pub Mutex<Vec<(Mail, String)>>);

    impl Outbox {
        /// What was sent so far.
        pub(crate) fn sent(&self) -> Vec<(Mail, String)> {
            self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
        }
    }

    #[async_trait]
    impl MailSender for Outbox {
        async fn send(
            &self,
            mail: &Mail,
            to: &Email,
            _now: DateTime<Utc>,
        ) -> Result<(), StoreError> {
            self.0
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push((mail.clone(), to.as_str().to_owned()));
            Ok(())
        }
    }

    /// Users where only `user` exists, with address `email`.
    pub(crate) fn one_user(user: Uuid, email: &'static str) -> MockUserStore {
        let mut users = MockUserStore::new();
        users.expect_role_and_email().returning(move |id| {
            Ok((id.as_uuid() == user)
                .then(|| (Role::Participant, Email::parse(email).expect("email"))))
        });
        users
    }
}

#[cfg(test)]
mod tests {
    use super::fixtures::{Outbox, one_user};
    use super::*;
    use crate::SystemClock;
    use crate::jobs::JobId;

    fn mail_to(user: Uuid) -> Mail {
        Mail {
            id: Uuid::new_v4(),
            user_id: user,
            subject: "Hello".into(),
            body: "Body".into(),
        }
    }

    #[test]
    fn mail_jobs_carry_no_address() {
        let job = SendMail(mail_to(Uuid::new_v4()));
        let payload = serde_json::to_value(&job).expect("json");
        let keys: Vec<&String> = payload.as_object().expect("object").keys().collect();
        assert_eq!(keys, ["body", "id", "subject", "user_id"]);
    }

    #[test]
    fn mail_goes_to_the_current_address_and_not_to_a_deleted_account() {
        let user = Uuid::new_v4();
        let outbox = Arc::new(Outbox::default());
        let handler = SendMailHandler::new(
            Arc::new(one_user(user, "Reader@Example.com")),
            outbox.clone(),
            Arc::new(SystemClock),
        );
        let ctx = JobContext {
            id: JobId(Uuid::nil()),
            attempt: 1,
            max_attempts: 4,
            created_at: Utc::now(),
        };
        let (kept, gone) = (mail_to(user), mail_to(Uuid::new_v4()));
        futures_executor::block_on(async {
            assert!(handler.run(&ctx, SendMail(kept.clone())).await.is_ok());
            assert!(handler.run(&ctx, SendMail(gone)).await.is_ok());
        });
        assert_eq!(outbox.sent(), [(kept, "reader@example.com".to_owned())]);
    }
}
