//! The values of the events product and their validation.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::identity::user::UserId;

/// Identifies an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct EventId(pub Uuid);

impl EventId {
    /// A fresh, time-ordered id.
    pub fn new() -> Self {
        Self(Uuid::now_v7())
    }
}

impl Default for EventId {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Display for EventId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// Identifies a certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct CertificateId(pub Uuid);

impl CertificateId {
    /// A fresh, time-ordered id.
    pub fn new() -> Self {
        Self(Uuid::now_v7())
    }
}

impl Default for CertificateId {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Display for CertificateId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// Longest event title, in characters.
pub const MAX_TITLE_CHARS: usize = 200;

/// An event title: trimmed, 1–200 characters, no control characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventTitle(String);

impl EventTitle {
    /// Parses a title given by a client (or read back from storage).
    pub fn parse(raw: &str) -> Result<Self, String> {
        let title = raw.trim();
        match title.chars().count() {
            0 => Err("must not be empty".into()),
            n if n > MAX_TITLE_CHARS => {
                Err(format!("must be at most {MAX_TITLE_CHARS} characters"))
            }
            _ if title.chars().any(char::is_control) => {
                Err("must not contain control characters".into())
            }
            _ => Ok(Self(title.to_owned())),
        }
    }

    /// The title.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// An event as a client asks for it, before validation.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    /// Title, 1–200 characters.
    pub title: String,
    /// Start of the attendance window.
    pub starts_at: DateTime<Utc>,
    /// End of the attendance window; after `starts_at`.
    pub ends_at: DateTime<Utc>,
}

impl NewEvent {
    /// The event this becomes, organized by `organizer` and created at `now`, or every invalid
    /// field as (field, message).
    pub fn validate(
        self,
        organizer: UserId,
        now: DateTime<Utc>,
    ) -> Result<Event, Vec<(String, String)>> {
        let mut errors = Vec::new();
        let title = EventTitle::parse(&self.title)
            .map_err(|m| errors.push(("title".to_owned(), m)))
            .ok();
        if self.ends_at <= self.starts_at {
            errors.push(("ends_at".to_owned(), "must be after starts_at".to_owned()));
        }
        match title {
            Some(title) if errors.is_empty() => Ok(Event {
                id: EventId::new(),
                title: title.as_str().to_owned(),
                starts_at: self.starts_at,
                ends_at: self.ends_at,
                organizer_id: Some(organizer),
                created_at: now,
                closed_at: None,
            }),
            _ => Err(errors),
        }
    }
}

/// An event: a window during which participants' attendance is scanned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// Identity.
    pub id: EventId,
    /// Title (validated by [`EventTitle`]).
    pub title: String,
    /// Start of the attendance window (inclusive).
    pub starts_at: DateTime<Utc>,
    /// End of the attendance window (inclusive).
    pub ends_at: DateTime<Utc>,
    /// Who runs it; `None` once the organizer's account is deleted (admins still manage it).
    pub organizer_id: Option<UserId>,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it was closed; closed events take no scans.
    pub closed_at: Option<DateTime<Utc>>,
}

impl Event {
    /// Whether a scan at `at` falls in the window of an open event; `Err` names why not.
    pub fn check_scan_time(&self, at: DateTime<Utc>) -> Result<(), &'static str> {
        if self.closed_at.is_some() {
            Err("the event is closed")
        } else if at < self.starts_at {
            Err("the event has not started yet")
        } else if at > self.ends_at {
            Err("the event has ended")
        } else {
            Ok(())
        }
    }
}

/// A user taking part in an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Participant {
    /// The event.
    pub event_id: EventId,
    /// The participant's user id.
    pub user_id: UserId,
    /// When they were added.
    pub added_at: DateTime<Utc>,
}

/// A participant's recorded attendance: at most one per (event, participant).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attendance {
    /// The event.
    pub event_id: EventId,
    /// The participant's user id.
    pub participant_id: UserId,
    /// Who scanned them (`None` once that account is deleted).
    pub scanned_by: Option<UserId>,
    /// When the first scan was recorded.
    pub scanned_at: DateTime<Utc>,
}

