//! The [`ScoreStore`] and [`LeaderboardCache`] contracts, for every adapter.
//!
//! Cases run one after another on one store and each removes its users at the end, so the
//! board is empty between cases (a case may read the whole board).

use chrono::{DateTime, Duration, Utc};
use futures_util::future::join_all;
use uuid::Uuid;

use super::support::{ok, stored_user, whole_second_now};
use crate::identity::store::UserStore;
use crate::identity::user::UserId;
use crate::identity::values::Role;
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

/// The receipt of an applied action; panics on any other outcome.
fn applied(outcome: ApplyScore) -> ScoreReceipt {
    match outcome {
        ApplyScore::Applied { receipt, .. } => receipt,
        other => panic!("expected Applied, got {other:?}"),
    }
}

/// Runs every [`ScoreStore`] case on `store`, whose accounts are those of `users` (the store
/// must refuse actions of any other user).
pub async fn run_all<S: ScoreStore>(store: &S, users: &dyn UserStore) {
    an_action_scores_once(store, users).await;
    concurrent_actions_of_one_user_sum_exactly(store, users).await;
    concurrent_actions_of_many_users_sum_exactly(store, users).await;
    concurrent_repeats_of_one_action_apply_it_once(store, users).await;
    ties_go_to_who_reached_the_score_first(store, users).await;
    the_score_never_passes_the_maximum(store, users).await;
    a_refusal_among_concurrent_actions_refuses_only_its_own(store, users).await;
    only_accounts_score(store, users).await;
    standings_page_in_board_order(store, users).await;
    unknown_users_have_no_display_name(store).await;
}

/// `n` new accounts.
async fn members(users: &dyn UserStore, n: usize) -> Vec<UserId> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        out.push(stored_user(users, Role::Participant).await);
    }
    out
}

