//! A 1,000-step run: the status stays far below the object limit, older
//! steps move in order into ConfigMaps owned by the run, and the whole
//! history reassembles with an intact hash chain.

mod support;

use std::sync::Arc;
use std::time::Duration;

use kube::api::{Api, PostParams};
use serde_json::json;
use support::*;
use xct::crd::{RunPhase, XctRun};
use xct::engine::record::verify_chain;
use xct::model::ScriptedDecider;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_steps_stay_bounded_and_nothing_is_lost() {
    let srv = cluster().await;
    let admin = srv.client();
    let mut outputs: Vec<String> = (0..999)
        .map(|i| json!({"next_step": {"tool": "k8s.get", "arguments": {"kind": "Deployment", "name": "web"}, "goal": format!("look again ({i})")}}).to_string())
        .collect();
    outputs.push(r#"{"done":true,"message":"looked 999 times"}"#.into());
    let decider = Arc::new(ScriptedDecider::new(outputs));
    let controller = start_operator(&srv, decider, None);
    let runs: Api<XctRun> = Api::namespaced(admin.clone(), NS);
    let run: XctRun = serde_yaml::from_str(&format!(
        "apiVersion: xct.dev/v1alpha1\nkind: XctRun\nmetadata: {{name: long}}\nspec:\n  goal: g\n  tools: [k8s.get]\n  serviceAccountName: {SA}\n  limits: {{maxSteps: 1000}}\n"
    ))
    .unwrap();
    runs.create(&PostParams::default(), &run).await.unwrap();
    let mut largest = 0;
    let mut done = None;
    for _ in 0..1200 {
        let r = runs.get("long").await.unwrap();
        largest = largest.max(serde_json::to_string(&r).unwrap().len());
        if r.status.as_ref().is_some_and(|s| s.phase.is_terminal()) {
            done = Some(r);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    controller.abort();
    let run = done.expect("the run finished");
    let status = run.status.clone().unwrap();
    assert_eq!(status.phase, RunPhase::Succeeded, "{:?}", status.message);
    assert_eq!(status.step_count, 1000);
    assert!(largest <= 256 * 1024, "the object stayed at most 256 KiB: {largest} bytes");
    assert!(status.steps.len() < 2 * xct::operator::archive::KEEP);
    assert_eq!(status.archive.len(), (1000 - status.steps.len()) / xct::operator::archive::KEEP);
    let (_, steps) = xct::operator::archive::full_history(&admin, NS, "long").await.unwrap();
    assert_eq!(steps.len(), 1000);
    verify_chain(&steps, "", 1).expect("the whole chain verifies across the archive");
    assert!(steps[500].decision.contains("look again (500)"), "in order");
    println!("1000 steps, largest object {largest} bytes, {} archive ConfigMaps", status.archive.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_steps_are_capped_and_archived_early() {
    let srv = cluster().await;
    let admin = srv.client();
    let big_goal = "why ".repeat(3000); // ~12 KiB: a valid but large decision
    let mut outputs: Vec<String> = Vec::new();
    for i in 0..40 {
        if i % 4 == 3 {
            outputs.push(format!("not json {}", "z".repeat(100_000))); // invalid and huge
        } else {
            outputs.push(json!({"next_step": {"tool": "k8s.get", "arguments": {"kind": "Deployment", "name": "web"}, "goal": big_goal}}).to_string());
        }
    }
    outputs.push(r#"{"done":true,"message":"done"}"#.into());
    let decider = Arc::new(ScriptedDecider::new(outputs));
    let controller = start_operator(&srv, decider, None);
    let runs: Api<XctRun> = Api::namespaced(admin.clone(), NS);
    let run: XctRun = serde_yaml::from_str(&format!(
        "apiVersion: xct.dev/v1alpha1\nkind: XctRun\nmetadata: {{name: big}}\nspec:\n  goal: g\n  tools: [k8s.get]\n  serviceAccountName: {SA}\n  limits: {{maxSteps: 100, maxConsecutiveErrors: 100}}\n"
    ))
    .unwrap();
    runs.create(&PostParams::default(), &run).await.unwrap();
    let mut largest = 0;
    let mut finished = false;
    for _ in 0..600 {
        let r = runs.get("big").await.unwrap();
        largest = largest.max(serde_json::to_string(&r).unwrap().len());
        if r.status.as_ref().is_some_and(|s| s.phase.is_terminal()) {
            finished = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    controller.abort();
    assert!(finished);
    assert!(largest <= 256 * 1024, "largest object {largest} bytes");
    let (_, steps) = xct::operator::archive::full_history(&admin, NS, "big").await.unwrap();
    assert_eq!(steps.len(), 41);
    verify_chain(&steps, "", 1).unwrap();
    let cut = &steps[3];
    assert_eq!(cut.decision.len(), xct::engine::MAX_KEPT_INVALID_BYTES);
    assert_eq!(cut.decision_bytes, Some(100_009));
    assert_eq!(cut.decision_sha256.as_ref().map(String::len), Some(64));
    assert!(steps[0].decision.len() > 12_000, "valid decisions are kept whole");
    println!("41 large steps, largest object {largest} bytes");
}
