//! `cargo xtask <task>`: keel's developer tasks, in Rust rather than shell scripts.
//!
//! - `tidy`: checks the dependency rule (the domain crate stays pure) and the docs.
//! - `services`: makes sure Postgres and Redis are up and prints their URLs.
//! - `migrate`: applies the embedded migrations to `DATABASE_URL`.
//! - `bench <name>`: load benchmarks against a baseline measured in the same run.
//! - `soak`: a steady mixed load on two nodes for minutes, failing on memory or fd growth.
//! - `chaos`: a bounded chaos run (faults under mixed load) that checks keel's invariants.

mod bench;
mod chaos;
mod services;
mod soak;
mod tidy;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "cargo xtask", about = "keel developer tasks")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Debug, Subcommand)]
enum Task {
    /// Check that keel-domain depends on no framework, driver or runtime, and that docs exist.
    Tidy,
    /// Start Postgres and Redis if they are not running; print DATABASE_URL and REDIS_URL.
    Services,
    /// Apply pending migrations to DATABASE_URL (`keel migrate`).
    Migrate,
    /// Run a load benchmark beside its baseline and write docs/BENCHMARKS.md.
    Bench(bench::BenchArgs),
    /// Steady mixed load on two keel nodes; reports RSS, fds, connections and latency drift.
    Soak(soak::SoakArgs),
    /// Inject faults under mixed load on two nodes, a worker and the simulator; check the
    /// invariants and write docs/RELIABILITY.md.
    Chaos(chaos::ChaosArgs),
    /// (internal) The actix hello-world baseline server used by `bench`.
    #[command(hide = true)]
    HelloServer {
        /// Port to listen on (127.0.0.1).
        #[arg(long)]
        port: u16,
        /// Worker threads.
        #[arg(long, default_value_t = 1)]
        workers: usize,
    },
}

fn main() -> ExitCode {
    let result = match Cli::parse().task {
        Task::Tidy => tidy::run(),
        Task::Services => services::run(),
        Task::Migrate => services::migrate(),
        Task::Bench(args) => bench::run(&args),
        Task::Soak(args) => soak::run(&args),
        Task::Chaos(args) => chaos::run(&args),
        Task::HelloServer { port, workers } => bench::hello::serve(port, workers),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("xtask: {message}");
            ExitCode::FAILURE
        }
    }
}

/// The workspace root (the parent of this crate's folder).
fn workspace_root() -> PathBuf {
    let here = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    here.parent().map(PathBuf::from).unwrap_or(here)
}

/// Runs a command to completion, failing with its name when it fails.
fn run_command(cmd: &mut std::process::Command) -> Result<(), String> {
    let status = cmd
        .status()
        .map_err(|e| format!("cannot run {cmd:?}: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{cmd:?} failed with {status}"))
    }
}
