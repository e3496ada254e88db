//! What a node holds, read from /proc: resident memory, open file descriptors, and its established
//! TCP connections: all of them, and those to Postgres and Redis (the node's socket inodes matched
//! in /proc/net/tcp{,6}); and its live heap, read from its `/metrics`.

use std::collections::HashSet;

/// The gauge of a node's live heap (`keel_app_http::http::metrics::HEAP_ALLOCATED_BYTES`).
pub const HEAP_GAUGE: &str = "keel_process_heap_allocated_bytes";

/// One reading of one process.
#[derive(Debug, Clone, Copy, Default)]
pub struct Probe {
    /// VmRSS, in KiB.
    pub rss_kib: u64,
    /// Entries of /proc/PID/fd.
    pub fds: usize,
    /// Established TCP connections to the Postgres port.
    pub postgres: usize,
    /// Established TCP connections to the Redis port.
    pub redis: usize,
    /// Established TCP connections of any kind: the two above and the HTTP clients'.
    pub tcp: usize,
    /// The allocator's live heap in bytes (`keel_process_heap_allocated_bytes`), when the node
    /// reports it.
    pub heap_bytes: Option<u64>,
}

impl Probe {
    /// RSS in MiB.
    pub fn rss_mib(&self) -> f64 {
        self.rss_kib as f64 / 1024.0
    }

    /// Live heap in MiB, when known.
    pub fn heap_mib(&self) -> Option<f64> {
        self.heap_bytes.map(|b| b as f64 / (1024.0 * 1024.0))
    }

    /// Established HTTP client connections (every established one not to Postgres or Redis).
    pub fn http(&self) -> usize {
        self.tcp.saturating_sub(self.postgres + self.redis)
    }

    /// Open fds that are not established connections: files, listeners, pipes, epoll and
    /// timers. Connections come and go with their pools; these must stay flat.
    pub fn other_fds(&self) -> usize {
        self.fds.saturating_sub(self.tcp)
    }
}

/// Reads process `pid`; fails when it has exited (no VmRSS: gone, or a zombie).
pub fn probe(pid: u32, postgres_port: u16, redis_port: u16) -> Result<Probe, String> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .map_err(|e| format!("process {pid} is gone: {e}"))?;
    let rss_kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .ok_or(format!("process {pid} has exited (no VmRSS)"))?;
    let mut fds = 0;
    let mut sockets = HashSet::new();
    let entries = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map_err(|e| format!("cannot list the fds of {pid}: {e}"))?;
    for entry in entries.flatten() {
        fds += 1;
        let target = std::fs::read_link(entry.path()).unwrap_or_default();
        let target = target.to_string_lossy();
        if let Some(inode) = target
            .strip_prefix("socket:[")
            .and_then(|s| s.strip_suffix(']'))
        {
            sockets.insert(inode.to_owned());
        }
    }
    let mut probe = Probe {
        rss_kib,
        fds,
        ..Probe::default()
    };
    for table in ["tcp", "tcp6"] {
        let text = std::fs::read_to_string(format!("/proc/{pid}/net/{table}")).unwrap_or_default();
        for (port, inode) in established(&text) {
            if sockets.remove(inode) {
                probe.tcp += 1;
                probe.postgres += usize::from(port == postgres_port);
                probe.redis += usize::from(port == redis_port);
            }
        }
    }
    Ok(probe)
}

/// The value of the unlabelled gauge `name` in a Prometheus text exposition.
pub fn gauge(exposition: &str, name: &str) -> Option<f64> {
    exposition.lines().find_map(|line| {
        let (metric, value) = line.split_once(' ')?;
        (metric == name).then(|| value.trim().parse().ok())?
    })
}

/// `(remote port, socket inode)` of the ESTABLISHED entries of a /proc/net/tcp table.
fn established(table: &str) -> impl Iterator<Item = (u16, &str)> {
    table.lines().skip(1).filter_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        // sl local rem st tx:rx tr:when retrnsmt uid timeout inode
        let remote = fields.get(2)?;
        if *fields.get(3)? != "01" {
            return None;
        }
        let port = u16::from_str_radix(remote.rsplit_once(':')?.1, 16).ok()?;
        Some((port, *fields.get(9)?))
    })
}

/// The port of a `scheme://user@host:port/…` URL, or `default`.
pub fn port_of(url: &str, default: u16) -> u16 {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority = rest.split(['/', '?']).next().unwrap_or(rest);
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    host_port
        .rsplit_once(':')
        .filter(|(host, _)| !host.ends_with('[') && !host_port.ends_with(']'))
        .and_then(|(_, port)| port.parse().ok())
        .unwrap_or(default)
}

#[cfg(test)]
mod tests {
    use super::{established, gauge, port_of, probe};

    #[test]
    fn reads_an_unlabelled_gauge() {
        let text = "# TYPE keel_process_heap_allocated_bytes gauge\n\
            keel_process_heap_allocated_bytes 1048576\n\
            keel_process_heap_allocated_bytes_other 7\n\
            keel_jobs{kind=\"mail\"} 3\n";
        assert_eq!(
            gauge(text, "keel_process_heap_allocated_bytes"),
            Some(1048576.0)
        );
        assert_eq!(gauge(text, "keel_jobs"), None);
        assert_eq!(gauge(text, "missing"), None);
    }

    #[test]
    fn reads_established_remote_ports() {
        let table = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n\
           0: 0100007F:A1B2 0100007F:1538 01 00000000:00000000 00:00000000 00000000  1000        0 4242 1\n\
           1: 0100007F:A1B3 0100007F:18EB 01 00000000:00000000 00:00000000 00000000  1000        0 4343 1\n\
           2: 0100007F:1538 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 4444 1\n";
        let rows: Vec<(u16, &str)> = established(table).collect();
        assert_eq!(rows, vec![(5432, "4242"), (6379, "4343")]);
    }

    #[test]
    fn reads_ports_of_urls() {
        assert_eq!(
            port_of("postgres://postgres@127.0.0.1:5433/postgres", 5432),
            5433
        );
        assert_eq!(port_of("postgres://u:p@localhost/db", 5432), 5432);
        assert_eq!(port_of("redis://127.0.0.1:6380", 6379), 6380);
        assert_eq!(port_of("redis://127.0.0.1", 6379), 6379);
    }

    #[test]
    fn probes_this_process() {
        let me = probe(std::process::id(), 5432, 6379);
        assert!(
            me.as_ref().is_ok_and(|p| p.rss_kib > 0 && p.fds > 0),
            "{me:?}"
        );
    }
}
