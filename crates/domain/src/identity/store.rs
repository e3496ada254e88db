//! The `UserStore` port.

use async_trait::async_trait;

use super::user::{NewUser, User, UserId};
use super::values::{Email, Role};
use crate::StoreError;

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
#[cfg_attr(test, mockall::automock)]
#[async_trait]
pub trait UserStore: Send + Sync {
    /// Stores a new user with its personal data, atomically; returns it as stored.
    async fn create(&self, user: &NewUser) -> Result<User, UserStoreError>;

    /// The user with this email address, if any.
    async fn find_by_email(&self, email: &Email) -> Result<Option<User>, StoreError>;

    /// The user with this id, if any.
    async fn find_by_id(&self, id: UserId) -> Result<Option<User>, StoreError>;

    /// Sets a user's role; returns the role before and after, or `None` when there is no such user.
    async fn set_role(&self, id: UserId, role: Role) -> Result<Option<(Role, Role)>, StoreError>;

    /// Removes a user with its personal data and refresh tokens; returns whether it existed.
    async fn delete(&self, id: UserId) -> Result<bool, StoreError>;
}
