//! Contract suites of the identity ports: [`UserStore`] and [`RefreshTokenStore`].
//!
//! Every case creates users with fresh random emails and tokens with random hashes, so the suites
//! may run against a shared store (and concurrently with other suites).

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};
use futures_util::future::join_all;
use uuid::Uuid;

use crate::StoreError;
use crate::identity::refresh::{RefreshRecord, RefreshTokenStore, RotateOutcome};
use crate::identity::store::{UserStore, UserStoreError};
use crate::identity::user::{NewUser, User, UserId};
use crate::identity::values::{DisplayName, Email, Role};
use crate::pii::{NONCE_LEN, PiiField, Sealed};

/// Concurrent attempts in the race cases.
const RACERS: usize = 20;

/// Runs every case of the [`UserStore`] contract against `store`.
pub async fn run_user_store(store: &dyn UserStore) {
    create_then_find_round_trips(store).await;
    user_without_pii_round_trips(store).await;
    missing_users_are_none(store).await;
    same_normalised_email_is_taken(store).await;
    concurrent_creates_of_one_email_have_one_winner(store).await;
    set_role_reports_before_and_after(store).await;
    delete_removes_the_user_and_frees_the_email(store).await;
    pii_not_under_key_pages_in_order_and_replace_is_conditional(store).await;
}

/// Runs every case of the [`RefreshTokenStore`] contract against `store`, whose users live in
/// `users` (tokens belong to existing users).
pub async fn run_refresh_store(store: &dyn RefreshTokenStore, users: &dyn UserStore) {
    rotation_chain_works(store, users).await;
    unknown_token_is_unknown(store).await;
    reused_token_revokes_the_whole_family(store, users).await;
    expired_token_is_expired(store, users).await;
    concurrent_rotations_have_one_winner(store, users).await;
    revoke_family_revokes_only_that_family(store, users).await;
    revoke_user_revokes_every_family_of_the_user(store, users).await;
    duplicate_hash_or_unknown_user_is_refused(store, users).await;
    deleting_a_user_removes_its_tokens(store, users).await;
}

use super::support::{ok, whole_second_now as now};

fn random_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    for chunk in bytes.chunks_mut(16) {
        let random = Uuid::new_v4().into_bytes();
        chunk.copy_from_slice(&random[..chunk.len()]);
    }
    bytes
}

fn sealed(len: usize) -> Sealed {
    let mut ciphertext = Vec::with_capacity(len);
    while ciphertext.len() < len {
        ciphertext.extend_from_slice(&Uuid::new_v4().into_bytes());
    }
    ciphertext.truncate(len);
    // Bytes that are awkward for text encodings.
    ciphertext[0] = 0;
    ciphertext[1] = 0xff;
    Sealed {
        key_id: "contract-key_1".to_owned(),
        nonce: random_bytes::<NONCE_LEN>(),
        ciphertext,
    }
}

fn new_user() -> NewUser {
    let email = Email::parse(&format!("user-{}@contract.example.com", Uuid::new_v4()))
        .unwrap_or_else(|e| panic!("{e}"));
    NewUser {
        id: UserId(Uuid::new_v4()),
        email,
        display_name: DisplayName::parse("Ada Lovelace – 測試").unwrap_or_else(|e| panic!("{e}")),
        role: Role::Participant,
        password_hash: format!("$argon2id$v=19$m=19456,t=2,p=1${}", Uuid::new_v4()),
        pii: PiiField::ALL
            .into_iter()
            .enumerate()
            .map(|(i, field)| (field, sealed(16 + 8 * i)))
            .collect(),
        created_at: now(),
    }
}

async fn create(store: &dyn UserStore, user: &NewUser) -> User {
    store
        .create(user)
        .await
        .unwrap_or_else(|e| panic!("create failed: {e}"))
}

