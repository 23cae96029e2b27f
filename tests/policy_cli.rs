//! `xct policy test` on fixtures: verdicts, the baseline diff, compile errors.

use std::path::Path;
use std::process::Command;

fn xct(args: &[&str]) -> (i32, String, String) {
    let out =
        Command::new(env!("CARGO_BIN_EXE_xct")).current_dir(env!("CARGO_MANIFEST_DIR")).args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

const HISTORY: &str = "examples/gitops/histories/scale-web.yaml";
const LABELS: &str = "demo:xct.dev/scaling=allowed";

/// Without --baseline the verdicts recorded in the history are the
/// baseline: the example policies decide as they did (exit 0); without the
/// namespace's labels the scaling policy no longer selects the run, and the
/// two scale steps change (exit 1).
#[test]
fn replays_every_recorded_proposal_against_its_recorded_verdict() {
    assert!(Path::new(env!("CARGO_MANIFEST_DIR")).join(HISTORY).is_file());
    let (code, out, err) = xct(&[
        "policy",
        "test",
        "--policies",
        "examples/gitops/policies",
        "--namespace-labels",
        LABELS,
        "--output",
        "json",
        HISTORY,
    ]);
    assert_eq!(code, 0, "{out}{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let got: Vec<(String, String, String)> = v["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["tool"].as_str().unwrap().into(),
                r["verdict"].as_str().unwrap().into(),
                r["change"].as_str().unwrap().into(),
            )
        })
        .collect();
    let want = [
        ("k8s.get", "Allow"),
        ("k8s.scale", "Allow"),
        ("k8s.scale", "Deny"),
        ("k8s.get", "Deny"),
        ("k8s.delete", "RequireApproval"),
        ("k8s.scale", "Allow"),
    ];
    assert_eq!(got.len(), want.len());
    for (g, w) in got.iter().zip(want) {
        assert_eq!((g.0.as_str(), g.1.as_str(), g.2.as_str()), (w.0, w.1, "unchanged"));
    }
    assert_eq!(v["results"][3]["decidedBy"], "baseline/no-secrets");
    assert_eq!(v["summary"]["unchanged"], 6);
    // Without the namespace's labels the scaling policy does not select the run.
    let (code, out, _) = xct(&["policy", "test", "--policies", "examples/gitops/policies", HISTORY]);
    assert_eq!(code, 1, "a changed verdict fails the gate: {out}");
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[0].starts_with("newly denied: demo/scale-web step 2 k8s.scale: Deny by default-deny"), "{out}");
    assert!(lines[0].contains("(was Allow by scaling/bounded-scale)"), "{out}");
    assert!(lines[1].starts_with("newly denied: demo/scale-web step 6"), "{out}");
    assert!(lines[2].contains("6 proposal(s) replayed: 2 changed (0 newly allowed, 2 newly denied"), "{out}");
}

#[test]
fn the_baseline_diff_shows_only_changes_and_fails_the_gate() {
    let (code, out, err) = xct(&[
        "policy",
        "test",
        "--policies",
        "tests/fixtures/policies-next",
        "--baseline",
        "examples/gitops/policies",
        "--namespace-labels",
        LABELS,
        HISTORY,
    ]);
    assert_eq!(code, 1, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 4, "{out}");
    assert!(lines[0].starts_with("newly allowed: demo/scale-web step 3 k8s.scale"));
    assert!(
        lines[1].starts_with("newly denied: demo/scale-web step 5 k8s.delete")
            && lines[1].contains("was RequireApproval")
    );
    assert!(
        lines[2].starts_with("newly denied: demo/scale-web step 6 k8s.scale") && lines[2].contains("no-scale-to-zero")
    );
    assert!(
        lines[3].starts_with(
            "6 proposal(s) replayed: 3 changed (1 newly allowed, 2 newly denied, 0 newly needing approval), 3 unchanged"
        ),
        "{}",
        lines[3]
    );
    // The same comparison as a CI report and as GitHub annotations.
    let next = [
        "policy",
        "test",
        "--policies",
        "tests/fixtures/policies-next",
        "--baseline",
        "examples/gitops/policies",
        "--namespace-labels",
        LABELS,
    ];
    let (code, junit, _) = xct(&[&next[..], &["--output", "junit", HISTORY]].concat());
    assert_eq!(code, 1);
    assert!(junit.contains("<testsuite name=\"xct policy test\" tests=\"6\" failures=\"3\">"), "{junit}");
    assert_eq!(junit.matches("<failure ").count(), 3);
    let (_, github, _) = xct(&[&next[..], &["--output", "github", HISTORY]].concat());
    assert_eq!(github.lines().filter(|l| l.starts_with("::error title=xct policy test::newly")).count(), 3, "{github}");
    assert!(github.lines().last().unwrap().starts_with("::notice title=xct policy test::6 proposal(s)"));
}

