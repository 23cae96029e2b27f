//! Shared test setup: a test API server with the CRDs and a demo namespace.
#![allow(dead_code)]

use std::path::Path;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams, PostParams};
use serde_json::json;
use xct_testapi::TestApiServer;

pub const NS: &str = "demo";
pub const SA: &str = "runner";

/// The model file, or a failure saying how to get it.
pub fn model_path() -> std::path::PathBuf {
    let p = std::env::var("XCT_MODEL")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| Path::new(env!("CARGO_MANIFEST_DIR")).join("models/SmolLM2-135M-Instruct.Q4_1.gguf"));
    assert!(p.is_file(), "the test model {} is missing: run scripts/fetch-model.sh", p.display());
    p
}

/// Apply every CRD under crds/ with the admin client.
pub async fn install_crds(client: &kube::Client) {
    let crds: Api<DynamicObject> = Api::all_with(
        client.clone(),
        &ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk("apiextensions.k8s.io", "v1", "CustomResourceDefinition"),
            "customresourcedefinitions",
        ),
    );
    for (_, crd) in xct::crd::all() {
        let name = crd.metadata.name.clone().unwrap();
        crds.patch(&name, &PatchParams::apply("xct-tests"), &Patch::Apply(&crd)).await.unwrap();
    }
}

/// Apply every policy in examples/gitops/policies/.
pub async fn install_policies(client: &kube::Client) {
    let api: Api<xct::crd::XctPolicy> = Api::all(client.clone());
    let text =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/gitops/policies/baseline.yaml"))
            .unwrap();
    for doc in serde_yaml::Deserializer::from_str(&text) {
        let p: xct::crd::XctPolicy = serde::Deserialize::deserialize(doc).unwrap();
        let name = p.metadata.name.clone().unwrap();
        api.patch(&name, &PatchParams::apply("xct-tests"), &Patch::Apply(&p)).await.unwrap();
    }
}

/// Namespace (labelled for scaling), ServiceAccount and a Deployment "web" with 1 replica.
pub async fn install_demo(client: &kube::Client) {
    let nss: Api<Namespace> = Api::all(client.clone());
    nss.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata": {"name": NS, "labels": {"xct.dev/scaling": "allowed"}}})).unwrap(),
    )
    .await
    .unwrap();
    let sas: Api<ServiceAccount> = Api::namespaced(client.clone(), NS);
    sas.create(&PostParams::default(), &serde_json::from_value(json!({"metadata": {"name": SA}})).unwrap())
        .await
        .unwrap();
    let deploys: Api<Deployment> = Api::namespaced(client.clone(), NS);
    let d = json!({"metadata": {"name": "web", "labels": {"app": "web"}}, "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}}, "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "web", "image": "nginx"}]}}}});
    deploys.create(&PostParams::default(), &serde_json::from_value(d).unwrap()).await.unwrap();
}

pub async fn cluster() -> TestApiServer {
    let srv = TestApiServer::start().await.unwrap();
    install_crds(&srv.client()).await;
    install_demo(&srv.client()).await;
    install_policies(&srv.client()).await;
    srv
}

/// The kube::Config the operator uses against the test server.
pub fn operator_config(srv: &TestApiServer) -> kube::Config {
    let mut c = kube::Config::new(srv.url().parse().unwrap());
    c.auth_info.token = Some("xct-operator".to_string().into());
    c
}

/// Four reads, then done, decided from the history length alone.
pub struct FourReads;

#[async_trait::async_trait]
impl xct::model::Decider for FourReads {
    async fn decide(
        &self,
        req: xct::model::DecideRequest,
    ) -> Result<xct::model::RawDecision, xct::model::DeciderError> {
        let taken = req.messages.iter().filter(|m| m.role == xct::model::Role::Assistant).count();
        let text = if taken < 4 {
            json!({"next_step": {"tool": "k8s.get", "arguments": {"kind": "Deployment", "name": "web"}, "goal": format!("read {taken}")}}).to_string()
        } else {
            r#"{"done":true,"message":"read four times"}"#.to_string()
        };
        Ok(xct::model::RawDecision { text, stats: Default::default() })
    }
}

