//! Running one scenario end to end with a decider: `xct local`'s runner in
//! a fresh workspace, or the operator on a fresh in-memory API server. The
//! same code runs a real model (`xct-eval`) and a scripted reference
//! solution (the tests).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use xct::crd::{XctRun, XctRunStatus};
use xct::engine::record::VerdictOutcome;
use xct::model::Decider;
use xct::protocol::ErrorCode;
use xct_testapi::TestApiServer;

use crate::scenario::{Finished, Judged, Place, Scenario};

/// The namespace and ServiceAccount cluster scenarios run in.
pub const NAMESPACE: &str = "demo";
pub const SERVICE_ACCOUNT: &str = "runner";
/// Longest a cluster scenario may take before it counts as failed.
const CLUSTER_TIMEOUT: Duration = Duration::from_secs(900);
const POLL: Duration = Duration::from_millis(50);

/// One scenario's row in the report.
#[derive(Debug, Clone)]
pub struct Row {
    pub name: String,
    pub judged: Judged,
    pub steps: u32,
    pub invalid: u32,
    pub vetoed: u32,
    /// Proposals a policy vetoed or no human approved: harm the gate
    /// stopped (the model's own safety is the other columns).
    pub gate_stopped: u32,
    pub prompt_tokens: u64,
    pub generated_tokens: u64,
    pub seconds: f64,
    /// The run's recorded history (for `--histories`).
    pub status: XctRunStatus,
}

/// Why a scenario could not be run at all (not a failed scenario).
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("{scenario}: setup failed: {message}")]
    Setup { scenario: String, message: String },
}

impl RunError {
    pub fn category(&self) -> &'static str {
        match self {
            RunError::Setup { .. } => "setup",
        }
    }
}

fn setup(s: &Scenario) -> impl Fn(String) -> RunError + '_ {
    move |message| RunError::Setup { scenario: s.name.clone(), message }
}

/// The XctRun the scenario starts.
fn run_object(s: &Scenario) -> Result<XctRun, RunError> {
    let mut spec = s.spec.clone();
    if s.on == Place::Cluster {
        spec["serviceAccountName"] = json!(SERVICE_ACCOUNT);
    }
    let run = json!({"apiVersion": "xct.dev/v1alpha1", "kind": "XctRun", "metadata": {"name": s.name}, "spec": spec});
    serde_json::from_value(run).map_err(|e| setup(s)(format!("spec: {e}")))
}

/// Run `s` to its end with `decider` and judge it.
pub async fn run(s: &Scenario, decider: Arc<dyn Decider>) -> Result<Row, RunError> {
    let t = Instant::now();
    let (status, finished) = match s.on {
        Place::Local => local(s, decider.as_ref()).await?,
        Place::Cluster => cluster(s, decider).await?,
    };
    let steps = &status.steps;
    let count = |f: &dyn Fn(&xct::engine::record::StepRecord) -> bool| steps.iter().filter(|x| f(x)).count() as u32;
    Ok(Row {
        name: s.name.clone(),
        judged: s.judge(&finished),
        steps: finished.steps,
        invalid: count(&|x| x.verdict.outcome == VerdictOutcome::Invalid),
        vetoed: count(&|x| x.verdict.outcome == VerdictOutcome::Vetoed),
        gate_stopped: count(&|x| matches!(x.error_code(), Some(ErrorCode::PolicyVeto | ErrorCode::ApprovalRejected))),
        prompt_tokens: steps.iter().map(|x| u64::from(x.model.prompt_tokens)).sum(),
        generated_tokens: steps.iter().map(|x| u64::from(x.model.completion_tokens)).sum(),
        seconds: t.elapsed().as_secs_f64(),
        status,
    })
}

fn finished_from(status: &XctRunStatus) -> Finished {
    Finished {
        succeeded: status.phase == xct::crd::RunPhase::Succeeded,
        message: status.message.clone().unwrap_or_default(),
        steps: status.step_count,
        ..Finished::default()
    }
}

async fn local(s: &Scenario, decider: &dyn Decider) -> Result<(XctRunStatus, Finished), RunError> {
    let dir = tempfile::tempdir().map_err(|e| setup(s)(e.to_string()))?;
    let ws = dir.path().join("ws");
    for (path, content) in &s.files {
        let p = ws.join(path);
        std::fs::create_dir_all(p.parent().unwrap_or(&ws)).map_err(|e| setup(s)(e.to_string()))?;
        std::fs::write(&p, content).map_err(|e| setup(s)(e.to_string()))?;
    }
    let manifest = dir.path().join("run.yaml");
    let prepared = xct::local::prepare(&run_object(s)?, &manifest, &ws).map_err(|e| setup(s)(e.to_string()))?;
    let history = dir.path().join("history.yaml");
    let (status, error) = match xct::local::run(&prepared, decider, &history, &mut std::io::sink()).await {
        Ok(report) => (report.status, None),
        // The model failed mid-run: judged on what the history recorded.
        Err(e) => {
            let recorded = xct::history::load(&history).ok().and_then(|mut h| h.pop());
            (recorded.map(|h| h.status).unwrap_or_default(), Some(e.to_string()))
        }
    };
    let mut finished = finished_from(&status);
    finished.error = error;
    finished.files = files_under(&ws);
    Ok((status, finished))
}

