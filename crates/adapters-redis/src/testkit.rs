//! Helpers for tests that need a real Redis: a fresh key prefix per test, SKIP or require logic.

use std::io::Write;

use crate::RedisPool;

/// Whether missing services must fail the tests (`KEEL_REQUIRE_SERVICES=1`, as in CI) instead of
/// skipping them.
pub fn require_services() -> bool {
    std::env::var("KEEL_REQUIRE_SERVICES").is_ok_and(|v| v == "1" || v.eq_ignore_ascii_case("true"))
}

/// A connection to the test Redis (`REDIS_URL`) with a fresh key prefix `keel-test-<uuid>`.
///
/// Every key under the prefix is deleted when it is dropped.
#[derive(Debug)]
pub struct TestRedis {
    url: String,
    pool: RedisPool,
}

/// Connects to `REDIS_URL` with a fresh prefix.
///
/// Without `REDIS_URL`: panics when [`require_services`] is true, else writes a `SKIP:` line to
/// stderr (not captured by the test harness) and returns `None`. Panics when `REDIS_URL` is set
/// but Redis does not answer.
pub async fn test_redis() -> Option<TestRedis> {
    let Ok(url) = std::env::var("REDIS_URL") else {
        assert!(
            !require_services(),
            "REDIS_URL is not set but KEEL_REQUIRE_SERVICES=1 requires Redis tests to run"
        );
        let _ = writeln!(
            std::io::stderr(),
            "SKIP: REDIS_URL is not set; Redis tests skipped"
        );
        return None;
    };
    let prefix = format!("keel-test-{}", uuid::Uuid::new_v4());
    let pool = connect(&url).await.with_prefix(prefix);
    Some(TestRedis { url, pool })
}

async fn connect(url: &str) -> RedisPool {
    RedisPool::connect(url, 8)
        .await
        .unwrap_or_else(|e| panic!("REDIS_URL is set but Redis cannot be used: {e}"))
}

impl TestRedis {
    /// The pool, with this test's prefix.
    pub fn pool(&self) -> &RedisPool {
        &self.pool
    }

    /// A second, independent pool with the same prefix, as another node would have.
    pub async fn another_node(&self) -> RedisPool {
        connect(&self.url).await.with_prefix(self.pool.prefix())
    }
}

impl Drop for TestRedis {
    fn drop(&mut self) {
        let url = self.url.clone();
        let pattern = format!("{}:*", self.pool.prefix());
        // Drop is synchronous and may run inside a runtime: clean up from a thread of its own.
        let cleanup = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            runtime.block_on(delete_matching(&url, &pattern))?;
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
        });
        match cleanup.join() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                let _ = writeln!(
                    std::io::stderr(),
                    "WARN: test Redis keys were not deleted: {e}"
                );
            }
            Err(_) => {
                let _ = writeln!(std::io::stderr(), "WARN: test Redis cleanup panicked");
            }
        }
    }
}

async fn delete_matching(url: &str, pattern: &str) -> redis::RedisResult<()> {
    let mut conn = redis::Client::open(url)?
        .get_multiplexed_async_connection()
        .await?;
    let mut cursor = 0u64;
    loop {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(pattern)
            .arg("COUNT")
            .arg(500)
            .query_async(&mut conn)
            .await?;
        if !keys.is_empty() {
            redis::cmd("DEL")
                .arg(&keys)
                .query_async::<()>(&mut conn)
                .await?;
        }
        if next == 0 {
            return Ok(());
        }
        cursor = next;
    }
}
