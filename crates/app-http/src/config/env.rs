//! Environment overrides: each variable named in DESIGN.md §2 replaces one setting.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

use keel_domain::ratelimit::{LimitClass, PolicySetting};

use super::{ConfigError, LogFormat, PerClass, RedisDownMode, Secret, Settings};

/// A snapshot of environment variables (the process's, or a test's).
#[derive(Debug, Clone, Default)]
pub struct Env(HashMap<String, String>);

impl Env {
    /// The variables of this process.
    pub fn from_process() -> Self {
        Self(std::env::vars().collect())
    }

    /// Variables given by a test.
    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        Self(
            pairs
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
        )
    }

    /// One variable, if set.
    pub fn get(&self, key: &str) -> Option<String> {
        self.0.get(key).cloned()
    }
}

fn parse<T: FromStr>(key: &str, raw: &str, what: &str) -> Result<T, ConfigError> {
    raw.trim()
        .parse()
        .map_err(|_| ConfigError::new(key, format!("{raw:?} is not {what}")))
}

fn parse_bool(key: &str, raw: &str) -> Result<bool, ConfigError> {
    match raw.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" | "" => Ok(false),
        _ => Err(ConfigError::new(
            key,
            format!("{raw:?} is not a boolean (true/false/1/0)"),
        )),
    }
}

fn parse_format(key: &str, raw: &str) -> Result<LogFormat, ConfigError> {
    match raw.trim().to_ascii_lowercase().as_str() {
        "pretty" | "text" => Ok(LogFormat::Pretty),
        "json" => Ok(LogFormat::Json),
        _ => Err(ConfigError::new(
            key,
            format!("{raw:?} is not one of pretty, json"),
        )),
    }
}

fn parse_ips(key: &str, raw: &str) -> Result<Vec<IpAddr>, ConfigError> {
    raw.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|ip| parse(key, ip, "an IP address"))
        .collect()
}

