//! Postgres helpers shared by the database benches: scratch databases, `psql`, `pgbench`.

use std::process::Command;

use keel_adapters_postgres::testkit::with_database;

/// The admin URL of the benches (`DATABASE_URL`), checked to be loopback.
pub fn admin_url(bench: &str) -> Result<String, String> {
    let url = std::env::var("DATABASE_URL").map_err(|_| {
        format!(
            "DATABASE_URL is not set: `cargo xtask bench {bench}` needs Postgres \
             (`cargo xtask services` prints the local URL)"
        )
    })?;
    loopback_only(&url)?;
    Ok(url)
}

/// Runs `pgbench -N -c clients -j 2 -T seconds` against `url`; returns its tps without
/// connection time.
pub fn pgbench_simple_update(url: &str, clients: usize, seconds: u64) -> Result<f64, String> {
    pgbench_builtin(url, "simple-update", clients, seconds)
}

/// Runs `pgbench -b tpcb-like -c clients -j 2 -T seconds` against `url`; returns its tps
/// without connection time.
pub fn pgbench_tpcb_like(url: &str, clients: usize, seconds: u64) -> Result<f64, String> {
    pgbench_builtin(url, "tpcb-like", clients, seconds)
}

/// Runs pgbench's built-in `script` (`-b`) with `clients` clients on 2 threads for `seconds`.
fn pgbench_builtin(url: &str, script: &str, clients: usize, seconds: u64) -> Result<f64, String> {
    let clients = clients.to_string();
    let secs = seconds.to_string();
    let text = pgbench(&["-b", script, "-c", &clients, "-j", "2", "-T", &secs, url])?;
    parse_tps(&text).ok_or(format!("cannot read tps from pgbench's output:\n{text}"))
}

/// The tps of pgbench's report: the figure without connection time when it prints several.
fn parse_tps(text: &str) -> Option<f64> {
    let lines: Vec<&str> = text.lines().filter(|l| l.starts_with("tps = ")).collect();
    let line = lines
        .iter()
        .find(|l| l.contains("without initial connection") || l.contains("excluding connections"))
        .or(lines.first())?;
    line.trim_start_matches("tps = ")
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Runs pgbench; returns its standard output, or fails with its standard error.
pub fn pgbench(args: &[&str]) -> Result<String, String> {
    let what = format!("pgbench {}", args.first().copied().unwrap_or(""));
    stdout_of("pgbench", args, &what)
}

/// Runs SQL with `psql` on `url`; returns its unaligned, tuples-only output.
pub fn psql(url: &str, sql: &str) -> Result<String, String> {
    let args = [url, "-v", "ON_ERROR_STOP=1", "-qAtc", sql];
    stdout_of("psql", &args, &format!("psql `{sql}`"))
}

/// Runs a one-row, two-column query of whole numbers with `psql` on `url`; returns both.
pub fn psql_pair(url: &str, sql: &str) -> Result<(u64, u64), String> {
    let text = psql(url, sql)?;
    let (first, second) = text
        .trim()
        .split_once('|')
        .ok_or(format!("unexpected output {text:?}"))?;
    let read = |v: &str| {
        v.parse::<u64>()
            .map_err(|e| format!("cannot read {text:?}: {e}"))
    };
    Ok((read(first)?, read(second)?))
}

/// Runs `program`; returns its standard output, or fails with its status and standard error.
fn stdout_of(program: &str, args: &[&str], what: &str) -> Result<String, String> {
    let output = Command::new(program)
        .args(args)
        .output()
        .map_err(|e| format!("cannot run {program} (is it installed?): {e}"))?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(format!(
            "{what} failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }
}

/// A database created for the bench next to `DATABASE_URL`'s, dropped when this value drops.
pub struct Scratch {
    admin_url: String,
    /// The database name.
    pub name: String,
    /// Its connection URL.
    pub url: String,
}

impl Scratch {
    /// Creates `<prefix>_<random hex>` next to `admin_url`'s database.
    pub fn create(admin_url: &str, prefix: &str) -> Result<Self, String> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        let name = format!("{prefix}_{:x}", nanos ^ u64::from(std::process::id()));
        psql(admin_url, &format!("CREATE DATABASE {name}"))?;
        Ok(Self {
            admin_url: admin_url.to_owned(),
            url: with_database(admin_url, &name),
            name,
        })
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
        if let Err(e) = psql(&self.admin_url, &sql) {
            eprintln!(
                "warning: could not drop scratch database {}: {e}",
                self.name
            );
        }
    }
}

/// Fails unless `url` points at this machine (loopback, or a local socket).
pub fn loopback_only(url: &str) -> Result<(), String> {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let (base, query) = rest.split_once('?').unwrap_or((rest, ""));
    let authority = base.split('/').next().unwrap_or(base);
    let host_port = authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host);
    let host = match host_port.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(v6),
        None => host_port.split(':').next().unwrap_or(host_port),
    };
    let hosts = std::iter::once(host).chain(
        query
            .split('&')
            .filter_map(|pair| pair.strip_prefix("host=")),
    );
    for host in hosts {
        if !matches!(host, "" | "127.0.0.1" | "localhost" | "::1") && !host.starts_with('/') {
            return Err(format!("benchmarks only target loopback, not {host}"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{loopback_only, parse_tps};

    #[test]
    fn reads_tps_without_connection_time() {
        let pg15 = "latency average = 2.0 ms\ninitial connection time = 3.1 ms\n\
                    tps = 1987.654321 (without initial connection time)\n";
        assert_eq!(parse_tps(pg15), Some(1987.654321));
        let pg13 = "tps = 900.5 (including connections establishing)\n\
                    tps = 910.25 (excluding connections establishing)\n";
        assert_eq!(parse_tps(pg13), Some(910.25));
        assert_eq!(parse_tps("no figures"), None);
    }

    #[test]
    fn accepts_loopback_only() {
        assert!(loopback_only("postgres://postgres@127.0.0.1:5432/postgres").is_ok());
        assert!(loopback_only("postgres://u:p@localhost/db?sslmode=disable").is_ok());
        assert!(loopback_only("postgres://u@[::1]:5432/db").is_ok());
        assert!(loopback_only("postgres://u@db.example.com/db").is_err());
        assert!(loopback_only("postgres://u@127.0.0.1/db?host=10.0.0.1").is_err());
    }
}
