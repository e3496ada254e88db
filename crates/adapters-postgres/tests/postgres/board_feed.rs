//! The Postgres board feed: the shared contract between two nodes, and a listener that loses
//! its connection asks for a resync and hears later changes.

use std::time::Duration;

use keel_adapters_postgres::testkit::TestDatabase;
use keel_adapters_postgres::{PgBoardFeed, PgPool};
use keel_domain::scoreboard::{BoardFeed, BoardSignal};

const PATIENCE: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread")]
async fn two_nodes_keep_the_feed_contract() {
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    let a = PgBoardFeed::new(db.pool().clone(), db.url());
    let other_pool = PgPool::connect(db.url(), 2).await.unwrap();
    let b = PgBoardFeed::new(other_pool, db.url());
    tokio::time::timeout(PATIENCE, keel_domain::testkit::board_feed::run_all(&a, &b))
        .await
        .expect("the contract suite finished in time");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_lost_listener_resyncs_and_hears_later_changes() {
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    let feed = PgBoardFeed::new(db.pool().clone(), db.url());
    let mut subscription = feed.subscribe().await.unwrap();
    db.cut_connections().await;
    db.restore_connections().await;
    let next = tokio::time::timeout(PATIENCE, subscription.next()).await;
    assert_eq!(next.expect("resynced in time"), Some(BoardSignal::Resync));
    let published = feed.publish(0).await.unwrap();
    let next = tokio::time::timeout(PATIENCE, subscription.next()).await;
    assert_eq!(
        next.expect("heard in time"),
        Some(BoardSignal::Changed(published))
    );
}
