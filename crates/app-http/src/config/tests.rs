use super::*;

fn load(pairs: &[(&str, &str)]) -> Result<Settings, ConfigError> {
    Settings::load_from(&Env::from_pairs(pairs.iter().copied()))
}

#[test]
fn defaults_are_the_embedded_memory_setup() {
    let s = load(&[]).unwrap();
    assert_eq!(s.server.bind.to_string(), "127.0.0.1:8080");
    assert_eq!(s.server.body_limit_bytes, 1024 * 1024);
    assert_eq!(s.database_url(), None);
    assert_eq!(s.redis_url(), None);
    assert!(!s.database.migrate);
    assert_eq!(s.rate.score, "100/hour");
    assert_eq!(
        s.idempotency.cache_bounds(),
        keel_adapters_memory::CacheBounds::default()
    );
    assert_eq!(
        s.dev_default_secrets(),
        vec![
            "KEEL_JWT_SECRET",
            "KEEL_ACTION_TOKEN_SECRET",
            "KEEL_PII_KEYS",
            "KEEL_REVIO_PUBLIC_KEY"
        ]
    );
}

#[test]
fn env_overrides_the_defaults() {
    let s = load(&[
        ("KEEL_BIND", "0.0.0.0:9000"),
        ("DATABASE_URL", "postgres://u@h/db"),
        ("REDIS_URL", "redis://127.0.0.1:6379/2"),
        ("KEEL_MIGRATE", "1"),
        ("KEEL_RATE_AUTH", "5/second"),
        ("KEEL_RATE_SCORE", "off"),
        ("KEEL_LOG_FORMAT", "json"),
        ("KEEL_TRUSTED_PROXIES", "10.0.0.1, ::1"),
        ("KEEL_JWT_SECRET", "a-real-secret-of-at-least-32-bytes-long"),
    ])
    .unwrap();
    assert_eq!(s.server.bind.port(), 9000);
    assert_eq!(s.database_url(), Some("postgres://u@h/db"));
    assert_eq!(s.redis_url(), Some("redis://127.0.0.1:6379/2"));
    assert!(s.database.migrate);
    assert_eq!(s.rate.auth, "5/second");
    assert_eq!(s.rate.score, "off");
    assert_eq!(s.log.format, LogFormat::Json);
    assert_eq!(s.server.trusted_proxies.len(), 2);
    assert!(!s.dev_default_secrets().contains(&"KEEL_JWT_SECRET"));
}

#[test]
fn a_bad_value_names_its_setting() {
    let cases = [
        ("KEEL_BIND", "localhost"),
        ("KEEL_MIGRATE", "perhaps"),
        ("KEEL_RATE_AUTH", "10 per minute"),
        ("KEEL_RATE_SCAN", "0/minute"),
        ("KEEL_RATE_DEFAULT", "5/fortnight"),
        ("DATABASE_URL", "mysql://x"),
        ("REDIS_URL", "http://x"),
        ("KEEL_BODY_LIMIT", "0"),
        ("KEEL_JWT_SECRET", "short"),
        ("KEEL_LOG_FORMAT", "xml"),
        ("KEEL_TRUSTED_PROXIES", "not-an-ip"),
        ("KEEL_LOG", "info,[[[bad"),
        ("KEEL_RATE_FALLBACK_AUTH", "maybe"),
        ("KEEL_IDEMPOTENCY_LEASE_SECS", "0"),
        ("KEEL_IDEMPOTENCY_CACHE_ENTRIES", "0"),
        ("KEEL_IDEMPOTENCY_CACHE_MIB", "lots"),
        ("KEEL_IDEMPOTENCY_LEASE_SECS", "86400"),
        ("KEEL_IDEMPOTENCY_TTL_SECS", "99999999999"),
        ("KEEL_REDIS_PREFIX", "{bad}"),
        ("KEEL_REDIS_PREFIX", ""),
        ("KEEL_PII_KEYS", "k1:dG9vLXNob3J0"),
        ("KEEL_PII_KEYS", "no-colon"),
    ];
    for (key, value) in cases {
        let err = load(&[(key, value)]).expect_err(key);
        assert_eq!(err.key, key, "{err}");
    }
}

#[test]
fn a_config_file_overlays_the_defaults_and_env_wins() {
    let dir = std::env::temp_dir().join(format!("keel-config-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("keel.toml");
    std::fs::write(
        &file,
        "[server]\nbind = \"127.0.0.1:7000\"\n[rate]\nauth = \"3/minute\"\n",
    )
    .unwrap();
    let path = file.to_str().unwrap();
    let s = load(&[("KEEL_CONFIG", path), ("KEEL_RATE_AUTH", "4/minute")]).unwrap();
    assert_eq!(s.server.bind.port(), 7000);
    assert_eq!(s.rate.auth, "4/minute");
    assert_eq!(
        s.server.body_limit_bytes,
        1024 * 1024,
        "untouched keys keep their default"
    );

    std::fs::write(&file, "[server]\nbind = 12\n").unwrap();
    assert!(load(&[("KEEL_CONFIG", path)]).is_err());
    std::fs::write(&file, "[server]\nbnid = \"127.0.0.1:1\"\n").unwrap();
    assert!(
        load(&[("KEEL_CONFIG", path)]).is_err(),
        "unknown keys are refused"
    );
    std::fs::remove_dir_all(&dir).unwrap();
    let err = load(&[("KEEL_CONFIG", "/nonexistent/keel.toml")]).unwrap_err();
    assert_eq!(err.key, "KEEL_CONFIG");
}

#[test]
fn a_bad_pii_key_is_refused_without_echoing_it() {
    let err = load(&[("KEEL_PII_KEYS", "k1:c2VjcmV0LWJ1dC10b28tc2hvcnQ=")]).unwrap_err();
    assert_eq!(err.key, "KEEL_PII_KEYS");
    assert!(!err.to_string().contains("c2VjcmV0"), "{err}");
}

#[test]
fn secrets_never_show_in_debug_output() {
    let s = load(&[("DATABASE_URL", "postgres://u:pa55word@h/db")]).unwrap();
    let debug = format!("{s:?}");
    assert!(!debug.contains("pa55word"));
    assert!(!debug.contains("dev-only-jwt"));
}

#[test]
fn job_settings_are_bounded_and_keep_periodic_slots_unique() {
    let s = load(&[("KEEL_WORKERS", "0")]).unwrap();
    assert_eq!(s.jobs.workers, 0);
    for (key, value) in [
        ("KEEL_WORKERS", "1000"),
        ("KEEL_WORKERS", "many"),
        ("KEEL_JOBS_LEASE_SECS", "0"),
        ("KEEL_JOBS_POLL_INTERVAL_MS", "1"),
        ("KEEL_JOBS_RETENTION_HOURS", "0"),
    ] {
        assert_eq!(load(&[(key, value)]).unwrap_err().key, key, "{key}={value}");
    }
    // A daily purge needs its completed slot row kept at least a day.
    let short = load(&[
        ("KEEL_IDEMPOTENCY_PURGE_INTERVAL_SECS", "86400"),
        ("KEEL_JOBS_RETENTION_HOURS", "1"),
    ]);
    assert_eq!(short.unwrap_err().key, "KEEL_JOBS_RETENTION_HOURS");
}
