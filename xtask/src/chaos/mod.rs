//! `cargo xtask chaos`: a bounded, loopback-only chaos run that stops by itself.
//!
//! It starts its own Postgres cluster and `redis-server` on spare ports, two `keel serve`
//! nodes (no job workers), one `keel worker` and the Revio simulator; drives mixed load
//! ([`load`]) while injecting faults on a schedule ([`faults`]); lets the jobs drain, repairs the
//! board, checks the invariants ([`invariants`]) and prints a table ([`report`]). Any violation
//! fails the run. Every process and the cluster's files are removed on exit, also on error.

mod client;
mod faults;
mod invariants;
mod load;
mod processes;
mod report;
mod services;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use clap::Args;
use serde_json::json;

use crate::bench::build;
use crate::bench::pg;
use crate::bench::process::free_port;
use crate::bench::registrations::insert_users;
use client::{Call, Client};
use invariants::Check;
use processes::{ADMIN_EMAIL, ADMIN_PASSWORD, Fleet, JWT_SECRET, KeelEnv};
use services::{DATABASE, Postgres, Redis, TempDir};

/// Options of `cargo xtask chaos`.
#[derive(Debug, Args)]
pub struct ChaosArgs {
    /// Seconds of load (faults are spread over them).
    #[arg(long, default_value_t = 90)]
    seconds: u64,
    /// Print the table without rewriting docs/RELIABILITY.md.
    #[arg(long)]
    no_write: bool,
}

/// Participants inserted with SQL.
const USERS: usize = 40;
/// Longest wait for the jobs to drain after the load.
const DRAIN: Duration = Duration::from_secs(90);

/// Runs the chaos run; fails on any violated invariant.
pub fn run(args: &ChaosArgs) -> Result<(), String> {
    let keel = build(&["--bin", "keel"], "keel")?;
    // Locals drop in reverse order: processes, then Redis and the cluster, then the files.
    let tmp = TempDir::create()?;
    eprintln!("chaos: files in {}", tmp.path().display());
    let postgres = Postgres::start(tmp.path())?;
    let redis = Redis::start(tmp.path())?;
    let database_url = postgres.url(DATABASE);
    let env = KeelEnv::new(&database_url, &redis.url(), free_port()?);
    let fleet = Fleet::start(&keel, &env, tmp.path())?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start tokio: {e}"))?;
    let (stats_table, violations) = runtime.block_on(drive(args, fleet, redis, database_url))?;
    println!("{stats_table}");
    if !args.no_write {
        report::write_section(&stats_table)?;
    }
    drop(postgres);
    if violations > 0 {
        Err(format!("{violations} invariant violation(s)"))
    } else {
        Ok(())
    }
}

/// Load + faults, drain, repair, checks; the table and the number of violations.
async fn drive(
    args: &ChaosArgs,
    fleet: Fleet,
    redis: Redis,
    database_url: String,
) -> Result<(String, u64), String> {
    let bases = fleet.bases();
    let client = Arc::new(Client::new(bases.clone())?);
    let admin = login(&client).await?;
    let users = insert_users(&database_url, USERS, "chaos", JWT_SECRET)?;
    let targets = Arc::new(faults::Targets {
        sim: fleet.sim.base(),
        fleet: Mutex::new(fleet),
        redis: Mutex::new(redis),
        database_url: database_url.clone(),
    });
    let seconds = Duration::from_secs(args.seconds.max(5));
    let load = Arc::new(load::Load {
        client: client.clone(),
        admin: admin.clone(),
        users,
        deadline: tokio::time::Instant::now() + seconds,
    });
    eprintln!("chaos: {} s of load on {bases:?}", seconds.as_secs());
    let (faulted, ()) = tokio::join!(
        faults::run(targets.clone(), client.clone(), seconds),
        load.run()
    );
    faulted?;
    faults::set_behaviour(&client, &targets.sim, &json!({})).await?;
    drain(&database_url).await?;
    repair(&client, &admin).await;
    let checks = check(&client, &bases, &admin, &database_url).await?;
    let violations = checks.iter().filter(|c| c.violations > 0).count() as u64;
    let header = format!(
        "Last `cargo xtask chaos` run: {} s of load, {} ({} UTC).",
        seconds.as_secs(),
        if violations == 0 {
            "no violation"
        } else {
            "VIOLATIONS"
        },
        chrono::Utc::now().format("%Y-%m-%d %H:%M")
    );
    let table = report::table(&client.stats, &checks, &header);
    drop(targets);
    Ok((table, violations))
}

/// Logs the bootstrap admin in; `Bearer …`.
async fn login(client: &Client) -> Result<String, String> {
    let call = Call {
        kind: "login",
        method: reqwest::Method::POST,
        path: "/api/v1/auth/login".into(),
        token: None,
        body: Some(json!({"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD})),
        key: None,
    };
    let answer = client.send(&call).await.ok_or("admin login failed")?;
    answer
        .str("access_token")
        .map(|t| format!("Bearer {t}"))
        .ok_or(format!("admin login: {} {}", answer.status, answer.body))
}

/// Waits (bounded) until no one-shot job is running or due within 30 s.
async fn drain(url: &str) -> Result<(), String> {
    let sql = "SELECT count(*) FROM jobs WHERE kind IN ('mail.send', 'wallet.payout', \
               'certificates.issue') AND (state = 'running' OR (state = 'available' AND \
               run_at < now() + interval '30 seconds'))";
    let deadline = tokio::time::Instant::now() + DRAIN;
    loop {
        let left = pg::psql(url, sql)?;
        if left.trim() == "0" {
            return Ok(());
        }
        if tokio::time::Instant::now() > deadline {
            eprintln!(
                "chaos: {} job(s) still pending after the drain",
                left.trim()
            );
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Rebuilds the Redis board from Postgres (what the drift job would do), then lets the nodes'
/// live boards catch up.
async fn repair(client: &Client, admin: &str) {
    let call = Call {
        kind: "repair: scoreboard rebuild",
        method: reqwest::Method::POST,
        path: "/api/v1/admin/scoreboard/rebuild".into(),
        token: Some(admin),
        body: None,
        key: Some(format!("chaos-rebuild-{}", std::process::id())),
    };
    client.send(&call).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
}

async fn check(
    client: &Client,
    bases: &[String],
    admin: &str,
    url: &str,
) -> Result<Vec<Check>, String> {
    let mut checks = invariants::sql(url)?;
    checks.extend(invariants::registration_jobs(url)?);
    let created = client
        .stats
        .created
        .lock()
        .map(|c| c.clone())
        .map_err(|_| "created ids lock poisoned")?;
    checks.push(invariants::created_ids(url, &created)?);
    checks.extend(invariants::admin_reports(client, &bases[0], admin).await?);
    checks.push(invariants::board(client, bases, url).await?);
    Ok(checks)
}
