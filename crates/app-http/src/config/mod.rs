//! Operator settings: `config/default.toml`, then the file named by `KEEL_CONFIG`, then env.
//!
//! Read once at start into typed [`Settings`]; a bad value stops start-up with the setting's
//! name and the reason.

mod env;
mod scoreboard;
mod secret;
mod wallet;

use std::net::{IpAddr, SocketAddr};
use std::path::Path;

use keel_domain::ratelimit::{LimitClass, PolicySetting};
use serde::Deserialize;

pub use env::Env;
pub use scoreboard::ScoreboardSettings;
pub use secret::Secret;
pub use wallet::WalletSettings;

/// The defaults shipped with keel (the workspace's `config/default.toml`, compiled in).
pub const DEFAULT_TOML: &str = include_str!("../../../../config/default.toml");

/// A setting that could not be used; start-up stops with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid setting {key}: {reason}")]
pub struct ConfigError {
    /// The env variable or file key at fault, e.g. `KEEL_BIND` or `server.bind`.
    pub key: String,
    /// Why the value is refused.
    pub reason: String,
}

impl ConfigError {
    pub(crate) fn new(key: impl Into<String>, reason: impl std::fmt::Display) -> Self {
        Self {
            key: key.into(),
            reason: reason.to_string(),
        }
    }
}

/// Every setting of a keel process.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// HTTP server.
    pub server: ServerSettings,
    /// Postgres, the system of record.
    pub database: DatabaseSettings,
    /// Redis, the shared cache and coordination layer.
    pub redis: RedisSettings,
    /// Logging.
    pub log: LogSettings,
    /// Signing and encryption keys.
    pub secrets: SecretSettings,
    /// The admin account created at start if absent.
    pub bootstrap: BootstrapSettings,
    /// Rate-limit policy per class.
    pub rate: PerClass,
    /// What each class does while Redis is down.
    pub rate_fallback: PerClass,
    /// `Idempotency-Key` record lifetimes.
    pub idempotency: IdempotencySettings,
    /// The payment provider.
    pub revio: RevioSettings,
    /// The wallet's ledger policy.
    pub wallet: WalletSettings,
    /// The scoreboard's action table.
    pub scoreboard: ScoreboardSettings,
    /// Background job workers.
    pub jobs: JobSettings,
}

/// HTTP server settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSettings {
    /// Address to listen on (`KEEL_BIND`).
    pub bind: SocketAddr,
    /// Largest request body accepted, in bytes (`KEEL_BODY_LIMIT`).
    pub body_limit_bytes: usize,
    /// HTTP worker threads; 0 = one per core (`KEEL_HTTP_WORKERS`).
    pub http_workers: usize,
    /// Grace period for in-flight requests at shutdown (`KEEL_SHUTDOWN_TIMEOUT_SECS`).
    pub shutdown_timeout_secs: u64,
    /// Peers whose `X-Forwarded-For` is trusted (`KEEL_TRUSTED_PROXIES`).
    pub trusted_proxies: Vec<IpAddr>,
}

/// Postgres settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseSettings {
    /// Connection URL (`DATABASE_URL`); empty selects the in-memory stores.
    pub url: Secret<String>,
    /// Apply pending migrations at start (`KEEL_MIGRATE`).
    pub migrate: bool,
    /// Pool size (`KEEL_DB_POOL_SIZE`).
    pub pool_size: usize,
}

/// Redis settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisSettings {
    /// Connection URL (`REDIS_URL`); empty means no Redis.
    pub url: Secret<String>,
    /// Pool size (`KEEL_REDIS_POOL_SIZE`).
    pub pool_size: usize,
    /// Prefix of every key keel writes (`KEEL_REDIS_PREFIX`).
    pub key_prefix: String,
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Pretty,
    /// One JSON object per line.
    Json,
}

/// Logging settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogSettings {
    /// `tracing` filter directives (`KEEL_LOG`).
    pub filter: String,
    /// Output format (`KEEL_LOG_FORMAT`).
    pub format: LogFormat,
}

/// Signing and encryption keys.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretSettings {
    /// HS256 key of access tokens (`KEEL_JWT_SECRET`).
    pub jwt_secret: Secret<String>,
    /// HMAC key of scoreboard action tokens (`KEEL_ACTION_TOKEN_SECRET`).
    pub action_token_secret: Secret<String>,
    /// PII encryption keys, `id:base64key,…`, first active (`KEEL_PII_KEYS`).
    pub pii_keys: Secret<String>,
}

/// Bootstrap admin account.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BootstrapSettings {
    /// Email of the admin created at start if absent (`KEEL_BOOTSTRAP_ADMIN_EMAIL`).
    pub admin_email: String,
    /// Its password (`KEEL_BOOTSTRAP_ADMIN_PASSWORD`).
    pub admin_password: Secret<String>,
}

