//! The confirmation mails a registration phase leaves queued: waiting until a node's own job
//! workers have sent them, or timing a separate `keel worker` that drains them.

use std::path::Path;
use std::time::{Duration, Instant};

use super::pg;
use super::process::Server;
use super::registrations::{Cpu, CpuUse};

/// Longest wait for a queue of confirmation mails to empty.
const DRAIN_LIMIT: Duration = Duration::from_secs(300);

/// Confirmation mails (`mail.send`) waiting or running in `db`, and the mailbox rows delivered.
fn counts(db: &str) -> Result<(u64, u64), String> {
    pg::psql_pair(
        db,
        "SELECT (SELECT count(*) FROM jobs WHERE kind = 'mail.send' \
                 AND state IN ('available', 'running')), \
                (SELECT count(*) FROM mailbox)",
    )
}

/// Waits until `db` has no confirmation mail waiting or running (its workers sent them all).
pub(super) fn wait_until_sent(db: &str) -> Result<(), String> {
    let deadline = Instant::now() + DRAIN_LIMIT;
    loop {
        let (pending, _) = counts(db)?;
        if pending == 0 {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "{pending} confirmation mails still queued after {} s",
                DRAIN_LIMIT.as_secs()
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A separate `keel worker` sending the mails an API node without job workers left queued.
pub(super) struct Drain {
    /// Confirmation mails queued when the worker started.
    pub(super) queued: u64,
    /// Mailbox rows the worker wrote.
    pub(super) delivered: u64,
    /// From the worker's start to an empty queue.
    pub(super) elapsed: Duration,
    /// The worker's CPU meanwhile.
    pub(super) cpu: CpuUse,
}

impl Drain {
    /// Starts `keel worker` with `env` on `db` and waits until the queue is empty.
    pub(super) fn run(
        keel: &Path,
        env: &[(&str, &str)],
        db: &str,
        ticks: f64,
    ) -> Result<Self, String> {
        let (queued, before) = counts(db)?;
        let started = Instant::now();
        let worker = Server::start_worker(keel, env)?;
        let cpu_before = Cpu::sample(worker.pid(), ticks);
        wait_until_sent(db)?;
        let elapsed = started.elapsed();
        let cpu = Cpu::sample(worker.pid(), ticks).since(&cpu_before, elapsed);
        drop(worker);
        let (_, after) = counts(db)?;
        Ok(Self {
            queued,
            delivered: after.saturating_sub(before),
            elapsed,
            cpu,
        })
    }

    /// Mails delivered per second.
    pub(super) fn rate(&self) -> f64 {
        self.delivered as f64 / self.elapsed.as_secs_f64().max(f64::MIN_POSITIVE)
    }

    /// Every queued mail delivered exactly once.
    pub(super) fn holds(&self) -> bool {
        self.queued > 0 && self.delivered == self.queued
    }

    /// One line for the report.
    pub(super) fn summary(&self) -> String {
        format!(
            "{:.0} mails/s ({} of {} queued delivered in {:.2} s), worker CPU {:.2} cores, machine {:.2}; {}",
            self.rate(),
            self.delivered,
            self.queued,
            self.elapsed.as_secs_f64(),
            self.cpu.server,
            self.cpu.machine,
            if self.holds() { "ok" } else { "FAILED" },
        )
    }
}
