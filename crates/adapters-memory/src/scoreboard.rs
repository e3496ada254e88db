//! The scoreboard in memory: scores with their history under one lock, and a leaderboard cache
//! ordered exactly like the Redis sorted set.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use keel_domain::StoreError;
use keel_domain::identity::store::UserStore;
use keel_domain::identity::user::UserId;
use keel_domain::scoreboard::{
    ApplyScore, CacheRead, LeaderboardCache, MAX_SCORE, RankedStanding, ScoreReceipt, ScoreStore,
    ScoredAction, Standing, board_order,
};
use uuid::Uuid;

/// One use of an action.
#[derive(Debug, Clone)]
struct Used {
    user: UserId,
    token_hash: [u8; 32],
    receipt: ScoreReceipt,
}

/// One history row: who (until anonymised), which action, old and new score.
#[derive(Debug, Clone)]
struct HistoryRow {
    user: Option<UserId>,
    action_id: Uuid,
    old_score: i64,
    new_score: i64,
}

#[derive(Debug, Default)]
struct State {
    standings: HashMap<UserId, Standing>,
    actions: HashMap<Uuid, Used>,
    history: Vec<HistoryRow>,
}

impl State {
    /// Every standing, best first.
    fn sorted(&self) -> Vec<Standing> {
        let mut all: Vec<Standing> = self.standings.values().cloned().collect();
        all.sort_by(board_order);
        all
    }

    /// 1-based rank of `standing` among the stored ones.
    fn rank_of(&self, standing: &Standing) -> u64 {
        1 + self
            .standings
            .values()
            .filter(|other| board_order(other, standing).is_lt())
            .count() as u64
    }
}

/// [`ScoreStore`] in memory; display names come from a user store when given, and then only its
/// accounts score (others get [`ApplyScore::NoAccount`]). Clones share one store.
#[derive(Clone, Default)]
pub struct MemoryScoreStore {
    state: Arc<Mutex<State>>,
    users: Option<Arc<dyn UserStore>>,
}

impl MemoryScoreStore {
    /// An empty board without display names.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty board naming users from `users`, where only their accounts score.
    pub fn with_users(users: Arc<dyn UserStore>) -> Self {
        Self {
            state: Arc::default(),
            users: Some(users),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// History rows still naming `user` (anonymised rows name nobody), for tests.
    pub fn history_of(&self, user: UserId) -> Vec<(Uuid, i64, i64)> {
        self.lock()
            .history
            .iter()
            .filter(|h| h.user == Some(user))
            .map(|h| (h.action_id, h.old_score, h.new_score))
            .collect()
    }

    async fn named(&self, ranked: Vec<(u64, Standing)>) -> Result<Vec<RankedStanding>, StoreError> {
        let mut out = Vec::with_capacity(ranked.len());
        for (rank, standing) in ranked {
            let display_name = match &self.users {
                Some(users) => users
                    .find_by_id(standing.user_id)
                    .await?
                    .map(|u| u.display_name.as_str().to_owned()),
                None => None,
            };
            out.push(RankedStanding {
                rank,
                standing,
                display_name,
            });
        }
        Ok(out)
    }
}

impl std::fmt::Debug for MemoryScoreStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryScoreStore").finish_non_exhaustive()
    }
}

#[async_trait]
impl ScoreStore for MemoryScoreStore {
    async fn apply(&self, action: &ScoredAction) -> Result<ApplyScore, StoreError> {
        let member = match &self.users {
            Some(users) => users.find_by_id(action.user_id).await?.is_some(),
            None => true,
        };
        if !member {
            return Ok(ApplyScore::NoAccount);
        }
        let mut state = self.lock();
        if let Some(used) = state.actions.get(&action.action_id) {
            return Ok(
                if used.user == action.user_id && used.token_hash == action.token_hash {
                    ApplyScore::Replayed(used.receipt)
                } else {
                    ApplyScore::UsedOtherwise
                },
            );
        }
        let (old_score, old_reached) = state
            .standings
            .get(&action.user_id)
            .map_or((0, action.at), |s| (s.score, s.reached_at));
        let Some(new_score) = old_score
            .checked_add(action.delta)
            .filter(|s| *s <= MAX_SCORE)
        else {
            return Ok(ApplyScore::Overflow);
        };
        // The time a score was reached never moves backwards.
        let reached_at = old_reached.max(action.at);
        let standing = Standing {
            user_id: action.user_id,
            score: new_score,
            reached_at,
        };
        state.standings.insert(action.user_id, standing.clone());
        let receipt = ScoreReceipt {
            old_score,
            new_score,
            rank: state.rank_of(&standing),
            delta: action.delta,
        };
        state.actions.insert(
            action.action_id,
            Used {
                user: action.user_id,
                token_hash: action.token_hash,
                receipt,
            },
        );
        state.history.push(HistoryRow {
            user: Some(action.user_id),
            action_id: action.action_id,
            old_score,
            new_score,
        });
        Ok(ApplyScore::Applied {
            receipt,
            reached_at,
        })
    }

