//! `cargo xtask bench registrations`: registrations/s on one hot competition, over HTTP against
//! the release `keel` binary on Postgres, beside `pgbench -N` in the same run.
//!
//! - Baseline: `pgbench -N -c <connections> -j 2` on a scratch database of its own.
//! - keel, two deployments, each `keel serve` on a scratch database of its own
//!   (`KEEL_MIGRATE=true`; `REDIS_URL` passed on when set, so the rate limiter runs on Redis):
//!   an all-in-one node (default job workers: the confirmation mails are sent meanwhile, on the
//!   same cores) and an API node (`KEEL_WORKERS=0`: the mails stay queued, as they would for a
//!   `keel worker` elsewhere). Each registration enqueues its confirmation mail and reminder in
//!   its own transaction either way. Users are inserted with SQL (no Argon2) and each gets an
//!   access token signed with the server's secret.
//! - Hot phase, once per round and deployment: a competition with capacity = requests; every
//!   user registers once, `connections` at a time (closed loop); registrations/s from the first
//!   request to the last answer, with p50/p99. The API node's phase starts once the all-in-one
//!   node's workers have sent their mails, so the two never share the cores.
//! - Over-subscribed phase, once (all-in-one): as many requests for half as many seats; exactly
//!   half must be 201 and the rest 409 `competition-full`.
//! - Drain, once: a `keel worker` on the API node's database sends the mails it left queued;
//!   mails/s, and every one delivered once.
//! - After each phase: `seats_taken == rows == 201 answers` and `seats_taken <= capacity`.
//!
//! Both scratch databases are dropped at the end, also when a step fails. Loopback only.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper::body::Bytes;
use keel_domain::identity::access_token::AccessTokenSigner;

use super::loadgen::{Connection, new_histogram};
use super::pg::{self, Scratch};
use super::process::Server;
use super::report::{self, median, ms};
use super::{BenchArgs, build, mail_drain};

/// The issue's goal, registrations per second.
const GOAL: f64 = 2_000.0;
/// Users created (the most requests of one phase).
const MAX_USERS: usize = 20_000;
/// Fewest requests of one phase.
const MIN_REQUESTS: usize = 1_000;
/// HS256 secret handed to the server (`KEEL_JWT_SECRET`) and used to sign the users' tokens.
const JWT_SECRET: &str = "keel-bench-registrations-jwt-secret-0123456789";
/// Issuer and audience of keel's access tokens (`keel_app_http::state::TOKEN_*`).
const TOKEN_ISSUER: &str = "keel";
const TOKEN_AUDIENCE: &str = "keel-api";
/// The problem type of a refused registration on a full competition.
const FULL_PROBLEM: &str = "competition-full";

