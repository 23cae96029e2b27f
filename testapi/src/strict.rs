//! Strict field validation ("Field validation" in API Concepts): with
//! `fieldValidation=Strict`, a write whose resulting object holds a field
//! its kind does not define, or a value of the wrong type, is refused with
//! 400 BadRequest instead of the field being silently dropped. kubectl asks
//! for it by default, and so do the operator's Kubernetes tools, so that a
//! patch shaped wrongly (a JSON Patch `op`/`path`/`value` sent as a merge
//! patch) is a coded error and not a "success" that changed nothing.
//!
//! Built-in kinds are decoded with k8s-openapi's types, which name every
//! field they skip; a kind without a type here (and every custom resource,
//! whose schema prunes instead, see [`crate::validate`]) is not checked.

use k8s_openapi::api::{apps::v1 as apps, coordination::v1 as coordination, core::v1 as core, rbac::v1 as rbac};
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::error::ApiError;
use crate::kinds::Kind;

/// Whether a request asked for strict field validation.
pub fn requested(field_validation: Option<&str>) -> bool {
    field_validation == Some("Strict")
}

/// Refuse `obj` when it has a field `kind` does not define, or a value its
/// type cannot hold; the message names every unknown field by its path, as
/// kube-apiserver does (`unknown field "spec.template.spec.containers[0].imagee"`),
/// in sorted order.
pub fn check(kind: &Kind, obj: &Value) -> Result<(), ApiError> {
    let Some(decode) = decoder(&kind.group, &kind.kind) else { return Ok(()) };
    let cannot = |why: String| {
        ApiError::bad_request(format!(
            "{k} in version \"{v}\" cannot be handled as a {k}: {why}",
            k = kind.kind,
            v = kind.version
        ))
    };
    let mut unknown = decode(obj).map_err(cannot)?;
    unknown.sort();
    if unknown.is_empty() {
        return Ok(());
    }
    let fields: Vec<String> = unknown.iter().map(|f| format!("unknown field \"{f}\"")).collect();
    Err(cannot(format!("strict decoding error: {}", fields.join(", "))))
}

/// Decodes an object of one kind; the paths of the fields it skipped.
type Decoder = fn(&Value) -> Result<Vec<String>, String>;

fn decoder(group: &str, kind: &str) -> Option<Decoder> {
    Some(match (group, kind) {
        ("", "Namespace") => unknown_fields::<core::Namespace>,
        ("", "ServiceAccount") => unknown_fields::<core::ServiceAccount>,
        ("", "ConfigMap") => unknown_fields::<core::ConfigMap>,
        ("", "Secret") => unknown_fields::<core::Secret>,
        ("", "Event") => unknown_fields::<core::Event>,
        ("", "Service") => unknown_fields::<core::Service>,
        ("", "Pod") => unknown_fields::<core::Pod>,
        ("apps", "Deployment") => unknown_fields::<apps::Deployment>,
        ("apps", "StatefulSet") => unknown_fields::<apps::StatefulSet>,
        ("coordination.k8s.io", "Lease") => unknown_fields::<coordination::Lease>,
        ("rbac.authorization.k8s.io", "Role") => unknown_fields::<rbac::Role>,
        ("rbac.authorization.k8s.io", "RoleBinding") => unknown_fields::<rbac::RoleBinding>,
        ("rbac.authorization.k8s.io", "ClusterRole") => unknown_fields::<rbac::ClusterRole>,
        ("rbac.authorization.k8s.io", "ClusterRoleBinding") => unknown_fields::<rbac::ClusterRoleBinding>,
        _ => return None,
    })
}

fn unknown_fields<T: DeserializeOwned>(obj: &Value) -> Result<Vec<String>, String> {
    let mut unknown = Vec::new();
    serde_ignored::deserialize::<_, _, T>(obj, |path| unknown.push(field_path(&path))).map_err(|e| e.to_string())?;
    Ok(unknown)
}

/// `spec.template.spec.containers[0].imagee`, as kube-apiserver writes it.
fn field_path(path: &serde_ignored::Path<'_>) -> String {
    use serde_ignored::Path;
    match path {
        Path::Root => String::new(),
        Path::Seq { parent, index } => format!("{}[{index}]", field_path(parent)),
        Path::Map { parent, key } => match field_path(parent) {
            p if p.is_empty() => key.clone(),
            p => format!("{p}.{key}"),
        },
        Path::Some { parent } | Path::NewtypeStruct { parent } | Path::NewtypeVariant { parent } => field_path(parent),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::kinds::Registry;

    fn deployment_kind() -> Kind {
        Registry::default().find("apps", "v1", "deployments").cloned().expect("deployments are served")
    }

    fn deployment(container: Value) -> Value {
        json!({
            "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
            "spec": {"selector": {"matchLabels": {"app": "web"}}, "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [container]}}},
        })
    }

    #[test]
    fn a_known_object_passes() {
        assert_eq!(check(&deployment_kind(), &deployment(json!({"name": "web", "image": "nginx:1.27"}))), Ok(()));
    }

    #[test]
    fn every_unknown_field_is_named_by_its_path() {
        let mut obj = deployment(json!({"name": "web", "imagee": "nginx:1.27"}));
        obj["op"] = json!("replace");
        obj["path"] = json!("/spec/replicas");
        let err = check(&deployment_kind(), &obj).unwrap_err();
        assert_eq!((err.code, err.reason), (400, "BadRequest"));
        assert_eq!(
            err.message,
            "Deployment in version \"v1\" cannot be handled as a Deployment: strict decoding error: \
             unknown field \"op\", unknown field \"path\", unknown field \"spec.template.spec.containers[0].imagee\""
        );
    }

    #[test]
    fn a_value_of_the_wrong_type_is_refused() {
        let mut obj = deployment(json!({"name": "web"}));
        obj["spec"]["replicas"] = json!("three");
        let err = check(&deployment_kind(), &obj).unwrap_err();
        assert_eq!(err.code, 400);
        assert!(
            err.message.starts_with("Deployment in version \"v1\" cannot be handled as a Deployment: "),
            "{}",
            err.message
        );
    }

    #[test]
    fn only_strict_is_strict() {
        assert!(requested(Some("Strict")));
        assert!(!requested(Some("Warn")));
        assert!(!requested(None));
    }
}
