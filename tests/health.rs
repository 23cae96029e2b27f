//! Health that Argo CD and Flux can read, for XctRun, XctPolicy and
//! XctApproval.
//!
//! The fixtures under `charts/xct-operator/argocd/xct.dev/<Kind>/testdata`
//! and each kind's `health_test.yaml` (Argo CD's resource_customizations
//! layout) are generated here from the Rust types and the operator's own
//! status functions; a drift fails (`XCT_BLESS=1 cargo test --test health`
//! rewrites them). Each `health.lua` then runs on every fixture of its
//! `health_test.yaml` with Debian's `lua5.4` (the scripts keep to what
//! gopher-lua, Argo CD's Lua 5.1, also runs), and the Flux
//! `healthCheckExprs` of examples/gitops/flux/kustomization.yaml are
//! evaluated with the `cel` crate on the same fixtures and must agree.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Value, json};
use xct::crd::{
    ApprovalState, RunPhase, XctApproval, XctApprovalStatus, XctPolicy, XctRun, XctRunStatus, set_condition,
};

const FIXED_TIME: &str = "2026-01-01T00:00:00Z";

fn argocd_dir(kind: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("charts/xct-operator/argocd/xct.dev").join(kind)
}

/// One fixture: the object and the health Argo CD must report for it.
struct Case {
    kind: &'static str,
    file: &'static str,
    object: Value,
    status: &'static str,
    message: String,
}

/// An object as the API server returns it, with fixed transition times.
fn object(value: impl serde::Serialize, generation: i64) -> Value {
    let mut v = serde_json::to_value(value).unwrap();
    v["metadata"]["namespace"] = json!("demo");
    v["metadata"]["generation"] = json!(generation);
    if let Some(conditions) = v["status"]["conditions"].as_array_mut() {
        for c in conditions {
            c["lastTransitionTime"] = json!(FIXED_TIME);
        }
    }
    v
}

fn run_with(status: Option<XctRunStatus>, generation: i64) -> Value {
    let mut run: XctRun = serde_yaml::from_str(
        "apiVersion: xct.dev/v1alpha1\nkind: XctRun\nmetadata: {name: cleanup}\nspec:\n  goal: delete old config\n  tools: [k8s.get, k8s.delete]\n  serviceAccountName: xct-runner\n",
    )
    .unwrap();
    run.status = status;
    object(run, generation)
}

fn run_status(phase: RunPhase, message: &str, invalid: bool) -> XctRunStatus {
    let mut s =
        XctRunStatus { phase, message: Some(message.into()), observed_generation: Some(1), ..Default::default() };
    if invalid {
        set_condition(&mut s.conditions, "Valid", false, "InvalidSpec", message, Some(1));
    }
    s.refresh_summary();
    s
}

fn run_cases() -> Vec<Case> {
    let case =
        |file, object, status, message: &str| Case { kind: "XctRun", file, object, status, message: message.into() };
    let awaiting = "step 3 (k8s.delete) awaits an XctApproval with runUid 0b7c, step 3 and proposalDigest 6931d4: deletes need approval";
    let failed = "BUDGET_EXHAUSTED: maxSteps (20) reached";
    let invalid = "spec.limits.maxSteps: 0 is less than the minimum of 1";
    vec![
        case("new.yaml", run_with(None, 1), "Progressing", "Waiting for the operator to observe the run"),
        case(
            "running.yaml",
            run_with(Some(run_status(RunPhase::Running, "step 2: k8s.get", false)), 1),
            "Progressing",
            "step 2: k8s.get",
        ),
        case(
            "awaiting-approval.yaml",
            run_with(Some(run_status(RunPhase::AwaitingApproval, awaiting, false)), 1),
            "Suspended",
            awaiting,
        ),
        case(
            "suspended.yaml",
            run_with(Some(run_status(RunPhase::Suspended, "suspended", false)), 1),
            "Suspended",
            "suspended",
        ),
        case(
            "succeeded.yaml",
            run_with(Some(run_status(RunPhase::Succeeded, "old config deleted", false)), 1),
            "Healthy",
            "old config deleted",
        ),
        case("failed.yaml", run_with(Some(run_status(RunPhase::Failed, failed, false)), 1), "Degraded", failed),
        case("invalid-spec.yaml", run_with(Some(run_status(RunPhase::Pending, invalid, true)), 1), "Degraded", invalid),
        case(
            "edited.yaml",
            run_with(Some(run_status(RunPhase::Succeeded, "old config deleted", false)), 2),
            "Progressing",
            "Waiting for the operator to observe generation 2",
        ),
    ]
}

