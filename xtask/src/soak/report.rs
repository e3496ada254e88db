//! The soak's section of docs/BENCHMARKS.md and its progress lines.

use std::fmt::Write;
use std::time::Duration;

use super::SoakArgs;
use super::load::{MIX_TEXT, ROUTES};
use super::probe::Probe;
use super::trend::{
    Bounds, DEDICATED_POSTGRES, ERROR_RATE_MAX, FD_SLOPE_MAX, HEAP_SLOPE_MAX_MIB, LatencyDrift,
    NodeSample, P50_GROWTH_MAX, P99_GROWTH_MAX, RSS_SLOPE_MAX_MIB, Trend, Window, totals,
};
use crate::bench::machine::Machine;
use crate::bench::report::ms;

const NODES: [&str; 2] = ["A", "B"];
const HEADER: &str = "| window | node | RSS | live heap | fds | other fds | Postgres conns | Redis conns | HTTP conns | requests | p50 | p99 | errors |\n\
    |---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n";

/// Everything the section reports.
pub struct Summary<'a> {
    pub args: &'a SoakArgs,
    pub minutes: u64,
    pub window: Duration,
    /// Windows of warm-up, excluded from the trends.
    pub warm_up: usize,
    /// Postgres and Redis ports.
    pub ports: (u16, u16),
    pub machine: &'a Machine,
    /// Load averages before and after.
    pub load: [&'a str; 2],
    pub windows: &'a [Window],
    /// The connections each node may hold.
    pub bounds: &'a Bounds,
    pub failures: &'a [String],
}

/// One line per window while the soak runs.
pub fn progress(w: &Window) -> String {
    let nodes: Vec<String> = w
        .nodes
        .iter()
        .zip(NODES)
        .map(|(n, name)| {
            format!(
                "{name}: {:.1} MiB (heap {}), {} fds ({} other), pg {} redis {} http {}, {} req, p99 {}, {} errors",
                n.probe.rss_mib(),
                heap(&n.probe),
                n.probe.fds,
                n.probe.other_fds(),
                n.probe.postgres,
                n.probe.redis,
                n.probe.http(),
                n.answers.requests,
                ms(n.answers.latency.value_at_quantile(0.99)),
                n.answers.error_count()
            )
        })
        .collect();
    format!("{}: {}", clock(w.minute), nodes.join(" | "))
}

