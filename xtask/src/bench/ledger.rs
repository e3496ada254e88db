//! `cargo xtask bench ledger`: durable wallet transfers/s beside `pgbench -b tpcb-like` in the
//! same run.
//!
//! - Baseline: `pgbench -b tpcb-like -c <connections> -j 2 -T <seconds>` on a scratch database
//!   of its own, initialised with `pgbench -i -s <connections>` (scale ≥ clients, as pgbench's
//!   documentation advises, so its branch rows are not one hot spot).
//! - keel: a scratch database with the migrations applied, [`USERS`] wallets funded by
//!   hand-built adjustment transactions booked with `PgLedgerStore::book_batch`. A transfer is a
//!   validated ledger transaction moving a small amount between the available accounts of two
//!   distinct random wallets (kind `adjustment`, no operation: the ledger has no transfer kind;
//!   the booking work is the same). `connections` clients on a pool of as many connections,
//!   closed loop, for `seconds`:
//!   - single: one transfer per database transaction (`PgLedgerStore::book`), with latencies;
//!   - batched: [`BATCH`] transfers per database transaction (`PgLedgerStore::book_batch`).
//! - After the rounds: `verify()` must find the ledger consistent (stored balances = balances
//!   rebuilt from the postings), or the bench fails.
//!
//! Commits are durable: the server's `synchronous_commit` and `fsync` are reported with the
//! figures. Both scratch databases are dropped at the end, also when a step fails. Loopback only.

use std::fmt::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use diesel_async::SimpleAsyncConnection;
use hdrhistogram::Histogram;
use keel_adapters_postgres::migrate::run_pending_migrations;
use keel_adapters_postgres::{PgLedgerStore, PgPool};
use keel_domain::identity::user::UserId;
use keel_domain::wallet::{
    AccountRef, Booked, Currency, LedgerReport, LedgerStore, Posting, SystemAccount, Transaction,
    TransactionId, TransactionKind,
};
use tokio::task::JoinSet;
use uuid::Uuid;

use super::BenchArgs;
use super::loadgen::new_histogram;
use super::pg::{self, Scratch};
use super::report::{self, median, ms};

/// Wallets transfers pick from (two distinct at random).
const USERS: usize = 10_000;
/// What each wallet is funded with, in minor units.
const FUNDING: i64 = 1_000_000;
/// Funding transactions per `book_batch`.
const FUNDING_BATCH: usize = 1_000;
/// Transfers are 1..=MAX_AMOUNT minor units: small beside the funding, so overdrafts are rare.
const MAX_AMOUNT: u64 = 1_000;
/// Transfers per database transaction on the batched path.
const BATCH: usize = 100;
/// The goals: single transfers/s ≥ this × tpcb-like tps, and batched.
const SINGLE_GOAL: f64 = 0.7;
const BATCH_GOAL: f64 = 2.0;

