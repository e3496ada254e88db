//! The `keel` command line.

use clap::{Parser, Subcommand};

/// keel: money, scores, seats and personal data kept correct under retries, races and floods.
///
/// Settings come from config/default.toml, the file named by KEEL_CONFIG, and environment
/// variables (KEEL_*, DATABASE_URL, REDIS_URL); see README.md for the full table.
#[derive(Debug, Parser)]
#[command(name = "keel", version, about, long_about)]
pub struct Cli {
    /// What to do; `serve` when omitted.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// keel's commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the HTTP API (the default).
    ///
    /// Without DATABASE_URL keel runs on in-memory stores (the embedded default: nothing is kept
    /// across restarts). With DATABASE_URL it uses Postgres, applying migrations first when
    /// KEEL_MIGRATE=true; with REDIS_URL it shares limits and caches through Redis. SIGTERM or
    /// Ctrl-C stops accepting connections, lets in-flight requests finish and closes the pools.
    Serve,
    /// Run background job workers and the periodic scheduler only, without HTTP.
    ///
    /// Needs DATABASE_URL (the queue is the `jobs` table, shared with every `keel serve`).
    /// KEEL_WORKERS sets how many jobs run at once. SIGTERM or Ctrl-C stops claiming, lets
    /// running jobs finish within KEEL_JOBS_SHUTDOWN_GRACE_SECS and releases the rest.
    Worker,
    /// Apply pending database migrations to DATABASE_URL, then exit.
    ///
    /// Safe to run from several nodes at once: an advisory lock makes them take turns.
    Migrate,
    /// Audit-log tools.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Re-encrypt every stored PII value to the active key of KEEL_PII_KEYS, in batches.
    ///
    /// Put the new key first in KEEL_PII_KEYS and keep the old ones after it until this reports
    /// nothing left to rotate. Safe to interrupt and run again (it only picks values not yet
    /// under the active key) and to run from several nodes at once.
    RotatePiiKeys {
        /// Values re-encrypted per batch.
        #[arg(long, default_value_t = 500)]
        batch: u32,
    },
    /// Run the simulated Revio payment provider (plain HTTP), sending signed webhooks to keel.
    RevioSim {
        /// Address the simulator listens on.
        #[arg(long, default_value = "127.0.0.1:8090")]
        bind: std::net::SocketAddr,
        /// Where its webhooks are POSTed.
        #[arg(long, default_value = "http://127.0.0.1:8080/api/v1/webhooks/revio")]
        webhook_url: String,
        /// Time from a checkout or payout to its completion, in milliseconds.
        #[arg(long, env = "KEEL_REVIO_SIM_DELAY_MS", default_value_t = 200)]
        delay_ms: u64,
    },
}

/// `keel audit …`.
#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Recompute the audit log's hash chain and name the first broken entry.
    ///
    /// Exits 0 when the chain is intact and 1 when an entry was edited, removed or reordered.
    Verify,
}