/// The markdown section.
pub fn section(s: &Summary<'_>) -> String {
    let (requests, errors) = totals(s.windows);
    let seconds = s.windows.last().map_or(1.0, |w| w.minute * 60.0);
    let verdict = if s.failures.is_empty() {
        "**pass**".to_owned()
    } else {
        format!("**FAILED**: {}", s.failures.join("; "))
    };
    let mut out = format!(
        "## soak\n\n`cargo xtask soak --minutes {minutes}` on {cores} × {cpu}, {ram:.1} GiB, load \
         average {before} before and {after} after. Two release `keel serve` nodes (one HTTP worker \
         each, default job workers) on one scratch Postgres database ({pg}) and Redis ({redis}, \
         private key prefix), rate classes raised; open-loop load at {rate} operations/s over both \
         nodes in turn ({rps:.0} requests/s), {MIX_TEXT}; at most {conns} keep-alive connections per \
         node; latency counted from each operation's scheduled time. Every {window} s, per node: \
         VmRSS, the live heap (jemalloc's allocated bytes, from the node's `/metrics`), open \
         fds, of them those that are not established TCP connections (other fds: files, \
         listeners, pipes, epoll, timers), the established TCP connections to Postgres \
         (:{pg_port}), to Redis (:{redis_port}) and from HTTP clients, and the window's p50/p99 \
         and errors.\n\n{HEADER}",
        minutes = s.minutes,
        cores = s.machine.cores,
        cpu = s.machine.cpu,
        ram = s.machine.ram_gib,
        before = s.load[0],
        after = s.load[1],
        pg = s.machine.postgres.split(" on ").next().unwrap_or_default(),
        redis = s.machine.redis,
        rate = s.args.rate,
        rps = requests as f64 / seconds.max(1.0),
        conns = s.args.connections,
        window = s.window.as_secs(),
        pg_port = s.ports.0,
        redis_port = s.ports.1,
    );
    let mut shown = vec![("first", s.windows.first())];
    if s.windows.len() > 1 {
        shown.push(("last", s.windows.last()));
    }
    for (which, w) in shown {
        if let Some(w) = w {
            rows(&mut out, &format!("{which} ({})", clock(w.minute)), w);
        }
    }
    let after = s.windows.get(s.warm_up..).unwrap_or_default();
    let _ = write!(
        out,
        "\nTrend after {warm} min of warm-up (least-squares slope over the {n} later windows; \
         latency: the first third of them → the last third):\n\n\
         | node | live heap slope | RSS slope | other fds slope | other fds first → last | p50 | p99 |\n\
         |---|---:|---:|---:|---:|---:|---:|\n",
        warm = s.warm_up as f64 * s.window.as_secs_f64() / 60.0,
        n = after.len(),
    );
    for (node, name) in NODES.iter().enumerate() {
        let drift = drift_cells(LatencyDrift::of_node(after, node));
        match Trend::of(after, node) {
            Some(t) => {
                let _ = writeln!(
                    out,
                    "| {name} | {} | {:+.3} MiB/min | {:+.2}/min | {} → {} | {drift} |",
                    t.heap_mib_per_min
                        .map_or("–".to_owned(), |h| format!("{h:+.3} MiB/min")),
                    t.rss_mib_per_min,
                    t.fds_per_min,
                    t.fds_first,
                    t.fds_last
                );
            }
            None => {
                let _ = writeln!(out, "| {name} | – | – | – | – | {drift} |");
            }
        }
    }
    out.push_str(
        "\nLatency by route, both nodes, the same thirds:\n\n| route | p50 | p99 |\n|---|---:|---:|\n",
    );
    for route in ROUTES {
        let drift = LatencyDrift::of(after, |w| {
            w.nodes
                .iter()
                .filter_map(|n| n.answers.by_route.get(route))
                .collect()
        });
        let _ = writeln!(out, "| {route} | {} |", drift_cells(drift));
    }
    let _ = write!(
        out,
        "\nLimits: live heap slope ≤ {HEAP_SLOPE_MAX_MIB} MiB/min per node (RSS slope ≤ \
         {RSS_SLOPE_MAX_MIB} MiB/min only for a node that does not report its heap: RSS also \
         holds what the allocator keeps after a peak); other fds not growing \
         steadily (slope ≤ {FD_SLOPE_MAX}/min or no more at the end); in every window at most \
         {pg} Postgres connections (pool of {pool} + {DEDICATED_POSTGRES} LISTEN), {redis} Redis \
         (pool + subscription) and {http} HTTP (the load generator's limit) per node, since \
         pools open connections on demand up to their size; per node, p50 of the last third ≤ \
         {P50_GROWTH_MAX}× the first third's and p99 ≤ {P99_GROWTH_MAX}×; errors ≤ {:.1} %. Requests \
         {requests}, errors {errors} ({:.3} %). Verdict: {verdict}.\n\n<details><summary>Every \
         window</summary>\n\n{HEADER}",
        ERROR_RATE_MAX * 100.0,
        100.0 * errors as f64 / requests.max(1) as f64,
        pg = s.bounds.postgres(),
        pool = s.bounds.pool,
        redis = s.bounds.redis(),
        http = s.bounds.http,
    );
    for w in s.windows {
        rows(&mut out, &clock(w.minute), w);
    }
    out.push_str("\n</details>\n");
    out
}

/// The table rows of one window, one per node.
fn rows(out: &mut String, label: &str, w: &Window) {
    for (n, name) in w.nodes.iter().zip(NODES) {
        let _ = writeln!(out, "{}", row(label, name, n));
    }
}

fn row(label: &str, name: &str, n: &NodeSample) -> String {
    let errors = if n.answers.errors.is_empty() {
        "0".to_owned()
    } else {
        let list: Vec<String> = n
            .answers
            .errors
            .iter()
            .map(|(status, count)| {
                if *status == 0 {
                    format!("{count}× transport")
                } else {
                    format!("{count}× {status}")
                }
            })
            .collect();
        list.join(", ")
    };
    format!(
        "| {label} | {name} | {:.1} MiB | {} | {} | {} | {} | {} | {} | {} | {} | {} | {errors} |",
        n.probe.rss_mib(),
        heap(&n.probe),
        n.probe.fds,
        n.probe.other_fds(),
        n.probe.postgres,
        n.probe.redis,
        n.probe.http(),
        n.answers.requests,
        ms(n.answers.latency.value_at_quantile(0.5)),
        ms(n.answers.latency.value_at_quantile(0.99)),
    )
}

/// `p50 early → late | p99 early → late` table cells, or dashes.
fn drift_cells(drift: Option<LatencyDrift>) -> String {
    drift.map_or("– | –".to_owned(), |d| {
        format!(
            "{} → {} | {} → {}",
            ms(d.p50.0),
            ms(d.p50.1),
            ms(d.p99.0),
            ms(d.p99.1)
        )
    })
}

/// The live heap as `12.3 MiB`, or `–` when the node did not report it.
fn heap(probe: &Probe) -> String {
    probe
        .heap_mib()
        .map_or("–".to_owned(), |mib| format!("{mib:.1} MiB"))
}

/// Minutes as `m:ss`.
fn clock(minute: f64) -> String {
    let secs = (minute * 60.0).round() as u64;
    format!("{}:{:02}", secs / 60, secs % 60)
}