/// Runs the bench, prints its section and writes it to docs/BENCHMARKS.md (unless `--no-write`).
/// Fails when the ledger is inconsistent afterwards.
pub fn run(args: &BenchArgs) -> Result<(), String> {
    let admin_url = pg::admin_url("ledger")?;
    let seconds = args.seconds.max(1);
    let rounds = args.rounds.max(1);
    let clients = args.connections.max(1);
    let scale = clients;
    let settings = pg::psql(
        &admin_url,
        "SELECT current_setting('synchronous_commit') || ' ' || current_setting('fsync') \
         || ' ' || split_part(current_setting('server_version'), ' ', 1)",
    )?;
    let mut settings = settings.split_whitespace().map(str::to_owned);
    let (synchronous_commit, fsync, version) = (
        settings.next().unwrap_or_default(),
        settings.next().unwrap_or_default(),
        settings.next().unwrap_or_default(),
    );

    // Locals drop in reverse order: the runtime (and every connection) before the databases.
    let baseline = Scratch::create(&admin_url, "keel_bench_pgbench")?;
    let db = Scratch::create(&admin_url, "keel_bench_ledger")?;
    eprintln!("pgbench -i -s {scale} on {}", baseline.name);
    pg::pgbench(&["-i", "-s", &scale.to_string(), "-q", &baseline.url])?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start tokio: {e}"))?;
    let started = Instant::now();
    let bench = runtime.block_on(Bench::open(&db.url, clients))?;
    eprintln!(
        "{USERS} wallets funded in {:.2} s",
        started.elapsed().as_secs_f64()
    );

    let load_before = load_average();
    let mut tps = Vec::new();
    let mut singles = Vec::new();
    let mut batches = Vec::new();
    for round in 1..=rounds {
        eprintln!("round {round}/{rounds}");
        let round_tps = pg::pgbench_tpcb_like(&baseline.url, clients, seconds)?;
        eprintln!("  pgbench tpcb-like: {round_tps:.0} tps");
        tps.push(round_tps);
        let single = runtime.block_on(bench.measure(1, seconds))?;
        eprintln!("  single: {}", single.line());
        singles.push(single);
        let batched = runtime.block_on(bench.measure(BATCH, seconds))?;
        eprintln!("  batched: {}", batched.line());
        batches.push(batched);
    }
    let load_after = load_average();
    let verified = runtime.block_on(bench.store.verify());
    runtime.block_on(async move { drop(bench) });
    drop(runtime);
    let verified = verified.map_err(|e| format!("cannot verify the ledger: {e}"))?;
    let refused: u64 = singles.iter().chain(&batches).map(|m| m.refused).sum();
    println!(
        "verify: {} accounts, {} transactions, consistent: {}; refused (insufficient funds) \
         transfers: {refused}",
        verified.accounts,
        verified.transactions,
        verified.is_consistent()
    );
    if !verified.is_consistent() {
        return Err(format!(
            "the ledger is inconsistent after the run: {} drifted, {} unbalanced, {} overdrawn",
            verified.drifted.len(),
            verified.unbalanced.len(),
            verified.overdrawn.len()
        ));
    }

    let body = section(&Summary {
        seconds,
        rounds,
        clients,
        scale,
        tps,
        singles,
        batches,
        verified,
        load: [load_before, load_after],
        server: format!(
            "Postgres {version}, `synchronous_commit = {synchronous_commit}`, `fsync = {fsync}`"
        ),
    });
    println!("{body}");
    if !args.no_write {
        report::write_section("ledger", &body)?;
    }
    Ok(())
}

/// The keel side: the store on the scratch database, its wallets and its clients.
struct Bench {
    pool: PgPool,
    store: PgLedgerStore,
    currency: Currency,
    users: Vec<UserId>,
    clients: usize,
}

impl Bench {
    /// Migrates, opens a pool of `clients` connections and funds [`USERS`] wallets.
    async fn open(url: &str, clients: usize) -> Result<Arc<Self>, String> {
        run_pending_migrations(url)
            .await
            .map_err(|e| format!("cannot migrate the scratch database: {e}"))?;
        let pool = PgPool::connect(url, clients)
            .await
            .map_err(|e| format!("cannot open the pool: {e}"))?;
        let currency = Currency::parse("ZAR").map_err(|e| e.to_string())?;
        let users: Vec<UserId> = (0..USERS).map(|_| UserId(Uuid::now_v7())).collect();
        let bench = Self {
            store: PgLedgerStore::new(pool.clone()),
            pool,
            currency,
            users,
            clients,
        };
        let system = AccountRef::system(SystemAccount::Adjustments, currency);
        for chunk in bench.users.chunks(FUNDING_BATCH) {
            let funding: Vec<Transaction> = chunk
                .iter()
                .map(|user| {
                    bench.transaction(system, AccountRef::available(*user, currency), FUNDING)
                })
                .collect();
            match bench.store.book_batch(&funding).await {
                Ok(Booked::Done { .. }) => {}
                Ok(Booked::InsufficientFunds) => return Err("funding was refused".into()),
                Err(e) => return Err(format!("cannot fund the wallets: {e}")),
            }
            // Fresh statistics as the tables grow from empty (autovacuum lags behind): the
            // schema's checks must find postings and accounts by index.
            bench.analyze().await?;
        }
        Ok(Arc::new(bench))
    }

