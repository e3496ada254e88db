//! The Postgres score store: the shared contract, plus what only the database can prove.

use diesel_async::RunQueryDsl;
use keel_adapters_postgres::PgScoreStore;
use keel_adapters_postgres::testkit::TestDatabase;
use keel_domain::identity::user::UserId;
use keel_domain::identity::values::Role;
use keel_domain::scoreboard::ScoreStore;
use keel_domain::testkit::score_store::{action, run_all};
use keel_domain::testkit::support::{stored_user, whole_second_now};
use uuid::Uuid;

#[tokio::test(flavor = "multi_thread")]
async fn postgres_scores_keep_the_contract() {
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    run_all(&PgScoreStore::new(db.pool().clone())).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn history_is_append_only_but_a_deleted_user_is_anonymised() {
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    let store = PgScoreStore::new(db.pool().clone());
    let user = UserId(Uuid::now_v7());
    store
        .apply(&action(user, 5, whole_second_now()))
        .await
        .unwrap();
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
