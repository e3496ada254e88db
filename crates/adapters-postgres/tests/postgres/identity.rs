use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use keel_adapters_postgres::schema::{refresh_tokens, user_pii};
use keel_adapters_postgres::testkit::TestDatabase;
use keel_adapters_postgres::{PgRefreshTokenStore, PgUserStore};
use keel_domain::identity::pii_rotation::{RotationReport, rotate_pii_keys};
use keel_domain::identity::refresh::{RefreshRecord, RefreshTokenStore};
use keel_domain::identity::store::UserStore;
use keel_domain::identity::user::{NewUser, UserId};
use keel_domain::identity::values::{DisplayName, Email, Role};
use keel_domain::pii::{Cipher, CipherError, KeyRing, PiiField, XChaChaCipher};
use keel_domain::testkit::identity_stores;
use uuid::Uuid;

fn now() -> DateTime<Utc> {
    DateTime::from_timestamp(Utc::now().timestamp(), 0).unwrap()
}

fn cipher() -> XChaChaCipher {
    // 32 zero bytes: a test key.
    XChaChaCipher::new(
        KeyRing::parse("test-key:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=").unwrap(),
    )
}

fn new_user(email: &str) -> NewUser {
    NewUser {
        id: UserId(Uuid::new_v4()),
        email: Email::parse(email).unwrap(),
        display_name: DisplayName::parse("Grace").unwrap(),
        role: Role::Participant,
        password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into(),
        pii: BTreeMap::new(),
        created_at: now(),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn keeps_the_user_store_contract() {
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    identity_stores::run_user_store(&PgUserStore::new(db.pool().clone())).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn keeps_the_refresh_token_store_contract() {
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    let users = PgUserStore::new(db.pool().clone());
    let tokens = PgRefreshTokenStore::new(db.pool().clone());
    identity_stores::run_refresh_store(&tokens, &users).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn stored_pii_is_ciphertext_only_and_opens_again() {
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    let store = PgUserStore::new(db.pool().clone());
    let cipher = cipher();
    let mut user = new_user("grace@example.com");
    let owner = user.id.to_string();
    let plaintexts = [
        (PiiField::Phone, "+27 82 555 0123"),
        (PiiField::Address, "12 Long Street, Cape Town"),
        (PiiField::DateOfBirth, "1906-12-09"),
        (PiiField::NationalId, "0612095800087"),
    ];
    for (field, text) in plaintexts {
        user.pii
            .insert(field, cipher.seal(&owner, field, text).unwrap());
    }
    store.create(&user).await.unwrap();

    let mut conn = db.pool().get().await.unwrap();
    let rows: Vec<(String, String, Vec<u8>, Vec<u8>)> = user_pii::table
        .filter(user_pii::user_id.eq(user.id.as_uuid()))
        .select((
            user_pii::field,
            user_pii::key_id,
            user_pii::nonce,
            user_pii::ciphertext,
        ))
        .load(&mut conn)
        .await
        .unwrap();
    assert_eq!(rows.len(), 4);
    for (field, key_id, nonce, ciphertext) in rows {
        assert_eq!(key_id, "test-key");
        assert_eq!(nonce.len(), 24);
        let (_, text) = plaintexts
            .iter()
            .find(|(f, _)| f.as_str() == field)
            .unwrap();
        assert!(
            !ciphertext
                .windows(text.len())
                .any(|window| window == text.as_bytes()),
            "{field} ciphertext contains its plaintext"
        );
        // Not even a 4-byte piece of it leaks.
        assert!(
            !ciphertext
                .windows(4)
                .any(|w| text.as_bytes().windows(4).any(|p| p == w)),
            "{field} ciphertext contains a piece of its plaintext"
        );
    }
    // Nowhere in the table, as Postgres sees it either.
    for (_, text) in plaintexts {
        let hits: i64 = user_pii::table
            .filter(diesel::dsl::sql::<diesel::sql_types::Bool>(&format!(
                "position(convert_to('{text}', 'UTF8') in ciphertext) > 0"
            )))
            .count()
            .get_result(&mut conn)
            .await
            .unwrap();
        assert_eq!(hits, 0);
    }

    let found = store.find_by_id(user.id).await.unwrap().unwrap();
    for (field, text) in plaintexts {
        let sealed = found.pii.get(&field).unwrap();
        assert_eq!(cipher.open(&owner, field, sealed).unwrap(), text);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_pii_insert_leaves_no_user_behind() {
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    let store = PgUserStore::new(db.pool().clone());
    let mut user = new_user("atomic@example.com");
    let mut bad = cipher()
        .seal(&user.id.to_string(), PiiField::Phone, "+27 82 555 0123")
        .unwrap();
    // The schema refuses a key id longer than 32 characters, after the users row is inserted.
    bad.key_id = "k".repeat(40);
    user.pii.insert(PiiField::Phone, bad);
    assert!(store.create(&user).await.is_err());
    assert!(store.find_by_id(user.id).await.unwrap().is_none());
    user.pii.clear();
    store.create(&user).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn schema_refuses_bad_identity_rows() {
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    let mut conn = db.pool().get().await.unwrap();
    for sql in [
        "INSERT INTO users VALUES (gen_random_uuid(), 'Upper@Example.com', 'x', 'participant', 'h', now())",
        "INSERT INTO users VALUES (gen_random_uuid(), 'a@example.com', '', 'participant', 'h', now())",
        "INSERT INTO users VALUES (gen_random_uuid(), 'a@example.com', 'x', 'root', 'h', now())",
    ] {
        assert!(
            diesel::sql_query(sql).execute(&mut conn).await.is_err(),
            "{sql}"
        );
    }
    let store = PgUserStore::new(db.pool().clone());
    let user = new_user("rows@example.com");
    store.create(&user).await.unwrap();
    let id = user.id.as_uuid();
    for sql in [
        format!(
            "INSERT INTO user_pii VALUES ('{id}', 'email', 'k', decode(repeat('00', 24), 'hex'), decode(repeat('00', 16), 'hex'))"
        ),
        format!(
            "INSERT INTO user_pii VALUES ('{id}', 'phone', 'k', decode(repeat('00', 12), 'hex'), decode(repeat('00', 16), 'hex'))"
        ),
        format!(
            "INSERT INTO refresh_tokens (token_hash, family_id, user_id, expires_at) VALUES (decode(repeat('00', 16), 'hex'), gen_random_uuid(), '{id}', now())"
        ),
    ] {
        assert!(
            diesel::sql_query(&sql).execute(&mut conn).await.is_err(),
            "{sql}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn deleting_a_user_cascades_to_pii_and_tokens() {
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    let users = PgUserStore::new(db.pool().clone());
    let tokens = PgRefreshTokenStore::new(db.pool().clone());
    let mut user = new_user("gone@example.com");
    user.pii.insert(
        PiiField::Address,
        cipher()
            .seal(&user.id.to_string(), PiiField::Address, "somewhere")
            .unwrap(),
    );
    users.create(&user).await.unwrap();
    tokens
        .issue(&RefreshRecord {
            token_hash: [5; 32],
            family_id: Uuid::new_v4(),
            user_id: user.id,
            expires_at: now() + Duration::days(7),
        })
        .await
        .unwrap();
    assert!(users.delete(user.id).await.unwrap());
    let mut conn = db.pool().get().await.unwrap();
    let pii: i64 = user_pii::table.count().get_result(&mut conn).await.unwrap();
    let refresh: i64 = refresh_tokens::table
        .count()
        .get_result(&mut conn)
        .await
        .unwrap();
    assert_eq!((pii, refresh), (0, 0));
}

/// 32 bytes of 0x01, 0x02 and 0x03: test keys.
const KEY_A: &str = "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=";
const KEY_B: &str = "AgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgI=";
const KEY_LOST: &str = "AwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwM=";

fn ring(spec: &str) -> XChaChaCipher {
    XChaChaCipher::new(KeyRing::parse(spec).unwrap())
}

fn plaintext(user: UserId, field: PiiField) -> String {
    format!("{field} of {user}")
}

/// `count` users with every field sealed by `cipher`; returns their ids.
async fn users_sealed_by(store: &PgUserStore, cipher: &XChaChaCipher, count: usize) -> Vec<UserId> {
    let mut ids = Vec::new();
    for _ in 0..count {
        let mut user = new_user(&format!("{}@rotation.example.com", Uuid::new_v4()));
        for field in PiiField::ALL {
            let sealed = cipher
                .seal(&user.id.to_string(), field, &plaintext(user.id, field))
                .unwrap();
            user.pii.insert(field, sealed);
        }
        store.create(&user).await.unwrap();
        ids.push(user.id);
    }
    ids
}

/// Asserts every field of `users` is under `key_id` and opens to its plaintext with `cipher`.
async fn assert_all_under(
    store: &PgUserStore,
    users: &[UserId],
    key_id: &str,
    cipher: &XChaChaCipher,
) {
    for id in users {
        let user = store.find_by_id(*id).await.unwrap().unwrap();
        assert_eq!(user.pii.len(), 4);
        for (field, sealed) in &user.pii {
            assert_eq!(sealed.key_id, key_id, "{field} of {id}");
            assert_eq!(
                cipher.open(&id.to_string(), *field, sealed).unwrap(),
                plaintext(*id, *field)
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn rotate_pii_keys_moves_every_value_to_the_active_key_and_resumes() {
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    let store = PgUserStore::new(db.pool().clone());
    let old = ring(&format!("a:{KEY_A}"));
    let users = users_sealed_by(&store, &old, 3).await;
    // One value under a key that is no longer in the ring, and a user without personal data.
    let orphan = users_sealed_by(&store, &ring(&format!("lost:{KEY_LOST}")), 1).await;
    store
        .create(&new_user("no-pii@rotation.example.com"))
        .await
        .unwrap();

    let new = ring(&format!("b:{KEY_B},a:{KEY_A}"));
    let report = rotate_pii_keys(&store, &new, 2).await.unwrap();
    assert_eq!(
        report,
        RotationReport {
            rotated: 12,
            skipped: 0,
            unreadable: 4
        }
    );
    assert_all_under(&store, &users, "b", &new).await;
    // The new values need key b: the old ring alone no longer opens them.
    let user = store.find_by_id(users[0]).await.unwrap().unwrap();
    assert!(matches!(
        old.open(
            &users[0].to_string(),
            PiiField::Phone,
            &user.pii[&PiiField::Phone]
        ),
        Err(CipherError::UnknownKey { .. })
    ));
    // The unreadable values are left exactly as they were.
    assert_all_under(&store, &orphan, "lost", &ring(&format!("lost:{KEY_LOST}"))).await;

    // A second run finds nothing left to rotate.
    let again = rotate_pii_keys(&store, &new, 2).await.unwrap();
    assert_eq!(
        again,
        RotationReport {
            rotated: 0,
            skipped: 0,
            unreadable: 4
        }
    );
    let mut conn = db.pool().get().await.unwrap();
    let under_b: i64 = user_pii::table
        .filter(user_pii::key_id.eq("b"))
        .count()
        .get_result(&mut conn)
        .await
        .unwrap();
    assert_eq!(under_b, 12);
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_rotations_never_clobber_each_other() {
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    let store = PgUserStore::new(db.pool().clone());
    let users = users_sealed_by(&store, &ring(&format!("a:{KEY_A}")), 5).await;
    let new = ring(&format!("b:{KEY_B},a:{KEY_A}"));
    let (first, second) = tokio::join!(
        rotate_pii_keys(&store, &new, 3),
        rotate_pii_keys(&store, &new, 2)
    );
    let (first, second) = (first.unwrap(), second.unwrap());
    // Each value is written back by exactly one of the runs.
    assert_eq!(first.rotated + second.rotated, 20);
    assert_eq!(first.unreadable + second.unreadable, 0);
    assert_all_under(&store, &users, "b", &new).await;
    assert_eq!(
        rotate_pii_keys(&store, &new, 7).await.unwrap(),
        RotationReport::default()
    );
}