async fn create_then_find_round_trips(store: &dyn UserStore) {
    let new = new_user();
    let created = create(store, &new).await;
    let expected = new.clone().into_user();
    assert_eq!(created, expected, "create returns the user as stored");
    let by_id = ok(store.find_by_id(new.id).await).unwrap_or_else(|| panic!("not found by id"));
    assert_eq!(by_id, expected);
    for (field, value) in &new.pii {
        assert_eq!(
            by_id.pii.get(field),
            Some(value),
            "sealed {field} must be byte-exact"
        );
    }
    let by_email =
        ok(store.find_by_email(&new.email).await).unwrap_or_else(|| panic!("not found by email"));
    assert_eq!(by_email, expected);
}

async fn user_without_pii_round_trips(store: &dyn UserStore) {
    let new = NewUser {
        pii: BTreeMap::new(),
        role: Role::Organizer,
        ..new_user()
    };
    create(store, &new).await;
    let found = ok(store.find_by_id(new.id).await).unwrap_or_else(|| panic!("not found"));
    assert_eq!(found, new.into_user());
}

async fn missing_users_are_none(store: &dyn UserStore) {
    assert_eq!(ok(store.find_by_id(UserId(Uuid::new_v4())).await), None);
    let email = new_user().email;
    assert_eq!(ok(store.find_by_email(&email).await), None);
    assert_eq!(
        ok(store.set_role(UserId(Uuid::new_v4()), Role::Admin).await),
        None
    );
    assert!(!ok(store.delete(UserId(Uuid::new_v4())).await));
}

async fn same_normalised_email_is_taken(store: &dyn UserStore) {
    let first = new_user();
    create(store, &first).await;
    let shouted = Email::parse(&format!("  {}  ", first.email.as_str().to_uppercase()))
        .unwrap_or_else(|e| panic!("{e}"));
    let second = NewUser {
        email: shouted,
        ..new_user()
    };
    match store.create(&second).await {
        Err(UserStoreError::EmailTaken) => {}
        other => panic!("a taken email must be EmailTaken, got {other:?}"),
    }
    assert_eq!(
        ok(store.find_by_id(second.id).await),
        None,
        "a refused create stores nothing"
    );
    let found = ok(store.find_by_email(&first.email).await).unwrap_or_else(|| panic!("lost"));
    assert_eq!(found.id, first.id, "the first owner keeps the email");
}

async fn concurrent_creates_of_one_email_have_one_winner(store: &dyn UserStore) {
    let email = new_user().email;
    let candidates: Vec<NewUser> = (0..RACERS)
        .map(|_| NewUser {
            email: email.clone(),
            ..new_user()
        })
        .collect();
    let results = join_all(candidates.iter().map(|user| store.create(user))).await;
    let mut winners = Vec::new();
    for result in results {
        match result {
            Ok(user) => winners.push(user.id),
            Err(UserStoreError::EmailTaken) => {}
            Err(e) => panic!("a racing create must win or be EmailTaken, got {e}"),
        }
    }
    assert_eq!(winners.len(), 1, "exactly one create wins: {winners:?}");
    let found = ok(store.find_by_email(&email).await).unwrap_or_else(|| panic!("lost"));
    assert_eq!(found.id, winners[0]);
    for loser in candidates.iter().filter(|u| u.id != winners[0]) {
        assert_eq!(ok(store.find_by_id(loser.id).await), None);
    }
}

async fn set_role_reports_before_and_after(store: &dyn UserStore) {
    let new = new_user();
    create(store, &new).await;
    assert_eq!(
        ok(store.set_role(new.id, Role::Support).await),
        Some((Role::Participant, Role::Support))
    );
    assert_eq!(
        ok(store.set_role(new.id, Role::Admin).await),
        Some((Role::Support, Role::Admin))
    );
    assert_eq!(
        ok(store.set_role(new.id, Role::Admin).await),
        Some((Role::Admin, Role::Admin))
    );
    let found = ok(store.find_by_id(new.id).await).unwrap_or_else(|| panic!("lost"));
    assert_eq!(found.role, Role::Admin);
    assert_eq!(
        found.pii, new.pii,
        "changing the role leaves everything else"
    );
}

