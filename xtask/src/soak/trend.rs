//! Windows, trends and the verdict of a soak.

use hdrhistogram::Histogram;

use super::load::NodeWindow;
use super::probe::Probe;

/// After warm-up, the live heap may grow at most this much per minute (MiB) on a node: the leak
/// criterion. (About 75 bytes kept per request at this load would break it.)
pub const HEAP_SLOPE_MAX_MIB: f64 = 0.5;
/// After warm-up, RSS may grow at most this much per minute (MiB) on a node. It is the leak
/// criterion only when a node does not report its live heap: RSS also holds what the allocator
/// keeps after a peak (more requests in flight, a grown pool), which is not a leak.
pub const RSS_SLOPE_MAX_MIB: f64 = 1.0;
/// After warm-up, the fds that are not established connections may grow at most this much per
/// minute on a node (a leak of one file, pipe or socket every two minutes would show).
/// Connections are held to their bounds instead ([`Bounds`]).
pub const FD_SLOPE_MAX: f64 = 0.5;
/// After warm-up, a node's median latency over the last third of the windows may be at most this
/// many times that over the first third.
pub const P50_GROWTH_MAX: f64 = 1.5;
/// The same for the 99th percentile (noisier: a few slow requests move it).
pub const P99_GROWTH_MAX: f64 = 2.0;
/// Most errors, as a fraction of all requests.
pub const ERROR_RATE_MAX: f64 = 0.001;

/// One node in one window.
pub struct NodeSample {
    /// Read at the window's end.
    pub probe: Probe,
    /// What it answered during the window.
    pub answers: NodeWindow,
}

/// One sampling window.
pub struct Window {
    /// Minutes since the load started, at the window's end.
    pub minute: f64,
    /// Per node.
    pub nodes: [NodeSample; 2],
}

/// The most established connections a node may hold at any sample: its pools open connections
/// on demand up to their size, and the load generator up to its keep-alive limit, so those
/// counts move with the load; above these bounds they leak.
#[derive(Debug, Clone, Copy)]
pub struct Bounds {
    /// The size of each node's Postgres pool and of its Redis pool.
    pub pool: usize,
    /// The load generator's keep-alive connections per node.
    pub http: usize,
}

/// Postgres connections a node holds outside its pool: the job queue's and the board feed's
/// `LISTEN` connections.
pub const DEDICATED_POSTGRES: usize = 2;
/// Redis connections a node holds outside its pool: the board feed's subscription.
pub const DEDICATED_REDIS: usize = 1;

impl Bounds {
    /// The most Postgres connections.
    pub fn postgres(&self) -> usize {
        self.pool + DEDICATED_POSTGRES
    }

    /// The most Redis connections.
    pub fn redis(&self) -> usize {
        self.pool + DEDICATED_REDIS
    }

    /// What of `probe` exceeds these bounds, as `(what, held, bound)`.
    fn exceeded(&self, probe: &Probe) -> Vec<(&'static str, usize, usize)> {
        [
            ("Postgres connections", probe.postgres, self.postgres()),
            ("Redis connections", probe.redis, self.redis()),
            ("HTTP connections", probe.http(), self.http),
        ]
        .into_iter()
        .filter(|(_, held, bound)| held > bound)
        .collect()
    }
}

/// One node's trend after warm-up.
pub struct Trend {
    /// Least-squares slope of RSS, MiB per minute.
    pub rss_mib_per_min: f64,
    /// Least-squares slope of the live heap, MiB per minute, when every window reported it.
    pub heap_mib_per_min: Option<f64>,
    /// Least-squares slope of the open fds that are not connections, per minute.
    pub fds_per_min: f64,
    /// Those fds in the first and last window after warm-up.
    pub fds_first: usize,
    pub fds_last: usize,
}

impl Trend {
    /// The trend of `node` over `windows` (those after warm-up); `None` under two windows.
    pub fn of(windows: &[Window], node: usize) -> Option<Self> {
        if windows.len() < 2 {
            return None;
        }
        let minutes: Vec<f64> = windows.iter().map(|w| w.minute).collect();
        let probes: Vec<&Probe> = windows.iter().map(|w| &w.nodes[node].probe).collect();
        let rss: Vec<f64> = probes.iter().map(|p| p.rss_mib()).collect();
        let fds: Vec<f64> = probes.iter().map(|p| p.other_fds() as f64).collect();
        let heap: Option<Vec<f64>> = probes.iter().map(|p| p.heap_mib()).collect();
        Some(Self {
            rss_mib_per_min: slope(&minutes, &rss),
            heap_mib_per_min: heap.map(|heap| slope(&minutes, &heap)),
            fds_per_min: slope(&minutes, &fds),
            fds_first: probes.first().map_or(0, |p| p.other_fds()),
            fds_last: probes.last().map_or(0, |p| p.other_fds()),
        })
    }

