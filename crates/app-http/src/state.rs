//! The stores a keel process runs on, chosen once at start from the settings.

use std::sync::Arc;

use keel_adapters_memory::ratelimit::MemoryRateLimiter;
use keel_adapters_memory::{
    CacheBounds, MemoryAuditLog, MemoryEventBus, MemoryHealth, MemoryIdempotencyCache,
    MemoryIdempotencyStore, MemoryJobQueue, MemoryMailbox, MemoryRefreshTokenStore,
    MemoryUserStore,
};
use keel_adapters_postgres::migrate::run_pending_migrations;
use keel_adapters_postgres::{
    PgAuditLog, PgBoardFeed, PgHealth, PgIdempotencyStore, PgJobQueue, PgMailbox, PgPool,
    PgRefreshTokenStore, PgUserStore,
};
use keel_adapters_redis::{RedisBoardFeed, RedisIdempotencyCache};
use keel_adapters_redis::{RedisHealth, RedisLeaderboard, RedisPool, RedisRateLimiter};
use keel_domain::audit::AuditLog;
use keel_domain::events::EventBus;
use keel_domain::health::HealthProbe;
use keel_domain::idempotency::IdempotencyStore;
use keel_domain::idempotency::{CacheUse, LayeredIdempotencyStore, TieredIdempotencyCache};
use keel_domain::identity::access_token::{AccessTokenSigner, TokenError};
use keel_domain::identity::password::{PasswordError, PasswordHasher};
use keel_domain::identity::refresh::RefreshTokenStore;
use keel_domain::identity::store::UserStore;
use keel_domain::jobs::JobQueue;
use keel_domain::mail::{MailSender, Mailbox};
use keel_domain::pii::{Cipher, CipherError, KeyRing, XChaChaCipher};
use keel_domain::ratelimit::RateLimiter;
use keel_domain::{Clock, StoreError, SystemClock};

use crate::config::Settings;
use crate::http::rate_limit::RateLimits;
use crate::products::Products;
use crate::products::scoreboard::Scoring;
use crate::products::wallet::Payments;

/// Which system of record this process uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// In-process maps: the embedded default; nothing survives a restart.
    Memory,
    /// Postgres (`DATABASE_URL`).
    Postgres,
}

/// The port implementations every handler uses, behind trait objects.
#[derive(Clone)]
pub struct Stores {
    /// Which system of record is in use.
    pub backend: Backend,
    /// `Idempotency-Key` records.
    pub idempotency: Arc<dyn IdempotencyStore>,
    /// Rate-limit budgets: in Redis when configured (shared by all nodes), else in process.
    pub rate_limiter: Arc<dyn RateLimiter>,
    /// User accounts.
    pub users: Arc<dyn UserStore>,
    /// Refresh-token families.
    pub refresh_tokens: Arc<dyn RefreshTokenStore>,
    /// The tamper-evident audit log.
    pub audit: Arc<dyn AuditLog>,
    /// Domain events within this process (cross-node delivery comes with Redis pub/sub).
    pub events: Arc<dyn EventBus>,
    /// The durable job queue.
    pub jobs: Arc<dyn JobQueue>,
    /// Where `mail.send` jobs deliver.
    pub mail_sender: Arc<dyn MailSender>,
    /// Delivered mail, per recipient.
    pub mailbox: Arc<dyn Mailbox>,
    /// The products' own stores.
    pub products: Products,
    /// One probe per configured dependency, for `/readyz`.
    pub probes: Vec<Arc<dyn HealthProbe>>,
    postgres: Option<PgPool>,
    redis: Option<RedisPool>,
}

impl Stores {
    /// The embedded in-memory stores.
    pub fn memory() -> Self {
        let users = MemoryUserStore::new();
        let refresh_tokens = MemoryRefreshTokenStore::new(&users);
        let mailbox = MemoryMailbox::new();
        let jobs = MemoryJobQueue::new();
        Self {
            backend: Backend::Memory,
            idempotency: Arc::new(MemoryIdempotencyStore::new()),
            rate_limiter: Arc::new(MemoryRateLimiter::new()),
            users: Arc::new(users.clone()),
            refresh_tokens: Arc::new(refresh_tokens),
            audit: Arc::new(MemoryAuditLog::new()),
            events: Arc::new(MemoryEventBus::new()),
            products: Products::memory(&jobs, &users),
            jobs: Arc::new(jobs),
            mail_sender: Arc::new(mailbox.clone()),
            mailbox: Arc::new(mailbox),
            probes: vec![Arc::new(MemoryHealth)],
            postgres: None,
            redis: None,
        }
    }

