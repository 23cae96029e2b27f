//! Manifests at the limits are refused at admission by the CRD schema, or
//! reported in status; odd Unicode goes through unharmed.

mod support;

use std::sync::Arc;
use std::time::Duration;

use kube::api::{Api, DynamicObject, PostParams};
use serde_json::json;
use support::*;
use xct::crd::{RunPhase, XctRun};
use xct::model::ScriptedDecider;

fn raw(srv: &xct_testapi::TestApiServer) -> Api<DynamicObject> {
    Api::namespaced_with(
        srv.client(),
        NS,
        &kube::api::ApiResource::from_gvk_with_plural(
            &kube::api::GroupVersionKind::gvk("xct.dev", "v1alpha1", "XctRun"),
            "xctruns",
        ),
    )
}

fn run(name: &str, spec: serde_json::Value) -> DynamicObject {
    serde_json::from_value(
        json!({"apiVersion": "xct.dev/v1alpha1", "kind": "XctRun", "metadata": {"name": name}, "spec": spec}),
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_manifests_are_refused_at_admission() {
    let srv = cluster().await;
    let api = raw(&srv);
    let many: Vec<String> = (0..1000).map(|i| format!("tool.{i}")).collect();
    let cases = [
        ("huge-goal", json!({"goal": "g".repeat(9000), "tools": ["k8s.get"]}), "spec.goal"),
        ("many-tools", json!({"goal": "g", "tools": many}), "spec.tools"),
        ("no-tools", json!({"goal": "g", "tools": []}), "spec.tools"),
        ("negative", json!({"goal": "g", "tools": ["k8s.get"], "limits": {"maxSteps": -5}}), "maxSteps"),
        ("too-many-steps", json!({"goal": "g", "tools": ["k8s.get"], "limits": {"maxSteps": 100000}}), "maxSteps"),
        ("hot", json!({"goal": "g", "tools": ["k8s.get"], "model": {"temperature": 9.5}}), "temperature"),
        (
            "other-ns-sa",
            json!({"goal": "g", "tools": ["k8s.get"], "serviceAccountName": "kube-system:admin"}),
            "serviceAccountName",
        ),
        ("no-goal", json!({"tools": ["k8s.get"]}), "goal"),
    ];
    for (name, spec, field) in cases {
        match api.create(&PostParams::default(), &run(name, spec)).await {
            Err(kube::Error::Api(s)) => {
                assert_eq!(s.code, 422, "{name}: {s:?}");
                assert!(s.message.contains(field), "{name}: {}", s.message);
            }
            other => panic!("{name} was admitted: {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_tools_are_reported_and_odd_unicode_runs() {
    let srv = cluster().await;
    let api = raw(&srv);
    api.create(
        &PostParams::default(),
        &run("unknown", json!({"goal": "g", "tools": ["k8s.get", "shell.exec"], "serviceAccountName": SA})),
    )
    .await
    .unwrap();
    let goal = "Réglez web ✓ — \u{202e}gnirts desrever\u{202c} 😀 \u{0}nul 𝔘𝔫𝔦𝔠𝔬𝔡𝔢";
    api.create(
        &PostParams::default(),
        &run("unicode", json!({"goal": goal, "tools": ["k8s.get"], "serviceAccountName": SA})),
    )
    .await
    .unwrap();
    // The first done is refused (nothing looked at yet); the second ends the run.
    let done = r#"{"done":true,"message":"ok ✓ 😀"}"#;
    let decider = Arc::new(ScriptedDecider::new([done, done]));
    let controller = start_operator(&srv, decider.clone(), None);
    let runs: Api<XctRun> = Api::namespaced(srv.client(), NS);
    let mut ok = false;
    for _ in 0..100 {
        let u = runs.get("unknown").await.unwrap().status.unwrap_or_default();
        let w = runs.get("unicode").await.unwrap().status.unwrap_or_default();
        if u.message.as_deref().is_some_and(|m| m.contains("shell.exec")) && w.phase == RunPhase::Succeeded {
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    controller.abort();
    assert!(ok, "unknown tools reported in status, the Unicode run succeeded");
    assert!(decider.requests()[0].messages[1].content.contains("\u{202e}gnirts"), "the goal reaches the model intact");
}
