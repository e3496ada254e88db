//! The contract every [`IdempotencyStore`] keeps.

use chrono::{DateTime, Duration, Utc};
use futures_util::future::join_all;
use uuid::Uuid;

use crate::StoreError;
use crate::idempotency::{
    Claim, ClaimOutcome, IdempotencyKey, IdempotencyPolicy, IdempotencyStore, RequestFingerprint,
    Scope, StoredResponse,
};

/// Runs every case of the contract against `store`, starting at the real current time.
pub async fn run_all(store: &dyn IdempotencyStore) {
    first_claim_wins_and_repeat_sees_in_flight(store).await;
    completed_key_replays_the_exact_response(store).await;
    another_request_with_the_key_is_a_mismatch(store).await;
    dead_claim_is_taken_over_and_cannot_complete(store).await;
    abandoned_claim_can_be_claimed_again(store).await;
    expired_record_is_claimed_afresh(store).await;
    purge_removes_only_expired_records(store).await;
    scopes_do_not_share_keys(store).await;
    concurrent_claims_have_exactly_one_winner(store).await;
}

struct Case {
    scope: Scope,
    key: IdempotencyKey,
    fingerprint: RequestFingerprint,
    policy: IdempotencyPolicy,
    now: DateTime<Utc>,
}

impl Case {
    fn new() -> Self {
        let id = Uuid::new_v4();
        let key = IdempotencyKey::parse(&format!("key-{id}")).unwrap_or_else(|e| panic!("{e}"));
        Self {
            scope: Scope::user(id),
            key,
            fingerprint: fingerprint(1),
            policy: IdempotencyPolicy {
                ttl: Duration::hours(24),
                lease: Duration::seconds(30),
            },
            // Postgres stores microseconds: keep "now" on a whole second so comparisons are exact.
            now: super::support::whole_second_now(),
        }
    }

    async fn claim_at(
        &self,
        store: &dyn IdempotencyStore,
        fingerprint: &RequestFingerprint,
        now: DateTime<Utc>,
    ) -> ClaimOutcome {
        ok(store
            .claim(&self.scope, &self.key, fingerprint, self.policy, now)
            .await)
    }

    async fn claim(&self, store: &dyn IdempotencyStore) -> ClaimOutcome {
        self.claim_at(store, &self.fingerprint, self.now).await
    }
}

fn fingerprint(n: u8) -> RequestFingerprint {
    RequestFingerprint::compute("POST", "/api/v1/things", "user:contract", &[n])
}

fn response() -> StoredResponse {
    StoredResponse {
        status: 201,
        headers: vec![
            ("content-type".into(), "application/json".into()),
            ("location".into(), "/api/v1/things/7".into()),
        ],
        body: br#"{"id":7,"name":"\u00e9t\u00e9"}"#.to_vec(),
    }
}

use super::support::ok;

fn claimed(outcome: ClaimOutcome) -> Claim {
    match outcome {
        ClaimOutcome::Claimed(claim) => claim,
        other => panic!("expected Claimed, got {other:?}"),
    }
}

async fn first_claim_wins_and_repeat_sees_in_flight(store: &dyn IdempotencyStore) {
    let case = Case::new();
    let claim = claimed(case.claim(store).await);
    assert_eq!(claim.key, case.key);
    assert_eq!(claim.scope, case.scope);
    match case.claim(store).await {
        ClaimOutcome::InFlight { retry_after } => {
            assert!(retry_after >= Duration::seconds(1) && retry_after <= case.policy.lease);
        }
        other => panic!("repeat while in flight must be InFlight, got {other:?}"),
    }
}

async fn completed_key_replays_the_exact_response(store: &dyn IdempotencyStore) {
    let case = Case::new();
    let claim = claimed(case.claim(store).await);
    ok(store.complete(&claim, &response()).await);
    for _ in 0..3 {
        assert_eq!(case.claim(store).await, ClaimOutcome::Replay(response()));
    }
}

async fn another_request_with_the_key_is_a_mismatch(store: &dyn IdempotencyStore) {
    let case = Case::new();
    let claim = claimed(case.claim(store).await);
    let other = fingerprint(2);
    assert_eq!(
        case.claim_at(store, &other, case.now).await,
        ClaimOutcome::Mismatch
    );
    ok(store.complete(&claim, &response()).await);
    assert_eq!(
        case.claim_at(store, &other, case.now).await,
        ClaimOutcome::Mismatch
    );
}

async fn dead_claim_is_taken_over_and_cannot_complete(store: &dyn IdempotencyStore) {
    let case = Case::new();
    let dead = claimed(case.claim(store).await);
    let after_lease = case.now + case.policy.lease + Duration::seconds(1);
    let live = claimed(case.claim_at(store, &case.fingerprint, after_lease).await);
    assert_ne!(
        dead.claim_id, live.claim_id,
        "a takeover must issue a new claim id"
    );
    match store.complete(&dead, &response()).await {
        Err(StoreError::Conflict(_)) => {}
        other => panic!("completing a lost claim must conflict, got {other:?}"),
    }
    ok(store.abandon(&dead).await);
    ok(store.complete(&live, &response()).await);
    assert_eq!(
        case.claim_at(store, &case.fingerprint, after_lease).await,
        ClaimOutcome::Replay(response())
    );
}

async fn abandoned_claim_can_be_claimed_again(store: &dyn IdempotencyStore) {
    let case = Case::new();
    let first = claimed(case.claim(store).await);
    ok(store.abandon(&first).await);
    let second = claimed(case.claim(store).await);
    assert_ne!(first.claim_id, second.claim_id);
}

async fn expired_record_is_claimed_afresh(store: &dyn IdempotencyStore) {
    let case = Case::new();
    let first = claimed(case.claim(store).await);
    ok(store.complete(&first, &response()).await);
    let after_ttl = case.now + case.policy.ttl;
    let other = fingerprint(3);
    let fresh = claimed(case.claim_at(store, &other, after_ttl).await);
    assert_eq!(fresh.fingerprint, other);
}

async fn purge_removes_only_expired_records(store: &dyn IdempotencyStore) {
    let old = Case::new();
    let young = Case {
        now: old.now + Duration::hours(2),
        ..Case::new()
    };
    for case in [&old, &young] {
        let claim = claimed(case.claim(store).await);
        ok(store.complete(&claim, &response()).await);
    }
    let purged = ok(store.purge_expired(old.now + old.policy.ttl).await);
    assert!(purged >= 1, "the expired record must be purged");
    let check_at = old.now + old.policy.ttl;
    assert_eq!(
        young.claim_at(store, &young.fingerprint, check_at).await,
        ClaimOutcome::Replay(response()),
        "a live record must survive the purge"
    );
    claimed(old.claim_at(store, &fingerprint(9), check_at).await);
}

async fn scopes_do_not_share_keys(store: &dyn IdempotencyStore) {
    let a = Case::new();
    let b = Case {
        key: a.key.clone(),
        ..Case::new()
    };
    claimed(a.claim(store).await);
    claimed(b.claim(store).await);
}

async fn concurrent_claims_have_exactly_one_winner(store: &dyn IdempotencyStore) {
    let case = Case::new();
    let outcomes = join_all((0..30).map(|_| case.claim(store))).await;
    let winners = outcomes
        .iter()
        .filter(|o| matches!(o, ClaimOutcome::Claimed(_)))
        .count();
    assert_eq!(winners, 1, "outcomes: {outcomes:?}");
    assert!(
        outcomes
            .iter()
            .all(|o| matches!(o, ClaimOutcome::Claimed(_) | ClaimOutcome::InFlight { .. }))
    );
}
