//! The process-wide Prometheus recorder and the names of keel's HTTP metrics.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Counter of finished requests, labelled `method`, `route`, `status_class`.
pub const REQUESTS_TOTAL: &str = "keel_http_requests_total";
/// Histogram of request latency in seconds, same labels.
pub const REQUEST_DURATION: &str = "keel_http_request_duration_seconds";

/// Latency buckets in seconds: fine below 10 ms, where keel's routes should live.
const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Gauge: bytes of heap the allocator has handed out and not had back (the live heap), read at
/// each scrape. A leak shows here as steady growth; RSS also keeps what the allocator retains.
pub const HEAP_ALLOCATED_BYTES: &str = "keel_process_heap_allocated_bytes";
/// Gauge: bytes of physical memory the allocator holds (live heap, its metadata and retained
/// pages), read at each scrape.
pub const HEAP_RESIDENT_BYTES: &str = "keel_process_heap_resident_bytes";

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
static HEAP_PROBE: OnceLock<HeapProbe> = OnceLock::new();

/// The allocator's own figures, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeapFigures {
    /// Live heap: handed out and not yet freed.
    pub allocated: u64,
    /// Physical memory the allocator holds.
    pub resident: u64,
}

/// Reads the process allocator's figures; `None` when it cannot tell right now.
pub type HeapProbe = fn() -> Option<HeapFigures>;

/// Installs the probe behind [`HEAP_ALLOCATED_BYTES`] and [`HEAP_RESIDENT_BYTES`] (the `keel`
/// binary does when built with its `jemalloc` feature). Only the process's global allocator
/// knows its heap, so a library cannot; the first probe installed stays.
pub fn set_heap_probe(probe: HeapProbe) {
    let _ = HEAP_PROBE.set(probe);
}

/// Sets the heap gauges from the installed probe, if any.
pub fn record_heap() {
    if let Some(figures) = HEAP_PROBE.get().and_then(|probe| probe()) {
        metrics::gauge!(HEAP_ALLOCATED_BYTES).set(figures.allocated as f64);
        metrics::gauge!(HEAP_RESIDENT_BYTES).set(figures.resident as f64);
    }
}

/// The global recorder's handle, installed on first use.
///
/// The `metrics` recorder is process-global: installing it once lets tests start many apps
/// in one process. If another recorder was installed first, keel's metrics render empty
/// rather than failing start-up.
pub fn handle() -> &'static PrometheusHandle {
    HANDLE.get_or_init(|| {
        let builder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Full(REQUEST_DURATION.to_owned()), LATENCY_BUCKETS)
            .unwrap_or_else(|_| PrometheusBuilder::new());
        let recorder = builder.build_recorder();
        let handle = recorder.handle();
        if metrics::set_global_recorder(recorder).is_err() {
            tracing::warn!(
                "a metrics recorder was already installed; /metrics will not show keel's metrics"
            );
        }
        handle
    })
}

/// `2xx`, `4xx`, … for a status code.
pub fn status_class(status: u16) -> &'static str {
    match status {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_scrape_reports_the_installed_heap_probe() {
        handle();
        set_heap_probe(|| {
            Some(HeapFigures {
                allocated: 12_345,
                resident: 67_890,
            })
        });
        record_heap();
        let text = handle().render();
        assert!(
            text.contains("keel_process_heap_allocated_bytes 12345"),
            "{text}"
        );
        assert!(
            text.contains("keel_process_heap_resident_bytes 67890"),
            "{text}"
        );
    }
}