    /// Whether memory leaks: the live heap grows faster than allowed, or, where the node does
    /// not report it, RSS does. The message says which.
    pub fn memory_growth(&self) -> Option<String> {
        match self.heap_mib_per_min {
            Some(heap) if heap > HEAP_SLOPE_MAX_MIB => Some(format!(
                "live heap grows {heap:.2} MiB/min after warm-up (limit {HEAP_SLOPE_MAX_MIB})"
            )),
            Some(_) => None,
            None if self.rss_mib_per_min > RSS_SLOPE_MAX_MIB => Some(format!(
                "RSS grows {:.2} MiB/min after warm-up (limit {RSS_SLOPE_MAX_MIB}; no live-heap figure)",
                self.rss_mib_per_min
            )),
            None => None,
        }
    }

    /// Whether fds grow steadily: faster than allowed, and more at the end than at the start.
    pub fn fds_grow(&self) -> bool {
        self.fds_per_min > FD_SLOPE_MAX && self.fds_last > self.fds_first
    }
}

/// Latency early and late after warm-up: the first and the last third of the windows.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LatencyDrift {
    /// p50 early and late, µs.
    pub p50: (u64, u64),
    /// p99 early and late, µs.
    pub p99: (u64, u64),
}

impl LatencyDrift {
    /// The drift of the latencies `pick` takes from each window (merged over the windows of each
    /// third); `None` under three windows or with no latency in a third.
    pub fn of<W>(windows: &[W], pick: impl Fn(&W) -> Vec<&Histogram<u64>>) -> Option<Self> {
        let third = windows.len() / 3;
        if third == 0 {
            return None;
        }
        let merge = |part: &[W]| {
            let mut all = Histogram::<u64>::new(3).ok()?;
            for h in part.iter().flat_map(&pick) {
                all.add(h).ok()?;
            }
            (!all.is_empty()).then_some(all)
        };
        let early = merge(&windows[..third])?;
        let late = merge(&windows[windows.len() - third..])?;
        let at = |q| (early.value_at_quantile(q), late.value_at_quantile(q));
        Some(Self {
            p50: at(0.5),
            p99: at(0.99),
        })
    }

    /// The drift of `node`'s latency over all its routes.
    pub fn of_node(windows: &[Window], node: usize) -> Option<Self> {
        Self::of(windows, |w| vec![&w.nodes[node].answers.latency])
    }

    /// Whether latency grows beyond the limits; the message says which.
    pub fn growth(&self) -> Option<String> {
        let ratio = |(early, late): (u64, u64)| late as f64 / early.max(1) as f64;
        let (p50, p99) = (ratio(self.p50), ratio(self.p99));
        (p50 > P50_GROWTH_MAX || p99 > P99_GROWTH_MAX).then(|| {
            format!(
                "latency grows after warm-up: p50 {p50:.2}× (limit {P50_GROWTH_MAX}×), p99 {p99:.2}× (limit {P99_GROWTH_MAX}×), last third against first"
            )
        })
    }
}

/// The least-squares slope of `y` over `x` (0 when `x` does not vary).
pub fn slope(x: &[f64], y: &[f64]) -> f64 {
    let n = x.len().min(y.len()) as f64;
    if n < 2.0 {
        return 0.0;
    }
    let mean_x = x.iter().sum::<f64>() / n;
    let mean_y = y.iter().sum::<f64>() / n;
    let (mut num, mut den) = (0.0, 0.0);
    for (xi, yi) in x.iter().zip(y) {
        num += (xi - mean_x) * (yi - mean_y);
        den += (xi - mean_x) * (xi - mean_x);
    }
    if den == 0.0 { 0.0 } else { num / den }
}

/// Requests and errors over every window and node.
pub fn totals(windows: &[Window]) -> (u64, u64) {
    windows
        .iter()
        .flat_map(|w| &w.nodes)
        .fold((0, 0), |(requests, errors), n| {
            (
                requests + n.answers.requests,
                errors + n.answers.error_count(),
            )
        })
}

