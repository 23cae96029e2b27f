//! The hash chain over steps: sealed as steps are recorded, any edit,
//! removal or reordering is detected, `xct history verify` reports it.

mod support;

use chrono::Utc;
use serde_json::json;
use support::next;
use xct::crd::XctRunStatus;
use xct::engine::record::verify_chain;
use xct::engine::{Engine, Limits, RunConfig};
use xct::model::{Sampling, ScriptedDecider};
use xct::tools::ToolSet;
use xct::tools::fs::Workspace;

async fn history(n: usize) -> XctRunStatus {
    let dir = tempfile::tempdir().unwrap();
    let tools = Workspace::open(dir.path()).unwrap().tools().into_iter().fold(ToolSet::new(), ToolSet::with);
    let cfg = RunConfig {
        id: "h".into(),
        acting_as: "tester".into(),
        goal: "g".into(),
        tools,
        limits: Limits { max_steps: 1000, max_consecutive_errors: 1000, timeout: None },
        sampling: Sampling::default(),
    };
    let outputs: Vec<String> = (0..n)
        .map(|i| json!({"next_step": {"tool": "fs.write", "arguments": {"path": format!("f{i}.txt"), "content": "x"}, "goal": "g"}}).to_string())
        .collect();
    let decider = ScriptedDecider::new(outputs);
    let engine = Engine::new(&decider);
    let mut status = XctRunStatus::default();
    for _ in 0..n {
        let rec = next(&engine, &cfg, &status.steps, Utc::now()).await.unwrap();
        status.steps.push(rec);
        status.refresh_summary();
    }
    status
}

#[tokio::test]
async fn the_chain_detects_edits_removals_and_reordering() {
    let status = history(5).await;
    verify_chain(&status.steps, "", 1).unwrap();
    assert_eq!(status.steps[0].prev_digest.as_deref(), Some(""));
    assert_eq!(status.steps[1].prev_digest, status.steps[0].digest);
    // Sealing again does not change sealed steps.
    let mut again = status.clone();
    again.refresh_summary();
    assert_eq!(again.steps, status.steps);

    let mut edited = status.clone();
    edited.steps[2].decision = edited.steps[2].decision.replace("f2.txt", "evil.txt");
    assert_eq!(verify_chain(&edited.steps, "", 1).unwrap_err().index, 3);
    let mut edited = status.clone();
    edited.steps[1].verdict.reason = "something else".into();
    assert_eq!(verify_chain(&edited.steps, "", 1).unwrap_err().index, 2);
    let mut removed = status.clone();
    removed.steps.remove(3);
    let e = verify_chain(&removed.steps, "", 1).unwrap_err();
    assert_eq!(e.index, 5);
    assert!(e.reason.contains("missing or repeated"), "{e}");
    let mut swapped = status.clone();
    swapped.steps.swap(0, 1);
    assert!(verify_chain(&swapped.steps, "", 1).is_err());
    // Re-sealing an edited history does not hide the edit of a sealed step.
    let mut resealed = status.clone();
    resealed.steps[0].signal = None;
    resealed.refresh_summary();
    assert!(verify_chain(&resealed.steps, "", 1).is_err());
}

#[tokio::test]
async fn xct_history_verify_reports_ok_and_broken() {
    let status = history(3).await;
    let dir = tempfile::tempdir().unwrap();
    let ok = dir.path().join("ok.yaml");
    std::fs::write(&ok, serde_yaml::to_string(&status).unwrap()).unwrap();
    let mut bad = status.clone();
    bad.steps[1].decision = "{}".into();
    let run = json!({"apiVersion": "xct.dev/v1alpha1", "kind": "XctRun", "metadata": {"name": "tampered"}, "spec": {"goal": "g", "tools": ["fs.write"]}, "status": bad});
    let broken = dir.path().join("broken.yaml");
    std::fs::write(&broken, serde_yaml::to_string(&run).unwrap()).unwrap();
    let out =
        std::process::Command::new(env!("CARGO_BIN_EXE_xct")).args(["history", "verify"]).arg(&ok).output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).contains("ok, 3 steps, head "));
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_xct"))
        .args(["history", "verify"])
        .arg(&broken)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("tampered: BROKEN at step 2"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}
