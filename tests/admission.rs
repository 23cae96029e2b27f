//! The chart's admission rules, rendered by Helm with the chart's default
//! values and evaluated with the `cel` crate (the test API server does not
//! run admission policies; a real kube-apiserver does): with the defaults a
//! run must carry its creator, so self-approval is impossible.

use std::path::Path;
use std::process::Command;

use serde_json::{Value, json};

/// One Helm at a time in this process: the first call may install it.
static HELM: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// The rendered chart's ValidatingAdmissionPolicy, with `--set` overrides.
fn rendered_vap(overrides: &[&str]) -> Value {
    let _one = HELM.lock().unwrap_or_else(|e| e.into_inner());
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut cmd = Command::new(root.join("scripts/helm.sh"));
    cmd.current_dir(root).args(["template", "xct-operator", "charts/xct-operator", "-n", "xct-system"]);
    for o in overrides {
        cmd.args(["--set", o]);
    }
    let out = cmd.output().expect("scripts/helm.sh runs");
    assert!(out.status.success(), "helm template failed: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    serde_yaml::Deserializer::from_str(&text)
        .map(|d| <Value as serde::Deserialize>::deserialize(d).unwrap())
        .find(|d| d["kind"] == "ValidatingAdmissionPolicy")
        .expect("the chart renders a ValidatingAdmissionPolicy")
}

fn eval(expr: &str, vars: &[(&str, &Value)]) -> Result<bool, String> {
    let program = cel::Program::compile(expr).map_err(|e| format!("{expr}: {e}"))?;
    let mut ctx = cel::Context::default();
    for (name, v) in vars {
        ctx.add_variable_from_value(*name, cel::to_value(v).unwrap());
    }
    match program.execute(&ctx) {
        Ok(cel::Value::Bool(b)) => Ok(b),
        other => Err(format!("{expr}: {other:?}")),
    }
}

/// Whether the policy admits `object` created (or updated from `old`) by `user`.
fn admits(vap: &Value, resource: &str, user: &str, object: &Value, old: Option<&Value>) -> Result<(), String> {
    let request = json!({
        "operation": if old.is_some() { "UPDATE" } else { "CREATE" },
        "resource": {"group": "xct.dev", "version": "v1alpha1", "resource": resource},
        "userInfo": {"username": user},
    });
    let old = old.cloned().unwrap_or(Value::Null);
    let mut variables = serde_json::Map::new();
    for v in vap["spec"]["variables"].as_array().unwrap() {
        let expr = v["expression"].as_str().unwrap();
        let program = cel::Program::compile(expr).unwrap();
        let mut ctx = cel::Context::default();
        for (name, value) in [("object", object), ("oldObject", &old), ("request", &request)] {
            ctx.add_variable_from_value(name, cel::to_value(value).unwrap());
        }
        ctx.add_variable_from_value("variables", cel::to_value(Value::Object(variables.clone())).unwrap());
        let value = program.execute(&ctx).unwrap_or_else(|e| panic!("{expr}: {e}"));
        // The chart's variables are booleans and strings.
        let value = match value {
            cel::Value::Bool(b) => json!(b),
            cel::Value::String(s) => json!(s.as_str()),
            other => panic!("{expr}: unexpected variable value {other:?}"),
        };
        variables.insert(v["name"].as_str().unwrap().to_string(), value);
    }
    let variables = Value::Object(variables);
    for v in vap["spec"]["validations"].as_array().unwrap() {
        let expr = v["expression"].as_str().unwrap();
        let vars = [("object", object), ("oldObject", &old), ("request", &request), ("variables", &variables)];
        if !eval(expr, &vars)? {
            return Err(v["message"].as_str().or(v["messageExpression"].as_str()).unwrap_or(expr).to_string());
        }
    }
    Ok(())
}

fn run(creator: Option<&str>) -> Value {
    let mut r = json!({"apiVersion": "xct.dev/v1alpha1", "kind": "XctRun", "metadata": {"name": "r"}, "spec": {"goal": "g", "tools": ["k8s.get"]}});
    if let Some(c) = creator {
        r["metadata"]["annotations"] = json!({"xct.dev/created-by": c});
    }
    r
}

fn approval(approver: &str) -> Value {
    json!({"apiVersion": "xct.dev/v1alpha1", "kind": "XctApproval", "metadata": {"name": "a"}, "spec": {"runName": "r", "runUid": "u", "step": 1, "proposalDigest": "0".repeat(64), "decision": "Approve", "approver": approver}})
}

#[test]
fn default_values_require_the_creator_on_every_run() {
    let vap = rendered_vap(&[]);
    // A run without its creator is refused, so no one can create a run the
    // operator cannot attribute and then approve it themselves.
    let e = admits(&vap, "xctruns", "mallory", &run(None), None).unwrap_err();
    assert!(e.contains("created-by"), "{e}");
    assert!(admits(&vap, "xctruns", "mallory", &run(Some("alice")), None).is_err(), "someone else's name");
    admits(&vap, "xctruns", "alice", &run(Some("alice")), None).unwrap();
    // The creator cannot change afterwards.
    assert!(admits(&vap, "xctruns", "alice", &run(Some("bob")), Some(&run(Some("alice")))).is_err());
    admits(&vap, "xctruns", "alice", &run(Some("alice")), Some(&run(Some("alice")))).unwrap();
    // An approval names its real author, and cannot be edited.
    admits(&vap, "xctapprovals", "bob", &approval("bob"), None).unwrap();
    assert!(admits(&vap, "xctapprovals", "alice", &approval("bob"), None).is_err());
    assert!(admits(&vap, "xctapprovals", "bob", &approval("carol"), Some(&approval("bob"))).is_err());
}

#[test]
fn the_creator_requirement_is_a_value() {
    // Only where a cluster opts out is a run without the annotation admitted
    // (and then the operator counts no approval for it).
    let vap = rendered_vap(&["admission.requireCreatorAnnotation=false"]);
    admits(&vap, "xctruns", "mallory", &run(None), None).unwrap();
    assert!(admits(&vap, "xctruns", "mallory", &run(Some("alice")), None).is_err());
}

/// A trusted GitOps applier may record the Git reviewer as the approver;
/// nobody else may, and the applier may not leave it empty. Without the
/// value, the applier is recorded as itself like everyone.
#[test]
fn trusted_gitops_appliers_record_the_reviewer() {
    let argo = "system:serviceaccount:argocd:argocd-application-controller";
    let vap = rendered_vap(&[&format!("admission.trustedAppliers[0]={argo}")]);
    admits(&vap, "xctapprovals", argo, &approval("carol"), None).unwrap();
    let e = admits(&vap, "xctapprovals", argo, &approval(""), None).unwrap_err();
    assert!(e.contains("spec.approver"), "{e}");
    assert!(admits(&vap, "xctapprovals", "mallory", &approval("carol"), None).is_err(), "only the trusted applier");
    admits(&vap, "xctapprovals", "bob", &approval("bob"), None).unwrap();
    // Still immutable once applied.
    assert!(admits(&vap, "xctapprovals", argo, &approval("dave"), Some(&approval("carol"))).is_err());
    admits(&vap, "xctapprovals", argo, &approval("carol"), Some(&approval("carol"))).unwrap();
    let untrusted = rendered_vap(&[]);
    assert!(admits(&untrusted, "xctapprovals", argo, &approval("carol"), None).is_err());
}
