//! The [`ScoreStore`] and [`LeaderboardCache`] contracts, for every adapter.
//!
//! Cases run one after another on one store and each removes its users at the end, so the
//! board is empty between cases (a case may read the whole board).

use chrono::{DateTime, Duration, Utc};
use futures_util::future::join_all;
use uuid::Uuid;

use super::support::{ok, whole_second_now};
use crate::identity::user::UserId;
use crate::scoreboard::{
    ApplyScore, CacheRead, LeaderboardCache, MAX_SCORE, ScoreReceipt, ScoreStore, ScoredAction,
    Standing, board_order, token_hash,
};

/// An action of `delta` for `user` at `at`, with a token text of its own.
pub fn action(user: UserId, delta: i64, at: DateTime<Utc>) -> ScoredAction {
    let action_id = Uuid::now_v7();
    ScoredAction {
        action_id,
        user_id: user,
        action_type: "COMPLETE_TASK".into(),
        delta,
        token_hash: token_hash(&format!("token-{action_id}")),
        at,
    }
}

fn applied(outcome: ApplyScore) -> ScoreReceipt {
    match outcome {
        ApplyScore::Applied { receipt, .. } => receipt,
        other => panic!("expected Applied, got {other:?}"),
    }
}

/// Runs every [`ScoreStore`] case.
pub async fn run_all<S: ScoreStore>(store: &S) {
    an_action_scores_once(store).await;
    concurrent_actions_of_one_user_sum_exactly(store).await;
    ties_go_to_who_reached_the_score_first(store).await;
    the_score_never_passes_the_maximum(store).await;
    standings_page_in_board_order(store).await;
    unknown_users_have_no_display_name(store).await;
}

async fn clear<S: ScoreStore>(store: &S, users: &[UserId]) {
    for user in users {
        ok(store.remove_user(*user).await);
    }
    assert!(
        ok(store.top(100).await).is_empty(),
        "each case leaves an empty board"
    );
}

async fn an_action_scores_once<S: ScoreStore>(store: &S) {
    let (u, other) = (UserId(Uuid::now_v7()), UserId(Uuid::now_v7()));
    let first = action(u, 10, whole_second_now());
    let receipt = applied(ok(store.apply(&first).await));
    assert_eq!(
        receipt,
        ScoreReceipt {
            old_score: 0,
            new_score: 10,
            rank: 1,
            delta: 10
        }
    );
    assert_eq!(ok(store.apply(&first).await), ApplyScore::Replayed(receipt));
    let other_token = ScoredAction {
        token_hash: token_hash("another token"),
        ..first.clone()
    };
    assert_eq!(
        ok(store.apply(&other_token).await),
        ApplyScore::UsedOtherwise
    );
    let other_user = ScoredAction {
        user_id: other,
        ..first.clone()
    };
    assert_eq!(
        ok(store.apply(&other_user).await),
        ApplyScore::UsedOtherwise
    );
    let second = applied(ok(store.apply(&action(u, 5, whole_second_now())).await));
    assert_eq!((second.old_score, second.new_score), (10, 15));
    let ranked = ok(store.rank(u).await).unwrap_or_else(|| panic!("ranked"));
    assert_eq!((ranked.rank, ranked.standing.score), (1, 15));
    assert_eq!(ok(store.rank(other).await), None);
    assert!(ok(store.remove_user(u).await));
    assert!(
        !ok(store.remove_user(u).await),
        "removing twice finds nothing"
    );
    assert_eq!(ok(store.rank(u).await), None);
    clear(store, &[u]).await;
}

async fn concurrent_actions_of_one_user_sum_exactly<S: ScoreStore>(store: &S) {
    let u = UserId(Uuid::now_v7());
    let now = whole_second_now();
    let actions: Vec<ScoredAction> = (0..40).map(|_| action(u, 3, now)).collect();
    let outcomes = join_all(actions.iter().map(|a| store.apply(a))).await;
    let mut news: Vec<i64> = outcomes
        .into_iter()
        .map(|o| applied(ok(o)).new_score)
        .collect();
    news.sort_unstable();
    assert_eq!(
        news,
        (1..=40).map(|n| n * 3).collect::<Vec<_>>(),
        "each saw the one before"
    );
    let ranked = ok(store.rank(u).await).unwrap_or_else(|| panic!("ranked"));
    assert_eq!(ranked.standing.score, 120);
    clear(store, &[u]).await;
}

