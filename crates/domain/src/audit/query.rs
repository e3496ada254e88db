//! Listing the log: filters, page size and the opaque keyset cursor.
//!
//! Pages run newest first. A cursor points just below the last entry of a page (by `seq`), so
//! entries appended while someone pages never shift, duplicate or hide later pages.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};

use super::{Actor, RecordedEntry};

/// Why a listing request is not acceptable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuditQueryError {
    /// The cursor was not issued by this log (garbled, truncated or made up).
    #[error("the cursor is not valid")]
    InvalidCursor,
    /// The page size is outside 1–[`AuditLimit::MAX`].
    #[error("limit must be between 1 and {max}, got {got}", max = AuditLimit::MAX)]
    InvalidLimit {
        /// The rejected page size.
        got: u32,
    },
}

/// Where the next page starts: entries strictly older (lower `seq`) than the one it names.
///
/// Clients only ever see it as an opaque string ([`fmt::Display`] / [`AuditCursor::parse`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AuditCursor {
    before_seq: i64,
}

/// First byte of an encoded cursor, so the format can change without misreading old cursors.
const CURSOR_VERSION: u8 = 1;

impl AuditCursor {
    /// The cursor of the page after one that ended with the entry at `seq`.
    pub fn before_seq(seq: i64) -> Self {
        Self { before_seq: seq }
    }

    /// Entries of the next page have a `seq` below this.
    pub fn seq(&self) -> i64 {
        self.before_seq
    }

    /// Reads a cursor from its opaque text; anything this log did not issue is refused.
    pub fn parse(raw: &str) -> Result<Self, AuditQueryError> {
        let bytes = URL_SAFE_NO_PAD
            .decode(raw)
            .map_err(|_| AuditQueryError::InvalidCursor)?;
        let [version, seq @ ..] = bytes.as_slice() else {
            return Err(AuditQueryError::InvalidCursor);
        };
        let seq = <[u8; 8]>::try_from(seq).map_err(|_| AuditQueryError::InvalidCursor)?;
        let before_seq = i64::from_be_bytes(seq);
        if *version != CURSOR_VERSION || before_seq < 1 {
            return Err(AuditQueryError::InvalidCursor);
        }
        Ok(Self { before_seq })
    }
}

impl fmt::Display for AuditCursor {
    /// The opaque text: base64url (no padding) of a version byte and the big-endian `seq`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut bytes = [0u8; 9];
        bytes[0] = CURSOR_VERSION;
        bytes[1..].copy_from_slice(&self.before_seq.to_be_bytes());
        f.write_str(&URL_SAFE_NO_PAD.encode(bytes))
    }
}

/// Page size of a listing: 1 to [`AuditLimit::MAX`], [`AuditLimit::DEFAULT`] when unspecified.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AuditLimit(u32);

impl AuditLimit {
    /// Largest page.
    pub const MAX: u32 = 200;
    /// Page size when the caller gives none.
    pub const DEFAULT: Self = Self(50);

    /// Validates a page size.
    pub fn new(limit: u32) -> Result<Self, AuditQueryError> {
        if (1..=Self::MAX).contains(&limit) {
            Ok(Self(limit))
        } else {
            Err(AuditQueryError::InvalidLimit { got: limit })
        }
    }

    /// The page size.
    pub fn get(self) -> u32 {
        self.0
    }
}

impl Default for AuditLimit {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// A listing request: every filter given must match; pages run newest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditQuery {
    /// Only entries by this actor.
    pub actor: Option<Actor>,
    /// Only entries with this action.
    pub action: Option<String>,
    /// Only entries about this subject.
    pub subject: Option<String>,
    /// Only entries at or after this instant (inclusive).
    pub from: Option<DateTime<Utc>>,
    /// Only entries before this instant (exclusive).
    pub to: Option<DateTime<Utc>>,
    /// Continue after a previous page (`None` for the first page).
    pub cursor: Option<AuditCursor>,
    /// Page size.
    pub limit: AuditLimit,
}

impl AuditQuery {
    /// Whether `entry` passes the filters and lies beyond the cursor.
    pub fn matches(&self, entry: &RecordedEntry) -> bool {
        let e = &entry.entry;
        self.actor.as_ref().is_none_or(|a| *a == e.actor)
            && self.action.as_ref().is_none_or(|a| *a == e.action)
            && self.subject.as_ref().is_none_or(|s| *s == e.subject)
            && self.from.is_none_or(|from| e.at >= from)
            && self.to.is_none_or(|to| e.at < to)
            && self.cursor.is_none_or(|c| entry.seq < c.seq())
    }

    /// How many entries an adapter should fetch for one page: one more than the page size, to
    /// learn whether another page follows (see [`AuditPage::from_newest_first`]).
    pub fn fetch_size(&self) -> u32 {
        self.limit.get() + 1
    }
}

/// One page of a listing.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct AuditPage {
    /// The entries, newest (highest `seq`) first.
    pub items: Vec<RecordedEntry>,
    /// Where the next page starts; `None` on the last page.
    pub next_cursor: Option<AuditCursor>,
}

