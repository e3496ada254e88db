//! The board's change feed over Redis: a counter and a pub/sub channel shared by every node.
//!
//! # Keys
//!
//! The counter lives at `{prefix}:{board:<name>}:changes` (the board's hash tag, so it sits on
//! the board's cluster slot) and the channel is the same name. [`PUBLISH_LUA`] increments the
//! counter, lifts it to the caller's floor and publishes the number in one round trip.
//!
//! Redis here keeps nothing on disk: after a restart the counter starts again from 0, and the
//! floor (the highest number the publishing node has seen or used) lifts it back above the ids
//! that node sent.

use std::sync::LazyLock;
use std::time::Duration;

use async_trait::async_trait;
use futures_util::StreamExt;
use keel_domain::StoreError;
use keel_domain::scoreboard::{BoardFeed, BoardSignal, BoardSubscription};
use redis::Script;
use redis::aio::{PubSubSink, PubSubStream};

use crate::RedisPool;
use crate::leaderboard::DEFAULT_BOARD;
use crate::pool::{COMMAND_TIMEOUT, unavailable};

/// Increments `KEYS[1]`, lifts it above `ARGV[1]` when not already, publishes it on
/// `ARGV[2]`, returns it.
pub const PUBLISH_LUA: &str = r"
local n = redis.call('INCR', KEYS[1])
local floor = tonumber(ARGV[1])
if n <= floor then
  n = floor + 1
  redis.call('SET', KEYS[1], n)
end
redis.call('PUBLISH', ARGV[2], n)
return n
";

static PUBLISH: LazyLock<Script> = LazyLock::new(|| Script::new(PUBLISH_LUA));

/// Reconnection backoff of a subscription: first wait, and the longest.
const RECONNECT_FIRST: Duration = Duration::from_millis(100);
const RECONNECT_MAX: Duration = Duration::from_secs(5);

/// How long a subscription waits for a message before pinging its connection (a silently dead
/// connection would otherwise never be noticed).
const KEEPALIVE: Duration = Duration::from_secs(30);

/// [`BoardFeed`] shared through Redis by every node with the same prefix.
#[derive(Debug, Clone)]
pub struct RedisBoardFeed {
    pool: RedisPool,
    key: String,
}

impl RedisBoardFeed {
    /// The feed of the [`DEFAULT_BOARD`] board.
    pub fn new(pool: RedisPool) -> Self {
        let key = pool.key(&format!("{{board:{DEFAULT_BOARD}}}:changes"));
        Self { pool, key }
    }

    /// The counter's key, also the channel's name.
    pub fn key(&self) -> &str {
        &self.key
    }
}

#[async_trait]
impl BoardFeed for RedisBoardFeed {
    async fn publish(&self, floor: u64) -> Result<u64, StoreError> {
        let key = self.key.clone();
        self.pool
            .run(|mut conn| async move {
                PUBLISH
                    .key(&key)
                    .arg(floor)
                    .arg(&key)
                    .invoke_async(&mut conn)
                    .await
            })
            .await
    }

    async fn current(&self) -> Result<u64, StoreError> {
        let key = self.key.clone();
        let value: Option<u64> = self
            .pool
            .run(|mut conn| async move { redis::cmd("GET").arg(&key).query_async(&mut conn).await })
            .await?;
        Ok(value.unwrap_or(0))
    }

    async fn subscribe(&self) -> Result<Box<dyn BoardSubscription>, StoreError> {
        let connection = Subscribed::open(&self.pool, &self.key).await?;
        Ok(Box::new(RedisBoardSubscription {
            pool: self.pool.clone(),
            channel: self.key.clone(),
            connection: Some(connection),
        }))
    }
}

/// One subscribed connection, split so it can be pinged while its messages are awaited.
struct Subscribed {
    sink: PubSubSink,
    stream: PubSubStream,
}

impl Subscribed {
    async fn open(pool: &RedisPool, channel: &str) -> Result<Self, StoreError> {
        let (mut sink, stream) = pool.pubsub().await?.split();
        tokio::time::timeout(COMMAND_TIMEOUT, sink.subscribe(channel))
            .await
            .map_err(|_| unavailable("SUBSCRIBE got no answer"))?
            .map_err(unavailable)?;
        Ok(Self { sink, stream })
    }

    /// The next change number; an error once the connection is lost.
    async fn next(&mut self) -> Result<u64, String> {
        loop {
            match tokio::time::timeout(KEEPALIVE, self.stream.next()).await {
                Ok(Some(message)) => match message.get_payload::<u64>() {
                    Ok(number) => return Ok(number),
                    Err(e) => tracing::warn!(error = %e, "ignored a malformed board change"),
                },
                Ok(None) => return Err("connection closed".to_owned()),
                Err(_quiet) => {
                    // A subscribed connection answers PING with an array, not a status.
                    let pong =
                        tokio::time::timeout(KEEPALIVE, self.sink.ping::<redis::Value>()).await;
                    match pong {
                        Ok(Ok(_)) => {}
                        Ok(Err(e)) => return Err(e.to_string()),
                        Err(_) => return Err("no answer to PING".to_owned()),
                    }
                }
            }
        }
    }
}

/// A subscription that reconnects by itself and then asks for a resync.
struct RedisBoardSubscription {
    pool: RedisPool,
    channel: String,
    connection: Option<Subscribed>,
}

impl RedisBoardSubscription {
    async fn reconnect(&self) -> Subscribed {
        let mut wait = RECONNECT_FIRST;
        loop {
            tokio::time::sleep(wait).await;
            match Subscribed::open(&self.pool, &self.channel).await {
                Ok(connection) => {
                    tracing::info!("board change subscription reconnected");
                    return connection;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "board change subscription cannot reconnect");
                    wait = (wait * 2).min(RECONNECT_MAX);
                }
            }
        }
    }
}

#[async_trait]
impl BoardSubscription for RedisBoardSubscription {
    async fn next(&mut self) -> Option<BoardSignal> {
        let Some(connection) = self.connection.as_mut() else {
            self.connection = Some(self.reconnect().await);
            // Changes published while disconnected were lost.
            return Some(BoardSignal::Resync);
        };
        match connection.next().await {
            Ok(number) => Some(BoardSignal::Changed(number)),
            Err(lost) => {
                tracing::warn!(error = %lost, "board change subscription lost its connection");
                self.connection = None;
                self.connection = Some(self.reconnect().await);
                Some(BoardSignal::Resync)
            }
        }
    }
}
