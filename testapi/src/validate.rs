//! Admission checks: object names (RFC 1123 subdomains), label keys and
//! values (`ValidateLabels` in apimachinery), and, for custom
//! resources, the CRD's structural schema ("Validation" and "Pruning" under
//! "Custom Resources"): types, required, enum, numeric and length bounds,
//! `pattern`, and pruning of unknown fields. CEL rules (`x-kubernetes-validations`)
//! are not evaluated here.

use serde_json::Value;

/// Check `metadata.name` as kube-apiserver does for most kinds.
pub fn check_name(name: &str) -> Option<String> {
    let ok = !name.is_empty()
        && name.len() <= 253
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric());
    (!ok).then(|| {
        format!(
            "metadata.name: Invalid value: {name:?}: a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character"
        )
    })
}

/// A qualified name (label value, or the name part of a label key): at
/// most 63 characters, alphanumerics, '-', '_' or '.', alphanumeric at both
/// ends.
fn qualified_name_part(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && s.starts_with(|c: char| c.is_ascii_alphanumeric())
        && s.ends_with(|c: char| c.is_ascii_alphanumeric())
}

/// Check `metadata.labels` as kube-apiserver does: keys are an optional
/// DNS-subdomain prefix and `/` then a qualified name; values are empty or
/// a qualified name part (so at most 63 characters).
pub fn check_labels(obj: &Value) -> Vec<String> {
    let Some(labels) = obj["metadata"]["labels"].as_object() else { return vec![] };
    let mut errs = Vec::new();
    for (k, v) in labels {
        let (prefix, name) = match k.split_once('/') {
            Some((p, n)) => (Some(p), n),
            None => (None, k.as_str()),
        };
        if prefix.is_some_and(|p| check_name(p).is_some()) || !qualified_name_part(name) {
            errs.push(format!(
                "metadata.labels: Invalid value: {k:?}: name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (at most 63), with an optional DNS subdomain prefix and '/'"
            ));
        }
        match v.as_str() {
            Some("") => {}
            Some(s) if qualified_name_part(s) => {}
            _ => errs.push(format!(
                "metadata.labels: Invalid value: {v}: a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character; must be no more than 63 characters"
            )),
        }
    }
    errs
}

/// Where a kind keeps its pod spec: a Pod's `spec`, a workload's
/// `spec.template.spec`; `None` for other kinds.
fn pod_spec_path(group: &str, kind: &str) -> Option<&'static [&'static str]> {
    match (group, kind) {
        ("", "Pod") => Some(&["spec"]),
        ("apps", "Deployment" | "StatefulSet" | "DaemonSet" | "ReplicaSet") | ("batch", "Job") => {
            Some(&["spec", "template", "spec"])
        }
        _ => None,
    }
}

/// Check the containers of a pod spec as kube-apiserver's `ValidatePodSpec`
/// does, in part: each has a `name` (an RFC 1123 label, unique in the pod)
/// and an `image`. A merge patch replaces the whole list, so a patch that
/// gives only the new image leaves a container with no name: refused, as a
/// real cluster refuses it. (The list itself is not required here, so tests
/// may seed workloads without one.)
pub fn check_containers(group: &str, kind: &str, obj: &Value) -> Vec<String> {
    let Some(path) = pod_spec_path(group, kind) else { return vec![] };
    let spec = path.iter().fold(obj, |v, k| &v[*k]);
    let Some(containers) = spec["containers"].as_array() else { return vec![] };
    let at = format!("{}.containers", path.join("."));
    let mut errs = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for (i, c) in containers.iter().enumerate() {
        match c["name"].as_str() {
            None | Some("") => errs.push(format!("{at}[{i}].name: Required value")),
            Some(name) if !is_label(name) => errs.push(format!(
                "{at}[{i}].name: Invalid value: {name:?}: a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character"
            )),
            Some(name) if !seen.insert(name) => errs.push(format!("{at}[{i}].name: Duplicate value: {name:?}")),
            Some(_) => {}
        }
        if c["image"].as_str().is_none_or(str::is_empty) {
            errs.push(format!("{at}[{i}].image: Required value"));
        }
    }
    errs
}

