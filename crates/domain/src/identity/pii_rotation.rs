//! Re-encryption of stored personal data to the active key (`keel rotate-pii-keys`).
//!
//! [`rotate_pii_keys`] walks the values not yet under the cipher's active key page by page
//! ([`UserStore::pii_not_under_key`], a keyset scan), re-seals each one ([`crate::pii::rotate`])
//! and writes it back only if nobody changed it meanwhile ([`UserStore::replace_pii`]).
//!
//! It is resumable and idempotent: a stopped run leaves every value either under its old key or
//! under the active one, and the next run only ever selects what is still under an old key. Two
//! runs at once, or a user updating a value during a run, never lose a write: the conditional
//! replace of the loser reports `false` and the value is counted as skipped.

use super::store::UserStore;
use super::user::UserId;
use crate::StoreError;
use crate::pii::{Cipher, CipherError, PiiField, rotate};

/// What a rotation run did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RotationReport {
    /// Values re-sealed under the active key and written back.
    pub rotated: u64,
    /// Values changed concurrently (by another rotator or an update) and left as they are now.
    pub skipped: u64,
    /// Values that could not be opened: sealed under a key missing from the ring, or failing
    /// authentication. They stay as stored; the run goes on with the next value.
    pub unreadable: u64,
}

/// Why a rotation run stopped early.
///
/// Values rotated before the failure stay rotated; running again resumes with the rest.
#[derive(Debug, thiserror::Error)]
pub enum RotationError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A value was opened but could not be sealed again (e.g. the random generator failed).
    #[error("re-sealing {field} of user {user} failed: {source}")]
    Seal {
        /// Owner of the value.
        user: UserId,
        /// The value's field.
        field: PiiField,
        /// The cipher's error (never carries plaintext or key material).
        source: CipherError,
    },
}

/// The position of a value in the store's listing order: user id, then field name.
fn position(user: UserId, field: PiiField) -> (UserId, &'static str) {
    (user, field.as_str())
}

