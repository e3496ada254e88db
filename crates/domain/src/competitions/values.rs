//! Competitions and registrations, and the rules a new competition must satisfy.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::identity::user::UserId;

/// Longest title, in characters.
pub const MAX_TITLE_CHARS: usize = 200;
/// Largest capacity of one competition.
pub const MAX_CAPACITY: u32 = 1_000_000;

/// Identifies a competition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct CompetitionId(pub Uuid);

impl std::fmt::Display for CompetitionId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// Identifies a registration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RegistrationId(pub Uuid);

impl std::fmt::Display for RegistrationId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// A field of a request that breaks a rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldViolation {
    /// The request field.
    pub field: &'static str,
    /// What is wrong with it.
    pub message: String,
}

/// What an organizer asks for when creating a competition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompetitionDraft {
    /// Title, 1–[`MAX_TITLE_CHARS`] characters once trimmed.
    pub title: String,
    /// Seats, 1–[`MAX_CAPACITY`].
    pub capacity: i64,
    /// Last moment registrations and withdrawals are accepted (exclusive).
    pub registration_deadline: DateTime<Utc>,
    /// When the competition starts; after the deadline.
    pub starts_at: DateTime<Utc>,
}

/// A competition with its seat count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Competition {
    /// Identity.
    pub id: CompetitionId,
    /// Title (trimmed).
    pub title: String,
    /// Seats in all.
    pub capacity: u32,
    /// Seats held by registrations.
    pub seats_taken: u32,
    /// Registrations and withdrawals are accepted strictly before this instant.
    pub registration_deadline: DateTime<Utc>,
    /// Start.
    pub starts_at: DateTime<Utc>,
    /// The organizer or admin who created it.
    pub created_by: UserId,
    /// Creation time (the listing's order).
    pub created_at: DateTime<Utc>,
}

impl Competition {
    /// Validates `draft` into a new competition with no seat taken; every broken rule is named.
    pub fn create(
        id: CompetitionId,
        draft: &CompetitionDraft,
        created_by: UserId,
        now: DateTime<Utc>,
    ) -> Result<Self, Vec<FieldViolation>> {
        let mut errors = Vec::new();
        let title = draft.title.trim();
        let chars = title.chars().count();
        if chars == 0 || chars > MAX_TITLE_CHARS || title.chars().any(char::is_control) {
            errors.push(FieldViolation {
                field: "title",
                message: format!(
                    "must be 1–{MAX_TITLE_CHARS} characters without control characters"
                ),
            });
        }
        let capacity = u32::try_from(draft.capacity)
            .ok()
            .filter(|c| (1..=MAX_CAPACITY).contains(c));
        if capacity.is_none() {
            errors.push(FieldViolation {
                field: "capacity",
                message: format!("must be between 1 and {MAX_CAPACITY}"),
            });
        }
        if draft.registration_deadline >= draft.starts_at {
            errors.push(FieldViolation {
                field: "registration_deadline",
                message: "must be before starts_at".into(),
            });
        }
        match capacity {
            Some(capacity) if errors.is_empty() => Ok(Self {
                id,
                title: title.to_owned(),
                capacity,
                seats_taken: 0,
                registration_deadline: draft.registration_deadline,
                starts_at: draft.starts_at,
                created_by,
                created_at: now,
            }),
            _ => Err(errors),
        }
    }

    /// Seats still free (never negative, even if a store returned more taken than capacity).
    pub fn seats_left(&self) -> u32 {
        self.capacity.saturating_sub(self.seats_taken)
    }

    /// Takes one seat if one is free (the rule of the conditional update every store runs:
    /// `seats_taken < capacity`); returns the seats left after it.
    pub fn take_seat(&mut self) -> Option<u32> {
        if self.seats_taken < self.capacity {
            self.seats_taken += 1;
            Some(self.seats_left())
        } else {
            None
        }
    }

    /// Frees one seat (its registration was removed); `false` when none was taken.
    pub fn free_seat(&mut self) -> bool {
        if self.seats_taken > 0 {
            self.seats_taken -= 1;
            true
        } else {
            false
        }
    }

    /// Whether registrations and withdrawals are accepted at `now`.
    pub fn registration_open(&self, now: DateTime<Utc>) -> bool {
        now < self.registration_deadline
    }

