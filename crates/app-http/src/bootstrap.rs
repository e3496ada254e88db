//! The admin account created at start from `KEEL_BOOTSTRAP_ADMIN_EMAIL` / `_PASSWORD`.

use std::collections::BTreeMap;

use keel_domain::audit::{Actor, AuditEntry};
use keel_domain::identity::store::UserStoreError;
use keel_domain::identity::user::{NewUser, UserId};
use keel_domain::identity::values::{DisplayName, Email, Role, check_password_policy};

use crate::config::{ConfigError, Settings};
use crate::server::StartupError;
use crate::state::{Identity, Stores};

/// Creates the bootstrap admin if it is configured and absent. Several nodes starting at once
/// are safe: the unique email lets one create it and the others see it taken.
pub async fn ensure_admin(settings: &Settings, stores: &Stores) -> Result<(), StartupError> {
    let raw_email = settings.bootstrap.admin_email.trim();
    if raw_email.is_empty() {
        return Ok(());
    }
    let bad = |reason: String| {
        StartupError::Config(ConfigError {
            key: "KEEL_BOOTSTRAP_ADMIN_EMAIL".into(),
            reason,
        })
    };
    let email = Email::parse(raw_email).map_err(|e| bad(e.to_string()))?;
    if stores.users.find_by_email(&email).await?.is_some() {
        return Ok(());
    }
    let password = settings.bootstrap.admin_password.expose();
    check_password_policy(password).map_err(|e| {
        StartupError::Config(ConfigError {
            key: "KEEL_BOOTSTRAP_ADMIN_PASSWORD".into(),
            reason: e.to_string(),
        })
    })?;
    let identity = Identity::from_settings(settings)?;
    let hasher = identity.passwords.clone();
    let owned = password.clone();
    let password_hash = tokio::task::spawn_blocking(move || hasher.hash(&owned))
        .await
        .map_err(|e| StartupError::Io(std::io::Error::other(e)))?
        .map_err(|e| StartupError::Io(std::io::Error::other(e.to_string())))?;
    let id = UserId::new_random();
    let now = chrono::Utc::now();
    let user = NewUser {
        id,
        email,
        display_name: DisplayName::parse("Administrator").map_err(|e| bad(e.to_string()))?,
        role: Role::Admin,
        password_hash,
        pii: BTreeMap::new(),
        created_at: now,
    };
    match stores.users.create(&user).await {
        Ok(_) => {
            let entry = AuditEntry::new(
                Actor::system(),
                "user.bootstrap_admin_created",
                format!("user:{id}"),
                now,
            );
            stores.audit.append(entry).await?;
            tracing::info!(user_id = %id, "bootstrap admin created");
            Ok(())
        }
        Err(UserStoreError::EmailTaken) => Ok(()),
        Err(UserStoreError::Store(e)) => Err(e.into()),
    }
}
