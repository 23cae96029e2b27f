//! Every example manifest is valid against the CRD schemas (as the API
//! server would check it), every example policy compiles, and every example
//! run names only tools of the catalogue.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::Value;

fn yaml_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            yaml_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "yaml") {
            out.push(p);
        }
    }
}

fn schemas() -> Vec<(String, Value)> {
    xct::crd::all()
        .into_iter()
        .map(|(_, crd)| {
            let v = serde_json::to_value(&crd).unwrap();
            (
                v["spec"]["names"]["kind"].as_str().unwrap().to_string(),
                v["spec"]["versions"][0]["schema"]["openAPIV3Schema"].clone(),
            )
        })
        .collect()
}

#[tokio::test]
async fn examples_are_valid() {
    let mut files = vec![];
    yaml_files(&Path::new(env!("CARGO_MANIFEST_DIR")).join("examples"), &mut files);
    files.sort();
    let schemas = schemas();
    let client = kube::Client::try_from(kube::Config::new("http://127.0.0.1:9".parse().unwrap())).unwrap();
    let k8s = xct::k8s::tools::tools(Arc::new(xct::k8s::tools::K8sContext { client, namespace: "demo".into() }));
    let dir = tempfile::tempdir().unwrap();
    let fs = xct::tools::fs::Workspace::open(dir.path()).unwrap().tools();
    let catalogue = k8s.into_iter().chain(fs).fold(xct::tools::ToolSet::new(), xct::tools::ToolSet::with);
    let mut checked = 0;
    for f in &files {
        let text = std::fs::read_to_string(f).unwrap();
        for doc in serde_yaml::Deserializer::from_str(&text) {
            let mut v: Value = serde::Deserialize::deserialize(doc).unwrap();
            let Some((kind, schema)) = schemas.iter().find(|(k, _)| v["kind"] == k.as_str()) else { continue };
            let original = v.clone();
            let errors = xct_testapi::validate::check_schema(schema, &mut v);
            assert!(errors.is_empty(), "{}: {kind}: {errors:?}", f.display());
            assert_eq!(v["spec"], original["spec"], "{}: the schema would prune fields of the example", f.display());
            match kind.as_str() {
                "XctRun" => {
                    let run: xct::crd::XctRun = serde_json::from_value(v).unwrap();
                    let problems = run.spec.problems(&catalogue.names());
                    assert!(problems.is_empty(), "{}: {problems:?}", f.display());
                }
                "XctPolicy" => {
                    let p: xct::crd::XctPolicy = serde_json::from_value(v).unwrap();
                    let loaded = xct::policy::load("example", None, &p.spec);
                    assert!(matches!(loaded, xct::policy::Loaded::Ready(_)), "{}: {loaded:?}", f.display());
                }
                _ => {}
            }
            checked += 1;
        }
    }
    assert!(checked >= 6, "examples checked: {checked}");
}