    /// `ANALYZE` of the ledger tables, as autovacuum would keep them on a live database.
    async fn analyze(&self) -> Result<(), String> {
        let sql = "ANALYZE ledger_accounts, ledger_transactions, ledger_postings";
        let mut conn = self.pool.get().await.map_err(|e| e.to_string())?;
        conn.batch_execute(sql)
            .await
            .map_err(|e| format!("{sql}: {e}"))
    }

    /// A validated transaction moving `minor` from `from` to `to`.
    fn transaction(&self, from: AccountRef, to: AccountRef, minor: i64) -> Transaction {
        Transaction {
            id: TransactionId(Uuid::now_v7()),
            kind: TransactionKind::Adjustment,
            operation: None,
            reverses: None,
            resolves: None,
            postings: vec![
                Posting {
                    account: from,
                    amount: -minor,
                },
                Posting {
                    account: to,
                    amount: minor,
                },
            ],
            created_at: Utc::now(),
        }
    }

    /// A transfer between two distinct random wallets.
    fn transfer(&self, rng: &mut Rng) -> Transaction {
        let n = self.users.len();
        let from = rng.below(n);
        let to = (from + 1 + rng.below(n - 1)) % n;
        let minor = 1 + rng.below(MAX_AMOUNT as usize) as i64;
        let tx = self.transaction(
            AccountRef::available(self.users[from], self.currency),
            AccountRef::available(self.users[to], self.currency),
            minor,
        );
        debug_assert!(tx.validate().is_ok());
        tx
    }

    /// `clients` concurrent clients, closed loop, each booking `per_commit` transfers per
    /// database transaction until `seconds` passed.
    async fn measure(self: &Arc<Self>, per_commit: usize, seconds: u64) -> Result<Measure, String> {
        self.analyze().await?;
        let clients = self.clients;
        let deadline = Instant::now() + Duration::from_secs(seconds);
        let started = Instant::now();
        let mut tasks = JoinSet::new();
        for client in 0..clients {
            let bench = self.clone();
            tasks.spawn(async move {
                let mut rng = Rng::new(client as u64);
                let mut m = Measure::new(per_commit)?;
                while Instant::now() < deadline {
                    let txs: Vec<Transaction> =
                        (0..per_commit).map(|_| bench.transfer(&mut rng)).collect();
                    let t0 = Instant::now();
                    let answer = match txs.as_slice() {
                        [one] => bench.store.book(one).await,
                        many => bench.store.book_batch(many).await,
                    };
                    let took = u64::try_from(t0.elapsed().as_micros()).unwrap_or(u64::MAX);
                    m.latency.saturating_record(took.max(1));
                    match answer {
                        Ok(Booked::Done { .. }) => m.booked += per_commit as u64,
                        Ok(Booked::InsufficientFunds) => m.refused += per_commit as u64,
                        Err(e) => {
                            m.errors += 1;
                            if m.first_error.is_none() {
                                m.first_error = Some(e.to_string());
                            }
                        }
                    }
                }
                Ok::<_, String>(m)
            });
        }
        let mut total = Measure::new(per_commit)?;
        while let Some(done) = tasks.join_next().await {
            let m = done.map_err(|e| format!("client task failed: {e}"))??;
            total.merge(m)?;
        }
        total.elapsed = started.elapsed();
        Ok(total)
    }
}

/// What one measure counted.
struct Measure {
    /// Transfers per database transaction.
    per_commit: usize,
    /// Transfers committed.
    booked: u64,
    /// Transfers refused (insufficient funds: a refused batch refuses all of its transfers).
    refused: u64,
    /// Commits that failed otherwise.
    errors: u64,
    first_error: Option<String>,
    /// Per commit (one transfer, or one batch).
    latency: Histogram<u64>,
    elapsed: Duration,
}

