//! A user account as stored.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::values::{DisplayName, Email, Role};
use crate::pii::{PiiField, Sealed};

/// Identifies a user account (serialized as its bare UUID).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(transparent)]
pub struct UserId(pub Uuid);

impl UserId {
    /// A fresh random id.
    pub fn new_random() -> Self {
        Self(Uuid::new_v4())
    }

    /// The underlying UUID.
    pub const fn as_uuid(self) -> Uuid {
        self.0
    }
}

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl FromStr for UserId {
    type Err = uuid::Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Uuid::parse_str(s).map(UserId)
    }
}

impl From<Uuid> for UserId {
    fn from(id: Uuid) -> Self {
        Self(id)
    }
}

/// A stored user account.
///
/// Personal data is held sealed only ([`Sealed`], one value per [`PiiField`] the user gave);
/// opening it is the job of a use case with a cipher. `Debug` never prints the password hash.
#[derive(Clone, PartialEq, Eq)]
pub struct User {
    /// The account's id.
    pub id: UserId,
    /// Login and contact address, unique among users.
    pub email: Email,
    /// Public name.
    pub display_name: DisplayName,
    /// What the user may do.
    pub role: Role,
    /// Argon2id PHC string of the password.
    pub password_hash: String,
    /// Sealed personal data, by field.
    pub pii: BTreeMap<PiiField, Sealed>,
    /// When the account was created.
    pub created_at: DateTime<Utc>,
}

impl fmt::Debug for User {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("User")
            .field("id", &self.id)
            .field("email", &self.email)
            .field("display_name", &self.display_name)
            .field("role", &self.role)
            .field("password_hash", &"<redacted>")
            .field("pii_fields", &self.pii.keys().collect::<Vec<_>>())
            .field("created_at", &self.created_at)
            .finish()
    }
}

/// A user account to create (see [`super::store::UserStore::create`]).
#[derive(Clone, PartialEq, Eq)]
pub struct NewUser {
    /// The new account's id, chosen by the caller.
    pub id: UserId,
    /// Login address; must not belong to another user.
    pub email: Email,
    /// Public name.
    pub display_name: DisplayName,
    /// Initial role.
    pub role: Role,
    /// Argon2id PHC string of the password.
    pub password_hash: String,
    /// Sealed personal data, by field.
    pub pii: BTreeMap<PiiField, Sealed>,
    /// Creation time.
    pub created_at: DateTime<Utc>,
}

impl NewUser {
    /// The user this becomes once stored as given.
    pub fn into_user(self) -> User {
        User {
            id: self.id,
            email: self.email,
            display_name: self.display_name,
            role: self.role,
            password_hash: self.password_hash,
            pii: self.pii,
            created_at: self.created_at,
        }
    }
}

impl fmt::Debug for NewUser {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NewUser")
            .field("id", &self.id)
            .field("email", &self.email)
            .field("display_name", &self.display_name)
            .field("role", &self.role)
            .field("password_hash", &"<redacted>")
            .field("pii_fields", &self.pii.keys().collect::<Vec<_>>())
            .field("created_at", &self.created_at)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pii::NONCE_LEN;

    fn sample() -> NewUser {
        NewUser {
            id: UserId::new_random(),
            email: Email::parse("ada@example.com").unwrap(),
            display_name: DisplayName::parse("Ada").unwrap(),
            role: Role::Participant,
            password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$SECRETHASH".into(),
            pii: BTreeMap::from([(
                PiiField::Phone,
                Sealed {
                    key_id: "k1".into(),
                    nonce: [1; NONCE_LEN],
                    ciphertext: vec![2; 20],
                },
            )]),
            created_at: Utc::now(),
        }
    }

    #[test]
    fn debug_never_prints_the_password_hash() {
        let new = sample();
        let printed = format!("{new:?}");
        assert!(!printed.contains("SECRETHASH"), "{printed}");
        assert!(printed.contains("ada@example.com"));
        let printed = format!("{:?}", new.into_user());
        assert!(!printed.contains("SECRETHASH"), "{printed}");
        assert!(!printed.contains("argon2"), "{printed}");
        assert!(printed.contains("<redacted>"));
        assert!(printed.contains("Phone"));
    }

    #[test]
    fn user_id_round_trips_through_text() {
        let id = UserId::new_random();
        assert_eq!(id.to_string().parse::<UserId>().unwrap(), id);
        assert_eq!(id.to_string(), id.as_uuid().to_string());
        assert!("not-a-uuid".parse::<UserId>().is_err());
    }

    #[test]
    fn new_user_becomes_the_same_user() {
        let new = sample();
        let user = new.clone().into_user();
        assert_eq!(user.id, new.id);
        assert_eq!(user.email, new.email);
        assert_eq!(user.pii, new.pii);
        assert_eq!(user.password_hash, new.password_hash);
    }
}
