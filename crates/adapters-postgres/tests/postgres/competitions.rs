//! The competition store contract on Postgres, and what the schema adds: the seat CHECK and the
//! anonymising foreign key on account deletion.

use chrono::Duration;
use diesel_async::RunQueryDsl;
use keel_adapters_postgres::competitions::PgCompetitionStore;
use keel_adapters_postgres::testkit::TestDatabase;
use keel_adapters_postgres::{PgJobQueue, PgUserStore};
use keel_domain::competitions::{CompetitionStore, RegisterOutcome};
use keel_domain::identity::store::UserStore;
use keel_domain::testkit::competition_store::{
    Fixture, SeatOp, competition, random_ops_keep_seats_equal_to_rows, run_all, user,
};
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

/// The crash-safe path: the account row is deleted directly (no `UserDeleted` event, as after a
/// crash or a lost event); the `competitions.release_deleted` job alone frees the seat.
#[tokio::test(flavor = "multi_thread")]
async fn the_release_deleted_job_frees_seats_whose_event_was_lost() {
    use keel_domain::competitions::{ReleaseDeletedSeats, ReleaseDeletedSeatsHandler};
    use keel_domain::jobs::{JobContext, JobHandler, JobId};

    let Some(db) = TestDatabase::create().await else {
        return;
    };
    let store = PgCompetitionStore::new(db.pool().clone());
    let users = PgUserStore::new(db.pool().clone());
    let c = competition(&store, 1, Duration::hours(5), whole_second_now()).await;
    let started = competition(&store, 1, Duration::hours(2), whole_second_now()).await;
    let (u, kept) = (user(&users).await, user(&users).await);
    for (competition, user) in [(&c, u), (&started, u), (&c, kept)] {
        let new = keel_domain::competitions::NewRegistration {
            id: keel_domain::competitions::RegistrationId(uuid::Uuid::now_v7()),
            competition_id: competition.id,
            user_id: user,
            registered_at: whole_second_now(),
        };
        store
            .register(&new, &[], None, whole_second_now())
            .await
            .unwrap();
    }
    assert_eq!(store.get(c.id).await.unwrap().unwrap().seats_taken, 1);
    let mut conn = db.pool().get().await.unwrap();
    diesel::sql_query("DELETE FROM users WHERE id = $1")
        .bind::<diesel::sql_types::Uuid, _>(u.as_uuid())
        .execute(&mut conn)
        .await
        .unwrap();
    assert_eq!(store.get(c.id).await.unwrap().unwrap().seats_taken, 1);

    // Three hours on: `started` has begun (its seat stays), `c` has not.
    struct Later;
    impl keel_domain::Clock for Later {
        fn now(&self) -> chrono::DateTime<chrono::Utc> {
            whole_second_now() + Duration::hours(3)
        }
    }
    let handler = ReleaseDeletedSeatsHandler::new(
        std::sync::Arc::new(store.clone()),
        std::sync::Arc::new(Later),
    );
    let ctx = JobContext {
        id: JobId(uuid::Uuid::now_v7()),
        attempt: 1,
        max_attempts: 3,
        created_at: whole_second_now(),
    };
    handler.run(&ctx, ReleaseDeletedSeats).await.unwrap();
    assert_eq!(store.get(c.id).await.unwrap().unwrap().seats_taken, 0);
    assert_eq!(store.registration_count(c.id).await.unwrap(), 0);
    assert_eq!(store.get(started.id).await.unwrap().unwrap().seats_taken, 1);
    assert_eq!(store.registration_count(started.id).await.unwrap(), 1);
    // Idempotent; the remaining registrant of `c` is untouched.
    handler.run(&ctx, ReleaseDeletedSeats).await.unwrap();
    let late = keel_domain::competitions::NewRegistration {
        id: keel_domain::competitions::RegistrationId(uuid::Uuid::now_v7()),
        competition_id: c.id,
        user_id: user(&users).await,
        registered_at: whole_second_now(),
    };
    assert!(matches!(
        store
            .register(&late, &[], None, whole_second_now())
            .await
            .unwrap(),
        RegisterOutcome::Registered { seats_left: 0, .. }
    ));
}

