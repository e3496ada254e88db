//! The built-in mail sender in memory: delivered mail lands in a per-process mailbox, listed by
//! recipient account (the address it was sent to is not kept).

use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use keel_domain::StoreError;
use keel_domain::identity::user::UserId;
use keel_domain::identity::values::Email;
use keel_domain::mail::{DeliveredMail, Mail, MailCursor, MailSender, Mailbox};

/// [`MailSender`] and [`Mailbox`] over one in-memory list. Clones share it.
#[derive(Debug, Clone, Default)]
pub struct MemoryMailbox {
    delivered: Arc<Mutex<Vec<DeliveredMail>>>,
}

impl MemoryMailbox {
    /// An empty mailbox.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, Vec<DeliveredMail>> {
        self.delivered.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[async_trait]
impl MailSender for MemoryMailbox {
    async fn send(&self, mail: &Mail, _to: &Email, now: DateTime<Utc>) -> Result<(), StoreError> {
        let mut delivered = self.lock();
        if delivered.iter().all(|d| d.mail.id != mail.id) {
            delivered.push(DeliveredMail {
                mail: mail.clone(),
                sent_at: now,
            });
        }
        Ok(())
    }
}

#[async_trait]
impl Mailbox for MemoryMailbox {
    async fn list(
        &self,
        user: UserId,
        cursor: Option<MailCursor>,
        limit: u32,
    ) -> Result<Vec<DeliveredMail>, StoreError> {
        let mut mails: Vec<DeliveredMail> = self
            .lock()
            .iter()
            .filter(|d| d.mail.user_id == user.as_uuid())
            .filter(|d| cursor.is_none_or(|c| (d.sent_at, d.mail.id) < c))
            .cloned()
            .collect();
        mails.sort_by_key(|d| std::cmp::Reverse((d.sent_at, d.mail.id)));
        mails.truncate(limit as usize);
        Ok(mails)
    }

    async fn forget(&self, user: UserId) -> Result<u64, StoreError> {
        let mut delivered = self.lock();
        let before = delivered.len();
        delivered.retain(|d| d.mail.user_id != user.as_uuid());
        Ok((before - delivered.len()) as u64)
    }
}
