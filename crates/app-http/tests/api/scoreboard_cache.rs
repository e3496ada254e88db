//! The Redis board cache in front of Postgres: answers equal Postgres's, a Redis that dies
//! mid-run degrades to Postgres and is rebuilt when back, the admin rebuild and the drift job
//! repair a corrupted board, and Redis and Postgres rank random boards with ties alike.
//! Needs `DATABASE_URL` and `REDIS_URL` (and `redis-server` on PATH for a Redis of its own).

use std::io::Write;
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use keel_adapters_postgres::PgScoreStore;
use keel_adapters_postgres::testkit::TestDatabase;
use keel_adapters_redis::testkit::{TestRedis, require_services, test_redis};
use keel_adapters_redis::{RedisLeaderboard, RedisPool};
use keel_app_http::Application;
use keel_app_http::products::scoreboard::upkeep::{CACHE_FALLBACKS_TOTAL, DRIFT};
use keel_app_http::state::Stores;
use keel_domain::audit::AuditQuery;
use keel_domain::identity::user::UserId;
use keel_domain::jobs::{JobId, JobKind, JobState};
use keel_domain::scoreboard::{
    ApplyScore, CacheRead, CheckBoardDrift, LeaderboardCache, MAX_SCORE, ScoreStore, ScoredAction,
    Standing, token_hash, whole_second,
};
use serde_json::Value;
use uuid::Uuid;

use crate::accounts::mint_user;
use crate::scoreboard::{start, update};
use crate::support::{TestApp, assert_problem, metric, no_routes, run_app, test_settings};

/// A `redis-server` of the test's own on a spare port, without persistence; killed when
/// dropped, panics included.
struct OwnRedis {
    port: u16,
    child: Option<Child>,
}

impl OwnRedis {
    /// Starts one; without `redis-server` on PATH, `None` after a `SKIP:` line (a failure with
    /// `KEEL_REQUIRE_SERVICES=1`).
    async fn start() -> Option<Self> {
        if Command::new("redis-server")
            .arg("--version")
            .output()
            .is_err()
        {
            assert!(
                !require_services(),
                "redis-server is not on PATH but KEEL_REQUIRE_SERVICES=1 requires this test"
            );
            // Straight to stderr, past the harness's capture, like the other SKIP lines.
            let _ = writeln!(std::io::stderr(), "SKIP: redis-server is not on PATH");
            return None;
        }
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .unwrap()
            .port();
        let mut redis = Self { port, child: None };
        redis.restart().await;
        Some(redis)
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Starts the server (again) on the same port, empty, and waits until it accepts.
    async fn restart(&mut self) {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server is on PATH");
        self.child = Some(child);
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "redis-server did not start"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A node like the binary's (bootstrap and all) on `db` and the Redis at `redis_url` under
/// `prefix`, with one job worker polling often; the test shares its stores.
async fn spawn_node(db: &TestDatabase, redis_url: &str, prefix: &str) -> (TestApp, Stores) {
    let settings = test_settings(&[
        ("DATABASE_URL", db.url()),
        ("KEEL_MIGRATE", "true"),
        ("REDIS_URL", redis_url),
        ("KEEL_REDIS_PREFIX", prefix),
        ("KEEL_WORKERS", "1"),
        ("KEEL_JOBS_POLL_INTERVAL_MS", "50"),
    ]);
    let stores = Stores::connect(&settings).await.unwrap();
    let app = Application::start_over(settings, stores.clone(), no_routes())
        .await
        .unwrap();
    (run_app(app), stores)
}

/// Postgres and the shared test Redis (its prefix), or `None` when service tests are skipped.
async fn services() -> Option<(TestDatabase, TestRedis)> {
    Some((TestDatabase::create().await?, test_redis().await?))
}

/// The node's board cache, read directly.
fn board(prefix: &str, pool: RedisPool) -> RedisLeaderboard {
    RedisLeaderboard::new(pool.with_prefix(prefix))
}

/// Scores one `COMPLETE_TASK` (10 points) for the holder of `token`.
async fn score(app: &TestApp, token: &str) {
    let (action, action_token) = start(app, token).await;
    assert_eq!(
        update(app, token, &action, &action_token).await.status(),
        200
    );
}

/// `(rank, user, score)` of each board row.
type Row = (u64, String, i64);

/// The board as `GET /scoreboard/top?limit=100` shows it.
async fn http_top(app: &TestApp) -> Vec<Row> {
    let body: Value = app
        .get("/api/v1/scoreboard/top?limit=100")
        .await
        .json()
        .await
        .unwrap();
    body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i["rank"].as_u64().unwrap(),
                i["user_id"].as_str().unwrap().to_owned(),
                i["score"].as_i64().unwrap(),
            )
        })
        .collect()
}

