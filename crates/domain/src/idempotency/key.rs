//! The `Idempotency-Key` header value, parsed once at the edge.

use std::fmt;

/// Longest key accepted, in bytes.
pub const MAX_KEY_LEN: usize = 255;

/// Why a raw header value is not a usable idempotency key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// The header is present but empty.
    #[error("Idempotency-Key must not be empty")]
    Empty,
    /// The key is longer than [`MAX_KEY_LEN`].
    #[error("Idempotency-Key is {len} characters long; at most {MAX_KEY_LEN} are allowed")]
    TooLong {
        /// Length of the rejected key in bytes.
        len: usize,
    },
    /// The key contains a character outside printable ASCII.
    #[error("Idempotency-Key may contain only printable ASCII characters")]
    NotPrintable,
}

/// A client-chosen key: 1–255 printable ASCII characters (`0x20`–`0x7E`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    /// Validates a raw header value.
    pub fn parse(raw: &str) -> Result<Self, KeyError> {
        if raw.is_empty() {
            return Err(KeyError::Empty);
        }
        if raw.len() > MAX_KEY_LEN {
            return Err(KeyError::TooLong { len: raw.len() });
        }
        if !raw.bytes().all(|b| (0x20..=0x7e).contains(&b)) {
            return Err(KeyError::NotPrintable);
        }
        Ok(Self(raw.to_owned()))
    }

    /// The key as sent by the client.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for IdempotencyKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_printable_ascii_up_to_the_limit() {
        assert!(IdempotencyKey::parse("a").is_ok());
        assert!(IdempotencyKey::parse(&"k".repeat(MAX_KEY_LEN)).is_ok());
        assert!(IdempotencyKey::parse("order 42 / retry ~!").is_ok());
    }

    #[test]
    fn rejects_empty_long_and_unprintable_keys() {
        assert_eq!(IdempotencyKey::parse(""), Err(KeyError::Empty));
        assert_eq!(
            IdempotencyKey::parse(&"k".repeat(MAX_KEY_LEN + 1)),
            Err(KeyError::TooLong {
                len: MAX_KEY_LEN + 1
            })
        );
        assert_eq!(IdempotencyKey::parse("a\tb"), Err(KeyError::NotPrintable));
        assert_eq!(IdempotencyKey::parse("clé"), Err(KeyError::NotPrintable));
    }
}

#[cfg(test)]
mod fuzz;
