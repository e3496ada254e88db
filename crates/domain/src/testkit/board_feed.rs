//! Contract suite of [`BoardFeed`]: increasing change numbers above the caller's floor, and
//! delivery to every node's subscription.
//!
//! Run it with two feeds on one backend (two "nodes"; the same feed twice for an in-process
//! one). Other runs may share the backend, so the suite only relies on "at least" facts. It
//! waits on subscriptions: callers bound it with their runtime's timeout.

use crate::scoreboard::{BoardFeed, BoardSignal, BoardSubscription};

/// Every check, on nodes `a` and `b`.
pub async fn run_all(a: &dyn BoardFeed, b: &dyn BoardFeed) {
    numbers_increase_above_the_floor(a, b).await;
    every_node_hears_every_change(a, b).await;
}

/// Numbers from any node increase, never fall below the floor, and `current` has seen them.
pub async fn numbers_increase_above_the_floor(a: &dyn BoardFeed, b: &dyn BoardFeed) {
    let first = a.publish(0).await.expect("publish");
    let second = b.publish(0).await.expect("publish");
    assert!(second > first, "{second} after {first}");
    let floor = second + 1_000;
    let third = a.publish(floor).await.expect("publish with a floor");
    assert!(third > floor, "{third} not above the floor {floor}");
    let fourth = b.publish(0).await.expect("publish");
    assert!(
        fourth > third,
        "{fourth} after {third}: the floor must stick"
    );
    for node in [a, b] {
        assert!(node.current().await.expect("current") >= fourth);
    }
}

/// A change published on one node reaches the subscriptions of both.
pub async fn every_node_hears_every_change(a: &dyn BoardFeed, b: &dyn BoardFeed) {
    let mut on_a = a.subscribe().await.expect("subscribe on a");
    let mut on_b = b.subscribe().await.expect("subscribe on b");
    let published = a.publish(0).await.expect("publish");
    hears(&mut *on_a, a, published).await;
    hears(&mut *on_b, a, published).await;
    let published = b.publish(0).await.expect("publish");
    hears(&mut *on_a, b, published).await;
}

/// Waits until `subscription` reports a change numbered at least `number`. A resync (allowed
/// by the contract: the connection was lost meanwhile) may have swallowed it, so `publisher`
/// announces another change and that one is awaited.
async fn hears(subscription: &mut dyn BoardSubscription, publisher: &dyn BoardFeed, number: u64) {
    let mut number = number;
    loop {
        match subscription.next().await {
            Some(BoardSignal::Changed(n)) if n >= number => return,
            Some(BoardSignal::Changed(_)) => continue,
            Some(BoardSignal::Resync) => {
                number = publisher.publish(0).await.expect("publish again");
            }
            None => panic!("the feed ended before change {number} arrived"),
        }
    }
}