async fn delete_removes_the_user_and_frees_the_email(store: &dyn UserStore) {
    let new = new_user();
    let other = new_user();
    create(store, &new).await;
    create(store, &other).await;
    assert!(ok(store.delete(new.id).await));
    assert_eq!(ok(store.find_by_id(new.id).await), None);
    assert_eq!(ok(store.find_by_email(&new.email).await), None);
    assert!(
        !ok(store.delete(new.id).await),
        "a second delete finds nothing"
    );
    assert!(
        ok(store.find_by_id(other.id).await).is_some(),
        "only that user is removed"
    );
    // The address is free again, and the new account has none of the old one's data.
    let again = NewUser {
        email: new.email.clone(),
        pii: BTreeMap::new(),
        ..new_user()
    };
    create(store, &again).await;
    let found = ok(store.find_by_email(&new.email).await).unwrap_or_else(|| panic!("lost"));
    assert_eq!(found, again.into_user());
}

/// Every value not under `active`, read in pages of `limit`, checking each page's size and the
/// (user id, field name) order across pages.
async fn scan_not_under(
    store: &dyn UserStore,
    active: &str,
    limit: u32,
) -> Vec<(UserId, PiiField, Sealed)> {
    let mut all: Vec<(UserId, PiiField, Sealed)> = Vec::new();
    let mut cursor = None;
    loop {
        let page = ok(store.pii_not_under_key(active, cursor, limit).await);
        assert!(
            page.len() <= limit as usize,
            "a page holds at most `limit` values"
        );
        for (user, field, sealed) in &page {
            assert_ne!(
                sealed.key_id, active,
                "values under the active key are not listed"
            );
            if let Some((last_user, last_field, _)) = all.last() {
                assert!(
                    (*last_user, last_field.as_str()) < (*user, field.as_str()),
                    "listing is strictly increasing in (user id, field name) order"
                );
            }
            all.push((*user, *field, sealed.clone()));
        }
        match page.last() {
            Some((user, field, _)) if page.len() == limit as usize => {
                cursor = Some((*user, *field))
            }
            _ => return all,
        }
    }
}

fn key_id(prefix: &str) -> String {
    format!("{prefix}-{}", &Uuid::new_v4().simple().to_string()[..16])
}