/// One raw setting per rate-limit class: the `[rate]` policies (`<count>/<second|minute|hour>`
/// or `off`, env `KEEL_RATE_<CLASS>`) and the `[rate_fallback]` modes (env
/// `KEEL_RATE_FALLBACK_<CLASS>`). Validated at load.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PerClass {
    /// Login and registration (limited per IP and per account).
    pub auth: String,
    /// Attendance scans (per user and per IP).
    pub scan: String,
    /// Score updates (per user).
    pub score: String,
    /// Costly operations (per user).
    pub expensive: String,
    /// Everything else (per user or IP).
    pub default: String,
}

impl PerClass {
    /// The raw setting of `class`.
    pub fn get(&self, class: LimitClass) -> &str {
        match class {
            LimitClass::Auth => &self.auth,
            LimitClass::Scan => &self.scan,
            LimitClass::Score => &self.score,
            LimitClass::Expensive => &self.expensive,
            LimitClass::Default => &self.default,
        }
    }

    pub(crate) fn get_mut(&mut self, class: LimitClass) -> &mut String {
        match class {
            LimitClass::Auth => &mut self.auth,
            LimitClass::Scan => &mut self.scan,
            LimitClass::Score => &mut self.score,
            LimitClass::Expensive => &mut self.expensive,
            LimitClass::Default => &mut self.default,
        }
    }
}

/// What a limited route does while Redis, which holds the shared budgets, is unreachable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RedisDownMode {
    /// Keep limiting with this node's in-process budget (logged and counted).
    Local,
    /// Let requests through unlimited (logged and counted).
    Open,
    /// Refuse requests with 503 until Redis is back.
    Closed,
}

impl std::str::FromStr for RedisDownMode {
    type Err = String;

    fn from_str(raw: &str) -> Result<Self, Self::Err> {
        match raw.trim().to_ascii_lowercase().as_str() {
            "local" => Ok(Self::Local),
            "open" => Ok(Self::Open),
            "closed" => Ok(Self::Closed),
            _ => Err(format!("{raw:?} is not one of local, open, closed")),
        }
    }
}

/// `Idempotency-Key` settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdempotencySettings {
    /// Record lifetime in seconds (`KEEL_IDEMPOTENCY_TTL_SECS`).
    pub ttl_secs: u64,
    /// In-flight lease in seconds (`KEEL_IDEMPOTENCY_LEASE_SECS`).
    pub lease_secs: u64,
    /// How often expired records are purged (`KEEL_IDEMPOTENCY_PURGE_INTERVAL_SECS`).
    pub purge_interval_secs: u64,
    /// Most completed responses this node keeps in memory for replays without a round trip
    /// (`KEEL_IDEMPOTENCY_CACHE_ENTRIES`).
    pub cache_entries: usize,
    /// Most bytes of those responses, in MiB (`KEEL_IDEMPOTENCY_CACHE_MIB`).
    pub cache_mib: usize,
}

impl IdempotencySettings {
    /// The bounds of this node's in-memory cache of completed responses.
    pub fn cache_bounds(&self) -> keel_adapters_memory::CacheBounds {
        keel_adapters_memory::CacheBounds {
            max_entries: self.cache_entries,
            max_bytes: self.cache_mib.saturating_mul(1024 * 1024),
        }
    }
}

/// Background job settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobSettings {
    /// Job workers `keel serve` runs; 0 disables them (`KEEL_WORKERS`).
    pub workers: usize,
    /// Lease of a claimed job in seconds, renewed while it runs (`KEEL_JOBS_LEASE_SECS`).
    pub lease_secs: u64,
    /// Idle poll interval in milliseconds when no wake-up arrives (`KEEL_JOBS_POLL_INTERVAL_MS`).
    pub poll_interval_ms: u64,
    /// How long running jobs may finish at shutdown before release (`KEEL_JOBS_SHUTDOWN_GRACE_SECS`).
    pub shutdown_grace_secs: u64,
    /// How long completed jobs are kept, in hours (`KEEL_JOBS_RETENTION_HOURS`).
    pub retention_hours: u64,
}

/// Most job workers one process may run.
const MAX_WORKERS: usize = 256;

/// Payment provider settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RevioSettings {
    /// A real provider's base URL (`KEEL_REVIO_URL`); empty = the built-in simulator.
    pub url: String,
    /// PEM public key verifying webhook signatures (`KEEL_REVIO_PUBLIC_KEY`).
    pub public_key: String,
    /// Standard Webhooks secret, `whsec_…` (`KEEL_REVIO_WEBHOOK_SECRET`).
    pub webhook_secret: Secret<String>,
    /// Simulator completion delay (`KEEL_REVIO_SIM_DELAY_MS`).
    pub sim_delay_ms: u64,
}

