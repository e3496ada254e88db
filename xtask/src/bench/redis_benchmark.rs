//! The `redis-benchmark` baseline: GET throughput of the local Redis, measured in the same run.

use std::process::Command;

use super::loadgen::{LoadConfig, LoadResult};

/// Runs `redis-benchmark -t get` with the load generator's concurrency for about the same time.
pub fn get(redis_url: &str, config: &LoadConfig) -> Result<LoadResult, String> {
    let address = redis_url.trim_start_matches("redis://");
    let address = address.split('/').next().unwrap_or(address);
    let (host, port) = address.rsplit_once(':').unwrap_or((address, "6379"));
    if host != "127.0.0.1" && host != "localhost" && host != "[::1]" {
        return Err(format!("benchmarks only target loopback, not {host}"));
    }
    // Roughly 40k GETs per second per core: size the run to last about `duration`.
    let requests = (40_000 * config.duration.as_secs().max(1)).to_string();
    let clients = config.connections.to_string();
    let output = Command::new("redis-benchmark")
        .args([
            "-h", host, "-p", port, "-t", "get", "-n", &requests, "-c", &clients, "-q",
        ])
        .output()
        .map_err(|e| format!("cannot run redis-benchmark: {e}"))?;
    let text = String::from_utf8_lossy(&output.stdout);
    // "GET: 81234.56 requests per second, p50=0.199 msec"
    let line = text
        .lines()
        .rev()
        .find(|l| l.contains("GET:"))
        .ok_or(format!("unexpected redis-benchmark output: {text}"))?;
    let line = line.rsplit('\r').next().unwrap_or(line);
    let rps: f64 = line
        .split("GET:")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .ok_or(format!("cannot read the rate from {line:?}"))?;
    let p50_us = line
        .split("p50=")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|ms| ms.parse::<f64>().ok())
        .map_or(0, |ms| (ms * 1000.0) as u64);
    Ok(LoadResult {
        rps,
        p50_us,
        p99_us: 0,
        errors: 0,
    })
}