async fn pii_not_under_key_pages_in_order_and_replace_is_conditional(store: &dyn UserStore) {
    let (old, active) = (key_id("old"), key_id("active"));
    let under = |key: &str, len: usize| Sealed {
        key_id: key.to_owned(),
        ..sealed(len)
    };
    let mut mine = Vec::new();
    for _ in 0..3 {
        let mut new = new_user();
        for sealed in new.pii.values_mut() {
            sealed.key_id = old.clone();
        }
        mine.push(new);
    }
    // One value of the first user is under the active key already.
    mine[0].pii.insert(PiiField::Address, under(&active, 20));
    for new in &mine {
        create(store, new).await;
    }
    let ids: Vec<UserId> = mine.iter().map(|u| u.id).collect();
    let mut expected: Vec<(UserId, PiiField, Sealed)> = mine
        .iter()
        .flat_map(|u| {
            u.pii
                .iter()
                .map(|(field, sealed)| (u.id, *field, sealed.clone()))
        })
        .filter(|(_, _, sealed)| sealed.key_id != active)
        .collect();
    expected.sort_by(|a, b| (a.0, a.1.as_str()).cmp(&(b.0, b.1.as_str())));
    assert_eq!(expected.len(), 11);
    let listed_mine = |all: Vec<(UserId, PiiField, Sealed)>| -> Vec<(UserId, PiiField, Sealed)> {
        all.into_iter()
            .filter(|(user, _, _)| ids.contains(user))
            .collect()
    };
    for limit in [1, 3, 100] {
        assert_eq!(
            listed_mine(scan_not_under(store, &active, limit).await),
            expected,
            "pages of {limit} list every value not under the active key, in order"
        );
    }
    // A cursor past one of my values starts strictly after it.
    let (first_user, first_field, _) = &expected[0];
    let after = ok(store
        .pii_not_under_key(&active, Some((*first_user, *first_field)), 1000)
        .await);
    assert!(
        !after
            .iter()
            .any(|(u, f, _)| u == first_user && f == first_field)
    );
    assert!(
        after
            .iter()
            .any(|(u, f, _)| (u, f) == (&expected[1].0, &expected[1].1))
    );

    // A stale expected key changes nothing.
    let (user, field, stored) = expected[0].clone();
    let replacement = under(&active, 24);
    assert!(!ok(store
        .replace_pii(user, field, &active, &replacement)
        .await));
    assert!(!ok(store
        .replace_pii(user, field, "someone-else", &replacement)
        .await));
    let found = ok(store.find_by_id(user).await).unwrap_or_else(|| panic!("lost"));
    assert_eq!(
        found.pii.get(&field),
        Some(&stored),
        "a refused replace changes nothing"
    );
    // No such user, or no such field of the user: nothing to replace.
    assert!(!ok(store
        .replace_pii(UserId(Uuid::new_v4()), field, &old, &replacement)
        .await));
    let without_pii = NewUser {
        pii: BTreeMap::new(),
        ..new_user()
    };
    create(store, &without_pii).await;
    assert!(!ok(store
        .replace_pii(without_pii.id, field, &old, &replacement)
        .await));
    assert_eq!(
        ok(store.find_by_id(without_pii.id).await).map(|u| u.pii),
        Some(BTreeMap::new())
    );

    // The matching key replaces it, byte-exact, and only once.
    assert!(ok(store.replace_pii(user, field, &old, &replacement).await));
    let found = ok(store.find_by_id(user).await).unwrap_or_else(|| panic!("lost"));
    assert_eq!(found.pii.get(&field), Some(&replacement));
    let mut others = found.pii.clone();
    others.remove(&field);
    let mut before = mine
        .iter()
        .find(|u| u.id == user)
        .map(|u| u.pii.clone())
        .unwrap_or_else(|| panic!("lost"));
    before.remove(&field);
    assert_eq!(others, before, "only that field is replaced");
    assert!(!ok(store
        .replace_pii(user, field, &old, &under(&active, 30))
        .await));
    assert_eq!(
        listed_mine(scan_not_under(store, &active, 4).await),
        expected[1..],
        "a replaced value is no longer listed"
    );

    // Once all are replaced, none of them is listed.
    for (user, field, _) in &expected[1..] {
        assert!(ok(store
            .replace_pii(*user, *field, &old, &under(&active, 17))
            .await));
    }
    assert_eq!(listed_mine(scan_not_under(store, &active, 5).await), []);
    // Under another active key they are all listed again, the new values included.
    let all = listed_mine(scan_not_under(store, &key_id("newer"), 2).await);
    assert_eq!(all.len(), 12);
    assert!(all.iter().all(|(_, _, sealed)| sealed.key_id == active));
}

// --- refresh tokens ---

struct Family {
    user_id: UserId,
    family_id: Uuid,
    first: [u8; 32],
    now: DateTime<Utc>,
}

fn ttl() -> Duration {
    Duration::days(7)
}

async fn user(users: &dyn UserStore) -> UserId {
    let new = NewUser {
        pii: BTreeMap::new(),
        ..new_user()
    };
    create(users, &new).await.id
}

async fn login(store: &dyn RefreshTokenStore, user_id: UserId) -> Family {
    let now = now();
    let family = Family {
        user_id,
        family_id: Uuid::new_v4(),
        first: random_bytes(),
        now,
    };
    ok(store
        .issue(&RefreshRecord {
            token_hash: family.first,
            family_id: family.family_id,
            user_id,
            expires_at: now + ttl(),
        })
        .await);
    family
}

async fn rotate(
    store: &dyn RefreshTokenStore,
    presented: &[u8; 32],
    now: DateTime<Utc>,
) -> (RotateOutcome, [u8; 32]) {
    let next = random_bytes();
    let outcome = ok(store.rotate(presented, &next, now + ttl(), now).await);
    (outcome, next)
}

