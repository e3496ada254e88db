use keel_adapters_postgres::migrate::run_pending_migrations;
use keel_adapters_postgres::testkit::TestDatabase;

#[tokio::test(flavor = "multi_thread")]
async fn migrations_are_idempotent_and_concurrent_safe() {
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    // Already migrated by TestDatabase: two more concurrent runs apply nothing and do not fail.
    let (a, b) = tokio::join!(
        run_pending_migrations(db.url()),
        run_pending_migrations(db.url())
    );
    assert_eq!(a.unwrap(), Vec::<String>::new());
    assert_eq!(b.unwrap(), Vec::<String>::new());
}
