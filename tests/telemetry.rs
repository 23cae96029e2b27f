//! OpenTelemetry traces: each step is a `step` span with a `chat <model>`
//! child (GenAI attributes: operation, provider, model, tokens in and out)
//! and, when a tool ran, an `execute_tool <tool>` child (its error code as
//! `error.type`); no prompt, argument or result reaches an attribute. With
//! `OTEL_EXPORTER_OTLP_ENDPOINT` set, the `xct` binary sends them as OTLP
//! HTTP/protobuf to `<endpoint>/v1/traces` (JSON, or gRPC to the endpoint,
//! as `OTEL_EXPORTER_OTLP_PROTOCOL` says), over TLS where the endpoint is
//! `https`; `OTEL_SDK_DISABLED=true` stops it.

mod support;

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use opentelemetry::Value;
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use tracing_subscriber::layer::SubscriberExt;
use xct::model::ScriptedDecider;

fn attrs(span: &SpanData) -> HashMap<String, Value> {
    span.attributes.iter().map(|kv| (kv.key.to_string(), kv.value.clone())).collect()
}

const SECRET_CONTENT: &str = "s3cr3t-content-never-in-a-span";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_is_a_span_with_chat_and_execute_tool_children() {
    let exporter = InMemorySpanExporter::default();
    let (layer, telemetry) = xct::telemetry::layer(SdkTracerProvider::builder().with_simple_exporter(exporter.clone()));
    let _default = tracing::subscriber::set_default(tracing_subscriber::registry().with(layer));

    let dir = tempfile::tempdir().unwrap();
    let prepared = support::prepare_local(dir.path(), "traced", "fs.write, fs.read");
    let write = serde_json::json!({"next_step": {"tool": "fs.write", "arguments": {"path": "a.txt", "content": SECRET_CONTENT}, "goal": "write"}});
    let missing =
        serde_json::json!({"next_step": {"tool": "fs.read", "arguments": {"path": "missing.txt"}, "goal": "read"}});
    let decider =
        ScriptedDecider::new(vec![write.to_string(), missing.to_string(), r#"{"done":true,"message":"ok"}"#.into()]);
    let mut out = Vec::new();
    xct::local::run(&prepared, &decider, &dir.path().join("h.yaml"), &mut out).await.unwrap();
    // The simple exporter exports each span as it ends (shutting the
    // provider down would clear the in-memory exporter).
    let spans = exporter.get_finished_spans().unwrap();
    drop(telemetry);
    let named = |n: &str| spans.iter().filter(|s| s.name == n).collect::<Vec<_>>();
    let steps = named("step");
    assert_eq!(steps.len(), 3, "{:?}", spans.iter().map(|s| &s.name).collect::<Vec<_>>());
    let chats = named("chat scripted");
    assert_eq!(chats.len(), 3);
    for (chat, step) in chats.iter().zip(&steps) {
        assert_eq!(chat.parent_span_id, step.span_context.span_id(), "chat is the step's child");
        assert_eq!(chat.span_context.trace_id(), step.span_context.trace_id());
        let a = attrs(chat);
        assert_eq!(a["gen_ai.operation.name"], Value::from("chat"));
        assert_eq!(a["gen_ai.provider.name"], Value::from("llama.cpp"));
        assert_eq!(a["gen_ai.request.model"], Value::from("scripted"));
        assert!(matches!(a["gen_ai.usage.input_tokens"], Value::I64(n) if n > 0), "{a:?}");
        assert!(matches!(a["gen_ai.usage.output_tokens"], Value::I64(n) if n > 0), "{a:?}");
    }
    let (written, read) = (named("execute_tool fs.write"), named("execute_tool fs.read"));
    assert_eq!((written.len(), read.len()), (1, 1));
    assert_eq!(written[0].parent_span_id, steps[0].span_context.span_id());
    assert_eq!(read[0].parent_span_id, steps[1].span_context.span_id());
    let (w, r) = (attrs(written[0]), attrs(read[0]));
    assert_eq!(w["gen_ai.operation.name"], Value::from("execute_tool"));
    assert_eq!(w["gen_ai.tool.name"], Value::from("fs.write"));
    assert!(!w.contains_key("error.type"), "{w:?}");
    assert_eq!(r["error.type"], Value::from("EXECUTION_FAILED"));
    assert!(matches!(read[0].status, opentelemetry::trace::Status::Error { .. }), "{:?}", read[0].status);
    // Nothing the model wrote reaches the trace.
    for s in &spans {
        for kv in &s.attributes {
            assert!(!kv.value.as_str().contains(SECRET_CONTENT), "{} carries the content", kv.key);
        }
    }
}

/// What an OTLP/HTTP receiver got: (path, content type, body) per request.
type Received = Arc<Mutex<Vec<(String, String, Vec<u8>)>>>;

async fn receiver() -> (std::net::SocketAddr, Received) {
    let got: Received = Arc::default();
    let sink = got.clone();
    let app = axum::Router::new().fallback(move |req: axum::extract::Request| {
        let sink = sink.clone();
        async move {
            let path = req.uri().path().to_string();
            let ct = req.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
            let body = axum::body::to_bytes(req.into_body(), 1 << 24).await.unwrap_or_default();
            sink.lock().unwrap().push((path, ct, body.to_vec()));
            axum::http::StatusCode::OK
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (addr, got)
}

fn run_local(endpoint: &str, disabled: bool) -> std::process::Output {
    run_local_with(endpoint, disabled, &[])
}

fn run_local_with(endpoint: &str, disabled: bool, env: &[(&str, &std::path::Path)]) -> std::process::Output {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_xct"));
    cmd.current_dir(root)
        .args(["local", "examples/local/absolute-path.yaml", "--scripted-decisions"])
        .arg("examples/local/absolute-path.decisions.yaml")
        .arg("--workspace")
        .arg(dir.path().join("ws"))
        .arg("--history")
        .arg(dir.path().join("h.yaml"))
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint)
        .env_remove("OTEL_SERVICE_NAME");
    if disabled {
        cmd.env("OTEL_SDK_DISABLED", "true");
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_exports_otlp_http_to_the_standard_endpoint() {
    let (addr, got) = receiver().await;
    let endpoint = format!("http://{addr}");
    let out = tokio::task::spawn_blocking({
        let endpoint = endpoint.clone();
        move || run_local(&endpoint, false)
    })
    .await
    .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let requests = got.lock().unwrap().clone();
    assert!(!requests.is_empty(), "no OTLP request arrived");
    let body: Vec<u8> = requests.iter().flat_map(|(_, _, b)| b.clone()).collect();
    for (path, ct, _) in &requests {
        assert_eq!((path.as_str(), ct.as_str()), ("/v1/traces", "application/x-protobuf"));
    }
    let contains = |needle: &str| body.windows(needle.len()).any(|w| w == needle.as_bytes());
    for needle in ["xct-operator", "chat scripted", "execute_tool fs.write", "gen_ai.usage.input_tokens"] {
        assert!(contains(needle), "{needle} not in the exported spans");
    }

    got.lock().unwrap().clear();
    let out = tokio::task::spawn_blocking(move || run_local(&endpoint, true)).await.unwrap();
    assert!(out.status.success());
    assert!(got.lock().unwrap().is_empty(), "OTEL_SDK_DISABLED=true still exported");
}

/// A collector serving OTLP/HTTP over TLS (read by hand as HTTP/1.1), its
/// certificate for `localhost` signed by its own CA.
struct Collector {
    addr: std::net::SocketAddr,
    /// The CA's certificate (PEM).
    ca: std::path::PathBuf,
    /// A client certificate and key the CA signed (PEM).
    client_certificate: std::path::PathBuf,
    client_key: std::path::PathBuf,
    /// Request paths, content types and bodies.
    got: Received,
    /// Connections accepted, handshakes that failed included.
    connections: Arc<AtomicUsize>,
}

/// A CA of the test's own, a certificate it signed for `localhost` (the
/// collector's) and one for a client; the CA's and the client's as PEM
/// files in a directory.
struct Pki {
    ca: std::path::PathBuf,
    ca_pem: String,
    server_pem: String,
    server_key_pem: String,
    client_certificate: std::path::PathBuf,
    client_key: std::path::PathBuf,
}

fn pki(dir: &std::path::Path) -> Pki {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca_certificate = ca_params.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let signed = |name: &str| {
        let key = rcgen::KeyPair::generate().unwrap();
        (rcgen::CertificateParams::new(vec![name.to_string()]).unwrap().signed_by(&key, &issuer).unwrap(), key)
    };
    let (server, server_key) = signed("localhost");
    let (client, client_key) = signed("xct-operator");
    let file = |name: &str, pem: String| {
        let path = dir.join(name);
        std::fs::write(&path, pem).unwrap();
        path
    };
    Pki {
        ca: file("collector-ca.pem", ca_certificate.pem()),
        ca_pem: ca_certificate.pem(),
        server_pem: server.pem(),
        server_key_pem: server_key.serialize_pem(),
        client_certificate: file("client.pem", client.pem()),
        client_key: file("client-key.pem", client_key.serialize_pem()),
    }
}

/// Start a [`Collector`]; with `mutual`, it accepts only clients with a
/// certificate its CA signed.
async fn tls_collector(dir: &std::path::Path, mutual: bool) -> Collector {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
    use tokio_rustls::rustls;
    let Pki { ca, ca_pem, server_pem, server_key_pem, client_certificate, client_key } = pki(dir);
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder =
        rustls::ServerConfig::builder_with_provider(provider.clone()).with_safe_default_protocol_versions().unwrap();
    let builder = if mutual {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(CertificateDer::from_pem_slice(ca_pem.as_bytes()).unwrap()).unwrap();
        let verifier =
            rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider).build().unwrap();
        builder.with_client_cert_verifier(verifier)
    } else {
        builder.with_no_client_auth()
    };
    let config = builder
        .with_single_cert(
            vec![CertificateDer::from_pem_slice(server_pem.as_bytes()).unwrap()],
            PrivateKeyDer::from_pem_slice(server_key_pem.as_bytes()).unwrap(),
        )
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let got: Received = Arc::default();
    let sink = got.clone();
    let connections = Arc::new(AtomicUsize::new(0));
    let accepted = connections.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            accepted.fetch_add(1, Ordering::SeqCst);
            let (acceptor, sink) = (acceptor.clone(), sink.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else { return };
                let mut conn = tokio::io::BufReader::new(tls);
                loop {
                    let mut request_line = String::new();
                    if conn.read_line(&mut request_line).await.unwrap_or(0) == 0 {
                        return;
                    }
                    let (mut length, mut content_type) = (0, String::new());
                    loop {
                        let mut header = String::new();
                        conn.read_line(&mut header).await.unwrap();
                        let header = header.trim_end();
                        if header.is_empty() {
                            break;
                        }
                        let (name, value) = header.split_once(':').unwrap();
                        match name.to_ascii_lowercase().as_str() {
                            "content-length" => length = value.trim().parse().unwrap(),
                            "content-type" => content_type = value.trim().to_string(),
                            _ => {}
                        }
                    }
                    let mut body = vec![0; length];
                    conn.read_exact(&mut body).await.unwrap();
                    let path = request_line.split(' ').nth(1).unwrap_or_default().to_string();
                    sink.lock().unwrap().push((path, content_type, body));
                    conn.get_mut().write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n").await.unwrap();
                }
            });
        }
    });
    Collector { addr, ca, client_certificate, client_key, got, connections }
}

/// `xct local` as [`run_local`] does, off the runtime, with `env` set.
async fn exported(endpoint: &str, env: &[(&'static str, &std::path::Path)]) -> std::process::Output {
    let endpoint = endpoint.to_string();
    let env: Vec<(&'static str, std::path::PathBuf)> = env.iter().map(|(k, v)| (*k, v.to_path_buf())).collect();
    tokio::task::spawn_blocking(move || {
        let env: Vec<(&str, &std::path::Path)> = env.iter().map(|(k, v)| (*k, v.as_path())).collect();
        run_local_with(&endpoint, false, &env)
    })
    .await
    .unwrap()
}

/// The run succeeded and `collector` got its spans (taken, so the next
/// check starts empty).
fn assert_spans_arrived(out: &std::process::Output, collector: &Collector) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let requests = std::mem::take(&mut *collector.got.lock().unwrap());
    assert!(!requests.is_empty(), "no OTLP request arrived over https: {stderr}");
    assert!(!stderr.contains("opentelemetry"), "an export that arrived is not reported as failed: {stderr}");
    for (path, ct, _) in &requests {
        assert_eq!((path.as_str(), ct.as_str()), ("/v1/traces", "application/x-protobuf"));
    }
    let body: Vec<u8> = requests.iter().flat_map(|(_, _, b)| b.clone()).collect();
    assert!(body.windows(b"execute_tool fs.write".len()).any(|w| w == b"execute_tool fs.write"));
}

/// The run succeeded, tried `collector` and sent it nothing.
async fn assert_refused(endpoint: &str, env: &[(&'static str, &std::path::Path)], collector: &Collector) {
    let tried = collector.connections.load(Ordering::SeqCst);
    let out = exported(endpoint, env).await;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(collector.connections.load(Ordering::SeqCst) > tried, "the exporter did not even try the collector");
    assert!(collector.got.lock().unwrap().is_empty(), "spans were sent over a connection that should have failed");
}

/// `xct local` with `env` warned that traces are off, naming `what`, and ran.
async fn assert_traces_off(endpoint: &str, env: &[(&'static str, &std::path::Path)], what: &[&str]) {
    let out = exported(endpoint, env).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && stderr.contains("traces are off"), "{stderr}");
    assert!(what.iter().all(|w| stderr.contains(w)), "{what:?} not in: {stderr}");
}

const CA: &str = "OTEL_EXPORTER_OTLP_CERTIFICATE";
const CLIENT_CERTIFICATE: &str = "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE";
const CLIENT_KEY: &str = "OTEL_EXPORTER_OTLP_CLIENT_KEY";

/// Traces reach a collector over https whose certificate is signed by a CA
/// named in `OTEL_EXPORTER_OTLP_CERTIFICATE` (a cluster's own CA, as
/// collectors in a cluster are usually set up); without it the collector is
/// not trusted and nothing is sent. A CA file that cannot be used, or a
/// timeout that is not a number, turns traces off with a warning naming
/// it. The run itself is never disturbed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_exports_to_an_https_collector_trusted_by_its_ca() {
    let dir = tempfile::tempdir().unwrap();
    let collector = tls_collector(dir.path(), false).await;
    let endpoint = format!("https://localhost:{}", collector.addr.port());
    assert_spans_arrived(&exported(&endpoint, &[(CA, &collector.ca)]).await, &collector);
    assert_refused(&endpoint, &[], &collector).await;

    let not_pem = dir.path().join("not-a-certificate.pem");
    std::fs::write(&not_pem, "just text\n").unwrap();
    for (file, why) in [(dir.path().join("missing.pem"), "No such file"), (not_pem, "holds no PEM certificate")] {
        let named = format!("{CA}={}", file.display());
        assert_traces_off(&endpoint, &[(CA, &file)], &[&named, why]).await;
    }
    let soon = std::path::Path::new("soon");
    let why = "OTEL_EXPORTER_OTLP_TIMEOUT=\"soon\" is not a timeout in milliseconds";
    assert_traces_off(&endpoint, &[("OTEL_EXPORTER_OTLP_TIMEOUT", soon)], &[why]).await;
    assert!(collector.got.lock().unwrap().is_empty());
}

/// A collector that accepts only clients with a certificate its CA signed
/// (mutual TLS) gets the spans when `OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE`
/// and `OTEL_EXPORTER_OTLP_CLIENT_KEY` name one, and nothing without it; one
/// of the two without the other turns traces off, naming the missing one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_exports_to_a_collector_that_requires_a_client_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let collector = tls_collector(dir.path(), true).await;
    let endpoint = format!("https://localhost:{}", collector.addr.port());
    let (ca, certificate, key) = (&collector.ca, &collector.client_certificate, &collector.client_key);
    let out = exported(&endpoint, &[(CA, ca), (CLIENT_CERTIFICATE, certificate), (CLIENT_KEY, key)]).await;
    assert_spans_arrived(&out, &collector);
    assert_refused(&endpoint, &[(CA, ca)], &collector).await;
    assert_traces_off(&endpoint, &[(CA, ca), (CLIENT_CERTIFICATE, certificate)], &[CLIENT_KEY]).await;
    assert_traces_off(&endpoint, &[(CA, ca), (CLIENT_KEY, key)], &[CLIENT_CERTIFICATE]).await;
    // A key file that holds no key.
    let out = exported(&endpoint, &[(CA, ca), (CLIENT_CERTIFICATE, certificate), (CLIENT_KEY, ca)]).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && stderr.contains("traces are off") && stderr.contains(CLIENT_KEY), "{stderr}");
    assert!(collector.got.lock().unwrap().is_empty());
}

/// What a gRPC collector got: the `authorization` metadata and the spans'
/// names, per export.
type GrpcReceived = Arc<Mutex<Vec<(Option<String>, Vec<String>)>>>;

#[derive(Clone, Default)]
struct GrpcSink(GrpcReceived);

#[tonic::async_trait]
impl opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::TraceService for GrpcSink {
    async fn export(
        &self,
        request: tonic::Request<opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest>,
    ) -> Result<
        tonic::Response<opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse>,
        tonic::Status,
    > {
        let authorization = request.metadata().get("authorization").and_then(|v| v.to_str().ok()).map(str::to_string);
        let names = request
            .into_inner()
            .resource_spans
            .into_iter()
            .flat_map(|r| r.scope_spans)
            .flat_map(|s| s.spans)
            .map(|s| s.name)
            .collect();
        self.0.lock().unwrap().push((authorization, names));
        Ok(tonic::Response::new(Default::default()))
    }
}

/// An OTLP/gRPC collector (tonic's server): plain h2c, or over TLS with
/// `pki`'s `localhost` certificate, requiring a client certificate its CA
/// signed if `mutual`. Returns its address, what it got and the
/// connections it accepted (failed handshakes included).
async fn grpc_collector(tls: Option<(&Pki, bool)>) -> (std::net::SocketAddr, GrpcReceived, Arc<AtomicUsize>) {
    use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::TraceServiceServer;
    use tonic::transport::{Certificate, Identity, Server, ServerTlsConfig};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let connections = Arc::new(AtomicUsize::new(0));
    let accepted = connections.clone();
    let incoming = futures::stream::unfold(listener, move |l| {
        let accepted = accepted.clone();
        async move {
            let next = l.accept().await.map(|(tcp, _)| tcp);
            accepted.fetch_add(1, Ordering::SeqCst);
            Some((next, l))
        }
    });
    let mut server = Server::builder();
    if let Some((pki, mutual)) = tls {
        let mut config = ServerTlsConfig::new().identity(Identity::from_pem(&pki.server_pem, &pki.server_key_pem));
        if mutual {
            config = config.client_ca_root(Certificate::from_pem(&pki.ca_pem));
        }
        server = server.tls_config(config).unwrap();
    }
    let sink = GrpcSink::default();
    let got = sink.0.clone();
    tokio::spawn(server.add_service(TraceServiceServer::new(sink)).serve_with_incoming(incoming));
    (addr, got, connections)
}

/// The run succeeded and the gRPC collector got its spans (taken).
fn assert_grpc_spans_arrived(out: &std::process::Output, got: &GrpcReceived) -> Vec<Option<String>> {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let exports = std::mem::take(&mut *got.lock().unwrap());
    assert!(!exports.is_empty(), "no OTLP/gRPC export arrived: {stderr}");
    assert!(!stderr.contains("opentelemetry"), "an export that arrived is not reported as failed: {stderr}");
    let names: Vec<&String> = exports.iter().flat_map(|(_, n)| n).collect();
    for name in ["step", "chat scripted", "execute_tool fs.write"] {
        assert!(names.iter().any(|n| *n == name), "no {name} span in {names:?}");
    }
    exports.into_iter().map(|(a, _)| a).collect()
}

const PROTOCOL: &str = "OTEL_EXPORTER_OTLP_PROTOCOL";

/// `OTEL_EXPORTER_OTLP_PROTOCOL` picks the transport: `grpc` sends the
/// spans to an OTLP/gRPC collector at the endpoint itself, with the
/// headers of `OTEL_EXPORTER_OTLP_HEADERS` as metadata (on main they went
/// as HTTP to a gRPC port, and were lost without a word); `http/json`
/// posts JSON to `/v1/traces`; `..._TRACES_PROTOCOL` wins over it; any
/// other value turns traces off, naming it, and the run goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_protocol_variable_picks_grpc_or_http_json_and_refuses_others() {
    let (addr, got, _) = grpc_collector(None).await;
    let endpoint = format!("http://{addr}");
    let grpc = std::path::Path::new("grpc");
    let headers = std::path::Path::new("authorization=Bearer t0ken");
    let out = exported(&endpoint, &[(PROTOCOL, grpc), ("OTEL_EXPORTER_OTLP_HEADERS", headers)]).await;
    let authorizations = assert_grpc_spans_arrived(&out, &got);
    assert!(authorizations.iter().all(|a| a.as_deref() == Some("Bearer t0ken")), "{authorizations:?}");
    let http = std::path::Path::new("http/protobuf");
    let out = exported(&endpoint, &[(PROTOCOL, http), ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", grpc)]).await;
    assert_grpc_spans_arrived(&out, &got);

    let (addr, received) = receiver().await;
    let out = exported(&format!("http://{addr}"), &[(PROTOCOL, std::path::Path::new("http/json"))]).await;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let requests = std::mem::take(&mut *received.lock().unwrap());
    assert!(!requests.is_empty(), "no OTLP/JSON request arrived");
    for (path, ct, body) in &requests {
        assert_eq!((path.as_str(), ct.as_str()), ("/v1/traces", "application/json"));
        serde_json::from_slice::<serde_json::Value>(body).unwrap();
    }
    assert!(requests.iter().any(|(_, _, b)| String::from_utf8_lossy(b).contains("execute_tool fs.write")));

    let why = "OTEL_EXPORTER_OTLP_PROTOCOL=\"thrift\" is not an OTLP protocol";
    assert_traces_off(&endpoint, &[(PROTOCOL, std::path::Path::new("thrift"))], &[why]).await;
    assert!(got.lock().unwrap().is_empty() && received.lock().unwrap().is_empty());
}

/// Over gRPC, TLS is the same as over HTTP: a collector requiring a client
/// certificate its CA signed gets the spans with the CA and the client
/// certificate named, and nothing (though it was tried) without either.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_exports_verify_the_collector_and_present_the_client_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki(dir.path());
    let (addr, got, connections) = grpc_collector(Some((&pki, true))).await;
    let endpoint = format!("https://localhost:{}", addr.port());
    let grpc = std::path::Path::new("grpc");
    let (ca, certificate, key) = (pki.ca.as_path(), pki.client_certificate.as_path(), pki.client_key.as_path());
    let out =
        exported(&endpoint, &[(PROTOCOL, grpc), (CA, ca), (CLIENT_CERTIFICATE, certificate), (CLIENT_KEY, key)]).await;
    assert_grpc_spans_arrived(&out, &got);
    for env in
        [vec![(PROTOCOL, grpc), (CA, ca)], vec![(PROTOCOL, grpc), (CLIENT_CERTIFICATE, certificate), (CLIENT_KEY, key)]]
    {
        let tried = connections.load(Ordering::SeqCst);
        let out = exported(&endpoint, &env).await;
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        assert!(connections.load(Ordering::SeqCst) > tried, "the exporter did not even try the collector");
        assert!(got.lock().unwrap().is_empty(), "spans were sent over a connection that should have failed");
    }
}

/// An image without a system CA bundle (distroless, scratch) that names
/// its collector's CA still exports, over HTTP and over gRPC alike: the
/// system's roots are added where there are some, never required; and a
/// collector whose CA is among the system's roots (`SSL_CERT_FILE` here)
/// needs no CA named.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_system_roots_are_used_where_there_are_some_and_never_required() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("no-roots.pem");
    std::fs::write(&empty, "").unwrap();
    let no_dir = dir.path().join("no-roots.d");
    std::fs::create_dir(&no_dir).unwrap();
    let no_roots = [("SSL_CERT_FILE", empty.as_path()), ("SSL_CERT_DIR", no_dir.as_path())];
    let collector = tls_collector(dir.path(), false).await;
    let endpoint = format!("https://localhost:{}", collector.addr.port());
    assert_spans_arrived(&exported(&endpoint, &[&no_roots[..], &[(CA, &collector.ca)]].concat()).await, &collector);
    assert_spans_arrived(&exported(&endpoint, &[("SSL_CERT_FILE", &collector.ca)]).await, &collector);

    let pki = pki(dir.path());
    let (addr, got, _) = grpc_collector(Some((&pki, false))).await;
    let endpoint = format!("https://localhost:{}", addr.port());
    let env = [&no_roots[..], &[(PROTOCOL, std::path::Path::new("grpc")), (CA, pki.ca.as_path())]].concat();
    assert_grpc_spans_arrived(&exported(&endpoint, &env).await, &got);
    let env = [(PROTOCOL, std::path::Path::new("grpc")), ("SSL_CERT_FILE", pki.ca.as_path())];
    assert_grpc_spans_arrived(&exported(&endpoint, &env).await, &got);
}

/// A collector that cannot be reached (down, a wrong port) loses the
/// spans, never the run, and says so: each failed export is a warning on
/// stderr naming the error (on main nothing at all was said).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_export_is_logged_and_the_run_goes_on() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    for protocol in ["http/protobuf", "grpc"] {
        let out = exported(&endpoint, &[(PROTOCOL, std::path::Path::new(protocol))]).await;
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{protocol}: {stderr}");
        assert!(stderr.contains("ExportError"), "{protocol}: no failed export reported: {stderr}");
    }
}
