//! Leader election: two operators, only the leader decides and executes;
//! the leader is killed mid-run, the other takes over, no step is
//! duplicated or lost.

mod support;

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use kube::api::Api;
use serde_json::json;
use support::*;
use xct::crd::{RunPhase, XctRun};
use xct::engine::record::{StepPhase, verify_chain};
use xct::model::ScriptedDecider;
use xct::operator::leader::{Leadership, LeaseConfig};
use xct::operator::{Context, health::Readiness};

struct Replica {
    elector: tokio::task::JoinHandle<()>,
    controller: tokio::task::JoinHandle<()>,
}

impl Replica {
    fn kill(self) {
        self.elector.abort();
        self.controller.abort();
    }
}

fn replica(srv: &xct_testapi::TestApiServer, name: &str, decider: Arc<ScriptedDecider>) -> Replica {
    let mut config = kube::Config::new(srv.url().parse().unwrap());
    config.auth_info.token = Some(name.to_string().into());
    let client = kube::Client::try_from(config.clone()).unwrap();
    let leadership = Arc::new(Leadership::default());
    let lease = LeaseConfig {
        namespace: OPERATOR_NS.into(),
        name: "xct-operator".into(),
        identity: name.into(),
        duration: Duration::from_secs(3),
    };
    let elector = tokio::spawn(xct::operator::leader::run(client.clone(), lease, leadership.clone()));
    let ctx = Arc::new(Context::new(client, config, decider).with_leadership(leadership));
    let controller = tokio::spawn(xct::operator::run(ctx, None, Arc::new(Readiness::default())));
    Replica { elector, controller }
}

fn step(replicas: u32) -> String {
    json!({"next_step": {"tool": "k8s.scale", "arguments": {"kind": "Deployment", "name": "web", "replicas": replicas}, "goal": "g"}}).to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_follower_takes_over_without_duplicating_or_losing_steps() {
    let srv = cluster().await;
    let admin = srv.client();
    bind_as_operator(&admin, &["replica-a", "replica-b"]).await;
    let mut outputs: Vec<String> = (1..=8).map(step).collect();
    outputs.push(r#"{"done":true,"message":"scaled"}"#.into());
    let decider = Arc::new(ScriptedDecider::new(outputs));
    let a = replica(&srv, "replica-a", decider.clone());
    wait_for_lease_holder(&admin, "replica-a").await;
    let b = replica(&srv, "replica-b", decider.clone());
    let runs: Api<XctRun> = Api::namespaced(admin.clone(), NS);
    create_scale_run(&runs, "long", 20).await;
    // Let the leader record a few steps, then kill it.
    wait_for_steps(&runs, "long", 3).await;
    let killed_at = srv.requests().len() as u64;
    a.kill();
    let mut done = None;
    for _ in 0..300 {
        let r = runs.get("long").await.unwrap();
        if r.status.as_ref().is_some_and(|s| s.phase.is_terminal()) {
            done = Some(r);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    b.kill();
    let status = done.expect("the follower finished the run").status.unwrap();
    assert_eq!(status.phase, RunPhase::Succeeded, "{:?}", status.message);
    verify_chain(&status.steps, "", 1).expect("consecutive, unedited history");
    assert!(status.steps.iter().all(|s| s.phase == StepPhase::Completed));
    let log = srv.requests();
    let writes = |who: &str| {
        log.iter()
            .filter(|r| {
                r.authenticated_user == who && r.resource == "xctruns" && r.subresource == "status" && r.status < 300
            })
            .count()
    };
    assert!(writes("replica-a") >= 3, "the first leader recorded steps");
    assert!(writes("replica-b") >= 1, "the follower took over");
    // Before the kill, the follower never wrote a step or touched a tool target.
    assert!(!log.iter().any(|r| r.seq <= killed_at
        && r.authenticated_user == "replica-b"
        && (r.subresource == "status" || r.impersonated)));
    // After the kill, the dead leader made no request.
    assert!(!log.iter().any(|r| r.seq > killed_at + 5 && r.authenticated_user == "replica-a"));
    // Every mutation that reached the API is exactly one recorded step
    // (executed, or recorded as OUTCOME_UNKNOWN if the kill hit mid-step).
    let persisted = log
        .iter()
        .filter(|r| r.resource == "deployments" && r.subresource == "scale" && r.is_persisted_mutation())
        .count();
    let recorded = status.steps.iter().filter(|s| s.mutating && s.signal.is_some()).count();
    let unknown =
        status.steps.iter().filter(|s| s.error_code() == Some(xct::protocol::ErrorCode::OutcomeUnknown)).count();
    // A decision the killed leader had made but not yet recorded is lost
    // work, never an execution: at most one of the 8 proposals.
    assert!(recorded >= 7, "the proposals were recorded: {recorded}");
    assert!(
        persisted <= recorded && persisted + unknown >= recorded,
        "no mutation executed twice or unrecorded: {persisted} persisted, {recorded} recorded, {unknown} unknown"
    );
    let leases: Api<Lease> = Api::namespaced(admin.clone(), OPERATOR_NS);
    let leases_taken = leases.get("xct-operator").await.unwrap().spec.unwrap().lease_transitions;
    assert_eq!(leases_taken, Some(1));
}
