//! A policy that reads the live `target`, judged live and replayed offline.
//! The gate records the digest of the target it judged (never the object);
//! offline, a rule that reads a target none was given for is reported as
//! needing one instead of as a false deny, and `--targets` (a `kubectl get
//! -o yaml` dump) supplies it and says whether it is the one judged live.

mod support;

use std::sync::Arc;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, PostParams};
use serde_json::{Value, json};
use support::*;
use xct::crd::{XctPolicy, XctRun};
use xct::model::ScriptedDecider;

fn get(name: &str) -> String {
    json!({"next_step": {"tool": "k8s.get", "arguments": {"kind": "ConfigMap", "name": name}, "goal": "look"}})
        .to_string()
}

fn policy(rules: &str) -> String {
    format!("apiVersion: xct.dev/v1alpha1\nkind: XctPolicy\nmetadata: {{name: site}}\nspec:\n  rules:\n{rules}")
}

const ALLOW_READS: &str = "    - {name: reads, tools: [k8s.get], effect: Allow}\n";
const DENY_CRITICAL: &str =
    "    - {name: critical, tools: [k8s.get], effect: Deny, when: \"target.metadata.labels.tier == 'critical'\"}\n";

fn xct(args: &[&str]) -> (Option<i32>, Value, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_xct")).args(args).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let json = serde_json::from_str(&stdout).unwrap_or(Value::Null);
    (out.status.code(), json, format!("{stdout}{}", String::from_utf8_lossy(&out.stderr)))
}

/// (change, targetMatches) of each replayed step.
fn changes(report: &Value) -> Vec<(String, Value)> {
    report["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["change"].as_str().unwrap().to_string(), r["targetMatches"].clone()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn targets_are_judged_live_by_digest_and_supplied_offline() {
    let srv = xct_testapi::TestApiServer::start().await.unwrap();
    let admin = srv.client();
    install_crds(&admin).await;
    install_demo(&admin).await;
    let cms: Api<ConfigMap> = Api::namespaced(admin.clone(), NS);
    let settings =
        json!({"metadata": {"name": "settings", "labels": {"tier": "critical"}}, "data": {"mode": "secret-ish-value"}});
    cms.create(&PostParams::default(), &serde_json::from_value(settings).unwrap()).await.unwrap();
    let live: XctPolicy = serde_yaml::from_str(&policy(ALLOW_READS)).unwrap();
    Api::<XctPolicy>::all(admin.clone()).create(&PostParams::default(), &live).await.unwrap();

    let outputs = vec![get("settings"), get("missing"), r#"{"done":true,"message":"looked"}"#.into()];
    let controller = start_operator(&srv, Arc::new(ScriptedDecider::new(outputs)), None);
    let runs: Api<XctRun> = Api::namespaced(admin.clone(), NS);
    let run: XctRun = serde_yaml::from_str(&format!(
        "apiVersion: xct.dev/v1alpha1\nkind: XctRun\nmetadata: {{name: looks}}\nspec:\n  goal: g\n  tools: [k8s.get]\n  serviceAccountName: {SA}\n"
    ))
    .unwrap();
    runs.create(&PostParams::default(), &run).await.unwrap();
    let run = wait_all_terminal(&runs, 1).await.remove(0);
    controller.abort();

    // Live: the digest of the object judged, not the object.
    let steps = &run.status.as_ref().unwrap().steps;
    let object = serde_json::to_value(cms.get("settings").await.unwrap()).unwrap();
    let decision = serde_json::to_value(steps[0].policy.as_ref().unwrap()).unwrap();
    assert_eq!(decision["targetDigest"].as_str(), xct::engine::gate::target_digest(&object).as_deref());
    assert_eq!(decision.as_object().unwrap().len(), 3, "verdict, decidedBy, targetDigest only: {decision}");
    assert!(steps[1].policy.as_ref().unwrap().target_digest.is_none(), "an absent object has no digest");

    let dir = tempfile::tempdir().unwrap();
    let path = |f: &str| dir.path().join(f).to_str().unwrap().to_string();
    std::fs::write(path("history.yaml"), serde_yaml::to_string(&run).unwrap()).unwrap();
    std::fs::create_dir(path("policies")).unwrap();
    std::fs::write(path("policies/site.yaml"), policy(&format!("{ALLOW_READS}{DENY_CRITICAL}"))).unwrap();
    // A dump as `kubectl get cm -o yaml` gives it (volatile metadata and key
    // order differ from what the gate read; the digest ignores both).
    let mut dumped = object.clone();
    dumped["metadata"]["resourceVersion"] = json!("999");
    std::fs::write(path("dump.yaml"), serde_yaml::to_string(&json!({"kind": "List", "items": [dumped]})).unwrap())
        .unwrap();
    let mut relabelled = object.clone();
    relabelled["metadata"]["labels"]["tier"] = json!("normal");
    std::fs::write(path("changed.yaml"), serde_yaml::to_string(&relabelled).unwrap()).unwrap();

    let test = |extra: &[&str]| {
        let mut args = vec!["policy", "test", "--output", "json"];
        let policies = path("policies");
        let history = path("history.yaml");
        args.extend(["--policies", policies.as_str()]);
        args.extend(extra);
        args.push(history.as_str());
        let a: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        xct(&a)
    };
    // Without targets: the rule cannot be decided, and says so (it used to
    // fail closed on a null target: two false "newly denied").
    let (code, report, out) = test(&[]);
    assert_eq!(code, Some(0), "{out}");
    let needs = (String::from("needs a target"), Value::Null);
    assert_eq!(changes(&report), [needs.clone(), needs]);
    assert_eq!(report["results"][0]["needsTarget"], json!(["site/critical"]));
    assert_eq!(report["summary"]["newlyDenied"], 0);
    // With the dump: the critical object is denied (and it is the object
    // judged live); the missing one is absent, as the gate saw it.
    let dump = path("dump.yaml");
    let (code, report, out) = test(&["--targets", dump.as_str()]);
    assert_eq!(code, Some(1), "{out}");
    let denied = String::from("newly denied");
    assert_eq!(changes(&report), [(denied.clone(), json!(true)), (denied, Value::Null)]);
    // A target that changed since: judged as given, and flagged.
    let changed = path("changed.yaml");
    let (_, report, out) = test(&["--targets", changed.as_str()]);
    assert_eq!(changes(&report)[0], (String::from("unchanged"), json!(false)), "{out}");
}
