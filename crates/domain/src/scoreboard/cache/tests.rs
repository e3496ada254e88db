//! The cache layer over mocked ports: fallbacks, stale caches, rebuilds and the drift check.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Duration, Utc};
use futures_executor::block_on;
use uuid::Uuid;

use super::*;
use crate::Clock;
use crate::scoreboard::drift::DriftReport;
use crate::scoreboard::store::{ApplyScore, MockLeaderboardCache, MockScoreStore, ScoreReceipt};
use crate::scoreboard::{ActionTable, ActionTokenSigner};

/// A clock tests move by hand.
struct HandClock(Mutex<DateTime<Utc>>);

impl HandClock {
    fn advance(&self, by: Duration) {
        let mut now = self.0.lock().unwrap_or_else(|p| p.into_inner());
        *now += by;
    }
}

impl Clock for HandClock {
    fn now(&self) -> DateTime<Utc> {
        *self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn standing(n: u128, score: i64) -> Standing {
    Standing {
        user_id: UserId(Uuid::from_u128(n)),
        score,
        reached_at: DateTime::from_timestamp(1_800_000_000, 0).unwrap_or_default(),
    }
}

/// The store's board: users 1, 2, 3 with 30, 20, 10, named `user-<n>`.
fn truth() -> Vec<Standing> {
    vec![standing(1, 30), standing(2, 20), standing(3, 10)]
}

/// A store answering every read with [`truth`].
fn store() -> MockScoreStore {
    let mut store = MockScoreStore::new();
    store.expect_top().returning(|limit| {
        Ok(truth()
            .into_iter()
            .take(limit as usize)
            .enumerate()
            .map(|(i, s)| RankedStanding {
                rank: i as u64 + 1,
                standing: s,
                display_name: Some("from the store".into()),
            })
            .collect())
    });
    store.expect_standings().returning(|after, limit| {
        Ok(truth()
            .into_iter()
            .filter(|s| after.as_ref().is_none_or(|a| s.score < a.score))
            .take(limit as usize)
            .collect())
    });
    store.expect_display_names().returning(|ids| {
        Ok(ids
            .iter()
            .map(|id| (*id, format!("user-{}", id.0.as_u128())))
            .collect::<HashMap<_, _>>())
    });
    store
}

fn down() -> StoreError {
    StoreError::unavailable("redis", "connection refused")
}

/// A service over `store` and `cache`, its clock, and every cache event it reported.
struct Fixture {
    scores: ScoreService,
    clock: Arc<HandClock>,
    events: Arc<Mutex<Vec<String>>>,
    cache: BoardCache,
}

fn fixture(store: MockScoreStore, cache: MockLeaderboardCache) -> Fixture {
    let events = Arc::new(Mutex::new(Vec::new()));
    let log = events.clone();
    let cache = BoardCache::new(Arc::new(cache)).with_observer(Arc::new(move |e| {
        let name = match e {
            CacheEvent::Fallback { read, reason } => format!("fallback {read} {reason:?}"),
            CacheEvent::WriteFailed { write, .. } => format!("write failed {write}"),
            CacheEvent::Rebuilt { entries } => format!("rebuilt {entries}"),
            CacheEvent::RebuildFailed { .. } => "rebuild failed".into(),
        };
        log.lock().unwrap_or_else(|p| p.into_inner()).push(name);
    }));
    let clock = Arc::new(HandClock(Mutex::new(
        DateTime::from_timestamp(1_800_000_100, 0).unwrap_or_default(),
    )));
    let scores = ScoreService::new(
        Arc::new(store),
        Some(cache.clone()),
        Arc::new(ActionTokenSigner::new(
            b"test-only-action-token-secret-0123456789",
        )),
        Arc::new(ActionTable::default_table()),
        clock.clone(),
    );
    Fixture {
        scores,
        clock,
        events,
        cache,
    }
}

impl Fixture {
    fn events(&self) -> Vec<String> {
        std::mem::take(&mut *self.events.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

fn users(board: &[RankedStanding]) -> Vec<(u64, u128, Option<&str>)> {
    board
        .iter()
        .map(|r| {
            (
                r.rank,
                r.standing.user_id.0.as_u128(),
                r.display_name.as_deref(),
            )
        })
        .collect()
}

#[test]
fn a_fresh_cache_answers_and_the_store_names_the_page() {
    let mut cache = MockLeaderboardCache::new();
    cache
        .expect_top()
        .returning(|_| Ok(CacheRead::Answer(vec![standing(2, 20), standing(1, 19)])));
    cache
        .expect_rank()
        .returning(|_| Ok(CacheRead::Answer(Some((2, standing(1, 19))))));
    let mut store = store();
    store.checkpoint();
    store.expect_top().never();
    store.expect_rank().never();
    store
        .expect_display_names()
        .returning(|ids| Ok(ids.iter().map(|id| (*id, "cached".to_owned())).collect()));
    let f = fixture(store, cache);
    let top = block_on(f.scores.top(10)).unwrap_or_default();
    assert_eq!(
        users(&top),
        vec![(1, 2, Some("cached")), (2, 1, Some("cached"))],
        "ranks and users from the cache"
    );
    let ranked = block_on(f.scores.rank(UserId(Uuid::from_u128(1)))).unwrap_or_default();
    assert_eq!(ranked.map(|r| (r.rank, r.standing.score)), Some((2, 19)));
    assert!(f.events().is_empty());
}

#[test]
fn a_cache_error_is_answered_by_the_store_and_leaves_the_cache_stale() {
    let mut cache = MockLeaderboardCache::new();
    cache.expect_top().times(1).returning(|_| Err(down()));
    let f = fixture(store(), cache);
    let top = block_on(f.scores.top(10)).unwrap_or_default();
    assert_eq!(
        users(&top),
        vec![
            (1, 1, Some("from the store")),
            (2, 2, Some("from the store")),
            (3, 3, Some("from the store"))
        ]
    );
    assert!(f.cache.is_stale(), "found unreachable");
    // Within the retry delay the cache is not even tried (`times(1)` above).
    let again = block_on(f.scores.top(2)).unwrap_or_default();
    assert_eq!(again.len(), 2);
    assert_eq!(
        f.events(),
        vec![
            "fallback top Error(Unavailable { dependency: \"redis\", reason: \"connection refused\" })",
            "fallback top Stale"
        ]
    );
}

#[test]
fn a_stale_cache_is_not_read_until_it_was_rebuilt() {
    let up = Arc::new(AtomicBool::new(false));
    let rebuilt = Arc::new(AtomicBool::new(false));
    let mut cache = MockLeaderboardCache::new();
    let is_up = up.clone();
    cache.expect_record().returning(move |_| {
        if is_up.load(Ordering::SeqCst) {
            Ok(())
        } else {
            Err(down())
        }
    });
    let (is_up, was_rebuilt) = (up.clone(), rebuilt.clone());
    cache.expect_top().returning(move |limit| {
        if !is_up.load(Ordering::SeqCst) {
            return Err(down());
        }
        // Only the probe may come before the rebuild.
        assert!(
            limit == 1 || was_rebuilt.load(Ordering::SeqCst),
            "a stale board was read"
        );
        Ok(CacheRead::Answer(vec![standing(1, 30)]))
    });
    let (is_up, was_rebuilt) = (up.clone(), rebuilt.clone());
    cache.expect_replace_all().returning(move |all| {
        if !is_up.load(Ordering::SeqCst) {
            return Err(down());
        }
        assert_eq!(all, truth().as_slice(), "the store's whole board");
        was_rebuilt.store(true, Ordering::SeqCst);
        Ok(())
    });
    let mut store = store();
    let receipt = ScoreReceipt {
        old_score: 0,
        new_score: 10,
        rank: 3,
        delta: 10,
    };
    store.expect_apply().returning(move |a| {
        Ok(ApplyScore::Applied {
            receipt,
            reached_at: a.at,
        })
    });
    let f = fixture(store, cache);
    let me = UserId(Uuid::from_u128(3));
    let started = f
        .scores
        .start(me, "COMPLETE_TASK")
        .unwrap_or_else(|e| panic!("{e}"));
    let scored = block_on(f.scores.score(me, started.action_id, &started.token));
    assert_eq!(
        scored.map(|s| s.receipt).ok(),
        Some(receipt),
        "the store committed"
    );
    assert!(f.cache.is_stale(), "the cache missed the write");
    assert_eq!(f.events(), vec!["write failed record"]);

    // The cache is back, but the retry delay has not passed: the store answers.
    up.store(true, Ordering::SeqCst);
    assert_eq!(block_on(f.scores.top(10)).unwrap_or_default().len(), 3);
    assert_eq!(f.events(), vec!["fallback top Stale"]);

    // Due: the read probes, rebuilds, then reads the rebuilt cache.
    f.clock.advance(REBUILD_RETRY);
    let top = block_on(f.scores.top(10)).unwrap_or_default();
    assert_eq!(users(&top), vec![(1, 1, Some("user-1"))], "from the cache");
    assert!(!f.cache.is_stale());
    assert_eq!(f.events(), vec!["rebuilt 3"]);
}

#[test]
fn a_failed_rebuild_keeps_the_cache_stale_and_the_store_answering() {
    let mut cache = MockLeaderboardCache::new();
    cache.expect_remove().returning(|_| Err(down()));
    cache.expect_top().returning(|limit| {
        assert_eq!(limit, 1, "only the probe");
        Ok(CacheRead::Answer(Vec::new()))
    });
    cache.expect_replace_all().returning(|_| Err(down()));
    let mut store = store();
    store.expect_remove_user().returning(|_| Ok(true));
    let f = fixture(store, cache);
    assert!(block_on(f.scores.remove_user(UserId(Uuid::from_u128(9)))).unwrap_or(false));
    assert!(f.cache.is_stale());
    f.clock.advance(REBUILD_RETRY);
    assert_eq!(block_on(f.scores.top(10)).unwrap_or_default().len(), 3);
    assert!(f.cache.is_stale());
    assert_eq!(
        f.events(),
        vec![
            "write failed remove",
            "rebuild failed",
            "fallback top Stale"
        ]
    );
}

#[test]
fn an_unbuilt_cache_is_answered_by_the_store_then_rebuilt() {
    let rebuilt = Arc::new(AtomicBool::new(false));
    let mut cache = MockLeaderboardCache::new();
    let was_rebuilt = rebuilt.clone();
    cache.expect_rank().returning(move |_| {
        Ok(if was_rebuilt.load(Ordering::SeqCst) {
            CacheRead::Answer(None)
        } else {
            CacheRead::Unbuilt
        })
    });
    cache
        .expect_top()
        .returning(|_| Ok(CacheRead::Answer(Vec::new())));
    let was_rebuilt = rebuilt.clone();
    cache.expect_replace_all().returning(move |_| {
        was_rebuilt.store(true, Ordering::SeqCst);
        Ok(())
    });
    let mut store = store();
    store.expect_rank().returning(|_| {
        Ok(Some(RankedStanding {
            rank: 3,
            standing: standing(3, 10),
            display_name: None,
        }))
    });
    let f = fixture(store, cache);
    let me = UserId(Uuid::from_u128(3));
    let first = block_on(f.scores.rank(me)).unwrap_or_default();
    assert_eq!(
        first.map(|r| r.rank),
        Some(3),
        "the store, not an empty board"
    );
    // No delay for an unbuilt board: the next read rebuilds it at once.
    let second = block_on(f.scores.rank(me)).unwrap_or_default();
    assert_eq!(second, None, "the rebuilt cache answered");
    assert_eq!(f.events(), vec!["fallback rank Unbuilt", "rebuilt 3"]);
}

#[test]
fn a_write_failing_during_a_rebuild_keeps_the_cache_stale() {
    let cache = BoardCache::new(Arc::new(MockLeaderboardCache::new()));
    let now = Utc::now();
    cache.mark_stale(now);
    let seen = cache.missed();
    cache.mark_stale(now); // fails while the rebuild reads the store
    cache.mark_rebuilt(seen);
    assert!(cache.is_stale());
    cache.mark_rebuilt(cache.missed());
    assert!(!cache.is_stale());
}

#[test]
fn drift_is_detected_and_repaired() {
    let repaired = Arc::new(AtomicBool::new(false));
    let mut cache = MockLeaderboardCache::new();
    let was_repaired = repaired.clone();
    cache.expect_top().returning(move |limit| {
        assert_eq!(limit, 100);
        Ok(CacheRead::Answer(if was_repaired.load(Ordering::SeqCst) {
            truth()
        } else {
            // A bogus leader, user 2 missing.
            vec![standing(7, 99), standing(1, 30), standing(3, 10)]
        }))
    });
    let was_repaired = repaired.clone();
    cache.expect_replace_all().times(1).returning(move |all| {
        assert_eq!(all, truth().as_slice());
        was_repaired.store(true, Ordering::SeqCst);
        Ok(())
    });
    let f = fixture(store(), cache);
    let report = block_on(f.scores.repair_drift()).unwrap_or_default();
    assert_eq!(
        report,
        DriftReport {
            compared: 3,
            wrong: 2,
            repaired: true
        }
    );
    let clean = block_on(f.scores.repair_drift()).unwrap_or_default();
    assert_eq!(
        clean,
        DriftReport {
            compared: 3,
            wrong: 0,
            repaired: false
        },
        "nothing to repair: no second rebuild"
    );
}

#[test]
fn an_unreachable_cache_fails_the_drift_check_and_is_marked_stale() {
    let mut cache = MockLeaderboardCache::new();
    cache.expect_top().returning(|_| Err(down()));
    let f = fixture(store(), cache);
    assert!(block_on(f.scores.repair_drift()).is_err());
    assert!(f.cache.is_stale());
}

#[test]
fn compare_counts_every_position_that_differs() {
    let t = truth();
    assert_eq!(crate::scoreboard::compare(&t, &t).wrong, 0);
    let short = crate::scoreboard::compare(&t, &t[..1]);
    assert_eq!((short.compared, short.wrong), (3, 2));
    let longer = crate::scoreboard::compare(&t[..2], &t);
    assert_eq!((longer.compared, longer.wrong), (3, 1));
    let mut moved = t.clone();
    moved[2].score = 11;
    assert_eq!(crate::scoreboard::compare(&t, &moved).wrong, 1);
}
