//! Logging: `tracing` to stdout, pretty or JSON, filtered by `KEEL_LOG`.

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::FmtSpan;

use crate::config::{LogFormat, LogSettings};
use crate::redact::RedactingStdout;

/// Installs the global subscriber; a second call (tests) is a no-op.
///
/// Every line carries the fields of its enclosing spans, so a line logged while serving a
/// request carries that request's `request_id`.
pub fn init(log: &LogSettings) {
    let filter = EnvFilter::try_new(&log.filter).unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_span_events(FmtSpan::NONE)
        .with_target(true)
        // Every line passes the redaction layer before it leaves the process.
        .with_writer(RedactingStdout);
    let _ = match log.format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .try_init(),
        LogFormat::Pretty => builder.compact().try_init(),
    };
}