/// Pinned verdicts: an expectation that holds passes, one that does not
/// fails the gate even when nothing else changed.
#[test]
fn expectations_pin_verdicts() {
    let dir = tempfile::tempdir().unwrap();
    let pins = dir.path().join("expect.yaml");
    std::fs::write(
        &pins,
        "- {run: demo/scale-web, step: 4, verdict: Deny}\n- {run: demo/scale-web, step: 5, verdict: RequireApproval}\n",
    )
    .unwrap();
    let args = ["policy", "test", "--policies", "examples/gitops/policies", "--namespace-labels", LABELS, "--expect"];
    let (code, out, err) = xct(&[&args[..], &[pins.to_str().unwrap(), HISTORY]].concat());
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("0 expectation(s) failed"));
    std::fs::write(&pins, "- {run: demo/scale-web, step: 2, verdict: Deny}\n").unwrap();
    let (code, out, _) = xct(&[&args[..], &[pins.to_str().unwrap(), HISTORY]].concat());
    assert_eq!(code, 1);
    assert!(
        out.contains(
            "expectation failed: demo/scale-web step 2: expected Deny, got demo/scale-web step 2 k8s.scale: Allow"
        ),
        "{out}"
    );
    std::fs::write(&pins, "- {run: demo/scale-web, step: 2, verdict: Maybe}\n").unwrap();
    let (code, _, err) = xct(&[&args[..], &[pins.to_str().unwrap(), HISTORY]].concat());
    assert_eq!(code, 2, "an unreadable expectations file: {err}");
}

/// Unreadable input is exit 2, and a history whose older steps were
/// archived (it starts at step 21) replays instead of panicking.
#[test]
fn unreadable_input_and_archived_histories() {
    let (code, _, err) = xct(&["policy", "test", "--policies", "examples/gitops/policies", "no/such/history.yaml"]);
    assert_eq!(code, 2, "{err}");
    let dir = tempfile::tempdir().unwrap();
    let mut run: serde_json::Value =
        serde_yaml::from_str(&std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(HISTORY)).unwrap())
            .unwrap();
    for s in run["status"]["steps"].as_array_mut().unwrap() {
        s["index"] = serde_json::json!(s["index"].as_u64().unwrap() + 20);
    }
    run["status"]["archive"] = serde_json::json!([{"configMap": "xct-history-abcde", "first": 1, "last": 20, "lastDigest": "00", "errors": 3}]);
    let archived = dir.path().join("archived.yaml");
    std::fs::write(&archived, serde_yaml::to_string(&run).unwrap()).unwrap();
    let (code, out, err) = xct(&[
        "policy",
        "test",
        "--policies",
        "examples/gitops/policies",
        "--namespace-labels",
        LABELS,
        archived.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("6 proposal(s) replayed: 0 changed"), "{out}");
}

#[test]
fn compile_errors_name_file_rule_and_position() {
    let (code, out, err) = xct(&["policy", "test", "--policies", "tests/fixtures/policies-broken", HISTORY]);
    assert_eq!(code, 1);
    assert!(out.is_empty());
    assert!(err.contains("tests/fixtures/policies-broken/broken.yaml: policy broken, rule typo at 1:"), "{err}");
}
