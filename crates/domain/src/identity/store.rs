//! The `UserStore` port.

use async_trait::async_trait;

use super::user::{NewUser, User, UserId};
use super::values::{Email, Role};
use crate::StoreError;
use crate::pii::{PiiField, Sealed};

/// Why a user could not be created.
#[derive(Debug, thiserror::Error)]
pub enum UserStoreError {
    /// Another user already has this (normalised) email address.
    #[error("email address is already registered")]
    EmailTaken,
    /// The storage failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Durable record of user accounts and their sealed personal data.
///
/// Email addresses are unique: of any number of concurrent creates with one address, exactly one
/// succeeds and the others get [`UserStoreError::EmailTaken`]. A user and its personal data are
/// written together or not at all.
///
/// Sealed values are listed for key rotation in **(user id, field name) order**: user ids by
/// their UUID bytes (Postgres' `uuid` order), then fields by the byte order of
/// [`PiiField::as_str`] (`address` < `date_of_birth` < `national_id` < `phone`; the names start
/// with distinct letters, so every collation agrees). This is not the declaration order of
/// [`PiiField`].
#[cfg_attr(test, mockall::automock)]
#[async_trait]
pub trait UserStore: Send + Sync {
    /// Stores a new user with its personal data, atomically; returns it as stored.
    async fn create(&self, user: &NewUser) -> Result<User, UserStoreError>;

    /// The user with this email address, if any.
    async fn find_by_email(&self, email: &Email) -> Result<Option<User>, StoreError>;

    /// The user with this id, if any.
    async fn find_by_id(&self, id: UserId) -> Result<Option<User>, StoreError>;

    /// The stored role and email address of the user with this id, if any: what every
    /// state-changing request checks and what a mail is sent to, so adapters answer it with one
    /// read and without the sealed personal data.
    async fn role_and_email(&self, id: UserId) -> Result<Option<(Role, Email)>, StoreError> {
        Ok(self
            .find_by_id(id)
            .await?
            .map(|user| (user.role, user.email)))
    }

    /// Sets a user's role; returns the role before and after, or `None` when there is no such user.
    async fn set_role(&self, id: UserId, role: Role) -> Result<Option<(Role, Role)>, StoreError>;

    /// Removes a user with its personal data and refresh tokens; returns whether it existed.
    async fn delete(&self, id: UserId) -> Result<bool, StoreError>;

    /// Up to `limit` sealed values whose key id is not `active_key_id`, in (user id, field name)
    /// order (see the trait docs), strictly after the cursor `after` when given: one page of a
    /// keyset scan. Pass the last entry of a page as `after` to get the next one.
    async fn pii_not_under_key(
        &self,
        active_key_id: &str,
        after: Option<(UserId, PiiField)>,
        limit: u32,
    ) -> Result<Vec<(UserId, PiiField, Sealed)>, StoreError>;

    /// Replaces the sealed value of `field` of `user` with `sealed`, but only while the stored
    /// value is still sealed under `expected_key_id`; returns whether it was replaced.
    ///
    /// `false` means the value is gone or was changed meanwhile (another rotator, or the user
    /// updating it): the newer value is kept.
    async fn replace_pii(
        &self,
        user: UserId,
        field: PiiField,
        expected_key_id: &str,
        sealed: &Sealed,
    ) -> Result<bool, StoreError>;
}