async fn ties_go_to_who_reached_the_score_first<S: ScoreStore>(store: &S) {
    let t0 = whole_second_now() - Duration::seconds(100);
    let mut ids: Vec<Uuid> = (0..4).map(|_| Uuid::now_v7()).collect();
    ids.sort();
    let (low, high) = (UserId(ids[0]), UserId(ids[1]));
    let (early, leader) = (UserId(ids[2]), UserId(ids[3]));
    applied(ok(store.apply(&action(leader, 60, t0)).await));
    applied(ok(store
        .apply(&action(early, 50, t0 + Duration::seconds(1)))
        .await));
    // Same score and second: the lower user id first.
    applied(ok(store
        .apply(&action(high, 50, t0 + Duration::seconds(2)))
        .await));
    applied(ok(store
        .apply(&action(low, 50, t0 + Duration::seconds(2)))
        .await));
    let top = ok(store.top(10).await);
    let order: Vec<(u64, UserId)> = top.iter().map(|r| (r.rank, r.standing.user_id)).collect();
    assert_eq!(order, vec![(1, leader), (2, early), (3, low), (4, high)]);
    assert_eq!(top[1].standing.reached_at, t0 + Duration::seconds(1));
    for (rank, user) in &order {
        let ranked = ok(store.rank(*user).await).unwrap_or_else(|| panic!("ranked"));
        assert_eq!(ranked.rank, *rank, "rank agrees with top");
    }
    assert_eq!(ok(store.top(2).await).len(), 2);
    // Passing the leader moves `low` up, with its new reached_at.
    applied(ok(store
        .apply(&action(low, 20, t0 + Duration::seconds(3)))
        .await));
    let ranked = ok(store.rank(low).await).unwrap_or_else(|| panic!("ranked"));
    assert_eq!((ranked.rank, ranked.standing.score), (1, 70));
    assert_eq!(ranked.standing.reached_at, t0 + Duration::seconds(3));
    clear(store, &[low, high, early, leader]).await;
}

async fn the_score_never_passes_the_maximum<S: ScoreStore>(store: &S) {
    let u = UserId(Uuid::now_v7());
    applied(ok(store
        .apply(&action(u, MAX_SCORE - 1, whole_second_now()))
        .await));
    let over = action(u, 2, whole_second_now());
    assert_eq!(ok(store.apply(&over).await), ApplyScore::Overflow);
    let last = applied(ok(store.apply(&action(u, 1, whole_second_now())).await));
    assert_eq!(last.new_score, MAX_SCORE);
    clear(store, &[u]).await;
}

async fn standings_page_in_board_order<S: ScoreStore>(store: &S) {
    let now = whole_second_now();
    let users: Vec<UserId> = (0..7).map(|_| UserId(Uuid::now_v7())).collect();
    for (i, u) in users.iter().enumerate() {
        applied(ok(store.apply(&action(*u, 10 + (i as i64 % 3), now)).await));
    }
    let mut all = Vec::new();
    let mut after: Option<Standing> = None;
    loop {
        let page = ok(store.standings(after.clone(), 3).await);
        if page.is_empty() {
            break;
        }
        after = page.last().cloned();
        all.extend(page);
    }
    assert_eq!(all.len(), 7);
    assert!(all.windows(2).all(|w| board_order(&w[0], &w[1]).is_lt()));
    clear(store, &users).await;
}

async fn unknown_users_have_no_display_name<S: ScoreStore>(store: &S) {
    assert!(ok(store.display_names(&[]).await).is_empty());
    let strangers = [UserId(Uuid::now_v7()), UserId(Uuid::now_v7())];
    assert!(ok(store.display_names(&strangers).await).is_empty());
}

/// The answer of a cache read, which must be built.
fn built<T: std::fmt::Debug>(read: CacheRead<T>) -> T {
    match read {
        CacheRead::Answer(answer) => answer,
        CacheRead::Unbuilt => panic!("the board was built"),
    }
}

