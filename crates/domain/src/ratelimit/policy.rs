//! Rate policies (`10/minute`) and the `off` setting, parsed from operator configuration.

use std::fmt;
use std::str::FromStr;

/// Largest `count` a policy accepts. It keeps the emission interval of a `/second` policy at
/// 10 µs or more, so rounding it to whole microseconds changes the rate by at most 10 %.
pub const MAX_COUNT: u32 = 100_000;

/// The window a policy's `count` refers to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Period {
    /// One second.
    Second,
    /// One minute.
    Minute,
    /// One hour.
    Hour,
}

impl Period {
    /// The unit as written in settings: `"second"`, `"minute"` or `"hour"`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Second => "second",
            Self::Minute => "minute",
            Self::Hour => "hour",
        }
    }

    /// Length of the period in whole seconds (the `w` of a `RateLimit-Policy` header).
    pub const fn as_secs(self) -> u64 {
        match self {
            Self::Second => 1,
            Self::Minute => 60,
            Self::Hour => 3_600,
        }
    }

    /// Length of the period in microseconds, the unit of the GCRA arithmetic.
    pub const fn as_micros(self) -> i64 {
        // At most 3.6e9: the cast cannot overflow.
        self.as_secs() as i64 * 1_000_000
    }
}

impl fmt::Display for Period {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Allows `count` requests at once (the burst), then one every `period / count`.
///
/// Written `<count>/<second|minute|hour>`, e.g. `10/minute`; [`fmt::Display`] gives the same
/// syntax back. Parsing rejects a zero count and counts above [`MAX_COUNT`]; a hand-built policy
/// with `count == 0` is treated as `count == 1`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RatePolicy {
    /// Requests allowed per `period`, and the size of the burst.
    pub count: u32,
    /// The window `count` refers to.
    pub period: Period,
}

impl RatePolicy {
    /// Builds a policy, with the same bounds as parsing.
    pub fn new(count: u32, period: Period) -> Result<Self, PolicyParseError> {
        if count == 0 {
            return Err(PolicyParseError::ZeroCount);
        }
        if count > MAX_COUNT {
            return Err(PolicyParseError::CountTooLarge { count });
        }
        Ok(Self { count, period })
    }

    /// Requests allowed at once: equal to `count` (at least 1).
    pub fn burst(&self) -> u32 {
        self.count.max(1)
    }

    /// The emission interval T = `period / count` in microseconds, rounded up (and at least 1 µs)
    /// so the sustained rate never exceeds the policy.
    pub fn emission_interval_micros(&self) -> i64 {
        let count = i64::from(self.burst());
        ((self.period.as_micros() + count - 1) / count).max(1)
    }
}

impl fmt::Display for RatePolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.count, self.period)
    }
}

impl FromStr for RatePolicy {
    type Err = PolicyParseError;

    fn from_str(raw: &str) -> Result<Self, Self::Err> {
        let syntax = || PolicyParseError::Syntax {
            value: raw.to_owned(),
        };
        let (count, period) = raw.trim().split_once('/').ok_or_else(syntax)?;
        let (count, period) = (count.trim(), period.trim());
        if count.is_empty() || period.is_empty() {
            return Err(syntax());
        }
        if !count.bytes().all(|b| b.is_ascii_digit()) {
            return Err(PolicyParseError::Count {
                value: count.to_owned(),
            });
        }
        let count = count
            .parse::<u32>()
            .map_err(|_| PolicyParseError::CountTooLarge { count: u32::MAX })?;
        let period = match period.to_ascii_lowercase().as_str() {
            "second" => Period::Second,
            "minute" => Period::Minute,
            "hour" => Period::Hour,
            _ => {
                return Err(PolicyParseError::Period {
                    value: period.to_owned(),
                });
            }
        };
        Self::new(count, period)
    }
}

/// A class's configured setting: no limit at all, or a policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PolicySetting {
    /// `off`: requests of the class are never limited.
    Off,
    /// `<count>/<period>`: requests are limited by this policy.
    Limit(RatePolicy),
}

impl PolicySetting {
    /// The policy to enforce, if any.
    pub fn policy(&self) -> Option<RatePolicy> {
        match self {
            Self::Off => None,
            Self::Limit(policy) => Some(*policy),
        }
    }
}

impl fmt::Display for PolicySetting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Off => f.write_str("off"),
            Self::Limit(policy) => policy.fmt(f),
        }
    }
}

impl FromStr for PolicySetting {
    type Err = PolicyParseError;

