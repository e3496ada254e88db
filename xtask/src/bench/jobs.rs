//! `cargo xtask bench jobs`: the Postgres job queue beside `pgbench -N` in the same run.
//!
//! - Baseline: `pgbench -N` (simple-update) with as many clients as keel has workers, on a
//!   scratch database of its own (`pgbench -i -s 1`).
//! - Throughput: no-op jobs pre-enqueued with `enqueue_in` (many per transaction), then drained by
//!   4 domain [`Worker`]s on a `PgJobQueue::with_listener` (pool of 8): jobs/s from the start of
//!   the workers until every job is completed (or the time limit).
//! - Latency: a producer on a queue of its own (another "node": its enqueues bump no local
//!   wake-up, so idle workers learn of them from `NOTIFY keel_jobs` only) enqueues one job at a
//!   time at a fixed rate while the workers idle with a 1 s poll; each handler records
//!   `now - created_at`, i.e. enqueue → start.
//!
//! Both scratch databases are created next to `DATABASE_URL`'s and dropped at the end, also when
//! a step fails. Loopback only.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::Utc;
use diesel_async::{AsyncConnection, SimpleAsyncConnection};
use hdrhistogram::Histogram;
use keel_adapters_memory::TokioTimer;
use keel_adapters_postgres::migrate::run_pending_migrations;
use keel_adapters_postgres::{PgJobQueue, PgPool, enqueue_in};
use keel_domain::SystemClock;
use keel_domain::jobs::{
    IgnoreJobEvents, JobContext, JobFailure, JobHandler, JobKind, JobQueue, JobRegistry,
    JobRuntime, JobState, NewJob, Shutdown, Worker, WorkerSettings,
};
use serde::{Deserialize, Serialize};
use tokio::task::JoinSet;

use super::BenchArgs;
use super::pg::{self, Scratch};
use super::report::{self, median, ms};

/// Workers draining the queue, and `pgbench` clients of the baseline.
const WORKERS: usize = 4;
/// Connections of the workers' pool (claims, completions, heartbeats).
const POOL_SIZE: usize = 8;
/// Concurrent enqueuing transactions while pre-enqueuing, and jobs per transaction.
const ENQUEUERS: u64 = 4;
const PER_TRANSACTION: u64 = 1_000;
/// Bounds of the pre-enqueued batch (sized to about one measure's time at the expected rate).
const MIN_JOBS: u64 = 1_000;
const MAX_JOBS: u64 = 50_000;
/// Rate of the latency trickle.
const TRICKLE_PER_SECOND: u64 = 200;
/// Highest latency recorded (longer ones saturate), in microseconds.
const LATENCY_MAX_US: u64 = 60_000_000;
/// The goal of the issue: jobs/s ≥ this × pgbench tps.
const GOAL: f64 = 0.5;

/// The no-op job kind of the bench.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Noop {}

impl JobKind for Noop {
    const KIND: &'static str = "bench.noop";
}

/// Counts the jobs it ran and, when given a histogram, records each one's enqueue → start time.
struct NoopHandler {
    ran: Arc<AtomicU64>,
    latency: Option<Arc<Mutex<Histogram<u64>>>>,
}

