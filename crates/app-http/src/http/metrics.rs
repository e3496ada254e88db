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

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

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
