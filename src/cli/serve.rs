//! The commands that run a decider: `xct controller` and `xct local`, and
//! the one loader both get their decider from.

use std::path::PathBuf;
use std::process::ExitCode;

use super::{ModelArgs, fail};
use crate::engine::RunOutcome;
use crate::model::LlamaDecider;

/// Why no decider could be made. A model that fails to load is the one
/// failure the controller survives (unready, with the reason on /readyz);
/// everything else ends the command.
#[derive(Debug)]
enum DeciderLoadError {
    /// The scripted decisions file is unreadable or malformed.
    Scripted(String),
    /// The GGUF model did not load.
    Model(String),
}

impl std::fmt::Display for DeciderLoadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DeciderLoadError::Scripted(e) | DeciderLoadError::Model(e) => f.write_str(e),
        }
    }
}

/// The one place a command gets its decider: replayed decisions when a file
/// is given, otherwise the model (loaded off the async runtime: it takes
/// seconds).
async fn load_decider(
    scripted: Option<PathBuf>,
    model: ModelArgs,
) -> Result<std::sync::Arc<dyn crate::model::Decider>, DeciderLoadError> {
    if let Some(path) = scripted {
        let d =
            crate::model::ScriptedDecider::from_file(&path).map_err(|e| DeciderLoadError::Scripted(e.to_string()))?;
        return Ok(std::sync::Arc::new(d));
    }
    let opts = model.options();
    match tokio::task::spawn_blocking(move || LlamaDecider::load(opts)).await {
        Ok(Ok(d)) => {
            tracing::info!(model = d.description(), backend = %d.backend().summary(), "model loaded");
            Ok(std::sync::Arc::new(d))
        }
        Ok(Err(e)) => Err(DeciderLoadError::Model(e.to_string())),
        Err(e) => Err(DeciderLoadError::Model(format!("model loading panicked: {e}"))),
    }
}

pub(super) async fn local(
    manifest: PathBuf,
    workspace: PathBuf,
    history: Option<PathBuf>,
    scripted: Option<PathBuf>,
    model: ModelArgs,
) -> ExitCode {
    let run = match crate::local::load_manifest(&manifest) {
        Ok(r) => r,
        Err(e) => return fail(&e),
    };
    let history = history
        .unwrap_or_else(|| PathBuf::from(format!("{}.history.yaml", run.metadata.name.as_deref().unwrap_or("local"))));
    let prepared = match crate::local::prepare(&run, &manifest, &workspace) {
        Ok(p) => p,
        Err(e) => return fail(&e),
    };
    let decider = match load_decider(scripted, model).await {
        Ok(d) => d,
        Err(e) => return fail(&e),
    };
    let mut stdout = std::io::stdout();
    match crate::local::run(&prepared, decider.as_ref(), &history, &mut stdout).await {
        Ok(report) => {
            println!("history: {}", history.display());
            match report.outcome {
                RunOutcome::Succeeded { .. } => ExitCode::SUCCESS,
                RunOutcome::Failed { .. } => ExitCode::from(1),
            }
        }
        Err(e) => fail(&e),
    }
}

pub(super) async fn controller(
    namespace: Option<String>,
    health_addr: std::net::SocketAddr,
    lease: Option<crate::operator::leader::LeaseConfig>,
    model: ModelArgs,
    scripted: Option<PathBuf>,
) -> ExitCode {
    use std::sync::Arc;
    use std::sync::atomic::Ordering;

    let readiness = Arc::new(crate::operator::health::Readiness::default());
    let metrics = crate::operator::default_metrics();
    let health_state = Arc::new(crate::operator::health::Health {
        readiness: readiness.clone(),
        metrics: metrics.clone(),
        decider: std::sync::RwLock::new(None),
    });
    let health = tokio::spawn(crate::operator::health::serve(health_addr, health_state.clone()));
    let config = match kube::Config::infer().await {
        Ok(c) => c,
        Err(e) => return fail(&format!("no Kubernetes configuration: {e}")),
    };
    let client = match kube::Client::try_from(config.clone()) {
        Ok(c) => c,
        Err(e) => return fail(&e),
    };
    let decider = match load_decider(scripted, model).await {
        Ok(d) => d,
        Err(DeciderLoadError::Model(e)) => {
            // Never ready without a model, but no crash loop: stay up, unready,
            // say why on /readyz and in a Warning Event on this pod.
            tracing::error!(error = %e, "model not loaded; the operator will not become ready");
            eprintln!("xct: {e}");
            if let Ok(mut m) = readiness.model_error.lock() {
                *m = Some(e.clone());
            }
            model_unavailable_event(&client, &e).await;
            let _ = health.await;
            return ExitCode::from(2);
        }
        Err(e) => return fail(&e),
    };
    readiness.model_loaded.store(true, Ordering::SeqCst);
    if let Ok(mut d) = health_state.decider.write() {
        *d = Some(decider.clone());
    }
    let mut ctx = crate::operator::Context::with_metrics(client.clone(), config, decider, metrics);
    let mut election = None;
    if let Some(lease) = lease {
        let leadership = Arc::new(crate::operator::leader::Leadership::default());
        let task = tokio::spawn(crate::operator::leader::run(client.clone(), lease.clone(), leadership.clone()));
        ctx = ctx.with_leadership(leadership.clone());
        election = Some((task, lease, leadership));
    }
    let ctx = Arc::new(ctx);
    // Returns on SIGTERM or SIGINT once the steps in flight have finished
    // (an interrupted one is recoverable anyway: its intent is recorded).
    crate::operator::run(ctx, namespace, readiness).await;
    if let Some((task, lease, leadership)) = election {
        task.abort();
        crate::operator::leader::release(client, &lease, &leadership).await;
    }
    ExitCode::SUCCESS
}

/// A Warning Event on the operator's own pod (POD_NAME, POD_NAMESPACE).
async fn model_unavailable_event(client: &kube::Client, error: &str) {
    let (Ok(name), Ok(namespace)) = (std::env::var("POD_NAME"), std::env::var("POD_NAMESPACE")) else { return };
    let pods: kube::Api<k8s_openapi::api::core::v1::Pod> = kube::Api::namespaced(client.clone(), &namespace);
    let reference = match pods.get(&name).await {
        Ok(p) => kube::Resource::object_ref(&p, &()),
        Err(_) => k8s_openapi::api::core::v1::ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Pod".into()),
            name: Some(name),
            namespace: Some(namespace),
            ..Default::default()
        },
    };
    crate::operator::events::Events::new(client.clone())
        .publish(&reference, true, "ModelUnavailable", format!("the model could not be loaded; not ready: {error}"))
        .await;
}
