//! Logging set-up, the metrics and the per-call span. Spans and events carry an allow-list of
//! fields and never a location.

pub mod metrics;
pub mod rpc;

use tracing_subscriber::{EnvFilter, fmt};

use crate::config::LogFormat;

/// Installs the global subscriber: `RUST_LOG` filters (default `info`), text or JSON lines on
/// standard error.
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let installed = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
    // Already installed (a second init in one process) is fine.
    drop(installed);
}