/// Seeded random register / withdraw / release sequences through the port (fewer than the
/// memory adapter's property test: each step is a few round trips).
#[tokio::test(flavor = "multi_thread")]
async fn random_sequences_through_the_port_keep_the_seat_rules() {
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    let store = PgCompetitionStore::new(db.pool().clone());
    let users = PgUserStore::new(db.pool().clone());
    let jobs = PgJobQueue::new(db.pool().clone());
    let fixture = Fixture {
        store: &store,
        users: &users,
        jobs: &jobs,
    };
    let mut seed: u64 = 0x2545_F491_4F6C_DD1D;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for _ in 0..8 {
        let mut people = Vec::new();
        for _ in 0..5 {
            people.push(user(&users).await);
        }
        let capacity = 1 + (next() % 4) as u32;
        let ops: Vec<SeatOp> = (0..30)
            .map(|_| {
                let who = (next() % 5) as usize;
                match next() % 5 {
                    0 => SeatOp::Withdraw(who),
                    1 => SeatOp::Release(who),
                    _ => SeatOp::Register(who),
                }
            })
            .collect();
        random_ops_keep_seats_equal_to_rows(&fixture, &people, capacity, &ops).await;
    }
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

/// Group commit: 300 concurrent calls through two stores ("nodes") for 100 seats, 20 of them
/// already taken by users who call again, plus 20 users calling twice at once. Exactly 100 rows,
/// no user twice, every repeat answered `AlreadyRegistered`, two jobs per row, and batches of
/// more than one call formed.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_registrations_are_group_committed_without_oversell() {
    use std::collections::{HashMap, HashSet};

    use diesel::QueryDsl;
    use keel_adapters_postgres::schema::jobs;
    use keel_domain::competitions::service::registration_jobs;
    use keel_domain::competitions::{NewRegistration, RegistrationId};

    let Some(db) = TestDatabase::create().await else {
        return;
    };
    let node_a = PgCompetitionStore::new(db.pool().clone());
    let node_b = PgCompetitionStore::new(db.pool().clone());
    let users = PgUserStore::new(db.pool().clone());
    let c = competition(&node_a, 100, Duration::hours(5), whole_second_now()).await;
    let call = |u| {
        let now = whole_second_now();
        let new = NewRegistration {
            id: RegistrationId(uuid::Uuid::now_v7()),
            competition_id: c.id,
            user_id: u,
            registered_at: now,
        };
        let jobs = registration_jobs(&new, &c, now).expect("jobs");
        (new, jobs, now)
    };

    let mut early = Vec::new();
    for _ in 0..20 {
        let u = user(&users).await;
        let (new, jobs, now) = call(u);
        let outcome = node_a
            .register(&new, &jobs, None, now)
            .await
            .expect("register");
        assert!(matches!(outcome, RegisterOutcome::Registered { .. }));
        early.push(u);
    }
    let mut twice = Vec::new();
    for _ in 0..20 {
        twice.push(user(&users).await);
    }
    let mut racers: Vec<_> = early.clone();
    racers.extend(twice.iter().copied());
    racers.extend(twice.iter().copied());
    for _ in 0..240 {
        racers.push(user(&users).await);
    }
    // Interleave so repeats land in the same and in different batches.
    let mut seed: u64 = 0x9E37_79B9_7F4A_7C15;
    for i in (1..racers.len()).rev() {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        racers.swap(i, (seed % (i as u64 + 1)) as usize);
    }
    let calls: Vec<_> = racers.iter().map(|&u| (u, call(u))).collect();
    let before = (node_a.batch_stats(), node_b.batch_stats());
    let outcomes = futures_util::future::join_all(calls.iter().enumerate().map(
        |(n, (u, (new, jobs, now)))| {
            let node = if n % 2 == 0 { &node_a } else { &node_b };
            async move { (*u, node.register(new, jobs, None, *now).await) }
        },
    ))
    .await;

    let mut registered: HashMap<_, usize> = HashMap::new();
    let mut already = 0;
    let mut full = 0;
    for (u, outcome) in &outcomes {
        match outcome.as_ref().expect("no store error") {
            RegisterOutcome::Registered { .. } => *registered.entry(*u).or_default() += 1,
            RegisterOutcome::AlreadyRegistered => already += 1,
            RegisterOutcome::Full => full += 1,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(registered.len(), 80, "80 seats were free");
    assert!(registered.values().all(|&n| n == 1), "one seat per user");
    let early: HashSet<_> = early.into_iter().collect();
    for (u, outcome) in &outcomes {
        if early.contains(u) {
            assert!(matches!(outcome, Ok(RegisterOutcome::AlreadyRegistered)));
        }
    }
    for u in &twice {
        let mine: Vec<_> = outcomes
            .iter()
            .filter(|(v, _)| v == u)
            .map(|(_, o)| o.as_ref().expect("no store error"))
            .collect();
        if mine
            .iter()
            .any(|o| matches!(o, RegisterOutcome::Registered { .. }))
        {
            assert!(
                mine.iter()
                    .any(|o| matches!(o, RegisterOutcome::AlreadyRegistered)),
                "the repeat of a registered user is AlreadyRegistered: {mine:?}"
            );
        }
    }
    assert_eq!(80 + already + full, 300);
    assert!(already >= 20);

    let after = store_seats(&node_a, c.id).await;
    assert_eq!(after, (100, 100), "seats_taken = rows = capacity");
    let mut conn = db.pool().get().await.expect("connection");
    let job_rows: i64 = jobs::table
        .count()
        .get_result(&mut conn)
        .await
        .expect("count jobs");
    assert_eq!(job_rows, 200, "a confirmation and a reminder per row");
    let (a, b) = (node_a.batch_stats(), node_b.batch_stats());
    assert!(
        a.shared > before.0.shared || b.shared > before.1.shared,
        "batches of several calls formed: {a:?} {b:?}"
    );
    assert_eq!(a.calls - before.0.calls + b.calls - before.1.calls, 300);
    assert!(a.largest > 1 || b.largest > 1);
}

async fn store_seats(
    store: &PgCompetitionStore,
    id: keel_domain::competitions::CompetitionId,
) -> (u32, u64) {
    let seats = store
        .get(id)
        .await
        .expect("get")
        .expect("competition")
        .seats_taken;
    let rows = store.registration_count(id).await.expect("count");
    (seats, rows)
}

/// Receipts in a batch: each caller's response commits with its own seat; a caller whose claim
/// was lost gets the error and no seat, and the others keep theirs.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn receipts_in_a_batch_commit_per_caller() {
    use keel_adapters_postgres::PgIdempotencyStore;
    use keel_domain::competitions::{NewRegistration, RegistrationId};
    use keel_domain::idempotency::{
        ClaimOutcome, IdempotencyKey, IdempotencyPolicy, IdempotencyStore, RequestFingerprint,
        Scope, StoredResponse,
    };
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    let store = PgCompetitionStore::new(db.pool().clone());
    let users = PgUserStore::new(db.pool().clone());
    let keys = PgIdempotencyStore::new(db.pool().clone());
    let c = competition(&store, 10, Duration::hours(5), whole_second_now()).await;
    let fp = RequestFingerprint::compute("POST", "/c", "u", b"");
    let claim = async |key: &str| match keys
        .claim(
            &Scope::user("u"),
            &IdempotencyKey::parse(key).expect("key"),
            &fp,
            IdempotencyPolicy::default(),
            whole_second_now(),
        )
        .await
        .expect("claim")
    {
        ClaimOutcome::Claimed(claim) => claim,
        other => panic!("{other:?}"),
    };
    let mut calls = Vec::new();
    for n in 0..6 {
        let new = NewRegistration {
            id: RegistrationId(uuid::Uuid::now_v7()),
            competition_id: c.id,
            user_id: user(&users).await,
            registered_at: whole_second_now(),
        };
        calls.push((new, Receipt(claim(&format!("batch-{n}")).await)));
    }
    let lost = &calls[2].1;
    keys.complete(
        &lost.0,
        &StoredResponse {
            status: 500,
            headers: vec![],
            body: vec![],
        },
    )
    .await
    .expect("complete elsewhere");
    let outcomes = futures_util::future::join_all(calls.iter().map(|(new, receipt)| {
        store.register(
            new,
            &[],
            Some(receipt as &dyn keel_domain::competitions::RegistrationReceipt),
            whole_second_now(),
        )
    }))
    .await;
    let mut seats_left = Vec::new();
    for (n, outcome) in outcomes.iter().enumerate() {
        let (new, receipt) = &calls[n];
        if n == 2 {
            assert!(outcome.is_err(), "the lost claim fails: {outcome:?}");
            assert_eq!(store.registration(new.id).await.expect("get"), None);
            continue;
        }
        let Ok(RegisterOutcome::Registered {
            seats_left: left,
            receipt_stored: true,
        }) = outcome
        else {
            panic!("registered with its receipt: {outcome:?}");
        };
        seats_left.push(*left);
        let replay = keys
            .claim(
                &Scope::user("u"),
                &receipt.0.key,
                &fp,
                IdempotencyPolicy::default(),
                whole_second_now(),
            )
            .await
            .expect("replay");
        match replay {
            ClaimOutcome::Replay(response) => {
                assert_eq!(response.body, format!("{}:{left}", new.id).into_bytes());
            }
            other => panic!("expected a replay, got {other:?}"),
        }
    }
    seats_left.sort_unstable();
    assert_eq!(
        seats_left,
        [5, 6, 7, 8, 9],
        "each caller saw the seats really left after its own, the lost seat counted as free"
    );
    assert_eq!(store_seats(&store, c.id).await, (5, 5));
}
