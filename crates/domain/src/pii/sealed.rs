//! A sealed value as stored, and its compact encodings.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use super::key_ring::is_valid_key_id;

/// Length of an XChaCha20-Poly1305 nonce, in bytes.
pub const NONCE_LEN: usize = 24;

/// Length of the Poly1305 tag at the end of every ciphertext, in bytes.
pub const TAG_LEN: usize = 16;

/// One encrypted field value, as stored: the key id beside the nonce and ciphertext.
///
/// `ciphertext` is the encrypted UTF-8 text followed by the 16-byte tag. None of it is secret,
/// so `Debug` prints it all.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Sealed {
    /// Id of the key ring entry that sealed the value.
    pub key_id: String,
    /// Random nonce, unique per sealed value.
    pub nonce: [u8; NONCE_LEN],
    /// Ciphertext followed by the authentication tag.
    pub ciphertext: Vec<u8>,
}

/// Why stored bytes or text are not a [`Sealed`] value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SealedFormatError {
    /// The text has no `:` between key id and payload.
    #[error("sealed PII value is not `key_id:base64`")]
    MissingSeparator,
    /// The key id is not 1–32 characters of `A-Z a-z 0-9 _ -`.
    #[error("sealed PII value has an invalid key id")]
    InvalidKeyId,
    /// The payload is not standard base64.
    #[error("sealed PII value payload is not valid standard base64")]
    InvalidBase64,
    /// The payload is shorter than a nonce and a tag.
    #[error("sealed PII value payload is {len} bytes; at least {} are required", NONCE_LEN + TAG_LEN)]
    TooShort {
        /// Length of the rejected payload in bytes.
        len: usize,
    },
}

impl Sealed {
    /// The stored payload: `nonce || ciphertext` (for a binary column beside the key id).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(NONCE_LEN + self.ciphertext.len());
        bytes.extend_from_slice(&self.nonce);
        bytes.extend_from_slice(&self.ciphertext);
        bytes
    }

    /// Rebuilds a value from its key id and the payload made by [`Sealed::to_bytes`].
    pub fn from_parts(key_id: &str, payload: &[u8]) -> Result<Sealed, SealedFormatError> {
        if !is_valid_key_id(key_id) {
            return Err(SealedFormatError::InvalidKeyId);
        }
        if payload.len() < NONCE_LEN + TAG_LEN {
            return Err(SealedFormatError::TooShort { len: payload.len() });
        }
        let (nonce, ciphertext) = payload.split_at(NONCE_LEN);
        let mut fixed = [0; NONCE_LEN];
        fixed.copy_from_slice(nonce);
        Ok(Sealed {
            key_id: key_id.to_owned(),
            nonce: fixed,
            ciphertext: ciphertext.to_vec(),
        })
    }

    /// One-string form for a single text column: `key_id:base64(nonce || ciphertext)`
    /// (standard base64 with padding).
    pub fn encode(&self) -> String {
        format!("{}:{}", self.key_id, STANDARD.encode(self.to_bytes()))
    }

    /// Parses the form made by [`Sealed::encode`].
    pub fn decode(text: &str) -> Result<Sealed, SealedFormatError> {
        let (key_id, payload) = text
            .split_once(':')
            .ok_or(SealedFormatError::MissingSeparator)?;
        let payload = STANDARD
            .decode(payload)
            .map_err(|_| SealedFormatError::InvalidBase64)?;
        Sealed::from_parts(key_id, &payload)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Sealed {
        Sealed {
            key_id: "2025-01_a".to_owned(),
            nonce: [9; NONCE_LEN],
            ciphertext: (0..30).collect(),
        }
    }

    #[test]
    fn text_and_bytes_forms_round_trip() {
        let sealed = sample();
        let text = sealed.encode();
        assert!(text.starts_with("2025-01_a:"));
        assert_eq!(Sealed::decode(&text), Ok(sealed.clone()));
        assert_eq!(
            Sealed::from_parts(&sealed.key_id, &sealed.to_bytes()),
            Ok(sealed)
        );
    }

    #[test]
    fn malformed_forms_are_rejected() {
        assert_eq!(
            Sealed::decode("no-separator"),
            Err(SealedFormatError::MissingSeparator)
        );
        assert_eq!(
            Sealed::decode("k1:not base64!"),
            Err(SealedFormatError::InvalidBase64)
        );
        let short = STANDARD.encode([0u8; NONCE_LEN + TAG_LEN - 1]);
        assert_eq!(
            Sealed::decode(&format!("k1:{short}")),
            Err(SealedFormatError::TooShort {
                len: NONCE_LEN + TAG_LEN - 1
            })
        );
        let payload = sample().to_bytes();
        assert_eq!(
            Sealed::from_parts("", &payload),
            Err(SealedFormatError::InvalidKeyId)
        );
        assert_eq!(
            Sealed::from_parts("bad id", &payload),
            Err(SealedFormatError::InvalidKeyId)
        );
    }
}
