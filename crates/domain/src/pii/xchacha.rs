//! `XChaChaCipher`: the [`Cipher`] port with XChaCha20-Poly1305 and a [`KeyRing`].

use chacha20poly1305::XNonce;
use chacha20poly1305::aead::{Aead, Payload};
use ring::rand::{SecureRandom, SystemRandom};
use zeroize::Zeroize;

use super::{Cipher, CipherError, KeyRing, NONCE_LEN, PiiField, Sealed};

/// XChaCha20-Poly1305 sealing with a random 24-byte nonce per value (from the operating system's
/// generator, via `ring`) and `owner || 0x00 || field name` as additional authenticated data.
///
/// Field names hold no NUL byte, so the data splits back into owner and field in one way only:
/// no two (owner, field) pairs share it, whatever the owner string is.
#[derive(Debug)]
pub struct XChaChaCipher {
    keys: KeyRing,
    rng: SystemRandom,
}

impl XChaChaCipher {
    /// A cipher sealing under the ring's active key and opening with any of its keys.
    pub fn new(keys: KeyRing) -> Self {
        Self {
            keys,
            rng: SystemRandom::new(),
        }
    }

    /// The keys in use.
    pub fn key_ring(&self) -> &KeyRing {
        &self.keys
    }
}

/// The additional authenticated data binding a value to its owner and field.
fn associated_data(owner: &str, field: PiiField) -> Vec<u8> {
    let name = field.as_str().as_bytes();
    let mut aad = Vec::with_capacity(owner.len() + 1 + name.len());
    aad.extend_from_slice(owner.as_bytes());
    aad.push(0);
    aad.extend_from_slice(name);
    aad
}

impl Cipher for XChaChaCipher {
    fn seal(&self, owner: &str, field: PiiField, plaintext: &str) -> Result<Sealed, CipherError> {
        let (key_id, aead) = self.keys.active();
        let mut nonce = [0; NONCE_LEN];
        self.rng
            .fill(&mut nonce)
            .map_err(|_| CipherError::SealFailed("the system random generator failed"))?;
        let ciphertext = aead
            .encrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: plaintext.as_bytes(),
                    aad: &associated_data(owner, field),
                },
            )
            .map_err(|_| CipherError::SealFailed("the plaintext is too long"))?;
        Ok(Sealed {
            key_id: key_id.to_owned(),
            nonce,
            ciphertext,
        })
    }

    fn open(&self, owner: &str, field: PiiField, sealed: &Sealed) -> Result<String, CipherError> {
        let aead = self
            .keys
            .get(&sealed.key_id)
            .ok_or_else(|| CipherError::UnknownKey {
                key_id: sealed.key_id.clone(),
            })?;
        let plaintext = aead
            .decrypt(
                &XNonce::from(sealed.nonce),
                Payload {
                    msg: &sealed.ciphertext,
                    aad: &associated_data(owner, field),
                },
            )
            .map_err(|_| CipherError::Tampered)?;
        // Authentic bytes that are not UTF-8 were not sealed by `seal`.
        String::from_utf8(plaintext).map_err(|error| {
            error.into_bytes().zeroize();
            CipherError::Tampered
        })
    }

    fn active_key_id(&self) -> &str {
        self.keys.active_key_id()
    }
}

#[cfg(test)]
mod tests {
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD;
    use proptest::prelude::*;

    use super::*;
    use crate::pii::{KEY_LEN, TAG_LEN, rotate};

    const OWNER: &str = "0190f5a2-7c1e-7b3a-9d4e-2f6a8b0c1d2e";

    fn key(byte: u8) -> String {
        STANDARD.encode([byte; KEY_LEN])
    }

    fn cipher(spec: &str) -> XChaChaCipher {
        XChaChaCipher::new(KeyRing::parse(spec).expect("valid key ring"))
    }

    fn k1() -> XChaChaCipher {
        cipher(&format!("k1:{}", key(1)))
    }