/// Longest idempotency record life accepted (30 days).
const MAX_IDEMPOTENCY_TTL_SECS: u64 = 30 * 24 * 3600;
/// Longest in-flight lease accepted (one hour).
const MAX_IDEMPOTENCY_LEASE_SECS: u64 = 3600;

/// Values in `config/default.toml` that must never protect real data.
const DEV_SECRET_MARKER: &str = "dev-only";

impl Settings {
    /// Loads the settings of this process from its real environment.
    pub fn load() -> Result<Self, ConfigError> {
        Self::load_from(&Env::from_process())
    }

    /// Loads the settings from the shipped defaults, the optional `KEEL_CONFIG` file and `env`.
    pub fn load_from(env: &Env) -> Result<Self, ConfigError> {
        let mut table: toml::Table = DEFAULT_TOML
            .parse()
            .map_err(|e| ConfigError::new("config/default.toml", e))?;
        if let Some(path) = env.get("KEEL_CONFIG") {
            merge(&mut table, read_file(Path::new(&path))?);
        }
        let mut settings: Settings = table
            .try_into()
            .map_err(|e: toml::de::Error| ConfigError::new("config", e.message()))?;
        env::apply_overrides(&mut settings, env)?;
        settings.validate()?;
        Ok(settings)
    }

    /// The Postgres URL, if one is configured.
    pub fn database_url(&self) -> Option<&str> {
        Some(self.database.url.expose().as_str()).filter(|u| !u.is_empty())
    }

    /// The Redis URL, if one is configured.
    pub fn redis_url(&self) -> Option<&str> {
        Some(self.redis.url.expose().as_str()).filter(|u| !u.is_empty())
    }

    /// The rate-limit policy of `class`.
    pub fn rate_policy(&self, class: LimitClass) -> PolicySetting {
        // Validated at load; a hand-built bad value means no limit rather than a panic.
        self.rate.get(class).parse().unwrap_or(PolicySetting::Off)
    }

    /// What `class` does while Redis is down.
    pub fn redis_down_mode(&self, class: LimitClass) -> RedisDownMode {
        self.rate_fallback
            .get(class)
            .parse()
            .unwrap_or(RedisDownMode::Local)
    }

    /// The idempotency policy these settings describe.
    pub fn idempotency_policy(&self) -> keel_domain::idempotency::IdempotencyPolicy {
        let secs =
            |s: u64| chrono::Duration::seconds(i64::try_from(s).unwrap_or(i64::MAX / 1_000_000));
        keel_domain::idempotency::IdempotencyPolicy {
            ttl: secs(self.idempotency.ttl_secs),
            lease: secs(self.idempotency.lease_secs),
        }
    }

