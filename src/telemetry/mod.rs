//! Logging set-up, the metrics and the per-call span. Spans and events carry an allow-list of
//! fields and never a location.

pub mod metrics;
pub mod otlp;
pub mod process;
pub mod rpc;

use std::io::IsTerminal;

use tracing_subscriber::{
    EnvFilter, Layer, filter::filter_fn, fmt, layer::SubscriberExt, util::SubscriberInitExt,
};

use crate::config::LogFormat;

/// Whether text logs are coloured: only on a terminal, and never when `NO_COLOR` is set to
/// anything but the empty string (no-color.org), so a log file or a collector gets no escape
/// codes.
fn colour(terminal: bool) -> bool {
    terminal && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// Installs the global subscriber: `RUST_LOG` filters (default `info`), text or JSON lines on
/// standard error, and with `otlp` (an exporter's tracer) the spans exported over OTLP too.
pub fn init(format: LogFormat, otlp: Option<opentelemetry_sdk::trace::SdkTracer>) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let lines = match format {
        LogFormat::Text => fmt::layer()
            .with_ansi(colour(std::io::stderr().is_terminal()))
            .with_writer(std::io::stderr)
            .boxed(),
        LogFormat::Json => fmt::layer()
            .json()
            .flatten_event(true)
            .with_writer(std::io::stderr)
            .boxed(),
    };
    // Spans only, and only vicinity's own: events (the audit trail names users) and the
    // transport's spans (the exporter would trace itself) stay out of the export.
    let ours = filter_fn(|meta| meta.is_span() && meta.target().starts_with("vicinity"));
    let spans = otlp.map(|tracer| {
        tracing_opentelemetry::layer()
            .with_tracer(tracer)
            .with_filter(ours)
    });
    // `geo` (linked for `vicinity places compile`) logs coordinates at DEBUG: dropped
    // whatever RUST_LOG asks for (a directive could be outranked by a more specific one).
    let no_geo = filter_fn(|meta| !is_geo(meta.target()));
    let installed = tracing_subscriber::registry()
        .with(no_geo)
        .with(filter)
        .with(lines)
        .with(spans)
        .try_init();
    // Already installed (a second init in one process) is fine.
    drop(installed);
}

/// Whether `target` is the `geo` crate's.
fn is_geo(target: &str) -> bool {
    target == "geo" || target.starts_with("geo::")
}

#[cfg(test)]
mod geo_tests {
    use super::is_geo;

    #[test]
    fn the_geo_crate_is_kept_out_of_every_log() {
        assert!(is_geo("geo"));
        assert!(is_geo(
            "geo::algorithm::relate::geomgraph::edge_end_bundle_star"
        ));
        assert!(!is_geo("geometry") && !is_geo("vicinity::places"));
    }
}
