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

/// The CRDs' CEL rules (x-kubernetes-validations) compile and decide as
/// intended, evaluated with the `cel` crate (the test API server does not
/// run CEL; a real kube-apiserver does).
#[test]
fn cel_rules_compile_and_behave() {
    fn rules(v: &serde_json::Value, path: &str, out: &mut Vec<(String, String)>) {
        if let Some(list) = v.get("x-kubernetes-validations").and_then(|x| x.as_array()) {
            for r in list {
                out.push((path.to_string(), r["rule"].as_str().unwrap().to_string()));
            }
        }
        if let Some(props) = v.get("properties").and_then(|p| p.as_object()) {
            for (k, sub) in props {
                rules(sub, &format!("{path}.{k}"), out);
            }
        }
    }
    let mut found = vec![];
    for (_, crd) in xct::crd::all() {
        let v = serde_json::to_value(&crd).unwrap();
        rules(&v["spec"]["versions"][0]["schema"]["openAPIV3Schema"], "", &mut found);
    }
    assert!(found.len() >= 2, "{found:?}");
    let eval = |rule: &str, this: serde_json::Value, old: serde_json::Value| -> bool {
        let program = cel::Program::compile(rule).unwrap_or_else(|e| panic!("{rule}: {e}"));
        let mut ctx = cel::Context::default();
        ctx.add_variable_from_value("self", cel::to_value(&this).unwrap());
        ctx.add_variable_from_value("oldSelf", cel::to_value(&old).unwrap());
        matches!(program.execute(&ctx), Ok(cel::Value::Bool(true)))
    };
    for (path, rule) in &found {
        match path.as_str() {
            ".spec" => {
                let unique = serde_json::json!({"tools": ["k8s.get", "k8s.scale"]});
                let repeated = serde_json::json!({"tools": ["k8s.get", "k8s.get"]});
                assert!(eval(rule, unique.clone(), unique));
                assert!(!eval(rule, repeated.clone(), repeated), "{rule} refuses repeated tools");
            }
            ".spec.goal" => {
                assert!(eval(rule, "a".into(), "a".into()));
                assert!(!eval(rule, "b".into(), "a".into()), "{rule} refuses a changed goal");
            }
            other => panic!("untested CEL rule at {other}: {rule}"),
        }
    }
}

/// Conditions and policy rules are list maps (keyed by type and by name), so
/// server-side apply from GitOps tools merges them item by item.
#[test]
fn conditions_and_rules_are_list_maps() {
    use kube::CustomResourceExt;
    let policy = serde_json::to_value(xct::crd::XctPolicy::crd()).unwrap();
    let props = &policy["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"];
    assert_eq!(props["spec"]["properties"]["rules"]["x-kubernetes-list-type"], "map");
    assert_eq!(props["spec"]["properties"]["rules"]["x-kubernetes-list-map-keys"], serde_json::json!(["name"]));
    for crd in [xct::crd::XctRun::crd(), xct::crd::XctPolicy::crd(), xct::crd::XctApproval::crd()] {
        let v = serde_json::to_value(&crd).unwrap();
        let conditions =
            &v["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["status"]["properties"]["conditions"];
        assert_eq!(conditions["x-kubernetes-list-map-keys"], serde_json::json!(["type"]), "{}", v["metadata"]["name"]);
        // metav1.Condition: the timestamp is a date-time.
        assert_eq!(conditions["items"]["properties"]["lastTransitionTime"]["format"], "date-time");
    }
}
