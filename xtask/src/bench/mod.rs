//! `cargo xtask bench <name>`: load benchmarks, each beside a baseline from the same run.
//!
//! The machine is noisy, so absolute figures mean little: every bench alternates rounds of its
//! baseline and its targets, takes the median of each, and reports ratios to the baseline.

mod all;
mod chart;
pub mod hello;
mod jobs;
mod ledger;
pub(crate) mod loadgen;
pub(crate) mod machine;
mod mail_drain;
pub(crate) mod pg;
pub(crate) mod process;
mod redis_benchmark;
pub(crate) mod registrations;
pub(crate) mod report;
mod scoreboard;

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use clap::{Args, ValueEnum};

use crate::{run_command, workspace_root};
use loadgen::{LoadConfig, LoadResult, Target};
use process::Server;

/// Options of `cargo xtask bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Which benchmark.
    #[arg(value_enum, default_value_t = BenchName::Healthz)]
    name: BenchName,
    /// Seconds of load per round and target.
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    /// Concurrent keep-alive connections.
    #[arg(long, default_value_t = 32)]
    connections: usize,
    /// Rounds (baseline and targets alternate; the median is reported).
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Live-feed clients held open on one node (`bench scoreboard`).
    #[arg(long, default_value_t = 10_000)]
    sse_clients: usize,
    /// Print the table without rewriting docs/BENCHMARKS.md.
    #[arg(long)]
    no_write: bool,
}

/// The benchmarks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum BenchName {
    /// keel's `GET /healthz` through the full middleware stack vs an actix hello-world route.
    Healthz,
    /// A replayed idempotent POST over HTTP vs `redis-benchmark` GET.
    Idempotency,
    /// A rate-limited route (memory and Redis budgets) vs an actix hello-world route.
    Ratelimit,
    /// `POST /auth/login` vs raw Argon2id verifications on as many threads as cores.
    Login,
    /// No-op jobs/s with 4 workers on Postgres, and enqueue→start latency, vs `pgbench -N`.
    Jobs,
    /// Registrations/s over HTTP on one hot competition (zero oversell), vs `pgbench -N`.
    Registrations,
    /// Durable wallet transfers/s (one per transaction, and batched) vs `pgbench -b tpcb-like`.
    Ledger,
    /// Score updates/s vs `pgbench -N`, top-10 reads vs hello-world, live-feed fan-out latency
    /// and memory per connection with 10 000 clients.
    Scoreboard,
    /// Every bench above, one after another with the same options, then the summary section
    /// (machine, every ratio against its goal) and docs/benchmarks.svg.
    All,
}

impl BenchName {
    fn as_str(self) -> &'static str {
        match self {
            Self::Healthz => "healthz",
            Self::Idempotency => "idempotency",
            Self::Ratelimit => "ratelimit",
            Self::Login => "login",
            Self::Jobs => "jobs",
            Self::Registrations => "registrations",
            Self::Ledger => "ledger",
            Self::Scoreboard => "scoreboard",
            Self::All => "all",
        }
    }
}

/// One measured line of a report.
pub struct Row {
    label: String,
    result: LoadResult,
}

/// Something measured once per round.
enum Measure<'a> {
    /// The hyper load generator against an HTTP target.
    Http(Target),
    /// `redis-benchmark` GET against the local Redis.
    RedisGet(&'a str),
    /// Argon2id verifications with keel's parameters, on this many threads.
    Argon2(usize),
}

pub fn run(args: &BenchArgs) -> Result<(), String> {
    let config = LoadConfig {
        duration: Duration::from_secs(args.seconds),
        connections: args.connections,
    };
    let (rows, notes) = match args.name {
        BenchName::Healthz => healthz(args, &config)?,
        BenchName::Idempotency => idempotency(args, &config)?,
        BenchName::Ratelimit => ratelimit(args, &config)?,
        BenchName::Login => login(args, &config)?,
        BenchName::Jobs => return jobs::run(args),
        BenchName::Registrations => return registrations::run(args),
        BenchName::Ledger => return ledger::run(args),
        BenchName::Scoreboard => return scoreboard::run(args),
        BenchName::All => return all::run(args),
    };
    let table = report::table(&rows);
    println!("{table}{notes}");
    if !args.no_write {
        let name = args.name.as_str();
        let body = report::section(name, &config, args.rounds, &format!("{table}{notes}"));
        report::write_section(name, &body)?;
    }
    Ok(())
}

