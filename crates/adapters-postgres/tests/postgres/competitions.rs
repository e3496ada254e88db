//! The competition store contract on Postgres, and what the schema adds: the seat CHECK and the
//! anonymising foreign key on account deletion.

use chrono::Duration;
use diesel_async::RunQueryDsl;
use keel_adapters_postgres::competitions::PgCompetitionStore;
use keel_adapters_postgres::testkit::TestDatabase;
use keel_adapters_postgres::{PgJobQueue, PgUserStore};
use keel_domain::competitions::{CompetitionStore, RegisterOutcome};
use keel_domain::identity::store::UserStore;
use keel_domain::testkit::competition_store::{Fixture, competition, run_all, user};
use keel_domain::testkit::support::whole_second_now;

#[tokio::test(flavor = "multi_thread")]
async fn postgres_store_keeps_the_contract() {
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    let store = PgCompetitionStore::new(db.pool().clone());
    let users = PgUserStore::new(db.pool().clone());
    let jobs = PgJobQueue::new(db.pool().clone());
    run_all(&Fixture {
        store: &store,
        users: &users,
        jobs: &jobs,
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn deleting_a_user_anonymises_the_row_until_its_seat_is_released() {
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    let store = PgCompetitionStore::new(db.pool().clone());
    let users = PgUserStore::new(db.pool().clone());
    let c = competition(&store, 2, Duration::hours(5), whole_second_now()).await;
    let u = user(&users).await;
    let new = keel_domain::competitions::NewRegistration {
        id: keel_domain::competitions::RegistrationId(uuid::Uuid::now_v7()),
        competition_id: c.id,
        user_id: u,
        registered_at: whole_second_now(),
    };
    let outcome = store
        .register(&new, &[], None, whole_second_now())
        .await
        .unwrap();
    assert!(matches!(
        outcome,
        RegisterOutcome::Registered { seats_left: 1, .. }
    ));
    // The account goes first (as DELETE /users does); the foreign key cannot block it.
    assert!(users.delete(u).await.unwrap());
    let row = store.registration(new.id).await.unwrap().unwrap();
    assert_eq!(row.user_id, None, "anonymised, still holding its seat");
    assert_eq!(store.get(c.id).await.unwrap().unwrap().seats_taken, 1);
    // The UserDeleted subscriber releases it (rows anonymised by then included).
    assert_eq!(store.release_user(u, whole_second_now()).await.unwrap(), 1);
    assert_eq!(store.get(c.id).await.unwrap().unwrap().seats_taken, 0);
    assert_eq!(store.registration_count(c.id).await.unwrap(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_schema_refuses_an_oversold_competition() {
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    let store = PgCompetitionStore::new(db.pool().clone());
    let c = competition(&store, 1, Duration::hours(5), whole_second_now()).await;
    let mut conn = db.pool().get().await.unwrap();
    for seats in [2, -1] {
        let refused = diesel::sql_query("UPDATE competitions SET seats_taken = $1 WHERE id = $2")
            .bind::<diesel::sql_types::Integer, _>(seats)
            .bind::<diesel::sql_types::Uuid, _>(c.id.0)
            .execute(&mut conn)
            .await;
        assert!(refused.is_err(), "seats_taken = {seats} must be refused");
    }
}

struct Receipt(keel_domain::idempotency::Claim);

impl keel_domain::competitions::RegistrationReceipt for Receipt {
    fn claim(&self) -> &keel_domain::idempotency::Claim {
        &self.0
    }

    fn response(
        &self,
        registration: &keel_domain::competitions::NewRegistration,
        seats_left: u32,
    ) -> Result<keel_domain::idempotency::StoredResponse, keel_domain::StoreError> {
        Ok(keel_domain::idempotency::StoredResponse {
            status: 201,
            headers: vec![],
            body: format!("{}:{seats_left}", registration.id).into_bytes(),
        })
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_idempotent_response_commits_with_the_seat_or_not_at_all() {
    use keel_adapters_postgres::PgIdempotencyStore;
    use keel_domain::idempotency::{
        ClaimOutcome, IdempotencyKey, IdempotencyPolicy, IdempotencyStore, RequestFingerprint,
        Scope,
    };
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    let store = PgCompetitionStore::new(db.pool().clone());
    let users = PgUserStore::new(db.pool().clone());
    let keys = PgIdempotencyStore::new(db.pool().clone());
    let c = competition(&store, 5, Duration::hours(5), whole_second_now()).await;
    let fp = RequestFingerprint::compute("POST", "/c", "u", b"");
    let claim = |key: &'static str| {
        let keys = &keys;
        let fp = &fp;
        async move {
            match keys
                .claim(
                    &Scope::user("u"),
                    &IdempotencyKey::parse(key).unwrap(),
                    fp,
                    IdempotencyPolicy::default(),
                    whole_second_now(),
                )
                .await
                .unwrap()
            {
                ClaimOutcome::Claimed(claim) => claim,
                other => panic!("{other:?}"),
            }
        }
    };
    let registration = |user| keel_domain::competitions::NewRegistration {
        id: keel_domain::competitions::RegistrationId(uuid::Uuid::now_v7()),
        competition_id: c.id,
        user_id: user,
        registered_at: whole_second_now(),
    };

    let first = registration(user(&users).await);
    let receipt = Receipt(claim("k-1").await);
    let outcome = store
        .register(&first, &[], Some(&receipt), whole_second_now())
        .await
        .unwrap();
    assert_eq!(
        outcome,
        RegisterOutcome::Registered {
            seats_left: 4,
            receipt_stored: true
        }
    );
    let replay = keys
        .claim(
            &Scope::user("u"),
            &IdempotencyKey::parse("k-1").unwrap(),
            &fp,
            IdempotencyPolicy::default(),
            whole_second_now(),
        )
        .await
        .unwrap();
    match replay {
        ClaimOutcome::Replay(response) => {
            assert_eq!(response.body, format!("{}:4", first.id).into_bytes());
        }
        other => panic!("expected a replay, got {other:?}"),
    }

    // A claim already completed elsewhere cannot be completed again: the seat rolls back.
    let second = registration(user(&users).await);
    let lost = Receipt(claim("k-2").await);
    keys.complete(
        &lost.0,
        &keel_domain::idempotency::StoredResponse {
            status: 500,
            headers: vec![],
            body: vec![],
        },
    )
    .await
    .unwrap();
    assert!(
        store
            .register(&second, &[], Some(&lost), whole_second_now())
            .await
            .is_err()
    );
    assert_eq!(store.registration(second.id).await.unwrap(), None);
    assert_eq!(store.get(c.id).await.unwrap().unwrap().seats_taken, 1);
}
