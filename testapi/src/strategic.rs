//! Strategic merge patch ("Update API Objects in Place Using kubectl
//! patch"): a JSON merge patch, except that a list Kubernetes declares with
//! a merge key (`patchMergeKey`) is merged item by item on that key instead
//! of replaced: `{"containers": [{"name": "web", "image": "nginx:1.27"}]}`
//! changes the image of the container `web` and keeps its other fields and
//! the other containers. An item `{"name": "web", "$patch": "delete"}`
//! removes the item with that key; an item without its key is refused
//! as kube-apiserver refuses it (500, "does not contain declared merge
//! key"). Served for built-in kinds only; a custom resource answers 415,
//! as kube-apiserver does.
//!
//! Modelled: the merge-keyed lists of the kinds this server serves that
//! tools patch (a pod template's containers, their env, ports and mounts,
//! volumes, image pull secrets; a Service's ports; a ServiceAccount's
//! secrets). Every other list is replaced whole, as kube does for atomic
//! lists. Not modelled: `$retainKeys`, `$deleteFromPrimitiveList`,
//! primitive merge lists (finalizers), `$patch` on a map (refused, 400);
//! `$setElementOrder` is ignored.

use serde_json::{Map, Value};

use crate::error::ApiError;

/// The directive key of a list item.
const DIRECTIVE: &str = "$patch";
/// The prefix of the ordering hint kubectl sends, ignored here.
const ELEMENT_ORDER: &str = "$setElementOrder/";

/// `patch` applied to `doc` as a strategic merge patch.
pub fn merge(doc: &Value, patch: &Value) -> Result<Value, ApiError> {
    if !patch.is_object() {
        return Err(ApiError::bad_request("a strategic merge patch must be a JSON object"));
    }
    let mut out = doc.clone();
    merge_into(&mut out, patch, &mut Vec::new())?;
    Ok(out)
}

/// The merge key of the list at `path` (the object keys from the root;
/// list items add none), from the Kubernetes API types' `patchMergeKey`.
fn merge_key(path: &[String]) -> Option<&'static str> {
    let path: Vec<&str> = path.iter().map(String::as_str).collect();
    match path.as_slice() {
        [.., "containers" | "initContainers" | "ephemeralContainers", "env"] => Some("name"),
        [.., "containers" | "initContainers" | "ephemeralContainers", "ports"] => Some("containerPort"),
        [.., "containers" | "initContainers" | "ephemeralContainers", "volumeMounts"] => Some("mountPath"),
        [.., "spec", "containers" | "initContainers" | "ephemeralContainers" | "volumes" | "imagePullSecrets"] => {
            Some("name")
        }
        ["spec", "ports"] => Some("port"),
        ["secrets"] => Some("name"),
        _ => None,
    }
}