    fn sample(field: PiiField) -> &'static str {
        match field {
            PiiField::Phone => "+27821234321",
            PiiField::Address => "12 Long Street, Cape Town 8001",
            PiiField::DateOfBirth => "1990-04-15",
            PiiField::NationalId => "8001015009087",
        }
    }

    #[test]
    fn round_trips_every_field() {
        let cipher = k1();
        for field in PiiField::ALL {
            let sealed = cipher.seal(OWNER, field, sample(field)).expect("seal");
            assert_eq!(sealed.key_id, "k1");
            assert_eq!(sealed.ciphertext.len(), sample(field).len() + TAG_LEN);
            assert_eq!(
                cipher.open(OWNER, field, &sealed).as_deref(),
                Ok(sample(field))
            );
        }
        let empty = cipher.seal(OWNER, PiiField::Phone, "").expect("seal");
        assert_eq!(
            cipher.open(OWNER, PiiField::Phone, &empty).as_deref(),
            Ok("")
        );
    }

    #[test]
    fn survives_the_stored_text_form() {
        let cipher = k1();
        let sealed = cipher
            .seal(OWNER, PiiField::Address, "Straße 5, Köln")
            .expect("seal");
        let stored = Sealed::decode(&sealed.encode()).expect("decode");
        assert_eq!(
            cipher.open(OWNER, PiiField::Address, &stored).as_deref(),
            Ok("Straße 5, Köln")
        );
    }

    #[test]
    fn a_value_copied_to_another_owner_fails() {
        let cipher = k1();
        let sealed = cipher
            .seal(OWNER, PiiField::Phone, "+27821234321")
            .expect("seal");
        assert_eq!(
            cipher.open("another-user", PiiField::Phone, &sealed),
            Err(CipherError::Tampered)
        );
        assert_eq!(
            cipher.open("", PiiField::Phone, &sealed),
            Err(CipherError::Tampered)
        );
    }

    #[test]
    fn a_value_copied_to_another_field_fails() {
        let cipher = k1();
        for field in PiiField::ALL {
            let sealed = cipher.seal(OWNER, field, "same text").expect("seal");
            for other in PiiField::ALL.into_iter().filter(|other| *other != field) {
                assert_eq!(
                    cipher.open(OWNER, other, &sealed),
                    Err(CipherError::Tampered),
                    "{field} opened as {other}"
                );
            }
        }
    }

    #[test]
    fn any_flipped_bit_fails() {
        let cipher = k1();
        let sealed = cipher
            .seal(OWNER, PiiField::NationalId, "8001015009087")
            .expect("seal");
        for byte in 0..sealed.ciphertext.len() {
            for bit in 0..8 {
                let mut edited = sealed.clone();
                edited.ciphertext[byte] ^= 1 << bit;
                assert_eq!(
                    cipher.open(OWNER, PiiField::NationalId, &edited),
                    Err(CipherError::Tampered)
                );
            }
        }
        for byte in 0..NONCE_LEN {
            let mut edited = sealed.clone();
            edited.nonce[byte] ^= 0x01;
            assert_eq!(
                cipher.open(OWNER, PiiField::NationalId, &edited),
                Err(CipherError::Tampered)
            );
        }
        let mut truncated = sealed.clone();
        truncated.ciphertext.pop();
        assert_eq!(
            cipher.open(OWNER, PiiField::NationalId, &truncated),
            Err(CipherError::Tampered)
        );
        truncated.ciphertext.clear();
        assert_eq!(
            cipher.open(OWNER, PiiField::NationalId, &truncated),
            Err(CipherError::Tampered)
        );
    }

    #[test]
    fn two_seals_of_one_value_differ() {
        let cipher = k1();
        let first = cipher
            .seal(OWNER, PiiField::Phone, "+27821234321")
            .expect("seal");
        let second = cipher
            .seal(OWNER, PiiField::Phone, "+27821234321")
            .expect("seal");
        assert_ne!(first.nonce, second.nonce);
        assert_ne!(first.ciphertext, second.ciphertext);
    }

    #[test]
    fn a_key_with_the_same_id_but_other_bytes_fails() {
        let sealed = k1()
            .seal(OWNER, PiiField::Phone, "+27821234321")
            .expect("seal");
        let impostor = cipher(&format!("k1:{}", key(9)));
        assert_eq!(
            impostor.open(OWNER, PiiField::Phone, &sealed),
            Err(CipherError::Tampered)
        );
        // Relabelling a value with another key of the ring fails too.
        let ring = cipher(&format!("k2:{},k1:{}", key(2), key(1)));
        let mut relabelled = sealed;
        relabelled.key_id = "k2".to_owned();
        assert_eq!(
            ring.open(OWNER, PiiField::Phone, &relabelled),
            Err(CipherError::Tampered)
        );
    }

    #[test]
    fn old_keys_open_until_rotate_moves_values_to_the_active_key() {
        let old = k1()
            .seal(OWNER, PiiField::DateOfBirth, "1990-04-15")
            .expect("seal");

        let rotated_ring = cipher(&format!("k2:{},k1:{}", key(2), key(1)));
        assert_eq!(rotated_ring.active_key_id(), "k2");
        assert_eq!(
            rotated_ring
                .open(OWNER, PiiField::DateOfBirth, &old)
                .as_deref(),
            Ok("1990-04-15")
        );

        let moved = rotate(&rotated_ring, OWNER, PiiField::DateOfBirth, &old)
            .expect("rotate")
            .expect("re-sealed under the active key");
        assert_eq!(moved.key_id, "k2");
        assert_eq!(
            rotated_ring
                .open(OWNER, PiiField::DateOfBirth, &moved)
                .as_deref(),
            Ok("1990-04-15")
        );
        assert_eq!(
            rotate(&rotated_ring, OWNER, PiiField::DateOfBirth, &moved),
            Ok(None)
        );
        // Rotation keeps the binding: the old value cannot be moved under another owner.
        assert_eq!(
            rotate(&rotated_ring, "another-user", PiiField::DateOfBirth, &old),
            Err(CipherError::Tampered)
        );

        // Once k1 leaves the ring, only moved values open.
        let new_only = cipher(&format!("k2:{}", key(2)));
        assert_eq!(
            new_only
                .open(OWNER, PiiField::DateOfBirth, &moved)
                .as_deref(),
            Ok("1990-04-15")
        );
        assert_eq!(
            new_only.open(OWNER, PiiField::DateOfBirth, &old),
            Err(CipherError::UnknownKey {
                key_id: "k1".to_owned()
            })
        );
    }

    #[test]
    fn an_unknown_key_id_is_reported() {
        let mut sealed = k1()
            .seal(OWNER, PiiField::Phone, "+27821234321")
            .expect("seal");
        sealed.key_id = "gone".to_owned();
        let error = k1().open(OWNER, PiiField::Phone, &sealed);
        assert_eq!(
            error,
            Err(CipherError::UnknownKey {
                key_id: "gone".to_owned()
            })
        );
        assert_eq!(
            error.map_err(|e| e.to_string()),
            Err("PII key `gone` is not in the key ring".to_owned())
        );
    }

    #[test]
    fn debug_shows_no_key_material() {
        let cipher = cipher(&format!("k2:{},k1:{}", key(0xab), key(0xcd)));
        let debug = format!("{cipher:#?}");
        assert!(debug.contains("\"k2\"") && debug.contains("\"k1\""));
        for secret in [key(0xab), key(0xcd)] {
            assert!(!debug.contains(&secret));
        }
        assert!(!debug.contains("171") && !debug.contains("205"));
    }

    fn field() -> impl Strategy<Value = PiiField> {
        prop::sample::select(PiiField::ALL.to_vec())
    }

    proptest! {
        #[test]
        fn seal_then_open_round_trips_any_text(
            owner in any::<String>(),
            field in field(),
            plaintext in any::<String>(),
        ) {
            let cipher = k1();
            let sealed = cipher.seal(&owner, field, &plaintext).expect("seal");
            prop_assert_eq!(cipher.open(&owner, field, &sealed), Ok(plaintext));
        }

        #[test]
        fn open_with_any_other_owner_or_field_fails(
            owner in any::<String>(),
            field in field(),
            other_owner in any::<String>(),
            other_field in field(),
            plaintext in any::<String>(),
        ) {
            prop_assume!((&owner, field) != (&other_owner, other_field));
            let cipher = k1();
            let sealed = cipher.seal(&owner, field, &plaintext).expect("seal");
            prop_assert_eq!(
                cipher.open(&other_owner, other_field, &sealed),
                Err(CipherError::Tampered)
            );
        }

        #[test]
        fn owners_built_from_nul_and_field_name_letters_never_share_a_binding(
            owner in "[\\x00a-z_]{0,24}",
            field in field(),
            other_owner in "[\\x00a-z_]{0,24}",
            other_field in field(),
        ) {
            // The alphabet lets an owner end in `\0phone` and the like, the only way two
            // bindings could collide if the AAD were ambiguous.
            prop_assume!((&owner, field) != (&other_owner, other_field));
            prop_assert_ne!(
                associated_data(&owner, field),
                associated_data(&other_owner, other_field)
            );
            let cipher = k1();
            let sealed = cipher.seal(&owner, field, "x").expect("seal");
            prop_assert_eq!(
                cipher.open(&other_owner, other_field, &sealed),
                Err(CipherError::Tampered)
            );
        }
    }
}