/// One new account.
async fn member(users: &dyn UserStore) -> UserId {
    stored_user(users, Role::Participant).await
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

async fn an_action_scores_once<S: ScoreStore>(store: &S, users: &dyn UserStore) {
    let (u, other) = (member(users).await, member(users).await);
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

async fn concurrent_actions_of_one_user_sum_exactly<S: ScoreStore>(
    store: &S,
    users: &dyn UserStore,
) {
    let u = member(users).await;
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

async fn concurrent_actions_of_many_users_sum_exactly<S: ScoreStore>(
    store: &S,
    users: &dyn UserStore,
) {
    let scorers = members(users, 8).await;
    let now = whole_second_now();
    // Interleaved: a store that groups concurrent actions sees each user several times.
    let actions: Vec<ScoredAction> = (0..5)
        .flat_map(|_| scorers.iter().map(|u| action(*u, 7, now)))
        .collect();
    let outcomes = join_all(actions.iter().map(|a| store.apply(a))).await;
    for user in &scorers {
        let mut news: Vec<(i64, i64)> = actions
            .iter()
            .zip(&outcomes)
            .filter(|(a, _)| a.user_id == *user)
            .map(|(_, o)| {
                let receipt = match o {
                    Ok(outcome) => applied(*outcome),
                    Err(e) => panic!("store failed: {e}"),
                };
                (receipt.old_score, receipt.new_score)
            })
            .collect();
        news.sort_unstable();
        assert_eq!(
            news,
            (0..5).map(|n| (n * 7, n * 7 + 7)).collect::<Vec<_>>(),
            "each of a user's actions saw the one before"
        );
    }
    let top = ok(store.top(100).await);
    assert_eq!(top.len(), 8);
    assert!(top.iter().all(|r| r.standing.score == 35));
    assert!(
        top.windows(2)
            .all(|w| board_order(&w[0].standing, &w[1].standing).is_lt())
    );
    clear(store, &scorers).await;
}

async fn concurrent_repeats_of_one_action_apply_it_once<S: ScoreStore>(
    store: &S,
    users: &dyn UserStore,
) {
    let u = member(users).await;
    let first = action(u, 4, whole_second_now());
    let other_token = ScoredAction {
        token_hash: token_hash("a forged copy"),
        ..first.clone()
    };
    let mut attempts = vec![first.clone(); 6];
    attempts.push(other_token);
    let outcomes: Vec<ApplyScore> = join_all(attempts.iter().map(|a| store.apply(a)))
        .await
        .into_iter()
        .map(ok)
        .collect();
    let receipts: Vec<ScoreReceipt> = outcomes
        .iter()
        .filter_map(|o| match o {
            ApplyScore::Applied { receipt, .. } => Some(*receipt),
            _ => None,
        })
        .collect();
    assert_eq!(receipts.len(), 1, "applied once: {outcomes:?}");
    let receipt = receipts[0];
    assert_eq!((receipt.old_score, receipt.new_score), (0, 4));
    for outcome in &outcomes[..6] {
        assert!(
            matches!(outcome, ApplyScore::Applied { .. })
                || *outcome == ApplyScore::Replayed(receipt),
            "{outcome:?}"
        );
    }
    // Scored before or after the forged copy: the copy never scores.
    assert!(matches!(
        outcomes[6],
        ApplyScore::UsedOtherwise | ApplyScore::Applied { .. }
    ));
    let ranked = ok(store.rank(u).await).unwrap_or_else(|| panic!("ranked"));
    assert_eq!(ranked.standing.score, 4);
    clear(store, &[u]).await;
}

async fn ties_go_to_who_reached_the_score_first<S: ScoreStore>(store: &S, users: &dyn UserStore) {
    let t0 = whole_second_now() - Duration::seconds(100);
    let mut ids = members(users, 4).await;
    ids.sort();
    let (low, high) = (ids[0], ids[1]);
    let (early, leader) = (ids[2], ids[3]);
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
    // An action stamped earlier than the standing (committed late) keeps the later time.
    let late = applied(ok(store
        .apply(&action(high, 30, t0 + Duration::seconds(1)))
        .await));
    assert_eq!((late.new_score, late.rank), (80, 1));
    let ranked = ok(store.rank(high).await).unwrap_or_else(|| panic!("ranked"));
    assert_eq!(ranked.standing.reached_at, t0 + Duration::seconds(2));
    clear(store, &[low, high, early, leader]).await;
}

async fn the_score_never_passes_the_maximum<S: ScoreStore>(store: &S, users: &dyn UserStore) {
    let u = member(users).await;
    applied(ok(store
        .apply(&action(u, MAX_SCORE - 1, whole_second_now()))
        .await));
    let over = action(u, 2, whole_second_now());
    assert_eq!(ok(store.apply(&over).await), ApplyScore::Overflow);
    // Refused with nothing written: the action is still unused.
    let last = applied(ok(store.apply(&action(u, 1, whole_second_now())).await));
    assert_eq!(last.new_score, MAX_SCORE);
    assert_eq!(ok(store.apply(&over).await), ApplyScore::Overflow);
    let newcomer = member(users).await;
    assert_eq!(
        ok(store
            .apply(&action(newcomer, MAX_SCORE + 1, whole_second_now()))
            .await),
        ApplyScore::Overflow,
        "a first action past the maximum"
    );
    assert_eq!(ok(store.rank(newcomer).await), None);
    clear(store, &[u]).await;
}

async fn a_refusal_among_concurrent_actions_refuses_only_its_own<S: ScoreStore>(
    store: &S,
    users: &dyn UserStore,
) {
    let scorers = members(users, 4).await;
    let now = whole_second_now();
    applied(ok(store.apply(&action(scorers[0], MAX_SCORE, now)).await));
    let used = action(scorers[1], 1, now);
    applied(ok(store.apply(&used).await));
    let stolen = ScoredAction {
        token_hash: token_hash("stolen"),
        ..used.clone()
    };
    let stranger = UserId(Uuid::now_v7());
    let crowd = [
        action(scorers[2], 2, now),
        action(scorers[0], 1, now),
        stolen,
        action(stranger, 1, now),
        action(scorers[3], 3, now),
        used.clone(),
    ];
    let outcomes: Vec<ApplyScore> = join_all(crowd.iter().map(|a| store.apply(a)))
        .await
        .into_iter()
        .map(ok)
        .collect();
    assert_eq!(applied(outcomes[0]).new_score, 2);
    assert_eq!(outcomes[1], ApplyScore::Overflow);
    assert_eq!(outcomes[2], ApplyScore::UsedOtherwise);
    assert_eq!(outcomes[3], ApplyScore::NoAccount);
    assert_eq!(applied(outcomes[4]).new_score, 3);
    assert!(matches!(outcomes[5], ApplyScore::Replayed(r) if r.new_score == 1));
    let scores: Vec<i64> = ok(store.top(100).await)
        .iter()
        .map(|r| r.standing.score)
        .collect();
    assert_eq!(scores, vec![MAX_SCORE, 3, 2, 1]);
    clear(store, &scorers).await;
}

async fn only_accounts_score<S: ScoreStore>(store: &S, users: &dyn UserStore) {
    let stranger = UserId(Uuid::now_v7());
    let attempt = action(stranger, 5, whole_second_now());
    assert_eq!(ok(store.apply(&attempt).await), ApplyScore::NoAccount);
    assert_eq!(ok(store.rank(stranger).await), None, "nothing written");
    let gone = member(users).await;
    let before = applied(ok(store.apply(&action(gone, 5, whole_second_now())).await));
    assert!(ok(users.delete(gone).await));
    let after = action(gone, 5, whole_second_now());
    assert_eq!(ok(store.apply(&after).await), ApplyScore::NoAccount);
    let ranked = ok(store.rank(gone).await).unwrap_or_else(|| panic!("ranked"));
    assert_eq!(ranked.standing.score, before.new_score, "unchanged");
    // The refused action stays unused: it would score once the account existed.
    assert_eq!(ok(store.apply(&after).await), ApplyScore::NoAccount);
    clear(store, &[gone]).await;
}

async fn standings_page_in_board_order<S: ScoreStore>(store: &S, users: &dyn UserStore) {
    let now = whole_second_now();
    let scorers = members(users, 7).await;
    for (i, u) in scorers.iter().enumerate() {
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
    clear(store, &scorers).await;
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
