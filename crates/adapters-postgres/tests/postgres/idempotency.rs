use chrono::{Duration, Utc};
use diesel_async::RunQueryDsl;
use keel_adapters_postgres::PgIdempotencyStore;
use keel_adapters_postgres::testkit::TestDatabase;
use keel_domain::idempotency::{
    ClaimOutcome, IdempotencyKey, IdempotencyPolicy, IdempotencyStore, RequestFingerprint, Scope,
    StoredResponse,
};
use keel_domain::testkit::idempotency_store;

#[tokio::test(flavor = "multi_thread")]
async fn keeps_the_idempotency_store_contract() {
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    idempotency_store::run_all(&PgIdempotencyStore::new(db.pool().clone())).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn two_stores_on_one_database_share_keys() {
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    let node_a = PgIdempotencyStore::new(db.pool().clone());
    let node_b = PgIdempotencyStore::new(db.pool().clone());
    let scope = Scope::user("shared");
    let key = IdempotencyKey::parse("k-1").unwrap();
    let fp = RequestFingerprint::compute("POST", "/x", "user:shared", b"{}");
    let policy = IdempotencyPolicy::default();
    let ClaimOutcome::Claimed(claim) = node_a
        .claim(&scope, &key, &fp, policy, Utc::now())
        .await
        .unwrap()
    else {
        panic!("first claim must win");
    };
    let response = StoredResponse {
        status: 201,
        headers: vec![],
        body: b"{}".to_vec(),
    };
    node_a.complete(&claim, &response).await.unwrap();
    assert_eq!(
        node_b
            .claim(&scope, &key, &fp, policy, Utc::now())
            .await
            .unwrap(),
        ClaimOutcome::Replay(response)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn schema_refuses_a_completed_row_without_a_response() {
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    let mut conn = db.pool().get().await.unwrap();
    let result = diesel::sql_query(
        "INSERT INTO idempotency_keys (scope, key, fingerprint, claim_id, state, expires_at) \
         VALUES ('s', 'k', decode(repeat('00', 32), 'hex'), gen_random_uuid(), 'completed', now())",
    )
    .execute(&mut conn)
    .await;
    assert!(result.is_err(), "the state shape check must refuse the row");
}

#[tokio::test(flavor = "multi_thread")]
async fn purge_is_bounded_by_expiry_only() {
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    let store = PgIdempotencyStore::new(db.pool().clone());
    let now = Utc::now();
    let policy = IdempotencyPolicy {
        ttl: Duration::hours(1),
        lease: Duration::seconds(30),
    };
    let fp = RequestFingerprint::compute("POST", "/x", "u", b"");
    for i in 0..20 {
        let key = IdempotencyKey::parse(&format!("k{i}")).unwrap();
        let at = now + Duration::minutes(i);
        store
            .claim(&Scope::user("p"), &key, &fp, policy, at)
            .await
            .unwrap();
    }
    // Records claimed at minutes 0..=9 expire by now + 1h9m; the rest live on.
    assert_eq!(
        store
            .purge_expired(now + Duration::minutes(69))
            .await
            .unwrap(),
        10
    );
    assert_eq!(
        store
            .purge_expired(now + Duration::minutes(69))
            .await
            .unwrap(),
        0
    );
}
