//! OpenTelemetry traces, off by default. They turn on with the standard
//! variables: `OTEL_EXPORTER_OTLP_ENDPOINT` (or
//! `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`); `OTEL_EXPORTER_OTLP_PROTOCOL` (or
//! `..._TRACES_PROTOCOL`) picks the transport: `http/protobuf` (the
//! default, to `<endpoint>/v1/traces` as the OTLP exporter specification
//! says), `http/json`, or `grpc` (to the endpoint itself, usually port
//! 4317); any other value turns traces off with a warning naming it.
//! `OTEL_SDK_DISABLED=true` keeps them off; `OTEL_SERVICE_NAME` and
//! `OTEL_RESOURCE_ATTRIBUTES` name the service (default `xct-operator`);
//! `OTEL_EXPORTER_OTLP_HEADERS` adds headers (gRPC metadata) to each export.
//! Over either transport, an `https` endpoint is verified against the
//! system's roots and, when `OTEL_EXPORTER_OTLP_CERTIFICATE` (or
//! `..._TRACES_CERTIFICATE`) names a PEM file, its CA certificates too; a
//! collector that requires a client certificate gets the one
//! `OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE` and
//! `OTEL_EXPORTER_OTLP_CLIENT_KEY` name; `OTEL_EXPORTER_OTLP_TIMEOUT` (or
//! `..._TRACES_TIMEOUT`, milliseconds) bounds each export. Each file is
//! read and checked once, before either transport is made.
//!
//! What is exported: the operator's own spans (target `xct`), i.e. the
//! reconcile span and each step's `step` > `chat` / `execute_tool` spans
//! (see [`crate::engine::spans`]), batched on a background thread.

use std::time::Duration;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{Protocol, WithExportConfig as _};
use opentelemetry_sdk::trace::SdkTracerProvider;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
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
/// The transport, by the specification's variables (the signal's own first).
const PROTOCOL_VARS: [&str; 2] = ["OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"];
/// The threads of the runtime the gRPC transport's connections run on
/// (one export at a time, from the batch exporter's own thread).
const GRPC_RUNTIME_THREADS: usize = 1;

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
    /// The transport named is not one of the specification's three.
    #[error("{variable}={value:?} is not an OTLP protocol: grpc, http/protobuf or http/json")]
    Protocol { variable: &'static str, value: String },
}

impl TelemetryError {
    /// Static category for logs.
    pub fn category(&self) -> &'static str {
        match self {
            TelemetryError::Exporter(_) => "exporter",
            TelemetryError::Certificate { .. } | TelemetryError::HalfIdentity { .. } => "certificate",
            TelemetryError::Timeout { .. } => "timeout",
            TelemetryError::Protocol { .. } => "protocol",
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

/// Flushes and stops the exporter when dropped (at the end of `main`),
/// then the gRPC transport's runtime, if there is one.
pub struct Telemetry {
    provider: SdkTracerProvider,
    _runtime: Option<tokio::runtime::Runtime>,
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        let _ = self.provider.shutdown();
    }
}

/// How spans travel to the collector ([`PROTOCOL_VARS`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Transport {
    Http(Protocol),
    Grpc,
}

fn transport() -> Result<Transport, TelemetryError> {
    let Some((variable, value)) = first_set(&PROTOCOL_VARS) else {
        return Ok(Transport::Http(Protocol::HttpBinary));
    };
    match value.trim() {
        "http/protobuf" => Ok(Transport::Http(Protocol::HttpBinary)),
        "http/json" => Ok(Transport::Http(Protocol::HttpJson)),
        "grpc" => Ok(Transport::Grpc),
        _ => Err(TelemetryError::Protocol { variable, value }),
    }
}

/// What the variables say of an export, read and checked once for either
/// transport: the timeout, the extra CA certificates (PEM, at least one)
/// and the client certificate and its key (PEM).
struct Settings {
    transport: Transport,
    timeout: Duration,
    ca: Option<Vec<u8>>,
    identity: Option<ClientIdentity>,
}

/// A client certificate (its chain) and its private key, PEM.
struct ClientIdentity {
    chain: Vec<u8>,
    key: Vec<u8>,
}

impl Settings {
    fn from_env() -> Result<Settings, TelemetryError> {
        let transport = transport()?;
        let timeout = match first_set(&TIMEOUT_VARS) {
            None => DEFAULT_TIMEOUT,
            Some((variable, value)) => value
                .trim()
                .parse()
                .map(Duration::from_millis)
                .map_err(|_| TelemetryError::Timeout { variable, value })?,
        };
        let ca = first_set(&CERTIFICATE_VARS).map(|(variable, path)| certificates(variable, &path)).transpose()?;
        Ok(Settings { transport, timeout, ca, identity: identity()? })
    }
}