impl AuditPage {
    /// Builds a page from up to [`AuditQuery::fetch_size`] matching entries, newest first.
    pub fn from_newest_first(mut rows: Vec<RecordedEntry>, limit: AuditLimit) -> Self {
        let limit = limit.get() as usize;
        let next_cursor = if rows.len() > limit {
            rows.truncate(limit);
            rows.last().map(|e| AuditCursor::before_seq(e.seq))
        } else {
            None
        };
        Self {
            items: rows,
            next_cursor,
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::Duration;

    use super::*;
    use crate::audit::{AuditEntry, RecordedEntry, chain};

    #[test]
    fn cursors_round_trip_as_opaque_text() {
        for seq in [1, 2, 255, 256, 1_000_000, i64::MAX] {
            let cursor = AuditCursor::before_seq(seq);
            let text = cursor.to_string();
            assert!(
                text.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
                "{text}"
            );
            assert_eq!(AuditCursor::parse(&text), Ok(cursor));
        }
    }

    #[test]
    fn garbage_cursors_are_refused() {
        let valid = AuditCursor::before_seq(42).to_string();
        let mut wrong_version = URL_SAFE_NO_PAD.decode(&valid).unwrap();
        wrong_version[0] = 2;
        let negative = {
            let mut b = vec![CURSOR_VERSION];
            b.extend_from_slice(&(-5i64).to_be_bytes());
            b
        };
        let zero = {
            let mut b = vec![CURSOR_VERSION];
            b.extend_from_slice(&0i64.to_be_bytes());
            b
        };
        for garbage in [
            String::new(),
            "abc".into(),
            "!!!!".into(),
            "42".into(),
            format!("{valid}="),
            format!("{valid}A"),
            valid[..valid.len() - 1].to_owned(),
            URL_SAFE_NO_PAD.encode(wrong_version),
            URL_SAFE_NO_PAD.encode(negative),
            URL_SAFE_NO_PAD.encode(zero),
            URL_SAFE_NO_PAD.encode([CURSOR_VERSION; 12]),
        ] {
            assert_eq!(
                AuditCursor::parse(&garbage),
                Err(AuditQueryError::InvalidCursor),
                "{garbage:?}"
            );
        }
    }

    #[test]
    fn limits_are_bounded() {
        assert_eq!(AuditLimit::new(1).map(AuditLimit::get), Ok(1));
        assert_eq!(AuditLimit::new(200).map(AuditLimit::get), Ok(200));
        assert_eq!(
            AuditLimit::new(0),
            Err(AuditQueryError::InvalidLimit { got: 0 })
        );
        assert_eq!(
            AuditLimit::new(201),
            Err(AuditQueryError::InvalidLimit { got: 201 })
        );
        assert_eq!(AuditLimit::default().get(), 50);
    }

    fn recorded(seq: i64, actor: &str, action: &str, subject: &str, secs: i64) -> RecordedEntry {
        let at = DateTime::from_timestamp(secs, 0).unwrap();
        RecordedEntry::seal(
            seq,
            chain::GENESIS,
            AuditEntry::new(Actor::from_stored(actor), action, subject, at),
        )
    }

    #[test]
    fn every_filter_must_match() {
        let e = recorded(10, "user:1", "a.b", "s:1", 1_000);
        let at = e.entry.at;
        assert!(AuditQuery::default().matches(&e));
        let q = |f: &dyn Fn(&mut AuditQuery)| {
            let mut q = AuditQuery::default();
            f(&mut q);
            q.matches(&e)
        };
        assert!(q(&|q| q.actor = Some(Actor::user(1))));
        assert!(!q(&|q| q.actor = Some(Actor::user(2))));
        assert!(q(&|q| q.action = Some("a.b".into())));
        assert!(!q(&|q| q.action = Some("a.c".into())));
        assert!(q(&|q| q.subject = Some("s:1".into())));
        assert!(!q(&|q| q.subject = Some("s:2".into())));
        assert!(q(&|q| q.from = Some(at)));
        assert!(!q(&|q| q.from = Some(at + Duration::microseconds(1))));
        assert!(q(&|q| q.to = Some(at + Duration::microseconds(1))));
        assert!(!q(&|q| q.to = Some(at)));
        assert!(q(&|q| q.cursor = Some(AuditCursor::before_seq(11))));
        assert!(!q(&|q| q.cursor = Some(AuditCursor::before_seq(10))));
    }

    #[test]
    fn a_page_has_a_cursor_only_when_more_follow() {
        let rows: Vec<RecordedEntry> = (1..=3)
            .rev()
            .map(|seq| recorded(seq, "system", "a", "s", 0))
            .collect();
        let limit = AuditLimit::new(2).unwrap();
        let page = AuditPage::from_newest_first(rows.clone(), limit);
        assert_eq!(page.items.iter().map(|e| e.seq).collect::<Vec<_>>(), [3, 2]);
        assert_eq!(page.next_cursor, Some(AuditCursor::before_seq(2)));
        let last = AuditPage::from_newest_first(rows[..2].to_vec(), limit);
        assert_eq!(last.items.len(), 2);
        assert_eq!(last.next_cursor, None);
        assert_eq!(
            AuditQuery {
                limit,
                ..AuditQuery::default()
            }
            .fetch_size(),
            3
        );
    }
}

#[cfg(test)]
mod fuzz;
