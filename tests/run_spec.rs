//! A run's spec is checked by the operator itself against the bounds the
//! CRD declares, whatever the CRD installed in the cluster enforces (an
//! older chart's, or one with its schema loosened): a manifest string never
//! becomes an identity, a header or a request before it is valid.
//! Checked from the test API server's request log.

mod support;

use std::sync::Arc;
use std::time::Duration;

use kube::api::{Api, PostParams};
use support::*;
use xct::crd::XctRun;
use xct::model::ScriptedDecider;

/// The hostile `serviceAccountName`s: a second identity after a colon
/// (`system:serviceaccount:demo:xct-runner:x`), a header injection, a path,
/// and a name the API server would never store for a ServiceAccount.
const HOSTILE_ACCOUNTS: [&str; 4] =
    ["xct-runner:evil", "xct-runner\r\nImpersonate-Group: system:masters", "../xct-runner", "XCT-Runner"];

/// Specs the CRD's schema refuses, and the field each refusal must name.
fn out_of_bounds() -> Vec<(&'static str, &'static str)> {
    vec![
        ("limits: {maxConsecutiveErrors: 5000}", "maxConsecutiveErrors"),
        ("limits: {approvalTimeoutSeconds: 0}", "approvalTimeoutSeconds"),
        ("limits: {timeoutSeconds: 9999999}", "timeoutSeconds"),
        ("model: {temperature: 7}", "temperature"),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spec_the_crd_would_refuse_is_refused_by_the_operator_before_any_request_as_the_run() {
    let srv = xct_testapi::TestApiServer::start().await.unwrap();
    let admin = srv.client();
    // A run CRD that stores whatever it is given: nothing is checked at admission.
    install_crds(&admin).await;
    install_loose_crd::<XctRun>(&admin).await;
    install_demo(&admin).await;
    // A model that would read the Deployment: what a run with such a spec
    // sent, as whom, if it ran.
    let read = serde_json::json!({"next_step": {"tool": "k8s.get", "arguments": {"kind": "Deployment", "name": "web"}, "goal": "look"}});
    let decider = Arc::new(ScriptedDecider::new(vec![read.to_string(); 64]));
    let runs: Api<XctRun> = Api::namespaced(admin.clone(), NS);
    let mut expected = Vec::new();
    for (i, account) in HOSTILE_ACCOUNTS.iter().enumerate() {
        let name = format!("account-{i}");
        let account = serde_json::to_string(account).unwrap();
        let yaml = format!(
            "apiVersion: xct.dev/v1alpha1\nkind: XctRun\nmetadata: {{name: {name}}}\nspec:\n  goal: g\n  tools: [k8s.get]\n  serviceAccountName: {account}\n"
        );
        runs.create(&PostParams::default(), &serde_yaml::from_str(&yaml).unwrap()).await.unwrap();
        expected.push((name, "serviceAccountName"));
    }
    for (i, (limits, field)) in out_of_bounds().into_iter().enumerate() {
        let name = format!("bounds-{i}");
        let yaml = format!(
            "apiVersion: xct.dev/v1alpha1\nkind: XctRun\nmetadata: {{name: {name}}}\nspec:\n  goal: g\n  tools: [k8s.get]\n  serviceAccountName: {SA}\n  {limits}\n"
        );
        runs.create(&PostParams::default(), &serde_yaml::from_str(&yaml).unwrap()).await.unwrap();
        expected.push((name, field));
    }
    srv.clear_requests();
    let controller = start_operator(&srv, decider.clone(), Some(NS));
    let mut messages = Vec::new();
    for _ in 0..100 {
        messages = runs
            .list(&Default::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .filter_map(|r| {
                let name = r.metadata.name?;
                let valid = r.status?.conditions.into_iter().find(|c| c.type_ == "Valid")?;
                (valid.status == "False" && valid.reason == "InvalidSpec").then_some((name, valid.message))
            })
            .collect::<Vec<_>>();
        if messages.len() == expected.len() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    controller.abort();
    messages.sort();
    expected.sort();
    assert_eq!(
        messages.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(),
        expected.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(),
        "every run is InvalidSpec: {messages:?}"
    );
    for ((name, message), (_, field)) in messages.iter().zip(&expected) {
        assert!(message.contains(field), "{name}: the refusal names {field}: {message}");
    }
    let requests = srv.requests();
    let status_writes = requests
        .iter()
        .filter(|r| r.subresource == "status" && r.is_persisted_mutation() && r.user == OPERATOR_USER)
        .count();
    assert!(status_writes >= expected.len(), "the operator wrote each refusal: {status_writes} status writes");
    // The test's own reads are the admin's; everything else is the operator's, as itself.
    let as_others: Vec<_> =
        requests.iter().filter(|r| r.impersonated || ![OPERATOR_USER, "admin"].contains(&r.user.as_str())).collect();
    assert!(as_others.is_empty(), "no request as anyone but the operator: {as_others:#?}");
    assert!(decider.requests().is_empty(), "no model call for an invalid spec");
}

/// The same YAML runs locally and in a cluster: `xct local` refuses what
/// the cluster's schema would, before the model is loaded.
#[test]
fn a_local_run_is_held_to_the_crds_bounds() {
    let dir = tempfile::tempdir().unwrap();
    for (limits, field) in out_of_bounds() {
        let manifest = dir.path().join("run.yaml");
        let yaml = format!(
            "apiVersion: xct.dev/v1alpha1\nkind: XctRun\nmetadata: {{name: l}}\nspec:\n  goal: g\n  tools: [fs.read]\n  {limits}\n"
        );
        std::fs::write(&manifest, yaml).unwrap();
        let run = xct::local::load_manifest(&manifest).unwrap();
        match xct::local::prepare(&run, &manifest, &dir.path().join("ws")) {
            Err(e @ xct::local::LocalError::Spec { .. }) => {
                assert!(e.to_string().contains(field), "{limits}: {e}");
                assert_eq!(e.category(), "spec");
            }
            other => panic!("{limits}: {other:?}"),
        }
    }
}
