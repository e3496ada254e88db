//! `cargo xtask bench all`: every bench, one after another with the same options, then the
//! summary section at the top of docs/BENCHMARKS.md and the chart docs/benchmarks.svg.
//!
//! Each bench runs as a child process of this binary (`bench <name> …`): it writes its own
//! section as when run alone, a failure (services missing, a failed check) or a crash stays in
//! that bench, and its drop guards (servers, scratch databases) run before the next one starts.
//! Its standard output is echoed and kept: the summary reads the ratio column of its tables,
//! each row against the `(baseline)` row above it, and sets each beside the goal.

use std::fmt::Write as _;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Instant;

use clap::ValueEnum;

use super::chart::{self, Bar};
use super::machine::{self, Machine};
use super::{BenchArgs, BenchName, report, target_dir};
use crate::workspace_root;

/// The chart, next to docs/BENCHMARKS.md (which links it by this name).
const CHART: &str = "benchmarks.svg";
const SUMMARY_BEGIN: &str = "<!-- bench:summary:begin -->";

/// A goal of the issues: a least ratio to the baseline, a least rate, a highest p99.
#[derive(Debug, Clone, Copy, Default)]
struct Goal {
    min_ratio: Option<f64>,
    min_rate: Option<f64>,
    max_p99_ms: Option<f64>,
}

impl Goal {
    const fn ratio(min: f64) -> Self {
        Self {
            min_ratio: Some(min),
            min_rate: None,
            max_p99_ms: None,
        }
    }

    const fn rate(min: f64) -> Self {
        Self {
            min_ratio: None,
            min_rate: Some(min),
            max_p99_ms: None,
        }
    }

    const fn p99(self, max_ms: f64) -> Self {
        Self {
            max_p99_ms: Some(max_ms),
            ..self
        }
    }

    fn text(&self) -> String {
        let mut parts = Vec::new();
        if let Some(r) = self.min_ratio {
            parts.push(format!("≥ {r}×"));
        }
        if let Some(r) = self.min_rate {
            parts.push(format!("≥ {r:.0}/s"));
        }
        if let Some(p) = self.max_p99_ms {
            parts.push(format!("p99 < {p} ms"));
        }
        parts.join(", ")
    }

    /// Whether `m` meets every part (a part that cannot be read is not met).
    fn met(&self, m: &Measured) -> bool {
        self.min_ratio.is_none_or(|g| m.ratio >= g)
            && self.min_rate.is_none_or(|g| m.rate.is_some_and(|r| r >= g))
            && self
                .max_p99_ms
                .is_none_or(|g| m.p99_ms.is_some_and(|p| p < g))
    }

    /// The goal as a ratio to the measure's baseline (a rate over the baseline's rate).
    fn as_ratio(&self, m: &Measured) -> Option<f64> {
        self.min_ratio.or_else(|| {
            let base = m.baseline_rate.filter(|b| *b > 0.0)?;
            Some(self.min_rate? / base)
        })
    }
}

/// The issues' goals: (bench, part of the row's label, goal). Rows without one are shown too.
const GOALS: &[(&str, &str, Goal)] = &[
    ("idempotency", "replayed", Goal::ratio(0.5)),
    ("ratelimit", "limited", Goal::ratio(0.8)),
    ("login", "auth/login", Goal::ratio(0.95)),
    ("jobs", "no-op jobs", Goal::ratio(0.5)),
    ("registrations", "one hot competition", Goal::rate(2_000.0)),
    ("ledger", "single transfers", Goal::ratio(0.7)),
    ("ledger", "batched transfers", Goal::ratio(2.0)),
    ("scoreboard", "score/update", Goal::rate(5_000.0).p99(20.0)),
    ("scoreboard", "scoreboard/top", Goal::ratio(0.5).p99(5.0)),
];

/// One row of a bench's table with a ratio, and the baseline row above it.
#[derive(Debug, Clone)]
struct Measured {
    bench: &'static str,
    label: String,
    baseline: String,
    ratio: f64,
    /// The row's figure per second, and the baseline's.
    rate: Option<f64>,
    baseline_rate: Option<f64>,
    p99_ms: Option<f64>,
}

impl Measured {
    fn goal(&self) -> Option<Goal> {
        GOALS
            .iter()
            .find(|(bench, part, _)| *bench == self.bench && self.label.contains(part))
            .map(|(_, _, goal)| *goal)
    }
}