/// Runs the bench, prints its section and writes it to docs/BENCHMARKS.md (unless `--no-write`).
pub fn run(args: &BenchArgs) -> Result<(), String> {
    let admin_url = pg::admin_url("registrations")?;
    let redis_url = std::env::var("REDIS_URL").ok();
    if let Some(url) = &redis_url {
        pg::loopback_only(url)?;
    }
    let seconds = args.seconds.max(1);
    let rounds = args.rounds.max(1);
    let connections = args.connections.max(1);
    let keel = build(&["--bin", "keel"], "keel")?;

    // Locals drop in reverse order: the servers before the databases.
    let baseline = Scratch::create(&admin_url, "keel_bench_pgbench")?;
    let db = Scratch::create(&admin_url, "keel_bench_registrations")?;
    let api_db = Scratch::create(&admin_url, "keel_bench_registrations_api")?;
    eprintln!("pgbench -i -s 1 on {}", baseline.name);
    pg::pgbench(&["-i", "-s", "1", "-q", &baseline.url])?;
    let mut env = vec![
        ("DATABASE_URL", db.url.as_str()),
        ("KEEL_MIGRATE", "true"),
        ("KEEL_JWT_SECRET", JWT_SECRET),
        ("KEEL_RATE_DEFAULT", "100000/second"),
    ];
    if let Some(url) = &redis_url {
        env.push(("REDIS_URL", url.as_str()));
    }
    let server = Server::start(&keel, &env)?;
    let mut api_env = env.clone();
    api_env[0] = ("DATABASE_URL", api_db.url.as_str());
    let worker_env = api_env.clone();
    api_env.push(("KEEL_WORKERS", "0"));
    let api = Server::start(&keel, &api_env)?;
    let started = Instant::now();
    let tokens = create_users(&db.url, MAX_USERS)?;
    let api_tokens = create_users(&api_db.url, MAX_USERS)?;
    eprintln!(
        "{} users and tokens per database in {:.2} s",
        tokens.len(),
        started.elapsed().as_secs_f64()
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start tokio: {e}"))?;
    let ticks = clock_ticks();

    let all_in_one = Target {
        server: &server,
        db: &db.url,
        tokens: &tokens,
        connections,
        ticks,
    };
    let api_node = Target {
        server: &api,
        db: &api_db.url,
        tokens: &api_tokens,
        connections,
        ticks,
    };

    // Warms the servers' pools and gives the rates that size the first round.
    let warm_up = all_in_one.phase(&runtime, MIN_REQUESTS, MIN_REQUESTS)?;
    eprintln!("warm-up: {}", warm_up.summary());
    mail_drain::wait_until_sent(&db.url)?;
    let api_warm_up = api_node.phase(&runtime, MIN_REQUESTS, MIN_REQUESTS)?;
    eprintln!("API node warm-up: {}", api_warm_up.summary());
    let mut tps = Vec::new();
    let mut hot: Vec<Phase> = Vec::new();
    let mut api_hot: Vec<Phase> = Vec::new();
    for round in 1..=rounds {
        eprintln!("round {round}/{rounds}");
        let round_tps = pg::pgbench_simple_update(&baseline.url, connections, seconds)?;
        eprintln!("  pgbench -N: {round_tps:.0} tps");
        tps.push(round_tps);
        let phase = all_in_one.hot_round(&runtime, hot.last().unwrap_or(&warm_up), seconds)?;
        eprintln!("  hot: {}", phase.summary());
        hot.push(phase);
        // The API node's round starts once the mails sent meanwhile are out of the way.
        mail_drain::wait_until_sent(&db.url)?;
        let previous = api_hot.last().unwrap_or(&api_warm_up);
        let phase = api_node.hot_round(&runtime, previous, seconds)?;
        eprintln!("  API node: {}", phase.summary());
        api_hot.push(phase);
    }
    let requests = hot.last().map_or(MIN_REQUESTS, |p| p.requests) & !1;
    let over = all_in_one.phase(&runtime, requests, requests / 2)?;
    eprintln!("over-subscribed: {}", over.summary());
    drop(runtime);
    drop(server);
    drop(api);
    let drain = mail_drain::Drain::run(&keel, &worker_env, &api_db.url, ticks)?;
    eprintln!("drain: {}", drain.summary());

    let held = [&warm_up, &api_warm_up, &over]
        .into_iter()
        .chain(&hot)
        .chain(&api_hot)
        .all(Phase::holds)
        && drain.holds();
    let body = section(&Summary {
        seconds,
        rounds,
        connections,
        redis: redis_url.is_some(),
        tps,
        warm_up,
        hot,
        over,
        api_hot,
        drain,
    });
    println!("{body}");
    if !args.no_write {
        report::write_section("registrations", &body)?;
    }
    if held {
        Ok(())
    } else {
        Err("the seat or mail check failed: see the section above".to_owned())
    }
}

/// Inserts `n` participants with SQL and signs an access token for each.
fn create_users(url: &str, n: usize) -> Result<Vec<String>, String> {
    let users = insert_users(url, n, "bench", JWT_SECRET)?;
    Ok(users.into_iter().map(|(_, token)| token).collect())
}

/// Inserts `n` participants with SQL (no Argon2; emails `<label>-<i>@bench.test`) and signs an
/// access token for each with the server's `secret`: `(user id, "Bearer …")`.
pub(crate) fn insert_users(
    url: &str,
    n: usize,
    label: &str,
    secret: &str,
) -> Result<Vec<(String, String)>, String> {
    let ids = pg::psql(
        url,
        &format!(
            "INSERT INTO users (id, email, display_name, role, password_hash, created_at) \
             SELECT gen_random_uuid(), '{label}-' || i || '@bench.test', 'Bench', 'participant', \
             'not-a-password-hash', now() FROM generate_series(1, {n}) AS i RETURNING id"
        ),
    )?;
    let signer = AccessTokenSigner::new(
        secret.as_bytes(),
        TOKEN_ISSUER,
        TOKEN_AUDIENCE,
        chrono::Duration::hours(1),
    )
    .map_err(|e| format!("cannot build the token signer: {e}"))?;
    let now = chrono::Utc::now();
    let users = ids
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(|id| {
            signer
                .issue(id, "participant", now)
                .map(|(token, _)| (id.to_owned(), format!("Bearer {token}")))
                .map_err(|e| format!("cannot sign a token: {e}"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    if users.len() == n {
        Ok(users)
    } else {
        Err(format!("created {} users, expected {n}", users.len()))
    }
}

/// Creates a competition with `capacity` seats, open for an hour; returns its id.
fn create_competition(url: &str, capacity: usize) -> Result<String, String> {
    let id = pg::psql(
        url,
        &format!(
            "INSERT INTO competitions (id, title, capacity, seats_taken, registration_deadline, \
             starts_at, created_by, created_at) VALUES (gen_random_uuid(), 'bench {capacity}', \
             {capacity}, 0, now() + interval '1 hour', now() + interval '2 days', \
             gen_random_uuid(), now()) RETURNING id"
        ),
    )?;
    Ok(id.trim().to_owned())
}

/// Committed transactions of the database so far (`pg_stat_database`; other backends report
/// theirs about once a second while busy) and the next transaction id (exact; only writing
/// transactions take one).
fn transactions(url: &str) -> Result<(u64, u64), String> {
    pg::psql_pair(
        url,
        "SELECT xact_commit, pg_current_xact_id()::text::bigint FROM pg_stat_database \
         WHERE datname = current_database()",
    )
}

/// One deployment under test: its server, its database and its users' tokens.
struct Target<'a> {
    server: &'a Server,
    db: &'a str,
    tokens: &'a [String],
    connections: usize,
    ticks: f64,
}

impl Target<'_> {
    /// The first `requests` users register for a new competition with `capacity` seats.
    fn phase(
        &self,
        runtime: &tokio::runtime::Runtime,
        requests: usize,
        capacity: usize,
    ) -> Result<Phase, String> {
        let tokens = &self.tokens[..requests.min(self.tokens.len())];
        run_phase(
            runtime,
            self.server,
            self.db,
            tokens,
            capacity,
            self.connections,
            self.ticks,
        )
    }

    /// A hot round: capacity = requests, about twice `seconds` at the `previous` phase's rate.
    fn hot_round(
        &self,
        runtime: &tokio::runtime::Runtime,
        previous: &Phase,
        seconds: u64,
    ) -> Result<Phase, String> {
        let requests =
            ((previous.rate() * 2.0 * seconds as f64) as usize).clamp(MIN_REQUESTS, MAX_USERS);
        self.phase(runtime, requests, requests)
    }
}

/// One phase: `tokens.len()` users register for a new competition with `capacity` seats.
fn run_phase(
    runtime: &tokio::runtime::Runtime,
    server: &Server,
    db: &str,
    tokens: &[String],
    capacity: usize,
    connections: usize,
    ticks: f64,
) -> Result<Phase, String> {
    let competition = create_competition(db, capacity)?;
    let (commits_before, xid_before) = transactions(db)?;
    let cpu_before = Cpu::sample(server.pid(), ticks);
    let started = Instant::now();
    let uri: hyper::Uri = server
        .url(&format!("/api/v1/competitions/{competition}/registrations"))
        .parse()
        .map_err(|e| format!("bad url: {e}"))?;
    let answers = runtime.block_on(drive(uri, tokens.into(), connections))?;
    let elapsed = started.elapsed();
    let cpu = Cpu::sample(server.pid(), ticks).since(&cpu_before, elapsed);
    let xids = transactions(db)?.1.saturating_sub(xid_before + 1);
    // Let the pooled backends report their last second of commits.
    std::thread::sleep(Duration::from_millis(1_100));
    let commits = transactions(db)?.0.saturating_sub(commits_before);
    let check = Check::query(db, &competition)?;
    Ok(Phase {
        requests: tokens.len(),
        capacity,
        answers,
        elapsed,
        check,
        commits,
        xids,
        cpu,
    })
}

/// What the closed-loop driver saw.
struct Answers {
    /// 201 answers.
    created: u64,
    /// 409 `competition-full` answers.
    full: u64,
    /// Any other status (and 0 for transport errors), with counts.
    other: BTreeMap<u16, u64>,
    /// Latency of every answer, in microseconds.
    latency: Histogram<u64>,
}

/// Sends one registration per token, `connections` at a time, each connection taking the next
/// token as soon as its previous answer arrived.
async fn drive(
    uri: hyper::Uri,
    tokens: Arc<[String]>,
    connections: usize,
) -> Result<Answers, String> {
    let next = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> = (0..connections)
        .map(|_| tokio::spawn(register_loop(uri.clone(), tokens.clone(), next.clone())))
        .collect();
    let mut all = Answers {
        created: 0,
        full: 0,
        other: BTreeMap::new(),
        latency: new_histogram()?,
    };
    for task in tasks {
        let answers = task.await.map_err(|e| e.to_string())??;
        all.created += answers.created;
        all.full += answers.full;
        for (status, n) in answers.other {
            *all.other.entry(status).or_default() += n;
        }
        all.latency
            .add(&answers.latency)
            .map_err(|e| e.to_string())?;
    }
    Ok(all)
}

async fn register_loop(
    uri: hyper::Uri,
    tokens: Arc<[String]>,
    next: Arc<AtomicUsize>,
) -> Result<Answers, String> {
    let mut conn = Connection::open(&uri).await?;
    let mut answers = Answers {
        created: 0,
        full: 0,
        other: BTreeMap::new(),
        latency: new_histogram()?,
    };
    while let Some(token) = tokens.get(next.fetch_add(1, Ordering::Relaxed)) {
        let request = Request::post(conn.path.as_str())
            .header("host", conn.authority.as_str())
            .header("authorization", token.as_str())
            .body(Full::new(Bytes::new()))
            .map_err(|e| e.to_string())?;
        let sent = Instant::now();
        let answer = match conn.sender.send_request(request).await {
            Ok(response) => {
                let status = response.status().as_u16();
                let body = response.into_body().collect().await.map(|b| b.to_bytes());
                match body {
                    Ok(body) => Some((status, body)),
                    Err(_) => None,
                }
            }
            Err(_) => None,
        };
        let micros = u64::try_from(sent.elapsed().as_micros()).unwrap_or(u64::MAX);
        answers.latency.saturating_record(micros.max(1));
        match answer {
            Some((201, _)) => answers.created += 1,
            Some((409, body)) if contains(&body, FULL_PROBLEM) => answers.full += 1,
            Some((status, _)) => *answers.other.entry(status).or_default() += 1,
            None => {
                *answers.other.entry(0).or_default() += 1;
                if conn.sender.ready().await.is_err() {
                    conn.driver.abort();
                    conn = Connection::open(&uri).await?;
                }
            }
        }
    }
    conn.driver.abort();
    Ok(answers)
}

fn contains(body: &[u8], needle: &str) -> bool {
    body.windows(needle.len()).any(|w| w == needle.as_bytes())
}

/// The competition's counts after a phase.
struct Check {
    capacity: u64,
    seats_taken: u64,
    rows: u64,
    /// Confirmation mails and reminders enqueued for its registrations.
    jobs: u64,
}

impl Check {
    fn query(db: &str, competition: &str) -> Result<Self, String> {
        let text = pg::psql(
            db,
            &format!(
                "SELECT c.capacity, c.seats_taken, \
                 (SELECT count(*) FROM registrations r WHERE r.competition_id = c.id), \
                 (SELECT count(*) FROM jobs j WHERE j.kind IN ('mail.send', 'competitions.reminder') \
                  AND j.created_at >= c.created_at) \
                 FROM competitions c WHERE c.id = '{competition}'"
            ),
        )?;
        let values: Vec<u64> = text
            .trim()
            .split('|')
            .map(|v| v.parse().map_err(|e| format!("cannot read {text:?}: {e}")))
            .collect::<Result<_, _>>()?;
        match values[..] {
            [capacity, seats_taken, rows, jobs] => Ok(Self {
                capacity,
                seats_taken,
                rows,
                jobs,
            }),
            _ => Err(format!("unexpected check output {text:?}")),
        }
    }
}

/// CPU time of the server process and of the whole machine, in seconds.
#[derive(Clone, Copy)]
pub(super) struct Cpu {
    server: f64,
    machine_busy: f64,
}

/// CPU use over a phase, in cores (1.0 = one core busy all the time).
#[derive(Clone, Copy)]
pub(super) struct CpuUse {
    /// The server process.
    pub(super) server: f64,
    /// The whole machine.
    pub(super) machine: f64,
}

impl Cpu {
    /// Reads `/proc` (zeros where unreadable).
    pub(super) fn sample(pid: u32, ticks: f64) -> Self {
        let server = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|s| {
                // Fields after the `(comm)`: state is the 1st, utime the 12th, stime the 13th.
                let rest = s.rsplit_once(')')?.1;
                let fields: Vec<&str> = rest.split_whitespace().collect();
                let utime: f64 = fields.get(11)?.parse().ok()?;
                let stime: f64 = fields.get(12)?.parse().ok()?;
                Some((utime + stime) / ticks)
            })
            .unwrap_or(0.0);
        let machine_busy = std::fs::read_to_string("/proc/stat")
            .ok()
            .and_then(|s| {
                let line = s.lines().next()?;
                let v: Vec<f64> = line
                    .split_whitespace()
                    .skip(1)
                    .filter_map(|f| f.parse().ok())
                    .collect();
                let total: f64 = v.iter().take(8).sum();
                let idle = v.get(3)? + v.get(4)?;
                Some((total - idle) / ticks)
            })
            .unwrap_or(0.0);
        Self {
            server,
            machine_busy,
        }
    }

    /// Use between `before` and this sample, `elapsed` apart.
    pub(super) fn since(&self, before: &Cpu, elapsed: Duration) -> CpuUse {
        let secs = elapsed.as_secs_f64().max(f64::MIN_POSITIVE);
        CpuUse {
            server: (self.server - before.server) / secs,
            machine: (self.machine_busy - before.machine_busy) / secs,
        }
    }
}

/// Clock ticks per second of `/proc` times (`getconf CLK_TCK`, else 100).
pub(super) fn clock_ticks() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}

/// One phase's figures.
struct Phase {
    requests: usize,
    capacity: usize,
    answers: Answers,
    elapsed: Duration,
    check: Check,
    /// Committed transactions in the keel database during the phase (approximate).
    commits: u64,
    /// Transaction ids taken meanwhile: writing transactions (exact).
    xids: u64,
    cpu: CpuUse,
}

impl Phase {
    /// Registrations (201) per second.
    fn rate(&self) -> f64 {
        self.answers.created as f64 / self.elapsed.as_secs_f64().max(f64::MIN_POSITIVE)
    }

    /// Answers of any kind per second.
    fn answer_rate(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64().max(f64::MIN_POSITIVE)
    }

    /// Exactly `min(requests, capacity)` seats taken, one row and one 201 per seat, every other
    /// request refused as full, and two jobs per registration.
    fn holds(&self) -> bool {
        let c = &self.check;
        let seats = self.requests.min(self.capacity) as u64;
        c.seats_taken <= c.capacity
            && c.seats_taken == seats
            && c.rows == c.seats_taken
            && self.answers.created == c.rows
            && self.answers.full == self.requests as u64 - seats
            && self.answers.other.is_empty()
            && c.jobs == 2 * c.rows
    }

    fn verdict(&self) -> String {
        let c = &self.check;
        let other = if self.answers.other.is_empty() {
            String::new()
        } else {
            let list: Vec<String> = self
                .answers
                .other
                .iter()
                .map(|(status, n)| format!("{n}× {status}"))
                .collect();
            format!(", other answers {}", list.join(", "))
        };
        format!(
            "{} — capacity {}, seats_taken {}, rows {}, 201 × {}, 409 {FULL_PROBLEM} × {}, jobs {}{other}",
            if self.holds() { "ok" } else { "FAILED" },
            c.capacity,
            c.seats_taken,
            c.rows,
            self.answers.created,
            self.answers.full,
            c.jobs,
        )
    }

    /// A hot round's figures for the report, against the same round's pgbench `tps`.
    fn round_line(&self, tps: f64) -> String {
        format!(
            "{:.0} registrations/s ({:.2}×, {} in {:.2} s), {:.2} commits ({:.2} writing) per \
             registration, keel CPU {:.2} cores, machine {:.2} cores busy; check {}",
            self.rate(),
            self.rate() / tps.max(f64::MIN_POSITIVE),
            self.requests,
            self.elapsed.as_secs_f64(),
            self.commits as f64 / self.requests.max(1) as f64,
            self.xids as f64 / self.requests.max(1) as f64,
            self.cpu.server,
            self.cpu.machine,
            self.verdict(),
        )
    }

    fn summary(&self) -> String {
        format!(
            "{:.0} registrations/s ({} requests in {:.2} s), p50 {} p99 {}; {:.2} commits and \
             {:.2} writing transactions per request; server CPU {:.2} cores, machine {:.2}; {}",
            self.rate(),
            self.requests,
            self.elapsed.as_secs_f64(),
            ms(self.answers.latency.value_at_quantile(0.5)),
            ms(self.answers.latency.value_at_quantile(0.99)),
            self.commits as f64 / self.requests.max(1) as f64,
            self.xids as f64 / self.requests.max(1) as f64,
            self.cpu.server,
            self.cpu.machine,
            self.verdict(),
        )
    }
}

/// Everything the section reports.
struct Summary {
    seconds: u64,
    rounds: usize,
    connections: usize,
    redis: bool,
    tps: Vec<f64>,
    warm_up: Phase,
    hot: Vec<Phase>,
    over: Phase,
    /// The API node's rounds (`KEEL_WORKERS=0`).
    api_hot: Vec<Phase>,
    /// Its mails, sent afterwards by a `keel worker`.
    drain: mail_drain::Drain,
}

/// The median rate of `rounds`, with the p50 and p99 of the round closest to it.
fn typical(rounds: &[Phase]) -> (f64, String, String) {
    let rates: Vec<f64> = rounds.iter().map(Phase::rate).collect();
    let rate = median(&rates);
    let closest = rounds
        .iter()
        .min_by(|a, b| (a.rate() - rate).abs().total_cmp(&(b.rate() - rate).abs()));
    let (p50, p99) = closest.map_or(("–".to_owned(), "–".to_owned()), |p| {
        (
            ms(p.answers.latency.value_at_quantile(0.5)),
            ms(p.answers.latency.value_at_quantile(0.99)),
        )
    });
    (rate, p50, p99)
}

/// The markdown section of the bench.
fn section(s: &Summary) -> String {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let tps = median(&s.tps);
    let (rate, p50, p99) = typical(&s.hot);
    let (api_rate, api_p50, api_p99) = typical(&s.api_hot);
    let over = &s.over;
    let ratio = |r: f64| r / tps.max(f64::MIN_POSITIVE);
    let verdict = |r: f64| if r >= GOAL { "met" } else { "not met" };
    let held = s.hot.iter().chain(&s.api_hot).all(Phase::holds);
    let oversell = if held && over.holds() && s.warm_up.holds() {
        "none"
    } else {
        "**CHECK FAILED**"
    };
    let limiter = if s.redis {
        "Redis (`REDIS_URL` set, as in production)"
    } else {
        "in-process (`REDIS_URL` not set)"
    };
    let mut out = format!(
        "## registrations\n\n`cargo xtask bench registrations` on {cores} cores, Postgres on 127.0.0.1 \
         (scratch databases created and dropped by the bench), {rounds} rounds, medians of the rounds. \
         Baseline: `pgbench -N -c {conns} -j 2 -T {secs}` (simple-update, scale 1). keel: the release \
         `keel` binary, as two deployments on scratch databases of their own: an all-in-one node \
         (`keel serve`, default HTTP and job workers, so the confirmation mails are sent meanwhile on \
         the same cores) and an API node (`keel serve` with `KEEL_WORKERS=0`, whose mails a `keel \
         worker` sends afterwards, as one running on other cores would); either way the confirmation \
         mail and the reminder are enqueued in each registration's transaction. Rate limiter on \
         {limiter} with the default class raised; {conns} keep-alive connections, closed loop, \
         each request a distinct user (inserted with SQL, pre-signed access token) on one competition \
         with capacity = requests (sized to about {hot_secs} s at the previous rate; a first phase of \
         {MIN_REQUESTS} warms up and sizes round 1), timed from the first request to the last answer; \
         the API node's round starts once the all-in-one node's workers have sent its mails. Then \
         one over-subscribed phase (all-in-one): as many requests for half as many seats.\n\n\
         | what | per second | ratio | p50 | p99 |\n|---|---:|---:|---:|---:|\n\
         | `pgbench -N` simple-update, {conns} clients (baseline) | {tps:.0} tx | 1.00× | – | – |\n\
         | `POST /competitions/{{id}}/registrations`, one hot competition, all-in-one node | {rate:.0} registrations | {r:.2}× | {p50} | {p99} |\n\
         | the same, API node (`KEEL_WORKERS=0`) | {api_rate:.0} registrations | {ra:.2}× | {api_p50} | {api_p99} |\n\
         | its confirmation mails, sent afterwards by `keel worker` | {drate:.0} mails | {rd:.2}× | – | – |\n\
         | over-subscribed: {req} requests for {cap} seats, all-in-one | {orate:.0} answers | {ro:.2}× | {op50} | {op99} |\n\n\
         Goal: ≥ {GOAL:.0} registrations/s: **{api_verdict}** by an API node whose mails a `keel worker` \
         sends ({api_rate:.0}/s); **{verdict}** by one all-in-one node sending them on the same 2 cores \
         ({rate:.0}/s). Oversell: {oversell}.\n\n",
        rounds = s.rounds,
        conns = s.connections,
        secs = s.seconds,
        hot_secs = 2 * s.seconds,
        r = ratio(rate),
        ra = ratio(api_rate),
        drate = s.drain.rate(),
        rd = ratio(s.drain.rate()),
        verdict = verdict(rate),
        api_verdict = verdict(api_rate),
        req = over.requests,
        cap = over.capacity,
        orate = over.answer_rate(),
        ro = ratio(over.answer_rate()),
        op50 = ms(over.answers.latency.value_at_quantile(0.5)),
        op99 = ms(over.answers.latency.value_at_quantile(0.99)),
    );
    for (i, (phase, tps)) in s.hot.iter().zip(&s.tps).enumerate() {
        let line = phase.round_line(*tps);
        let _ = writeln!(
            out,
            "- Round {}, all-in-one: pgbench {tps:.0} tx/s; {line}.",
            i + 1
        );
    }
    for (i, (phase, tps)) in s.api_hot.iter().zip(&s.tps).enumerate() {
        let _ = writeln!(
            out,
            "- Round {}, API node: {}.",
            i + 1,
            phase.round_line(*tps)
        );
    }
    let _ = writeln!(out, "- Drain by `keel worker`: {}.", s.drain.summary());
    let _ = writeln!(
        out,
        "- Warm-up: {:.0} registrations/s; check {}.",
        s.warm_up.rate(),
        s.warm_up.verdict(),
    );
    let _ = writeln!(
        out,
        "- Over-subscribed: {:.0} registrations/s, {:.0} answers/s, {:.2} commits ({:.2} writing) per request, keel CPU \
         {:.2} cores, machine {:.2}; check {}.",
        over.rate(),
        over.answer_rate(),
        over.commits as f64 / over.requests.max(1) as f64,
        over.xids as f64 / over.requests.max(1) as f64,
        over.cpu.server,
        over.cpu.machine,
        over.verdict(),
    );
    out
}
