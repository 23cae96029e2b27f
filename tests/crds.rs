//! The committed CRDs are exactly what the Rust types generate, and the
//! test API server accepts them and the examples.

use std::path::Path;

#[test]
fn committed_crds_match_the_types() {
    for (file, crd) in xct::crd::all() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("crds").join(file);
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            committed == xct::crd::render(&crd),
            "{} is stale: run `cargo run -- crdgen` and commit the result",
            path.display()
        );
    }
}

#[test]
fn every_schema_node_has_a_description_or_is_free_form() {
    fn walk(v: &serde_json::Value, path: &str, missing: &mut Vec<String>) {
        if let Some(props) = v.get("properties").and_then(|p| p.as_object()) {
            for (k, sub) in props {
                let p = format!("{path}.{k}");
                if sub.get("description").is_none() {
                    missing.push(p.clone());
                }
                walk(sub, &p, missing);
            }
        }
        if let Some(items) = v.get("items") {
            walk(items, &format!("{path}[]"), missing);
        }
    }
    for (_, crd) in xct::crd::all() {
        let v = serde_json::to_value(&crd).unwrap();
        let mut missing = vec![];
        for version in v["spec"]["versions"].as_array().unwrap() {
            walk(&version["schema"]["openAPIV3Schema"]["properties"]["spec"], ".spec", &mut missing);
            walk(&version["schema"]["openAPIV3Schema"]["properties"]["status"], ".status", &mut missing);
        }
        assert!(missing.is_empty(), "fields without a description (kubectl explain): {missing:?}");
    }
}