fn policy(when: &str, observed: bool, generation: i64) -> Value {
    let mut p: XctPolicy = serde_yaml::from_str(&format!(
        "apiVersion: xct.dev/v1alpha1\nkind: XctPolicy\nmetadata: {{name: deletes-need-approval}}\nspec:\n  rules:\n    - name: deletes\n      tools: [k8s.delete]\n      effect: RequireApproval\n      when: {when:?}\n"
    ))
    .unwrap();
    p.metadata.generation = Some(1);
    if observed {
        p.status = Some(xct::operator::policy::observed(&xct::crd::Readable(Ok(p.clone()))));
    }
    object(p, generation)
}

fn policy_cases() -> Vec<Case> {
    let invalid = policy("proposal.target.kind ==", true, 1);
    let error =
        invalid["status"]["conditions"].as_array().unwrap().iter().find(|c| c["type"] == "Stalled").unwrap()["message"]
            .as_str()
            .unwrap()
            .to_string();
    assert!(error.contains("deletes"), "the error names the rule: {error}");
    let case =
        |file, object, status, message: &str| Case { kind: "XctPolicy", file, object, status, message: message.into() };
    vec![
        case("new.yaml", policy("true", false, 1), "Progressing", "Waiting for the operator to observe it"),
        case("ready.yaml", policy("true", true, 1), "Healthy", "1 rule(s) compiled"),
        case("invalid.yaml", invalid, "Degraded", &error),
        case("edited.yaml", policy("true", true, 2), "Progressing", "Waiting for the operator to observe it"),
    ]
}

fn approval(state: Option<(ApprovalState, &str)>) -> Value {
    let mut a: XctApproval = serde_yaml::from_str(&format!(
        "apiVersion: xct.dev/v1alpha1\nkind: XctApproval\nmetadata: {{name: cleanup-3-x7k2p}}\nspec:\n  runName: cleanup\n  runUid: 0b7c\n  step: 3\n  proposalDigest: {}\n  decision: Approve\n  approver: bob\n",
        "6".repeat(64)
    ))
    .unwrap();
    a.status = state.map(|(s, m)| XctApprovalStatus::new(s, m.into(), "0b7c", Some(1), None));
    object(a, 1)
}

fn approval_cases() -> Vec<Case> {
    let ignored = "proposalDigest: digest does not match the proposal of step 3 (6931d4)";
    let case = |file, object, status, message: &str| Case {
        kind: "XctApproval",
        file,
        object,
        status,
        message: message.into(),
    };
    vec![
        case("new.yaml", approval(None), "Progressing", "Waiting for the operator to observe it"),
        case(
            "accepted.yaml",
            approval(Some((ApprovalState::Accepted, "approved step 3"))),
            "Healthy",
            "approved step 3",
        ),
        case("ignored.yaml", approval(Some((ApprovalState::Ignored, ignored))), "Degraded", ignored),
    ]
}

fn all_cases() -> Vec<Case> {
    run_cases().into_iter().chain(policy_cases()).chain(approval_cases()).collect()
}

/// The files generated for `kind`: (path, content).
fn generated(kind: &str, cases: &[Case]) -> Vec<(PathBuf, String)> {
    let dir = argocd_dir(kind);
    let mut tests = Vec::new();
    let mut files = Vec::new();
    for c in cases.iter().filter(|c| c.kind == kind) {
        let header = "# Generated by tests/health.rs from the Rust types; XCT_BLESS=1 rewrites it.\n";
        files.push((
            dir.join("testdata").join(c.file),
            format!("{header}{}", serde_yaml::to_string(&c.object).unwrap()),
        ));
        tests.push(json!({"healthStatus": {"status": c.status, "message": c.message}, "inputPath": format!("testdata/{}", c.file)}));
    }
    let header = "# Argo CD health tests (resource_customizations layout); generated by tests/health.rs.\n";
    files.push((
        dir.join("health_test.yaml"),
        format!("{header}{}", serde_yaml::to_string(&json!({"tests": tests})).unwrap()),
    ));
    files
}

#[test]
fn fixtures_are_generated_from_the_types() {
    let cases = all_cases();
    let bless = std::env::var_os("XCT_BLESS").is_some();
    let mut checked = 0;
    for kind in ["XctRun", "XctPolicy", "XctApproval"] {
        for (path, content) in generated(kind, &cases) {
            if bless {
                std::fs::create_dir_all(path.parent().unwrap()).unwrap();
                std::fs::write(&path, &content).unwrap();
            }
            let committed = std::fs::read_to_string(&path).unwrap_or_default();
            assert!(committed == content, "{} is stale: run XCT_BLESS=1 cargo test --test health", path.display());
            checked += 1;
        }
    }
    assert_eq!(checked, cases.len() + 3);
}

