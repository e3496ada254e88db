//! The machine a run measured: CPU, memory, kernel, service and compiler versions, load.
//!
//! Every figure is read from `/proc`, `uname`, `rustc`, `psql` (`SELECT version()` on
//! `DATABASE_URL`) and `redis-cli` (`INFO server` on `REDIS_URL`); what cannot be read is
//! reported as such, never an error: a description must not stop a run.

use std::fmt::Write;
use std::process::Command;

use super::pg;

/// Redis when `REDIS_URL` is not set (as the benches assume).
const DEFAULT_REDIS: &str = "redis://127.0.0.1:6379";

/// What the machine is.
pub struct Machine {
    /// `model name` of /proc/cpuinfo.
    pub cpu: String,
    /// Logical CPUs (`processor` entries of /proc/cpuinfo).
    pub cores: usize,
    /// `MemTotal` of /proc/meminfo, in GiB.
    pub ram_gib: f64,
    /// `uname -r`.
    pub kernel: String,
    /// `SELECT version()` on `DATABASE_URL`.
    pub postgres: String,
    /// `redis_version` of `INFO server` on `REDIS_URL`.
    pub redis: String,
    /// `rustc --version`.
    pub rustc: String,
}

impl Machine {
    /// Reads everything once.
    pub fn describe() -> Self {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu = field(&cpuinfo, "model name").unwrap_or_else(|| "unknown CPU".to_owned());
        let cores = cpuinfo
            .lines()
            .filter(|l| l.starts_with("processor"))
            .count();
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let ram_gib = field(&meminfo, "MemTotal")
            .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
            .map_or(0.0, |kib| kib / (1024.0 * 1024.0));
        Self {
            cpu,
            cores,
            ram_gib,
            kernel: output("uname", &["-r"]),
            postgres: postgres_version(),
            redis: redis_version(),
            rustc: output("rustc", &["--version"]),
        }
    }

    /// A markdown list, with the load averages before and after the run.
    pub fn markdown(&self, load_before: &str, load_after: &str) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "- CPU: {} × {}", self.cores, self.cpu);
        let _ = writeln!(out, "- RAM: {:.1} GiB", self.ram_gib);
        let _ = writeln!(out, "- Kernel: {}", self.kernel);
        let _ = writeln!(out, "- Postgres: {}", self.postgres);
        let _ = writeln!(out, "- Redis: {}", self.redis);
        let _ = writeln!(out, "- Rust: {}", self.rustc);
        let _ = writeln!(
            out,
            "- Load average (1/5/15 min): {load_before} before, {load_after} after"
        );
        out
    }
}

/// The 1, 5 and 15 minute load averages of /proc/loadavg, e.g. `0.52 0.71 0.90`.
pub fn load_averages() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|| "unknown".to_owned())
}

/// The value of the first `name : value` line of a /proc file.
fn field(text: &str, name: &str) -> Option<String> {
    text.lines()
        .find(|l| l.starts_with(name))
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.trim().to_owned())
}

/// The trimmed standard output of a command, or why there is none.
fn output(program: &str, args: &[&str]) -> String {
    match Command::new(program).args(args).output() {
        Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout).trim().to_owned(),
        Ok(o) => format!("unknown (`{program}` exited with {})", o.status),
        Err(e) => format!("unknown (cannot run `{program}`: {e})"),
    }
}

fn postgres_version() -> String {
    match std::env::var("DATABASE_URL") {
        Ok(url) => pg::psql(&url, "SELECT version()")
            .map(|v| v.trim().to_owned())
            .unwrap_or_else(|e| format!("unavailable ({e})")),
        Err(_) => "not configured (DATABASE_URL is not set)".to_owned(),
    }
}

fn redis_version() -> String {
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| DEFAULT_REDIS.to_owned());
    let info = output("redis-cli", &["-u", &url, "INFO", "server"]);
    field(&info, "redis_version").map_or_else(
        || {
            format!(
                "unavailable ({})",
                info.lines().next().unwrap_or("no answer")
            )
        },
        |v| format!("Redis {v}"),
    )
}

#[cfg(test)]
mod tests {
    use super::field;

    #[test]
    fn reads_proc_fields() {
        let cpuinfo = "processor\t: 0\nmodel name\t: AMD EPYC 7B13\nprocessor\t: 1\n";
        assert_eq!(
            field(cpuinfo, "model name").as_deref(),
            Some("AMD EPYC 7B13")
        );
        let info = "# Server\r\nredis_version:7.0.15\r\nredis_mode:standalone\r\n";
        assert_eq!(field(info, "redis_version").as_deref(), Some("7.0.15"));
        assert_eq!(field(info, "missing"), None);
    }
}
