//! Leader election with two `xct controller --leader-elect` processes: the
//! leader is killed (SIGKILL) mid-run, the other takes over, no step is
//! duplicated or lost.

mod support;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use kube::api::Api;
use serde_json::json;
use support::*;
use xct::crd::{RunPhase, XctRun};
use xct::engine::record::verify_chain;
use xct::protocol::ErrorCode;

/// A replica; `lease_seconds` None keeps the default lease settings.
fn replica_with(kc: &std::path::Path, decisions: &std::path::Path, name: &str, lease_seconds: Option<u32>) -> Child {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_xct"));
    cmd.args(["controller", "--leader-elect", "--health-addr", "127.0.0.1:0"]);
    if let Some(s) = lease_seconds {
        cmd.args(["--leader-election-seconds", &s.to_string()]);
    }
    cmd.arg("--scripted-decisions")
        .arg(decisions)
        .env("KUBECONFIG", kc)
        .env("POD_NAME", name)
        .env("POD_NAMESPACE", OPERATOR_NS)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

fn replica(kc: &std::path::Path, decisions: &std::path::Path, name: &str) -> Child {
    replica_with(kc, decisions, name, Some(3))
}

/// A cluster where the replicas have the chart's operator grants, and a folder with
/// a kubeconfig per replica (a.kubeconfig, b.kubeconfig) and the script
/// both replay from its start (decisions.yaml): a slow series of scales,
/// then done.
async fn two_replicas() -> (xct_testapi::TestApiServer, kube::Client, tempfile::TempDir) {
    let srv = cluster().await;
    let admin = srv.client();
    bind_as_operator(&admin, &["replica-a", "replica-b"]).await;
    let dir = tempfile::tempdir().unwrap();
    srv.write_kubeconfig(&dir.path().join("a.kubeconfig"), Some("replica-a")).unwrap();
    srv.write_kubeconfig(&dir.path().join("b.kubeconfig"), Some("replica-b")).unwrap();
    let mut outputs: Vec<String> = (0..40)
        .map(|i| json!({"next_step": {"tool": "k8s.scale", "arguments": {"kind": "Deployment", "name": "web", "replicas": 1 + i % 4}, "goal": "g"}}).to_string())
        .collect();
    outputs.push(r#"{"done":true,"message":"ok"}"#.into());
    std::fs::write(dir.path().join("decisions.yaml"), serde_yaml::to_string(&outputs).unwrap()).unwrap();
    (srv, admin, dir)
}

/// Wait (up to 15 s) for run `name` to finish.
async fn wait_for_end(runs: &Api<XctRun>, name: &str) -> Option<xct::crd::XctRunStatus> {
    for _ in 0..300 {
        let r = runs.get(name).await.unwrap();
        if r.status.as_ref().is_some_and(|s| s.phase.is_terminal()) {
            return r.status;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    None
}

/// No mutation executed twice: what reached the API is what the history
/// records as executed, plus at most the steps whose outcome is unknown.
/// Returns (persisted, unknown).
fn each_mutation_once(srv: &xct_testapi::TestApiServer, status: &xct::crd::XctRunStatus) -> (usize, usize) {
    let persisted = srv.requests().iter().filter(|r| r.subresource == "scale" && r.is_persisted_mutation()).count();
    let executed =
        status.steps.iter().filter(|s| s.mutating && s.signal.as_ref().is_some_and(|g| !g.is_error())).count();
    let unknown = status.steps.iter().filter(|s| s.error_code() == Some(ErrorCode::OutcomeUnknown)).count();
    assert!(
        persisted >= executed && persisted <= executed + unknown,
        "{persisted} persisted, {executed} executed, {unknown} unknown"
    );
    (persisted, unknown)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_leader_process_hands_over_without_duplicates() {
    let (srv, admin, dir) = two_replicas().await;
    let (kc_a, kc_b, decisions) =
        (dir.path().join("a.kubeconfig"), dir.path().join("b.kubeconfig"), dir.path().join("decisions.yaml"));

    let mut a = replica(&kc_a, &decisions, "replica-a");
    wait_for_lease_holder(&admin, "replica-a").await;
    let mut b = replica(&kc_b, &decisions, "replica-b");
    let runs: Api<XctRun> = Api::namespaced(admin.clone(), NS);
    create_scale_run(&runs, "handover", 30).await;
    wait_for_steps(&runs, "handover", 5).await;
    a.kill().unwrap(); // SIGKILL
    a.wait().unwrap();
    let killed_at = srv.requests().len() as u64;
    let status = wait_for_end(&runs, "handover").await;
    let _ = b.kill();
    let _ = b.wait();
    let status = status.expect("the surviving replica finished the run");
    assert!(matches!(status.phase, RunPhase::Succeeded | RunPhase::Failed), "{:?}", status.phase);
    verify_chain(&status.steps, "", 1).expect("no step lost, repeated or edited");
    let log = srv.requests();
    let wrote = |who: &str| {
        log.iter().any(|r| {
            r.authenticated_user == who && r.subresource == "status" && r.resource == "xctruns" && r.status < 300
        })
    };
    assert!(wrote("replica-a") && wrote("replica-b"), "both replicas led in turn");
    assert!(
        !log.iter().any(|r| r.seq <= killed_at
            && r.authenticated_user == "replica-b"
            && (r.impersonated || r.subresource == "status")),
        "the follower stayed passive while the leader lived"
    );
    let (persisted, unknown) = each_mutation_once(&srv, &status);
    println!("{} steps, {persisted} mutations, {unknown} unknown after the kill", status.steps.len());
}

/// A rollout: the leader gets SIGTERM, finishes its step, releases the
/// Lease and exits 0; with the default lease settings (15 s) the standby
/// holds the Lease within 2 s, and the run goes on without a duplicate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_releases_the_lease_and_a_standby_takes_over_at_once() {
    let (srv, admin, dir) = two_replicas().await;
    let (kc_a, kc_b, decisions) =
        (dir.path().join("a.kubeconfig"), dir.path().join("b.kubeconfig"), dir.path().join("decisions.yaml"));
    let mut a = replica_with(&kc_a, &decisions, "replica-a", None);
    wait_for_lease_holder(&admin, "replica-a").await;
    let mut b = replica_with(&kc_b, &decisions, "replica-b", None);
    let runs: Api<XctRun> = Api::namespaced(admin.clone(), NS);
    create_scale_run(&runs, "rollout", 30).await;
    wait_for_steps(&runs, "rollout", 5).await;
    // Let the standby start polling before the leader goes.
    tokio::time::sleep(Duration::from_millis(500)).await;
    // SAFETY: a plain kill(2) of our own child process.
    let sent = unsafe { libc::kill(a.id() as libc::pid_t, libc::SIGTERM) };
    assert_eq!(sent, 0, "SIGTERM sent");
    let t = std::time::Instant::now();
    let leases: Api<k8s_openapi::api::coordination::v1::Lease> = Api::namespaced(admin.clone(), OPERATOR_NS);
    let mut handed_over = None;
    while t.elapsed() < Duration::from_secs(20) {
        let holder = leases.get("xct-operator").await.unwrap().spec.and_then(|s| s.holder_identity);
        if holder.as_deref() == Some("replica-b") {
            handed_over = Some(t.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let exit = a.wait().unwrap();
    let handed_over = handed_over.expect("the standby took the Lease");
    println!("handover after SIGTERM: {} ms", handed_over.as_millis());
    assert!(exit.success(), "the leader shut down cleanly: {exit:?}");
    assert!(handed_over < Duration::from_secs(2), "handover took {handed_over:?} (the lease is 15 s)");
    let status = wait_for_end(&runs, "rollout").await;
    let _ = b.kill();
    let _ = b.wait();
    let status = status.expect("the new leader finished the run");
    verify_chain(&status.steps, "", 1).expect("no step lost, repeated or edited");
    let (_, unknown) = each_mutation_once(&srv, &status);
    assert_eq!(unknown, 0, "a graceful shutdown finishes its step: nothing is left unknown");
}
