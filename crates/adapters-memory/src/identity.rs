//! In-memory users and refresh tokens.
//!
//! Both stores share one lock over one state (like the tables of one database), so deleting a
//! user removes its refresh tokens and a token can only be issued to an existing user. Build the
//! token store from the user store with [`MemoryRefreshTokenStore::new`].
//!
//! Sealed values are listed for key rotation in the port's order: user id (UUID bytes, as
//! Postgres orders `uuid`), then field *name* ([`PiiField::as_str`], as Postgres orders the
//! `text` column), not [`PiiField`]'s declaration order.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use keel_domain::StoreError;
use keel_domain::identity::refresh::{
    RefreshRecord, RefreshTokenStore, RotateOutcome, RotationDecision, StoredRefreshToken,
    decide_rotation,
};
use keel_domain::identity::store::{UserStore, UserStoreError};
use keel_domain::identity::user::{NewUser, User, UserId};
use keel_domain::identity::values::{Email, Role};
use keel_domain::pii::{PiiField, Sealed};
use uuid::Uuid;

#[derive(Debug, Default)]
struct State {
    users: HashMap<UserId, User>,
    by_email: HashMap<Email, UserId>,
    tokens: HashMap<[u8; 32], StoredRefreshToken>,
}

#[derive(Debug, Default, Clone)]
struct Shared(Arc<Mutex<State>>);

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // Every update below completes before the guard is dropped and none can panic half-way,
        // so the state is consistent after poisoning.
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// [`UserStore`] kept in process memory.
#[derive(Debug, Default, Clone)]
pub struct MemoryUserStore {
    state: Shared,
}

impl MemoryUserStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of users held.
    pub fn len(&self) -> usize {
        self.state.lock().users.len()
    }

    /// Whether the store holds no user.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[async_trait]
impl UserStore for MemoryUserStore {
    async fn create(&self, user: &NewUser) -> Result<User, UserStoreError> {
        let mut state = self.state.lock();
        if state.by_email.contains_key(&user.email) {
            return Err(UserStoreError::EmailTaken);
        }
        if state.users.contains_key(&user.id) {
            return Err(StoreError::Conflict(format!("user {} already exists", user.id)).into());
        }
        let stored = user.clone().into_user();
        state.by_email.insert(user.email.clone(), user.id);
        state.users.insert(user.id, stored.clone());
        Ok(stored)
    }

    async fn find_by_email(&self, email: &Email) -> Result<Option<User>, StoreError> {
        let state = self.state.lock();
        Ok(state
            .by_email
            .get(email)
            .and_then(|id| state.users.get(id))
            .cloned())
    }

    async fn find_by_id(&self, id: UserId) -> Result<Option<User>, StoreError> {
        Ok(self.state.lock().users.get(&id).cloned())
    }

    async fn set_role(&self, id: UserId, role: Role) -> Result<Option<(Role, Role)>, StoreError> {
        let mut state = self.state.lock();
        Ok(state.users.get_mut(&id).map(|user| {
            let before = user.role;
            user.role = role;
            (before, role)
        }))
    }

    async fn delete(&self, id: UserId) -> Result<bool, StoreError> {
        let mut state = self.state.lock();
        let Some(user) = state.users.remove(&id) else {
            return Ok(false);
        };
        state.by_email.remove(&user.email);
        state.tokens.retain(|_, token| token.record.user_id != id);
        Ok(true)
    }

    async fn pii_not_under_key(
        &self,
        active_key_id: &str,
        after: Option<(UserId, PiiField)>,
        limit: u32,
    ) -> Result<Vec<(UserId, PiiField, Sealed)>, StoreError> {
        let after = after.map(|(user, field)| (user, field.as_str()));
        let state = self.state.lock();
        let mut found: Vec<(UserId, PiiField, &Sealed)> = state
            .users
            .values()
            .flat_map(|user| {
                user.pii
                    .iter()
                    .map(move |(field, sealed)| (user.id, *field, sealed))
            })
            .filter(|(user, field, sealed)| {
                sealed.key_id != active_key_id
                    && after.is_none_or(|after| (*user, field.as_str()) > after)
            })
            .collect();
        found.sort_unstable_by_key(|(user, field, _)| (*user, field.as_str()));
        Ok(found
            .into_iter()
            .take(usize::try_from(limit).unwrap_or(usize::MAX))
            .map(|(user, field, sealed)| (user, field, sealed.clone()))
            .collect())
    }