/// The exporting layer for a tracing subscriber, and its guard. Call
/// outside an async runtime: the exporter's blocking HTTP client may not
/// be made (or dropped) inside one, and the gRPC transport gets its own.
pub fn otlp_layer<S>() -> Result<(impl Layer<S> + Send + Sync, Telemetry), TelemetryError>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a> + Send + Sync,
{
    let settings = Settings::from_env()?;
    let built = |r: Result<opentelemetry_otlp::SpanExporter, opentelemetry_otlp::ExporterBuildError>| {
        r.map_err(|e| TelemetryError::Exporter(e.to_string()))
    };
    let (exporter, runtime) = match settings.transport {
        Transport::Http(protocol) => {
            use opentelemetry_otlp::WithHttpConfig;
            let builder = opentelemetry_otlp::SpanExporter::builder().with_http().with_protocol(protocol);
            (built(builder.with_http_client(http_client(&settings)?).build())?, None)
        }
        Transport::Grpc => {
            use opentelemetry_otlp::WithTonicConfig;
            // tonic's connections are tasks of a Tokio runtime: this one,
            // kept as long as the exporter (the batch exporter's thread
            // waits on each export from outside any runtime).
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(GRPC_RUNTIME_THREADS)
                .thread_name("otlp-grpc")
                .enable_all()
                .build()
                .map_err(|e| TelemetryError::Exporter(format!("cannot start the gRPC runtime: {e}")))?;
            let builder = opentelemetry_otlp::SpanExporter::builder()
                .with_tonic()
                .with_timeout(settings.timeout)
                .with_tls_config(grpc_tls(&settings));
            let exporter = {
                let _inside = runtime.enter();
                built(builder.build())?
            };
            (exporter, Some(runtime))
        }
    };
    let (layer, provider) = layer_of(SdkTracerProvider::builder().with_batch_exporter(exporter));
    Ok((layer, Telemetry { provider, _runtime: runtime }))
}

/// The PEM file named by `variable`, read.
fn read_pem(variable: &'static str, path: &str) -> Result<Vec<u8>, TelemetryError> {
    std::fs::read(path).map_err(|e| TelemetryError::Certificate { variable, path: path.into(), reason: e.to_string() })
}

/// The PEM file of certificates named by `variable`: at least one, each
/// well formed.
fn certificates(variable: &'static str, path: &str) -> Result<Vec<u8>, TelemetryError> {
    let refused = |reason: String| TelemetryError::Certificate { variable, path: path.into(), reason };
    let pem = read_pem(variable, path)?;
    let found =
        CertificateDer::pem_slice_iter(&pem).collect::<Result<Vec<_>, _>>().map_err(|e| refused(e.to_string()))?;
    if found.is_empty() {
        return Err(refused("holds no PEM certificate".into()));
    }
    Ok(pem)
}

/// The client certificate and key of [`CLIENT_CERTIFICATE_VARS`] and
/// [`CLIENT_KEY_VARS`], if named: both or neither, each file holding one.
fn identity() -> Result<Option<ClientIdentity>, TelemetryError> {
    let (certificate, key) = match (first_set(&CLIENT_CERTIFICATE_VARS), first_set(&CLIENT_KEY_VARS)) {
        (None, None) => return Ok(None),
        (Some((given, _)), None) => return Err(TelemetryError::HalfIdentity { given, missing: CLIENT_KEY_VARS[1] }),
        (None, Some((given, _))) => {
            return Err(TelemetryError::HalfIdentity { given, missing: CLIENT_CERTIFICATE_VARS[1] });
        }
        (Some(certificate), Some(key)) => (certificate, key),
    };
    let chain = certificates(certificate.0, &certificate.1)?;
    let pem = read_pem(key.0, &key.1)?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|e| TelemetryError::Certificate {
        variable: key.0,
        path: key.1,
        reason: format!("holds no PEM private key: {e}"),
    })?;
    Ok(Some(ClientIdentity { chain, key: pem }))
}

/// The HTTP transport's client: TLS verified against the system's roots
/// plus [`Settings::ca`], with [`Settings::identity`] if one is named, each
/// export bounded by [`Settings::timeout`] (the client the exporter would
/// make itself has no TLS).
fn http_client(settings: &Settings) -> Result<reqwest::blocking::Client, TelemetryError> {
    // Already installed when kube's client came first; ring either way.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let failed = |e: reqwest::Error| TelemetryError::Exporter(format!("cannot make its HTTP client: {e}"));
    let mut client = reqwest::blocking::Client::builder().timeout(settings.timeout);
    if let Some(pem) = &settings.ca {
        client = client.tls_certs_merge(reqwest::Certificate::from_pem_bundle(pem).map_err(failed)?);
    }
    if let Some(ClientIdentity { chain, key }) = &settings.identity {
        client =
            client.identity(reqwest::Identity::from_pem(&[chain.as_slice(), b"\n", key].concat()).map_err(failed)?);
    }
    client.build().map_err(failed)
}

/// The gRPC transport's TLS, used where the endpoint is `https`: the same
/// roots, CA certificates and client certificate as [`http_client`]. The
/// system's roots are added where it has any (tonic's own `native roots`
/// refuse to start without one, so an image with no CA bundle that names
/// its collector's CA would export nothing).
fn grpc_tls(settings: &Settings) -> tonic::transport::ClientTlsConfig {
    let system = rustls_native_certs::load_native_certs().certs;
    let anchors = system.iter().filter_map(|c| webpki::anchor_from_trusted_cert(c).ok().map(|a| a.to_owned()));
    let mut tls = tonic::transport::ClientTlsConfig::new().trust_anchors(anchors);
    if let Some(pem) = &settings.ca {
        tls = tls.ca_certificate(tonic::transport::Certificate::from_pem(pem));
    }
    if let Some(ClientIdentity { chain, key }) = &settings.identity {
        tls = tls.identity(tonic::transport::Identity::from_pem(chain, key));
    }
    tls
}

/// A layer exporting through `provider` (tests pass an in-memory exporter).
pub fn layer<S>(provider: opentelemetry_sdk::trace::TracerProviderBuilder) -> (impl Layer<S> + Send + Sync, Telemetry)
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a> + Send + Sync,
{
    let (layer, provider) = layer_of(provider);
    (layer, Telemetry { provider, _runtime: None })
}

fn layer_of<S>(
    provider: opentelemetry_sdk::trace::TracerProviderBuilder,
) -> (impl Layer<S> + Send + Sync, SdkTracerProvider)
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
    (layer, provider)
}
