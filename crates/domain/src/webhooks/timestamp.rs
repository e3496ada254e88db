//! The replay window shared by both schemes: a signed timestamp must be close to now.

use chrono::{DateTime, Duration, Utc};

use super::SignatureError;

/// Default tolerated distance between a delivery's timestamp and now (5 minutes, either way).
pub const DEFAULT_TOLERANCE: Duration = Duration::minutes(5);

/// Most digits accepted in a timestamp header (unix seconds up to year ~33658).
const MAX_DIGITS: usize = 12;

/// Parses a decimal unix-seconds timestamp header and checks it is within `tolerance` of `now`.
///
/// Only ASCII digits are accepted (no sign, no spaces, at most 12 digits); a malformed value is
/// [`SignatureError::MalformedHeader`]`("timestamp")`, one too old or too far in the future is
/// [`SignatureError::StaleTimestamp`].
pub fn check_timestamp(
    timestamp_header: &str,
    now: DateTime<Utc>,
    tolerance: Duration,
) -> Result<DateTime<Utc>, SignatureError> {
    check_named_timestamp("timestamp", timestamp_header, now, tolerance)
}

/// [`check_timestamp`] reporting a malformed value under the header's own name.
pub(super) fn check_named_timestamp(
    header: &'static str,
    value: &str,
    now: DateTime<Utc>,
    tolerance: Duration,
) -> Result<DateTime<Utc>, SignatureError> {
    let malformed = SignatureError::MalformedHeader(header);
    if value.is_empty() || value.len() > MAX_DIGITS || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(malformed);
    }
    let seconds: i64 = value.parse().map_err(|_| malformed)?;
    let timestamp = DateTime::from_timestamp(seconds, 0).ok_or(malformed)?;
    let distance = (now - timestamp).abs();
    if distance > tolerance.abs() {
        return Err(SignatureError::StaleTimestamp);
    }
    Ok(timestamp)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000, 0).expect("valid")
    }

    #[test]
    fn a_timestamp_within_tolerance_is_accepted_either_side() {
        for value in ["1700000000", "1699999700", "1700000300", "01700000000"] {
            let parsed = check_timestamp(value, now(), DEFAULT_TOLERANCE).expect(value);
            assert!((parsed - now()).abs() <= DEFAULT_TOLERANCE);
        }
    }

    #[test]
    fn stale_and_future_timestamps_are_refused() {
        for value in ["1699999699", "1700000301", "0", "999999999999"] {
            assert_eq!(
                check_timestamp(value, now(), DEFAULT_TOLERANCE),
                Err(SignatureError::StaleTimestamp),
                "{value}"
            );
        }
    }

    #[test]
    fn only_plain_decimal_digits_are_accepted() {
        for value in [
            "",
            " 1700000000",
            "1700000000 ",
            "+1700000000",
            "-1700000000",
            "1700000000.0",
            "1e9",
            "0x6553f100",
            "1234567890123",
            "１７００００００００",
        ] {
            assert_eq!(
                check_timestamp(value, now(), DEFAULT_TOLERANCE),
                Err(SignatureError::MalformedHeader("timestamp")),
                "{value:?}"
            );
        }
    }
}
