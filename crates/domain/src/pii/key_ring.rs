//! The PII key ring: the active key and the retired keys still able to open old values.

use std::fmt;
use std::str::FromStr;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chacha20poly1305::{Key, KeyInit, XChaCha20Poly1305};
use zeroize::{Zeroize, Zeroizing};

use super::CipherError;

/// Length of every PII key, in bytes.
pub const KEY_LEN: usize = 32;

/// Longest key id accepted, in characters.
pub const MAX_KEY_ID_LEN: usize = 32;

/// Whether `id` is 1–[`MAX_KEY_ID_LEN`] characters of `A-Z a-z 0-9 _ -`.
pub(super) fn is_valid_key_id(id: &str) -> bool {
    (1..=MAX_KEY_ID_LEN).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// One named key, ready to use.
#[derive(Clone)]
struct Entry {
    id: String,
    /// Holds the key; it is zeroized when dropped (`zeroize` feature of `chacha20poly1305`).
    aead: XChaCha20Poly1305,
}

/// The keys of `KEEL_PII_KEYS`: `id:base64key[,id:base64key…]`, the first one active.
///
/// Rules: at least one entry; ids are 1–32 characters of `A-Z a-z 0-9 _ -` and distinct; keys
/// are standard base64 (with padding) of exactly 32 bytes. Blanks around entries, ids and keys
/// are ignored. New values are sealed under the active key; the others only open older values
/// until [`super::rotate`] has moved them. To rotate, put a new key first and keep the old ones
/// behind it.
///
/// Key bytes never leave this type: `Debug` prints the ids only, error messages name ids and
/// entry positions only, and the keys are zeroized when the ring is dropped.
#[derive(Clone)]
pub struct KeyRing {
    active: Entry,
    retired: Vec<Entry>,
}

impl KeyRing {
    /// Parses the `KEEL_PII_KEYS` syntax; fails with [`CipherError::InvalidKeyRing`].
    pub fn parse(spec: &str) -> Result<KeyRing, CipherError> {
        let invalid = |reason: String| CipherError::InvalidKeyRing(reason);
        if spec.trim().is_empty() {
            return Err(invalid(
                "no keys: expected `id:base64key[,id:base64key…]`, the first one active".to_owned(),
            ));
        }
        let mut entries: Vec<Entry> = Vec::new();
        for (index, raw) in spec.split(',').enumerate() {
            let n = index + 1;
            let raw = raw.trim();
            if raw.is_empty() {
                return Err(invalid(format!("entry {n} is empty (stray comma?)")));
            }
            // The entry itself is never printed: it may hold a key.
            let Some((id, encoded)) = raw.split_once(':') else {
                return Err(invalid(format!("entry {n} is not `id:base64key`")));
            };
            let (id, encoded) = (id.trim(), encoded.trim());
            if !is_valid_key_id(id) {
                return Err(invalid(format!(
                    "entry {n}: the key id must be 1–{MAX_KEY_ID_LEN} characters of \
                     A-Z, a-z, 0-9, `_` or `-`"
                )));
            }
            if entries.iter().any(|entry| entry.id == id) {
                return Err(invalid(format!(
                    "entry {n}: key id `{id}` appears more than once"
                )));
            }
            let aead = decode_key(encoded)
                .map_err(|problem| invalid(format!("key `{id}` (entry {n}) {problem}")))?;
            entries.push(Entry {
                id: id.to_owned(),
                aead,
            });
        }
        let mut entries = entries.into_iter();
        match entries.next() {
            Some(active) => Ok(KeyRing {
                active,
                retired: entries.collect(),
            }),
            None => Err(invalid("no keys".to_owned())),
        }
    }

    /// Id of the key new values are sealed under (the first entry).
    pub fn active_key_id(&self) -> &str {
        &self.active.id
    }

    /// Every key id, the active one first.
    pub fn key_ids(&self) -> impl Iterator<Item = &str> {
        std::iter::once(&self.active)
            .chain(&self.retired)
            .map(|entry| entry.id.as_str())
    }

    /// Whether the ring holds a key called `key_id`.
    pub fn contains(&self, key_id: &str) -> bool {
        self.key_ids().any(|id| id == key_id)
    }

    /// The active key's id and cipher.
    pub(super) fn active(&self) -> (&str, &XChaCha20Poly1305) {
        (&self.active.id, &self.active.aead)
    }

    /// The cipher of the key called `key_id`.
    pub(super) fn get(&self, key_id: &str) -> Option<&XChaCha20Poly1305> {
        std::iter::once(&self.active)
            .chain(&self.retired)
            .find(|entry| entry.id == key_id)
            .map(|entry| &entry.aead)
    }
}

/// Decodes one base64 key into a ready cipher, wiping every intermediate copy of the key.
fn decode_key(encoded: &str) -> Result<XChaCha20Poly1305, String> {
    // Capacity >= the decoded length, so decoding never reallocates and leaves no stray copy.
    let mut bytes = Zeroizing::new(Vec::with_capacity(encoded.len()));
    STANDARD
        .decode_vec(encoded, &mut bytes)
        .map_err(|_| "is not valid standard base64".to_owned())?;
    if bytes.len() != KEY_LEN {
        return Err(format!(
            "is {} bytes long; exactly {KEY_LEN} are required (e.g. `openssl rand -base64 32`)",
            bytes.len()
        ));
    }
    let mut key = Key::default();
    key.copy_from_slice(&bytes);
    let aead = XChaCha20Poly1305::new(&key);
    key.as_mut_slice().zeroize();
    Ok(aead)
}

impl FromStr for KeyRing {
    type Err = CipherError;

    fn from_str(spec: &str) -> Result<Self, Self::Err> {
        KeyRing::parse(spec)
    }
}

impl fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyRing")
            .field("active", &self.active.id)
            .field(
                "retired",
                &self
                    .retired
                    .iter()
                    .map(|entry| entry.id.as_str())
                    .collect::<Vec<_>>(),
            )
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(byte: u8) -> String {
        STANDARD.encode([byte; KEY_LEN])
    }

    fn reason(spec: &str) -> String {
        match KeyRing::parse(spec) {
            Err(CipherError::InvalidKeyRing(reason)) => reason,
            other => panic!("expected InvalidKeyRing, got {other:?}"),
        }
    }

    #[test]
    fn parses_ids_in_order_with_the_first_active() {
        let ring = KeyRing::parse(&format!(
            "k2:{}, k1 : {} ,legacy_2024-01:{}",
            key(2),
            key(1),
            key(0)
        ))
        .expect("valid ring");
        assert_eq!(ring.active_key_id(), "k2");
        assert_eq!(
            ring.key_ids().collect::<Vec<_>>(),
            ["k2", "k1", "legacy_2024-01"]
        );
        assert!(ring.contains("k1"));
        assert!(!ring.contains("k3"));
        assert!(ring.get("legacy_2024-01").is_some());
        assert!(ring.get("k3").is_none());
        let single: KeyRing = format!("only:{}", key(5)).parse().expect("valid ring");
        assert_eq!(single.key_ids().collect::<Vec<_>>(), ["only"]);
    }

    #[test]
    fn rejects_an_empty_ring() {
        assert!(reason("").starts_with("no keys"));
        assert!(reason("  \n").starts_with("no keys"));
        assert_eq!(
            reason(&format!("k1:{},", key(1))),
            "entry 2 is empty (stray comma?)"
        );
    }

    #[test]
    fn rejects_an_entry_without_an_id() {
        assert_eq!(reason(&key(1)), "entry 1 is not `id:base64key`");
    }

    #[test]
    fn rejects_bad_ids_without_printing_them() {
        let expected = "entry 1: the key id must be 1–32 characters of A-Z, a-z, 0-9, `_` or `-`";
        assert_eq!(reason(&format!(":{}", key(1))), expected);
        assert_eq!(reason(&format!("key one:{}", key(1))), expected);
        assert_eq!(reason(&format!("clé:{}", key(1))), expected);
        assert_eq!(reason(&format!("{}:{}", "k".repeat(33), key(1))), expected);
        // A key pasted where the id belongs is not echoed back.
        let swapped = format!("{}:k1", key(7));
        assert!(!reason(&swapped).contains(&key(7)));
        assert!(KeyRing::parse(&format!("{}:{}", "k".repeat(32), key(1))).is_ok());
    }

    #[test]
    fn rejects_duplicate_ids() {
        assert_eq!(
            reason(&format!("k1:{},k2:{},k1:{}", key(1), key(2), key(3))),
            "entry 3: key id `k1` appears more than once"
        );
    }

    #[test]
    fn rejects_bad_base64() {
        assert_eq!(
            reason("k1:not*base64"),
            "key `k1` (entry 1) is not valid standard base64"
        );
        // URL-safe alphabet is not the standard one.
        let url_safe = key(0xfb).replace('+', "-").replace('/', "_");
        assert_ne!(url_safe, key(0xfb));
        assert_eq!(
            reason(&format!("k1:{url_safe}")),
            "key `k1` (entry 1) is not valid standard base64"
        );
    }

    #[test]
    fn rejects_keys_of_the_wrong_length() {
        let short = STANDARD.encode([1u8; 16]);
        assert_eq!(
            reason(&format!("k1:{},k2:{short}", key(1))),
            "key `k2` (entry 2) is 16 bytes long; exactly 32 are required \
             (e.g. `openssl rand -base64 32`)"
        );
        let long = STANDARD.encode([1u8; 33]);
        assert!(reason(&format!("k1:{long}")).contains("is 33 bytes long"));
    }

    #[test]
    fn debug_shows_ids_but_no_key_material() {
        let ring = KeyRing::parse(&format!("k2:{},k1:{}", key(0xab), key(0xcd))).expect("ring");
        let debug = format!("{ring:?}");
        assert_eq!(debug, r#"KeyRing { active: "k2", retired: ["k1"] }"#);
        let pretty = format!("{ring:#?}");
        for secret in [key(0xab), key(0xcd)] {
            assert!(!pretty.contains(&secret));
        }
        assert!(!pretty.contains("171") && !pretty.contains("0xab"));
    }
}
