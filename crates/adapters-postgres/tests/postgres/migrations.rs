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