/// What one bench gave.
struct Outcome {
    name: &'static str,
    result: Result<(), String>,
    measured: Vec<Measured>,
    seconds: f64,
}

/// Runs every bench, then writes the summary and the chart (or prints the summary and draws
/// the chart under the target directory with `--no-write`).
pub fn run(args: &BenchArgs) -> Result<(), String> {
    let machine = Machine::describe();
    let load_before = machine::load_averages();
    let started = chrono::Utc::now();
    let outcomes: Vec<Outcome> = BenchName::value_variants()
        .iter()
        .filter(|name| **name != BenchName::All)
        .map(|name| run_one(name.as_str(), args))
        .collect();
    let load_after = machine::load_averages();

    let chart_path = if args.no_write {
        target_dir().join(CHART)
    } else {
        workspace_root().join("docs").join(CHART)
    };
    let measured: Vec<&Measured> = outcomes.iter().flat_map(|o| &o.measured).collect();
    let bars: Vec<Bar> = measured.iter().map(|m| bar(m)).collect();
    let title = format!(
        "keel benchmarks, {} ({} × {})",
        started.format("%Y-%m-%d"),
        machine.cores,
        machine.cpu
    );
    chart::render(&chart_path, &title, &bars)?;
    println!("drew {}", chart_path.display());

    let body = section(&Summary {
        args,
        started,
        machine: &machine,
        load: [&load_before, &load_after],
        outcomes: &outcomes,
    });
    println!("{body}");
    if !args.no_write {
        ensure_summary_on_top()?;
        report::write_section("summary", &body)?;
    }
    let failed: Vec<&str> = outcomes
        .iter()
        .filter(|o| o.result.is_err())
        .map(|o| o.name)
        .collect();
    if failed.is_empty() {
        Ok(())
    } else {
        Err(format!("failed benches: {}", failed.join(", ")))
    }
}

/// Runs `cargo xtask bench <name>` with the same options as a child; echoes and keeps its output.
fn run_one(name: &'static str, args: &BenchArgs) -> Outcome {
    eprintln!("=== bench {name} ===");
    let started = Instant::now();
    let (result, stdout) = match child(name, args) {
        Ok((status, stdout, _)) if status.success() => (Ok(()), stdout),
        Ok((status, stdout, error)) => (
            Err(error.unwrap_or_else(|| format!("exited with {status}"))),
            stdout,
        ),
        Err(e) => (Err(e), String::new()),
    };
    if let Err(e) = &result {
        eprintln!("bench {name} failed: {e}");
    }
    Outcome {
        name,
        result,
        measured: parse(name, &stdout),
        seconds: started.elapsed().as_secs_f64(),
    }
}

/// The child's exit status, standard output, and the error it reported (`xtask: …` on stderr).
fn child(
    name: &str,
    args: &BenchArgs,
) -> Result<(std::process::ExitStatus, String, Option<String>), String> {
    let exe = std::env::current_exe().map_err(|e| format!("cannot find this binary: {e}"))?;
    let mut cmd = Command::new(exe);
    cmd.args(["bench", name])
        .args(["--seconds", &args.seconds.to_string()])
        .args(["--rounds", &args.rounds.to_string()])
        .args(["--connections", &args.connections.to_string()])
        .args(["--sse-clients", &args.sse_clients.to_string()]);
    if args.no_write {
        cmd.arg("--no-write");
    }
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start bench {name}: {e}"))?;
    let stderr = child.stderr.take();
    // Echo stderr as it comes; keep what follows the `xtask: ` prefix of the error message.
    let errors = std::thread::spawn(move || {
        let mut error: Option<String> = None;
        for line in stderr.into_iter().flat_map(|s| BufReader::new(s).lines()) {
            let Ok(line) = line else { break };
            eprintln!("{line}");
            match (&mut error, line.strip_prefix("xtask: ")) {
                (_, Some(message)) => error = Some(message.to_owned()),
                (Some(error), None) => {
                    error.push(' ');
                    error.push_str(line.trim());
                }
                (None, None) => {}
            }
        }
        error
    });
    let mut stdout = String::new();
    for line in child
        .stdout
        .take()
        .into_iter()
        .flat_map(|s| BufReader::new(s).lines())
    {
        let Ok(line) = line else { break };
        println!("{line}");
        stdout.push_str(&line);
        stdout.push('\n');
    }
    let status = child
        .wait()
        .map_err(|e| format!("bench {name} did not finish: {e}"))?;
    let error = errors.join().unwrap_or(None);
    Ok((status, stdout, error))
}

