//! `cargo xtask soak`: a steady mixed load on two keel nodes for a fixed time, watching for drift.
//!
//! Set-up (the benches' helpers): a scratch database next to `DATABASE_URL`'s (migrated by the
//! first node), Redis at `REDIS_URL` (default `redis://127.0.0.1:6379`) under a private key
//! prefix, two release `keel serve` nodes on loopback (one HTTP worker each, default job
//! workers, rate classes raised, one JWT secret), users inserted with SQL with pre-signed
//! tokens, and a few open competitions.
//!
//! Load: [`load`], an open loop at `--rate` operations per second alternating the nodes, well
//! below capacity so that it measures drift, not saturation.
//!
//! Every `--window-seconds` (30) it reads, per node, VmRSS, open fds and established TCP
//! connections: to Postgres, to Redis, and from HTTP clients ([`probe`]), with the window's
//! requests, p50/p99 and errors. At the end: the first and last windows, the least-squares slopes
//! of RSS and of the fds that are not connections after warm-up, and the verdict ([`trend`]);
//! written to docs/BENCHMARKS.md (`soak` section). It fails when RSS or those fds grow, when a
//! node holds more connections than its pools and the load generator allow, or when errors
//! exceed 0.1 %.
//!
//! Bounded (at most [`MAX_MINUTES`]), loopback only; the nodes, the Redis keys and the scratch
//! database are removed at the end, on errors and on Ctrl-C.

mod load;
mod probe;
mod redis;
mod report;
mod trend;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use clap::Args;

use crate::bench::build;
use crate::bench::machine::{self, Machine};
use crate::bench::pg::{self, Scratch};
use crate::bench::process::Server;
use crate::bench::registrations::insert_users;
use load::Load;
use trend::{Bounds, NodeSample, Window};

/// The longest soak (the users' access tokens live an hour).
const MAX_MINUTES: u64 = 50;
/// Competitions registrations spread over.
const COMPETITIONS: usize = 8;
/// Fewest users.
const MIN_USERS: usize = 200;
/// Warm-up excluded from the trends.
const WARM_UP: Duration = Duration::from_secs(120);
/// HS256 secret of both nodes, also signing the users' tokens.
const JWT_SECRET: &str = "keel-soak-jwt-secret-0123456789-abcdefghij";
/// Raised rate classes: the limiter runs, but never refuses this load.
const RAISED: &str = "100000/second";
/// Postgres and Redis pool size of each node (keel's default).
const POOL_SIZE: usize = 16;

/// Options of `cargo xtask soak`.
#[derive(Debug, Args)]
pub struct SoakArgs {
    /// Minutes of load (1 to 50).
    #[arg(long, default_value_t = 10)]
    minutes: u64,
    /// Keep-alive connections per node (at most this many requests in flight on each).
    #[arg(long, default_value_t = 8)]
    connections: usize,
    /// Operations per second over both nodes (open loop; some operations are two requests).
    #[arg(long, default_value_t = 200)]
    rate: u32,
    /// Seconds per sample window.
    #[arg(long, default_value_t = 30)]
    window_seconds: u64,
    /// Print the result without rewriting docs/BENCHMARKS.md.
    #[arg(long)]
    no_write: bool,
}

/// Completed responses each node keeps in memory: full within the warm-up at this load.
const NEAR_CACHE_ENTRIES: &str = "1000";

