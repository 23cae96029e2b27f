//! OpenTelemetry traces, off by default. They turn on with the standard
//! variables: `OTEL_EXPORTER_OTLP_ENDPOINT` (or
//! `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`), OTLP over HTTP/protobuf (to
//! `<endpoint>/v1/traces`, as the OTLP exporter specification says);
//! `OTEL_SDK_DISABLED=true` keeps them off; `OTEL_SERVICE_NAME` and
//! `OTEL_RESOURCE_ATTRIBUTES` name the service (default `xct-operator`).
//!
//! What is exported: the operator's own spans (target `xct`), i.e. the
//! reconcile span and each step's `step` > `chat` / `execute_tool` spans
//! (see [`crate::engine::spans`]), batched on a background thread.

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::Layer;
use tracing_subscriber::filter::Targets;

/// The service name when `OTEL_SERVICE_NAME` is unset.
const SERVICE_NAME: &str = "xct-operator";
/// The spans exported: this crate's, at info and above.
const EXPORTED_TARGET: &str = "xct";

/// Why tracing could not start.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("OpenTelemetry exporter: {0}")]
    Exporter(String),
}

impl TelemetryError {
    /// Static category for logs.
    pub fn category(&self) -> &'static str {
        match self {
            TelemetryError::Exporter(_) => "exporter",
        }
    }
}

/// Whether the environment asks for traces.
pub fn requested() -> bool {
    let set = |k: &str| std::env::var(k).is_ok_and(|v| !v.trim().is_empty());
    let disabled = std::env::var("OTEL_SDK_DISABLED").is_ok_and(|v| v.trim().eq_ignore_ascii_case("true"));
    !disabled && (set("OTEL_EXPORTER_OTLP_ENDPOINT") || set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))
}

/// Flushes and stops the exporter when dropped (at the end of `main`).
pub struct Telemetry(SdkTracerProvider);

impl Drop for Telemetry {
    fn drop(&mut self) {
        let _ = self.0.shutdown();
    }
}

/// The exporting layer for a tracing subscriber, and its guard. Call
/// outside an async runtime: the exporter's blocking HTTP client may not
/// be made (or dropped) inside one.
pub fn otlp_layer<S>() -> Result<(impl Layer<S> + Send + Sync, Telemetry), TelemetryError>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a> + Send + Sync,
{
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .build()
        .map_err(|e| TelemetryError::Exporter(e.to_string()))?;
    Ok(layer(SdkTracerProvider::builder().with_batch_exporter(exporter)))
}

/// A layer exporting through `provider` (tests pass an in-memory exporter).
pub fn layer<S>(provider: opentelemetry_sdk::trace::TracerProviderBuilder) -> (impl Layer<S> + Send + Sync, Telemetry)
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a> + Send + Sync,
{
    let mut resource = opentelemetry_sdk::Resource::builder();
    if std::env::var("OTEL_SERVICE_NAME").is_err() {
        resource = resource.with_service_name(SERVICE_NAME);
    }
    let provider = provider.with_resource(resource.build()).build();
    let tracer = provider.tracer(SERVICE_NAME);
    // Only the attributes the spans declare: no thread, source location or
    // busy/idle times on every span.
    let layer = tracing_opentelemetry::layer()
        .with_tracer(tracer)
        .with_threads(false)
        .with_location(false)
        .with_tracked_inactivity(false)
        .with_filter(Targets::new().with_target(EXPORTED_TARGET, tracing::Level::INFO));
    (layer, Telemetry(provider))
}