/// A random, unguessable code printed on a certificate: 128 random bits as unpadded base64url
/// (22 characters).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct VerificationCode(String);

/// Random bytes in a verification code.
pub const VERIFICATION_CODE_BYTES: usize = 16;

impl VerificationCode {
    /// A fresh code from the system's secure random source.
    pub fn generate() -> Result<Self, crate::StoreError> {
        use base64::Engine as _;
        use ring::rand::{SecureRandom, SystemRandom};
        let mut bytes = [0u8; VERIFICATION_CODE_BYTES];
        SystemRandom::new().fill(&mut bytes).map_err(|_| {
            crate::StoreError::unavailable("random", "the system random source failed")
        })?;
        Ok(Self(
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes),
        ))
    }

    /// A stored code, as read back.
    pub fn from_stored(code: String) -> Self {
        Self(code)
    }

    /// Whether `raw` has the shape of a code (22 base64url characters); anything else cannot
    /// name a certificate.
    pub fn is_well_formed(raw: &str) -> bool {
        raw.len() == 22
            && raw
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    }

    /// The code.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A certificate of attendance: at most one per (event, participant), with its document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Certificate {
    /// Identity.
    pub id: CertificateId,
    /// The event.
    pub event_id: EventId,
    /// The participant's user id.
    pub participant_id: UserId,
    /// The participant's display name when it was issued.
    pub participant_name: String,
    /// The event's title when it was issued.
    pub event_title: String,
    /// The public verification code.
    pub verification_code: VerificationCode,
    /// When it was issued.
    pub issued_at: DateTime<Utc>,
    /// The HTML document, generated once before the certificate was stored and kept with it.
    pub document: String,
}

#[cfg(test)]
mod tests {
    use chrono::Duration;

    use super::*;

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + secs, 0).unwrap()
    }

    #[test]
    fn titles_are_trimmed_and_bounded() {
        assert_eq!(
            EventTitle::parse("  Rust meetup ").unwrap().as_str(),
            "Rust meetup"
        );
        assert!(EventTitle::parse("   ").is_err());
        assert!(EventTitle::parse(&"é".repeat(200)).is_ok());
        assert!(EventTitle::parse(&"é".repeat(201)).is_err());
        // Postgres text cannot hold a NUL: such a title used to come back as a 503.
        assert!(EventTitle::parse("Nul\0byte").is_err());
        assert!(EventTitle::parse("line\nbreak").is_err());
    }

    #[test]
    fn an_event_must_end_after_it_starts() {
        let organizer = UserId::new_random();
        let new = |title: &str, end: i64| NewEvent {
            title: title.into(),
            starts_at: at(0),
            ends_at: at(end),
        };
        assert!(new("ok", 1).validate(organizer, at(0)).is_ok());
        let errors = new("", 0).validate(organizer, at(0)).unwrap_err();
        let fields: Vec<&str> = errors.iter().map(|(f, _)| f.as_str()).collect();
        assert_eq!(fields, ["title", "ends_at"]);
    }

    #[test]
    fn scans_are_accepted_only_inside_the_window_of_an_open_event() {
        let mut event = NewEvent {
            title: "t".into(),
            starts_at: at(0),
            ends_at: at(60),
        }
        .validate(UserId::new_random(), at(0))
        .unwrap();
        assert!(event.check_scan_time(at(-1)).is_err());
        assert!(event.check_scan_time(at(0)).is_ok());
        assert!(event.check_scan_time(at(60)).is_ok());
        assert!(
            event
                .check_scan_time(at(60) + Duration::milliseconds(1))
                .is_err()
        );
        event.closed_at = Some(at(30));
        assert_eq!(event.check_scan_time(at(30)), Err("the event is closed"));
    }

    #[test]
    fn verification_codes_are_random_and_well_formed() {
        let a = VerificationCode::generate().unwrap();
        let b = VerificationCode::generate().unwrap();
        assert_ne!(a, b);
        assert!(VerificationCode::is_well_formed(a.as_str()));
        assert!(!VerificationCode::is_well_formed("short"));
        assert!(!VerificationCode::is_well_formed("aaaaaaaaaaaaaaaaaaaa/="));
    }
}
