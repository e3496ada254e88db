//! The `Cipher` port and key rotation of one value.

use zeroize::Zeroizing;

use super::{PiiField, Sealed};

/// Why a value could not be sealed or opened.
///
/// No variant carries plaintext or key material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CipherError {
    /// The value was sealed under a key that is not (or no longer) in the key ring.
    #[error("PII key `{key_id}` is not in the key ring")]
    UnknownKey {
        /// Key id stored beside the value.
        key_id: String,
    },
    /// Authentication failed: the value belongs to another owner or field, was sealed under
    /// another key with the same id, or its bytes were edited.
    #[error("PII value failed authentication (wrong owner or field, wrong key, or edited bytes)")]
    Tampered,
    /// The key ring configuration (`KEEL_PII_KEYS`) is unusable.
    #[error("invalid PII key ring: {0}")]
    InvalidKeyRing(String),
    /// Sealing failed before any encryption: the system random generator gave no nonce, or the
    /// plaintext is beyond the cipher's length limit.
    #[error("PII value could not be sealed: {0}")]
    SealFailed(&'static str),
}

/// Field-level authenticated encryption of personal data.
///
/// Sealing binds the ciphertext to `(owner, field)`: opening it with any other owner or field
/// fails with [`CipherError::Tampered`]. Implementations are synchronous and do no I/O.
#[cfg_attr(test, mockall::automock)]
pub trait Cipher: Send + Sync {
    /// Encrypts `plaintext` as `field` of the user `owner` under the active key.
    fn seal(&self, owner: &str, field: PiiField, plaintext: &str) -> Result<Sealed, CipherError>;

    /// Decrypts a value sealed for `field` of `owner`, with the key named by `sealed.key_id`.
    fn open(&self, owner: &str, field: PiiField, sealed: &Sealed) -> Result<String, CipherError>;

    /// Id of the key new values are sealed under.
    fn active_key_id(&self) -> &str;
}

/// Re-seals one value under the active key.
///
/// Returns `Ok(None)` when `sealed` already uses the active key (nothing to write back), and
/// `Ok(Some(new))` when it was sealed under an older key that is still in the ring. Fails like
/// [`Cipher::open`] otherwise (an unknown key, or a value that does not authenticate).
pub fn rotate<C>(
    cipher: &C,
    owner: &str,
    field: PiiField,
    sealed: &Sealed,
) -> Result<Option<Sealed>, CipherError>
where
    C: Cipher + ?Sized,
{
    if sealed.key_id == cipher.active_key_id() {
        return Ok(None);
    }
    let plaintext = Zeroizing::new(cipher.open(owner, field, sealed)?);
    cipher.seal(owner, field, &plaintext).map(Some)
}

#[cfg(test)]
mod tests {
    use mockall::predicate::eq;

    use super::*;

    fn sealed_under(key_id: &str) -> Sealed {
        Sealed {
            key_id: key_id.to_owned(),
            nonce: [7; 24],
            ciphertext: vec![1; 20],
        }
    }

    #[test]
    fn rotate_leaves_values_under_the_active_key_alone() {
        let mut cipher = MockCipher::new();
        cipher.expect_active_key_id().return_const("k2".to_owned());
        cipher.expect_open().never();
        cipher.expect_seal().never();
        assert_eq!(
            rotate(&cipher, "u1", PiiField::Phone, &sealed_under("k2")),
            Ok(None)
        );
    }

    #[test]
    fn rotate_opens_with_the_old_key_and_seals_with_the_active_one() {
        let mut cipher = MockCipher::new();
        cipher.expect_active_key_id().return_const("k2".to_owned());
        cipher
            .expect_open()
            .withf(|owner, field, sealed| {
                owner == "u1" && *field == PiiField::Address && sealed.key_id == "k1"
            })
            .times(1)
            .returning(|_, _, _| Ok("1 Main Road".to_owned()));
        cipher
            .expect_seal()
            .with(eq("u1"), eq(PiiField::Address), eq("1 Main Road"))
            .times(1)
            .returning(|_, _, _| Ok(sealed_under("k2")));
        assert_eq!(
            rotate(&cipher, "u1", PiiField::Address, &sealed_under("k1")),
            Ok(Some(sealed_under("k2")))
        );
    }

    #[test]
    fn rotate_passes_open_failures_through() {
        let mut cipher = MockCipher::new();
        cipher.expect_active_key_id().return_const("k2".to_owned());
        cipher
            .expect_open()
            .returning(|_, _, _| Err(CipherError::Tampered));
        cipher.expect_seal().never();
        assert_eq!(
            rotate(&cipher, "u1", PiiField::Phone, &sealed_under("k1")),
            Err(CipherError::Tampered)
        );
    }
}