/// Runs every measure once per round, in turn, and returns the median of each.
fn rounds(
    args: &BenchArgs,
    config: &LoadConfig,
    measures: &[(&str, Measure<'_>)],
) -> Result<Vec<Row>, String> {
    let mut results: Vec<Vec<LoadResult>> = measures.iter().map(|_| Vec::new()).collect();
    for round in 1..=args.rounds {
        eprintln!("round {round}/{}", args.rounds);
        for ((_, measure), runs) in measures.iter().zip(results.iter_mut()) {
            runs.push(match measure {
                Measure::Http(target) => loadgen::run(target, config)?,
                Measure::RedisGet(url) => redis_benchmark::get(url, config)?,
                Measure::Argon2(threads) => argon2_verifications(*threads, config)?,
            });
        }
    }
    Ok(measures
        .iter()
        .zip(results)
        .map(|((label, _), runs)| Row {
            label: (*label).to_owned(),
            result: LoadResult::median(runs),
        })
        .collect())
}

fn healthz(args: &BenchArgs, config: &LoadConfig) -> Result<(Vec<Row>, String), String> {
    let keel = build(&["--bin", "keel"], "keel")?;
    let hello = Server::hello_world(1)?;
    let keel = Server::start(&keel, &[("KEEL_HTTP_WORKERS", "1")])?;
    let rows = rounds(
        args,
        config,
        &[
            (
                "actix hello-world `GET /` (baseline)",
                Measure::Http(Target::get(hello.url("/"))),
            ),
            (
                "keel `GET /healthz` (full middleware stack)",
                Measure::Http(Target::get(keel.url("/healthz"))),
            ),
        ],
    )?;
    Ok((rows, String::new()))
}

fn idempotency(args: &BenchArgs, config: &LoadConfig) -> Result<(Vec<Row>, String), String> {
    let example = build(&["--example", "embedded_api"], "examples/embedded_api")?;
    let redis_url = std::env::var("REDIS_URL").ok();
    let database_url = bench_database()?;
    let mut env = vec![
        ("KEEL_HTTP_WORKERS", "1"),
        ("KEEL_RATE_DEFAULT", "100000/second"),
    ];
    let backend = match (&database_url, &redis_url) {
        (Some(db), Some(redis)) => {
            env.extend([
                ("DATABASE_URL", db.as_str()),
                ("KEEL_MIGRATE", "true"),
                ("REDIS_URL", redis.as_str()),
            ]);
            "Postgres record + Redis cache"
        }
        _ => "memory store (set DATABASE_URL and REDIS_URL for Postgres + Redis)",
    };
    let server = Server::start(&example, &env)?;
    let key = format!("bench-{}", std::process::id());
    let replay = Target::post_json(
        server.url("/api/v1/notes"),
        r#"{"text":"bench"}"#,
        &[("idempotency-key", &key)],
    );
    // The first request executes; every later one is a replay.
    loadgen::run(
        &replay,
        &LoadConfig {
            duration: Duration::from_millis(100),
            connections: 1,
        },
    )?;
    let redis = redis_url.as_deref().unwrap_or("redis://127.0.0.1:6379");
    let rows = rounds(
        args,
        config,
        &[
            (
                "`redis-benchmark -t get` (baseline)",
                Measure::RedisGet(redis),
            ),
            (
                "replayed `POST /api/v1/notes` over HTTP",
                Measure::Http(replay),
            ),
        ],
    )?;
    Ok((
        rows,
        format!("\nReplays served from: {backend}. Goal: ≥ 0.5× redis-benchmark GET.\n"),
    ))
}

fn ratelimit(args: &BenchArgs, config: &LoadConfig) -> Result<(Vec<Row>, String), String> {
    let example = build(&["--example", "embedded_api"], "examples/embedded_api")?;
    let hello = Server::hello_world(1)?;
    let allow_all = [
        ("KEEL_HTTP_WORKERS", "1"),
        ("KEEL_RATE_DEFAULT", "100000/second"),
    ];
    let memory = Server::start(&example, &allow_all)?;
    let mut measures = vec![
        (
            "actix hello-world `GET /` (baseline)",
            Measure::Http(Target::get(hello.url("/"))),
        ),
        (
            "limited `GET /api/v1/ping`, in-process budget",
            Measure::Http(Target::get(memory.url("/api/v1/ping"))),
        ),
    ];
    let redis_url = std::env::var("REDIS_URL").ok();
    let shared = match &redis_url {
        Some(url) => {
            let mut env = allow_all.to_vec();
            env.push(("REDIS_URL", url.as_str()));
            Some(Server::start(&example, &env)?)
        }
        None => None,
    };
    if let Some(server) = &shared {
        measures.push((
            "limited `GET /api/v1/ping`, Redis budget (Lua GCRA)",
            Measure::Http(Target::get(server.url("/api/v1/ping"))),
        ));
    }
    let rows = rounds(args, config, &measures)?;
    let decision = criterion_figures()?;
    Ok((
        rows,
        format!(
            "\nGoal: limited route ≥ 0.8× hello-world. In-memory limiter (criterion, `cargo bench -p keel-adapters-memory --bench ratelimit`):\n\n{decision}"
        ),
    ))
}

fn login(args: &BenchArgs, config: &LoadConfig) -> Result<(Vec<Row>, String), String> {
    let keel = build(&["--bin", "keel"], "keel")?;
    let server = Server::start(&keel, &[("KEEL_RATE_AUTH", "off")])?;
    let credentials = r#"{"email":"bench@keel.test","password":"bench-password-123"}"#;
    let register = Target::post_json(
        server.url("/api/v1/auth/register"),
        r#"{"email":"bench@keel.test","password":"bench-password-123","display_name":"Bench"}"#,
        &[],
    );
    loadgen::run(
        &register,
        &LoadConfig {
            duration: Duration::from_millis(200),
            connections: 1,
        },
    )?;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let rows = rounds(
        args,
        config,
        &[
            (
                "Argon2id verify (m=19456 KiB, t=2, p=1), one per core (baseline)",
                Measure::Argon2(cores),
            ),
            (
                "`POST /api/v1/auth/login` (verify + token + refresh row)",
                Measure::Http(Target::post_json(
                    server.url("/api/v1/auth/login"),
                    credentials,
                    &[],
                )),
            ),
        ],
    )?;
    Ok((rows, "\nLogin is dominated by Argon2id by design. Goal: the rest of the path costs < 5% (ratio ≥ 0.95×).\n".to_owned()))
}

/// Argon2id verifications per second with keel's parameters, on `threads` threads.
fn argon2_verifications(threads: usize, config: &LoadConfig) -> Result<LoadResult, String> {
    use keel_domain::identity::password::PasswordHasher;
    let hasher = PasswordHasher::new().map_err(|e| e.to_string())?;
    let phc = hasher
        .hash("bench-password-123")
        .map_err(|e| e.to_string())?;
    let stop = std::time::Instant::now() + config.duration;
    let total: u64 = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    let mut n = 0u64;
                    while std::time::Instant::now() < stop {
                        if hasher.verify("bench-password-123", &phc) {
                            n += 1;
                        }
                    }
                    n
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().unwrap_or(0)).sum()
    });
    Ok(LoadResult {
        rps: total as f64 / config.duration.as_secs_f64(),
        p50_us: 0,
        p99_us: 0,
        errors: 0,
    })
}