/// A JSON value as a Lua expression (JSON null is nil, as in Argo CD).
fn lua(v: &Value) -> String {
    match v {
        Value::Null => "nil".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => {
            let mut out = String::from("\"");
            for b in s.bytes() {
                match b {
                    b'"' | b'\\' => out.push_str(&format!("\\{}", b as char)),
                    0x20..=0x7e => out.push(b as char),
                    _ => out.push_str(&format!("\\{b:03}")),
                }
            }
            out.push('"');
            out
        }
        Value::Array(items) => format!("{{{}}}", items.iter().map(lua).collect::<Vec<_>>().join(", ")),
        Value::Object(m) => {
            format!(
                "{{{}}}",
                m.iter().map(|(k, v)| format!("[{}] = {}", lua(&json!(k)), lua(v))).collect::<Vec<_>>().join(", ")
            )
        }
    }
}

/// Argo CD's verdict: run `health.lua` with `obj` set.
fn argo_health(script: &Path, object: &Value) -> (String, String) {
    let program = format!(
        "obj = {}\nlocal hs = dofile({})\nio.write(hs.status, \"\\n\", hs.message or \"\")\n",
        lua(object),
        lua(&json!(script.to_str().unwrap()))
    );
    let out = Command::new("lua5.4").args(["-e", &program]).output().expect("lua5.4 runs (scripts/install-deps.sh)");
    assert!(out.status.success(), "{}: {}", script.display(), String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    let (status, message) = text.split_once('\n').unwrap();
    (status.to_string(), message.to_string())
}

#[test]
fn argo_cd_health_scripts_pass_their_tests() {
    let mut checked = 0;
    let mut seen = std::collections::BTreeSet::new();
    for kind in ["XctRun", "XctPolicy", "XctApproval"] {
        let dir = argocd_dir(kind);
        let tests: Value =
            serde_yaml::from_str(&std::fs::read_to_string(dir.join("health_test.yaml")).unwrap()).unwrap();
        for t in tests["tests"].as_array().unwrap() {
            let input = dir.join(t["inputPath"].as_str().unwrap());
            let object: Value = serde_yaml::from_str(&std::fs::read_to_string(&input).unwrap()).unwrap();
            let (status, message) = argo_health(&dir.join("health.lua"), &object);
            let expected = &t["healthStatus"];
            assert_eq!(status, expected["status"].as_str().unwrap(), "{}", input.display());
            assert_eq!(message, expected["message"].as_str().unwrap(), "{}", input.display());
            seen.insert(format!("{kind}/{status}"));
            checked += 1;
        }
    }
    assert_eq!(checked, all_cases().len());
    let expected = [
        "XctApproval/Degraded",
        "XctApproval/Healthy",
        "XctApproval/Progressing",
        "XctPolicy/Degraded",
        "XctPolicy/Healthy",
        "XctPolicy/Progressing",
        "XctRun/Degraded",
        "XctRun/Healthy",
        "XctRun/Progressing",
        "XctRun/Suspended",
    ];
    assert_eq!(seen.into_iter().collect::<Vec<_>>(), expected, "every health a kind can have is exercised");
}

/// Flux's verdict from the `healthCheckExprs` for `kind`: Failed, Current
/// or InProgress (neither matched, or a field is missing: Flux waits).
fn flux_health(exprs: &[Value], kind: &str, object: &Value) -> &'static str {
    let check = exprs.iter().find(|e| e["kind"] == kind).unwrap_or_else(|| panic!("no healthCheckExprs for {kind}"));
    let eval = |key: &str| -> bool {
        let program = cel::Program::compile(check[key].as_str().unwrap()).unwrap();
        let mut ctx = cel::Context::default();
        for (field, value) in object.as_object().unwrap() {
            ctx.add_variable_from_value(field.as_str(), cel::to_value(value).unwrap());
        }
        matches!(program.execute(&ctx), Ok(cel::Value::Bool(true)))
    };
    let (failed, current) = (eval("failed"), eval("current"));
    assert!(!(failed && current), "{kind}: failed and current at once: {object}");
    if failed {
        "Failed"
    } else if current {
        "Current"
    } else {
        "InProgress"
    }
}

#[test]
fn flux_health_check_exprs_agree_with_argo_cd() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/gitops/flux/kustomization.yaml");
    let doc: Value = serde_yaml::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let exprs = doc["spec"]["healthCheckExprs"].as_array().unwrap();
    let cases = all_cases();
    for c in &cases {
        let expected = match c.status {
            "Healthy" => "Current",
            "Degraded" => "Failed",
            _ => "InProgress",
        };
        assert_eq!(flux_health(exprs, c.kind, &c.object), expected, "{} {}", c.kind, c.file);
    }
    assert_eq!(cases.len(), 15);
}
