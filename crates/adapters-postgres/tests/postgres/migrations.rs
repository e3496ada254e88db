use diesel::migration::MigrationSource;
use keel_adapters_postgres::migrate::{MIGRATIONS, run_pending_migrations};
use keel_adapters_postgres::testkit::TestDatabase;

#[tokio::test(flavor = "multi_thread")]
async fn two_nodes_migrating_at_once_apply_each_migration_once() {
    let Some(db) = TestDatabase::create_empty().await else {
        return;
    };
    let (a, b) = tokio::join!(
        run_pending_migrations(db.url()),
        run_pending_migrations(db.url())
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    let expected = MigrationSource::<diesel::pg::Pg>::migrations(&MIGRATIONS)
        .unwrap()
        .len();
    assert_eq!(
        a.len() + b.len(),
        expected,
        "every migration applied exactly once: {a:?} {b:?}"
    );
    assert!(
        a.is_empty() || b.is_empty(),
        "the advisory lock serialises the runs: {a:?} {b:?}"
    );
    // A later run has nothing left to do.
    assert_eq!(
        run_pending_migrations(db.url()).await.unwrap(),
        Vec::<String>::new()
    );
}

/// Reverts the newest migrations of `url` until `version` is the last one applied.
async fn revert_to(url: &str, version: &str) {
    use diesel::Connection;
    use diesel_async::AsyncPgConnection;
    use diesel_async::async_connection_wrapper::AsyncConnectionWrapper;
    use diesel_migrations::MigrationHarness;
    let (url, version) = (url.to_owned(), version.to_owned());
    tokio::task::spawn_blocking(move || {
        let mut conn = AsyncConnectionWrapper::<AsyncPgConnection>::establish(&url).unwrap();
        while conn
            .applied_migrations()
            .unwrap()
            .iter()
            .max()
            .is_some_and(|last| last.to_string() != version)
        {
            conn.revert_last_migration(MIGRATIONS).unwrap();
        }
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn the_mail_migration_strips_addresses_from_queued_mail_jobs_only() {
    use diesel::sql_types::{Jsonb, Text};
    use diesel_async::{RunQueryDsl, SimpleAsyncConnection};
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    revert_to(db.url(), "20261126000011").await;
    let mut conn = db.pool().get().await.unwrap();
    conn.batch_execute(
        "INSERT INTO users (id, email, display_name, role, password_hash, created_at) VALUES \
         ('00000000-0000-0000-0000-000000000001', 'a@example.com', 'A', 'participant', 'x', now()); \
         INSERT INTO mailbox (id, user_id, to_address, subject, body, sent_at) VALUES \
         (gen_random_uuid(), '00000000-0000-0000-0000-000000000001', 'a@example.com', 's', 'b', now())",
    )
    .await
    .unwrap();
    for (kind, payload) in [
        (
            "mail.send",
            r#"{"id": 1, "user_id": "u", "to": "a@example.com", "subject": "s"}"#,
        ),
        (
            "competitions.reminder",
            r#"{"registration": "r", "to": "a@example.com"}"#,
        ),
        ("other.kind", r#"{"to": "kept"}"#),
    ] {
        diesel::sql_query(
            "INSERT INTO jobs (id, kind, payload, priority, state, attempt, max_attempts, run_at, \
             created_at) VALUES (gen_random_uuid(), $1, $2::jsonb, 0, 'available', 0, 3, now(), now())",
        )
        .bind::<Text, _>(kind)
        .bind::<Text, _>(payload)
        .execute(&mut conn)
        .await
        .unwrap();
    }
    drop(conn);
    let applied = run_pending_migrations(db.url()).await.unwrap();
    assert!(applied.iter().any(|v| v == "20261207000012"), "{applied:?}");

    #[derive(diesel::QueryableByName)]
    struct Payload {
        #[diesel(sql_type = Text)]
        kind: String,
        #[diesel(sql_type = Jsonb)]
        payload: serde_json::Value,
    }
    let mut conn = db.pool().get().await.unwrap();
    let rows: Vec<Payload> = diesel::sql_query("SELECT kind, payload FROM jobs ORDER BY kind")
        .load(&mut conn)
        .await
        .unwrap();
    let by_kind = |kind: &str| &rows.iter().find(|r| r.kind == kind).unwrap().payload;
    assert_eq!(
        by_kind("mail.send"),
        &serde_json::json!({"id": 1, "user_id": "u", "subject": "s"})
    );
    assert_eq!(
        by_kind("competitions.reminder"),
        &serde_json::json!({"registration": "r"})
    );
    assert_eq!(by_kind("other.kind"), &serde_json::json!({"to": "kept"}));
    // The stored message is kept, without its address.
    #[derive(diesel::QueryableByName)]
    struct Count {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    let columns: Count = diesel::sql_query(
        "SELECT count(*) AS n FROM information_schema.columns \
         WHERE table_name = 'mailbox' AND column_name = 'to_address'",
    )
    .get_result(&mut conn)
    .await
    .unwrap();
    assert_eq!(columns.n, 0);
    let messages: Count = diesel::sql_query("SELECT count(*) AS n FROM mailbox")
        .get_result(&mut conn)
        .await
        .unwrap();
    assert_eq!(messages.n, 1);
}