    async fn replace_pii(
        &self,
        user: UserId,
        field: PiiField,
        expected_key_id: &str,
        sealed: &Sealed,
    ) -> Result<bool, StoreError> {
        let mut state = self.state.lock();
        let stored = state
            .users
            .get_mut(&user)
            .and_then(|user| user.pii.get_mut(&field))
            .filter(|stored| stored.key_id == expected_key_id);
        Ok(match stored {
            Some(stored) => {
                *stored = sealed.clone();
                true
            }
            None => false,
        })
    }
}

/// [`RefreshTokenStore`] kept in process memory, beside the users of a [`MemoryUserStore`].
#[derive(Debug, Clone)]
pub struct MemoryRefreshTokenStore {
    state: Shared,
}

impl MemoryRefreshTokenStore {
    /// A token store for the users of `users` (it shares their state).
    pub fn new(users: &MemoryUserStore) -> Self {
        Self {
            state: users.state.clone(),
        }
    }

    /// Number of tokens held, used and revoked ones included.
    pub fn len(&self) -> usize {
        self.state.lock().tokens.len()
    }

    /// Whether the store holds no token.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn revoke_where(&self, now: DateTime<Utc>, matches: impl Fn(&RefreshRecord) -> bool) -> u64 {
        let mut state = self.state.lock();
        let mut revoked = 0;
        for token in state.tokens.values_mut() {
            if token.revoked_at.is_none() && matches(&token.record) {
                token.revoked_at = Some(now);
                revoked += 1;
            }
        }
        revoked
    }
}

fn insert_token(state: &mut State, record: &RefreshRecord) -> Result<(), StoreError> {
    if !state.users.contains_key(&record.user_id) {
        return Err(StoreError::Conflict(format!(
            "refresh token for unknown user {}",
            record.user_id
        )));
    }
    if state.tokens.contains_key(&record.token_hash) {
        return Err(StoreError::Conflict(
            "refresh token hash already stored".into(),
        ));
    }
    state.tokens.insert(
        record.token_hash,
        StoredRefreshToken {
            record: record.clone(),
            used_at: None,
            revoked_at: None,
        },
    );
    Ok(())
}

#[async_trait]
impl RefreshTokenStore for MemoryRefreshTokenStore {
    async fn issue(&self, record: &RefreshRecord) -> Result<(), StoreError> {
        insert_token(&mut self.state.lock(), record)
    }

    async fn rotate(
        &self,
        presented_hash: &[u8; 32],
        next_hash: &[u8; 32],
        next_expires_at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<RotateOutcome, StoreError> {
        let mut state = self.state.lock();
        let decision = decide_rotation(state.tokens.get(presented_hash), now);
        match decision {
            RotationDecision::Refuse(_) => {}
            RotationDecision::RevokeFamily { family_id, .. } => {
                for token in state.tokens.values_mut() {
                    if token.record.family_id == family_id && token.revoked_at.is_none() {
                        token.revoked_at = Some(now);
                    }
                }
            }
            RotationDecision::Rotate { user_id, family_id } => {
                // Insert first: a failure (duplicate next hash) leaves the presented token unused.
                insert_token(
                    &mut state,
                    &RefreshRecord {
                        token_hash: *next_hash,
                        family_id,
                        user_id,
                        expires_at: next_expires_at,
                    },
                )?;
                if let Some(token) = state.tokens.get_mut(presented_hash) {
                    token.used_at = Some(now);
                }
            }
        }
        Ok(decision.outcome())
    }

    async fn revoke_family(&self, family_id: Uuid, now: DateTime<Utc>) -> Result<u64, StoreError> {
        Ok(self.revoke_where(now, |r| r.family_id == family_id))
    }

    async fn revoke_user(&self, user_id: UserId, now: DateTime<Utc>) -> Result<u64, StoreError> {
        Ok(self.revoke_where(now, |r| r.user_id == user_id))
    }
}

#[cfg(test)]
mod tests {
    use keel_domain::testkit::identity_stores;

    use super::*;

    #[tokio::test]
    async fn keeps_the_user_store_contract() {
        identity_stores::run_user_store(&MemoryUserStore::new()).await;
    }

    #[tokio::test]
    async fn keeps_the_refresh_token_store_contract() {
        let users = MemoryUserStore::new();
        identity_stores::run_refresh_store(&MemoryRefreshTokenStore::new(&users), &users).await;
    }

    #[tokio::test]
    async fn suites_share_one_store() {
        let users = MemoryUserStore::new();
        let tokens = MemoryRefreshTokenStore::new(&users);
        tokio::join!(
            identity_stores::run_user_store(&users),
            identity_stores::run_refresh_store(&tokens, &users),
            identity_stores::run_refresh_store(&tokens, &users),
        );
        assert!(!users.is_empty());
        assert!(!tokens.is_empty());
    }
}
