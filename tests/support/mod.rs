//! Shared test setup: a test API server with the CRDs and a demo namespace.
#![allow(dead_code)]

use std::path::Path;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, ServiceAccount};
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams, PostParams};
use serde_json::json;
use xct_testapi::TestApiServer;

pub const NS: &str = "demo";
/// The runs' ServiceAccount: the name the chart lets the operator
/// impersonate by default, bound to the Role in examples/cluster/demo.yaml.
pub const SA: &str = "xct-runner";
/// Where the chart is installed, and the operator's identity there: the
/// test API server takes the bearer token as the user name.
pub const OPERATOR_NS: &str = "xct-system";
pub const OPERATOR_USER: &str = "system:serviceaccount:xct-system:xct-operator";

/// Server-side apply every document of a YAML file (path relative to the
/// repository) with the admin client; kinds whose plural is the lowercase
/// kind plus "s" (RBAC kinds, ServiceAccount, Namespace).
pub async fn apply_file(client: &kube::Client, file: &str, keep: impl Fn(&DynamicObject) -> bool) -> usize {
    let text = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(file)).unwrap();
    let mut applied = 0;
    for doc in serde_yaml::Deserializer::from_str(&text) {
        let obj: DynamicObject = serde::Deserialize::deserialize(doc).unwrap();
        if !keep(&obj) {
            continue;
        }
        let types = obj.types.clone().unwrap();
        let (group, version) = types.api_version.split_once('/').unwrap_or(("", &types.api_version));
        let gvk = GroupVersionKind::gvk(group, version, &types.kind);
        let ar = ApiResource::from_gvk_with_plural(&gvk, &format!("{}s", types.kind.to_lowercase()));
        let api: Api<DynamicObject> = match obj.metadata.namespace.as_deref() {
            Some(ns) => Api::namespaced_with(client.clone(), ns, &ar),
            None => Api::all_with(client.clone(), &ar),
        };
        let name = obj.metadata.name.clone().unwrap();
        api.patch(&name, &PatchParams::apply("xct-tests"), &Patch::Apply(&obj)).await.unwrap();
        applied += 1;
    }
    applied
}

fn is_rbac(o: &DynamicObject) -> bool {
    o.types.as_ref().is_some_and(|t| t.api_version.starts_with("rbac.authorization.k8s.io/"))
}

/// The chart's RBAC for the operator (`fixture`, kept equal to the chart by
/// scripts/check-chart.sh) in its namespace, and RBAC enforced from then
/// on: a request the chart does not grant gets the 403 it would get on a
/// real cluster.
pub async fn enforce_chart_rbac(srv: &TestApiServer, fixture: &str) {
    let admin = srv.client();
    let nss: Api<Namespace> = Api::all(admin.clone());
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": OPERATOR_NS}})).unwrap();
    nss.patch(OPERATOR_NS, &PatchParams::apply("xct-tests"), &Patch::Apply(&ns)).await.unwrap();
    assert!(apply_file(&admin, fixture, |_| true).await >= 4, "{fixture} holds the chart's RBAC");
    srv.enforce_rbac();
}

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

/// The CRD of `K` with no schema at all (an older or loosened CRD), applied
/// over any CRD of that name: the server stores whatever it is given, so
/// only the operator's own checks stand between a manifest and a request.
pub async fn install_loose_crd<K: kube::CustomResourceExt>(client: &kube::Client) {
    let mut loose = serde_json::to_value(K::crd()).unwrap();
    loose["spec"]["versions"][0]["schema"]["openAPIV3Schema"] =
        json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true});
    let crds: Api<DynamicObject> = Api::all_with(
        client.clone(),
        &ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk("apiextensions.k8s.io", "v1", "CustomResourceDefinition"),
            "customresourcedefinitions",
        ),
    );
    let name = loose["metadata"]["name"].as_str().unwrap().to_string();
    crds.patch(&name, &PatchParams::apply("xct-tests").force(), &Patch::Apply(&loose)).await.unwrap();
}

/// Create `object` (JSON with apiVersion and kind) of the `xct.dev` kind
/// `plural`, as the admin and without the Rust types: shapes the types
/// refuse.
pub async fn create_raw(client: &kube::Client, plural: &str, namespace: Option<&str>, object: serde_json::Value) {
    let kind = object["kind"].as_str().unwrap().to_string();
    let ar = ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk("xct.dev", "v1alpha1", &kind), plural);
    let api: Api<DynamicObject> = match namespace {
        Some(ns) => Api::namespaced_with(client.clone(), ns, &ar),
        None => Api::all_with(client.clone(), &ar),
    };
    api.create(&PostParams::default(), &serde_json::from_value(object).unwrap()).await.unwrap();
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
    // What the runs' ServiceAccount may do: the example's Role.
    assert_eq!(apply_file(client, "examples/cluster/demo.yaml", is_rbac).await, 2, "demo.yaml: Role and RoleBinding");
}

/// RBAC subjects naming `users`.
fn user_subjects(users: &[&str]) -> Vec<serde_json::Value> {
    users.iter().map(|u| json!({"kind": "User", "name": u, "apiGroup": "rbac.authorization.k8s.io"})).collect()
}