impl Measure {
    fn new(per_commit: usize) -> Result<Self, String> {
        Ok(Self {
            per_commit,
            booked: 0,
            refused: 0,
            errors: 0,
            first_error: None,
            latency: new_histogram()?,
            elapsed: Duration::ZERO,
        })
    }

    fn merge(&mut self, other: Measure) -> Result<(), String> {
        self.booked += other.booked;
        self.refused += other.refused;
        self.errors += other.errors;
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
        self.latency
            .add(&other.latency)
            .map_err(|e| format!("cannot merge latencies: {e}"))
    }

    /// Committed transfers per second.
    fn rate(&self) -> f64 {
        self.booked as f64 / self.elapsed.as_secs_f64().max(f64::MIN_POSITIVE)
    }

    fn p(&self, quantile: f64) -> String {
        if self.latency.is_empty() {
            "–".to_owned()
        } else {
            ms(self.latency.value_at_quantile(quantile))
        }
    }

    fn line(&self) -> String {
        let mut line = format!(
            "{:.0} transfers/s ({} in {:.2} s, {} per commit), commit p50 {} p99 {}, refused {}, errors {}",
            self.rate(),
            self.booked,
            self.elapsed.as_secs_f64(),
            self.per_commit,
            self.p(0.5),
            self.p(0.99),
            self.refused,
            self.errors,
        );
        if let Some(e) = &self.first_error {
            let _ = write!(line, " (first: {e})");
        }
        line
    }
}

/// A small xorshift generator (the bench needs spread, not quality).
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        Self((nanos ^ seed.wrapping_mul(0x9E37_79B9_7F4A_7C15)) | 1)
    }

    /// A number in `0..n` (n > 0).
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n.max(1) as u64) as usize
    }
}

/// The 1-minute load average, from /proc/loadavg.
pub(super) fn load_average() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Everything the section reports.
struct Summary {
    seconds: u64,
    rounds: usize,
    clients: usize,
    scale: usize,
    tps: Vec<f64>,
    singles: Vec<Measure>,
    batches: Vec<Measure>,
    verified: LedgerReport,
    load: [Option<f64>; 2],
    server: String,
}

/// The measure with the median rate (its latencies are reported).
fn typical(measures: &[Measure]) -> Option<&Measure> {
    let rate = median(&measures.iter().map(Measure::rate).collect::<Vec<_>>());
    measures
        .iter()
        .min_by(|a, b| (a.rate() - rate).abs().total_cmp(&(b.rate() - rate).abs()))
}

