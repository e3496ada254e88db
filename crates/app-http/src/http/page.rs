//! Keyset pagination of list endpoints: opaque `cursor` strings and the `limit` parameter.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{ApiError, FieldError};

/// Page size when `limit` is absent.
pub const DEFAULT_LIMIT: u32 = 50;
/// Largest page size.
pub const MAX_LIMIT: u32 = 200;

/// The position after a listed item ordered by (time, id), newest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeCursor {
    /// The item's time.
    pub at: DateTime<Utc>,
    /// The item's id (breaks ties).
    pub id: Uuid,
}

impl TimeCursor {
    /// The opaque string clients send back as `cursor` (nanosecond precision, so stores that keep
    /// finer times than Postgres never skip an item of the same microsecond).
    pub fn encode(&self) -> String {
        let nanos = self
            .at
            .timestamp_nanos_opt()
            .unwrap_or_else(|| self.at.timestamp_micros().saturating_mul(1_000));
        URL_SAFE_NO_PAD.encode(format!("{nanos}:{}", self.id))
    }

    /// Reads a `cursor` parameter; a bad one is a 422 naming the field.
    pub fn decode(raw: &str) -> Result<Self, ApiError> {
        let invalid = || {
            ApiError::Validation(vec![FieldError::new(
                "cursor",
                "is not a cursor returned by this list",
            )])
        };
        let bytes = URL_SAFE_NO_PAD.decode(raw).map_err(|_| invalid())?;
        let text = String::from_utf8(bytes).map_err(|_| invalid())?;
        let (nanos, id) = text.split_once(':').ok_or_else(invalid)?;
        let at = nanos
            .parse::<i64>()
            .map(DateTime::from_timestamp_nanos)
            .map_err(|_| invalid())?;
        let id = Uuid::parse_str(id).map_err(|_| invalid())?;
        Ok(Self { at, id })
    }
}

/// Reads a `limit` parameter: 1–[`MAX_LIMIT`], [`DEFAULT_LIMIT`] when absent.
pub fn limit(raw: Option<u32>) -> Result<u32, ApiError> {
    match raw {
        None => Ok(DEFAULT_LIMIT),
        Some(n @ 1..=MAX_LIMIT) => Ok(n),
        Some(_) => Err(ApiError::Validation(vec![FieldError::new(
            "limit",
            format!("must be between 1 and {MAX_LIMIT}"),
        )])),
    }
}

/// The `next_cursor` of a page fetched with one extra item: `Some` when that extra item exists
/// (and it is dropped), pointing after the page's last item.
pub fn next_cursor<T>(
    items: &mut Vec<T>,
    limit: u32,
    position: impl Fn(&T) -> TimeCursor,
) -> Option<String> {
    if items.len() <= limit as usize {
        return None;
    }
    items.truncate(limit as usize);
    items.last().map(|last| position(last).encode())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_reject_garbage() {
        let cursor = TimeCursor {
            at: DateTime::from_timestamp_nanos(1_764_000_000_123_456_789),
            id: Uuid::new_v4(),
        };
        assert_eq!(TimeCursor::decode(&cursor.encode()).ok(), Some(cursor));
        for bad in [
            "",
            "!!",
            "bm90LWEtY3Vyc29y",
            &URL_SAFE_NO_PAD.encode("12:not-a-uuid"),
        ] {
            assert!(TimeCursor::decode(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn limits_are_bounded() {
        assert_eq!(limit(None).ok(), Some(DEFAULT_LIMIT));
        assert_eq!(limit(Some(1)).ok(), Some(1));
        assert!(limit(Some(0)).is_err());
        assert!(limit(Some(MAX_LIMIT + 1)).is_err());
    }

    #[test]
    fn next_cursor_only_when_more_remain() {
        let at = |n: i64| TimeCursor {
            at: DateTime::from_timestamp(n, 0).expect("valid"),
            id: Uuid::nil(),
        };
        let mut items = vec![3, 2, 1];
        assert_eq!(next_cursor(&mut items, 3, |n| at(*n)), None);
        assert_eq!(next_cursor(&mut items, 2, |n| at(*n)), Some(at(2).encode()));
        assert_eq!(items, [3, 2]);
    }
}

#[cfg(test)]
mod fuzz;