    /// Names of the secret settings still holding their dev-only default.
    pub fn dev_default_secrets(&self) -> Vec<&'static str> {
        let s = &self.secrets;
        [
            ("KEEL_JWT_SECRET", s.jwt_secret.expose()),
            ("KEEL_ACTION_TOKEN_SECRET", s.action_token_secret.expose()),
            ("KEEL_PII_KEYS", s.pii_keys.expose()),
        ]
        .into_iter()
        .filter(|(_, value)| value.contains(DEV_SECRET_MARKER) || value.starts_with("dev:"))
        .map(|(name, _)| name)
        .chain(
            self.revio
                .dev_public_key()
                .then_some("KEEL_REVIO_PUBLIC_KEY"),
        )
        .collect()
    }

    fn validate_jobs(&self) -> Result<(), ConfigError> {
        let jobs = &self.jobs;
        if jobs.workers > MAX_WORKERS {
            return Err(ConfigError::new(
                "KEEL_WORKERS",
                format!("must be at most {MAX_WORKERS}"),
            ));
        }
        for (key, value, min) in [
            ("KEEL_JOBS_LEASE_SECS", jobs.lease_secs, 1),
            ("KEEL_JOBS_POLL_INTERVAL_MS", jobs.poll_interval_ms, 10),
            ("KEEL_JOBS_RETENTION_HOURS", jobs.retention_hours, 1),
        ] {
            if value < min {
                return Err(ConfigError::new(key, format!("must be at least {min}")));
            }
        }
        // A periodic job's slot is kept unique by its completed row: purging that row before the
        // next slot would let a late node run the same slot again.
        let retention_secs = jobs.retention_hours.saturating_mul(3600);
        if retention_secs < self.idempotency.purge_interval_secs {
            return Err(ConfigError::new(
                "KEEL_JOBS_RETENTION_HOURS",
                "must cover KEEL_IDEMPOTENCY_PURGE_INTERVAL_SECS (completed periodic jobs keep each slot unique)",
            ));
        }
        Ok(())
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let positive = |key: &str, value: u64| {
            if value == 0 {
                Err(ConfigError::new(key, "must be greater than 0"))
            } else {
                Ok(())
            }
        };
        positive("KEEL_BODY_LIMIT", self.server.body_limit_bytes as u64)?;
        positive("KEEL_DB_POOL_SIZE", self.database.pool_size as u64)?;
        positive("KEEL_REDIS_POOL_SIZE", self.redis.pool_size as u64)?;
        positive("KEEL_IDEMPOTENCY_TTL_SECS", self.idempotency.ttl_secs)?;
        positive("KEEL_IDEMPOTENCY_LEASE_SECS", self.idempotency.lease_secs)?;
        positive(
            "KEEL_IDEMPOTENCY_PURGE_INTERVAL_SECS",
            self.idempotency.purge_interval_secs,
        )?;
        positive(
            "KEEL_IDEMPOTENCY_CACHE_ENTRIES",
            self.idempotency.cache_entries as u64,
        )?;
        positive(
            "KEEL_IDEMPOTENCY_CACHE_MIB",
            self.idempotency.cache_mib as u64,
        )?;
        self.validate_jobs()?;
        let idem = &self.idempotency;
        if idem.ttl_secs > MAX_IDEMPOTENCY_TTL_SECS {
            return Err(ConfigError::new(
                "KEEL_IDEMPOTENCY_TTL_SECS",
                "must be at most 30 days",
            ));
        }
        if idem.lease_secs > MAX_IDEMPOTENCY_LEASE_SECS {
            return Err(ConfigError::new(
                "KEEL_IDEMPOTENCY_LEASE_SECS",
                "must be at most one hour",
            ));
        }
        if idem.lease_secs >= idem.ttl_secs {
            // A record that expires while in flight could be claimed again: a second execution.
            return Err(ConfigError::new(
                "KEEL_IDEMPOTENCY_LEASE_SECS",
                "must be shorter than KEEL_IDEMPOTENCY_TTL_SECS",
            ));
        }
        let prefix = &self.redis.key_prefix;
        let prefix_ok = !prefix.is_empty()
            && prefix.len() <= 64
            && prefix
                .bytes()
                .all(|b| b.is_ascii_graphic() && b != b'{' && b != b'}');
        if !prefix_ok {
            return Err(ConfigError::new(
                "KEEL_REDIS_PREFIX",
                "must be 1–64 printable characters without spaces or braces",
            ));
        }
        for (key, url, schemes) in [
            (
                "DATABASE_URL",
                self.database.url.expose(),
                &["postgres://", "postgresql://"][..],
            ),
            (
                "REDIS_URL",
                self.redis.url.expose(),
                &["redis://", "rediss://", "redis+unix://"][..],
            ),
        ] {
            if !url.is_empty() && !schemes.iter().any(|s| url.starts_with(s)) {
                return Err(ConfigError::new(
                    key,
                    format!("must start with {}", schemes.join(" or ")),
                ));
            }
        }
        if self.secrets.jwt_secret.expose().len() < 32 {
            return Err(ConfigError::new(
                "KEEL_JWT_SECRET",
                "must be at least 32 bytes",
            ));
        }
        if self.secrets.action_token_secret.expose().len() < 32 {
            return Err(ConfigError::new(
                "KEEL_ACTION_TOKEN_SECRET",
                "must be at least 32 bytes",
            ));
        }
        env::validate_rates(&self.rate, &self.rate_fallback)?;
        self.wallet.policy()?;
        self.scoreboard.validate()?;
        self.revio.verifier()?;
        // The error names the entry at fault, never the key material.
        keel_domain::pii::KeyRing::parse(self.secrets.pii_keys.expose())
            .map_err(|e| ConfigError::new("KEEL_PII_KEYS", e))?;
        tracing_subscriber::EnvFilter::try_new(&self.log.filter)
            .map_err(|e| ConfigError::new("KEEL_LOG", e))?;
        Ok(())
    }
}

fn read_file(path: &Path) -> Result<toml::Table, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        ConfigError::new(
            "KEEL_CONFIG",
            format!("cannot read {}: {e}", path.display()),
        )
    })?;
    text.parse()
        .map_err(|e| ConfigError::new("KEEL_CONFIG", format!("{}: {e}", path.display())))
}

/// Overlays `overlay` on `base`, table by table.
fn merge(base: &mut toml::Table, overlay: toml::Table) {
    for (key, value) in overlay {
        match (base.get_mut(&key), value) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => merge(b, o),
            (_, value) => {
                base.insert(key, value);
            }
        }
    }
}

#[cfg(test)]
mod tests;
