//! Archives are the operator's own: created fresh (generateName), owned by
//! their run and labelled by its UID. A ConfigMap the operator did not
//! create, whatever its name or labels, is never changed, and runs with
//! names too long for a label value archive like any other.

mod support;

use std::sync::Arc;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, PostParams};
use kube::{Resource, ResourceExt};
use serde_json::json;
use support::*;
use xct::crd::XctRun;
use xct::engine::record::verify_chain;
use xct::model::ScriptedDecider;
use xct::operator::archive::{CHUNK_LABEL, KEEP, NAME_PREFIX, RUN_UID_LABEL};

/// Enough reads to archive twice, then done.
const STEPS: usize = 3 * KEEP + 5;

fn outputs() -> Vec<String> {
    let read =
        json!({"next_step": {"tool": "k8s.get", "arguments": {"kind": "Deployment", "name": "web"}, "goal": "look"}});
    let mut out = vec![read.to_string(); STEPS - 1];
    out.push(r#"{"done":true,"message":"looked"}"#.into());
    out
}

async fn create_run(runs: &Api<XctRun>, name: &str) -> String {
    let run: XctRun = serde_yaml::from_str(&format!(
        "apiVersion: xct.dev/v1alpha1\nkind: XctRun\nmetadata: {{name: {name}}}\nspec:\n  goal: g\n  tools: [k8s.get]\n  serviceAccountName: {SA}\n  limits: {{maxSteps: {}}}\n",
        STEPS + 1
    ))
    .unwrap();
    runs.create(&PostParams::default(), &run).await.unwrap().metadata.uid.unwrap()
}

async fn foreign(cms: &Api<ConfigMap>, name: &str, labels: serde_json::Value) -> ConfigMap {
    let cm = json!({"metadata": {"name": name, "labels": labels}, "data": {"steps.yaml": "not yours"}});
    cms.create(&PostParams::default(), &serde_json::from_value(cm).unwrap()).await.unwrap()
}

/// The run's whole history reassembles, in order, and its chain verifies;
/// its archives are fresh ConfigMaps it owns.
async fn assert_archived(admin: &kube::Client, cms: &Api<ConfigMap>, name: &str) {
    let (run, steps) = xct::operator::archive::full_history(admin, NS, name).await.unwrap();
    let status = run.status.clone().unwrap();
    assert_eq!(status.archive.len(), 2, "{name}: archived twice");
    assert_eq!(steps.len(), STEPS);
    assert!(steps.iter().enumerate().all(|(i, s)| s.index as usize == i + 1));
    verify_chain(&steps, "", 1).unwrap();
    for chunk in &status.archive {
        let cm = cms.get(&chunk.config_map).await.unwrap();
        assert!(chunk.config_map.starts_with(NAME_PREFIX), "{}", chunk.config_map);
        assert!(cm.owner_references().iter().any(|o| Some(&o.uid) == run.meta().uid.as_ref()));
        assert_eq!(cm.labels().get(RUN_UID_LABEL), run.meta().uid.as_ref());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_config_maps_are_never_touched() {
    let srv = cluster().await;
    let admin = srv.client();
    let cms: Api<ConfigMap> = Api::namespaced(admin.clone(), NS);
    let runs: Api<XctRun> = Api::namespaced(admin.clone(), NS);
    // Where a name derived from the run's name would put its first chunk.
    let squatter = foreign(&cms, "notes-history-00000", json!({})).await;
    let controller = start_operator(&srv, Arc::new(ScriptedDecider::new(outputs())), None);
    let uid = create_run(&runs, "notes").await;
    // Labelled as the run's first chunk, but not owned by it.
    let impostor = foreign(&cms, "impostor", json!({RUN_UID_LABEL: uid, CHUNK_LABEL: "0"})).await;
    let all = wait_all_terminal(&runs, 1).await;
    controller.abort();
    assert!(all[0].status.as_ref().unwrap().phase.is_terminal());
    assert_archived(&admin, &cms, "notes").await;
    for before in [squatter, impostor] {
        let now = cms.get(&before.name_any()).await.unwrap();
        assert_eq!(now.resource_version(), before.resource_version(), "{} was changed", before.name_any());
        assert_eq!(now.data, before.data);
        assert!(now.owner_references().is_empty());
    }
    let own = xct::k8s::service_account_user(NS, SA);
    let log = srv.requests();
    let operator_writes: Vec<_> =
        log.iter().filter(|r| r.resource == "configmaps" && r.is_persisted_mutation() && r.user != "admin").collect();
    assert_eq!(operator_writes.len(), 2, "two chunks created, nothing else written: {operator_writes:#?}");
    assert!(operator_writes.iter().all(|r| r.verb == "create" && r.user == "xct-operator" && r.user != own));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_named_with_250_characters_archives() {
    let srv = cluster().await;
    let admin = srv.client();
    let cms: Api<ConfigMap> = Api::namespaced(admin.clone(), NS);
    let runs: Api<XctRun> = Api::namespaced(admin.clone(), NS);
    let name = format!("r{}", "a".repeat(249));
    let controller = start_operator(&srv, Arc::new(ScriptedDecider::new(outputs())), None);
    create_run(&runs, &name).await;
    let all = wait_all_terminal(&runs, 1).await;
    controller.abort();
    assert!(all[0].status.as_ref().unwrap().phase.is_terminal(), "{:?}", all[0].status);
    assert_archived(&admin, &cms, &name).await;
}