/// `users` may work with runs in the demo namespace as a platform team
/// grants it: bound to the built-in `edit` ClusterRole, which (as
/// Kubernetes bootstraps it) aggregates every ClusterRole labelled
/// aggregate-to-edit, the chart's run-editor and approver among them.
pub async fn grant_edit(client: &kube::Client, users: &[&str]) {
    let roles: Api<k8s_openapi::api::rbac::v1::ClusterRole> = Api::all(client.clone());
    let edit: k8s_openapi::api::rbac::v1::ClusterRole = serde_json::from_value(json!({
        "metadata": {"name": "edit"},
        "aggregationRule": {"clusterRoleSelectors": [{"matchLabels": {"rbac.authorization.k8s.io/aggregate-to-edit": "true"}}]},
    }))
    .unwrap();
    roles.patch("edit", &PatchParams::apply("xct-tests"), &Patch::Apply(&edit)).await.unwrap();
    let bindings: Api<k8s_openapi::api::rbac::v1::RoleBinding> = Api::namespaced(client.clone(), NS);
    let subjects = user_subjects(users);
    let binding: k8s_openapi::api::rbac::v1::RoleBinding = serde_json::from_value(json!({
        "metadata": {"name": "people-edit", "namespace": NS},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "edit"},
        "subjects": subjects,
    }))
    .unwrap();
    bindings.patch("people-edit", &PatchParams::apply("xct-tests"), &Patch::Apply(&binding)).await.unwrap();
}

/// `users` get exactly the chart's operator grants (its ClusterRole and
/// leader-election Role, as the chart binds them to its ServiceAccount):
/// replicas that share the chart's RBAC but tell apart in the request log.
pub async fn bind_as_operator(client: &kube::Client, users: &[&str]) {
    let subjects = user_subjects(users);
    let crb: k8s_openapi::api::rbac::v1::ClusterRoleBinding = serde_json::from_value(json!({
        "metadata": {"name": "test-replicas"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "xct-operator"},
        "subjects": subjects,
    }))
    .unwrap();
    Api::<k8s_openapi::api::rbac::v1::ClusterRoleBinding>::all(client.clone())
        .patch("test-replicas", &PatchParams::apply("xct-tests"), &Patch::Apply(&crb))
        .await
        .unwrap();
    let rb: k8s_openapi::api::rbac::v1::RoleBinding = serde_json::from_value(json!({
        "metadata": {"name": "test-replicas", "namespace": OPERATOR_NS},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "xct-operator-leader"},
        "subjects": subjects,
    }))
    .unwrap();
    Api::<k8s_openapi::api::rbac::v1::RoleBinding>::namespaced(client.clone(), OPERATOR_NS)
        .patch("test-replicas", &PatchParams::apply("xct-tests"), &Patch::Apply(&rb))
        .await
        .unwrap();
}

/// The Role the tests' runs need beyond the example's (every tool on the
/// kinds the tests use).
pub async fn grant_test_runner(client: &kube::Client) {
    assert_eq!(apply_file(client, "tests/fixtures/rbac/runner-tests.yaml", |_| true).await, 2);
}

/// The test cluster with the chart's default RBAC enforced.
pub async fn cluster() -> TestApiServer {
    cluster_with_rbac("tests/fixtures/rbac/chart.yaml").await
}

/// The test cluster (CRDs, demo namespace, policies, the runs' Roles) with
/// the operator's RBAC from `fixture` enforced.
pub async fn cluster_with_rbac(fixture: &str) -> TestApiServer {
    let srv = TestApiServer::start().await.unwrap();
    install_crds(&srv.client()).await;
    install_demo(&srv.client()).await;
    install_policies(&srv.client()).await;
    grant_test_runner(&srv.client()).await;
    enforce_chart_rbac(&srv, fixture).await;
    srv
}

/// A cluster whose demo namespace holds the ConfigMap "old" the runs want to delete.
pub async fn cluster_with_old_config() -> (xct_testapi::TestApiServer, kube::Client, Api<ConfigMap>) {
    let srv = cluster().await;
    let admin = srv.client();
    let cms: Api<ConfigMap> = Api::namespaced(admin.clone(), NS);
    cms.create(&PostParams::default(), &serde_json::from_value(json!({"metadata": {"name": "old"}})).unwrap())
        .await
        .unwrap();
    (srv, admin, cms)
}

/// The kube::Config the operator uses against the test server.
pub fn operator_config(srv: &TestApiServer) -> kube::Config {
    let mut c = kube::Config::new(srv.url().parse().unwrap());
    c.auth_info.token = Some(OPERATOR_USER.to_string().into());
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
/// the chart's ServiceAccount ([`OPERATOR_USER`]); abort the handle to stop it.
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

/// Wait (up to 5 s) until `holder` holds the operator's Lease in its namespace.
pub async fn wait_for_lease_holder(client: &kube::Client, holder: &str) {
    let leases: Api<k8s_openapi::api::coordination::v1::Lease> = Api::namespaced(client.clone(), OPERATOR_NS);
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

/// A local run named `name` of `tools` over a fresh workspace in `dir`
/// (`dir/ws`), as `xct local` prepares it from a manifest.
pub fn prepare_local(dir: &Path, name: &str, tools: &str) -> xct::local::Prepared {
    let manifest = dir.join(format!("{name}.yaml"));
    std::fs::write(
        &manifest,
        format!("apiVersion: xct.dev/v1alpha1\nkind: XctRun\nmetadata: {{name: {name}}}\nspec:\n  goal: g\n  tools: [{tools}]\n"),
    )
    .unwrap();
    let run = xct::local::load_manifest(&manifest).unwrap();
    xct::local::prepare(&run, &manifest, &dir.join("ws")).unwrap()
}

/// `xct` at the command line, run from the repository, as the user in
/// `kubeconfig`: its exit code, stdout and stderr.
pub fn xct(args: &[&str], kubeconfig: &Path) -> (Option<i32>, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_xct"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(args)
        .env("KUBECONFIG", kubeconfig)
        .output()
        .unwrap();
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (out.status.code(), text(&out.stdout), text(&out.stderr))
}