/// An RFC 1123 label: at most 63 lowercase alphanumerics or '-',
/// alphanumeric at both ends.
fn is_label(s: &str) -> bool {
    s.len() <= 63 && check_name(s).is_none() && !s.contains('.')
}

/// Validate (and prune) `obj` against a CRD `openAPIV3Schema`; every
/// violation as `path: message`.
pub fn check_schema(schema: &Value, obj: &mut Value) -> Vec<String> {
    let mut errs = Vec::new();
    // apiVersion, kind and metadata are the server's to check.
    if let Some(props) = schema.get("properties").and_then(Value::as_object)
        && let Some(map) = obj.as_object_mut()
    {
        for (k, sub) in props {
            if matches!(k.as_str(), "apiVersion" | "kind" | "metadata") {
                continue;
            }
            if let Some(v) = map.get_mut(k) {
                walk(sub, v, k, &mut errs);
            }
        }
        for req in schema["required"].as_array().into_iter().flatten().filter_map(Value::as_str) {
            if !map.contains_key(req) {
                errs.push(format!("{req}: Required value"));
            }
        }
        let known: Vec<String> = props.keys().cloned().collect();
        map.retain(|k, _| known.contains(k) || matches!(k.as_str(), "apiVersion" | "kind" | "metadata"));
    }
    errs
}

