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

const HISTORY: &str = "examples/policies/histories/scale-web.yaml";
const LABELS: &str = "demo:xct.dev/scaling=allowed";

#[test]
fn replays_every_recorded_proposal() {
    assert!(Path::new(env!("CARGO_MANIFEST_DIR")).join(HISTORY).is_file());
    let (code, out, err) =
        xct(&["policy", "test", "--policies", "examples/policies", "--namespace-labels", LABELS, HISTORY]);
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 7, "{out}");
    assert!(lines[0].starts_with("demo/scale-web step 1 k8s.get: Allow by baseline/read-only"));
    assert!(lines[1].contains("step 2 k8s.scale: Allow by scaling/bounded-scale"));
    assert!(lines[2].contains("step 3 k8s.scale: Deny by default-deny"));
    assert!(lines[3].contains("step 4 k8s.get: Deny by baseline/no-secrets"));
    assert!(lines[4].contains("step 5 k8s.delete: RequireApproval by baseline/deletes-need-approval"));
    assert!(
        lines[5].contains("step 6 k8s.scale: Allow")
            && lines[5].contains("[audit: Deny by audit-scale-down-to-zero/no-scale-to-zero"),
        "{}",
        lines[5]
    );
    // Without the namespace's labels the scaling policy does not select the run.
    let (_, out, _) = xct(&["policy", "test", "--policies", "examples/policies", HISTORY]);
    assert!(out.lines().nth(1).unwrap().contains("k8s.scale: Deny by default-deny"), "{out}");
}

#[test]
fn the_baseline_diff_shows_only_changes() {
    let (code, out, err) = xct(&[
        "policy",
        "test",
        "--policies",
        "tests/fixtures/policies-next",
        "--baseline",
        "examples/policies",
        "--namespace-labels",
        LABELS,
        HISTORY,
    ]);
    assert_eq!(code, 0, "{err}");
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
    assert_eq!(lines[3], "3 of 6 proposal(s) change verdict");
}

#[test]
fn compile_errors_name_file_rule_and_position() {
    let (code, out, err) = xct(&["policy", "test", "--policies", "tests/fixtures/policies-broken", HISTORY]);
    assert_eq!(code, 1);
    assert!(out.is_empty());
    assert!(err.contains("tests/fixtures/policies-broken/broken.yaml: policy broken, rule typo at 1:"), "{err}");
}
