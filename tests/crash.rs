//! Crash safety: the controller process is aborted (like SIGKILL) at each
//! boundary of a step, restarted, and the request log proves that no
//! mutation executed twice, no step is missing, and every history verifies.

mod support;

use std::process::{Command, Stdio};
use std::time::Duration;

use kube::api::{Api, PostParams};
use serde_json::json;
use support::*;
use xct::crd::{RunPhase, XctRun};
use xct::engine::record::verify_chain;
use xct::protocol::ErrorCode;

const RUNS: [&str; 3] = ["r1", "r2", "r3"];

fn start(kubeconfig: &std::path::Path, decisions: &std::path::Path, crash: Option<&str>) -> std::process::Child {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_xct"));
    cmd.args(["controller", "--health-addr", "127.0.0.1:0", "--scripted-decisions"])
        .arg(decisions)
        .env("KUBECONFIG", kubeconfig)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if let Some(c) = crash {
        cmd.env("XCT_CRASH_AT", c);
    }
    cmd.spawn().unwrap()
}

async fn scenario(boundary: &str) {
    let srv = cluster().await;
    let admin = srv.client();
    let dir = tempfile::tempdir().unwrap();
    let kc = dir.path().join("kubeconfig");
    srv.write_kubeconfig(&kc, Some(OPERATOR_USER)).unwrap();
    // Plenty of scale proposals, then done for each run.
    let mut outputs: Vec<String> = (0..12)
        .map(|i| json!({"next_step": {"tool": "k8s.scale", "arguments": {"kind": "Deployment", "name": "web", "replicas": 1 + i % 5}, "goal": "g"}}).to_string())
        .collect();
    outputs.extend(std::iter::repeat_n(r#"{"done":true,"message":"ok"}"#.to_string(), 30));
    let decisions = dir.path().join("decisions.yaml");
    std::fs::write(&decisions, serde_yaml::to_string(&outputs).unwrap()).unwrap();
    let runs: Api<XctRun> = Api::namespaced(admin.clone(), NS);
    for name in RUNS {
        let run: XctRun = serde_yaml::from_str(&format!(
            "apiVersion: xct.dev/v1alpha1\nkind: XctRun\nmetadata: {{name: {name}}}\nspec:\n  goal: g\n  tools: [k8s.scale]\n  serviceAccountName: {SA}\n  limits: {{maxSteps: 6}}\n"
        ))
        .unwrap();
        runs.create(&PostParams::default(), &run).await.unwrap();
    }
    // First process: aborted at the 3rd time it reaches the boundary.
    let mut first = start(&kc, &decisions, Some(&format!("{boundary}:3")));
    let exit = tokio::task::spawn_blocking(move || first.wait().unwrap()).await.unwrap();
    assert!(!exit.success(), "{boundary}: the first controller was aborted ({exit:?})");
    // Second process: runs everything to the end.
    let mut second = start(&kc, &decisions, None);
    let mut finished = false;
    for _ in 0..300 {
        let list = runs.list(&Default::default()).await.unwrap();
        if list.items.iter().all(|r| r.status.as_ref().is_some_and(|s| s.phase.is_terminal())) {
            finished = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = second.kill();
    let _ = second.wait();
    assert!(finished, "{boundary}: every run finished after the restart");

    let log = srv.requests();
    let persisted = log.iter().filter(|r| r.subresource == "scale" && r.is_persisted_mutation()).count();
    let (mut executed, mut unknown) = (0, 0);
    for name in RUNS {
        let s = runs.get(name).await.unwrap().status.unwrap();
        assert!(matches!(s.phase, RunPhase::Succeeded | RunPhase::Failed));
        verify_chain(&s.steps, "", 1).unwrap_or_else(|e| panic!("{boundary}: {name}: {e}"));
        executed +=
            s.steps.iter().filter(|st| st.mutating && st.signal.as_ref().is_some_and(|g| !g.is_error())).count();
        unknown += s.steps.iter().filter(|st| st.error_code() == Some(ErrorCode::OutcomeUnknown)).count();
    }
    // No mutation executed twice: what reached the API is what the
    // histories record as executed, plus at most the step whose outcome is
    // unknown because the crash hit it.
    assert!(
        persisted >= executed && persisted <= executed + unknown,
        "{boundary}: {persisted} persisted, {executed} executed, {unknown} unknown"
    );
    // Runs reconcile concurrently, so other runs may be caught mid-step too;
    // a crash between intent and result always leaves at least one step
    // whose outcome the model is told is unknown (never re-executed).
    if matches!(boundary, "after-intent" | "after-execution") {
        assert!(unknown >= 1, "{boundary}: the interrupted mutation is reported OUTCOME_UNKNOWN");
    }
    if boundary == "after-execution" {
        assert!(persisted > executed, "{boundary}: the interrupted mutation reached the API once");
    }
    // Every persisted mutation had a dry run right before it.
    for m in log.iter().filter(|r| r.subresource == "scale" && r.is_persisted_mutation()) {
        assert!(
            log.iter().any(|d| d.seq < m.seq && d.dry_run && d.path == m.path),
            "{boundary}: no dry run before {m:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_after_the_decision() {
    scenario("after-decision").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_after_the_intent_is_recorded() {
    scenario("after-intent").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_after_execution() {
    scenario("after-execution").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_after_the_result_is_recorded() {
    scenario("after-result").await;
}

/// A mutation interrupted after its intent is reported OUTCOME_UNKNOWN with
/// what the model may see of its target: the observation is judged like
/// any read, so a policy that forbids reading the target withholds it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recovery_observes_only_what_policy_lets_the_model_read() {
    let srv = cluster().await;
    let admin = srv.client();
    let cms: Api<k8s_openapi::api::core::v1::ConfigMap> = Api::namespaced(admin.clone(), NS);
    let cm = json!({"metadata": {"name": "settings"}, "data": {"token": "hunter2"}});
    cms.create(&PostParams::default(), &serde_json::from_value(cm).unwrap()).await.unwrap();
    let policies: Api<xct::crd::XctPolicy> = Api::all(admin.clone());
    for yaml in [
        "apiVersion: xct.dev/v1alpha1\nkind: XctPolicy\nmetadata: {name: site}\nspec:\n  rules: [{name: patch, tools: ['k8s.patch'], effect: Allow}]\n",
        "apiVersion: xct.dev/v1alpha1\nkind: XctPolicy\nmetadata: {name: no-cm-reads}\nspec:\n  rules: [{name: cm, tools: ['k8s.get'], effect: Deny, when: \"proposal.arguments.kind == 'ConfigMap'\", message: ConfigMaps hold credentials here}]\n",
    ] {
        let p: xct::crd::XctPolicy = serde_yaml::from_str(yaml).unwrap();
        policies.create(&PostParams::default(), &p).await.unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    let kc = dir.path().join("kubeconfig");
    srv.write_kubeconfig(&kc, Some(OPERATOR_USER)).unwrap();
    // The first process proposes the patch; the restarted one only says done.
    let patch = json!({"next_step": {"tool": "k8s.patch", "arguments": {"kind": "ConfigMap", "name": "settings", "patch": {"data": {"mode": "off"}}}, "goal": "g"}}).to_string();
    let decisions = dir.path().join("decisions.yaml");
    std::fs::write(&decisions, serde_yaml::to_string(&[patch]).unwrap()).unwrap();
    let then_done = dir.path().join("done.yaml");
    std::fs::write(&then_done, serde_yaml::to_string(&[r#"{"done":true,"message":"ok"}"#]).unwrap()).unwrap();
    let runs: Api<XctRun> = Api::namespaced(admin.clone(), NS);
    let run: XctRun = serde_yaml::from_str(&format!(
        "apiVersion: xct.dev/v1alpha1\nkind: XctRun\nmetadata: {{name: settings}}\nspec:\n  goal: g\n  tools: [k8s.get, k8s.patch]\n  serviceAccountName: {SA}\n"
    ))
    .unwrap();
    runs.create(&PostParams::default(), &run).await.unwrap();
    let mut first = start(&kc, &decisions, Some("after-intent"));
    let exit = tokio::task::spawn_blocking(move || first.wait().unwrap()).await.unwrap();
    assert!(!exit.success(), "the first controller was aborted after the intent ({exit:?})");
    let mut second = start(&kc, &then_done, None);
    let mut status = None;
    for _ in 0..300 {
        let s = runs.get("settings").await.unwrap().status;
        if s.as_ref().is_some_and(|s| s.phase.is_terminal()) {
            status = s;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = second.kill();
    let _ = second.wait();
    let s = status.expect("the run finished after the restart");
    let first_step = &s.steps[0];
    assert_eq!(first_step.error_code(), Some(ErrorCode::OutcomeUnknown), "{:?}", first_step.signal);
    let xct::protocol::Signal::Error { details: Some(details), .. } = first_step.signal.clone().unwrap() else {
        panic!("{:?}", first_step.signal)
    };
    assert_eq!(details["observed"]["decidedBy"], "no-cm-reads/cm", "{details}");
    assert!(details["observed"]["withheld"].as_str().unwrap().contains("POLICY_VETO"), "{details}");
    let text = serde_json::to_string(&s).unwrap();
    assert!(!text.contains("hunter2"), "the ConfigMap's data never reached the model or the status");
    // The interrupted patch was not run again.
    let patched = srv
        .requests()
        .iter()
        .filter(|r| r.resource == "configmaps" && r.is_persisted_mutation() && r.verb == "patch")
        .count();
    assert_eq!(patched, 0, "the interrupted patch never ran, and was not run again");
    assert_eq!(cms.get("settings").await.unwrap().data.unwrap().get("mode"), None);
}
