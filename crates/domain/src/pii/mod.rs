//! Personal data: field-level encryption (the `Cipher` port), key rings and masking.
//!
//! Four fields of a user are personal data and never stored in the clear: phone, address, date of
//! birth and national id ([`PiiField`]). Each value is sealed on its own with
//! XChaCha20-Poly1305 under a random 24-byte nonce ([`XChaChaCipher`]). The additional
//! authenticated data is `owner || 0x00 || field name`, so a ciphertext copied to another user or
//! another field fails to open ([`CipherError::Tampered`]). Each stored value ([`Sealed`]) names
//! the key that sealed it, so keys can be rotated: the [`KeyRing`] (from `KEEL_PII_KEYS`) holds the
//! active key and any number of retired ones still able to open old values, and [`rotate`]
//! re-seals one value under the active key.
//!
//! Roles that may only glimpse personal data get [`mask`]ed values (`+27•••••321`).

mod cipher;
mod field;
mod key_ring;
mod mask;
mod sealed;
mod xchacha;

#[cfg(test)]
pub use cipher::MockCipher;
pub use cipher::{Cipher, CipherError, rotate};
pub use field::PiiField;
pub use key_ring::{KEY_LEN, KeyRing, MAX_KEY_ID_LEN};
pub use mask::{FULL_MASK, mask};
pub use sealed::{NONCE_LEN, Sealed, SealedFormatError, TAG_LEN};
pub use xchacha::XChaChaCipher;