/// The board as Postgres has it.
async fn truth(stores: &Stores) -> Vec<Row> {
    stores
        .products
        .scoreboard
        .store
        .top(100)
        .await
        .unwrap()
        .iter()
        .map(|r| (r.rank, r.standing.user_id.to_string(), r.standing.score))
        .collect()
}

/// Asserts that `/scoreboard/top` and every user's `/users/{id}/rank` equal Postgres.
async fn assert_answers_equal_postgres(app: &TestApp, stores: &Stores) {
    let expected = truth(stores).await;
    assert!(!expected.is_empty());
    assert_eq!(http_top(app).await, expected, "top");
    for (rank, user, score) in &expected {
        let ranked: Value = app
            .get(&format!("/api/v1/users/{user}/rank"))
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(
            (ranked["rank"].as_u64(), ranked["score"].as_i64()),
            (Some(*rank), Some(*score)),
            "rank of {user}"
        );
        assert_eq!(ranked["display_name"], "Minted");
    }
}

/// Every standing in Postgres.
async fn standings(stores: &Stores) -> Vec<Standing> {
    stores
        .products
        .scoreboard
        .store
        .standings(None, 10_000)
        .await
        .unwrap()
}

/// Asserts that the Redis board is built and equals Postgres's board.
async fn assert_redis_equals_postgres(cache: &RedisLeaderboard, stores: &Stores) {
    assert_eq!(
        cache.top(10_000).await.unwrap(),
        CacheRead::Answer(standings(stores).await),
        "Redis board = Postgres board"
    );
}

