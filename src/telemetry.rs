//! OpenTelemetry traces, off by default. They turn on with the standard
//! variables: `OTEL_EXPORTER_OTLP_ENDPOINT` (or
//! `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`), OTLP over HTTP/protobuf (to
//! `<endpoint>/v1/traces`, as the OTLP exporter specification says);
//! `OTEL_SDK_DISABLED=true` keeps them off; `OTEL_SERVICE_NAME` and
//! `OTEL_RESOURCE_ATTRIBUTES` name the service (default `xct-operator`).
//! An `https` endpoint is verified against the system's roots and, when
//! `OTEL_EXPORTER_OTLP_CERTIFICATE` (or `..._TRACES_CERTIFICATE`) names a
//! PEM file, its CA certificates too; a collector that requires a client
//! certificate gets the one `OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE` and
//! `OTEL_EXPORTER_OTLP_CLIENT_KEY` name; `OTEL_EXPORTER_OTLP_TIMEOUT` (or
//! `..._TRACES_TIMEOUT`, milliseconds) bounds each export.
//!
//! What is exported: the operator's own spans (target `xct`), i.e. the
//! reconcile span and each step's `step` > `chat` / `execute_tool` spans
//! (see [`crate::engine::spans`]), batched on a background thread.

use std::time::Duration;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::Layer;
use tracing_subscriber::filter::Targets;

/// The service name when `OTEL_SERVICE_NAME` is unset.
const SERVICE_NAME: &str = "xct-operator";
/// The spans exported: this crate's, at info and above.
const EXPORTED_TARGET: &str = "xct";

/// The PEM file of CA certificates that verify the collector, by the OTLP
/// exporter specification's variables (the signal's own first).
const CERTIFICATE_VARS: [&str; 2] = ["OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE", "OTEL_EXPORTER_OTLP_CERTIFICATE"];
/// The client certificate and its key (PEM) for a collector that requires
/// one (mutual TLS): both or neither.
const CLIENT_CERTIFICATE_VARS: [&str; 2] =
    ["OTEL_EXPORTER_OTLP_TRACES_CLIENT_CERTIFICATE", "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE"];
const CLIENT_KEY_VARS: [&str; 2] = ["OTEL_EXPORTER_OTLP_TRACES_CLIENT_KEY", "OTEL_EXPORTER_OTLP_CLIENT_KEY"];
/// How long one export may take, in milliseconds (the same order).
const TIMEOUT_VARS: [&str; 2] = ["OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "OTEL_EXPORTER_OTLP_TIMEOUT"];
/// The specification's default export timeout.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// Why tracing could not start.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("OpenTelemetry exporter: {0}")]
    Exporter(String),
    /// A certificate or key file named by a variable cannot be used.
    #[error("{variable}={path}: {reason}")]
    Certificate { variable: &'static str, path: String, reason: String },
    /// One of a client certificate and its key is named, not the other.
    #[error("{given} is set but {missing} is not: a client certificate needs its key, and the key its certificate")]
    HalfIdentity { given: &'static str, missing: &'static str },
    /// A variable that must be a number of milliseconds is not one.
    #[error("{variable}={value:?} is not a timeout in milliseconds")]
    Timeout { variable: &'static str, value: String },
}

impl TelemetryError {
    /// Static category for logs.
    pub fn category(&self) -> &'static str {
        match self {
            TelemetryError::Exporter(_) => "exporter",
            TelemetryError::Certificate { .. } | TelemetryError::HalfIdentity { .. } => "certificate",
            TelemetryError::Timeout { .. } => "timeout",
        }
    }
}

/// The first of `vars` that is set (not blank), and its value.
fn first_set(vars: &[&'static str]) -> Option<(&'static str, String)> {
    vars.iter().find_map(|v| std::env::var(v).ok().filter(|s| !s.trim().is_empty()).map(|s| (*v, s)))
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
    use opentelemetry_otlp::WithHttpConfig;
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_http_client(http_client()?)
        .build()
        .map_err(|e| TelemetryError::Exporter(e.to_string()))?;
    Ok(layer(SdkTracerProvider::builder().with_batch_exporter(exporter)))
}

/// The PEM file named by `variable`, read.
fn read_pem(variable: &'static str, path: &str) -> Result<Vec<u8>, TelemetryError> {
    std::fs::read(path).map_err(|e| TelemetryError::Certificate { variable, path: path.into(), reason: e.to_string() })
}

/// The client certificate and key of [`CLIENT_CERTIFICATE_VARS`] and
/// [`CLIENT_KEY_VARS`], if named.
fn identity() -> Result<Option<reqwest::Identity>, TelemetryError> {
    let (certificate, key) = match (first_set(&CLIENT_CERTIFICATE_VARS), first_set(&CLIENT_KEY_VARS)) {
        (None, None) => return Ok(None),
        (Some((given, _)), None) => return Err(TelemetryError::HalfIdentity { given, missing: CLIENT_KEY_VARS[1] }),
        (None, Some((given, _))) => {
            return Err(TelemetryError::HalfIdentity { given, missing: CLIENT_CERTIFICATE_VARS[1] });
        }
        (Some(certificate), Some(key)) => (certificate, key),
    };
    let mut pem = read_pem(certificate.0, &certificate.1)?;
    pem.push(b'\n');
    pem.extend(read_pem(key.0, &key.1)?);
    // A file without a key, or without a certificate, is refused here.
    reqwest::Identity::from_pem(&pem).map(Some).map_err(|e| TelemetryError::Certificate {
        variable: key.0,
        path: key.1,
        reason: format!("{e} (read with {}={})", certificate.0, certificate.1),
    })
}

/// The exporter's HTTP client: TLS verified against the system's roots
/// plus the CA file of [`CERTIFICATE_VARS`], with the client certificate of
/// [`identity`] if one is named, each export bounded by [`TIMEOUT_VARS`]
/// (the client the exporter would make itself has no TLS).
fn http_client() -> Result<reqwest::blocking::Client, TelemetryError> {
    // Already installed when kube's client came first; ring either way.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let timeout = match first_set(&TIMEOUT_VARS) {
        None => DEFAULT_TIMEOUT,
        Some((variable, value)) => {
            value.trim().parse().map(Duration::from_millis).map_err(|_| TelemetryError::Timeout { variable, value })?
        }
    };
    let mut client = reqwest::blocking::Client::builder().timeout(timeout);
    if let Some((variable, path)) = first_set(&CERTIFICATE_VARS) {
        let refused = |reason: String| TelemetryError::Certificate { variable, path: path.clone(), reason };
        let pem = read_pem(variable, &path)?;
        let certificates = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| refused(e.to_string()))?;
        if certificates.is_empty() {
            return Err(refused("holds no PEM certificate".into()));
        }
        client = client.tls_certs_merge(certificates);
    }
    if let Some(identity) = identity()? {
        client = client.identity(identity);
    }
    client.build().map_err(|e| TelemetryError::Exporter(format!("cannot make its HTTP client: {e}")))
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