    /// Parses `off` (any case) or a [`RatePolicy`].
    fn from_str(raw: &str) -> Result<Self, Self::Err> {
        if raw.trim().eq_ignore_ascii_case("off") {
            Ok(Self::Off)
        } else {
            raw.parse().map(Self::Limit)
        }
    }
}

/// Why a setting is not a valid rate policy.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyParseError {
    /// The value is not of the form `<count>/<period>`.
    #[error("expected `<count>/<second|minute|hour>` or `off`, got `{value}`")]
    Syntax {
        /// The rejected value.
        value: String,
    },
    /// The count is not a whole number.
    #[error("rate count `{value}` is not a whole number")]
    Count {
        /// The rejected count.
        value: String,
    },
    /// The count is zero; use `off` to disable a limit.
    #[error("rate count must be at least 1 (use `off` to disable the limit)")]
    ZeroCount,
    /// The count is above [`MAX_COUNT`].
    #[error("rate count {count} is too large; at most {MAX_COUNT} is allowed")]
    CountTooLarge {
        /// The rejected count (saturated at `u32::MAX`).
        count: u32,
    },
    /// The period is not `second`, `minute` or `hour`.
    #[error("unknown rate period `{value}`; use second, minute or hour")]
    Period {
        /// The rejected period.
        value: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(count: u32, period: Period) -> RatePolicy {
        RatePolicy { count, period }
    }

    #[test]
    fn parses_and_displays_the_same_syntax() {
        for (raw, expected) in [
            ("10/minute", policy(10, Period::Minute)),
            ("1/second", policy(1, Period::Second)),
            ("100/hour", policy(100, Period::Hour)),
            (" 5 / Hour ", policy(5, Period::Hour)),
        ] {
            let parsed: RatePolicy = raw.parse().unwrap_or_else(|e| panic!("{raw}: {e}"));
            assert_eq!(parsed, expected);
            assert_eq!(parsed.to_string().parse::<RatePolicy>(), Ok(expected));
        }
        assert_eq!(policy(10, Period::Minute).to_string(), "10/minute");
    }

    #[test]
    fn parses_off_and_limits_as_settings() {
        assert_eq!("off".parse(), Ok(PolicySetting::Off));
        assert_eq!(" OFF ".parse(), Ok(PolicySetting::Off));
        assert_eq!(PolicySetting::Off.to_string(), "off");
        let limited: PolicySetting = "3/second".parse().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(limited, PolicySetting::Limit(policy(3, Period::Second)));
        assert_eq!(limited.to_string(), "3/second");
        assert_eq!(limited.policy(), Some(policy(3, Period::Second)));
        assert_eq!(PolicySetting::Off.policy(), None);
    }

    #[test]
    fn rejects_bad_values_with_a_clear_reason() {
        let err = |raw: &str| raw.parse::<PolicySetting>().err();
        assert!(matches!(err("10"), Some(PolicyParseError::Syntax { .. })));
        assert!(matches!(err(""), Some(PolicyParseError::Syntax { .. })));
        assert!(matches!(
            err("/minute"),
            Some(PolicyParseError::Syntax { .. })
        ));
        assert!(matches!(
            err("ten/minute"),
            Some(PolicyParseError::Count { .. })
        ));
        assert!(matches!(
            err("-1/minute"),
            Some(PolicyParseError::Count { .. })
        ));
        assert!(matches!(err("0/minute"), Some(PolicyParseError::ZeroCount)));
        assert!(matches!(
            err("100001/second"),
            Some(PolicyParseError::CountTooLarge { .. })
        ));
        assert!(matches!(
            err("99999999999/second"),
            Some(PolicyParseError::CountTooLarge { .. })
        ));
        assert!(matches!(
            err("10/day"),
            Some(PolicyParseError::Period { .. })
        ));
        assert!(matches!(
            "off".parse::<RatePolicy>(),
            Err(PolicyParseError::Syntax { .. })
        ));
        assert_eq!(
            err("10/day").map(|e| e.to_string()),
            Some("unknown rate period `day`; use second, minute or hour".to_owned())
        );
    }

    #[test]
    fn emission_interval_is_period_over_count_rounded_up() {
        assert_eq!(
            policy(10, Period::Minute).emission_interval_micros(),
            6_000_000
        );
        assert_eq!(
            policy(3, Period::Second).emission_interval_micros(),
            333_334
        );
        assert_eq!(
            policy(MAX_COUNT, Period::Second).emission_interval_micros(),
            10
        );
        assert_eq!(
            policy(0, Period::Second).emission_interval_micros(),
            1_000_000
        );
        assert_eq!(policy(0, Period::Second).burst(), 1);
    }
}