    /// Whether the competition has started at `now`.
    pub fn has_started(&self, now: DateTime<Utc>) -> bool {
        now >= self.starts_at
    }
}

/// A registration to store: one user's seat in one competition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewRegistration {
    /// Identity of the new registration.
    pub id: RegistrationId,
    /// The competition.
    pub competition_id: CompetitionId,
    /// The registrant.
    pub user_id: UserId,
    /// When it was made.
    pub registered_at: DateTime<Utc>,
}

/// A stored registration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registration {
    /// Identity.
    pub id: RegistrationId,
    /// The competition.
    pub competition_id: CompetitionId,
    /// The registrant; `None` once the account was deleted (the row is then anonymised until its
    /// seat is released).
    pub user_id: Option<UserId>,
    /// When it was made.
    pub registered_at: DateTime<Utc>,
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use chrono::Duration;
    use proptest::prelude::*;

    use super::*;

    fn draft() -> CompetitionDraft {
        let now = Utc::now();
        CompetitionDraft {
            title: "  Spring open  ".into(),
            capacity: 10,
            registration_deadline: now + Duration::days(1),
            starts_at: now + Duration::days(2),
        }
    }

    fn create(d: &CompetitionDraft) -> Result<Competition, Vec<FieldViolation>> {
        Competition::create(
            CompetitionId(Uuid::nil()),
            d,
            UserId(Uuid::nil()),
            Utc::now(),
        )
    }

    fn fields(d: &CompetitionDraft) -> Vec<&'static str> {
        create(d)
            .err()
            .unwrap_or_default()
            .iter()
            .map(|v| v.field)
            .collect()
    }

    #[test]
    fn a_valid_draft_is_trimmed_and_has_every_seat_free() {
        let c = create(&draft()).ok();
        assert_eq!(c.as_ref().map(|c| c.title.as_str()), Some("Spring open"));
        assert_eq!(c.map(|c| c.seats_left()), Some(10));
    }

    #[test]
    fn every_broken_rule_is_named() {
        let mut d = draft();
        d.title = " ".into();
        d.capacity = 0;
        d.registration_deadline = d.starts_at;
        assert_eq!(fields(&d), ["title", "capacity", "registration_deadline"]);
        d = draft();
        d.title = "x".repeat(MAX_TITLE_CHARS + 1);
        d.capacity = i64::from(MAX_CAPACITY) + 1;
        assert_eq!(fields(&d), ["title", "capacity"]);
        d = draft();
        d.title = "é".repeat(MAX_TITLE_CHARS);
        d.capacity = -1;
        assert_eq!(fields(&d), ["capacity"]);
        // Postgres text cannot hold a NUL: such a title used to come back as a 503.
        d = draft();
        d.title = "Nul\0byte".into();
        assert_eq!(fields(&d), ["title"]);
    }

    #[test]
    fn registration_closes_at_the_deadline() {
        let c = create(&draft()).ok();
        let Some(c) = c else { panic!("valid") };
        assert!(c.registration_open(c.registration_deadline - Duration::seconds(1)));
        assert!(!c.registration_open(c.registration_deadline));
        assert!(!c.has_started(c.registration_deadline));
        assert!(c.has_started(c.starts_at));
    }

    proptest! {
        /// Any interleaving of registrations and withdrawals by a few users, applied with the
        /// seat rule and the one-row-per-user rule as the stores apply them, keeps
        /// `0 ≤ seats_left ≤ capacity` and `seats_taken = rows`.
        #[test]
        fn seats_stay_within_capacity_and_match_rows(
            capacity in 1u32..6,
            ops in proptest::collection::vec((0u8..10, any::<bool>()), 0..80),
        ) {
            let mut d = draft();
            d.capacity = i64::from(capacity);
            let Ok(mut c) = create(&d) else { panic!("valid draft") };
            let mut rows = BTreeSet::new();
            for (user, register) in ops {
                if register {
                    if rows.contains(&user) {
                        continue; // already registered: refused, nothing changes
                    }
                    if c.take_seat().is_some() {
                        rows.insert(user);
                    }
                } else if rows.remove(&user) {
                    prop_assert!(c.free_seat());
                }
                prop_assert!(c.seats_left() <= c.capacity);
                prop_assert!(c.seats_taken <= c.capacity);
                prop_assert_eq!(c.seats_taken as usize, rows.len());
            }
        }
    }
}