/// The rows with a ratio in `bench`'s markdown tables, each against the `(baseline)` row above.
fn parse(bench: &'static str, stdout: &str) -> Vec<Measured> {
    let mut out = Vec::new();
    // The header's ratio and p99 columns while inside a table.
    let mut columns: Option<(Option<usize>, Option<usize>)> = None;
    let mut baseline: Option<(String, Option<f64>)> = None;
    for line in stdout.lines().map(str::trim) {
        if !line.starts_with('|') {
            columns = None;
            continue;
        }
        let cells: Vec<&str> = line.trim_matches('|').split('|').map(str::trim).collect();
        if cells
            .iter()
            .all(|c| c.chars().all(|ch| matches!(ch, '-' | ':')))
        {
            continue;
        }
        let Some((ratio_at, p99_at)) = columns else {
            let find = |name: &str| cells.iter().position(|c| *c == name);
            columns = Some((find("ratio"), find("p99")));
            baseline = None;
            continue;
        };
        let label = cells.first().copied().unwrap_or_default();
        let rate = cells.get(1).and_then(|c| number(c));
        if let Some(base) = label.strip_suffix("(baseline)") {
            baseline = Some((base.trim().to_owned(), rate));
            continue;
        }
        let ratio = ratio_at.and_then(|i| cells.get(i)).and_then(|c| number(c));
        if let (Some(ratio), Some((base, base_rate))) = (ratio, &baseline) {
            out.push(Measured {
                bench,
                label: label.to_owned(),
                baseline: base.clone(),
                ratio,
                rate,
                baseline_rate: *base_rate,
                p99_ms: p99_at.and_then(|i| cells.get(i)).and_then(|c| number(c)),
            });
        }
    }
    out
}

/// The number a cell starts with (`2697 jobs`, `0.69×`, `33.31 ms`); `None` for `–`.
fn number(cell: &str) -> Option<f64> {
    let digits: String = cell
        .trim()
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.')
        .collect();
    digits.parse().ok()
}

fn bar(m: &Measured) -> Bar {
    let goal = m.goal();
    Bar {
        label: format!("{}: {}", m.bench, m.label),
        ratio: m.ratio,
        goal: goal.and_then(|g| g.as_ratio(m)),
        met: goal.map(|g| g.met(m)),
    }
}

/// Everything the summary section reports.
struct Summary<'a> {
    args: &'a BenchArgs,
    started: chrono::DateTime<chrono::Utc>,
    machine: &'a Machine,
    load: [&'a str; 2],
    outcomes: &'a [Outcome],
}

/// The markdown of the summary section.
fn section(s: &Summary<'_>) -> String {
    let ran = s.outcomes.iter().filter(|o| o.result.is_ok()).count();
    let measured: Vec<&Measured> = s.outcomes.iter().flat_map(|o| &o.measured).collect();
    let goals: Vec<bool> = measured
        .iter()
        .filter_map(|m| m.goal().map(|g| g.met(m)))
        .collect();
    let minutes: f64 = s.outcomes.iter().map(|o| o.seconds).sum::<f64>() / 60.0;
    let mut out = format!(
        "## summary\n\n`cargo xtask bench all --seconds {secs} --rounds {rounds} --connections {conns}`, \
         started {start}, {minutes:.0} min: {ran} of {n} benches ran, goals met: {met} of {ngoals}. \
         Each bench ran alone, one after another, with its baseline in the same run; its section \
         below has the details.\n\n{machine}\n\
         | bench | measure | baseline | ratio | goal | met |\n|---|---|---|---:|---|---|\n",
        secs = s.args.seconds,
        rounds = s.args.rounds,
        conns = s.args.connections,
        start = s.started.format("%Y-%m-%d %H:%M UTC"),
        n = s.outcomes.len(),
        met = goals.iter().filter(|m| **m).count(),
        ngoals = goals.len(),
        machine = s.machine.markdown(s.load[0], s.load[1]),
    );
    for outcome in s.outcomes {
        for m in &outcome.measured {
            let (goal, met) = m.goal().map_or(("–".to_owned(), "–"), |g| {
                let text = match g.min_rate.and(g.as_ratio(m)) {
                    Some(r) => format!("{} (≈ {r:.2}× here)", g.text()),
                    None => g.text(),
                };
                (text, if g.met(m) { "met" } else { "**not met**" })
            });
            let _ = writeln!(
                out,
                "| {} | {} | {} | {:.2}× | {goal} | {met} |",
                outcome.name, m.label, m.baseline, m.ratio
            );
        }
        if let Err(e) = &outcome.result {
            let _ = writeln!(
                out,
                "| {} | **failed** | – | – | – | {} |",
                outcome.name,
                cell(e)
            );
        }
    }
    let _ = writeln!(
        out,
        "\n![Each measure's ratio to its baseline, goals marked]({CHART})\n\n\
         Absolute goals (a rate) are drawn at their ratio to the baseline of the same run."
    );
    out
}