/// Create `n` runs named `{prefix}-NNN` that may use k8s.get.
pub async fn create_runs(runs: &Api<xct::crd::XctRun>, n: usize, prefix: &str) {
    for i in 0..n {
        let run: xct::crd::XctRun = serde_yaml::from_str(&format!(
            "apiVersion: xct.dev/v1alpha1\nkind: XctRun\nmetadata: {{name: {prefix}-{i:03}}}\nspec:\n  goal: g\n  tools: [k8s.get]\n  serviceAccountName: {SA}\n"
        ))
        .unwrap();
        runs.create(&PostParams::default(), &run).await.unwrap();
    }
}

/// Wait (up to a minute) until `n` runs exist and all are terminal; returns them.
pub async fn wait_all_terminal(runs: &Api<xct::crd::XctRun>, n: usize) -> Vec<xct::crd::XctRun> {
    let mut all = vec![];
    for _ in 0..3000 {
        all = runs.list(&Default::default()).await.unwrap().items;
        if all.len() == n && all.iter().all(|r| r.status.as_ref().is_some_and(|s| s.phase.is_terminal())) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    all
}

/// Start the operator in-process against `srv` with `decider`, acting as
/// the token "xct-operator"; abort the handle to stop it.
pub fn start_operator(
    srv: &TestApiServer,
    decider: std::sync::Arc<dyn xct::model::Decider>,
    namespace: Option<&str>,
) -> tokio::task::JoinHandle<()> {
    let ctx = xct::operator::Context::new(
        kube::Client::try_from(operator_config(srv)).unwrap(),
        operator_config(srv),
        decider,
    );
    let readiness = std::sync::Arc::new(xct::operator::health::Readiness::default());
    tokio::spawn(xct::operator::run(std::sync::Arc::new(ctx), namespace.map(str::to_string), readiness))
}

/// Create run `name` that scales deployments, with at most `max_steps` steps.
pub async fn create_scale_run(runs: &Api<xct::crd::XctRun>, name: &str, max_steps: u32) {
    let run: xct::crd::XctRun = serde_yaml::from_str(&format!(
        "apiVersion: xct.dev/v1alpha1\nkind: XctRun\nmetadata: {{name: {name}}}\nspec:\n  goal: g\n  tools: [k8s.scale]\n  serviceAccountName: {SA}\n  limits: {{maxSteps: {max_steps}}}\n"
    ))
    .unwrap();
    runs.create(&PostParams::default(), &run).await.unwrap();
}

/// Wait (up to 5 s) until `holder` holds the operator's Lease in "default".
pub async fn wait_for_lease_holder(client: &kube::Client, holder: &str) {
    let leases: Api<k8s_openapi::api::coordination::v1::Lease> = Api::namespaced(client.clone(), "default");
    for _ in 0..100 {
        let held = leases.get_opt("xct-operator").await.unwrap().and_then(|l| l.spec?.holder_identity);
        if held.as_deref() == Some(holder) {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// Wait (up to 4 s) until run `name` has recorded at least `n` steps.
pub async fn wait_for_steps(runs: &Api<xct::crd::XctRun>, name: &str, n: usize) {
    for _ in 0..400 {
        if runs.get(name).await.unwrap().status.is_some_and(|s| s.steps.len() >= n) {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

/// One engine step with no judge and no journal (as the local runner
/// takes it): the step it recorded.
pub async fn next(
    engine: &xct::engine::Engine<'_>,
    cfg: &xct::engine::RunConfig,
    history: &[xct::engine::record::StepRecord],
    started: chrono::DateTime<chrono::Utc>,
) -> Result<xct::engine::record::StepRecord, xct::engine::EngineError> {
    match engine.step(cfg, history, started, None, &mut xct::engine::NoJournal).await? {
        xct::engine::Stepped::New(rec) | xct::engine::Stepped::Resolved(rec) => Ok(rec),
        other => panic!("no approvals without a judge: {other:?}"),
    }
}