/// Merge the object `patch` into `target` (RFC 7386 for maps: `null`
/// removes, an object merges, anything else replaces).
fn merge_into(target: &mut Value, patch: &Value, path: &mut Vec<String>) -> Result<(), ApiError> {
    let Value::Object(fields) = patch else {
        *target = patch.clone();
        return Ok(());
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let Value::Object(out) = target else { unreachable!("made an object above") };
    for (key, value) in fields {
        if key.starts_with(ELEMENT_ORDER) {
            continue;
        }
        if key.starts_with('$') {
            return Err(ApiError::bad_request(format!(
                "the strategic merge directive {key:?} is not supported by this server"
            )));
        }
        if value.is_null() {
            out.remove(key);
            continue;
        }
        path.push(key.clone());
        let slot = out.entry(key.clone()).or_insert(Value::Null);
        match (merge_key(path), value) {
            (Some(merge_key), Value::Array(items)) => merge_list(slot, items, merge_key, path)?,
            _ => merge_into(slot, value, path)?,
        }
        path.pop();
    }
    Ok(())
}

/// Merge `items` into the list `target` on `key`.
fn merge_list(target: &mut Value, items: &[Value], key: &str, path: &mut Vec<String>) -> Result<(), ApiError> {
    if !target.is_array() {
        *target = Value::Array(vec![]);
    }
    let Value::Array(list) = target else { unreachable!("made an array above") };
    for item in items {
        let id = item.get(key).filter(|id| !id.is_null()).ok_or_else(|| {
            ApiError::new(500, "InternalError", format!("map: {} does not contain declared merge key: {key}", go(item)))
        })?;
        let existing = list.iter().position(|x| x.get(key) == Some(id));
        let mut fields = item.as_object().cloned().unwrap_or_default();
        match fields.remove(DIRECTIVE) {
            None => {}
            Some(Value::String(d)) if d == "delete" => {
                if let Some(at) = existing {
                    list.remove(at);
                }
                continue;
            }
            Some(other) => {
                return Err(ApiError::bad_request(format!("unknown patch type: {other} in a list item")));
            }
        }
        let patch = Value::Object(fields);
        match existing {
            Some(at) => merge_into(&mut list[at], &patch, path)?,
            None => {
                let mut added = Value::Null;
                merge_into(&mut added, &patch, path)?;
                list.push(added);
            }
        }
    }
    Ok(())
}

/// `v` as Go's `%v` prints a decoded JSON value (how kube-apiserver quotes
/// a patch item in its errors): `map[image:nginx:1.27]`.
fn go(v: &Value) -> String {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            let fields: Vec<String> = keys.into_iter().map(|k| format!("{k}:{}", go(&m[k]))).collect();
            format!("map[{}]", fields.join(" "))
        }
        Value::Array(items) => format!("[{}]", items.iter().map(go).collect::<Vec<_>>().join(" ")),
        Value::String(s) => s.clone(),
        Value::Null => "<nil>".into(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn deployment() -> Value {
        json!({"spec": {"replicas": 1, "template": {"spec": {
            "containers": [
                {"name": "web", "image": "nginx:1.27-typo", "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}],
                 "ports": [{"containerPort": 80}]},
                {"name": "sidecar", "image": "envoy:1"}
            ],
            "tolerations": [{"key": "a"}]
        }}}})
    }

    #[test]
    fn a_keyed_list_item_is_merged_on_its_key_and_the_rest_is_kept() {
        let patch = json!({"spec": {"template": {"spec": {"containers": [{"name": "web", "image": "nginx:1.27"}]}}}});
        let out = merge(&deployment(), &patch).unwrap();
        let containers = &out["spec"]["template"]["spec"]["containers"];
        assert_eq!(containers.as_array().unwrap().len(), 2, "the sidecar is kept: {containers}");
        assert_eq!(containers[0]["image"], "nginx:1.27");
        assert_eq!(containers[0]["env"], deployment()["spec"]["template"]["spec"]["containers"][0]["env"]);
        assert_eq!(containers[0]["ports"], json!([{"containerPort": 80}]));
        assert_eq!(out["spec"]["replicas"], 1);
    }

    #[test]
    fn nested_keyed_lists_merge_add_and_delete() {
        let patch = json!({"spec": {"template": {"spec": {"containers": [{"name": "web", "env": [
            {"name": "B", "value": "3"}, {"name": "C", "value": "4"}, {"name": "A", "$patch": "delete"}
        ]}, {"name": "init", "image": "busybox", "stale": null}]}}}});
        let out = merge(&deployment(), &patch).unwrap();
        let containers = &out["spec"]["template"]["spec"]["containers"];
        assert_eq!(containers[0]["env"], json!([{"name": "B", "value": "3"}, {"name": "C", "value": "4"}]));
        assert_eq!(containers[2], json!({"name": "init", "image": "busybox"}), "a new item is appended, nulls dropped");
    }

    #[test]
    fn a_list_without_a_merge_key_is_replaced_and_null_removes() {
        let patch = json!({"spec": {"template": {"spec": {"tolerations": [{"key": "b"}]}}, "replicas": null}});
        let out = merge(&deployment(), &patch).unwrap();
        assert_eq!(out["spec"]["template"]["spec"]["tolerations"], json!([{"key": "b"}]));
        assert_eq!(out["spec"].get("replicas"), None);
        let svc = json!({"spec": {"ports": [{"port": 80, "targetPort": 8080}, {"port": 443}]}});
        let out = merge(&svc, &json!({"spec": {"ports": [{"port": 80, "targetPort": 9090}]}})).unwrap();
        assert_eq!(out["spec"]["ports"], json!([{"port": 80, "targetPort": 9090}, {"port": 443}]));
    }

    #[test]
    fn an_item_without_its_merge_key_or_an_unknown_directive_is_refused() {
        let nameless = json!({"spec": {"template": {"spec": {"containers": [{"image": "nginx:1.27"}]}}}});
        let e = merge(&deployment(), &nameless).unwrap_err();
        assert_eq!(e.code, 500);
        assert_eq!(e.message, "map: map[image:nginx:1.27] does not contain declared merge key: name");
        let directive = json!({"spec": {"$patch": "replace"}});
        assert_eq!(merge(&deployment(), &directive).unwrap_err().code, 400);
        let unknown = json!({"spec": {"template": {"spec": {"containers": [{"name": "web", "$patch": "merge!"}]}}}});
        assert_eq!(merge(&deployment(), &unknown).unwrap_err().code, 400);
        assert_eq!(merge(&deployment(), &json!([1])).unwrap_err().code, 400);
        let ordered = json!({"$setElementOrder/containers": [{"name": "web"}], "spec": {"replicas": 2}});
        assert_eq!(merge(&deployment(), &ordered).unwrap()["spec"]["replicas"], 2);
    }
}
