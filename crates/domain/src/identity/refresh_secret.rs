//! The secret half of a refresh token: 32 random bytes, sent to the client as base64url.
//!
//! Only its SHA-256 ([`RefreshSecret::hash`]) is ever stored, so a database leak does not leak
//! usable refresh tokens.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::digest;
use ring::rand::{SecureRandom, SystemRandom};
use zeroize::{Zeroize, Zeroizing};

/// Number of random bytes in a refresh secret.
pub const REFRESH_SECRET_BYTES: usize = 32;

/// Length of the encoded secret: base64url without padding of 32 bytes.
pub const REFRESH_SECRET_LEN: usize = 43;

/// Why a refresh secret could not be made or read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RefreshSecretError {
    /// The operating system's random source failed.
    #[error("the system random source failed")]
    Rng,
    /// Not 43 characters of canonical base64url without padding.
    #[error("malformed refresh token")]
    Malformed,
}

/// A refresh secret: 32 random bytes as 43 characters of base64url without padding.
///
/// `Debug` is redacted; the text is zeroized when dropped. Compare secrets through
/// [`hash`](Self::hash) (what the store keeps), never by text.
pub struct RefreshSecret {
    encoded: Zeroizing<String>,
}

impl RefreshSecret {
    /// Draws 32 bytes from the operating system's CSPRNG (ring's `SystemRandom`).
    pub fn generate() -> Result<Self, RefreshSecretError> {
        let mut bytes = Zeroizing::new([0u8; REFRESH_SECRET_BYTES]);
        SystemRandom::new()
            .fill(bytes.as_mut())
            .map_err(|_| RefreshSecretError::Rng)?;
        Ok(Self {
            encoded: Zeroizing::new(URL_SAFE_NO_PAD.encode(bytes.as_ref())),
        })
    }

    /// Reads a secret sent by a client: exactly 43 characters of `A-Z a-z 0-9 - _`, canonical
    /// (the unused low bits of the last character are zero), decoding to 32 bytes.
    pub fn parse(text: &str) -> Result<Self, RefreshSecretError> {
        if text.len() != REFRESH_SECRET_LEN
            || !text
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(RefreshSecretError::Malformed);
        }
        let mut bytes = URL_SAFE_NO_PAD
            .decode(text)
            .map_err(|_| RefreshSecretError::Malformed)?;
        let ok = bytes.len() == REFRESH_SECRET_BYTES;
        bytes.zeroize();
        if !ok {
            return Err(RefreshSecretError::Malformed);
        }
        Ok(Self {
            encoded: Zeroizing::new(text.to_owned()),
        })
    }

    /// SHA-256 of the encoded text: the only form that is stored and looked up.
    pub fn hash(&self) -> [u8; 32] {
        let digest = digest::digest(&digest::SHA256, self.encoded.as_bytes());
        let mut out = [0u8; 32];
        out.copy_from_slice(digest.as_ref());
        out
    }

    /// The encoded secret, only to hand to the client (response body or cookie).
    pub fn as_str(&self) -> &str {
        &self.encoded
    }
}

impl fmt::Debug for RefreshSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RefreshSecret(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_secret_has_43_url_safe_chars() {
        let secret = RefreshSecret::generate().expect("rng");
        let text = secret.as_str();
        assert_eq!(text.len(), REFRESH_SECRET_LEN);
        assert!(
            text.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        );
    }

    #[test]
    fn generated_secrets_differ() {
        let a = RefreshSecret::generate().expect("rng");
        let b = RefreshSecret::generate().expect("rng");
        assert_ne!(a.as_str(), b.as_str());
        assert_ne!(a.hash(), b.hash());
    }

    #[test]
    fn parse_round_trips_and_hash_is_stable() {
        let secret = RefreshSecret::generate().expect("rng");
        let parsed = RefreshSecret::parse(secret.as_str()).expect("parse");
        assert_eq!(parsed.as_str(), secret.as_str());
        assert_eq!(parsed.hash(), secret.hash());
    }

    #[test]
    fn hash_is_sha256_of_the_text() {
        let text = "A".repeat(42) + "A";
        let secret = RefreshSecret::parse(&text).expect("parse");
        let expected = digest::digest(&digest::SHA256, text.as_bytes());
        assert_eq!(secret.hash().as_slice(), expected.as_ref());
    }

    #[test]
    fn parse_rejects_wrong_length_and_alphabet() {
        let good = RefreshSecret::generate().expect("rng");
        let good = good.as_str();
        for bad in [
            String::new(),
            good[..42].to_owned(),
            format!("{good}A"),
            format!("{good}="),
            format!("{}+", &good[..42]),
            format!("{}/", &good[..42]),
            format!("{} ", &good[..42]),
            format!("{}é", &good[..41]),
        ] {
            assert_eq!(
                RefreshSecret::parse(&bad).map(|_| ()),
                Err(RefreshSecretError::Malformed),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn parse_rejects_non_canonical_last_char() {
        // 32 bytes use 256 of the 258 bits of 43 characters: the last character's two low
        // bits must be zero ('A' = 0 is canonical, 'B' = 1 is not).
        let canonical = "A".repeat(43);
        assert!(RefreshSecret::parse(&canonical).is_ok());
        let non_canonical = "A".repeat(42) + "B";
        assert_eq!(
            RefreshSecret::parse(&non_canonical).map(|_| ()),
            Err(RefreshSecretError::Malformed)
        );
    }

    #[test]
    fn debug_is_redacted() {
        let secret = RefreshSecret::generate().expect("rng");
        let text = format!("{secret:?}");
        assert!(!text.contains(secret.as_str()));
        assert_eq!(text, "RefreshSecret(<redacted>)");
    }
}
