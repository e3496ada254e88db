//! The fault schedule: each fault at a fixed share of the load time, counted in the table.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};

use super::client::{Client, bump};
use super::processes::Fleet;
use super::services::Redis;
use crate::bench::pg;

/// What a fault acts on.
pub struct Targets {
    /// keel's processes.
    pub fleet: Mutex<Fleet>,
    /// The run's Redis.
    pub redis: Mutex<Redis>,
    /// The run's database URL (for `pg_terminate_backend`).
    pub database_url: String,
    /// The simulator's base URL.
    pub sim: String,
}

/// One scheduled fault.
#[derive(Debug, Clone, Copy)]
enum Fault {
    /// SIGKILL Redis, restart it after a pause.
    KillRedis,
    /// SIGKILL HTTP node `n` under load, restart it.
    KillNode(usize),
    /// SIGKILL the worker, restart it.
    KillWorker,
    /// `pg_terminate_backend` every other connection to keel's database.
    TerminateBackends,
    /// Simulator: deliver every webhook twice, for a while.
    DuplicateWebhooks,
    /// Simulator: send the opposite outcome's event after the real one, for a while.
    ReorderWebhooks,
    /// Simulator: API calls fail (unavailable), for a while.
    FailCalls,
    /// Simulator: checkouts and payouts end failed, for a while.
    FailOutcomes,
}

/// (share of the load time, fault)
const SCHEDULE: [(f64, Fault); 11] = [
    (0.08, Fault::DuplicateWebhooks),
    (0.15, Fault::KillRedis),
    (0.22, Fault::TerminateBackends),
    (0.30, Fault::ReorderWebhooks),
    (0.38, Fault::KillNode(1)),
    (0.46, Fault::KillWorker),
    (0.54, Fault::FailCalls),
    (0.62, Fault::TerminateBackends),
    (0.70, Fault::KillNode(0)),
    (0.78, Fault::FailOutcomes),
    (0.86, Fault::KillRedis),
];

/// Runs the schedule over `load` (the load time); stops early when a restart fails.
pub async fn run(targets: Arc<Targets>, client: Arc<Client>, load: Duration) -> Result<(), String> {
    let start = tokio::time::Instant::now();
    let window = load.mul_f64(0.06).max(Duration::from_secs(1));
    for (share, fault) in SCHEDULE {
        tokio::time::sleep_until(start + load.mul_f64(share)).await;
        eprintln!("chaos: {fault:?} at {:.1} s", start.elapsed().as_secs_f64());
        bump(&client.stats.faults, name(fault));
        inject(&targets, &client, fault, window).await?;
    }
    Ok(())
}

fn name(fault: Fault) -> &'static str {
    match fault {
        Fault::KillRedis => "redis SIGKILL + restart",
        Fault::KillNode(_) => "keel node SIGKILL + restart",
        Fault::KillWorker => "worker SIGKILL + restart",
        Fault::TerminateBackends => "pg_terminate_backend (all keel connections)",
        Fault::DuplicateWebhooks => "simulator duplicates webhooks",
        Fault::ReorderWebhooks => "simulator reorders webhooks (opposite event after)",
        Fault::FailCalls => "simulator API unavailable",
        Fault::FailOutcomes => "simulator fails checkouts/payouts",
    }
}

async fn inject(
    targets: &Arc<Targets>,
    client: &Client,
    fault: Fault,
    window: Duration,
) -> Result<(), String> {
    match fault {
        Fault::KillRedis => {
            blocking(targets, |t| {
                lock(&t.redis)?.kill();
                Ok(())
            })
            .await?;
            tokio::time::sleep(window).await;
            blocking(targets, |t| lock(&t.redis)?.restart()).await
        }
        Fault::KillNode(n) => kill_restart(targets, window, move |f| &mut f.nodes[n]).await,
        Fault::KillWorker => kill_restart(targets, window, |f| &mut f.worker).await,
        Fault::TerminateBackends => {
            blocking(targets, |t| {
                let sql = "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
                           WHERE datname = current_database() AND pid <> pg_backend_pid()";
                pg::psql(&t.database_url, sql).map(|_| ())
            })
            .await
        }
        Fault::DuplicateWebhooks => {
            behave(targets, client, json!({"duplicate_webhooks": true}), window).await
        }
        Fault::ReorderWebhooks => {
            behave(targets, client, json!({"out_of_order": true}), window).await
        }
        Fault::FailCalls => behave(targets, client, json!({"calls": "unavailable"}), window).await,
        Fault::FailOutcomes => behave(targets, client, json!({"outcome": "fail"}), window).await,
    }
}

/// SIGKILLs one process, waits `pause`, starts it again.
async fn kill_restart(
    targets: &Arc<Targets>,
    pause: Duration,
    pick: impl Fn(&mut Fleet) -> &mut super::processes::Proc + Send + Copy + 'static,
) -> Result<(), String> {
    blocking(targets, move |t| {
        pick(&mut *lock(&t.fleet)?).kill();
        Ok(())
    })
    .await?;
    tokio::time::sleep(pause.min(Duration::from_secs(3))).await;
    blocking(targets, move |t| pick(&mut *lock(&t.fleet)?).restart()).await
}

/// Sets the simulator's behaviour for `window`, then back to the default.
async fn behave(
    targets: &Targets,
    client: &Client,
    behaviour: Value,
    window: Duration,
) -> Result<(), String> {
    set_behaviour(client, &targets.sim, &behaviour).await?;
    tokio::time::sleep(window).await;
    set_behaviour(client, &targets.sim, &json!({})).await
}

/// `PUT /v1/sim/behaviour` (unset fields take their defaults).
pub async fn set_behaviour(client: &Client, sim: &str, behaviour: &Value) -> Result<(), String> {
    let status = client
        .raw()
        .put(format!("{sim}/v1/sim/behaviour"))
        .json(behaviour)
        .send()
        .await
        .map_err(|e| format!("simulator behaviour: {e}"))?
        .status();
    if status.is_success() {
        Ok(())
    } else {
        Err(format!("simulator behaviour {behaviour}: {status}"))
    }
}

/// Runs `f` on the blocking pool (process control waits with `std::thread::sleep`).
async fn blocking(
    targets: &Arc<Targets>,
    f: impl FnOnce(&Targets) -> Result<(), String> + Send + 'static,
) -> Result<(), String> {
    let targets = targets.clone();
    tokio::task::spawn_blocking(move || f(&targets))
        .await
        .map_err(|e| format!("fault task: {e}"))?
}

/// Locks a mutex, naming a poisoned one.
pub fn lock<T>(m: &Mutex<T>) -> Result<std::sync::MutexGuard<'_, T>, String> {
    m.lock()
        .map_err(|_| "a fault target's lock is poisoned".to_owned())
}