/// Runs the in-memory limiter's criterion bench and returns its `time:` lines.
fn criterion_figures() -> Result<String, String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let output = Command::new(cargo)
        .args([
            "bench",
            "--quiet",
            "-p",
            "keel-adapters-memory",
            "--bench",
            "ratelimit",
            "--",
            "--noplot",
        ])
        .current_dir(workspace_root())
        .output()
        .map_err(|e| format!("cannot run cargo bench: {e}"))?;
    let text = String::from_utf8_lossy(&output.stdout);
    let mut lines = Vec::new();
    let mut name = "";
    for line in text.lines() {
        if !line.starts_with(' ') && !line.trim().is_empty() && !line.contains("time:") {
            name = line.trim();
        }
        if let Some(time) = line.split("time:").nth(1) {
            let label = if name.is_empty() {
                line.split("time:").next().unwrap_or("").trim()
            } else {
                name
            };
            lines.push(format!("- `{label}`: {}", time.trim()));
        }
    }
    Ok(lines.join("\n") + "\n")
}

/// A database of its own for benchmarks (`keel_bench` next to `DATABASE_URL`'s), or `None`.
fn bench_database() -> Result<Option<String>, String> {
    let Ok(url) = std::env::var("DATABASE_URL") else {
        return Ok(None);
    };
    let _ = Command::new("psql")
        .args([url.as_str(), "-qc", "CREATE DATABASE keel_bench"])
        .output();
    let base = url.split('?').next().unwrap_or(&url);
    let root = base.rsplit_once('/').map_or(base, |(root, _)| root);
    Ok(Some(format!("{root}/keel_bench")))
}

/// Builds a release artifact of keel-app-http and returns its path under the target dir.
pub(crate) fn build(what: &[&str], artifact: &str) -> Result<PathBuf, String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut args = vec!["build", "--release", "--quiet", "-p", "keel-app-http"];
    args.extend_from_slice(what);
    run_command(
        Command::new(cargo)
            .args(&args)
            .current_dir(workspace_root()),
    )?;
    Ok(target_dir().join("release").join(artifact))
}

/// Cargo's target directory (`CARGO_TARGET_DIR`, else `target/` in the workspace).
fn target_dir() -> PathBuf {
    std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| workspace_root().join("target"))
}