/// Re-seals every stored personal-data value that is not under `cipher`'s active key, reading
/// `batch` values per page (a `batch` of 0 counts as 1).
///
/// Values that cannot be opened are counted in [`RotationReport::unreadable`] and left alone; the
/// scan moves past them, so the run always ends.
pub async fn rotate_pii_keys(
    store: &dyn UserStore,
    cipher: &dyn Cipher,
    batch: u32,
) -> Result<RotationReport, RotationError> {
    let batch = batch.max(1);
    let active = cipher.active_key_id().to_owned();
    let mut report = RotationReport::default();
    let mut cursor: Option<(UserId, PiiField)> = None;
    loop {
        let page = store.pii_not_under_key(&active, cursor, batch).await?;
        let Some(&(last_user, last_field, _)) = page.last() else {
            break;
        };
        if let Some((user, field)) = cursor
            && position(last_user, last_field) <= position(user, field)
        {
            // A page that does not move past the cursor would make the scan loop forever.
            return Err(StoreError::Corrupt(format!(
                "PII listing did not advance past ({user}, {field})"
            ))
            .into());
        }
        let full = page.len() >= batch as usize;
        for (user, field, sealed) in &page {
            match rotate(cipher, &user.to_string(), *field, sealed) {
                Ok(Some(resealed)) => {
                    if store
                        .replace_pii(*user, *field, &sealed.key_id, &resealed)
                        .await?
                    {
                        report.rotated += 1;
                    } else {
                        report.skipped += 1;
                    }
                }
                // Already under the active key (the store listed it anyway): nothing to write.
                Ok(None) => report.skipped += 1,
                Err(CipherError::UnknownKey { .. } | CipherError::Tampered) => {
                    report.unreadable += 1;
                }
                Err(source) => {
                    return Err(RotationError::Seal {
                        user: *user,
                        field: *field,
                        source,
                    });
                }
            }
        }
        if !full {
            break;
        }
        cursor = Some((last_user, last_field));
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::{Arc, Mutex};

    use base64::Engine;
    use base64::engine::general_purpose::STANDARD;
    use futures_executor::block_on;
    use uuid::Uuid;

    use super::*;
    use crate::identity::store::MockUserStore;
    use crate::pii::{KEY_LEN, KeyRing, MockCipher, Sealed, XChaChaCipher};

    type Rows = Arc<Mutex<BTreeMap<(UserId, &'static str), (PiiField, Sealed)>>>;

    fn cipher(spec: &[(&str, u8)]) -> XChaChaCipher {
        let spec: Vec<String> = spec
            .iter()
            .map(|(id, byte)| format!("{id}:{}", STANDARD.encode([*byte; KEY_LEN])))
            .collect();
        XChaChaCipher::new(KeyRing::parse(&spec.join(",")).unwrap())
    }

    fn plaintext(user: UserId, field: PiiField) -> String {
        format!("{field} of {user}")
    }

    /// `users` users with every field sealed by `cipher`.
    fn rows(cipher: &XChaChaCipher, users: usize) -> Rows {
        let mut rows = BTreeMap::new();
        for _ in 0..users {
            let user = UserId(Uuid::new_v4());
            for field in PiiField::ALL {
                let sealed = cipher
                    .seal(&user.to_string(), field, &plaintext(user, field))
                    .unwrap();
                rows.insert(position(user, field), (field, sealed));
            }
        }
        Arc::new(Mutex::new(rows))
    }

    /// A store over `rows` keeping the port's contract; `pages` counts listing calls.
    fn store(rows: &Rows, pages: &Arc<Mutex<u32>>) -> MockUserStore {
        let mut store = MockUserStore::new();
        let (listed, counter) = (rows.clone(), pages.clone());
        store
            .expect_pii_not_under_key()
            .returning(move |active, after, limit| {
                *counter.lock().unwrap() += 1;
                let rows = listed.lock().unwrap();
                Ok(rows
                    .iter()
                    .filter(|(key, (_, sealed))| {
                        sealed.key_id != active
                            && after.is_none_or(|(user, field)| **key > position(user, field))
                    })
                    .take(limit as usize)
                    .map(|((user, _), (field, sealed))| (*user, *field, sealed.clone()))
                    .collect())
            });
        let replaced = rows.clone();
        store
            .expect_replace_pii()
            .returning(move |user, field, expected, sealed| {
                let mut rows = replaced.lock().unwrap();
                match rows.get_mut(&position(user, field)) {
                    Some((_, stored)) if stored.key_id == expected => {
                        *stored = sealed.clone();
                        Ok(true)
                    }
                    _ => Ok(false),
                }
            });
        store
    }

    #[test]
    fn rotates_every_value_page_by_page_and_then_nothing() {
        let old = cipher(&[("a", 1)]);
        let new = cipher(&[("b", 2), ("a", 1)]);
        let rows = rows(&old, 3);
        let pages = Arc::new(Mutex::new(0));
        let store = store(&rows, &pages);

        let report = block_on(rotate_pii_keys(&store, &new, 5)).unwrap();
        assert_eq!(
            report,
            RotationReport {
                rotated: 12,
                skipped: 0,
                unreadable: 0
            }
        );
        // 12 values in pages of 5: 5, 5, 2 (the short page ends the scan).
        assert_eq!(*pages.lock().unwrap(), 3);
        for ((user, _), (field, sealed)) in rows.lock().unwrap().iter() {
            assert_eq!(sealed.key_id, "b");
            assert_eq!(
                new.open(&user.to_string(), *field, sealed).unwrap(),
                plaintext(*user, *field)
            );
        }

        let again = block_on(rotate_pii_keys(&store, &new, 5)).unwrap();
        assert_eq!(again, RotationReport::default());
    }

    #[test]
    fn unreadable_values_are_counted_and_passed_over() {
        let lost = cipher(&[("lost", 9)]);
        let old = cipher(&[("a", 1)]);
        let new = cipher(&[("b", 2), ("a", 1)]);
        let rows = rows(&old, 2);
        {
            let mut rows = rows.lock().unwrap();
            // Every second value was sealed under a key the ring no longer has.
            for (index, ((user, _), (field, sealed))) in rows.iter_mut().enumerate() {
                if index % 2 == 0 {
                    *sealed = lost
                        .seal(&user.to_string(), *field, &plaintext(*user, *field))
                        .unwrap();
                }
            }
        }
        let pages = Arc::new(Mutex::new(0));
        let store = store(&rows, &pages);
        // Pages of 1: the unreadable values stay listed, so only the cursor moves the scan on.
        let report = block_on(rotate_pii_keys(&store, &new, 1)).unwrap();
        assert_eq!(
            report,
            RotationReport {
                rotated: 4,
                skipped: 0,
                unreadable: 4
            }
        );
        assert_eq!(*pages.lock().unwrap(), 9);
        let again = block_on(rotate_pii_keys(&store, &new, 0)).unwrap();
        assert_eq!(
            again,
            RotationReport {
                rotated: 0,
                skipped: 0,
                unreadable: 4
            }
        );
    }

    #[test]
    fn values_changed_meanwhile_are_skipped() {
        let old = cipher(&[("a", 1)]);
        let new = cipher(&[("b", 2), ("a", 1)]);
        let user = UserId(Uuid::new_v4());
        let listed = old
            .seal(&user.to_string(), PiiField::Phone, "+27 82 555 0123")
            .unwrap();
        let mut store = MockUserStore::new();
        store
            .expect_pii_not_under_key()
            .times(1)
            .returning(move |_, _, _| Ok(vec![(user, PiiField::Phone, listed.clone())]));
        store
            .expect_replace_pii()
            .withf(move |u, field, expected, sealed| {
                *u == user && *field == PiiField::Phone && expected == "a" && sealed.key_id == "b"
            })
            .times(1)
            .returning(|_, _, _, _| Ok(false));
        let report = block_on(rotate_pii_keys(&store, &new, 10)).unwrap();
        assert_eq!(
            report,
            RotationReport {
                rotated: 0,
                skipped: 1,
                unreadable: 0
            }
        );
    }

    #[test]
    fn store_and_seal_failures_stop_the_run() {
        let mut store = MockUserStore::new();
        store
            .expect_pii_not_under_key()
            .returning(|_, _, _| Err(StoreError::unavailable("postgres", "down")));
        let new = cipher(&[("b", 2)]);
        assert!(matches!(
            block_on(rotate_pii_keys(&store, &new, 10)),
            Err(RotationError::Store(StoreError::Unavailable { .. }))
        ));

        let user = UserId(Uuid::new_v4());
        let mut store = MockUserStore::new();
        store.expect_pii_not_under_key().returning(move |_, _, _| {
            Ok(vec![(
                user,
                PiiField::Address,
                Sealed {
                    key_id: "a".to_owned(),
                    nonce: [0; 24],
                    ciphertext: vec![0; 16],
                },
            )])
        });
        store.expect_replace_pii().never();
        let mut cipher = MockCipher::new();
        cipher.expect_active_key_id().return_const("b".to_owned());
        cipher
            .expect_open()
            .returning(|_, _, _| Ok("somewhere".to_owned()));
        cipher
            .expect_seal()
            .returning(|_, _, _| Err(CipherError::SealFailed("no randomness")));
        match block_on(rotate_pii_keys(&store, &cipher, 10)) {
            Err(RotationError::Seal {
                user: u,
                field: PiiField::Address,
                source: CipherError::SealFailed(_),
            }) => assert_eq!(u, user),
            other => panic!("expected a seal failure, got {other:?}"),
        }
    }

    #[test]
    fn a_listing_that_does_not_advance_is_an_error_not_a_loop() {
        let user = UserId(Uuid::new_v4());
        let sealed = cipher(&[("lost", 9)])
            .seal(&user.to_string(), PiiField::Phone, "x")
            .unwrap();
        let mut store = MockUserStore::new();
        // Ignores the cursor: always the same full page.
        store
            .expect_pii_not_under_key()
            .returning(move |_, _, _| Ok(vec![(user, PiiField::Phone, sealed.clone())]));
        let new = cipher(&[("b", 2)]);
        assert!(matches!(
            block_on(rotate_pii_keys(&store, &new, 1)),
            Err(RotationError::Store(StoreError::Corrupt(_)))
        ));
    }
}
