//! Optional export of the spans over OTLP/gRPC (`--otlp-endpoint`), off by default: the
//! per-call `rpc` span and the spans under it go to an OpenTelemetry collector, as children of
//! the caller's trace when the call carried a W3C `traceparent`. Spans carry the same
//! allow-listed fields as the logs: never a user's position.

use std::{
    sync::atomic::{AtomicBool, Ordering},
    time::Duration,
};

use http::HeaderMap;
use opentelemetry::{
    propagation::{Extractor, TextMapPropagator},
    trace::TracerProvider as _,
};
use opentelemetry_otlp::{SpanExporter, WithExportConfig};
use opentelemetry_sdk::{
    Resource,
    propagation::TraceContextPropagator,
    trace::{BatchConfigBuilder, BatchSpanProcessor, SdkTracer, SdkTracerProvider},
};
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// How long spans wait in the batch before they are sent.
const EXPORT_DELAY: Duration = Duration::from_secs(1);
/// The bound of one export call to the collector.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(5);

/// The exporter's life: shut it down at exit to send what is still batched.
pub struct Exporter {
    provider: SdkTracerProvider,
}

/// Why the exporter could not be built.
#[derive(Debug, thiserror::Error)]
#[error("--otlp-endpoint: {0}")]
pub struct ExportError(String);

/// Whether spans are being exported (an exporter was started in this process).
static EXPORTING: AtomicBool = AtomicBool::new(false);

/// Whether spans are being exported.
pub fn exporting() -> bool {
    EXPORTING.load(Ordering::Relaxed)
}

/// Starts exporting to `endpoint` (e.g. `http://collector:4317`); must run inside the tokio
/// runtime. Returns the exporter and the tracer for the tracing layer.
pub fn start(endpoint: &str) -> Result<(Exporter, SdkTracer), ExportError> {
    let exporter = SpanExporter::builder()
        .with_tonic()
        .with_endpoint(endpoint)
        .with_timeout(EXPORT_TIMEOUT)
        .build()
        .map_err(|e| ExportError(e.to_string()))?;
    let batch = BatchConfigBuilder::default()
        .with_scheduled_delay(EXPORT_DELAY)
        .build();
    let processor = BatchSpanProcessor::builder(exporter)
        .with_batch_config(batch)
        .build();
    let resource = Resource::builder().with_service_name("vicinity").build();
    let provider = SdkTracerProvider::builder()
        .with_span_processor(processor)
        .with_resource(resource)
        .build();
    let tracer = provider.tracer("vicinity");
    EXPORTING.store(true, Ordering::Relaxed);
    Ok((Exporter { provider }, tracer))
}

impl Exporter {
    /// Sends what is batched and stops.
    pub fn shutdown(self) {
        if let Err(error) = self.provider.shutdown() {
            tracing::warn!(%error, "OTLP export did not shut down cleanly");
        }
    }
}

/// Makes the caller's trace (its `traceparent`) the OpenTelemetry parent of `span`. Without
/// an exporter, or without a valid header, nothing changes.
pub fn adopt_parent(span: &Span, headers: &HeaderMap) {
    let context = TraceContextPropagator::new().extract(&Headers(headers));
    // Fails only when the span is disabled or already started: then there is nothing to do.
    drop(span.set_parent(context));
}

/// Reads W3C trace context headers.
struct Headers<'a>(&'a HeaderMap);

impl Extractor for Headers<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}
