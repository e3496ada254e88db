//! Small helpers the contract suites share.

use std::sync::Mutex;

use chrono::{DateTime, Utc};

use crate::identity::store::UserStore;
use crate::identity::user::{NewUser, UserId};
use crate::identity::values::{DisplayName, Email, Role};
use crate::{Clock, StoreError};

/// The value of a store call, or a panic naming the failure.
pub fn ok<T>(result: Result<T, StoreError>) -> T {
    result.unwrap_or_else(|e| panic!("store failed: {e}"))
}

/// The current time on a whole second, so every store keeps it exactly.
pub fn whole_second_now() -> DateTime<Utc> {
    DateTime::from_timestamp(Utc::now().timestamp(), 0).unwrap_or_default()
}

/// A clock the suite sets by hand.
#[derive(Debug)]
pub struct SetClock(Mutex<DateTime<Utc>>);

impl SetClock {
    /// A clock standing at `at`.
    pub fn new(at: DateTime<Utc>) -> Self {
        Self(Mutex::new(at))
    }

    /// Moves the clock to `at`.
    pub fn set(&self, at: DateTime<Utc>) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = at;
    }
}

impl Clock for SetClock {
    fn now(&self) -> DateTime<Utc> {
        *self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A stored account with `role` and no personal data (its password hash is a placeholder).
pub async fn stored_user(users: &dyn UserStore, role: Role) -> UserId {
    let id = UserId::new_random();
    let new = NewUser {
        id,
        email: Email::parse(&format!("{}@testkit.test", id.as_uuid().simple()))
            .unwrap_or_else(|e| panic!("{e}")),
        display_name: DisplayName::parse("Tester").unwrap_or_else(|e| panic!("{e}")),
        role,
        password_hash: "not-a-hash".into(),
        pii: Default::default(),
        created_at: whole_second_now(),
    };
    users
        .create(&new)
        .await
        .unwrap_or_else(|e| panic!("cannot create a user: {e}"));
    id
}