/// Runs one drift check on the node's worker and waits for it to complete.
async fn run_drift_job(stores: &Stores) {
    let job = CheckBoardDrift.to_new_job(Utc::now()).unwrap();
    let id: JobId = stores.jobs.enqueue(job, Utc::now()).await.unwrap().id();
    let started = Instant::now();
    loop {
        let state = stores.jobs.get(id).await.unwrap().unwrap().state;
        if state == JobState::Completed {
            return;
        }
        assert_ne!(state, JobState::Dead, "the drift job died");
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "drift job still {state:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Users who scored 30, 20 and 10 (best first), with their tokens.
async fn three_scorers(app: &TestApp, stores: &Stores) -> Vec<(UserId, String)> {
    let mut users = Vec::new();
    for actions in [3, 2, 1] {
        let (user, token) = mint_user(stores, "participant").await;
        for _ in 0..actions {
            score(app, &token).await;
        }
        users.push((user, token));
    }
    users
}

/// Puts a stranger at the top of the Redis board (`ZADD`) and removes `user` from it (`ZREM`),
/// behind keel's back.
async fn corrupt(cache: &RedisLeaderboard, user: UserId) {
    let stranger = Standing {
        user_id: UserId(Uuid::now_v7()),
        score: MAX_SCORE,
        reached_at: whole_second(Utc::now()),
    };
    cache.record(&stranger).await.unwrap();
    cache.remove(user).await.unwrap();
}

/// A new account, written directly to the users table.
async fn account(db: &TestDatabase) -> UserId {
    use diesel_async::RunQueryDsl;
    let id = Uuid::now_v7();
    let mut conn = db.pool().get().await.unwrap();
    diesel::sql_query(format!(
        "INSERT INTO users (id, email, display_name, role, password_hash, created_at) \
         VALUES ('{id}', '{}@cache.test', 'Player', 'participant', 'not-a-hash', now())",
        id.simple()
    ))
    .execute(&mut conn)
    .await
    .unwrap();
    UserId(id)
}

/// An action of `delta` for `user` at `at`.
fn action(user: UserId, delta: i64, at: DateTime<Utc>) -> ScoredAction {
    let action_id = Uuid::now_v7();
    ScoredAction {
        action_id,
        user_id: user,
        action_type: "COMPLETE_TASK".into(),
        delta,
        token_hash: token_hash(&action_id.to_string()),
        at,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn answers_from_redis_equal_postgres() {
    let Some((db, redis)) = services().await else {
        return;
    };
    let url = std::env::var("REDIS_URL").unwrap();
    let (app, stores) = spawn_node(&db, &url, redis.pool().prefix()).await;
    let cache = board(redis.pool().prefix(), redis.pool().clone());
    three_scorers(&app, &stores).await;
    // The first read finds no built board and answers from Postgres; the next one rebuilds.
    assert_answers_equal_postgres(&app, &stores).await;
    assert_redis_equals_postgres(&cache, &stores).await;
    // Written through after the rebuild, still equal.
    let (_, token) = mint_user(&stores, "participant").await;
    score(&app, &token).await;
    assert_answers_equal_postgres(&app, &stores).await;
    assert_redis_equals_postgres(&cache, &stores).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_redis_killed_mid_run_degrades_to_postgres_and_is_rebuilt_when_back() {
    let Some((db, _shared)) = services().await else {
        return;
    };
    let Some(mut own) = OwnRedis::start().await else {
        return;
    };
    let prefix = format!("keel-test-{}", Uuid::new_v4());
    let (app, stores) = spawn_node(&db, &own.url(), &prefix).await;
    let users = three_scorers(&app, &stores).await;
    assert_answers_equal_postgres(&app, &stores).await;

    own.kill();
    let fallbacks = metric(&app, CACHE_FALLBACKS_TOTAL).await;
    // The last scorer passes the leader while Redis is gone.
    for _ in 0..3 {
        score(&app, &users[2].1).await;
    }
    assert_eq!(truth(&stores).await[0].1, users[2].0.to_string());
    assert_answers_equal_postgres(&app, &stores).await;
    assert!(
        metric(&app, CACHE_FALLBACKS_TOTAL).await > fallbacks,
        "fallbacks are counted"
    );

    // Back, empty: the drift job rebuilds it from Postgres.
    own.restart().await;
    let pool = RedisPool::connect(&own.url(), 2).await.unwrap();
    let cache = board(&prefix, pool);
    assert_eq!(cache.top(10).await.unwrap(), CacheRead::Unbuilt);
    run_drift_job(&stores).await;
    assert_redis_equals_postgres(&cache, &stores).await;
    assert_answers_equal_postgres(&app, &stores).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn admins_rebuild_a_corrupted_board_and_the_rebuild_is_audited() {
    let Some((db, redis)) = services().await else {
        return;
    };
    let url = std::env::var("REDIS_URL").unwrap();
    let (app, stores) = spawn_node(&db, &url, redis.pool().prefix()).await;
    let cache = board(redis.pool().prefix(), redis.pool().clone());
    let users = three_scorers(&app, &stores).await;
    let (_, admin) = mint_user(&stores, "admin").await;
    let rebuild = |token: String| {
        let request = app
            .client
            .post(app.url("/api/v1/admin/scoreboard/rebuild"))
            .bearer_auth(token);
        async move { request.send().await.unwrap() }
    };
    let first = rebuild(admin.clone()).await;
    assert_eq!(first.status(), 200);
    assert_eq!(first.json::<Value>().await.unwrap()["rebuilt"], 3);

    corrupt(&cache, users[1].0).await;
    let shown = http_top(&app).await;
    assert_ne!(shown, truth(&stores).await, "reads come from Redis");
    assert_eq!(shown.len(), 3, "a stranger on top, the second missing");

    let refused = rebuild(users[0].1.clone()).await;
    assert_problem(refused, 403, "forbidden").await;
    let response = rebuild(admin).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.json::<Value>().await.unwrap()["rebuilt"], 3);
    assert_redis_equals_postgres(&cache, &stores).await;
    assert_answers_equal_postgres(&app, &stores).await;
    let query = AuditQuery {
        action: Some("scoreboard.rebuilt".into()),
        ..AuditQuery::default()
    };
    let audited = stores.audit.list(&query).await.unwrap().items.len();
    assert_eq!(audited, 2, "each rebuild audited");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_drift_job_repairs_a_corrupted_board_and_reports_the_drift() {
    let Some((db, redis)) = services().await else {
        return;
    };
    let url = std::env::var("REDIS_URL").unwrap();
    let (app, stores) = spawn_node(&db, &url, redis.pool().prefix()).await;
    let cache = board(redis.pool().prefix(), redis.pool().clone());
    let users = three_scorers(&app, &stores).await;
    run_drift_job(&stores).await;
    assert_redis_equals_postgres(&cache, &stores).await;
    // The gauge is process-wide and other tests' nodes check their boards too: retry the
    // corruption until this node's report is the last one read.
    for attempt in 1.. {
        corrupt(&cache, users[1].0).await;
        run_drift_job(&stores).await;
        assert_redis_equals_postgres(&cache, &stores).await;
        // [stranger, 1st, 3rd] against [1st, 2nd, 3rd]: two positions wrong.
        if metric(&app, DRIFT).await == 2.0 {
            break;
        }
        assert!(
            attempt < 5,
            "keel_scoreboard_drift never showed this node's drift"
        );
    }
}

/// A small deterministic generator (xorshift64*), seeded per run and printed on failure.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % n
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn redis_and_postgres_rank_random_boards_with_ties_alike() {
    let Some((db, redis)) = services().await else {
        return;
    };
    let store = PgScoreStore::new(db.pool().clone());
    let cache = RedisLeaderboard::new(redis.pool().clone());
    cache.replace_all(&[]).await.unwrap();
    let seed = Uuid::new_v4().as_u64_pair().0 | 1;
    let mut rng = Rng(seed);
    // Only accounts score: the users exist.
    let mut users: Vec<UserId> = Vec::new();
    for _ in 0..40 {
        users.push(account(&db).await);
    }
    let t0 = whole_second(Utc::now()) - chrono::Duration::seconds(10);
    // Few deltas and few seconds: many users tie on score, and on score and time.
    for _ in 0..120 {
        let user = users[usize::try_from(rng.below(40)).unwrap()];
        let delta = [10, 20][usize::try_from(rng.below(2)).unwrap()];
        let at = t0 + chrono::Duration::seconds(i64::try_from(rng.below(3)).unwrap());
        if let ApplyScore::Applied {
            receipt,
            reached_at,
        } = store.apply(&action(user, delta, at)).await.unwrap()
        {
            let standing = Standing {
                user_id: user,
                score: receipt.new_score,
                reached_at,
            };
            cache.record(&standing).await.unwrap();
        }
    }
    let expected = store.standings(None, 1000).await.unwrap();
    let ties = expected
        .windows(2)
        .filter(|w| w[0].score == w[1].score && w[0].reached_at == w[1].reached_at)
        .count();
    assert!(ties > 0, "seed {seed}: the board has exact ties");
    assert_eq!(
        cache.top(1000).await.unwrap(),
        CacheRead::Answer(expected.clone()),
        "seed {seed}: top"
    );
    for standing in &expected {
        let in_postgres = store.rank(standing.user_id).await.unwrap().unwrap();
        let in_redis = cache.rank(standing.user_id).await.unwrap();
        assert_eq!(
            in_redis,
            CacheRead::Answer(Some((in_postgres.rank, in_postgres.standing))),
            "seed {seed}: rank of {standing:?}"
        );
    }
}
