//! Approvals bound to the exact proposal: a wrong digest or the run's own
//! creator does not count, Reject tells the model, Approve executes once,
//! the timeout rejects.

mod support;

use std::sync::Arc;
use std::time::Duration;

use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;
use support::*;
use xct::crd::{ApprovalState, RunPhase, XctApproval, XctRun};
use xct::engine::record::StepPhase;
use xct::model::ScriptedDecider;

fn delete(name: &str) -> String {
    json!({"next_step": {"tool": "k8s.delete", "arguments": {"kind": "ConfigMap", "name": name}, "goal": "clean up"}})
        .to_string()
}

async fn start(srv: &xct_testapi::TestApiServer, outputs: Vec<String>) -> tokio::task::JoinHandle<()> {
    let decider = Arc::new(ScriptedDecider::new(outputs));
    start_operator(srv, decider, None)
}

async fn until<F: Fn(&XctRun) -> bool>(api: &Api<XctRun>, name: &str, what: &str, f: F) -> XctRun {
    for _ in 0..200 {
        let r = api.get(name).await.unwrap();
        if f(&r) {
            return r;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{name}: {what} never happened: {:?}", api.get(name).await.unwrap().status);
}

fn awaiting(step: usize) -> impl Fn(&XctRun) -> bool {
    move |r| {
        r.status.as_ref().is_some_and(|s| {
            s.phase == RunPhase::AwaitingApproval
                && s.steps.len() == step
                && s.steps[step - 1].phase == StepPhase::AwaitingApproval
        })
    }
}

/// Approve (or reject) step `step` of the current "cleanup" run, bound to its UID.
async fn approve(client: &kube::Client, name: &str, step: u32, digest: &str, decision: &str, approver: &str) {
    let uid = Api::<XctRun>::namespaced(client.clone(), NS).get("cleanup").await.unwrap().metadata.uid.unwrap();
    approve_for(client, name, &uid, step, digest, decision, approver).await;
}

async fn approve_for(
    client: &kube::Client,
    name: &str,
    run_uid: &str,
    step: u32,
    digest: &str,
    decision: &str,
    approver: &str,
) {
    let api: Api<XctApproval> = Api::namespaced(client.clone(), NS);
    let a: XctApproval = serde_json::from_value(json!({
        "apiVersion": "xct.dev/v1alpha1", "kind": "XctApproval", "metadata": {"name": name},
        "spec": {"runName": "cleanup", "runUid": run_uid, "step": step, "proposalDigest": digest, "decision": decision, "reason": "reviewed", "approver": approver}
    }))
    .unwrap();
    api.create(&PostParams::default(), &a).await.unwrap();
}

fn run_manifest(timeout: u32) -> XctRun {
    serde_yaml::from_str(&format!(
        "apiVersion: xct.dev/v1alpha1\nkind: XctRun\nmetadata: {{name: cleanup, annotations: {{xct.dev/created-by: alice}}}}\nspec:\n  goal: delete old config\n  tools: [k8s.get, k8s.delete]\n  serviceAccountName: {SA}\n  limits: {{maxSteps: 10, approvalTimeoutSeconds: {timeout}}}\n"
    ))
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approvals_bind_to_the_digest_and_reject_or_execute() {
    let (srv, admin, cms) = cluster_with_old_config().await;
    let controller =
        start(&srv, vec![delete("old"), delete("old"), r#"{"done":true,"message":"cleaned"}"#.into()]).await;
    let runs: Api<XctRun> = Api::namespaced(admin.clone(), NS);
    runs.create(&PostParams::default(), &run_manifest(3600)).await.unwrap();

    let r = until(&runs, "cleanup", "awaiting approval of step 1", awaiting(1)).await;
    let s = r.status.unwrap();
    let digest = s.steps[0].proposal_digest.clone().unwrap();
    assert!(s.message.as_deref().unwrap().contains(&digest), "the digest is visible: {:?}", s.message);
    assert!(s.steps[0].dry_run.as_ref().is_some_and(|d| d.ok && d.summary.contains("would delete ConfigMap demo/old")));
    assert_eq!(s.steps[0].verdict.decided_by.as_deref(), Some("baseline/deletes-need-approval"));
    // A wrong digest and a self-approval are ignored.
    approve(&admin, "wrong-digest", 1, &"0".repeat(64), "Approve", "bob").await;
    approve(&admin, "self", 1, &digest, "Approve", "alice").await;
    let r = until(&runs, "cleanup", "ignored approvals to be reported", |r| {
        r.status
            .as_ref()
            .and_then(|s| s.message.clone())
            .is_some_and(|m| m.contains("digest does not match") && m.contains("cannot approve"))
    })
    .await;
    assert_eq!(r.status.unwrap().phase, RunPhase::AwaitingApproval);
    assert!(cms.get("old").await.is_ok(), "nothing executed yet");
    // Reject: the model is told, the run goes on.
    approve(&admin, "reject-1", 1, &digest, "Reject", "bob").await;
    let r = until(&runs, "cleanup", "awaiting approval of step 2", awaiting(2)).await;
    let s = r.status.unwrap();
    assert_eq!(s.steps[0].outcome_label(), "APPROVAL_REJECTED");
    assert!(format!("{:?}", s.steps[0].signal).contains("rejected by bob: reviewed"));
    assert!(cms.get("old").await.is_ok());
    // Approve the second proposal: it executes, once.
    let digest2 = s.steps[1].proposal_digest.clone().unwrap();
    assert_eq!(digest, digest2, "the same proposal has the same digest");
    srv.clear_requests();
    approve(&admin, "approve-2", 2, &digest2, "Approve", "bob").await;
    let r = until(&runs, "cleanup", "the run to finish", |r| r.status.as_ref().is_some_and(|s| s.phase.is_terminal()))
        .await;
    controller.abort();
    let s = r.status.unwrap();
    assert_eq!(s.phase, RunPhase::Succeeded);
    assert_eq!(s.steps[1].outcome_label(), "Success");
    assert!(s.steps[1].verdict.reason.starts_with("approved by bob"));
    assert!(cms.get("old").await.is_err(), "deleted after approval");
    let log = srv.requests();
    let deletes: Vec<_> =
        log.iter().filter(|r| r.resource == "configmaps" && r.verb == "delete" && !r.dry_run).collect();
    assert_eq!(deletes.len(), 1, "executed exactly once");
    let approval = log.iter().find(|r| r.resource == "xctapprovals" && r.verb == "create").unwrap();
    assert!(deletes[0].seq > approval.seq, "only after the approval");
    // Each approval says what became of it, for the run instance it was
    // considered for: kubectl get xa shows it, kstatus reads it.
    let uid = r.metadata.uid.unwrap();
    let approvals: Api<XctApproval> = Api::namespaced(admin.clone(), NS);
    let expected = [
        ("wrong-digest", ApprovalState::Ignored, "digest does not match"),
        ("self", ApprovalState::Ignored, "cannot approve"),
        ("reject-1", ApprovalState::Accepted, "rejected step 1"),
        ("approve-2", ApprovalState::Accepted, "approved step 2"),
    ];
    for (name, state, said) in expected {
        let status = approvals.get(name).await.unwrap().status.unwrap_or_else(|| panic!("{name} has no status"));
        assert_eq!(status.state, state, "{name}");
        assert!(status.message.contains(said), "{name}: {}", status.message);
        assert_eq!(status.applied_to_run_uid, uid, "{name}");
        let ready = status.conditions.iter().find(|c| c.type_ == "Ready").unwrap();
        assert_eq!(ready.status == "True", state == ApprovalState::Accepted, "{name}");
        let stalled = status.conditions.iter().find(|c| c.type_ == "Stalled").unwrap();
        assert_eq!(stalled.status == "True", state == ApprovalState::Ignored, "{name}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unanswered_approval_times_out_as_a_rejection() {
    let (srv, admin, cms) = cluster_with_old_config().await;
    let controller = start(&srv, vec![delete("old"), r#"{"done":true,"message":"gave up"}"#.into()]).await;
    let runs: Api<XctRun> = Api::namespaced(admin.clone(), NS);
    runs.create(&PostParams::default(), &run_manifest(1)).await.unwrap();
    let r = until(&runs, "cleanup", "the run to finish", |r| r.status.as_ref().is_some_and(|s| s.phase.is_terminal()))
        .await;
    controller.abort();
    let s = r.status.unwrap();
    assert_eq!(s.steps[0].outcome_label(), "APPROVAL_REJECTED");
    assert!(format!("{:?}", s.steps[0].signal).contains("no approval arrived within 1s"));
    assert!(cms.get("old").await.is_ok(), "nothing was deleted");
}

/// The run "cleanup" awaiting approval of its delete at step 1, with its
/// UID and proposal digest.
async fn awaiting_delete(
    srv: &xct_testapi::TestApiServer,
    manifest: XctRun,
    outputs: Vec<String>,
) -> (tokio::task::JoinHandle<()>, Api<XctRun>, String, String) {
    let controller = start(srv, outputs).await;
    let runs: Api<XctRun> = Api::namespaced(srv.client(), NS);
    runs.create(&PostParams::default(), &manifest).await.unwrap();
    let r = until(&runs, "cleanup", "awaiting approval of step 1", awaiting(1)).await;
    let uid = r.metadata.uid.clone().unwrap();
    let s = r.status.unwrap();
    let digest = s.steps[0].proposal_digest.clone().unwrap();
    assert_eq!(s.steps[0].judged_for.as_ref().map(|j| j.run_uid.as_str()), Some(uid.as_str()));
    assert!(s.message.as_deref().unwrap().contains(&uid), "the run UID is shown next to the digest: {:?}", s.message);
    (controller, runs, uid, digest)
}

/// No delete of ConfigMap "old" reached storage, as anyone.
fn nothing_deleted(srv: &xct_testapi::TestApiServer) {
    let log = srv.requests();
    let deletes: Vec<_> =
        log.iter().filter(|r| r.resource == "configmaps" && r.verb == "delete" && r.is_persisted_mutation()).collect();
    assert!(deletes.is_empty(), "{deletes:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_approval_never_carries_over_to_a_recreated_run() {
    let (srv, admin, cms) = cluster_with_old_config().await;
    let (controller, runs, old_uid, digest) =
        awaiting_delete(&srv, run_manifest(3600), vec![delete("old"), delete("old")]).await;
    // The run is deleted and re-created under the same name; an approval
    // written for the old instance must not approve the new one.
    runs.delete("cleanup", &Default::default()).await.unwrap();
    approve_for(&admin, "late", &old_uid, 1, &digest, "Approve", "bob").await;
    runs.create(&PostParams::default(), &run_manifest(3600)).await.unwrap();
    let r = until(&runs, "cleanup", "the old approval to be reported as ignored", |r| {
        r.metadata.uid.as_deref() != Some(old_uid.as_str())
            && r.status.as_ref().and_then(|s| s.message.clone()).is_some_and(|m| m.contains("is not this run's"))
    })
    .await;
    controller.abort();
    let s = r.status.unwrap();
    assert_eq!(s.phase, RunPhase::AwaitingApproval);
    assert_eq!(s.steps[0].proposal_digest.as_deref(), Some(digest.as_str()), "the same proposal, the same digest");
    assert!(cms.get("old").await.is_ok());
    nothing_deleted(&srv);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn switching_the_service_account_while_waiting_vetoes_the_step() {
    let (srv, admin, cms) = cluster_with_old_config().await;
    let sas: Api<k8s_openapi::api::core::v1::ServiceAccount> = Api::namespaced(admin.clone(), NS);
    sas.create(&PostParams::default(), &serde_json::from_value(json!({"metadata": {"name": "admin"}})).unwrap())
        .await
        .unwrap();
    let outputs = vec![delete("old"), r#"{"done":true,"message":"stopped"}"#.into()];
    let (controller, runs, uid, digest) = awaiting_delete(&srv, run_manifest(3600), outputs).await;
    // Dry-run as runner; the spec now says admin.
    runs.patch("cleanup", &PatchParams::default(), &Patch::Merge(json!({"spec": {"serviceAccountName": "admin"}})))
        .await
        .unwrap();
    approve_for(&admin, "ok", &uid, 1, &digest, "Approve", "bob").await;
    let r = until(&runs, "cleanup", "the run to finish", |r| r.status.as_ref().is_some_and(|s| s.phase.is_terminal()))
        .await;
    controller.abort();
    let s = r.status.unwrap();
    assert_eq!(s.steps[0].outcome_label(), "APPROVAL_STALE", "{:?}", s.steps[0].signal);
    assert!(format!("{:?}", s.steps[0].signal).contains("system:serviceaccount:demo:admin"));
    assert!(cms.get("old").await.is_ok());
    nothing_deleted(&srv);
    let as_admin = xct::k8s::service_account_user(NS, "admin");
    assert!(
        !srv.requests().iter().any(|r| r.user == as_admin && r.resource == "configmaps"),
        "nothing was sent as admin"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_added_while_waiting_vetoes_the_approved_step() {
    let (srv, admin, cms) = cluster_with_old_config().await;
    let outputs = vec![delete("old"), r#"{"done":true,"message":"stopped"}"#.into()];
    let (controller, runs, uid, digest) = awaiting_delete(&srv, run_manifest(3600), outputs).await;
    let policies: Api<xct::crd::XctPolicy> = Api::all(admin.clone());
    let freeze: xct::crd::XctPolicy = serde_yaml::from_str(
        "apiVersion: xct.dev/v1alpha1\nkind: XctPolicy\nmetadata: {name: freeze}\nspec:\n  rules: [{name: all, tools: ['*'], effect: Deny, message: change freeze}]\n",
    )
    .unwrap();
    policies.create(&PostParams::default(), &freeze).await.unwrap();
    // Wait until the operator has seen it (it reports the policy Ready).
    for _ in 0..100 {
        let ready = policies.get("freeze").await.unwrap().status.is_some_and(|s| s.observed_generation.is_some());
        if ready {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    srv.clear_requests();
    approve_for(&admin, "ok", &uid, 1, &digest, "Approve", "bob").await;
    let r = until(&runs, "cleanup", "the run to finish", |r| r.status.as_ref().is_some_and(|s| s.phase.is_terminal()))
        .await;
    controller.abort();
    let s = r.status.unwrap();
    assert_eq!(s.steps[0].outcome_label(), "POLICY_VETO", "{:?}", s.steps[0].signal);
    assert_eq!(s.steps[0].verdict.decided_by.as_deref(), Some("freeze/all"));
    assert!(cms.get("old").await.is_ok());
    nothing_deleted(&srv);
    let dry_runs = srv.requests().iter().filter(|r| r.resource == "configmaps" && r.verb == "delete").count();
    assert_eq!(dry_runs, 0, "vetoed before its dry run");
}

/// With the chart's defaults every run carries its creator; a run without
/// one (created around the admission policy) can never be approved, so no
/// one can approve their own run by leaving the annotation out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_approval_counts_for_a_run_whose_creator_is_unknown() {
    let (srv, admin, cms) = cluster_with_old_config().await;
    let mut manifest = run_manifest(3600);
    manifest.metadata.annotations = None;
    let (controller, runs, uid, digest) = awaiting_delete(&srv, manifest, vec![delete("old")]).await;
    approve_for(&admin, "ok", &uid, 1, &digest, "Approve", "mallory").await;
    let r = until(&runs, "cleanup", "the approval to be reported as ignored", |r| {
        r.status.as_ref().and_then(|s| s.message.clone()).is_some_and(|m| m.contains("who created it is unknown"))
    })
    .await;
    controller.abort();
    assert_eq!(r.status.unwrap().phase, RunPhase::AwaitingApproval);
    assert!(cms.get("old").await.is_ok());
    nothing_deleted(&srv);
}

/// `xct` (or `kubectl xct`, through a kubectl-xct link) as the user in
/// `kubeconfig`: exit code, stdout, stderr.
fn xct_as(kubeconfig: &std::path::Path, plugin: bool, args: &[&str]) -> (Option<i32>, String, String) {
    let out = if plugin {
        let bin = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_xct"), bin.path().join("kubectl-xct")).unwrap();
        let path = format!("{}:{}", bin.path().display(), std::env::var("PATH").unwrap_or_default());
        std::process::Command::new(xct_testapi::kubectl::binary())
            .arg("xct")
            .args(args)
            .env("KUBECONFIG", kubeconfig)
            .env("KUBECACHEDIR", xct_testapi::kubectl::cache_dir(kubeconfig))
            .env("PATH", path)
            .output()
            .unwrap()
    } else {
        std::process::Command::new(env!("CARGO_BIN_EXE_xct")).args(args).env("KUBECONFIG", kubeconfig).output().unwrap()
    };
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (out.status.code(), text(&out.stdout), text(&out.stderr))
}

/// A reviewer lists what waits, and approves it from kubectl: the approval
/// is created as the reviewer (found with a SelfSubjectReview) for exactly
/// the pending run UID, step and digest, and the step executes once. Asking
/// for another step, or approving one's own run, creates nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approving_from_kubectl_binds_the_pending_step_as_the_current_user() {
    let (srv, admin, cms) = cluster_with_old_config().await;
    let controller = start(&srv, vec![delete("old"), r#"{"done":true,"message":"cleaned"}"#.into()]).await;
    let runs: Api<XctRun> = Api::namespaced(admin.clone(), NS);
    runs.create(&PostParams::default(), &run_manifest(3600)).await.unwrap();
    let r = until(&runs, "cleanup", "awaiting approval of step 1", awaiting(1)).await;
    let digest = r.status.as_ref().unwrap().steps[0].proposal_digest.clone().unwrap();
    let uid = r.metadata.uid.clone().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (bob, alice) = (dir.path().join("bob"), dir.path().join("alice"));
    srv.write_kubeconfig(&bob, Some("bob")).unwrap();
    srv.write_kubeconfig(&alice, Some("alice")).unwrap();
    grant_edit(&admin, &["alice", "bob"]).await;
    // A run the types cannot read (the CRD's schema does not bound a u32
    // from above) is reported, and the list still shows what waits.
    let odd = json!({"apiVersion": "xct.dev/v1alpha1", "kind": "XctRun", "metadata": {"name": "odd"},
                     "spec": {"goal": "g", "tools": ["k8s.get"], "model": {"seed": 4_294_967_297u64}}});
    create_raw(&admin, "xctruns", Some(NS), odd).await;

    let listed = tokio::task::spawn_blocking({
        let bob = bob.clone();
        move || xct_as(&bob, false, &["approvals", "list", "-n", NS])
    })
    .await
    .unwrap();
    assert_eq!(listed.0, Some(0), "{listed:?}");
    let row = listed.1.lines().find(|l| l.contains("cleanup")).unwrap_or_else(|| panic!("{}", listed.1));
    assert!(row.contains("k8s.delete") && row.contains(&digest[..12]) && row.contains("would delete"), "{row}");
    assert!(listed.2.contains("demo/odd: this XctRun cannot be read: spec.model.seed: invalid value"), "{listed:?}");

    srv.clear_requests();
    let (bob2, alice2) = (bob.clone(), alice.clone());
    let refused = tokio::task::spawn_blocking(move || {
        [
            xct_as(&bob2, false, &["approve", "cleanup", "-n", NS, "--step", "2"]),
            xct_as(&alice2, false, &["approve", "cleanup", "-n", NS]),
        ]
    })
    .await
    .unwrap();
    assert_eq!(refused[0].0, Some(1), "{:?}", refused[0]);
    assert!(refused[0].2.contains("awaits approval of step 1, not step 2"), "{:?}", refused[0]);
    assert_eq!(refused[1].0, Some(1), "{:?}", refused[1]);
    assert!(refused[1].2.contains("you (alice) created this run"), "{:?}", refused[1]);
    let creates = |log: &[xct_testapi::RequestRecord]| {
        log.iter().filter(|r| r.resource == "xctapprovals" && r.verb == "create").cloned().collect::<Vec<_>>()
    };
    assert!(creates(&srv.requests()).is_empty(), "a refused answer creates nothing");

    let approved = tokio::task::spawn_blocking(move || {
        xct_as(&bob, true, &["approve", "cleanup", "-n", NS, "--step", "1", "--reason", "old config, reviewed"])
    })
    .await
    .unwrap();
    assert_eq!(approved.0, Some(0), "{approved:?}");
    assert!(approved.1.contains(&digest) && approved.1.contains("would delete ConfigMap demo/old"), "{}", approved.1);
    let r = until(&runs, "cleanup", "the run to finish", |r| r.status.as_ref().is_some_and(|s| s.phase.is_terminal()))
        .await;
    controller.abort();
    assert_eq!(r.status.unwrap().phase, RunPhase::Succeeded);
    assert!(cms.get("old").await.is_err(), "deleted after the approval");

    let log = srv.requests();
    let created = creates(&log);
    assert_eq!(created.len(), 1);
    assert_eq!((created[0].user.as_str(), created[0].impersonated), ("bob", false), "created as the reviewer");
    // Who asked: alice (refused: her own run) and bob; the wrong-step try
    // stopped before asking.
    let reviews: Vec<_> = log
        .iter()
        .filter(|r| r.resource == "selfsubjectreviews" && r.verb == "create")
        .map(|r| r.user.as_str())
        .collect();
    assert_eq!(reviews, ["alice", "bob"]);
    let approvals: Api<XctApproval> = Api::namespaced(admin.clone(), NS);
    let a = approvals.list(&Default::default()).await.unwrap().items.remove(0);
    assert_eq!(
        (a.spec.run_uid.as_str(), a.spec.step, a.spec.proposal_digest.as_str(), a.spec.approver.as_str()),
        (uid.as_str(), 1, digest.as_str(), "bob")
    );
    assert_eq!(a.spec.reason, "old config, reviewed");
    assert_eq!(a.status.unwrap().state, ApprovalState::Accepted);
    let deletes = log.iter().filter(|r| r.resource == "configmaps" && r.verb == "delete" && !r.dry_run).count();
    assert_eq!(deletes, 1, "executed exactly once");
}

/// What a reviewer approves from kubectl is what they reviewed. `xct
/// approvals show` prints the pending proposal whole and writes nothing;
/// `approve --digest` pins the proposal read there. Between the review and
/// the approval the run is deleted and re-created under the same name, and
/// its new instance waits at the same step on another proposal (deleting
/// another ConfigMap): `--step 1` would bind whatever waits now, so the
/// reviewer's answer names the digest too, and is refused, creating
/// nothing. A digest that is not at least 12 hex digits is refused before
/// anything is asked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_approval_from_kubectl_pins_the_proposal_reviewed() {
    let (srv, admin, cms) = cluster_with_old_config().await;
    let precious = serde_json::from_value(json!({"metadata": {"name": "precious"}})).unwrap();
    cms.create(&PostParams::default(), &precious).await.unwrap();
    let outputs = vec![delete("old"), delete("precious")];
    let (controller, runs, old_uid, reviewed) = awaiting_delete(&srv, run_manifest(3600), outputs).await;
    let dir = tempfile::tempdir().unwrap();
    let bob = dir.path().join("bob");
    srv.write_kubeconfig(&bob, Some("bob")).unwrap();
    grant_edit(&admin, &["bob"]).await;
    let as_bob = |args: Vec<String>| {
        let bob = bob.clone();
        tokio::task::spawn_blocking(move || xct_as(&bob, false, &args.iter().map(String::as_str).collect::<Vec<_>>()))
    };
    let args = |s: &str| s.split(' ').map(str::to_string).collect::<Vec<_>>();
    let creates = |srv: &xct_testapi::TestApiServer| {
        srv.requests().iter().filter(|r| r.resource == "xctapprovals" && r.verb == "create").count()
    };

    srv.clear_requests();
    let shown = as_bob(args("approvals show cleanup -n demo")).await.unwrap();
    assert_eq!(shown.0, Some(0), "{shown:?}");
    assert!(shown.1.contains(&format!("digest:   {reviewed}")), "{}", shown.1);
    assert!(shown.1.contains(r#""name":"old""#) && shown.1.contains("would delete ConfigMap demo/old"), "{}", shown.1);
    assert_eq!(creates(&srv), 0, "showing writes nothing");

    runs.delete("cleanup", &Default::default()).await.unwrap();
    runs.create(&PostParams::default(), &run_manifest(3600)).await.unwrap();
    let r = until(&runs, "cleanup", "the new instance awaiting step 1", |r| {
        r.metadata.uid.as_deref() != Some(old_uid.as_str()) && awaiting(1)(r)
    })
    .await;
    let now = r.status.unwrap().steps[0].proposal_digest.clone().unwrap();
    assert_ne!(now, reviewed, "the new instance waits on another proposal");

    let pinned = format!("approve cleanup -n demo --step 1 --digest {}", &reviewed[..12]);
    let refused = as_bob(args(&pinned)).await.unwrap();
    assert_eq!(refused.0, Some(1), "{refused:?}");
    let why = format!("waits on proposal {}, not the one you reviewed ({})", &now[..12], &reviewed[..12]);
    assert!(refused.2.contains(&why), "{refused:?}");
    for bad in ["abc", "zzzzzzzzzzzzzz"] {
        let refused = as_bob(args(&format!("approve cleanup -n demo --digest {bad}"))).await.unwrap();
        assert_eq!(refused.0, Some(2), "{refused:?}");
        assert!(refused.2.contains("at least 12 hex digits"), "{refused:?}");
    }
    assert_eq!(creates(&srv), 0, "a refused answer creates nothing");

    // Reviewed in its turn, the pending proposal is approved by its digest.
    let approved = as_bob(args(&format!("approve cleanup -n demo --digest {}", &now[..16]))).await.unwrap();
    assert_eq!(approved.0, Some(0), "{approved:?}");
    until(&runs, "cleanup", "the approved delete", |r| {
        r.status.as_ref().is_some_and(|s| s.steps.first().is_some_and(|s| s.phase != StepPhase::AwaitingApproval))
    })
    .await;
    controller.abort();
    assert_eq!(creates(&srv), 1);
    assert!(cms.get("old").await.is_ok(), "the proposal first reviewed never ran");
}