async fn rotation_chain_works(store: &dyn RefreshTokenStore, users: &dyn UserStore) {
    let family = login(store, user(users).await).await;
    let rotated = RotateOutcome::Rotated {
        user_id: family.user_id,
        family_id: family.family_id,
    };
    let mut current = family.first;
    for step in 0..5 {
        let (outcome, next) = rotate(store, &current, family.now + Duration::minutes(step)).await;
        assert_eq!(outcome, rotated, "step {step}");
        current = next;
    }
    // The newest token has a fresh lifetime of its own: it works close to its own expiry.
    let late = family.now + Duration::minutes(4) + ttl() - Duration::seconds(1);
    assert_eq!(rotate(store, &current, late).await.0, rotated);
}

async fn unknown_token_is_unknown(store: &dyn RefreshTokenStore) {
    let (outcome, next) = rotate(store, &random_bytes(), now()).await;
    assert_eq!(outcome, RotateOutcome::Unknown);
    // Nothing was stored for the refused rotation.
    assert_eq!(rotate(store, &next, now()).await.0, RotateOutcome::Unknown);
}

async fn reused_token_revokes_the_whole_family(
    store: &dyn RefreshTokenStore,
    users: &dyn UserStore,
) {
    let user_id = user(users).await;
    let family = login(store, user_id).await;
    let bystander = login(store, user_id).await;
    let (_, second) = rotate(store, &family.first, family.now).await;
    let (_, third) = rotate(store, &second, family.now).await;
    // The first token is presented again: a leak.
    let (outcome, never) = rotate(store, &family.first, family.now).await;
    assert_eq!(
        outcome,
        RotateOutcome::Reused {
            user_id,
            family_id: family.family_id
        }
    );
    assert_eq!(
        rotate(store, &never, family.now).await.0,
        RotateOutcome::Unknown,
        "a reuse issues no token"
    );
    // Every token of the family is dead now, the newest included.
    for token in [&third, &second, &family.first] {
        assert_eq!(
            rotate(store, token, family.now).await.0,
            RotateOutcome::Revoked
        );
    }
    // Another session of the same user is untouched.
    assert!(matches!(
        rotate(store, &bystander.first, family.now).await.0,
        RotateOutcome::Rotated { .. }
    ));
}

async fn expired_token_is_expired(store: &dyn RefreshTokenStore, users: &dyn UserStore) {
    let family = login(store, user(users).await).await;
    let at_expiry = family.now + ttl();
    let (outcome, next) = rotate(store, &family.first, at_expiry).await;
    assert_eq!(outcome, RotateOutcome::Expired);
    assert_eq!(
        rotate(store, &next, at_expiry).await.0,
        RotateOutcome::Unknown
    );
    // Still expired (not used, not revoked) when presented again.
    assert_eq!(
        rotate(store, &family.first, at_expiry + Duration::days(1))
            .await
            .0,
        RotateOutcome::Expired
    );
    // Just before expiry it still worked.
    assert!(matches!(
        rotate(store, &family.first, at_expiry - Duration::seconds(1))
            .await
            .0,
        RotateOutcome::Rotated { .. }
    ));
}

async fn concurrent_rotations_have_one_winner(
    store: &dyn RefreshTokenStore,
    users: &dyn UserStore,
) {
    let family = login(store, user(users).await).await;
    let nexts: Vec<[u8; 32]> = (0..RACERS).map(|_| random_bytes()).collect();
    let results = join_all(
        nexts
            .iter()
            .map(|next| store.rotate(&family.first, next, family.now + ttl(), family.now)),
    )
    .await;
    let (mut rotated, mut reused) = (Vec::new(), 0);
    for (result, next) in results.into_iter().zip(&nexts) {
        match ok(result) {
            RotateOutcome::Rotated { .. } => rotated.push(*next),
            RotateOutcome::Reused { .. } => reused += 1,
            RotateOutcome::Revoked => {}
            other => panic!("a racing rotation must be Rotated, Reused or Revoked, got {other:?}"),
        }
    }
    assert_eq!(rotated.len(), 1, "exactly one rotation wins");
    assert!(reused >= 1, "the losers detect the reuse");
    // The reuse revoked the family: the winner's new token is dead too.
    assert_eq!(
        rotate(store, &rotated[0], family.now).await.0,
        RotateOutcome::Revoked
    );
}