    /// Stores on Postgres behind `pool`, with `jobs` as the job queue (see
    /// [`PgJobQueue::with_listener`] for one woken by `LISTEN/NOTIFY`). Completed idempotency
    /// responses are also kept in this node's memory, so replays need no database trip.
    pub fn postgres(pool: PgPool, jobs: PgJobQueue) -> Self {
        Self::postgres_caching(pool, jobs, CacheBounds::default())
    }

    /// [`Stores::postgres`], keeping at most `near` of the completed responses in memory.
    pub fn postgres_caching(pool: PgPool, jobs: PgJobQueue, near: CacheBounds) -> Self {
        let mailbox = PgMailbox::new(pool.clone());
        let idempotency = LayeredIdempotencyStore::new(
            Arc::new(PgIdempotencyStore::new(pool.clone())),
            Arc::new(MemoryIdempotencyCache::new(near)),
        )
        .with_observer(Arc::new(count_cache_use));
        Self {
            backend: Backend::Postgres,
            idempotency: Arc::new(idempotency),
            rate_limiter: Arc::new(MemoryRateLimiter::new()),
            users: Arc::new(PgUserStore::new(pool.clone())),
            refresh_tokens: Arc::new(PgRefreshTokenStore::new(pool.clone())),
            audit: Arc::new(PgAuditLog::new(pool.clone())),
            events: Arc::new(MemoryEventBus::new()),
            jobs: Arc::new(jobs),
            mail_sender: Arc::new(mailbox.clone()),
            mailbox: Arc::new(mailbox),
            products: Products::postgres(&pool),
            probes: vec![Arc::new(PgHealth::new(pool.clone()))],
            postgres: Some(pool),
            redis: None,
        }
    }

    /// The same stores with Redis as the shared coordination layer: shared rate budgets, an
    /// idempotency cache in front of the durable record (this node's memory for completed
    /// responses, then Redis for everything every node must see), and the scoreboard's board
    /// cache (a sorted set shared by every node) and change feed (pub/sub).
    pub fn with_redis(self, pool: RedisPool) -> Self {
        self.with_redis_caching(pool, CacheBounds::default())
    }

    /// [`Stores::with_redis`], keeping at most `near` of the completed responses in memory.
    pub fn with_redis_caching(mut self, pool: RedisPool, near: CacheBounds) -> Self {
        self.products.scoreboard = self
            .products
            .scoreboard
            .with_cache(Arc::new(RedisLeaderboard::new(pool.clone())))
            .with_feed(Arc::new(RedisBoardFeed::new(pool.clone())));
        self.rate_limiter = Arc::new(RedisRateLimiter::new(pool.clone()));
        let cache = TieredIdempotencyCache::new(
            Arc::new(MemoryIdempotencyCache::new(near)),
            Arc::new(RedisIdempotencyCache::new(pool.clone())),
        );
        let durable = match &self.postgres {
            Some(pg) => Arc::new(PgIdempotencyStore::new(pg.clone())) as Arc<dyn IdempotencyStore>,
            None => self.idempotency.clone(),
        };
        self.idempotency = Arc::new(
            LayeredIdempotencyStore::new(durable, Arc::new(cache))
                .with_observer(Arc::new(count_cache_use)),
        );
        self.probes.push(Arc::new(RedisHealth::new(pool.clone())));
        self.redis = Some(pool);
        self
    }

