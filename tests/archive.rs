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
    assert!(operator_writes.iter().all(|r| r.verb == "create" && r.user == OPERATOR_USER && r.user != own));
    // It never reads a ConfigMap either (the chart grants create only).
    let reads: Vec<_> = log
        .iter()
        .filter(|r| r.resource == "configmaps" && r.authenticated_user == OPERATOR_USER && !r.impersonated)
        .filter(|r| r.verb != "create")
        .collect();
    assert!(reads.is_empty(), "{reads:#?}");
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

/// One history, every file it can come in: `kubectl get -o yaml` of the run
/// (its archived steps missing), a List that also holds its archive
/// ConfigMaps (reassembled; a foreign ConfigMap ignored), two documents,
/// `xct history show` output, an `xct local`-style status and a bare list of
/// steps. History::load reads each the same way, and `xct history verify`
/// and `xct policy test` accept each (the two-document file and the show
/// output were each refused by one of them).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_archived_history_reads_the_same_from_every_file_format() {
    let srv = cluster().await;
    let admin = srv.client();
    let cms: Api<ConfigMap> = Api::namespaced(admin.clone(), NS);
    let runs: Api<XctRun> = Api::namespaced(admin.clone(), NS);
    let controller = start_operator(&srv, Arc::new(ScriptedDecider::new(outputs())), None);
    let uid = create_run(&runs, "reads").await;
    wait_all_terminal(&runs, 1).await;
    controller.abort();
    foreign(&cms, "squatter", json!({RUN_UID_LABEL: uid.clone()})).await;

    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    srv.write_kubeconfig(&kubeconfig, None).unwrap();
    let (code, show, err) = support::xct(&["history", "show", "reads", "-n", NS], &kubeconfig);
    assert_eq!(code, Some(0), "{err}");
    let run = serde_json::to_value(runs.get("reads").await.unwrap()).unwrap();
    let mut items = vec![run.clone()];
    items.extend(cms.list(&Default::default()).await.unwrap().items.iter().map(|c| serde_json::to_value(c).unwrap()));
    let shown: serde_json::Value = serde_yaml::from_str(&show).unwrap();
    let status = shown["status"].clone();
    let mut copy = run.clone();
    copy["metadata"]["name"] = json!("reads-copy");
    let files = [
        ("run.yaml", serde_yaml::to_string(&run).unwrap(), STEPS - 2 * KEEP, 1),
        ("list.yaml", serde_yaml::to_string(&json!({"kind": "List", "items": items})).unwrap(), STEPS, 1),
        (
            "two.yaml",
            format!("{}---\n{}", serde_yaml::to_string(&run).unwrap(), serde_yaml::to_string(&copy).unwrap()),
            STEPS - 2 * KEEP,
            2,
        ),
        ("show.yaml", show.clone(), STEPS, 1),
        ("local.yaml", serde_yaml::to_string(&status).unwrap(), STEPS, 1),
        ("steps.yaml", serde_yaml::to_string(&status["steps"]).unwrap(), STEPS, 1),
    ];
    let head = status["steps"][STEPS - 1]["digest"].as_str().unwrap().to_string();
    for (file, text, steps, count) in files {
        let path = dir.path().join(file);
        std::fs::write(&path, text).unwrap();
        let histories = xct::history::load(&path).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert_eq!(histories.len(), count, "{file}");
        for h in &histories {
            assert_eq!(h.steps.len(), steps, "{file}");
            assert_eq!(h.missing as usize, STEPS - steps, "{file}");
            assert_eq!(h.steps.last().unwrap().digest.as_deref(), Some(head.as_str()), "{file}");
            h.verify().unwrap_or_else(|e| panic!("{file}: {e}"));
        }
        let (code, out, err) = support::xct(&["history", "verify", path.to_str().unwrap()], &kubeconfig);
        assert_eq!(code, Some(0), "{file}: {out}{err}");
        assert_eq!(out.matches(&format!("ok, {steps} steps, head {head}")).count(), count, "{file}: {out}");
        let policies = "examples/gitops/policies";
        let (code, out, err) = support::xct(
            &["policy", "test", "--policies", policies, "--output", "json", path.to_str().unwrap()],
            &kubeconfig,
        );
        assert!(code == Some(0) || code == Some(1), "{file}: {err}");
        let report: serde_json::Value = serde_json::from_str(&out).unwrap();
        // Every step but the final done is a proposal.
        assert_eq!(report["results"].as_array().unwrap().len(), count * (steps - 1), "{file}");
    }
}