/// The cache's whole board (up to 1000), which must be built.
async fn board<C: LeaderboardCache>(cache: &C) -> Vec<Standing> {
    built(ok(cache.top(1000).await))
}

/// Runs every [`LeaderboardCache`] case on a cache that was never built.
pub async fn run_cache<C: LeaderboardCache>(cache: &C) {
    an_unbuilt_board_says_so(cache).await;
    the_board_keeps_the_board_order(cache).await;
    a_standing_is_never_replaced_by_a_worse_one(cache).await;
}

async fn an_unbuilt_board_says_so<C: LeaderboardCache>(cache: &C) {
    let first = Standing {
        user_id: UserId(Uuid::now_v7()),
        score: 5,
        reached_at: whole_second_now(),
    };
    assert_eq!(ok(cache.top(10).await), CacheRead::Unbuilt);
    // Writes to an unbuilt board do not build it: it would be partial.
    ok(cache.record(&first).await);
    assert_eq!(ok(cache.top(10).await), CacheRead::Unbuilt);
    assert_eq!(ok(cache.rank(first.user_id).await), CacheRead::Unbuilt);
    ok(cache.replace_all(&[]).await);
    assert!(board(cache).await.is_empty(), "built and empty");
    assert_eq!(ok(cache.rank(first.user_id).await), CacheRead::Answer(None));
}

async fn the_board_keeps_the_board_order<C: LeaderboardCache>(cache: &C) {
    let t0 = whole_second_now() - Duration::seconds(10);
    let mut ids: Vec<Uuid> = (0..3).map(|_| Uuid::now_v7()).collect();
    ids.sort();
    let standings = [
        Standing {
            user_id: UserId(ids[2]),
            score: 30,
            reached_at: t0,
        },
        Standing {
            user_id: UserId(ids[1]),
            score: 20,
            reached_at: t0 + Duration::seconds(1),
        },
        Standing {
            user_id: UserId(ids[0]),
            score: 20,
            reached_at: t0 + Duration::seconds(1),
        },
    ];
    for s in &standings {
        ok(cache.record(s).await);
    }
    let top = board(cache).await;
    assert_eq!(
        top,
        vec![
            standings[0].clone(),
            standings[2].clone(),
            standings[1].clone()
        ],
        "score, then time, then the lower id"
    );
    assert_eq!(
        built(ok(cache.rank(UserId(ids[0])).await)),
        Some((2, standings[2].clone()))
    );
    assert_eq!(built(ok(cache.rank(UserId(Uuid::now_v7())).await)), None);
    // A new standing replaces the user's old one.
    let raised = Standing {
        user_id: UserId(ids[1]),
        score: 40,
        reached_at: t0 + Duration::seconds(5),
    };
    ok(cache.record(&raised).await);
    assert_eq!(
        built(ok(cache.rank(UserId(ids[1])).await)),
        Some((1, raised.clone()))
    );
    assert_eq!(board(cache).await.len(), 3);
    assert_eq!(built(ok(cache.top(2).await)).len(), 2);
    ok(cache.remove(UserId(ids[2])).await);
    assert_eq!(board(cache).await.len(), 2);
    ok(cache.replace_all(&standings[..1]).await);
    assert_eq!(board(cache).await, vec![standings[0].clone()]);
    ok(cache.replace_all(&[]).await);
    assert!(board(cache).await.is_empty());
}

async fn a_standing_is_never_replaced_by_a_worse_one<C: LeaderboardCache>(cache: &C) {
    let user = UserId(Uuid::now_v7());
    let t0 = whole_second_now() - Duration::seconds(10);
    let older = Standing {
        user_id: user,
        score: 10,
        reached_at: t0,
    };
    let newer = Standing {
        user_id: user,
        score: 20,
        reached_at: t0 + Duration::seconds(1),
    };
    // Write-throughs of one user's actions arrive out of order.
    ok(cache.record(&newer).await);
    ok(cache.record(&older).await);
    assert_eq!(board(cache).await, vec![newer.clone()]);
    // A rebuild sets the board exactly, worse or not.
    ok(cache.replace_all(std::slice::from_ref(&older)).await);
    assert_eq!(board(cache).await, vec![older]);
    ok(cache.replace_all(&[]).await);
}
