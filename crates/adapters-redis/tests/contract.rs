#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The Redis adapters against a real Redis (`REDIS_URL`); skipped without one unless
//! `KEEL_REQUIRE_SERVICES=1`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeDelta, Utc};
use keel_adapters_memory::MemoryIdempotencyStore;
use keel_adapters_redis::testkit::test_redis;
use keel_adapters_redis::{
    RedisBoardFeed, RedisHealth, RedisIdempotencyCache, RedisLeaderboard, RedisPool,
    RedisRateLimiter,
};
use keel_domain::StoreError;
use keel_domain::health::HealthProbe;
use keel_domain::idempotency::{
    CachedState, IdempotencyCache, IdempotencyKey, LayeredIdempotencyStore, RequestFingerprint,
    Scope, StoredResponse,
};
use keel_domain::identity::user::UserId;
use keel_domain::ratelimit::{Period, RateLimiter, RatePolicy};
use keel_domain::scoreboard::ranking::BOARD_EPOCH_SECS;
use keel_domain::scoreboard::{
    BoardFeed, BoardSignal, CacheRead, LeaderboardCache, MAX_SCORE, Standing, board_order,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};
use uuid::Uuid;

#[tokio::test(flavor = "multi_thread")]
async fn rate_limiter_keeps_the_contract() {
    let Some(redis) = test_redis().await else {
        return;
    };
    let limiter = RedisRateLimiter::new(redis.pool().clone());
    keel_domain::testkit::rate_limiter::run_all(&limiter).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn two_nodes_share_one_budget() {
    let Some(redis) = test_redis().await else {
        return;
    };
    let nodes = [
        RedisRateLimiter::new(redis.pool().clone()),
        RedisRateLimiter::new(redis.another_node().await),
    ];
    let policy = RatePolicy {
        count: 4,
        period: Period::Hour,
    };
    let now = Utc::now();
    for i in 0..4 {
        let d = nodes[i % 2]
            .check("auth:ip:192.0.2.7", &policy, now)
            .await
            .unwrap();
        assert!(d.allowed);
        assert_eq!(d.remaining, 3 - u32::try_from(i).unwrap());
    }
    for node in &nodes {
        let d = node.check("auth:ip:192.0.2.7", &policy, now).await.unwrap();
        assert!(!d.allowed, "the budget is shared: {d:?}");
        assert_eq!(d.retry_after, Some(Duration::from_secs(900)));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_flood_on_one_key_is_decided_in_few_round_trips_exactly_as_one_by_one() {
    let Some(redis) = test_redis().await else {
        return;
    };
    let limiter = RedisRateLimiter::new(redis.pool().clone());
    let policy = RatePolicy {
        count: 50,
        period: Period::Hour,
    };
    let now = Utc::now();
    let checks = (0..200).map(|_| limiter.check("scan:ip:192.0.2.9", &policy, now));
    let decisions: Vec<_> = futures_util::future::join_all(checks)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    let mut remaining: Vec<u32> = decisions
        .iter()
        .filter(|d| d.allowed)
        .map(|d| d.remaining)
        .collect();
    remaining.sort_unstable();
    assert_eq!(
        remaining,
        (0..50).collect::<Vec<_>>(),
        "the burst passes once, each request seeing the budget its predecessors left"
    );
    assert!(
        decisions
            .iter()
            .filter(|d| !d.allowed)
            .all(|d| d.retry_after == Some(Duration::from_secs(72))),
        "refusals wait one interval (1 h / 50)"
    );
    assert!(
        limiter.round_trips() < 200,
        "200 concurrent checks of one key took {} round trips",
        limiter.round_trips()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn key_has_the_hash_tag_and_expires_when_the_budget_is_full() {
    let Some(redis) = test_redis().await else {
        return;
    };
    let limiter = RedisRateLimiter::new(redis.pool().clone());
    let key = limiter.key("score:user:42");
    assert_eq!(
        key,
        format!("{}:rl:{{score:user:42}}", redis.pool().prefix())
    );
    let policy = RatePolicy {
        count: 10,
        period: Period::Minute,
    };
    let now = Utc::now();
    limiter.check("score:user:42", &policy, now).await.unwrap();
    let d = limiter.check("score:user:42", &policy, now).await.unwrap();
    assert_eq!(d.reset_after, Duration::from_secs(12));
    let pttl: i64 = redis
        .pool()
        .run(|mut conn| async move { redis::cmd("PTTL").arg(key).query_async(&mut conn).await })
        .await
        .unwrap();
    assert!(
        (10_000..=12_000).contains(&pttl),
        "PTTL {pttl} ms, expected about 12 s"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn dropping_the_test_redis_deletes_its_keys() {
    let Some(redis) = test_redis().await else {
        return;
    };
    let prefix = redis.pool().prefix().to_owned();
    let other = redis.another_node().await;
    let policy = RatePolicy {
        count: 1,
        period: Period::Hour,
    };
    RedisRateLimiter::new(other.clone())
        .check("x", &policy, Utc::now())
        .await
        .unwrap();
    drop(redis);
    let pattern = format!("{prefix}:*");
    let (_, keys): (u64, Vec<String>) = other
        .run(|mut conn| async move {
            redis::cmd("SCAN")
                .arg(0)
                .arg("MATCH")
                .arg(pattern)
                .arg("COUNT")
                .arg(10_000)
                .query_async(&mut conn)
                .await
        })
        .await
        .unwrap();
    assert!(keys.is_empty(), "left behind: {keys:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn health_pings_redis() {
    let Some(redis) = test_redis().await else {
        return;
    };
    let health = RedisHealth::new(redis.pool().clone());
    assert_eq!(health.dependency(), "redis");
    health.check().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn unreachable_redis_is_unavailable_quickly() {
    let started = Instant::now();
    let err = RedisPool::connect("redis://127.0.0.1:1", 2)
        .await
        .unwrap_err();
    assert_redis_unavailable(&err);
    assert!(started.elapsed() < Duration::from_secs(3));
    let err = RedisPool::connect("not a url", 2).await.unwrap_err();
    assert_redis_unavailable(&err);
}

/// `err` is Redis being unavailable, nothing else.
fn assert_redis_unavailable(err: &StoreError) {
    assert!(
        matches!(
            err,
            StoreError::Unavailable {
                dependency: "redis",
                ..
            }
        ),
        "{err:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// Idempotency cache
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn layered_store_over_redis_keeps_the_idempotency_contract() {
    let Some(redis) = test_redis().await else {
        return;
    };
    let store = LayeredIdempotencyStore::new(
        Arc::new(MemoryIdempotencyStore::new()),
        Arc::new(RedisIdempotencyCache::new(redis.pool().clone())),
    );
    keel_domain::testkit::idempotency_store::run_all(&store).await;
}

fn idem_key(raw: &str) -> IdempotencyKey {
    IdempotencyKey::parse(raw).unwrap()
}

fn fingerprint(n: u8) -> RequestFingerprint {
    RequestFingerprint::compute("POST", "/api/v1/things", "user:cache", &[n])
}

/// A response with a non-UTF-8 binary body and several headers whose order matters.
fn binary_response() -> StoredResponse {
    StoredResponse {
        status: 201,
        headers: vec![
            ("content-type".into(), "application/octet-stream".into()),
            ("location".into(), "/api/v1/things/7".into()),
            ("x-b".into(), "2".into()),
            ("x-a".into(), "1 {é}|".into()),
            ("x-empty".into(), String::new()),
        ],
        body: vec![0x00, 0xff, 0xfe, 0xc3, 0x28, b'L', 0x80, 0x00, b'\r', b'\n'],
    }
}

/// An instant `secs` from now, off a whole millisecond so sub-millisecond precision is checked.
fn in_secs(secs: i64) -> DateTime<Utc> {
    let now = Utc::now();
    DateTime::from_timestamp(now.timestamp() + secs, 123_456_789).unwrap()
}

async fn pttl(pool: &RedisPool, key: String) -> i64 {
    pool.run(|mut conn| async move { redis::cmd("PTTL").arg(key).query_async(&mut conn).await })
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn lease_is_set_once_and_never_overwrites_a_completed_entry() {
    let Some(redis) = test_redis().await else {
        return;
    };
    let cache = RedisIdempotencyCache::new(redis.pool().clone());
    let (scope, key) = (Scope::user("lease-nx"), idem_key("k-1"));
    let lease_until = in_secs(30);
    assert!(
        cache
            .try_lease(&scope, &key, &fingerprint(1), lease_until)
            .await
            .unwrap()
    );
    assert!(
        !cache
            .try_lease(&scope, &key, &fingerprint(2), in_secs(60))
            .await
            .unwrap()
    );
    assert!(
        !cache
            .try_lease(&scope, &key, &fingerprint(1), in_secs(60))
            .await
            .unwrap()
    );
    assert_eq!(
        cache.get(&scope, &key).await.unwrap(),
        Some(CachedState::Leased {
            fingerprint: fingerprint(1),
            lease_until,
        }),
        "the first lease stays"
    );

    let expires_at = in_secs(3600);
    cache
        .put_completed(
            &scope,
            &key,
            &fingerprint(1),
            &binary_response(),
            expires_at,
        )
        .await
        .unwrap();
    assert!(
        !cache
            .try_lease(&scope, &key, &fingerprint(3), in_secs(30))
            .await
            .unwrap()
    );
    assert_eq!(
        cache.get(&scope, &key).await.unwrap(),
        Some(CachedState::Completed {
            fingerprint: fingerprint(1),
            response: binary_response(),
            expires_at,
        }),
        "a lease never overwrites a completed entry"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_leases_have_exactly_one_winner() {
    let Some(redis) = test_redis().await else {
        return;
    };
    let cache = Arc::new(RedisIdempotencyCache::new(redis.pool().clone()));
    let mut attempts = JoinSet::new();
    for n in 0..20u8 {
        let cache = Arc::clone(&cache);
        attempts.spawn(async move {
            cache
                .try_lease(
                    &Scope::user("race"),
                    &idem_key("k"),
                    &fingerprint(n),
                    in_secs(30),
                )
                .await
                .unwrap()
        });
    }
    let winners = attempts
        .join_all()
        .await
        .into_iter()
        .filter(|won| *won)
        .count();
    assert_eq!(winners, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn completed_entry_replaces_a_lease() {
    let Some(redis) = test_redis().await else {
        return;
    };
    let cache = RedisIdempotencyCache::new(redis.pool().clone());
    let (scope, key) = (Scope::user("replace"), idem_key("k-1"));
    assert!(
        cache
            .try_lease(&scope, &key, &fingerprint(1), in_secs(30))
            .await
            .unwrap()
    );
    let expires_at = in_secs(3600);
    cache
        .put_completed(
            &scope,
            &key,
            &fingerprint(1),
            &binary_response(),
            expires_at,
        )
        .await
        .unwrap();
    assert_eq!(
        cache.get(&scope, &key).await.unwrap(),
        Some(CachedState::Completed {
            fingerprint: fingerprint(1),
            response: binary_response(),
            expires_at,
        })
    );
    let ttl = pttl(redis.pool(), cache.key(&scope, &key)).await;
    assert!(
        (3_500_000..=3_601_000).contains(&ttl),
        "the completed entry's own expiry replaces the lease's: PTTL {ttl} ms"
    );
    // A later completion (e.g. of a takeover) replaces the earlier one.
    let other = StoredResponse {
        status: 200,
        headers: vec![],
        body: vec![],
    };
    cache
        .put_completed(&scope, &key, &fingerprint(2), &other, expires_at)
        .await
        .unwrap();
    assert_eq!(
        cache.get(&scope, &key).await.unwrap(),
        Some(CachedState::Completed {
            fingerprint: fingerprint(2),
            response: other,
            expires_at,
        })
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn get_round_trips_every_field_exactly() {
    let Some(redis) = test_redis().await else {
        return;
    };
    let cache = RedisIdempotencyCache::new(redis.pool().clone());
    let scope = Scope::user("round-trip");
    assert_eq!(cache.get(&scope, &idem_key("absent")).await.unwrap(), None);

    let lease_until = in_secs(30) + TimeDelta::nanoseconds(1);
    assert!(
        cache
            .try_lease(&scope, &idem_key("lease"), &fingerprint(7), lease_until)
            .await
            .unwrap()
    );
    assert_eq!(
        cache.get(&scope, &idem_key("lease")).await.unwrap(),
        Some(CachedState::Leased {
            fingerprint: fingerprint(7),
            lease_until,
        })
    );

    let empty = StoredResponse {
        status: 204,
        headers: vec![],
        body: vec![],
    };
    for (raw, response) in [("binary", binary_response()), ("empty", empty)] {
        let expires_at = in_secs(86_400) + TimeDelta::nanoseconds(7);
        cache
            .put_completed(
                &scope,
                &idem_key(raw),
                &fingerprint(8),
                &response,
                expires_at,
            )
            .await
            .unwrap();
        let Some(CachedState::Completed {
            fingerprint: got_fingerprint,
            response: got,
            expires_at: got_expires_at,
        }) = cache.get(&scope, &idem_key(raw)).await.unwrap()
        else {
            panic!("{raw}: expected a completed entry");
        };
        assert_eq!(got_fingerprint, fingerprint(8));
        assert_eq!(got.status, response.status);
        assert_eq!(got.headers, response.headers, "{raw}: headers in order");
        assert_eq!(got.body, response.body, "{raw}: body byte for byte");
        assert_eq!(got_expires_at, expires_at, "{raw}: to the nanosecond");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn remove_deletes_a_lease_but_keeps_a_completed_entry() {
    let Some(redis) = test_redis().await else {
        return;
    };
    let cache = RedisIdempotencyCache::new(redis.pool().clone());
    let scope = Scope::user("remove");
    let (leased, completed) = (idem_key("leased"), idem_key("completed"));

    assert!(
        cache
            .try_lease(&scope, &leased, &fingerprint(1), in_secs(30))
            .await
            .unwrap()
    );
    cache.remove(&scope, &leased).await.unwrap();
    assert_eq!(cache.get(&scope, &leased).await.unwrap(), None);
    assert!(
        cache
            .try_lease(&scope, &leased, &fingerprint(2), in_secs(30))
            .await
            .unwrap(),
        "a removed lease can be taken again"
    );

    let expires_at = in_secs(3600);
    cache
        .put_completed(
            &scope,
            &completed,
            &fingerprint(1),
            &binary_response(),
            expires_at,
        )
        .await
        .unwrap();
    cache.remove(&scope, &completed).await.unwrap();
    assert_eq!(
        cache.get(&scope, &completed).await.unwrap(),
        Some(CachedState::Completed {
            fingerprint: fingerprint(1),
            response: binary_response(),
            expires_at,
        })
    );

    cache.remove(&scope, &idem_key("never-set")).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn keys_carry_the_prefix_and_a_hash_tag_and_expire() {
    let Some(redis) = test_redis().await else {
        return;
    };
    let cache = RedisIdempotencyCache::new(redis.pool().clone());
    let (scope, key) = (Scope::user("ttl"), idem_key("k-1"));
    let redis_key = cache.key(&scope, &key);
    let tag = redis_key
        .strip_prefix(&format!("{}:idem:{{", redis.pool().prefix()))
        .and_then(|rest| rest.strip_suffix('}'))
        .unwrap_or_else(|| panic!("{redis_key}"));
    assert_eq!(tag.len(), 64, "{redis_key}");
    assert!(
        tag.bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    );
    assert_eq!(cache.key(&scope, &key), redis_key, "stable");

    assert!(
        cache
            .try_lease(&scope, &key, &fingerprint(1), in_secs(30))
            .await
            .unwrap()
    );
    let ttl = pttl(redis.pool(), redis_key.clone()).await;
    assert!((1..=31_000).contains(&ttl), "lease PTTL {ttl} ms");

    cache
        .put_completed(
            &scope,
            &key,
            &fingerprint(1),
            &binary_response(),
            in_secs(86_400),
        )
        .await
        .unwrap();
    let ttl = pttl(redis.pool(), redis_key).await;
    assert!(
        (86_000_000..=86_401_000).contains(&ttl),
        "completed PTTL {ttl} ms"
    );

    // An instant already past still gets a (1 ms) expiry, never a key without one.
    let past = idem_key("past");
    assert!(
        cache
            .try_lease(&scope, &past, &fingerprint(1), in_secs(-5))
            .await
            .unwrap()
    );
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(cache.get(&scope, &past).await.unwrap(), None);
}

#[tokio::test(flavor = "multi_thread")]
async fn keys_with_braces_and_bars_work_and_never_collide() {
    let Some(redis) = test_redis().await else {
        return;
    };
    let cache = RedisIdempotencyCache::new(redis.pool().clone());
    let prefix = format!("{}:idem:", redis.pool().prefix());
    let nasty = idem_key("}{order|42}{ ~ {}|");
    let scope = Scope::user("{x}|y");
    let redis_key = cache.key(&scope, &nasty);
    let tag = redis_key.strip_prefix(&prefix).unwrap();
    assert_eq!(tag.matches('{').count(), 1, "{redis_key}");
    assert_eq!(tag.matches('}').count(), 1, "{redis_key}");

    let expires_at = in_secs(3600);
    assert!(
        cache
            .try_lease(&scope, &nasty, &fingerprint(1), in_secs(30))
            .await
            .unwrap()
    );
    cache
        .put_completed(
            &scope,
            &nasty,
            &fingerprint(1),
            &binary_response(),
            expires_at,
        )
        .await
        .unwrap();
    assert_eq!(
        cache.get(&scope, &nasty).await.unwrap(),
        Some(CachedState::Completed {
            fingerprint: fingerprint(1),
            response: binary_response(),
            expires_at,
        })
    );

    // Splits of the same text between scope and key, and the same key in another scope, are
    // different entries.
    let pairs = [
        (Scope::from_stored("user:a|b".into()), idem_key("c")),
        (Scope::from_stored("user:a".into()), idem_key("b|c")),
        (Scope::from_stored("user:a|".into()), idem_key("b|c")),
        (
            Scope::from_stored("user:{x}|y".into()),
            idem_key("}{order|42}{ ~ {} "),
        ),
        (Scope::user("other"), nasty.clone()),
    ];
    for (scope, key) in &pairs {
        assert_ne!(cache.key(scope, key), redis_key);
        assert!(
            cache
                .try_lease(scope, key, &fingerprint(2), in_secs(30))
                .await
                .unwrap()
        );
    }
    for (scope, key) in &pairs {
        assert!(matches!(
            cache.get(scope, key).await.unwrap(),
            Some(CachedState::Leased { .. })
        ));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn undecodable_value_reads_as_absent() {
    let Some(redis) = test_redis().await else {
        return;
    };
    let cache = RedisIdempotencyCache::new(redis.pool().clone());
    let (scope, key) = (Scope::user("garbage"), idem_key("k"));
    let redis_key = cache.key(&scope, &key);
    for garbage in [&b"{\"state\":\"completed\"}"[..], b"L", b"C\x09", b""] {
        let target = redis_key.clone();
        redis
            .pool()
            .run(|mut conn| async move {
                redis::cmd("SET")
                    .arg(target)
                    .arg(garbage)
                    .arg("PX")
                    .arg(60_000)
                    .query_async::<()>(&mut conn)
                    .await
            })
            .await
            .unwrap();
        assert_eq!(cache.get(&scope, &key).await.unwrap(), None, "{garbage:?}");
    }
}

/// `REDIS_URL` pointed at `addr` instead, and the `host:port` it pointed at.
fn redirect(url: &str, addr: SocketAddr) -> (String, String) {
    let (scheme, rest) = url.split_once("://").expect("REDIS_URL has a scheme");
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let (userinfo, host_port) = match authority.rsplit_once('@') {
        Some((userinfo, host_port)) => (format!("{userinfo}@"), host_port),
        None => (String::new(), authority),
    };
    let has_port = host_port
        .rsplit_once(':')
        .is_some_and(|(_, port)| port.parse::<u16>().is_ok());
    let upstream = if has_port {
        host_port.to_owned()
    } else {
        format!("{host_port}:6379")
    };
    (format!("{scheme}://{userinfo}{addr}{tail}"), upstream)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Link {
    /// Bytes flow both ways.
    Forward,
    /// Sockets stay open, nothing passes: Redis hangs.
    Frozen,
    /// Every socket and the listener are closed: Redis is gone.
    Closed,
}

/// A TCP proxy in front of the test Redis, to make Redis hang or vanish under a live pool.
struct Proxy {
    link: watch::Sender<Link>,
    accept: JoinHandle<()>,
    /// `REDIS_URL` through the proxy.
    url: String,
}

impl Proxy {
    async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let direct = std::env::var("REDIS_URL").unwrap();
        let (url, upstream) = redirect(&direct, listener.local_addr().unwrap());
        let (link, mut stop) = watch::channel(Link::Forward);
        let relays = link.subscribe();
        let accept = tokio::spawn(async move {
            let mut open = JoinSet::new();
            loop {
                tokio::select! {
                    accepted = listener.accept() => {
                        if let Ok((client, _)) = accepted {
                            open.spawn(relay(client, upstream.clone(), relays.clone()));
                        }
                    }
                    _ = stop.wait_for(|l| *l == Link::Closed) => break,
                }
            }
            drop(listener);
            while open.join_next().await.is_some() {}
        });
        Self { link, accept, url }
    }

    fn freeze(&self) {
        self.link.send_replace(Link::Frozen);
    }

    /// Closes every socket; returns once they are all closed.
    async fn close(self) {
        self.link.send_replace(Link::Closed);
        self.accept.await.unwrap();
    }
}

async fn relay(client: TcpStream, upstream: String, link: watch::Receiver<Link>) {
    let forward = *link.borrow() == Link::Forward;
    if forward && let Ok(server) = TcpStream::connect(&upstream).await {
        let (client_in, client_out) = client.into_split();
        let (server_in, server_out) = server.into_split();
        tokio::join!(
            pump(client_in, server_out, link.clone()),
            pump(server_in, client_out, link.clone()),
        );
        return;
    }
    let mut link = link;
    let _ = link.wait_for(|l| *l == Link::Closed).await;
}

/// Copies `from` to `to` while the link forwards. The link is checked after every read, so a
/// request written after [`Proxy::freeze`] returned is never passed on, even when this task was
/// already running when the link froze. Frozen, it holds both halves open until closed; at end
/// of stream it returns and drops them.
async fn pump(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, mut link: watch::Receiver<Link>) {
    let mut buf = vec![0; 16 * 1024];
    loop {
        let read = tokio::select! {
            read = from.read(&mut buf) => read,
            _ = link.wait_for(|l| *l != Link::Forward) => break,
        };
        let n = match read {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if *link.borrow() != Link::Forward {
            break;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
    let _ = link.wait_for(|l| *l == Link::Closed).await;
}

/// Every cache operation fails with `Unavailable` within `limit`.
async fn every_operation_is_unavailable_within(cache: &RedisIdempotencyCache, limit: Duration) {
    let (scope, key) = (Scope::user("gone"), idem_key("k"));
    let (fp, response) = (fingerprint(1), binary_response());
    let started = Instant::now();
    let (got, leased, completed, removed) = tokio::join!(
        cache.get(&scope, &key),
        cache.try_lease(&scope, &key, &fp, in_secs(30)),
        cache.put_completed(&scope, &key, &fp, &response, in_secs(60)),
        cache.remove(&scope, &key),
    );
    let elapsed = started.elapsed();
    for err in [
        got.map(drop).unwrap_err(),
        leased.map(drop).unwrap_err(),
        completed.unwrap_err(),
        removed.unwrap_err(),
    ] {
        assert_redis_unavailable(&err);
    }
    assert!(elapsed < limit, "took {elapsed:?}");
}

async fn cache_through(proxy: &Proxy, prefix: &str) -> RedisIdempotencyCache {
    let pool = RedisPool::connect(&proxy.url, 2)
        .await
        .unwrap()
        .with_prefix(prefix);
    let cache = RedisIdempotencyCache::new(pool);
    let (scope, key) = (Scope::user("alive"), idem_key("k"));
    assert!(
        cache
            .try_lease(&scope, &key, &fingerprint(1), in_secs(30))
            .await
            .unwrap()
    );
    assert!(cache.get(&scope, &key).await.unwrap().is_some());
    cache
}

#[tokio::test(flavor = "multi_thread")]
async fn cache_is_unavailable_quickly_when_redis_goes_away() {
    let Some(redis) = test_redis().await else {
        return;
    };
    let proxy = Proxy::start().await;
    let cache = cache_through(&proxy, redis.pool().prefix()).await;
    proxy.close().await;
    every_operation_is_unavailable_within(&cache, Duration::from_secs(3)).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn cache_is_unavailable_quickly_when_redis_stops_answering() {
    let Some(redis) = test_redis().await else {
        return;
    };
    let proxy = Proxy::start().await;
    let cache = cache_through(&proxy, redis.pool().prefix()).await;
    proxy.freeze();
    every_operation_is_unavailable_within(&cache, Duration::from_secs(3)).await;
    proxy.close().await;
}

// ---------------------------------------------------------------------------------------------
// Leaderboard cache
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn leaderboard_keeps_the_cache_contract() {
    let Some(redis) = test_redis().await else {
        return;
    };
    let board = RedisLeaderboard::new(redis.pool().clone());
    keel_domain::testkit::score_store::run_cache(&board).await;
}

/// A small deterministic generator (xorshift64*), seeded per run and printed on failure.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn uuid(&mut self) -> Uuid {
        Uuid::from_u128((u128::from(self.next()) << 64) | u128::from(self.next()))
    }
}

/// `n` random standings over the whole score and clock range, with exact ties on score and
/// time (only the user id differs), ties on score alone, and ids sharing their first bytes.
fn random_standings(rng: &mut Rng, n: usize) -> Vec<Standing> {
    let max_time = (1u64 << 31) - 1;
    let mut out: Vec<Standing> = Vec::with_capacity(n);
    while out.len() < n {
        let kind = if out.is_empty() { 0 } else { rng.below(4) };
        let base = if out.is_empty() {
            None
        } else {
            Some(out[usize::try_from(rng.below(out.len() as u64)).unwrap()].clone())
        };
        let standing = match (kind, base) {
            // An exact tie with an earlier standing; half the time an id next to its id.
            (1, Some(b)) => {
                let user = if rng.below(2) == 0 {
                    rng.uuid()
                } else {
                    Uuid::from_u128(b.user_id.0.as_u128() ^ (1 + u128::from(rng.below(255))))
                };
                Standing {
                    user_id: UserId(user),
                    ..b
                }
            }
            // The same score, reached at another time.
            (2, Some(b)) => Standing {
                user_id: UserId(rng.uuid()),
                reached_at: DateTime::from_timestamp(
                    BOARD_EPOCH_SECS + i64::try_from(rng.below(max_time + 1)).unwrap(),
                    0,
                )
                .unwrap(),
                ..b
            },
            _ => Standing {
                user_id: UserId(rng.uuid()),
                score: i64::try_from(rng.below(u64::try_from(MAX_SCORE).unwrap() + 1)).unwrap(),
                reached_at: DateTime::from_timestamp(
                    BOARD_EPOCH_SECS + i64::try_from(rng.below(max_time + 1)).unwrap(),
                    0,
                )
                .unwrap(),
            },
        };
        if out.iter().all(|s| s.user_id != standing.user_id) {
            out.push(standing);
        }
    }
    // The extremes of the range, tied at the top.
    let top = Standing {
        user_id: UserId(Uuid::from_u128(u128::MAX)),
        score: MAX_SCORE,
        reached_at: DateTime::from_timestamp(BOARD_EPOCH_SECS, 0).unwrap(),
    };
    out[0] = Standing {
        user_id: UserId(Uuid::from_u128(0)),
        ..top.clone()
    };
    out[1] = top;
    out
}

fn seeded_rng() -> (u64, Rng) {
    let seed = Uuid::new_v4().as_u64_pair().0 | 1;
    (seed, Rng(seed))
}

#[tokio::test(flavor = "multi_thread")]
async fn leaderboard_order_equals_the_board_order() {
    let Some(redis) = test_redis().await else {
        return;
    };
    let board = RedisLeaderboard::new(redis.pool().clone());
    let (seed, mut rng) = seeded_rng();
    let standings = random_standings(&mut rng, 200);
    let ties = standings
        .iter()
        .filter(|a| {
            standings.iter().any(|b| {
                a.user_id != b.user_id && a.score == b.score && a.reached_at == b.reached_at
            })
        })
        .count();
    assert!(ties >= 2, "seed {seed}: the sample has exact ties");
    board.replace_all(&[]).await.unwrap();
    for s in &standings {
        board.record(s).await.unwrap();
    }
    let mut expected = standings.clone();
    expected.sort_by(board_order);
    assert_eq!(
        built(board.top(200).await),
        expected,
        "seed {seed}: Redis order = board order"
    );
    assert_eq!(built(board.top(10).await), expected[..10], "seed {seed}");
    assert!(built(board.top(0).await).is_empty(), "top(0) is empty");
    for (i, s) in expected.iter().enumerate() {
        assert_eq!(
            built(board.rank(s.user_id).await),
            Some((u64::try_from(i).unwrap() + 1, s.clone())),
            "seed {seed}: rank of {s:?}"
        );
    }
}

async fn keys_matching(pool: &RedisPool, pattern: String) -> Vec<String> {
    let (_, keys): (u64, Vec<String>) = pool
        .run(|mut conn| async move {
            redis::cmd("SCAN")
                .arg(0)
                .arg("MATCH")
                .arg(pattern)
                .arg("COUNT")
                .arg(10_000)
                .query_async(&mut conn)
                .await
        })
        .await
        .unwrap();
    keys
}

#[tokio::test(flavor = "multi_thread")]
async fn replace_all_switches_a_large_board_and_leaves_no_temporary_key() {
    let Some(redis) = test_redis().await else {
        return;
    };
    let board = RedisLeaderboard::with_board(redis.pool().clone(), "weekly");
    assert_eq!(
        board.key(),
        format!("{}:{{board:weekly}}", redis.pool().prefix())
    );
    let (seed, mut rng) = seeded_rng();
    let old = random_standings(&mut rng, 50);
    for s in &old {
        board.record(s).await.unwrap();
    }
    // More than two chunks.
    let standings = random_standings(&mut rng, 2_345);
    board.replace_all(&standings).await.unwrap();
    let mut expected = standings.clone();
    expected.sort_by(board_order);
    assert_eq!(
        built(board.top(5_000).await),
        expected,
        "seed {seed}: exactly the new standings"
    );
    let key = board.key().to_owned();
    let ttl: i64 = redis
        .pool()
        .run(|mut conn| async move { redis::cmd("TTL").arg(key).query_async(&mut conn).await })
        .await
        .unwrap();
    assert_eq!(ttl, -1, "the board does not expire");
    let pattern = format!(
        "{}:*tmp*",
        board.key().replace('{', "\\{").replace('}', "\\}")
    );
    assert!(
        keys_matching(redis.pool(), pattern.clone())
            .await
            .is_empty()
    );

    // A bad standing fails before anything changes.
    let mut bad = standings[..3].to_vec();
    bad[1].score = MAX_SCORE + 1;
    assert!(matches!(
        board.replace_all(&bad).await,
        Err(StoreError::Corrupt(_))
    ));
    assert!(matches!(
        board.record(&bad[1]).await,
        Err(StoreError::Corrupt(_))
    ));
    assert_eq!(built(board.top(5_000).await).len(), 2_345);
    assert!(keys_matching(redis.pool(), pattern).await.is_empty());

    // Another board under the same prefix is separate.
    let global = RedisLeaderboard::new(redis.pool().clone());
    assert_eq!(global.top(10).await.unwrap(), CacheRead::Unbuilt);

    board.replace_all(&[]).await.unwrap();
    assert!(built(board.top(10).await).is_empty());
}

/// The answer of a read of a built board.
fn built<T: std::fmt::Debug>(read: Result<CacheRead<T>, StoreError>) -> T {
    match read.unwrap() {
        CacheRead::Answer(answer) => answer,
        CacheRead::Unbuilt => panic!("the board was built"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_board_lost_with_its_marker_reads_as_unbuilt() {
    let Some(redis) = test_redis().await else {
        return;
    };
    let board = RedisLeaderboard::new(redis.pool().clone());
    let (_, mut rng) = seeded_rng();
    let standings = random_standings(&mut rng, 5);
    board.replace_all(&standings).await.unwrap();
    assert_eq!(built(board.top(10).await).len(), 5);
    // What a restart without persistence (or FLUSHDB) leaves: nothing.
    let (key, marker) = (board.key().to_owned(), board.built_key().to_owned());
    redis
        .pool()
        .run(|mut conn| async move {
            redis::cmd("DEL")
                .arg(key)
                .arg(marker)
                .query_async::<i64>(&mut conn)
                .await
        })
        .await
        .unwrap();
    board.record(&standings[0]).await.unwrap();
    assert_eq!(board.top(10).await.unwrap(), CacheRead::Unbuilt);
    assert_eq!(
        board.rank(standings[0].user_id).await.unwrap(),
        CacheRead::Unbuilt
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_foreign_member_or_score_reads_as_corrupt() {
    let Some(redis) = test_redis().await else {
        return;
    };
    let board = RedisLeaderboard::new(redis.pool().clone());
    for (score, member) in [
        ("-1", "not-a-user"),
        ("1.5", "00000000-0000-0000-0000-000000000001"),
    ] {
        let (key, marker) = (board.key().to_owned(), board.built_key().to_owned());
        redis
            .pool()
            .run(|mut conn| async move {
                redis::pipe()
                    .cmd("SET")
                    .arg(marker)
                    .arg(1)
                    .ignore()
                    .cmd("DEL")
                    .arg(&key)
                    .ignore()
                    .cmd("ZADD")
                    .arg(&key)
                    .arg(score)
                    .arg(member)
                    .ignore()
                    .query_async::<()>(&mut conn)
                    .await
            })
            .await
            .unwrap();
        let err = board.top(10).await.unwrap_err();
        assert!(matches!(err, StoreError::Corrupt(_)), "{member}: {err:?}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn leaderboard_is_unavailable_quickly_when_redis_stops_answering() {
    let Some(redis) = test_redis().await else {
        return;
    };
    let proxy = Proxy::start().await;
    let pool = RedisPool::connect(&proxy.url, 2)
        .await
        .unwrap()
        .with_prefix(redis.pool().prefix());
    let board = RedisLeaderboard::new(pool);
    let (_, mut rng) = seeded_rng();
    let standings = random_standings(&mut rng, 3);
    board.record(&standings[0]).await.unwrap();
    proxy.freeze();
    let started = Instant::now();
    let (recorded, top, rank, removed, replaced) = tokio::join!(
        board.record(&standings[1]),
        board.top(10),
        board.rank(standings[0].user_id),
        board.remove(standings[0].user_id),
        board.replace_all(&standings),
    );
    let elapsed = started.elapsed();
    for err in [
        recorded.unwrap_err(),
        top.map(drop).unwrap_err(),
        rank.map(drop).unwrap_err(),
        removed.unwrap_err(),
        replaced.unwrap_err(),
    ] {
        assert_redis_unavailable(&err);
    }
    // replace_all may wait twice: the fill, then the clean-up of the temporary key.
    assert!(elapsed < Duration::from_secs(6), "took {elapsed:?}");
    proxy.close().await;
}

/// How long a board-feed test waits for a signal.
const FEED_PATIENCE: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread")]
async fn two_nodes_keep_the_board_feed_contract() {
    let Some(redis) = test_redis().await else {
        return;
    };
    let a = RedisBoardFeed::new(redis.pool().clone());
    let b = RedisBoardFeed::new(redis.another_node().await);
    tokio::time::timeout(
        FEED_PATIENCE,
        keel_domain::testkit::board_feed::run_all(&a, &b),
    )
    .await
    .expect("the contract suite finished in time");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_restarted_counter_is_lifted_to_the_floor() {
    let Some(redis) = test_redis().await else {
        return;
    };
    let feed = RedisBoardFeed::new(redis.pool().clone());
    let seen = feed.publish(0).await.unwrap();
    // Redis keeps nothing on disk: a restart loses the counter.
    let key = feed.key().to_owned();
    redis
        .pool()
        .run(|mut conn| async move {
            redis::cmd("DEL")
                .arg(&key)
                .query_async::<()>(&mut conn)
                .await
        })
        .await
        .unwrap();
    assert_eq!(feed.current().await.unwrap(), 0);
    assert_eq!(feed.publish(seen).await.unwrap(), seen + 1);
    assert_eq!(feed.publish(0).await.unwrap(), seen + 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_killed_subscription_resyncs_and_hears_later_changes() {
    let Some(redis) = test_redis().await else {
        return;
    };
    let feed = RedisBoardFeed::new(redis.pool().clone());
    let mut subscription = feed.subscribe().await.unwrap();
    // Only subscribed connections die; other tests' subscriptions just resync.
    redis
        .pool()
        .run(|mut conn| async move {
            redis::cmd("CLIENT")
                .arg("KILL")
                .arg("TYPE")
                .arg("pubsub")
                .query_async::<u64>(&mut conn)
                .await
        })
        .await
        .unwrap();
    let next = tokio::time::timeout(FEED_PATIENCE, subscription.next()).await;
    assert_eq!(next.expect("resynced in time"), Some(BoardSignal::Resync));
    let published = feed.publish(0).await.unwrap();
    loop {
        let next = tokio::time::timeout(FEED_PATIENCE, subscription.next()).await;
        match next.expect("heard in time") {
            Some(BoardSignal::Changed(n)) if n >= published => break,
            Some(_) => continue,
            None => panic!("the subscription ended"),
        }
    }
}