    async fn top(&self, limit: u32) -> Result<Vec<RankedStanding>, StoreError> {
        let ranked: Vec<(u64, Standing)> = {
            let state = self.lock();
            state
                .sorted()
                .into_iter()
                .take(limit as usize)
                .enumerate()
                .map(|(i, s)| (i as u64 + 1, s))
                .collect()
        };
        self.named(ranked).await
    }

    async fn rank(&self, user: UserId) -> Result<Option<RankedStanding>, StoreError> {
        let found = {
            let state = self.lock();
            state
                .standings
                .get(&user)
                .map(|s| (state.rank_of(s), s.clone()))
        };
        Ok(self.named(found.into_iter().collect()).await?.pop())
    }

    async fn standings(
        &self,
        after: Option<Standing>,
        limit: u32,
    ) -> Result<Vec<Standing>, StoreError> {
        let state = self.lock();
        Ok(state
            .sorted()
            .into_iter()
            .filter(|s| after.as_ref().is_none_or(|a| board_order(a, s).is_lt()))
            .take(limit as usize)
            .collect())
    }

    async fn remove_user(&self, user: UserId) -> Result<bool, StoreError> {
        let mut state = self.lock();
        for row in state.history.iter_mut().filter(|h| h.user == Some(user)) {
            row.user = None;
        }
        Ok(state.standings.remove(&user).is_some())
    }

    async fn display_names(&self, users: &[UserId]) -> Result<HashMap<UserId, String>, StoreError> {
        let mut names = HashMap::with_capacity(users.len());
        if let Some(store) = &self.users {
            for user in users {
                if let Some(found) = store.find_by_id(*user).await? {
                    names.insert(*user, found.display_name.as_str().to_owned());
                }
            }
        }
        Ok(names)
    }
}

/// The board of a [`MemoryLeaderboard`], and whether it was ever built.
#[derive(Debug, Default)]
struct Board {
    standings: HashMap<UserId, Standing>,
    built: bool,
}

impl Board {
    /// `answer` when the board was built, else [`CacheRead::Unbuilt`].
    fn read<T>(&self, answer: impl FnOnce(&Self) -> T) -> CacheRead<T> {
        if self.built {
            CacheRead::Answer(answer(self))
        } else {
            CacheRead::Unbuilt
        }
    }
}

/// [`LeaderboardCache`] in memory, in the board order; unbuilt until the first
/// [`LeaderboardCache::replace_all`] (or [`MemoryLeaderboard::forget`]). Clones share one board.
#[derive(Debug, Clone, Default)]
pub struct MemoryLeaderboard {
    board: Arc<Mutex<Board>>,
}

impl MemoryLeaderboard {
    /// An empty, unbuilt board.
    pub fn new() -> Self {
        Self::default()
    }

    /// Loses the board, as a Redis restart without persistence does (for tests).
    pub fn forget(&self) {
        *self.lock() = Board::default();
    }

    fn lock(&self) -> MutexGuard<'_, Board> {
        self.board.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[async_trait]
impl LeaderboardCache for MemoryLeaderboard {
    async fn record(&self, standing: &Standing) -> Result<(), StoreError> {
        let mut board = self.lock();
        let better = board
            .standings
            .get(&standing.user_id)
            .is_none_or(|old| board_order(standing, old).is_lt());
        if better {
            board.standings.insert(standing.user_id, standing.clone());
        }
        Ok(())
    }

    async fn top(&self, limit: u32) -> Result<CacheRead<Vec<Standing>>, StoreError> {
        Ok(self.lock().read(|board| {
            let mut all: Vec<Standing> = board.standings.values().cloned().collect();
            all.sort_by(board_order);
            all.truncate(limit as usize);
            all
        }))
    }