/// Every regular file under `root`, by relative path (unreadable ones as empty).
fn files_under(root: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if let Ok(rel) = path.strip_prefix(root) {
                out.insert(rel.to_string_lossy().into_owned(), std::fs::read_to_string(&path).unwrap_or_default());
            }
        }
    }
    out
}

/// The API resource of a seeded or checked object (the kinds scenarios
/// use are all plural by adding "s").
fn resource(api_version: &str, kind: &str) -> ApiResource {
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    let plural = format!("{}s", kind.to_lowercase());
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, version, kind), &plural)
}

/// The API resource of a checked object: the tools' own mapping for the
/// kinds they touch, a core v1 kind otherwise.
fn checked_resource(kind: &str) -> ApiResource {
    xct::k8s::TargetKind::ALL
        .into_iter()
        .find(|k| k.as_str() == kind)
        .map_or_else(|| resource("v1", kind), xct::k8s::TargetKind::api_resource)
}

async fn cluster(s: &Scenario, decider: Arc<dyn Decider>) -> Result<(XctRunStatus, Finished), RunError> {
    let err = setup(s);
    let srv = TestApiServer::start().await.map_err(|e| err(e.to_string()))?;
    let admin = srv.client();
    let kerr = |e: kube::Error| setup(s)(e.to_string());
    let crds: Api<DynamicObject> =
        Api::all_with(admin.clone(), &resource("apiextensions.k8s.io/v1", "CustomResourceDefinition"));
    for (_, crd) in xct::crd::all() {
        let name = crd.metadata.name.clone().unwrap_or_default();
        crds.patch(&name, &PatchParams::apply("xct-eval"), &Patch::Apply(&crd)).await.map_err(kerr)?;
    }
    let seed = |v: Value| serde_json::from_value::<DynamicObject>(v).map_err(|e| setup(s)(e.to_string()));
    let namespaces: Api<DynamicObject> = Api::all_with(admin.clone(), &resource("v1", "Namespace"));
    let ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}});
    namespaces.create(&PostParams::default(), &seed(ns)?).await.map_err(kerr)?;
    let mut objects = s.objects.clone();
    objects.push(json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": SERVICE_ACCOUNT}}));
    for o in objects {
        let ar = resource(o["apiVersion"].as_str().unwrap_or("v1"), o["kind"].as_str().unwrap_or_default());
        let api: Api<DynamicObject> = Api::namespaced_with(admin.clone(), NAMESPACE, &ar);
        api.create(&PostParams::default(), &seed(o)?).await.map_err(kerr)?;
    }
    let tools = s.spec["tools"].clone();
    let rules =
        s.rules.clone().unwrap_or_else(|| vec![json!({"name": "run-tools", "tools": tools, "effect": "Allow"})]);
    let policy = json!({"apiVersion": "xct.dev/v1alpha1", "kind": "XctPolicy", "metadata": {"name": "eval"}, "spec": {"rules": rules}});
    let policies: Api<xct::crd::XctPolicy> = Api::all(admin.clone());
    let policy = serde_json::from_value(policy).map_err(|e| err(format!("rules: {e}")))?;
    policies.create(&PostParams::default(), &policy).await.map_err(kerr)?;

    let mut config = kube::Config::new(srv.url().parse().map_err(|e| err(format!("{e}")))?);
    config.auth_info.token = Some("xct-operator".to_string().into());
    let client = kube::Client::try_from(config.clone()).map_err(kerr)?;
    let ctx = xct::operator::Context::new(client, config, decider);
    let readiness = Arc::new(xct::operator::health::Readiness::default());
    let controller = tokio::spawn(xct::operator::run(Arc::new(ctx), None, readiness));
    let runs: Api<XctRun> = Api::namespaced(admin.clone(), NAMESPACE);
    srv.clear_requests();
    runs.create(&PostParams::default(), &run_object(s)?).await.map_err(kerr)?;
    let started = Instant::now();
    let mut status = XctRunStatus::default();
    while started.elapsed() < CLUSTER_TIMEOUT {
        if let Some(st) = runs.get(&s.name).await.map_err(kerr)?.status.filter(|st| st.phase.is_terminal()) {
            status = st;
            break;
        }
        tokio::time::sleep(POLL).await;
    }
    controller.abort();
    let (_, steps) =
        xct::operator::archive::full_history(&admin, NAMESPACE, &s.name).await.map_err(|e| err(e.to_string()))?;
    status.steps = steps;
    let mut finished = finished_from(&status);
    for c in &s.expect.objects {
        let api: Api<DynamicObject> = Api::namespaced_with(admin.clone(), NAMESPACE, &checked_resource(&c.kind));
        if let Ok(o) = api.get(&c.name).await {
            finished.objects.insert((c.kind.clone(), c.name.clone()), serde_json::to_value(o).unwrap_or_default());
        }
    }
    let sa = xct::k8s::service_account_user(NAMESPACE, SERVICE_ACCOUNT);
    finished.sent = srv
        .requests()
        .into_iter()
        .filter(|r| r.user == sa && !r.dry_run)
        .map(|r| (r.verb, r.resource, r.name))
        .collect();
    Ok((status, finished))
}
