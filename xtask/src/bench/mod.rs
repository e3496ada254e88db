//! `cargo xtask bench <name>`: load benchmarks, each beside a baseline from the same run.
//!
//! The machine is noisy, so absolute figures mean little: every bench alternates rounds of the
//! target and its baseline, takes the median of each, and reports the ratio.

pub mod hello;
mod loadgen;
mod process;
mod report;

use std::time::Duration;

use clap::{Args, ValueEnum};

use crate::{run_command, workspace_root};
use loadgen::{LoadConfig, LoadResult};
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
    /// Rounds (target and baseline alternate; the median is reported).
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Print the table without rewriting docs/BENCHMARKS.md.
    #[arg(long)]
    no_write: bool,
}

/// The benchmarks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum BenchName {
    /// keel's `GET /healthz` through the full middleware stack vs an actix hello-world route.
    Healthz,
}

/// One measured line of a report.
pub struct Row {
    label: String,
    result: LoadResult,
}

pub fn run(args: &BenchArgs) -> Result<(), String> {
    match args.name {
        BenchName::Healthz => healthz(args),
    }
}

fn healthz(args: &BenchArgs) -> Result<(), String> {
    let keel = build_keel()?;
    let hello = Server::hello_world(1)?;
    let keel = Server::keel(&keel, &[("KEEL_HTTP_WORKERS", "1")])?;
    let config = LoadConfig {
        duration: Duration::from_secs(args.seconds),
        connections: args.connections,
    };
    let mut baseline = Vec::new();
    let mut target = Vec::new();
    for round in 1..=args.rounds {
        eprintln!("round {round}/{}", args.rounds);
        baseline.push(loadgen::run(&hello.url("/"), &config)?);
        target.push(loadgen::run(&keel.url("/healthz"), &config)?);
    }
    let rows = [
        Row {
            label: "actix hello-world `GET /` (baseline)".into(),
            result: LoadResult::median(baseline),
        },
        Row {
            label: "keel `GET /healthz` (full middleware stack)".into(),
            result: LoadResult::median(target),
        },
    ];
    let table = report::table(&rows);
    println!("{table}");
    if !args.no_write {
        report::write_section(
            "healthz",
            &report::section("healthz", &config, args.rounds, &table),
        )?;
    }
    Ok(())
}

/// Builds the release `keel` binary and returns its path.
fn build_keel() -> Result<std::path::PathBuf, String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    run_command(
        std::process::Command::new(cargo)
            .args([
                "build",
                "--release",
                "--quiet",
                "-p",
                "keel-app-http",
                "--bin",
                "keel",
            ])
            .current_dir(workspace_root()),
    )?;
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| workspace_root().join("target"));
    Ok(target.join("release").join("keel"))
}
