//! The mails of a registration: a confirmation (the generic `mail.send` job) and a reminder
//! 24 h before the start (its own job kind, skipped when the registration is gone).

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};
use ring::digest::{SHA256, digest};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::store::CompetitionStore;
use super::values::{Competition, CompetitionId, RegistrationId};
use crate::Clock;
use crate::identity::store::UserStore;
use crate::identity::user::UserId;
use crate::jobs::{JobContext, JobFailure, JobHandler, JobKind, KindSettings};
use crate::mail::{Mail, MailSender, SendMail, deliver};

/// How long before the start the reminder is sent.
pub fn reminder_lead() -> Duration {
    Duration::hours(24)
}

/// The id of the mail with `purpose` about `registration`: the same inputs give the same id, so
/// a job that runs twice delivers once (a UUID shaped from SHA-256, version 8).
pub fn mail_id(registration: RegistrationId, purpose: &str) -> Uuid {
    let hash = digest(
        &SHA256,
        format!("keel.competitions:{purpose}:{registration}").as_bytes(),
    );
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(hash.as_ref().get(..16).unwrap_or(&[0u8; 16]));
    bytes[6] = (bytes[6] & 0x0f) | 0x80;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    Uuid::from_bytes(bytes)
}

/// The confirmation mail of a registration.
pub fn confirmation_mail(
    registration: RegistrationId,
    user: UserId,
    competition: &Competition,
) -> Mail {
    Mail {
        id: mail_id(registration, "confirmation"),
        user_id: user.as_uuid(),
        subject: format!("You are registered for {}", competition.title),
        body: format!(
            "Your seat in \"{}\" is confirmed (registration {registration}). It starts at {}.",
            competition.title,
            competition.starts_at.to_rfc3339()
        ),
    }
}

/// The reminder mail of a registration.
pub fn reminder_mail(job: &SendReminder) -> Mail {
    Mail {
        id: mail_id(job.registration_id, "reminder"),
        user_id: job.user_id,
        subject: format!("Reminder: {} starts soon", job.title),
        body: format!(
            "\"{}\" starts at {}. See you there!",
            job.title,
            job.starts_at.to_rfc3339()
        ),
    }
}

/// The `competitions.reminder` job: reminds one registrant, unique per registration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SendReminder {
    /// The registration reminded of.
    pub registration_id: RegistrationId,
    /// Its competition.
    pub competition_id: CompetitionId,
    /// The registrant's account id (the address is looked up when the reminder is sent).
    pub user_id: Uuid,
    /// The competition's title.
    pub title: String,
    /// The competition's start.
    pub starts_at: DateTime<Utc>,
}

impl SendReminder {
    /// When the reminder is due: [`reminder_lead`] before the start, or `now` if that is past.
    pub fn run_at(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        (self.starts_at - reminder_lead()).max(now)
    }
}

impl JobKind for SendReminder {
    const KIND: &'static str = "competitions.reminder";

    /// A reminder is a mail: it retries like `mail.send`.
    fn settings() -> KindSettings {
        SendMail::settings()
    }

    fn unique_key(&self) -> Option<String> {
        Some(self.registration_id.to_string())
    }
}

/// Runs [`SendReminder`]: delivers the reminder while the registration exists, else does nothing
/// (a withdrawal also deletes the pending job; this check covers a job already claimed).
#[derive(Clone)]
pub struct SendReminderHandler {
    store: Arc<dyn CompetitionStore>,
    users: Arc<dyn UserStore>,
    sender: Arc<dyn MailSender>,
    clock: Arc<dyn Clock>,
}

impl SendReminderHandler {
    /// A handler checking registrations in `store` and delivering through `sender` to the
    /// addresses of `users`.
    pub fn new(
        store: Arc<dyn CompetitionStore>,
        users: Arc<dyn UserStore>,
        sender: Arc<dyn MailSender>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            store,
            users,
            sender,
            clock,
        }
    }
}

#[async_trait]
impl JobHandler<SendReminder> for SendReminderHandler {
    async fn run(&self, _ctx: &JobContext, job: SendReminder) -> Result<(), JobFailure> {
        let current = self.store.registration(job.registration_id).await?;
        let still_registered = current.is_some_and(|r| {
            r.user_id == Some(UserId(job.user_id)) && r.competition_id == job.competition_id
        });
        if !still_registered {
            return Ok(());
        }
        deliver(
            &*self.users,
            &*self.sender,
            &reminder_mail(&job),
            self.clock.now(),
        )
        .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SystemClock;
    use crate::competitions::MockCompetitionStore;
    use crate::competitions::values::Registration;
    use crate::jobs::JobId;
    use crate::mail::fixtures::{Outbox, one_user};

    fn job() -> SendReminder {
        SendReminder {
            registration_id: RegistrationId(Uuid::new_v4()),
            competition_id: CompetitionId(Uuid::new_v4()),
            user_id: Uuid::new_v4(),
            title: "Open".into(),
            starts_at: Utc::now() + Duration::days(3),
        }
    }

    fn ctx() -> JobContext {
        JobContext {
            id: JobId(Uuid::nil()),
            attempt: 1,
            max_attempts: 4,
            created_at: Utc::now(),
        }
    }

    #[test]
    fn mail_ids_are_deterministic_per_registration_and_purpose() {
        let r = RegistrationId(Uuid::new_v4());
        assert_eq!(mail_id(r, "reminder"), mail_id(r, "reminder"));
        assert_ne!(mail_id(r, "reminder"), mail_id(r, "confirmation"));
        assert_ne!(
            mail_id(r, "reminder"),
            mail_id(RegistrationId(Uuid::new_v4()), "reminder")
        );
    }

    #[test]
    fn reminders_run_a_day_before_the_start_or_now() {
        let j = job();
        let now = Utc::now();
        assert_eq!(j.run_at(now), j.starts_at - Duration::hours(24));
        assert_eq!(j.run_at(j.starts_at), j.starts_at);
        assert_eq!(j.unique_key(), Some(j.registration_id.to_string()));
    }

    #[test]
    fn the_reminder_is_sent_only_while_the_registration_exists() {
        let j = job();
        let existing = Registration {
            id: j.registration_id,
            competition_id: j.competition_id,
            user_id: Some(UserId(j.user_id)),
            registered_at: Utc::now(),
        };
        let mut store = MockCompetitionStore::new();
        let mut answers = vec![None, Some(existing)];
        store
            .expect_registration()
            .times(2)
            .returning(move |_| Ok(answers.pop().flatten()));
        let outbox = Arc::new(Outbox::default());
        let handler = SendReminderHandler::new(
            Arc::new(store),
            Arc::new(one_user(j.user_id, "a@b.test")),
            outbox.clone(),
            Arc::new(SystemClock),
        );
        futures_executor::block_on(async {
            assert!(handler.run(&ctx(), j.clone()).await.is_ok());
            assert!(handler.run(&ctx(), j.clone()).await.is_ok());
        });
        assert_eq!(outbox.sent(), [(reminder_mail(&j), "a@b.test".to_owned())]);
    }
}
