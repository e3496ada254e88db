//! The Postgres score store: the shared contract, plus what only the database can prove.

use diesel_async::RunQueryDsl;
use keel_adapters_postgres::PgScoreStore;
use keel_adapters_postgres::testkit::TestDatabase;
use keel_domain::identity::user::UserId;
use keel_domain::identity::values::Role;
use keel_domain::scoreboard::{ApplyScore, ScoreStore};
use keel_domain::testkit::score_store::{action, run_all};
use keel_domain::testkit::support::{stored_user, whole_second_now};
use uuid::Uuid;

#[tokio::test(flavor = "multi_thread")]
async fn postgres_scores_keep_the_contract() {
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    let users = keel_adapters_postgres::PgUserStore::new(db.pool().clone());
    run_all(&PgScoreStore::new(db.pool().clone()), &users).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn history_is_append_only_but_a_deleted_user_is_anonymised() {
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    let store = PgScoreStore::new(db.pool().clone());
    let users = keel_adapters_postgres::PgUserStore::new(db.pool().clone());
    let user = stored_user(&users, Role::Participant).await;
    assert!(matches!(
        store
            .apply(&action(user, 5, whole_second_now()))
            .await
            .unwrap(),
        ApplyScore::Applied { .. }
    ));
    let mut conn = db.pool().get().await.unwrap();
    for refused in [
        "UPDATE score_actions SET new_score = new_score + 1000, delta = delta + 1000",
        "DELETE FROM score_actions",
        "TRUNCATE score_actions",
        "UPDATE scores SET score = 5000000",
    ] {
        let outcome = diesel::sql_query(refused).execute(&mut conn).await;
        assert!(outcome.is_err(), "{refused} must be refused");
    }
    assert!(store.remove_user(user).await.unwrap());
    let named: i64 = diesel::dsl::sql::<diesel::sql_types::BigInt>(
        "SELECT count(*) FROM score_actions WHERE user_id IS NOT NULL",
    )
    .get_result(&mut conn)
    .await
    .unwrap();
    assert_eq!(named, 0, "history kept, without the user");
}

#[tokio::test(flavor = "multi_thread")]
async fn display_names_are_read_for_a_page_in_one_query() {
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    let store = PgScoreStore::new(db.pool().clone());
    let users = keel_adapters_postgres::PgUserStore::new(db.pool().clone());
    let named = stored_user(&users, Role::Participant).await;
    let gone = UserId(Uuid::now_v7());
    let names = store.display_names(&[named, gone]).await.unwrap();
    assert_eq!(names.len(), 1, "a deleted or unknown user has no name");
    assert_eq!(names[&named], "Tester");
}

fn receipt_of(outcome: &Result<ApplyScore, keel_domain::StoreError>) -> (i64, i64) {
    match outcome {
        Ok(ApplyScore::Applied { receipt, .. }) => (receipt.old_score, receipt.new_score),
        other => panic!("expected Applied, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_batch_with_one_user_twice_applies_both_in_order() {
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    let store = PgScoreStore::new(db.pool().clone());
    let users = keel_adapters_postgres::PgUserStore::new(db.pool().clone());
    let (u, v) = (
        stored_user(&users, Role::Participant).await,
        stored_user(&users, Role::Participant).await,
    );
    let now = whole_second_now();
    let repeated = action(u, 10, now);
    let batch = [
        repeated.clone(),
        action(u, 10, now),
        action(v, 5, now),
        repeated.clone(),
        action(u, 10, now),
    ];
    let outcomes = store.apply_all(&batch).await;
    assert_eq!(receipt_of(&outcomes[0]), (0, 10));
    assert_eq!(receipt_of(&outcomes[1]), (10, 20));
    assert_eq!(receipt_of(&outcomes[2]), (0, 5));
    assert!(
        matches!(outcomes[3], Ok(ApplyScore::Replayed(r)) if r.new_score == 10),
        "the same action twice in one batch applies once: {:?}",
        outcomes[3]
    );
    assert_eq!(receipt_of(&outcomes[4]), (20, 30));
    let ranked = store.rank(u).await.unwrap().unwrap();
    assert_eq!((ranked.rank, ranked.standing.score), (1, 30));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_batch_refused_by_the_database_answers_each_action_on_its_own() {
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    let store = PgScoreStore::new(db.pool().clone());
    let users = keel_adapters_postgres::PgUserStore::new(db.pool().clone());
    let (u, v, w) = (
        stored_user(&users, Role::Participant).await,
        stored_user(&users, Role::Participant).await,
        stored_user(&users, Role::Participant).await,
    );
    let now = whole_second_now();
    let taken = action(u, 10, now);
    // Another connection uses the action id first and commits while the batch waits on it: the
    // batch's history insert then fails as a whole, and each action is retried alone.
    let mut other = db.pool().get().await.unwrap();
    diesel_async::SimpleAsyncConnection::batch_execute(
        &mut *other,
        &format!(
            "BEGIN; INSERT INTO score_actions (action_id, user_id, action_type, delta, \
             old_score, new_score, rank, token_hash, created_at) VALUES ('{}', '{}', \
             'COMPLETE_TASK', 1, 0, 1, 1, decode(repeat('ab', 32), 'hex'), now())",
            taken.action_id, u.0
        ),
    )
    .await
    .unwrap();
    let batch = [action(v, 5, now), taken.clone(), action(w, 7, now)];
    let running = {
        let store = store.clone();
        tokio::spawn(async move { store.apply_all(&batch).await })
    };
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    diesel_async::SimpleAsyncConnection::batch_execute(&mut *other, "COMMIT")
        .await
        .unwrap();
    let outcomes = running.await.unwrap();
    assert_eq!(receipt_of(&outcomes[0]), (0, 5));
    assert!(
        matches!(outcomes[1], Ok(ApplyScore::UsedOtherwise)),
        "{:?}",
        outcomes[1]
    );
    assert_eq!(receipt_of(&outcomes[2]), (0, 7));
    assert_eq!(store.rank(u).await.unwrap(), None, "nothing scored for u");
    let top = store.top(10).await.unwrap();
    let scores: Vec<i64> = top.iter().map(|r| r.standing.score).collect();
    assert_eq!(scores, vec![7, 5], "each scored once");
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_updates_are_grouped_into_batches() {
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    let store = PgScoreStore::new(db.pool().clone());
    let users = keel_adapters_postgres::PgUserStore::new(db.pool().clone());
    let mut members = Vec::new();
    for _ in 0..20 {
        members.push(stored_user(&users, Role::Participant).await);
    }
    let now = whole_second_now();
    let actions: Vec<_> = (0..3)
        .flat_map(|_| members.iter().map(|u| action(*u, 2, now)))
        .collect();
    let outcomes = futures_util::future::join_all(actions.iter().map(|a| store.apply(a))).await;
    assert!(
        outcomes
            .iter()
            .all(|o| matches!(o, Ok(ApplyScore::Applied { .. })))
    );
    let stats = store.batch_stats();
    assert_eq!(stats.actions, 60);
    assert!(
        stats.batches < 60,
        "some actions shared a statement: {stats:?}"
    );
    let top = store.top(100).await.unwrap();
    assert_eq!(top.len(), 20);
    assert!(top.iter().all(|r| r.standing.score == 6));
}