    /// Connects the stores named by `settings`: Postgres when `DATABASE_URL` is set (migrating
    /// first when `KEEL_MIGRATE` is on), else memory; plus Redis when `REDIS_URL` is set.
    pub async fn connect(settings: &Settings) -> Result<Self, StoreError> {
        let stores = match settings.database_url() {
            None => Self::memory(),
            Some(url) => {
                if settings.database.migrate {
                    let applied = run_pending_migrations(url).await?;
                    tracing::info!(count = applied.len(), ?applied, "migrations applied");
                }
                let pool = PgPool::connect(url, settings.database.pool_size).await?;
                let jobs = PgJobQueue::with_listener(pool.clone(), url).await?;
                let near = settings.idempotency.cache_bounds();
                let mut stores = Self::postgres_caching(pool.clone(), jobs, near);
                // Without Redis, board changes reach the other nodes by NOTIFY.
                stores.products.scoreboard = stores
                    .products
                    .scoreboard
                    .with_feed(Arc::new(PgBoardFeed::new(pool, url)));
                stores
            }
        };
        Ok(match settings.redis_url() {
            None => stores,
            Some(url) => {
                // Redis is a cache and coordination layer, never the truth: if it is down at start,
                // keel starts anyway, degraded (local budgets, Postgres-only idempotency), and
                // uses Redis as soon as it answers.
                let pool = RedisPool::lazy(url, settings.redis.pool_size)?
                    .with_prefix(settings.redis.key_prefix.clone());
                if let Err(e) = pool.ping().await {
                    tracing::warn!(error = %e, "Redis is unreachable at start: serving degraded until it answers");
                }
                stores.with_redis_caching(pool, settings.idempotency.cache_bounds())
            }
        })
    }

    /// Whether Redis is configured.
    pub fn has_redis(&self) -> bool {
        self.redis.is_some()
    }

    /// Closes every pool; in-flight users finish with the connections they hold.
    pub fn close(&self) {
        if let Some(pool) = &self.postgres {
            pool.close();
        }
        if let Some(pool) = &self.redis {
            pool.close();
        }
    }
}

impl std::fmt::Debug for Stores {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stores")
            .field("backend", &self.backend)
            .finish_non_exhaustive()
    }
}

/// Counter of idempotency cache lookups, labelled `result` (hit, miss, error).
pub const IDEMPOTENCY_CACHE_TOTAL: &str = "keel_idempotency_cache_total";

fn count_cache_use(used: CacheUse) {
    let result = match used {
        CacheUse::Hit => "hit",
        CacheUse::Miss => "miss",
        CacheUse::Error => "error",
    };
    metrics::counter!(IDEMPOTENCY_CACHE_TOTAL, "result" => result).increment(1);
}

/// Access-token lifetime (DESIGN.md §2).
pub const ACCESS_TOKEN_TTL_MINUTES: i64 = 15;
/// `iss` and `aud` of keel's access tokens.
pub const TOKEN_ISSUER: &str = "keel";
/// See [`TOKEN_ISSUER`].
pub const TOKEN_AUDIENCE: &str = "keel-api";