/// Runs the soak; fails when a node drifts or errors exceed the limit.
pub fn run(args: &SoakArgs) -> Result<(), String> {
    let minutes = args.minutes.clamp(1, MAX_MINUTES);
    let window = Duration::from_secs(args.window_seconds.clamp(1, 300));
    let total = Duration::from_secs(minutes * 60);
    let windows = (total.as_secs() / window.as_secs()).max(1) as usize;
    let warm_up = ((WARM_UP.as_secs() / window.as_secs()) as usize).min(windows / 2);
    let admin_url = std::env::var("DATABASE_URL")
        .map_err(|_| "DATABASE_URL is not set (`cargo xtask services` prints it)".to_owned())?;
    pg::loopback_only(&admin_url)?;
    let redis_url =
        std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned());
    pg::loopback_only(&redis_url)?;
    let ports = (
        probe::port_of(&admin_url, 5432),
        probe::port_of(&redis_url, 6379),
    );
    let keel = build(&["--bin", "keel"], "keel")?;
    let machine = Machine::describe();
    let load_before = machine::load_averages();

    // Locals drop in reverse order: the load, the nodes, then the Redis keys and the database.
    let db = Scratch::create(&admin_url, "keel_soak")?;
    let prefix = redis::Prefix::new(&redis_url);
    let pool_size = POOL_SIZE.to_string();
    let env = |migrate: &'static str| {
        [
            ("DATABASE_URL", db.url.as_str()),
            ("KEEL_MIGRATE", migrate),
            ("REDIS_URL", redis_url.as_str()),
            ("KEEL_REDIS_PREFIX", prefix.prefix.as_str()),
            ("KEEL_JWT_SECRET", JWT_SECRET),
            ("KEEL_HTTP_WORKERS", "1"),
            ("KEEL_DB_POOL_SIZE", pool_size.as_str()),
            ("KEEL_REDIS_POOL_SIZE", pool_size.as_str()),
            ("KEEL_RATE_DEFAULT", RAISED),
            ("KEEL_RATE_SCORE", RAISED),
            // Bounded caches are sized to fill during warm-up, so that only unbounded growth
            // shows after it: at the default 10 000 entries the near idempotency cache of
            // completed responses (about 1 KiB each) would still be filling after ten minutes.
            ("KEEL_IDEMPOTENCY_CACHE_ENTRIES", NEAR_CACHE_ENTRIES),
        ]
    };
    let nodes = [
        Server::start(&keel, &env("true"))?,
        Server::start(&keel, &env("false"))?,
    ];
    let needed = load::registrations_needed(args.rate, total.as_secs()) * 11 / 10;
    let users = insert_users(
        &db.url,
        needed.div_ceil(COMPETITIONS).max(MIN_USERS),
        "soak",
        JWT_SECRET,
    )?;
    let competitions = create_competitions(&db.url, COMPETITIONS)?;
    eprintln!(
        "soak: {} users, {COMPETITIONS} competitions, {} ops/s for {minutes} min, windows of {} s",
        users.len(),
        args.rate,
        window.as_secs()
    );
    let load = Arc::new(Load::new(
        [nodes[0].url("").as_str(), nodes[1].url("").as_str()],
        args.connections,
        users.into(),
        competitions,
        args.rate,
    )?);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start tokio: {e}"))?;
    let interrupted = Arc::new(AtomicBool::new(false));
    {
        let interrupted = interrupted.clone();
        runtime.spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                interrupted.store(true, Ordering::Relaxed);
            }
        });
    }
    let stop = Arc::new(AtomicBool::new(false));
    let driver = runtime.spawn(load.clone().drive(stop.clone()));
    let sampled = sample(
        &load,
        &nodes,
        ports,
        window,
        windows,
        &interrupted,
        runtime.handle(),
    );
    stop.store(true, Ordering::Relaxed);
    let _ = runtime.block_on(driver);
    drop(runtime);
    drop(nodes);
    let windows = sampled?;

    let bounds = Bounds {
        pool: POOL_SIZE,
        http: args.connections,
    };
    let failures = trend::failures(&windows, warm_up, &bounds);
    let body = report::section(&report::Summary {
        args,
        minutes,
        window,
        warm_up,
        ports,
        machine: &machine,
        load: [&load_before, &machine::load_averages()],
        windows: &windows,
        bounds: &bounds,
        failures: &failures,
    });
    println!("{body}");
    if !args.no_write {
        crate::bench::report::write_section("soak", &body)?;
    }
    if failures.is_empty() {
        Ok(())
    } else {
        Err(format!("soak failed: {}", failures.join("; ")))
    }
}

/// Every `window`, `count` times: the load's figures and a probe of each node.
fn sample(
    load: &Load,
    nodes: &[Server; 2],
    (pg_port, redis_port): (u16, u16),
    window: Duration,
    count: usize,
    interrupted: &AtomicBool,
    runtime: &tokio::runtime::Handle,
) -> Result<Vec<Window>, String> {
    let started = Instant::now();
    let mut windows = Vec::with_capacity(count);
    for i in 1..=count {
        let end = started + window * i as u32;
        while Instant::now() < end {
            if interrupted.load(Ordering::Relaxed) {
                return Err("interrupted".to_owned());
            }
            std::thread::sleep(Duration::from_millis(200).min(end - Instant::now()));
        }
        let [a, b] = load.take_window()?;
        let probe = |node: &Server| {
            probe::probe(node.pid(), pg_port, redis_port).map(|probe| probe::Probe {
                heap_bytes: live_heap(runtime, node),
                ..probe
            })
        };
        let w = Window {
            minute: started.elapsed().as_secs_f64() / 60.0,
            nodes: [
                NodeSample {
                    probe: probe(&nodes[0])?,
                    answers: a,
                },
                NodeSample {
                    probe: probe(&nodes[1])?,
                    answers: b,
                },
            ],
        };
        eprintln!("{}", report::progress(&w));
        windows.push(w);
    }
    Ok(windows)
}

/// The node's live heap from its `/metrics`, if it answers within two seconds and reports one.
fn live_heap(runtime: &tokio::runtime::Handle, node: &Server) -> Option<u64> {
    let url = node.url("/metrics");
    let text = runtime.block_on(async {
        let scrape = async { reqwest::get(url).await?.text().await };
        tokio::time::timeout(Duration::from_secs(2), scrape)
            .await
            .ok()?
            .ok()
    })?;
    probe::gauge(&text, probe::HEAP_GAUGE).map(|bytes| bytes as u64)
}

/// Creates `n` competitions, each with room for everyone, open for two hours; their ids.
fn create_competitions(url: &str, n: usize) -> Result<Vec<String>, String> {
    let ids = pg::psql(
        url,
        &format!(
            "INSERT INTO competitions (id, title, capacity, seats_taken, registration_deadline, \
             starts_at, created_by, created_at) SELECT gen_random_uuid(), 'soak ' || i, 1000000, \
             0, now() + interval '2 hours', now() + interval '3 days', gen_random_uuid(), now() \
             FROM generate_series(1, {n}) AS i RETURNING id"
        ),
    )?;
    Ok(ids
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect())
}