async fn revoke_family_revokes_only_that_family(
    store: &dyn RefreshTokenStore,
    users: &dyn UserStore,
) {
    let user_id = user(users).await;
    let family = login(store, user_id).await;
    let other = login(store, user_id).await;
    let (_, second) = rotate(store, &family.first, family.now).await;
    // Two tokens of the family: the used first one and the live second one.
    assert_eq!(
        ok(store.revoke_family(family.family_id, family.now).await),
        2
    );
    assert_eq!(
        ok(store.revoke_family(family.family_id, family.now).await),
        0
    );
    assert_eq!(
        rotate(store, &second, family.now).await.0,
        RotateOutcome::Revoked
    );
    assert_eq!(
        rotate(store, &family.first, family.now).await.0,
        RotateOutcome::Revoked
    );
    assert!(matches!(
        rotate(store, &other.first, family.now).await.0,
        RotateOutcome::Rotated { .. }
    ));
    assert_eq!(ok(store.revoke_family(Uuid::new_v4(), family.now).await), 0);
}

async fn revoke_user_revokes_every_family_of_the_user(
    store: &dyn RefreshTokenStore,
    users: &dyn UserStore,
) {
    let user_id = user(users).await;
    let a = login(store, user_id).await;
    let b = login(store, user_id).await;
    let stranger = login(store, user(users).await).await;
    assert_eq!(ok(store.revoke_user(user_id, a.now).await), 2);
    assert_eq!(ok(store.revoke_user(user_id, a.now).await), 0);
    for token in [&a.first, &b.first] {
        assert_eq!(rotate(store, token, a.now).await.0, RotateOutcome::Revoked);
    }
    assert!(matches!(
        rotate(store, &stranger.first, a.now).await.0,
        RotateOutcome::Rotated { .. }
    ));
    assert_eq!(
        ok(store.revoke_user(UserId(Uuid::new_v4()), a.now).await),
        0
    );
}

async fn duplicate_hash_or_unknown_user_is_refused(
    store: &dyn RefreshTokenStore,
    users: &dyn UserStore,
) {
    let family = login(store, user(users).await).await;
    let duplicate = RefreshRecord {
        token_hash: family.first,
        family_id: Uuid::new_v4(),
        user_id: family.user_id,
        expires_at: family.now + ttl(),
    };
    match store.issue(&duplicate).await {
        Err(StoreError::Conflict(_)) => {}
        other => panic!("a duplicate hash must conflict, got {other:?}"),
    }
    let orphan = RefreshRecord {
        token_hash: random_bytes(),
        family_id: Uuid::new_v4(),
        user_id: UserId(Uuid::new_v4()),
        expires_at: family.now + ttl(),
    };
    match store.issue(&orphan).await {
        Err(StoreError::Conflict(_)) => {}
        other => panic!("a token of no user must conflict, got {other:?}"),
    }
    // The original token is unharmed.
    assert!(matches!(
        rotate(store, &family.first, family.now).await.0,
        RotateOutcome::Rotated { .. }
    ));
}

async fn deleting_a_user_removes_its_tokens(store: &dyn RefreshTokenStore, users: &dyn UserStore) {
    let user_id = user(users).await;
    let family = login(store, user_id).await;
    let (_, second) = rotate(store, &family.first, family.now).await;
    assert!(ok(users.delete(user_id).await));
    for token in [&family.first, &second] {
        assert_eq!(
            rotate(store, token, family.now).await.0,
            RotateOutcome::Unknown
        );
    }
    assert_eq!(ok(store.revoke_user(user_id, family.now).await), 0);
}