/// Applies every override present in `env` to `settings`.
pub(super) fn apply_overrides(settings: &mut Settings, env: &Env) -> Result<(), ConfigError> {
    let s = settings;
    let set = |key: &str| env.get(key);
    if let Some(v) = set("KEEL_BIND") {
        s.server.bind =
            parse::<SocketAddr>("KEEL_BIND", &v, "a socket address like 127.0.0.1:8080")?;
    }
    if let Some(v) = set("KEEL_BODY_LIMIT") {
        s.server.body_limit_bytes = parse("KEEL_BODY_LIMIT", &v, "a size in bytes")?;
    }
    if let Some(v) = set("KEEL_HTTP_WORKERS") {
        s.server.http_workers = parse("KEEL_HTTP_WORKERS", &v, "a thread count")?;
    }
    if let Some(v) = set("KEEL_SHUTDOWN_TIMEOUT_SECS") {
        s.server.shutdown_timeout_secs =
            parse("KEEL_SHUTDOWN_TIMEOUT_SECS", &v, "a number of seconds")?;
    }
    if let Some(v) = set("KEEL_TRUSTED_PROXIES") {
        s.server.trusted_proxies = parse_ips("KEEL_TRUSTED_PROXIES", &v)?;
    }
    if let Some(v) = set("DATABASE_URL") {
        s.database.url = Secret::new(v.trim().to_owned());
    }
    if let Some(v) = set("KEEL_MIGRATE") {
        s.database.migrate = parse_bool("KEEL_MIGRATE", &v)?;
    }
    if let Some(v) = set("KEEL_DB_POOL_SIZE") {
        s.database.pool_size = parse("KEEL_DB_POOL_SIZE", &v, "a pool size")?;
    }
    if let Some(v) = set("REDIS_URL") {
        s.redis.url = Secret::new(v.trim().to_owned());
    }
    if let Some(v) = set("KEEL_REDIS_POOL_SIZE") {
        s.redis.pool_size = parse("KEEL_REDIS_POOL_SIZE", &v, "a pool size")?;
    }
    if let Some(v) = set("KEEL_REDIS_PREFIX") {
        s.redis.key_prefix = v;
    }
    if let Some(v) = set("KEEL_LOG") {
        s.log.filter = v;
    }
    if let Some(v) = set("KEEL_LOG_FORMAT") {
        s.log.format = parse_format("KEEL_LOG_FORMAT", &v)?;
    }
    for (key, field) in [
        ("KEEL_JWT_SECRET", &mut s.secrets.jwt_secret),
        (
            "KEEL_ACTION_TOKEN_SECRET",
            &mut s.secrets.action_token_secret,
        ),
        ("KEEL_PII_KEYS", &mut s.secrets.pii_keys),
        (
            "KEEL_BOOTSTRAP_ADMIN_PASSWORD",
            &mut s.bootstrap.admin_password,
        ),
        ("KEEL_REVIO_WEBHOOK_SECRET", &mut s.revio.webhook_secret),
    ] {
        if let Some(v) = set(key) {
            *field = Secret::new(v);
        }
    }
    for (key, field) in [
        ("KEEL_BOOTSTRAP_ADMIN_EMAIL", &mut s.bootstrap.admin_email),
        ("KEEL_REVIO_URL", &mut s.revio.url),
        ("KEEL_REVIO_PUBLIC_KEY", &mut s.revio.public_key),
    ] {
        if let Some(v) = set(key) {
            *field = v;
        }
    }
    if let Some(v) = set("KEEL_REVIO_SIM_DELAY_MS") {
        s.revio.sim_delay_ms = parse("KEEL_REVIO_SIM_DELAY_MS", &v, "a number of milliseconds")?;
    }
    if let Some(v) = set("KEEL_SCORE_ACTIONS") {
        s.scoreboard.actions = v.trim().to_owned();
    }
    if let Some(v) = set("KEEL_SCOREBOARD_LIVE_MAX_CONNECTIONS") {
        s.scoreboard.live_max_connections = parse(
            "KEEL_SCOREBOARD_LIVE_MAX_CONNECTIONS",
            &v,
            "a number of connections",
        )?;
    }
    if let Some(v) = set("KEEL_WALLET_DEFAULT_CURRENCY") {
        s.wallet.default_currency = v.trim().to_owned();
    }
    if let Some(v) = set("KEEL_WALLET_APPROVAL_THRESHOLD_MINOR") {
        s.wallet.approval_threshold_minor = parse(
            "KEEL_WALLET_APPROVAL_THRESHOLD_MINOR",
            &v,
            "an amount in minor units",
        )?;
    }
    for (key, field) in [
        (
            "KEEL_SCOREBOARD_HEARTBEAT_SECS",
            &mut s.scoreboard.live_heartbeat_secs,
        ),
        (
            "KEEL_SCOREBOARD_LIVE_RESYNC_SECS",
            &mut s.scoreboard.live_resync_secs,
        ),
        (
            "KEEL_SCOREBOARD_DRIFT_INTERVAL_SECS",
            &mut s.scoreboard.drift_interval_secs,
        ),
        (
            "KEEL_WALLET_RECONCILE_AFTER_SECS",
            &mut s.wallet.reconcile_after_secs,
        ),
        (
            "KEEL_WALLET_RECONCILE_INTERVAL_SECS",
            &mut s.wallet.reconcile_interval_secs,
        ),
    ] {
        if let Some(v) = set(key) {
            *field = parse(key, &v, "a number of seconds")?;
        }
    }
    if let Some(v) = set("KEEL_IDEMPOTENCY_TTL_SECS") {
        s.idempotency.ttl_secs = parse("KEEL_IDEMPOTENCY_TTL_SECS", &v, "a number of seconds")?;
    }
    if let Some(v) = set("KEEL_IDEMPOTENCY_PURGE_INTERVAL_SECS") {
        s.idempotency.purge_interval_secs = parse(
            "KEEL_IDEMPOTENCY_PURGE_INTERVAL_SECS",
            &v,
            "a number of seconds",
        )?;
    }
    if let Some(v) = set("KEEL_IDEMPOTENCY_LEASE_SECS") {
        s.idempotency.lease_secs = parse("KEEL_IDEMPOTENCY_LEASE_SECS", &v, "a number of seconds")?;
    }
    if let Some(v) = set("KEEL_IDEMPOTENCY_CACHE_ENTRIES") {
        s.idempotency.cache_entries =
            parse("KEEL_IDEMPOTENCY_CACHE_ENTRIES", &v, "a number of entries")?;
    }
    if let Some(v) = set("KEEL_IDEMPOTENCY_CACHE_MIB") {
        s.idempotency.cache_mib = parse("KEEL_IDEMPOTENCY_CACHE_MIB", &v, "a number of MiB")?;
    }
    if let Some(v) = set("KEEL_WORKERS") {
        s.jobs.workers = parse("KEEL_WORKERS", &v, "a worker count")?;
    }
    for (key, field, what) in [
        (
            "KEEL_JOBS_LEASE_SECS",
            &mut s.jobs.lease_secs,
            "a number of seconds",
        ),
        (
            "KEEL_JOBS_POLL_INTERVAL_MS",
            &mut s.jobs.poll_interval_ms,
            "a number of milliseconds",
        ),
        (
            "KEEL_JOBS_SHUTDOWN_GRACE_SECS",
            &mut s.jobs.shutdown_grace_secs,
            "a number of seconds",
        ),
        (
            "KEEL_JOBS_RETENTION_HOURS",
            &mut s.jobs.retention_hours,
            "a number of hours",
        ),
    ] {
        if let Some(v) = set(key) {
            *field = parse(key, &v, what)?;
        }
    }
    for class in LimitClass::ALL {
        let upper = class.as_str().to_ascii_uppercase();
        for (prefix, table) in [
            ("KEEL_RATE_", &mut s.rate),
            ("KEEL_RATE_FALLBACK_", &mut s.rate_fallback),
        ] {
            if let Some(v) = set(&format!("{prefix}{upper}")) {
                *table.get_mut(class) = v.trim().to_owned();
            }
        }
    }
    Ok(())
}

/// Checks every rate policy and fallback, naming the variable of the first bad one.
pub(super) fn validate_rates(rate: &PerClass, fallback: &PerClass) -> Result<(), ConfigError> {
    for class in LimitClass::ALL {
        let key = format!("KEEL_RATE_{}", class.as_str().to_ascii_uppercase());
        rate.get(class)
            .parse::<PolicySetting>()
            .map_err(|e| ConfigError::new(key, e))?;
        let key = format!("KEEL_RATE_FALLBACK_{}", class.as_str().to_ascii_uppercase());
        fallback
            .get(class)
            .parse::<RedisDownMode>()
            .map_err(|e| ConfigError::new(key, e))?;
    }
    Ok(())
}
