//! The run's table (requests, faults, statuses, invariants) and its section of
//! docs/RELIABILITY.md.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;

use super::client::Stats;
use super::invariants::Check;
use crate::workspace_root;

const BEGIN: &str = "<!-- chaos:begin -->";
const END: &str = "<!-- chaos:end -->";

/// The Markdown table of one run.
pub fn table(stats: &Stats, checks: &[Check], header: &str) -> String {
    let mut out = format!("{header}\n\n");
    counts(&mut out, "request kind", "attempts", &stats.requests);
    counts(&mut out, "gave up after retries", "calls", &stats.gave_up);
    counts(&mut out, "fault injected", "count", &stats.faults);
    counts(&mut out, "response status", "count", &stats.statuses);
    out.push_str("| invariant | result | example |\n|---|---|---|\n");
    for check in checks {
        let result = if check.violations == 0 {
            "ok".to_owned()
        } else {
            format!("**{} violation(s)**", check.violations)
        };
        let example = check.example.replace('|', "\\|");
        let _ = writeln!(out, "| {} | {result} | {example} |", check.name);
    }
    out
}

fn counts(out: &mut String, what: &str, unit: &str, map: &Mutex<BTreeMap<String, u64>>) {
    let Ok(map) = map.lock() else { return };
    if map.is_empty() {
        return;
    }
    let total: u64 = map.values().sum();
    let _ = writeln!(out, "| {what} | {unit} |\n|---|---|");
    for (key, n) in map.iter() {
        let _ = writeln!(out, "| {key} | {n} |");
    }
    let _ = writeln!(out, "| total | {total} |\n");
}

/// Writes `table` between the chaos markers of docs/RELIABILITY.md (creating the file with the
/// markers and a heading when it is missing; leaving it alone when it has no markers).
pub fn write_section(table: &str) -> Result<(), String> {
    let path = workspace_root().join("docs").join("RELIABILITY.md");
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(_) => format!("# Reliability\n\n{BEGIN}\n{END}\n"),
    };
    let (Some(start), Some(end)) = (text.find(BEGIN), text.find(END)) else {
        eprintln!("docs/RELIABILITY.md has no chaos markers: left as it is");
        return Ok(());
    };
    if end < start {
        return Err("docs/RELIABILITY.md: chaos markers out of order".into());
    }
    let updated = format!(
        "{}{BEGIN}\n{table}{END}{}",
        &text[..start],
        &text[end + END.len()..]
    );
    std::fs::write(&path, updated).map_err(|e| format!("cannot write {path:?}: {e}"))
}