/// Why the identity services could not be built from the settings.
#[derive(Debug, thiserror::Error)]
pub enum IdentitySetupError {
    /// `KEEL_JWT_SECRET` is unusable.
    #[error("KEEL_JWT_SECRET: {0}")]
    Token(#[from] TokenError),
    /// `KEEL_PII_KEYS` is unusable.
    #[error("KEEL_PII_KEYS: {0}")]
    Cipher(#[from] CipherError),
    /// The password hasher could not start.
    #[error("password hashing: {0}")]
    Password(#[from] PasswordError),
    /// The payment provider or the wallet's settings are unusable.
    #[error(transparent)]
    Payments(#[from] crate::config::ConfigError),
}

type HashingJob = Box<dyn FnOnce(&PasswordHasher) + Send>;

/// Argon2id jobs waiting for a hashing thread before new ones are refused with 503.
const HASHING_QUEUE: usize = 256;

/// A fixed pool of long-lived threads, one per core, for Argon2id work.
///
/// Each hash holds ~19 MiB and a core for tens of milliseconds. Long-lived threads keep that
/// memory warm in their allocator arenas (fresh blocking threads page-fault it in on every
/// hash), one thread per core avoids thrashing, and the bounded queue turns a login flood into
/// fast 503s instead of unbounded memory.
#[derive(Clone)]
pub struct HashingPool {
    jobs: std::sync::mpsc::SyncSender<HashingJob>,
}

impl HashingPool {
    /// Starts one hashing thread per core around `hasher`.
    pub fn start(hasher: Arc<PasswordHasher>) -> Self {
        let (jobs, queue) = std::sync::mpsc::sync_channel::<HashingJob>(HASHING_QUEUE);
        let queue = Arc::new(std::sync::Mutex::new(queue));
        for n in 0..std::thread::available_parallelism().map_or(1, |n| n.get()) {
            let (queue, hasher) = (queue.clone(), hasher.clone());
            let spawned = std::thread::Builder::new()
                .name(format!("keel-hash-{n}"))
                .spawn(move || {
                    loop {
                        // The lock is held only while taking the next job, never while hashing.
                        let next = queue.lock().unwrap_or_else(|p| p.into_inner()).recv();
                        match next {
                            Ok(job) => job(&hasher),
                            Err(_) => return, // every sender dropped: the server is gone
                        }
                    }
                });
            if let Err(e) = spawned {
                tracing::error!(error = %e, "could not start a hashing thread");
            }
        }
        Self { jobs }
    }

    /// Runs `job` on a hashing thread and returns its result; `Err` when the queue is full.
    pub async fn run<T: Send + 'static>(
        &self,
        job: impl FnOnce(&PasswordHasher) -> T + Send + 'static,
    ) -> Result<T, String> {
        let (answer, answered) = tokio::sync::oneshot::channel();
        let boxed: HashingJob = Box::new(move |hasher| {
            let _ = answer.send(job(hasher));
        });
        self.jobs
            .try_send(boxed)
            .map_err(|_| "password hashing is saturated".to_owned())?;
        answered
            .await
            .map_err(|_| "a hashing thread failed".to_owned())
    }
}

/// Credentials and personal-data services, built once from the secrets.
#[derive(Clone)]
pub struct Identity {
    /// Argon2id hashing (run it on a blocking thread).
    pub passwords: Arc<PasswordHasher>,
    /// HS256 access tokens.
    pub tokens: Arc<AccessTokenSigner>,
    /// Field encryption of personal data.
    pub cipher: Arc<dyn Cipher>,
    /// Where Argon2id work runs (see [`HashingPool`]).
    pub hashing: HashingPool,
}

impl Identity {
    /// The services for `settings`.
    pub fn from_settings(settings: &Settings) -> Result<Self, IdentitySetupError> {
        let tokens = AccessTokenSigner::new(
            settings.secrets.jwt_secret.expose().as_bytes(),
            TOKEN_ISSUER,
            TOKEN_AUDIENCE,
            chrono::Duration::minutes(ACCESS_TOKEN_TTL_MINUTES),
        )?;
        let keys = KeyRing::parse(settings.secrets.pii_keys.expose())?;
        let passwords = Arc::new(PasswordHasher::new()?);
        Ok(Self {
            passwords: passwords.clone(),
            tokens: Arc::new(tokens),
            cipher: Arc::new(XChaChaCipher::new(keys)),
            hashing: HashingPool::start(passwords.clone()),
        })
    }
}

/// Everything a handler can reach, shared by all workers.
#[derive(Clone)]
pub struct AppState {
    /// The settings this process started with.
    pub settings: Arc<Settings>,
    /// The stores.
    pub stores: Stores,
    /// Rate-limit budgets per class.
    pub limits: RateLimits,
    /// The time source of every rule.
    pub clock: Arc<dyn Clock>,
    /// Passwords, tokens and the PII cipher.
    pub identity: Identity,
    /// The payment provider, webhook verifier and ledger policy.
    pub payments: Payments,
    /// The action-token signer and the action table.
    pub scoring: Scoring,
}

impl AppState {
    /// The state of a server over `stores` with `settings`, on the system clock.
    pub fn new(settings: Settings, stores: Stores) -> Result<Self, IdentitySetupError> {
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        Ok(Self {
            limits: RateLimits::new(stores.rate_limiter.clone(), &settings, clock.clone()),
            identity: Identity::from_settings(&settings)?,
            payments: Payments::from_settings(&settings)?,
            scoring: Scoring::from_settings(&settings)?,
            settings: Arc::new(settings),
            stores,
            clock,
        })
    }
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("stores", &self.stores)
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}
