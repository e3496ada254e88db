//! Ratio tables and the sections of docs/BENCHMARKS.md.

use std::fmt::Write;

use super::Row;
use super::loadgen::LoadConfig;
use crate::workspace_root;

const HEADER: &str = "# Benchmarks\n\nWritten by `cargo xtask bench <name>`. This machine is noisy: each figure is \
the median of alternating rounds, and the column that matters is the ratio against the baseline \
measured in the same run.\n";

/// A markdown table of rows, ratios against the first row.
pub fn table(rows: &[Row]) -> String {
    let base = rows
        .first()
        .map_or(1.0, |r| r.result.rps.max(f64::MIN_POSITIVE));
    let mut out = String::from(
        "| what | req/s | ratio | p50 | p99 | errors |\n|---|---:|---:|---:|---:|---:|\n",
    );
    for row in rows {
        let r = &row.result;
        let _ = writeln!(
            out,
            "| {} | {:.0} | {:.2}× | {} | {} | {} |",
            row.label,
            r.rps,
            r.rps / base,
            millis(r.p50_us),
            millis(r.p99_us),
            r.errors
        );
    }
    out
}

fn millis(micros: u64) -> String {
    if micros == 0 {
        "–".to_owned()
    } else {
        ms(micros)
    }
}

/// Microseconds as milliseconds with two decimals.
pub fn ms(micros: u64) -> String {
    format!("{:.2} ms", micros as f64 / 1000.0)
}

/// The median of `values` (the upper one of an even count; 0 when empty).
pub fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted.get(sorted.len() / 2).copied().unwrap_or(0.0)
}

/// The markdown section of one bench.
pub fn section(name: &str, config: &LoadConfig, rounds: usize, table: &str) -> String {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    format!(
        "## {name}\n\n`cargo xtask bench {name}` on {cores} cores: {connections} keep-alive connections, \
         {secs} s per round, {rounds} rounds, one server worker each, closed-loop hyper client (xtask) on the same \
         machine over loopback.\n\n{table}",
        connections = config.connections,
        secs = config.duration.as_secs(),
    )
}

/// Replaces (or appends) the `name` section of docs/BENCHMARKS.md.
pub fn write_section(name: &str, body: &str) -> Result<(), String> {
    let path = workspace_root().join("docs/BENCHMARKS.md");
    let current = std::fs::read_to_string(&path).unwrap_or_else(|_| HEADER.to_owned());
    let begin = format!("<!-- bench:{name}:begin -->");
    let end = format!("<!-- bench:{name}:end -->");
    let block = format!("{begin}\n{body}{end}");
    let updated = match (current.find(&begin), current.find(&end)) {
        (Some(b), Some(e)) if b < e => {
            format!("{}{block}{}", &current[..b], &current[e + end.len()..])
        }
        _ => format!("{}\n{block}\n", current.trim_end()),
    };
    std::fs::write(&path, updated).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    println!("wrote {}", path.display());
    Ok(())
}