/// Why the soak fails (empty: it passes).
pub fn failures(windows: &[Window], warm_up: usize, bounds: &Bounds) -> Vec<String> {
    let mut out = Vec::new();
    for (node, name) in ["A", "B"].iter().enumerate() {
        let peak = windows
            .iter()
            .flat_map(|w| bounds.exceeded(&w.nodes[node].probe))
            .max_by_key(|(_, held, bound)| held - bound);
        if let Some((what, held, bound)) = peak {
            out.push(format!("node {name}: {held} {what} (at most {bound})"));
        }
    }
    let after = windows.get(warm_up..).unwrap_or_default();
    for (node, name) in ["A", "B"].iter().enumerate() {
        let Some(trend) = Trend::of(after, node) else {
            continue;
        };
        if let Some(growth) = trend.memory_growth() {
            out.push(format!("node {name}: {growth}"));
        }
        let drift = LatencyDrift::of_node(after, node);
        if let Some(growth) = drift.and_then(|d| d.growth()) {
            out.push(format!("node {name}: {growth}"));
        }
        if trend.fds_grow() {
            out.push(format!(
                "node {name}: fds other than connections grow {:.2}/min after warm-up ({} → {}, limit {FD_SLOPE_MAX}/min)",
                trend.fds_per_min, trend.fds_first, trend.fds_last
            ));
        }
    }
    let (requests, errors) = totals(windows);
    if errors as f64 > ERROR_RATE_MAX * requests as f64 {
        out.push(format!(
            "{errors} errors in {requests} requests (over {:.1} %)",
            ERROR_RATE_MAX * 100.0
        ));
    }
    if requests == 0 {
        out.push("no request was answered".to_owned());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::{Bounds, LatencyDrift, Probe, Trend, slope};

    #[test]
    fn the_live_heap_decides_a_leak_where_it_is_known() {
        let trend = |rss, heap| Trend {
            rss_mib_per_min: rss,
            heap_mib_per_min: heap,
            fds_per_min: 0.0,
            fds_first: 0,
            fds_last: 0,
        };
        // RSS kept by the allocator after a peak, with a flat heap: no leak.
        assert_eq!(trend(1.2, Some(0.05)).memory_growth(), None);
        assert!(
            trend(0.3, Some(0.8))
                .memory_growth()
                .unwrap()
                .contains("live heap")
        );
        assert!(trend(1.2, None).memory_growth().unwrap().contains("RSS"));
        assert_eq!(trend(0.4, None).memory_growth(), None);
    }

    #[test]
    fn connections_are_held_to_their_bounds() {
        let bounds = Bounds { pool: 8, http: 8 };
        let probe = Probe {
            rss_kib: 1,
            fds: 60,
            postgres: 10,
            redis: 9,
            tcp: 27,
            heap_bytes: None,
        };
        assert!(bounds.exceeded(&probe).is_empty());
        assert_eq!(probe.other_fds(), 33);
        let leaking = Probe {
            postgres: 11,
            tcp: 28,
            ..probe
        };
        assert_eq!(
            bounds.exceeded(&leaking),
            vec![("Postgres connections", 11, 10)]
        );
        let many_clients = Probe { tcp: 28, ..probe };
        assert_eq!(
            bounds.exceeded(&many_clients),
            vec![("HTTP connections", 9, 8)]
        );
    }

    #[test]
    fn latency_drift_compares_the_last_third_with_the_first() {
        let window = |micros: u64| {
            let mut h = hdrhistogram::Histogram::<u64>::new(3).unwrap();
            h.record_n(micros, 100).unwrap();
            h
        };
        let steady: Vec<_> = [1000, 1100, 900, 1000, 1050, 1000].map(window).into();
        fn pick(h: &hdrhistogram::Histogram<u64>) -> Vec<&hdrhistogram::Histogram<u64>> {
            vec![h]
        }
        let drift = LatencyDrift::of(&steady, pick).unwrap();
        assert_eq!(drift.growth(), None);
        let slowing: Vec<_> = [1000, 1000, 1400, 1800, 2400, 2600].map(window).into();
        let drift = LatencyDrift::of(&slowing, pick).unwrap();
        assert!(drift.p50.1 > 2 * drift.p50.0);
        assert!(drift.growth().unwrap().contains("p50"));
        assert_eq!(LatencyDrift::of(&steady[..2], pick), None);
    }

    #[test]
    fn fits_a_line() {
        let x = [0.5, 1.0, 1.5, 2.0];
        let y = [10.0, 11.0, 12.0, 13.0];
        assert!((slope(&x, &y) - 2.0).abs() < 1e-9);
        assert_eq!(slope(&[1.0, 1.0], &[3.0, 4.0]), 0.0);
        assert_eq!(slope(&[1.0], &[3.0]), 0.0);
        let flat = [20.0, 21.0, 20.0, 21.0];
        assert!(slope(&x, &flat).abs() < 0.5);
    }
}