    async fn rank(&self, user: UserId) -> Result<CacheRead<Option<(u64, Standing)>>, StoreError> {
        Ok(self.lock().read(|board| {
            board.standings.get(&user).map(|mine| {
                let better = board
                    .standings
                    .values()
                    .filter(|other| board_order(other, mine).is_lt())
                    .count();
                (1 + better as u64, mine.clone())
            })
        }))
    }

    async fn remove(&self, user: UserId) -> Result<(), StoreError> {
        self.lock().standings.remove(&user);
        Ok(())
    }

    async fn replace_all(&self, standings: &[Standing]) -> Result<(), StoreError> {
        *self.lock() = Board {
            standings: standings.iter().map(|s| (s.user_id, s.clone())).collect(),
            built: true,
        };
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use chrono::{Duration, Utc};
    use keel_domain::scoreboard::{
        ActionTable, ActionTokenSigner, BoardCache, ScoreError, ScoreService, TokenError,
    };
    use keel_domain::testkit::score_store::{run_all, run_cache};

    use super::*;
    use crate::ManualClock;

    fn service(
        store: &MemoryScoreStore,
        cache: &MemoryLeaderboard,
        clock: Arc<ManualClock>,
    ) -> ScoreService {
        ScoreService::new(
            Arc::new(store.clone()),
            Some(BoardCache::new(Arc::new(cache.clone()))),
            Arc::new(ActionTokenSigner::new(
                b"test-only-action-token-secret-0123456789",
            )),
            Arc::new(ActionTable::default_table()),
            clock,
        )
    }

    #[tokio::test]
    async fn an_action_scores_once_for_its_owner_before_it_expires() {
        let (store, cache) = (MemoryScoreStore::new(), MemoryLeaderboard::new());
        let clock = Arc::new(ManualClock::new(Utc::now()));
        let scores = service(&store, &cache, clock.clone());
        let (me, you) = (UserId(Uuid::now_v7()), UserId(Uuid::now_v7()));
        assert!(matches!(
            scores.start(me, "CHEAT"),
            Err(ScoreError::UnknownAction)
        ));
        let started = scores.start(me, "COMPLETE_TASK").expect("known type");

        let foreign = scores.score(you, started.action_id, &started.token).await;
        assert!(matches!(foreign, Err(ScoreError::Foreign)));
        let mismatch = scores.score(me, Uuid::now_v7(), &started.token).await;
        assert!(matches!(mismatch, Err(ScoreError::ActionMismatch)));

        let first = scores
            .score(me, started.action_id, &started.token)
            .await
            .expect("scored");
        assert!(!first.replayed);
        assert_eq!(
            (
                first.receipt.new_score,
                first.receipt.rank,
                first.receipt.delta
            ),
            (10, 1, 10)
        );
        let again = scores
            .score(me, started.action_id, &started.token)
            .await
            .expect("replayed");
        assert!(again.replayed);
        assert_eq!(again.receipt, first.receipt);
        assert_eq!(store.history_of(me).len(), 1, "one history row");
        assert!(
            matches!(cache.rank(me).await.expect("cache"), CacheRead::Unbuilt),
            "not built before the first read"
        );
        assert_eq!(
            scores.rank(me).await.expect("rank").map(|r| r.rank),
            Some(1)
        );
        assert!(
            matches!(scores.top(10).await.expect("rebuilt").as_slice(), [r] if r.standing.user_id == me),
            "rebuilt by the read after the unbuilt one"
        );
        assert!(
            matches!(
                cache.rank(me).await.expect("cache"),
                CacheRead::Answer(Some((1, _)))
            ),
            "rebuilt from the store"
        );

        let late = scores.start(me, "COMPLETE_TASK").expect("known type");
        clock.advance(Duration::minutes(6));
        let expired = scores.score(me, late.action_id, &late.token).await;
        assert!(matches!(
            expired,
            Err(ScoreError::Token(TokenError::Expired))
        ));
        assert!(scores.remove_user(me).await.expect("removed"));
        assert_eq!(
            cache.rank(me).await.expect("cache"),
            CacheRead::Answer(None)
        );
        assert!(store.history_of(me).is_empty(), "history anonymised");
    }

    #[tokio::test]
    async fn memory_scores_keep_the_contract() {
        let users = crate::MemoryUserStore::new();
        run_all(
            &MemoryScoreStore::with_users(Arc::new(users.clone())),
            &users,
        )
        .await;
    }

    #[tokio::test]
    async fn memory_leaderboard_keeps_the_contract() {
        run_cache(&MemoryLeaderboard::new()).await;
    }
}