#[async_trait]
impl JobHandler<Noop> for NoopHandler {
    async fn run(&self, ctx: &JobContext, _job: Noop) -> Result<(), JobFailure> {
        if let Some(latency) = &self.latency {
            let waited = (Utc::now() - ctx.created_at)
                .num_microseconds()
                .unwrap_or(i64::MAX);
            let waited = u64::try_from(waited).unwrap_or(0).max(1);
            if let Ok(mut histogram) = latency.lock() {
                histogram.saturating_record(waited);
            }
        }
        self.ran.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

/// Runs the bench, prints its section and writes it to docs/BENCHMARKS.md (unless `--no-write`).
pub fn run(args: &BenchArgs) -> Result<(), String> {
    let admin_url = pg::admin_url("jobs")?;
    let seconds = args.seconds.max(1);
    let rounds = args.rounds.max(1);

    // Locals drop in reverse order: the runtime (and every connection) before the databases.
    let baseline = Scratch::create(&admin_url, "keel_bench_pgbench")?;
    let keel = Scratch::create(&admin_url, "keel_bench_jobs")?;
    eprintln!("pgbench -i -s 1 on {}", baseline.name);
    pg::pgbench(&["-i", "-s", "1", "-q", &baseline.url])?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start tokio: {e}"))?;
    let bench = runtime.block_on(Bench::open(&keel.url))?;

    let mut tps = Vec::new();
    let mut drains: Vec<Drain> = Vec::new();
    let mut enqueue_rates = Vec::new();
    let mut latency = new_histogram()?;
    let mut trickle_missing = 0;
    for round in 1..=rounds {
        eprintln!("round {round}/{rounds}");
        let round_tps = pg::pgbench_simple_update(&baseline.url, WORKERS, seconds)?;
        eprintln!("  pgbench -N: {round_tps:.0} tps");
        tps.push(round_tps);

        let expected = drains.last().map_or(round_tps * GOAL, |d| d.rate());
        let jobs = ((expected * seconds as f64) as u64).clamp(MIN_JOBS, MAX_JOBS);
        let limit = Duration::from_secs(seconds * 3);
        let round_result = runtime.block_on(async {
            let enqueue_rate = bench.pre_enqueue(jobs).await?;
            let drain = bench.drain(jobs, limit).await?;
            let (trickle, missing) = bench.trickle(seconds).await?;
            Ok::<_, String>((enqueue_rate, drain, trickle, missing))
        })?;
        let (enqueue_rate, drain, trickle, missing) = round_result;
        eprintln!(
            "  keel: {:.0} jobs/s ({} of {} in {:.2} s); pre-enqueue {:.0} jobs/s; \
             enqueue→start p50 {} p99 {}",
            drain.rate(),
            drain.completed,
            drain.enqueued,
            drain.elapsed.as_secs_f64(),
            enqueue_rate,
            ms(trickle.value_at_quantile(0.5)),
            ms(trickle.value_at_quantile(0.99)),
        );
        enqueue_rates.push(enqueue_rate);
        drains.push(drain);
        latency
            .add(&trickle)
            .map_err(|e| format!("cannot merge latencies: {e}"))?;
        trickle_missing += missing;
    }
    runtime.block_on(async move { drop(bench) });
    drop(runtime);

    let body = section(&Summary {
        seconds,
        rounds,
        tps,
        drains,
        enqueue_rates,
        latency,
        trickle_missing,
    });
    println!("{body}");
    if !args.no_write {
        report::write_section("jobs", &body)?;
    }
    Ok(())
}

/// The keel side: the scratch database, its pools and the measures.
struct Bench {
    url: String,
    /// The workers' pool.
    pool: PgPool,
    /// The trickle producer's pool (another "node").
    producer: PgPool,
}

impl Bench {
    async fn open(url: &str) -> Result<Self, String> {
        run_pending_migrations(url)
            .await
            .map_err(|e| format!("cannot migrate the scratch database: {e}"))?;
        let pool = PgPool::connect(url, POOL_SIZE)
            .await
            .map_err(|e| format!("cannot open the workers' pool: {e}"))?;
        let producer = PgPool::connect(url, ENQUEUERS as usize)
            .await
            .map_err(|e| format!("cannot open the producer's pool: {e}"))?;
        Ok(Self {
            url: url.to_owned(),
            pool,
            producer,
        })
    }

    /// Runs SQL on the scratch database (TRUNCATE and ANALYZE between measures).
    async fn sql(&self, sql: &str) -> Result<(), String> {
        let mut conn = self.producer.get().await.map_err(|e| e.to_string())?;
        conn.batch_execute(sql)
            .await
            .map_err(|e| format!("{sql}: {e}"))
    }

    /// Empties the jobs table and enqueues `jobs` no-op jobs with `enqueue_in`, many per
    /// transaction on several connections; returns the enqueue rate (jobs/s).
    async fn pre_enqueue(&self, jobs: u64) -> Result<f64, String> {
        self.sql("TRUNCATE jobs").await?;
        let job = new_job()?;
        let started = Instant::now();
        let mut tasks = JoinSet::new();
        for task in 0..ENQUEUERS {
            let share = jobs / ENQUEUERS + u64::from(task < jobs % ENQUEUERS);
            let pool = self.producer.clone();
            let job = job.clone();
            tasks.spawn(async move {
                let mut conn = pool.get().await.map_err(|e| e.to_string())?;
                let mut left = share;
                while left > 0 {
                    let n = left.min(PER_TRANSACTION);
                    conn.transaction(async |conn| {
                        for _ in 0..n {
                            enqueue_in(conn, &job, Utc::now()).await?;
                        }
                        Ok::<_, diesel::result::Error>(())
                    })
                    .await
                    .map_err(|e| format!("cannot enqueue: {e}"))?;
                    left -= n;
                }
                Ok::<_, String>(())
            });
        }
        while let Some(done) = tasks.join_next().await {
            done.map_err(|e| format!("enqueuing task failed: {e}"))??;
        }
        let rate = jobs as f64 / started.elapsed().as_secs_f64();
        // Fresh statistics, as autovacuum would have them on a live table.
        self.sql("ANALYZE jobs").await?;
        Ok(rate)
    }

    /// Starts the workers and waits until `jobs` jobs are completed or `limit` passed.
    async fn drain(&self, jobs: u64, limit: Duration) -> Result<Drain, String> {
        let ran = Arc::new(AtomicU64::new(0));
        let workers = Workers::start(self, ran.clone(), None, Duration::from_secs(1)).await?;
        let started = Instant::now();
        while ran.load(Ordering::Relaxed) < jobs && started.elapsed() < limit {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        // Idle workers stop at once; busy ones finish (and complete) their job first.
        let queue = workers.stop().await;
        let elapsed = started.elapsed();
        let completed = count(&queue, JobState::Completed).await?;
        Ok(Drain {
            enqueued: jobs,
            completed,
            elapsed,
        })
    }

    /// Idle workers, a producer enqueuing one job at a time at [`TRICKLE_PER_SECOND`] for
    /// `seconds`: returns the enqueue → start times and how many jobs did not start in time.
    async fn trickle(&self, seconds: u64) -> Result<(Histogram<u64>, u64), String> {
        self.sql("TRUNCATE jobs").await?;
        let ran = Arc::new(AtomicU64::new(0));
        let latency = Arc::new(Mutex::new(new_histogram()?));
        let workers = Workers::start(
            self,
            ran.clone(),
            Some(latency.clone()),
            Duration::from_secs(1),
        )
        .await?;
        // Let every worker find the queue empty and go idle.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let producer = PgJobQueue::new(self.producer.clone());
        let job = new_job()?;
        let total = TRICKLE_PER_SECOND * seconds;
        let mut ticks = tokio::time::interval(Duration::from_secs(1) / TRICKLE_PER_SECOND as u32);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        for _ in 0..total {
            ticks.tick().await;
            producer
                .enqueue(job.clone(), Utc::now())
                .await
                .map_err(|e| format!("cannot enqueue: {e}"))?;
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while ran.load(Ordering::Relaxed) < total && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        workers.stop().await;
        let missing = total.saturating_sub(ran.load(Ordering::Relaxed));
        let histogram = latency
            .lock()
            .map_err(|_| "latency histogram poisoned".to_owned())?
            .clone();
        Ok((histogram, missing))
    }
}

/// [`WORKERS`] workers running on tokio until stopped.
struct Workers {
    queue: Arc<PgJobQueue>,
    stop: tokio::sync::oneshot::Sender<()>,
    tasks: JoinSet<()>,
}

impl Workers {
    async fn start(
        bench: &Bench,
        ran: Arc<AtomicU64>,
        latency: Option<Arc<Mutex<Histogram<u64>>>>,
        poll_interval: Duration,
    ) -> Result<Self, String> {
        let queue = Arc::new(
            PgJobQueue::with_listener(bench.pool.clone(), &bench.url)
                .await
                .map_err(|e| format!("cannot start the job queue: {e}"))?,
        );
        let mut registry = JobRegistry::new();
        registry.register::<Noop>(NoopHandler { ran, latency });
        let runtime = JobRuntime {
            queue: queue.clone(),
            registry: Arc::new(registry),
            clock: Arc::new(SystemClock),
            timer: Arc::new(TokioTimer),
            observer: Arc::new(IgnoreJobEvents),
            settings: WorkerSettings {
                poll_interval,
                shutdown_grace: Duration::from_secs(1),
                ..WorkerSettings::default()
            },
        };
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let shutdown = Shutdown::on(async {
            let _ = stopped.await;
        });
        let mut tasks = JoinSet::new();
        for i in 0..WORKERS {
            let worker = Worker::new(runtime.clone(), format!("bench-{}-{i}", std::process::id()));
            tasks.spawn(worker.run(shutdown.clone()));
        }
        Ok(Self { queue, stop, tasks })
    }

    /// Requests shutdown and waits (at most a few seconds) for every worker to return; gives
    /// back their queue.
    async fn stop(mut self) -> Arc<PgJobQueue> {
        let _ = self.stop.send(());
        let joined = tokio::time::timeout(Duration::from_secs(5), async {
            while self.tasks.join_next().await.is_some() {}
        })
        .await;
        if joined.is_err() {
            self.tasks.abort_all();
        }
        self.queue
    }
}

/// Jobs of the bench kind in `state`.
async fn count(queue: &PgJobQueue, state: JobState) -> Result<u64, String> {
    let counts = queue
        .counts()
        .await
        .map_err(|e| format!("cannot count jobs: {e}"))?;
    Ok(counts
        .iter()
        .filter(|c| c.kind == Noop::KIND && c.state == state)
        .map(|c| c.count)
        .sum())
}

fn new_job() -> Result<NewJob, String> {
    Noop {}
        .to_new_job(Utc::now())
        .map_err(|e| format!("cannot build the job: {e}"))
}

fn new_histogram() -> Result<Histogram<u64>, String> {
    Histogram::new_with_bounds(1, LATENCY_MAX_US, 3).map_err(|e| e.to_string())
}

/// One drain of pre-enqueued jobs.
struct Drain {
    enqueued: u64,
    completed: u64,
    elapsed: Duration,
}

impl Drain {
    fn rate(&self) -> f64 {
        self.completed as f64 / self.elapsed.as_secs_f64().max(f64::MIN_POSITIVE)
    }
}

/// Everything the section reports.
struct Summary {
    seconds: u64,
    rounds: usize,
    tps: Vec<f64>,
    drains: Vec<Drain>,
    enqueue_rates: Vec<f64>,
    latency: Histogram<u64>,
    trickle_missing: u64,
}

fn list(values: impl IntoIterator<Item = f64>) -> String {
    values
        .into_iter()
        .map(|v| format!("{v:.0}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The markdown section of the bench.
fn section(s: &Summary) -> String {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let tps = median(&s.tps);
    let rates: Vec<f64> = s.drains.iter().map(Drain::rate).collect();
    let jobs = median(&rates);
    let ratio = jobs / tps.max(f64::MIN_POSITIVE);
    let verdict = if ratio >= GOAL { "met" } else { "not met" };
    let enqueued = list(s.drains.iter().map(|d| d.enqueued as f64));
    let incomplete: u64 = s
        .drains
        .iter()
        .map(|d| d.enqueued.saturating_sub(d.completed))
        .sum();
    let samples = s.latency.len();
    let (p50, p99, max) = if samples == 0 {
        ("–".to_owned(), "–".to_owned(), "–".to_owned())
    } else {
        (
            ms(s.latency.value_at_quantile(0.5)),
            ms(s.latency.value_at_quantile(0.99)),
            ms(s.latency.max()),
        )
    };
    format!(
        "## jobs\n\n`cargo xtask bench jobs` on {cores} cores, Postgres on 127.0.0.1 (scratch databases \
         created and dropped by the bench), {rounds} rounds, {secs} s per measure, medians of the rounds. \
         Baseline: `pgbench -N -c {WORKERS} -j 2 -T {secs}` (simple-update, scale 1). keel: {WORKERS} \
         domain `Worker`s on tokio over `PgJobQueue::with_listener` (pool of {POOL_SIZE}), draining no-op \
         jobs pre-enqueued with `enqueue_in` ({PER_TRANSACTION} per transaction; per round: {enqueued}), \
         timed from the workers' start until all are completed. Latency: another queue (a second \
         \"node\") enqueues one job at a time at {TRICKLE_PER_SECOND}/s for {secs} s while the workers \
         idle with a 1 s poll, so they are woken by `NOTIFY keel_jobs`; the handler records \
         `now − created_at` ({samples} samples over all rounds).\n\n\
         | what | per second | ratio | p50 | p99 |\n|---|---:|---:|---:|---:|\n\
         | `pgbench -N` simple-update, {WORKERS} clients (baseline) | {tps:.0} tx | 1.00× | – | – |\n\
         | no-op jobs, {WORKERS} workers (claim + complete) | {jobs:.0} jobs | {ratio:.2}× | – | – |\n\
         | enqueue → start, {TRICKLE_PER_SECOND} jobs/s trickle, idle workers | – | – | {p50} | {p99} |\n\n\
         Goal: jobs/s ≥ {GOAL}× pgbench tps: **{verdict}** ({ratio:.2}×). Per round: pgbench {tps_list} tx/s; \
         keel {jobs_list} jobs/s (ratio {ratio_list}); pre-enqueue {enqueue_list} jobs/s. Latency max {max}; jobs left \
         unfinished: {incomplete} (drain), {missing} (trickle).\n",
        rounds = s.rounds,
        secs = s.seconds,
        tps_list = list(s.tps.iter().copied()),
        jobs_list = list(rates.iter().copied()),
        enqueue_list = list(s.enqueue_rates.iter().copied()),
        ratio_list = s
            .tps
            .iter()
            .zip(&rates)
            .map(|(tps, jobs)| format!("{:.2}×", jobs / tps.max(f64::MIN_POSITIVE)))
            .collect::<Vec<_>>()
            .join(", "),
        missing = s.trickle_missing,
    )
}