/// The markdown section of the bench.
fn section(s: &Summary) -> String {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let tps = median(&s.tps);
    let single = median(&s.singles.iter().map(Measure::rate).collect::<Vec<_>>());
    let batched = median(&s.batches.iter().map(Measure::rate).collect::<Vec<_>>());
    // Each round pairs the baseline with the targets measured right after it: the ratios are
    // the medians of the rounds' own ratios.
    let round_ratio = |measures: &[Measure]| {
        let ratios: Vec<f64> = s
            .tps
            .iter()
            .zip(measures)
            .map(|(tps, m)| m.rate() / tps.max(f64::MIN_POSITIVE))
            .collect();
        median(&ratios)
    };
    let (rs, rb) = (round_ratio(&s.singles), round_ratio(&s.batches));
    let verdict = |r: f64, goal: f64| if r >= goal { "met" } else { "not met" };
    let latencies = |m: Option<&Measure>| {
        m.map_or(("–".to_owned(), "–".to_owned()), |m| {
            (m.p(0.5), m.p(0.99))
        })
    };
    let (s50, s99) = latencies(typical(&s.singles));
    let (b50, b99) = latencies(typical(&s.batches));
    let load = |l: Option<f64>| l.map_or("?".to_owned(), |l| format!("{l:.2}"));
    let refused: u64 = s.singles.iter().chain(&s.batches).map(|m| m.refused).sum();
    let errors: u64 = s.singles.iter().chain(&s.batches).map(|m| m.errors).sum();
    let mut out = format!(
        "## ledger\n\n`cargo xtask bench ledger` on {cores} cores (1-minute load average {l0} before \
         the rounds, {l1} after), {server} on 127.0.0.1 (scratch databases created and dropped by the \
         bench), {rounds} rounds, {secs} s per measure, medians of the rounds. Baseline: \
         `pgbench -b tpcb-like -c {c} -j 2 -T {secs}` on `pgbench -i -s {scale}`. keel: \
         `PgLedgerStore` on a pool of {c} connections, {c} tokio clients in a closed loop, each \
         transfer a validated ledger transaction moving 1–{MAX_AMOUNT} minor units between the \
         available accounts of two distinct random wallets out of {USERS} (funded with {FUNDING} \
         each); every commit durable. Ratios are the medians of each round's ratio (baseline and \
         targets measured back to back); latencies are per commit (one transfer, or one batch).\n\n\
         | what | per second | ratio | p50 | p99 |\n|---|---:|---:|---:|---:|\n\
         | `pgbench -b tpcb-like`, {c} clients (baseline) | {tps:.0} tx | 1.00× | – | – |\n\
         | single transfers (`book`, one per transaction) | {single:.0} transfers | {rs:.2}× | {s50} | {s99} |\n\
         | batched transfers (`book_batch`, {BATCH} per transaction) | {batched:.0} transfers | {rb:.2}× | {b50} | {b99} |\n\n\
         Goals: single ≥ {SINGLE_GOAL}× tpcb-like: **{vs}** ({rs:.2}×); batched ≥ {BATCH_GOAL}× \
         tpcb-like: **{vb}** ({rb:.2}×). After the rounds `verify()`: {accounts} accounts, \
         {transactions} transactions, consistent (stored balances = rebuilt). Refused \
         (insufficient funds) transfers: {refused}; failed commits: {errors}.\n\n",
        l0 = load(s.load[0]),
        l1 = load(s.load[1]),
        server = s.server,
        rounds = s.rounds,
        secs = s.seconds,
        c = s.clients,
        scale = s.scale,
        vs = verdict(rs, SINGLE_GOAL),
        vb = verdict(rb, BATCH_GOAL),
        accounts = s.verified.accounts,
        transactions = s.verified.transactions,
    );
    for (i, ((tps, single), batched)) in s.tps.iter().zip(&s.singles).zip(&s.batches).enumerate() {
        let _ = writeln!(
            out,
            "- Round {}: pgbench {tps:.0} tx/s; single {:.0}/s ({:.2}×); batched {:.0}/s ({:.2}×).",
            i + 1,
            single.rate(),
            single.rate() / tps.max(f64::MIN_POSITIVE),
            batched.rate(),
            batched.rate() / tps.max(f64::MIN_POSITIVE),
        );
    }
    out.push_str(&format!(
        "\nWhat one commit costs. tpcb-like: 7 round trips (BEGIN, 3 single-row UPDATEs, a SELECT, \
         an INSERT, END), no triggers. A transfer, or a batch of {BATCH}: ONE round trip, one \
         statement outside any transaction (it is its own transaction, committed durably at its \
         end): it finds the accounts by (owner, purpose, currency), locks the changed ones in id \
         order and adds each net delta once, inserts the transactions and their postings from \
         arrays; an overdraft or a taken link fails the statement, so nothing of it stays. Server \
         work per transfer beyond tpcb-like: 3 rows inserted instead of 1 (with their foreign-key \
         checks), the schema's balance check once per statement over the statement's postings \
         (a transition table), and at commit one index probe per transaction (it has postings). \
         On 2 cores shared by Postgres, the clients and the other work on the machine (see the \
         load average), that CPU per commit is the limit. A batch locks about 200 of the {USERS} \
         wallets until its commit is flushed, so concurrent batches often wait for one another \
         (the p99 per batch).\n"
    ));
    out
}
