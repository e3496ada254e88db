//! The attendance store's contract on Postgres, and the schema's own guarantees.

use std::sync::Arc;

use diesel_async::RunQueryDsl;
use keel_adapters_postgres::attendance::PgAttendanceStore;
use keel_adapters_postgres::testkit::TestDatabase;
use keel_adapters_postgres::{PgJobQueue, PgUserStore};
use keel_domain::testkit::attendance_store;

#[tokio::test(flavor = "multi_thread")]
async fn keeps_the_attendance_store_contract() {
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    attendance_store::run_all(
        Arc::new(PgAttendanceStore::new(db.pool().clone())),
        Arc::new(PgUserStore::new(db.pool().clone())),
        Arc::new(PgJobQueue::new(db.pool().clone())),
    )
    .await;
}

async fn sql(db: &TestDatabase, statement: &str) -> Result<usize, diesel::result::Error> {
    let mut conn = db.pool().get().await.unwrap();
    diesel::sql_query(statement).execute(&mut conn).await
}

async fn count(db: &TestDatabase, table: &str) -> i64 {
    #[derive(diesel::QueryableByName)]
    struct Count {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    let mut conn = db.pool().get().await.unwrap();
    let rows: Vec<Count> = diesel::sql_query(format!("SELECT count(*) AS n FROM {table}"))
        .load(&mut conn)
        .await
        .unwrap();
    rows[0].n
}

#[tokio::test(flavor = "multi_thread")]
async fn attendances_and_certificates_are_append_only_yet_follow_a_deleted_user() {
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    let setup = [
        "INSERT INTO users (id, email, display_name, role, password_hash, created_at) VALUES \
         ('00000000-0000-0000-0000-000000000001', 'o@a.test', 'O', 'organizer', 'x', now()), \
         ('00000000-0000-0000-0000-000000000002', 'p@a.test', 'P', 'participant', 'x', now())",
        "INSERT INTO events VALUES ('00000000-0000-0000-0000-0000000000e1', 't', now(), \
         now() + interval '1 hour', '00000000-0000-0000-0000-000000000001', now(), NULL)",
        "INSERT INTO event_participants VALUES ('00000000-0000-0000-0000-0000000000e1', \
         '00000000-0000-0000-0000-000000000002', now())",
        "INSERT INTO attendances VALUES ('00000000-0000-0000-0000-0000000000e1', \
         '00000000-0000-0000-0000-000000000002', '00000000-0000-0000-0000-000000000001', now())",
        "INSERT INTO certificates VALUES (gen_random_uuid(), '00000000-0000-0000-0000-0000000000e1', \
         '00000000-0000-0000-0000-000000000002', 'P', 't', 'aaaaaaaaaaaaaaaaaaaaaa', now(), 'doc')",
    ];
    for statement in setup {
        sql(&db, statement).await.unwrap();
    }
    assert!(
        sql(&db, "UPDATE attendances SET scanned_at = now()")
            .await
            .is_err()
    );
    assert!(sql(&db, "DELETE FROM attendances").await.is_err());
    assert!(
        sql(&db, "UPDATE certificates SET document = 'forged'")
            .await
            .is_err()
    );
    assert!(sql(&db, "DELETE FROM certificates").await.is_err());
    assert!(
        sql(
            &db,
            "INSERT INTO events VALUES (gen_random_uuid(), 't', now(), now(), NULL, now(), NULL)"
        )
        .await
        .is_err(),
        "an event ends after it starts"
    );

    // Deleting the organizer keeps the event and the records; deleting the participant takes
    // their records with them.
    sql(
        &db,
        "DELETE FROM users WHERE id = '00000000-0000-0000-0000-000000000001'",
    )
    .await
    .unwrap();
    assert_eq!(count(&db, "events WHERE organizer_id IS NULL").await, 1);
    assert_eq!(count(&db, "attendances WHERE scanned_by IS NULL").await, 1);
    sql(
        &db,
        "DELETE FROM users WHERE id = '00000000-0000-0000-0000-000000000002'",
    )
    .await
    .unwrap();
    assert_eq!(count(&db, "attendances").await, 0);
    assert_eq!(count(&db, "certificates").await, 0);
    assert_eq!(count(&db, "events").await, 1);
}
