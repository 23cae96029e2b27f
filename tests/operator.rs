//! The operator against the test API server with a scripted decider: every
//! path of the pipeline, driven step by step, checked from the request log.

mod support;

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;
use support::*;
use xct::crd::{RunPhase, XctRun};
use xct::engine::record::VerdictOutcome;
use xct::model::ScriptedDecider;
use xct::operator::{Context, health::Readiness};

/// The run's kstatus conditions and Succeeded, in that order.
fn kstatus(s: &xct::crd::XctRunStatus) -> Vec<(&'static str, &str)> {
    ["Ready", "Reconciling", "Stalled", "Succeeded"]
        .into_iter()
        .map(|t| (t, s.conditions.iter().find(|c| c.type_ == t).map_or("missing", |c| c.status.as_str())))
        .collect()
}

fn step(tool: &str, args: serde_json::Value) -> String {
    json!({"next_step": {"tool": tool, "arguments": args, "goal": "test"}}).to_string()
}

async fn wait_terminal(api: &Api<XctRun>, name: &str, secs: u64) -> XctRun {
    for _ in 0..secs * 10 {
        let r = api.get(name).await.unwrap();
        if r.status.as_ref().is_some_and(|s| s.phase.is_terminal()) {
            return r;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("run {name} did not finish: {:?}", api.get(name).await.unwrap().status);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scripted_run_exercises_every_path() {
    let srv = cluster().await;
    let admin = srv.client();
    let outputs = vec![
        step("k8s.get", json!({"kind": "Deployment", "name": "web"})),
        "this is not JSON".to_string(),
        step("k8s.delete", json!({"kind": "Deployment", "name": "web"})),
        step("k8s.scale", json!({"kind": "Deployment", "name": "web", "replicas": 5000})),
        step("k8s.scale", json!({"kind": "Deployment", "name": "missing", "replicas": 2})),
        step("k8s.scale", json!({"kind": "Deployment", "name": "web", "replicas": 3})),
        step("k8s.get", json!({"kind": "Secret", "name": "db-password"})),
        step("k8s.scale", json!({"kind": "Deployment", "name": "web", "replicas": 50})),
        step("k8s.scale", json!({"kind": "Deployment", "name": "web", "replicas": 3})),
        r#"{"done":true,"message":"scaled web to 3"}"#.to_string(),
    ];
    let decider = Arc::new(ScriptedDecider::new(outputs.clone()));
    let ctx = Arc::new(Context::new(
        kube::Client::try_from(operator_config(&srv)).unwrap(),
        operator_config(&srv),
        decider.clone(),
    ));
    let readiness = Arc::new(Readiness::default());
    let controller = tokio::spawn(xct::operator::run(ctx, None, readiness.clone()));

    // An invalid policy that selects no run: reported, harmless.
    let policies: Api<xct::crd::XctPolicy> = Api::all(admin.clone());
    let broken: xct::crd::XctPolicy = serde_yaml::from_str(
        "apiVersion: xct.dev/v1alpha1\nkind: XctPolicy\nmetadata: {name: broken}\nspec:\n  selector: {runSelector: {matchLabels: {never: match}}}\n  rules: [{name: typo, tools: ['*'], effect: Allow, when: 'proposal.tool == '}]\n",
    )
    .unwrap();
    policies.create(&PostParams::default(), &broken).await.unwrap();
    let runs: Api<XctRun> = Api::namespaced(admin.clone(), NS);
    let run: XctRun = serde_yaml::from_str(&format!(
        "apiVersion: xct.dev/v1alpha1\nkind: XctRun\nmetadata: {{name: scale-web}}\nspec:\n  goal: Scale web to 3 replicas\n  tools: [k8s.get, k8s.scale]\n  serviceAccountName: {SA}\n  limits: {{maxSteps: 10, maxConsecutiveErrors: 5}}\n"
    ))
    .unwrap();
    runs.create(&PostParams::default(), &run).await.unwrap();
    let done = wait_terminal(&runs, "scale-web", 30).await;
    for _ in 0..50 {
        if readiness.watches_synced.load(std::sync::atomic::Ordering::SeqCst) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(readiness.watches_synced.load(std::sync::atomic::Ordering::SeqCst), "ready once the watch synced");

    let status = done.status.unwrap();
    let dbg: Vec<String> = status
        .steps
        .iter()
        .map(|s| format!("{} {:?} {:?}", s.outcome_label(), s.verdict.decided_by, s.verdict.reason))
        .collect();
    assert_eq!(status.phase, RunPhase::Succeeded, "{:?} {dbg:#?}", status.message);
    assert_eq!(status.message.as_deref(), Some("scaled web to 3"));
    let labels: Vec<&str> = status.steps.iter().map(|s| s.outcome_label()).collect();
    assert_eq!(
        labels,
        [
            "Success",
            "INVALID_PROPOSAL",
            "TOOL_NOT_ALLOWED",
            "INVALID_ARGUMENTS",
            "DRY_RUN_FAILED",
            "Success",
            "POLICY_VETO",
            "POLICY_VETO",
            "Success",
            "Done"
        ]
    );
    for (i, s) in status.steps.iter().enumerate() {
        assert_eq!(s.index as usize, i + 1);
        assert_eq!(s.decision, outputs[i], "decisions are kept verbatim, in order");
    }
    assert_eq!(status.steps[5].verdict.outcome, VerdictOutcome::Allowed);
    assert_eq!(
        status.steps[5].signal.as_ref().unwrap(),
        &xct::protocol::Signal::success(
            json!({"kind": "Deployment", "name": "web", "namespace": NS, "replicas": {"from": 1, "to": 3}, "changed": true})
        )
    );
    // The same scale again changes nothing, and says so.
    assert_eq!(
        status.steps[8].signal.as_ref().unwrap(),
        &xct::protocol::Signal::success(
            json!({"kind": "Deployment", "name": "web", "namespace": NS, "replicas": {"from": 3, "to": 3}, "changed": false, "note": "web already had 3 replicas: nothing changed"})
        )
    );
    assert_eq!(status.step_count, 10);
    // The step records name the rule that decided, with its message.
    assert_eq!(status.steps[0].verdict.decided_by.as_deref(), Some("baseline/read-only"));
    assert_eq!(status.steps[5].verdict.decided_by.as_deref(), Some("scaling/bounded-scale"));
    assert_eq!(status.steps[6].verdict.decided_by.as_deref(), Some("baseline/no-secrets"));
    assert!(status.steps[6].verdict.reason.contains("Secrets are never read"));
    assert_eq!(status.steps[7].verdict.decided_by.as_deref(), Some("default-deny"));
    assert!(
        status.steps[7].verdict.reason.contains("no XctPolicy allows k8s.scale"),
        "{}",
        status.steps[7].verdict.reason
    );
    assert!(status.conditions.iter().any(|c| c.type_ == "Completed" && c.status == "True" && c.reason == "Succeeded"));
    assert_eq!(status.observed_generation, Some(1));
    // kstatus: what Flux, `kubectl wait` and cli-utils read.
    assert_eq!(
        kstatus(&status),
        [("Ready", "True"), ("Reconciling", "False"), ("Stalled", "False"), ("Succeeded", "True")]
    );
    // A finished run still follows its spec's generation (a Flux wait would hang otherwise).
    runs.patch("scale-web", &PatchParams::default(), &Patch::Merge(json!({"spec": {"suspend": true}}))).await.unwrap();
    let mut followed = false;
    for _ in 0..100 {
        if runs.get("scale-web").await.unwrap().status.is_some_and(|s| s.observed_generation == Some(2)) {
            followed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(followed, "observedGeneration of a finished run follows its spec");

    // The effect happened, once.
    let deploys: Api<Deployment> = Api::namespaced(admin.clone(), NS);
    assert_eq!(deploys.get("web").await.unwrap().spec.replicas, Some(3));

    let log = srv.requests();
    let sa_user = xct::k8s::service_account_user(NS, SA);
    // Setup requests are made by "admin"; everything else is the operator's.
    let tool_requests: Vec<_> =
        log.iter().filter(|r| r.resource == "deployments" && r.authenticated_user != "admin").collect();
    assert!(!tool_requests.is_empty());
    for r in &tool_requests {
        assert_eq!(r.user, sa_user, "every tool request acts as the run's ServiceAccount: {r:?}");
        assert!(r.impersonated && r.authenticated_user == OPERATOR_USER);
    }
    // Every persisted mutation was preceded by the same request as a dry run.
    let mutations: Vec<_> = log.iter().filter(|r| r.user == sa_user && r.is_persisted_mutation()).collect();
    assert_eq!(mutations.len(), 2, "the scale, then the same scale again (a no-op): {mutations:?}");
    for m in &mutations {
        assert!(
            log.iter().any(|d| d.seq < m.seq && d.dry_run && d.path == m.path && d.verb == m.verb && d.status < 300),
            "no dry run before {m:?}"
        );
    }
    // Vetoed and invalid proposals never reached the API.
    assert!(!log.iter().any(|r| r.verb == "delete" && r.resource == "deployments"));
    assert!(!log.iter().any(|r| r.user == sa_user && r.path.ends_with("/missing/scale") && !r.dry_run));
    // The operator's own identity never touched a tool's target.
    let own: Vec<_> = log.iter().filter(|r| r.user == OPERATOR_USER).collect();
    assert!(own.iter().any(|r| r.resource == "xctruns"));
    for r in own {
        let ok = matches!(r.resource.as_str(), "xctruns" | "events" | "xctpolicies" | "xctapprovals")
            || (r.resource == "namespaces" && r.verb == "get");
        assert!(ok, "the operator's own identity only reads runs, policies, approvals, namespaces: {r:?}");
    }
    // An Event per step.
    // (kube's Recorder turns a repeated reason into a series: a patch of the first.)
    let events = log.iter().filter(|r| r.resource == "events" && matches!(r.verb.as_str(), "create" | "patch")).count();
    assert!(events >= 10, "an event per step and one for the end, got {events}");
    // One model call per step.
    assert_eq!(decider.requests().len(), 10);
    // Policy status: Ready or Invalid (naming the rule and the error), runs decided.
    let mut seen = false;
    for _ in 0..100 {
        let b = policies.get("baseline").await.unwrap().status.unwrap_or_default();
        let x = policies.get("broken").await.unwrap().status.unwrap_or_default();
        let ready = |s: &xct::crd::XctPolicyStatus| {
            s.conditions.iter().find(|c| c.type_ == "Ready").map(|c| (c.status.clone(), c.message.clone()))
        };
        if let (Some((b_ready, _)), Some((x_ready, x_msg))) = (ready(&b), ready(&x))
            && b.runs_decided == 1
        {
            assert_eq!(b_ready, "True");
            assert_eq!(x_ready, "False");
            let stalled = |s: &xct::crd::XctPolicyStatus| {
                s.conditions.iter().find(|c| c.type_ == "Stalled").map(|c| c.status.clone())
            };
            assert_eq!((stalled(&b).as_deref(), stalled(&x).as_deref()), (Some("False"), Some("True")));
            assert!(x_msg.contains("rule typo at 1:"), "{x_msg}");
            assert_eq!(x.runs_decided, 0);
            assert_eq!(b.observed_generation, Some(1));
            seen = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(seen, "policy statuses are reported");
    controller.abort();
    // Vetoed proposals never reached the API, not even as a dry run.
    assert!(!log.iter().any(|r| r.resource == "secrets"));
    let later_dry_runs =
        log.iter().filter(|r| r.user == sa_user && r.verb == "patch" && r.dry_run && r.seq > mutations[0].seq).count();
    assert_eq!(
        later_dry_runs, 1,
        "after the first scale, only the repeated scale's dry run (the vetoed one sent none)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_and_suspended_runs_wait() {
    let srv = cluster().await;
    let admin = srv.client();
    // The first done is refused (nothing looked at yet); the second ends the run.
    let done = r#"{"done":true,"message":"resumed and done"}"#;
    let decider = Arc::new(ScriptedDecider::new([done, done]));
    let ctx = Arc::new(Context::new(
        kube::Client::try_from(operator_config(&srv)).unwrap(),
        operator_config(&srv),
        decider.clone(),
    ));
    let controller = tokio::spawn(xct::operator::run(ctx, Some(NS.into()), Arc::new(Readiness::default())));
    let runs: Api<XctRun> = Api::namespaced(admin.clone(), NS);
    let bad: XctRun = serde_yaml::from_str("apiVersion: xct.dev/v1alpha1\nkind: XctRun\nmetadata: {name: bad}\nspec:\n  goal: g\n  tools: [k8s.get, rm.rf]\n").unwrap();
    runs.create(&PostParams::default(), &bad).await.unwrap();
    let paused: XctRun = serde_yaml::from_str(&format!("apiVersion: xct.dev/v1alpha1\nkind: XctRun\nmetadata: {{name: paused}}\nspec:\n  goal: g\n  tools: [k8s.get]\n  serviceAccountName: {SA}\n  suspend: true\n")).unwrap();
    runs.create(&PostParams::default(), &paused).await.unwrap();
    let mut ok = false;
    for _ in 0..50 {
        let b = runs.get("bad").await.unwrap();
        let p = runs.get("paused").await.unwrap();
        let bad_msg = b.status.as_ref().and_then(|s| s.message.clone()).unwrap_or_default();
        if bad_msg.contains("rm.rf")
            && bad_msg.contains("serviceAccountName")
            && p.status.as_ref().is_some_and(|s| s.phase == RunPhase::Suspended)
        {
            let valid = b.status.unwrap().conditions.into_iter().find(|c| c.type_ == "Valid").unwrap();
            assert_eq!((valid.status.as_str(), valid.reason.as_str()), ("False", "InvalidSpec"));
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(ok, "the invalid run reports its problems and the suspended run is Suspended");
    assert!(decider.requests().is_empty(), "no model call for invalid or suspended runs");
    // Resume.
    runs.patch("paused", &PatchParams::default(), &Patch::Merge(json!({"spec": {"suspend": false}}))).await.unwrap();
    let done = wait_terminal(&runs, "paused", 10).await;
    controller.abort();
    assert_eq!(done.status.unwrap().phase, RunPhase::Succeeded);
    assert_eq!(decider.requests().len(), 2, "the refused first done, then the accepted one");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_run_does_not_stall_the_controller() {
    let srv = xct_testapi::TestApiServer::start().await.unwrap();
    let admin = srv.client();
    // An older, permissive CRD lets a malformed object in; then the real CRD is applied.
    install_loose_crd::<XctRun>(&admin).await;
    install_demo(&admin).await;
    let broken = json!({"apiVersion": "xct.dev/v1alpha1", "kind": "XctRun", "metadata": {"name": "broken"}, "spec": {"goal": 5, "tools": "k8s.get"}});
    create_raw(&admin, "xctruns", Some(NS), broken).await;
    install_crds(&admin).await;
    install_policies(&admin).await;
    // The first done is refused (nothing looked at yet); the second ends the run.
    let done = r#"{"done":true,"message":"fine"}"#;
    let decider = Arc::new(ScriptedDecider::new([done, done]));
    let controller = start_operator(&srv, decider, None);
    let runs: Api<XctRun> = Api::namespaced(admin.clone(), NS);
    let good: XctRun = serde_yaml::from_str(&format!("apiVersion: xct.dev/v1alpha1\nkind: XctRun\nmetadata: {{name: good}}\nspec:\n  goal: g\n  tools: [k8s.get]\n  serviceAccountName: {SA}\n")).unwrap();
    runs.create(&PostParams::default(), &good).await.unwrap();
    let done = wait_terminal(&runs, "good", 10).await;
    assert_eq!(done.status.unwrap().phase, RunPhase::Succeeded, "a valid run proceeds beside a malformed one");
    let events: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(admin.clone(), NS);
    let mut seen = false;
    for _ in 0..50 {
        let list = events.list(&Default::default()).await.unwrap();
        if list.items.iter().any(|e| {
            e.reason.as_deref() == Some("InvalidObject")
                && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some("broken")
        }) {
            seen = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    controller.abort();
    assert!(seen, "the malformed run gets an InvalidObject event");
}

/// A stored status missing a field the types default (an admin's edit)
/// used to make every JSON patch fail with 422, and each retry spent a
/// model call and lost its decision. The writer now replaces the status
/// whole, guarded by the resourceVersion, and the run goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_status_missing_a_defaulted_field_does_not_wedge_the_run() {
    let srv = cluster().await;
    let admin = srv.client();
    let read = step("k8s.get", json!({"kind": "Deployment", "name": "web"}));
    let decider = Arc::new(ScriptedDecider::new([read.clone(), read, r#"{"done":true,"message":"read"}"#.to_string()]));
    let controller = start_operator(&srv, decider.clone(), Some(NS));
    let runs: Api<XctRun> = Api::namespaced(admin.clone(), NS);
    let run: XctRun = serde_yaml::from_str(&format!("apiVersion: xct.dev/v1alpha1\nkind: XctRun\nmetadata: {{name: edited}}\nspec:\n  goal: g\n  tools: [k8s.get]\n  serviceAccountName: {SA}\n  suspend: true\n")).unwrap();
    runs.create(&PostParams::default(), &run).await.unwrap();
    for _ in 0..100 {
        if runs.get("edited").await.unwrap().status.is_some_and(|s| s.phase == RunPhase::Suspended) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // An admin removes defaulted fields from the stored status.
    let remove: json_patch::Patch = serde_json::from_value(json!([
        {"op": "remove", "path": "/status/stepCount"},
        {"op": "remove", "path": "/status/errorCount"},
    ]))
    .unwrap();
    runs.patch_status("edited", &PatchParams::default(), &Patch::<()>::Json(remove)).await.unwrap();
    let raw: Api<kube::api::DynamicObject> =
        Api::namespaced_with(admin.clone(), NS, &kube::api::ApiResource::erase::<XctRun>(&()));
    assert!(raw.get("edited").await.unwrap().data["status"].get("stepCount").is_none());
    runs.patch("edited", &PatchParams::default(), &Patch::Merge(json!({"spec": {"suspend": false}}))).await.unwrap();
    let done = wait_terminal(&runs, "edited", 10).await;
    controller.abort();
    let status = done.status.unwrap();
    assert_eq!(status.phase, RunPhase::Succeeded);
    assert_eq!(status.steps.len(), 3);
    assert_eq!(decider.requests().len(), 3, "one model call per recorded step, none wasted");
    assert_eq!(raw.get("edited").await.unwrap().data["status"]["stepCount"], 3, "the stored status is whole again");
    let replaced = srv
        .requests()
        .iter()
        .filter(|r| r.resource == "xctruns" && r.subresource == "status" && r.verb == "update")
        .count();
    assert_eq!(replaced, 1, "repaired once by a whole-status replace, then patched as usual");
}

/// A model that always fails.
struct Broken(std::sync::atomic::AtomicU32);

#[async_trait::async_trait]
impl xct::model::Decider for Broken {
    async fn decide(&self, _: xct::model::DecideRequest) -> Result<xct::model::RawDecision, xct::model::DeciderError> {
        self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Err(xct::model::DeciderError::Inference("decode failed".into()))
    }
}

/// A failing model is retried with backoff a bounded number of times, then
/// the failure is the run's recorded outcome: never retried forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_model_ends_the_run_with_a_recorded_outcome() {
    let srv = cluster().await;
    let admin = srv.client();
    let decider = Arc::new(Broken(Default::default()));
    let ctx =
        Context::new(kube::Client::try_from(operator_config(&srv)).unwrap(), operator_config(&srv), decider.clone())
            .with_first_retry(Duration::from_millis(10));
    let controller = tokio::spawn(xct::operator::run(Arc::new(ctx), Some(NS.into()), Arc::new(Readiness::default())));
    let runs: Api<XctRun> = Api::namespaced(admin.clone(), NS);
    let run: XctRun = serde_yaml::from_str(&format!("apiVersion: xct.dev/v1alpha1\nkind: XctRun\nmetadata: {{name: broken-model}}\nspec:\n  goal: g\n  tools: [k8s.get]\n  serviceAccountName: {SA}\n")).unwrap();
    runs.create(&PostParams::default(), &run).await.unwrap();
    let done = wait_terminal(&runs, "broken-model", 20).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    controller.abort();
    let status = done.status.unwrap();
    assert_eq!(status.phase, RunPhase::Failed);
    assert!(status.message.as_deref().unwrap().starts_with("MODEL_FAILED"), "{:?}", status.message);
    assert!(status.conditions.iter().any(|c| c.type_ == "Completed" && c.reason == "Failed"));
    assert_eq!(
        kstatus(&status),
        [("Ready", "False"), ("Reconciling", "False"), ("Stalled", "True"), ("Succeeded", "False")]
    );
    let calls = decider.0.load(std::sync::atomic::Ordering::SeqCst);
    assert_eq!(calls, xct::operator::MAX_MODEL_FAILURES, "bounded retries, then no more model calls");
}

/// The CRD installed and this operator disagree so that the server rejects
/// the run's status even whole: the run says so in a StatusWritable=False
/// condition and waits for a change, instead of retrying (and calling the
/// model) forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_status_the_server_rejects_is_reported_not_retried() {
    let srv = cluster().await;
    let admin = srv.client();
    // A stricter CRD: no step may be recorded.
    let mut crd = serde_json::to_value(<XctRun as kube::CustomResourceExt>::crd()).unwrap();
    crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["status"]["properties"]["steps"]["maxItems"] =
        json!(0);
    let crds: Api<kube::api::DynamicObject> = Api::all_with(
        admin.clone(),
        &kube::api::ApiResource::from_gvk_with_plural(
            &kube::api::GroupVersionKind::gvk("apiextensions.k8s.io", "v1", "CustomResourceDefinition"),
            "customresourcedefinitions",
        ),
    );
    crds.patch("xctruns.xct.dev", &PatchParams::apply("strict").force(), &Patch::Apply(&crd)).await.unwrap();
    let read = step("k8s.get", json!({"kind": "Deployment", "name": "web"}));
    let decider = Arc::new(ScriptedDecider::new(vec![read; 10]));
    let controller = start_operator(&srv, decider.clone(), Some(NS));
    let runs: Api<XctRun> = Api::namespaced(admin.clone(), NS);
    let run: XctRun = serde_yaml::from_str(&format!("apiVersion: xct.dev/v1alpha1\nkind: XctRun\nmetadata: {{name: strict}}\nspec:\n  goal: g\n  tools: [k8s.get]\n  serviceAccountName: {SA}\n")).unwrap();
    runs.create(&PostParams::default(), &run).await.unwrap();
    let mut condition = None;
    for _ in 0..100 {
        let s = runs.get("strict").await.unwrap().status.unwrap_or_default();
        condition = s.conditions.into_iter().find(|c| c.type_ == xct::operator::status::STATUS_WRITABLE);
        if condition.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let condition = condition.expect("the rejection is reported on the run");
    assert_eq!((condition.status.as_str(), condition.reason.as_str()), ("False", "StatusRejected"));
    assert!(condition.message.contains("steps"), "{}", condition.message);
    // No retry loop: one model call, and nothing more while nothing changes.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(decider.requests().len(), 1);
    // Fixed: the real CRD again, and a change to the run resumes it.
    install_crds(&admin).await;
    runs.patch("strict", &PatchParams::default(), &Patch::Merge(json!({"spec": {"limits": {"maxSteps": 3}}})))
        .await
        .unwrap();
    let done = wait_terminal(&runs, "strict", 10).await;
    controller.abort();
    let status = done.status.unwrap();
    assert_eq!(status.steps.len(), 3, "{:?}", status.message);
    assert!(!status.conditions.iter().any(|c| c.type_ == xct::operator::status::STATUS_WRITABLE));
}
