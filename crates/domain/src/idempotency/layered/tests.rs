use std::sync::Mutex;

use chrono::{DateTime, Duration, Utc};
use futures_executor::block_on;
use mockall::predicate::eq;
use uuid::Uuid;

use super::*;
use crate::idempotency::cache::MockIdempotencyCache;
use crate::idempotency::store::MockIdempotencyStore;

fn now() -> DateTime<Utc> {
    DateTime::from_timestamp(1_800_000_000, 0).unwrap_or_default()
}

fn scope() -> Scope {
    Scope::user("u1")
}

fn key() -> IdempotencyKey {
    IdempotencyKey::parse("k1").unwrap()
}

fn fp(n: u8) -> RequestFingerprint {
    RequestFingerprint::compute("POST", "/x", "user:u1", &[n])
}

fn response() -> StoredResponse {
    StoredResponse {
        status: 201,
        headers: vec![],
        body: b"{}".to_vec(),
    }
}

fn claim() -> Claim {
    Claim {
        scope: scope(),
        key: key(),
        fingerprint: fp(1),
        claim_id: Uuid::nil(),
        expires_at: now() + Duration::hours(24),
    }
}

fn layered(
    durable: MockIdempotencyStore,
    cache: MockIdempotencyCache,
) -> (LayeredIdempotencyStore, Arc<Mutex<Vec<CacheUse>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    let store = LayeredIdempotencyStore::new(Arc::new(durable), Arc::new(cache))
        .with_observer(Arc::new(move |u| log.lock().unwrap().push(u)));
    (store, seen)
}

fn claim_now(store: &LayeredIdempotencyStore, fingerprint: u8) -> Result<ClaimOutcome, StoreError> {
    block_on(store.claim(
        &scope(),
        &key(),
        &fp(fingerprint),
        IdempotencyPolicy::default(),
        now(),
    ))
}

fn cache_returning(state: Option<CachedState>) -> MockIdempotencyCache {
    let mut cache = MockIdempotencyCache::new();
    cache.expect_get().returning(move |_, _| Ok(state.clone()));
    cache
}

fn durable_never_claimed() -> MockIdempotencyStore {
    let mut durable = MockIdempotencyStore::new();
    durable.expect_claim().never();
    durable
}

#[test]
fn a_cached_response_is_replayed_without_the_durable_store() {
    let cache = cache_returning(Some(CachedState::Completed {
        fingerprint: fp(1),
        response: response(),
        expires_at: now() + Duration::hours(1),
    }));
    let (store, seen) = layered(durable_never_claimed(), cache);
    assert_eq!(
        claim_now(&store, 1).unwrap(),
        ClaimOutcome::Replay(response())
    );
    assert_eq!(claim_now(&store, 2).unwrap(), ClaimOutcome::Mismatch);
    assert_eq!(*seen.lock().unwrap(), vec![CacheUse::Hit, CacheUse::Hit]);
}

#[test]
fn a_live_lease_marker_answers_in_flight_in_whole_seconds() {
    let cache = cache_returning(Some(CachedState::Leased {
        fingerprint: fp(1),
        lease_until: now() + Duration::milliseconds(2_100),
    }));
    let (store, _) = layered(durable_never_claimed(), cache);
    assert_eq!(
        claim_now(&store, 1).unwrap(),
        ClaimOutcome::InFlight {
            retry_after: Duration::seconds(3)
        }
    );
}

#[test]
fn stale_entries_and_other_fingerprints_go_to_the_durable_store() {
    for state in [
        CachedState::Leased {
            fingerprint: fp(1),
            lease_until: now(),
        },
        CachedState::Leased {
            fingerprint: fp(9),
            lease_until: now() + Duration::hours(1),
        },
        CachedState::Completed {
            fingerprint: fp(1),
            response: response(),
            expires_at: now(),
        },
    ] {
        let mut durable = MockIdempotencyStore::new();
        durable
            .expect_claim()
            .times(1)
            .returning(|_, _, _, _, _| Ok(ClaimOutcome::Mismatch));
        let (store, seen) = layered(durable, cache_returning(Some(state.clone())));
        assert_eq!(
            claim_now(&store, 1).unwrap(),
            ClaimOutcome::Mismatch,
            "{state:?}"
        );
        assert_eq!(*seen.lock().unwrap(), vec![CacheUse::Miss]);
    }
}

#[test]
fn a_cache_failure_falls_back_to_the_durable_store() {
    let mut cache = MockIdempotencyCache::new();
    cache
        .expect_get()
        .returning(|_, _| Err(StoreError::unavailable("redis", "down")));
    cache
        .expect_try_lease()
        .returning(|_, _, _, _| Err(StoreError::unavailable("redis", "down")));
    let mut durable = MockIdempotencyStore::new();
    durable
        .expect_claim()
        .times(1)
        .returning(|_, _, _, _, _| Ok(ClaimOutcome::Claimed(claim())));
    let (store, seen) = layered(durable, cache);
    assert_eq!(
        claim_now(&store, 1).unwrap(),
        ClaimOutcome::Claimed(claim())
    );
    assert_eq!(*seen.lock().unwrap(), vec![CacheUse::Error]);
}

#[test]
fn a_won_claim_sets_a_lease_marker_until_the_lease_ends() {
    let mut cache = cache_returning(None);
    cache
        .expect_try_lease()
        .withf(|_, _, f, until| *f == fp(1) && *until == now() + IdempotencyPolicy::default().lease)
        .times(1)
        .returning(|_, _, _, _| Ok(true));
    let mut durable = MockIdempotencyStore::new();
    durable
        .expect_claim()
        .returning(|_, _, _, _, _| Ok(ClaimOutcome::Claimed(claim())));
    let (store, _) = layered(durable, cache);
    assert!(matches!(
        claim_now(&store, 1).unwrap(),
        ClaimOutcome::Claimed(_)
    ));
}

#[test]
fn completion_writes_the_durable_record_first_then_the_cache() {
    let mut durable = MockIdempotencyStore::new();
    durable.expect_complete().times(1).returning(|_, _| Ok(()));
    let mut cache = MockIdempotencyCache::new();
    cache
        .expect_put_completed()
        .with(
            eq(scope()),
            eq(key()),
            eq(fp(1)),
            eq(response()),
            eq(claim().expires_at),
        )
        .times(1)
        .returning(|_, _, _, _, _| Ok(()));
    let (store, _) = layered(durable, cache);
    block_on(store.complete(&claim(), &response())).unwrap();
}

#[test]
fn a_failed_durable_completion_never_reaches_the_cache() {
    let mut durable = MockIdempotencyStore::new();
    durable
        .expect_complete()
        .returning(|_, _| Err(StoreError::Conflict("lost".into())));
    let mut cache = MockIdempotencyCache::new();
    cache.expect_put_completed().never();
    let (store, _) = layered(durable, cache);
    assert!(matches!(
        block_on(store.complete(&claim(), &response())),
        Err(StoreError::Conflict(_))
    ));
}

#[test]
fn abandoning_clears_the_marker() {
    let mut durable = MockIdempotencyStore::new();
    durable.expect_abandon().times(1).returning(|_| Ok(()));
    let mut cache = MockIdempotencyCache::new();
    cache.expect_remove().times(1).returning(|_, _| Ok(()));
    let (store, _) = layered(durable, cache);
    block_on(store.abandon(&claim())).unwrap();
}