/// Text made safe for one markdown table cell.
fn cell(text: &str) -> String {
    text.replace('|', "\\|").replace('\n', " ")
}

/// Puts empty summary markers before the first section of docs/BENCHMARKS.md if it has none,
/// so that the summary is written on top (a missing file is created with the summary first).
fn ensure_summary_on_top() -> Result<(), String> {
    let path: PathBuf = workspace_root().join("docs/BENCHMARKS.md");
    let Ok(current) = std::fs::read_to_string(&path) else {
        return Ok(());
    };
    if current.contains(SUMMARY_BEGIN) {
        return Ok(());
    }
    let at = current.find("<!-- bench:").unwrap_or(current.len());
    let updated = format!(
        "{}{SUMMARY_BEGIN}\n<!-- bench:summary:end -->\n{}",
        &current[..at],
        &current[at..]
    );
    std::fs::write(&path, updated).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::{Goal, parse};

    const SECTION: &str = "## scoreboard\n\n| what | per second | ratio | p50 | p99 | errors |\n\
        |---|---:|---:|---:|---:|---:|\n\
        | `pgbench -N` simple-update, 32 clients (baseline) | 4630 tx | 1.00× | – | – | – |\n\
        | `POST /api/v1/score/update`, 1000 users | 1569 updates | 0.34× | 20.19 ms | 33.31 ms | 0 |\n\
        | actix hello-world `GET /` (baseline) | 145681 req | 1.00× | 0.21 ms | 0.55 ms | 0 |\n\
        | `GET /api/v1/scoreboard/top?limit=10` | 86997 req | 0.60× | 0.33 ms | 0.80 ms | 0 |\n\n\
        | what | value |\n|---|---:|\n| clients | 10000 |\n\
        | enqueue → start | – | – | 1.37 ms | 2.50 ms |\n";

    #[test]
    fn reads_each_ratio_against_the_baseline_above() {
        let rows = parse("scoreboard", SECTION);
        assert_eq!(rows.len(), 2);
        let updates = &rows[0];
        assert_eq!(updates.baseline, "`pgbench -N` simple-update, 32 clients");
        assert_eq!(updates.ratio, 0.34);
        assert_eq!(updates.rate, Some(1569.0));
        assert_eq!(updates.baseline_rate, Some(4630.0));
        assert_eq!(updates.p99_ms, Some(33.31));
        let top = &rows[1];
        assert_eq!(top.baseline, "actix hello-world `GET /`");
        assert_eq!(top.ratio, 0.60);
    }

    #[test]
    fn sets_rows_beside_their_goals() {
        let rows = parse("scoreboard", SECTION);
        let updates = rows[0].goal().unwrap_or_default();
        assert!(!updates.met(&rows[0]));
        let as_ratio = updates.as_ratio(&rows[0]).unwrap_or_default();
        assert!((as_ratio - 5000.0 / 4630.0).abs() < 1e-9);
        let top = rows[1].goal().unwrap_or_default();
        assert!(top.met(&rows[1]));
        assert_eq!(top.text(), "≥ 0.5×, p99 < 5 ms");
        assert!(Goal::ratio(0.7).met(&rows[1]) == (rows[1].ratio >= 0.7));
    }
}
