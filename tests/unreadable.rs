//! One object the operator cannot read as its type (a number past the
//! type's range, a newer chart's value, anything an older or loosened CRD
//! let in) never stops the runs around it: an XctApproval that cannot be
//! read is ignored and says why on its status; an XctPolicy that cannot be
//! read vetoes every proposal of every run (it might have been a Deny), so
//! nothing it could have forbidden runs, and the runs still end.

mod support;

use std::sync::Arc;
use std::time::Duration;

use kube::api::{Api, DynamicObject, PostParams};
use serde_json::{Value, json};
use support::*;
use xct::crd::{RunPhase, XctApproval, XctPolicy, XctRun};
use xct::engine::record::{StepPhase, VerdictOutcome};
use xct::model::ScriptedDecider;

/// Poll `f` every 50 ms for up to 10 s.
async fn until<T>(what: &str, mut f: impl AsyncFnMut() -> Option<T>) -> T {
    for _ in 0..200 {
        if let Some(v) = f().await {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{what} never happened");
}

/// The status of the `xct.dev` object `plural`/`name`, as stored.
async fn raw_status(client: &kube::Client, plural: &str, kind: &str, namespace: Option<&str>, name: &str) -> Value {
    let ar = kube::api::ApiResource::from_gvk_with_plural(
        &kube::api::GroupVersionKind::gvk("xct.dev", "v1alpha1", kind),
        plural,
    );
    let api: Api<DynamicObject> = match namespace {
        Some(ns) => Api::namespaced_with(client.clone(), ns, &ar),
        None => Api::all_with(client.clone(), &ar),
    };
    api.get(name).await.unwrap().data["status"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_approval_the_operator_cannot_read_is_ignored_and_the_run_goes_on() {
    let (srv, admin, cms) = cluster_with_old_config().await;
    let delete = json!({"next_step": {"tool": "k8s.delete", "arguments": {"kind": "ConfigMap", "name": "old"}, "goal": "clean up"}});
    let decider = Arc::new(ScriptedDecider::new([delete.to_string(), r#"{"done":true,"message":"cleaned"}"#.into()]));
    let controller = start_operator(&srv, decider, None);
    let runs: Api<XctRun> = Api::namespaced(admin.clone(), NS);
    let run: XctRun = serde_yaml::from_str(&format!(
        "apiVersion: xct.dev/v1alpha1\nkind: XctRun\nmetadata: {{name: cleanup, annotations: {{xct.dev/created-by: alice}}}}\nspec:\n  goal: delete old config\n  tools: [k8s.delete]\n  serviceAccountName: {SA}\n"
    ))
    .unwrap();
    runs.create(&PostParams::default(), &run).await.unwrap();
    let (uid, digest) = until("step 1 awaits approval", async || {
        let r = runs.get("cleanup").await.unwrap();
        let s = r.status?;
        let step = s.steps.first().filter(|s| s.phase == StepPhase::AwaitingApproval)?;
        Some((r.metadata.uid?, step.proposal_digest.clone()?))
    })
    .await;
    // The CRD's schema says only "integer, at least 1": the API server stores
    // a step past u32, which no XctApproval can hold.
    let approval = |name: &str, step: Value| {
        json!({"apiVersion": "xct.dev/v1alpha1", "kind": "XctApproval", "metadata": {"name": name},
               "spec": {"runName": "cleanup", "runUid": uid, "step": step, "proposalDigest": digest,
                        "decision": "Approve", "reason": "reviewed", "approver": "bob"}})
    };
    create_raw(&admin, "xctapprovals", Some(NS), approval("too-far", json!(4_294_967_297u64))).await;
    create_raw(&admin, "xctapprovals", Some(NS), approval("bob", json!(1))).await;
    let done = until("the run ends", async || {
        let r = runs.get("cleanup").await.unwrap();
        r.status.as_ref().is_some_and(|s| s.phase.is_terminal()).then_some(r)
    })
    .await;
    let ignored = until("the unreadable approval says why", async || {
        let s = raw_status(&admin, "xctapprovals", "XctApproval", Some(NS), "too-far").await;
        (s["state"] == "Ignored").then_some(s)
    })
    .await;
    controller.abort();
    let status = done.status.unwrap();
    assert_eq!(status.phase, RunPhase::Succeeded, "{:?}", status.message);
    assert_eq!(status.steps[0].phase, StepPhase::Completed);
    assert!(cms.get_opt("old").await.unwrap().is_none(), "bob's approval executed the delete");
    let message = ignored["message"].as_str().unwrap_or_default();
    assert!(message.contains("cannot be read") && message.contains("spec.step"), "{ignored}");
    let accepted = Api::<XctApproval>::namespaced(admin.clone(), NS).get("bob").await.unwrap();
    assert_eq!(accepted.status.map(|s| s.state), Some(xct::crd::ApprovalState::Accepted));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_the_operator_cannot_read_vetoes_every_proposal_and_the_run_still_ends() {
    let srv = cluster().await;
    let admin = srv.client();
    // A newer chart's CRD that knows an effect this operator does not.
    install_loose_crd::<XctPolicy>(&admin).await;
    let newer = json!({"apiVersion": "xct.dev/v1alpha1", "kind": "XctPolicy", "metadata": {"name": "newer"},
                       "spec": {"rules": [{"name": "warn-all", "tools": ["*"], "effect": "Warn"}]}});
    create_raw(&admin, "xctpolicies", None, newer).await;
    let get =
        json!({"next_step": {"tool": "k8s.get", "arguments": {"kind": "Deployment", "name": "web"}, "goal": "look"}});
    let decider =
        Arc::new(ScriptedDecider::new([get.to_string(), r#"{"done":true,"message":"could not look"}"#.into()]));
    let controller = start_operator(&srv, decider.clone(), None);
    let runs: Api<XctRun> = Api::namespaced(admin.clone(), NS);
    let run: XctRun = serde_yaml::from_str(&format!(
        "apiVersion: xct.dev/v1alpha1\nkind: XctRun\nmetadata: {{name: look}}\nspec:\n  goal: read web\n  tools: [k8s.get]\n  serviceAccountName: {SA}\n"
    ))
    .unwrap();
    srv.clear_requests();
    runs.create(&PostParams::default(), &run).await.unwrap();
    let done = until("the run ends", async || {
        let r = runs.get("look").await.unwrap();
        r.status.as_ref().is_some_and(|s| s.phase.is_terminal()).then_some(r)
    })
    .await;
    let invalid = until("the unreadable policy says why", async || {
        let s = raw_status(&admin, "xctpolicies", "XctPolicy", None, "newer").await;
        let conditions = s["conditions"].as_array()?.clone();
        conditions.into_iter().find(|c| c["type"] == "Invalid" && c["status"] == "True")
    })
    .await;
    controller.abort();
    let status = done.status.unwrap();
    assert_eq!(status.phase, RunPhase::Succeeded, "{:?}", status.message);
    let step = &status.steps[0];
    assert_eq!(step.verdict.outcome, VerdictOutcome::Vetoed, "{step:?}");
    assert_eq!(step.verdict.decided_by.as_deref(), Some("newer/-"), "{step:?}");
    assert!(step.verdict.reason.contains("cannot be read"), "{}", step.verdict.reason);
    assert_eq!(decider.requests().len(), 2, "the vetoed read, then done");
    assert!(invalid["message"].as_str().unwrap_or_default().contains("cannot be read"), "{invalid}");
    // Vetoed: the one request as the run is the gate's read of its target, never a write.
    let as_run: Vec<_> = srv.requests().into_iter().filter(|r| r.impersonated).collect();
    assert!(!as_run.is_empty() && as_run.iter().all(|r| r.verb == "get" && r.name == "web"), "{as_run:#?}");
}