fn type_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn walk(schema: &Value, v: &mut Value, path: &str, errs: &mut Vec<String>) {
    if v.is_null() {
        if schema["nullable"] != true {
            errs.push(format!(
                "{path}: Invalid value: \"null\": {path} in body must be of type {}",
                schema["type"].as_str().unwrap_or("object")
            ));
        }
        return;
    }
    if schema["x-kubernetes-int-or-string"] == true {
        if !matches!(type_of(v), "integer" | "string") {
            errs.push(format!("{path}: Invalid value: must be an integer or a string"));
        }
        return;
    }
    let preserve = schema["x-kubernetes-preserve-unknown-fields"] == true;
    if let Some(want) = schema["type"].as_str() {
        let got = type_of(v);
        let ok = got == want || (want == "number" && got == "integer");
        if !ok {
            errs.push(format!("{path}: Invalid value: \"{got}\": {path} in body must be of type {want}: \"{got}\""));
            return;
        }
    }
    if let Some(choices) = schema["enum"].as_array()
        && !choices.contains(v)
    {
        errs.push(format!("{path}: Unsupported value: {v}: supported values: {}", Value::Array(choices.clone())));
    }
    match v {
        Value::Number(n) => {
            let x = n.as_f64().unwrap_or(0.0);
            if let Some(min) = schema["minimum"].as_f64()
                && x < min
            {
                errs.push(format!(
                    "{path}: Invalid value: {x}: {path} in body should be greater than or equal to {min}"
                ));
            }
            if let Some(max) = schema["maximum"].as_f64()
                && x > max
            {
                errs.push(format!("{path}: Invalid value: {x}: {path} in body should be less than or equal to {max}"));
            }
        }
        Value::String(s) => {
            if let Some(p) = schema["pattern"].as_str() {
                match regex::Regex::new(p) {
                    Ok(re) if !re.is_match(s) => {
                        errs.push(format!("{path}: Invalid value: {s:?}: {path} in body should match '{p}'"));
                    }
                    Ok(_) => {}
                    Err(e) => errs.push(format!("{path}: the schema's pattern does not compile: {e}")),
                }
            }
            let n = s.chars().count() as u64;
            if let Some(max) = schema["maxLength"].as_u64()
                && n > max
            {
                errs.push(format!("{path}: Too long: may not be longer than {max}"));
            }
            if let Some(min) = schema["minLength"].as_u64()
                && n < min
            {
                errs.push(format!("{path}: Invalid value: should be at least {min} chars long"));
            }
        }
        Value::Array(items) => {
            if let Some(max) = schema["maxItems"].as_u64()
                && items.len() as u64 > max
            {
                errs.push(format!("{path}: Too many: {}: must have at most {max} items", items.len()));
            }
            if let Some(min) = schema["minItems"].as_u64()
                && (items.len() as u64) < min
            {
                errs.push(format!("{path}: Invalid value: should have at least {min} items"));
            }
            if let Some(item_schema) = schema.get("items") {
                for (i, item) in items.iter_mut().enumerate() {
                    walk(item_schema, item, &format!("{path}[{i}]"), errs);
                }
            }
        }
        Value::Object(map) => {
            if let Some(props) = schema.get("properties").and_then(Value::as_object) {
                for (k, sub) in props {
                    if let Some(child) = map.get_mut(k) {
                        walk(sub, child, &format!("{path}.{k}"), errs);
                    }
                }
                if !preserve && schema.get("additionalProperties").is_none() {
                    map.retain(|k, _| props.contains_key(k));
                }
            } else if let Some(extra) = schema.get("additionalProperties").filter(|a| a.is_object()) {
                for (k, child) in map.iter_mut() {
                    walk(extra, child, &format!("{path}.{k}"), errs);
                }
            }
            for req in schema["required"].as_array().into_iter().flatten().filter_map(Value::as_str) {
                if !map.contains_key(req) {
                    errs.push(format!("{path}.{req}: Required value"));
                }
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn labels() {
        let ok = serde_json::json!({"metadata": {"labels": {"app": "web", "xct.dev/run-uid": "3f2a-b", "e": ""}}});
        assert!(check_labels(&ok).is_empty());
        let long = "a".repeat(64);
        let bad =
            serde_json::json!({"metadata": {"labels": {"xct.dev/run": long, "-x": "y", "a/b/c": "d", "k": "v!"}}});
        assert_eq!(check_labels(&bad).len(), 4, "{:?}", check_labels(&bad));
    }

    #[test]
    fn containers_need_a_unique_name_and_an_image() {
        let web = |containers: Value| json!({"spec": {"template": {"spec": {"containers": containers}}}});
        assert!(
            check_containers("apps", "Deployment", &web(json!([{"name": "web", "image": "nginx:1.27"}]))).is_empty()
        );
        assert!(
            check_containers("apps", "Deployment", &json!({"spec": {"replicas": 1}})).is_empty(),
            "no list: not checked"
        );
        assert_eq!(
            check_containers("apps", "Deployment", &web(json!([{"image": "nginx:1.27"}]))),
            ["spec.template.spec.containers[0].name: Required value"]
        );
        let errs = check_containers(
            "apps",
            "StatefulSet",
            &web(json!([{"name": "a", "image": "x"}, {"name": "a"}, {"name": "B_", "image": "y"}])),
        );
        assert_eq!(errs.len(), 3, "{errs:?}");
        assert_eq!(
            check_containers("", "Pod", &json!({"spec": {"containers": [{"name": "a"}]}})),
            ["spec.containers[0].image: Required value"]
        );
        assert!(check_containers("", "ConfigMap", &json!({"spec": {"containers": [{}]}})).is_empty());
    }

    #[test]
    fn names() {
        assert!(check_name("my-run.v1").is_none());
        for bad in ["", "Upper", "-lead", "trail-", "sp ace", "ünï", &"a".repeat(254)] {
            assert!(check_name(bad).is_some(), "{bad}");
        }
    }

    #[test]
    fn schema_checks_and_prunes() {
        let schema = json!({"type": "object", "required": ["spec"], "properties": {"spec": {"type": "object", "required": ["goal"], "properties": {
            "goal": {"type": "string", "maxLength": 5},
            "n": {"type": "integer", "minimum": 1},
            "tools": {"type": "array", "items": {"type": "string"}},
            "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}
        }}}});
        let mut ok = json!({"spec": {"goal": "abc", "n": 2, "tools": ["a"], "free": {"x": 1}, "unknown": 1}});
        assert!(check_schema(&schema, &mut ok).is_empty());
        assert!(ok["spec"].get("unknown").is_none(), "unknown fields are pruned");
        assert_eq!(ok["spec"]["free"]["x"], 1, "preserved fields stay");
        let mut bad = json!({"spec": {"goal": "too long", "n": 0, "tools": [1]}});
        let errs = check_schema(&schema, &mut bad);
        assert_eq!(errs.len(), 3, "{errs:?}");
        let mut missing = json!({});
        assert_eq!(check_schema(&schema, &mut missing), vec!["spec: Required value".to_string()]);
    }
}
