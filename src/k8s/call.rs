//! A Kubernetes tool call, validated: which tool ([`Op`]), its arguments
//! as typed structs, and the [`Call`] they become before any request
//! exists. Requests are built from a `Call` only (see [`super::tools`]).

use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::target::{NameRule, ObjectName, ObjectRef, check_label_selector};
use super::{PatchableFields, TargetKind};
use crate::tools::lines::{CONTAINS_DOC, Needle};
use crate::tools::{Target, ToolError, parse, schema_of};

/// Log lines `k8s.logs` reads when the model names no count, and the most.
const DEFAULT_LOG_LINES: u32 = 50;
pub(super) const MAX_LOG_LINES: u32 = 500;

/// One Kubernetes tool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Get,
    List,
    Scale,
    Patch,
    Apply,
    Delete,
    RolloutRestart,
    Logs,
    Events,
}

pub(super) const OPS: [Op; 9] =
    [Op::Get, Op::List, Op::Scale, Op::Patch, Op::Apply, Op::Delete, Op::RolloutRestart, Op::Logs, Op::Events];

/// Kinds that have a `/scale` and a pod template.
#[derive(Debug, Clone, Copy, Deserialize, JsonSchema)]
pub enum WorkloadKind {
    Deployment,
    StatefulSet,
}

impl WorkloadKind {
    fn target(self) -> TargetKind {
        match self {
            WorkloadKind::Deployment => TargetKind::Deployment,
            WorkloadKind::StatefulSet => TargetKind::StatefulSet,
        }
    }
}

/// Arguments of `k8s.get` and `k8s.delete`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ObjectArgs {
    /// Kind of the object.
    pub kind: TargetKind,
    /// Name of the object.
    pub name: String,
}

/// Arguments of `k8s.list`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ListArgs {
    /// Kind to list.
    pub kind: TargetKind,
    /// Label selector, e.g. "app=web".
    #[serde(default)]
    pub label_selector: Option<String>,
}

/// Arguments of `k8s.scale`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ScaleArgs {
    /// Deployment or StatefulSet.
    pub kind: WorkloadKind,
    /// Name of the workload.
    pub name: String,
    /// Desired replicas.
    #[schemars(range(min = 0, max = 1000))]
    pub replicas: u32,
}

/// Arguments of `k8s.patch`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PatchArgs {
    /// Kind of the object.
    pub kind: TargetKind,
    /// Name of the object.
    pub name: String,
    /// Only the fields to change, shaped like the resource (a strategic merge patch), e.g. {"spec": {"replicas": 3}}.
    #[schemars(schema_with = "crate::schema::any_object")]
    pub patch: Map<String, Value>,
}

/// The schema of `k8s.patch`'s arguments: one alternative per set of
/// kinds that share their patchable fields ([`TargetKind::patchable`]),
/// each naming those kinds and, as `patch`, an object of those fields only.
/// Anything else at the top of a patch (a JSON Patch operation's
/// `op`/`path`/`value`, `spec` for a ConfigMap, a field written at the
/// wrong depth) fails the schema, and a grammar built from it cannot
/// produce it; the grammar also offers a kind's fields in the order of
/// `patchable`. The eval model sent JSON Patch operations and
/// `{"kind":"ImagePullPolicy",...}` as patches, resent them when refused,
/// and, offered one field list for every kind, began each patch with its
/// first field (labels for an image fix, `spec` for a ConfigMap).
fn patch_schema() -> Value {
    let base = schema_of::<PatchArgs>();
    let mut groups: Vec<(PatchableFields, Vec<&str>)> = Vec::new();
    for kind in TargetKind::ALL {
        match groups.iter_mut().find(|(fields, _)| *fields == kind.patchable()) {
            Some((_, kinds)) => kinds.push(kind.as_str()),
            None => groups.push((kind.patchable(), vec![kind.as_str()])),
        }
    }
    let alternatives: Vec<Value> = groups
        .into_iter()
        .map(|(fields, kinds)| {
            let mut alternative = base.clone();
            let properties: Map<String, Value> =
                fields.iter().map(|(name, ty)| (name.to_string(), json!({"type": ty}))).collect();
            alternative["properties"]["kind"] =
                json!({"description": base["properties"]["kind"]["description"], "enum": kinds});
            alternative["properties"]["patch"] = json!({
                "type": "object",
                "description": base["properties"]["patch"]["description"],
                "properties": properties,
                "additionalProperties": false,
                "minProperties": 1,
            });
            alternative
        })
        .collect();
    json!({"oneOf": alternatives})
}

/// Arguments of `k8s.apply`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ApplyArgs {
    /// The full object (apiVersion, kind, metadata.name, ...).
    #[schemars(schema_with = "crate::schema::any_object")]
    pub manifest: Map<String, Value>,
}

/// Arguments of `k8s.rollout_restart`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RestartArgs {
    /// Deployment or StatefulSet.
    pub kind: WorkloadKind,
    /// Name of the workload.
    pub name: String,
}

/// Arguments of `k8s.logs`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct LogsArgs {
    /// Pod name.
    pub pod: String,
    /// Container (default: the pod's only container).
    #[serde(default)]
    pub container: Option<String>,
    /// Last lines to return (default 50).
    #[serde(default)]
    #[schemars(range(min = 1, max = 500))]
    pub tail_lines: Option<u32>,
    /// Searched for in those last lines.
    #[serde(default)]
    #[schemars(description = CONTAINS_DOC)]
    pub contains: Option<String>,
}

/// Arguments of `k8s.events`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EventsArgs {
    /// Only events about the object with this name.
    #[serde(default)]
    pub name: Option<String>,
}

impl Op {
    pub fn name(self) -> &'static str {
        match self {
            Op::Get => "k8s.get",
            Op::List => "k8s.list",
            Op::Scale => "k8s.scale",
            Op::Patch => "k8s.patch",
            Op::Apply => "k8s.apply",
            Op::Delete => "k8s.delete",
            Op::RolloutRestart => "k8s.rollout_restart",
            Op::Logs => "k8s.logs",
            Op::Events => "k8s.events",
        }
    }

    pub(super) fn description(self) -> &'static str {
        match self {
            Op::Get => "Read one object (Secret values are never shown).",
            Op::List => "List objects of a kind, optionally by label selector.",
            Op::Scale => "Set the replicas of a Deployment or StatefulSet.",
            Op::Patch => {
                "Change fields of an object with a strategic merge patch: an object shaped like the resource, holding only the fields to change (not JSON Patch op/path/value). List items such as containers are matched by their name, so each needs its \"name\"; fields left out are kept."
            }
            Op::Apply => "Create or update an object from a full manifest (server-side apply).",
            Op::Delete => "Delete an object.",
            Op::RolloutRestart => "Restart the pods of a Deployment or StatefulSet.",
            Op::Logs => {
                "Read the last lines of a pod's log; with `contains`, only those that contain that text, and how many."
            }
            Op::Events => "List recent events in the namespace, optionally about one object.",
        }
    }

    /// The verb in messages: "would delete ConfigMap demo/old".
    pub(super) fn verb(self) -> &'static str {
        match self {
            Op::Get => "get",
            Op::List => "list",
            Op::Scale => "scale",
            Op::Patch => "patch",
            Op::Apply => "apply",
            Op::Delete => "delete",
            Op::RolloutRestart => "restart",
            Op::Logs => "read the logs of",
            Op::Events => "list events",
        }
    }

    pub(super) fn mutates(self) -> bool {
        matches!(self, Op::Scale | Op::Patch | Op::Apply | Op::Delete | Op::RolloutRestart)
    }

    pub(super) fn schema(self) -> Value {
        match self {
            Op::Get | Op::Delete => schema_of::<ObjectArgs>(),
            Op::List => schema_of::<ListArgs>(),
            Op::Scale => schema_of::<ScaleArgs>(),
            Op::Patch => patch_schema(),
            Op::Apply => schema_of::<ApplyArgs>(),
            Op::RolloutRestart => schema_of::<RestartArgs>(),
            Op::Logs => schema_of::<LogsArgs>(),
            Op::Events => schema_of::<EventsArgs>(),
        }
    }
}

/// What a call does to its object.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    Get,
    Scale { replicas: u32 },
    Patch(Value),
    Apply(Value),
    Delete,
    RolloutRestart,
    Logs { container: Option<ObjectName>, tail_lines: u32, contains: Option<Needle> },
}

/// Everything a tool call will send, fully determined by its arguments and
/// the run's namespace, and validated: the only input requests are built from.
#[derive(Debug, Clone, PartialEq)]
pub enum Call {
    /// A request about exactly one object.
    Object { op: Op, object: ObjectRef, action: Action },
    /// `k8s.list`: one kind in the namespace.
    List { kind: TargetKind, namespace: String, selector: Option<String> },
    /// `k8s.events`: the namespace's events, optionally about one name.
    Events { namespace: String, about: Option<ObjectName> },
}

impl Call {
    /// Parse and validate a tool's arguments; a refusal is INVALID_ARGUMENTS
    /// and nothing is sent.
    pub fn new(op: Op, args: &Value, namespace: &str) -> Result<Call, ToolError> {
        let object = |kind: TargetKind, field: &str, name: &str| ObjectRef::new(kind, namespace, field, name);
        let single = |object: ObjectRef, action: Action| Ok(Call::Object { op, object, action });
        match op {
            Op::Get | Op::Delete => {
                let a: ObjectArgs = parse(args)?;
                let action = if op == Op::Get { Action::Get } else { Action::Delete };
                single(object(a.kind, "name", &a.name)?, action)
            }
            Op::List => {
                let a: ListArgs = parse(args)?;
                if let Some(s) = &a.label_selector {
                    check_label_selector(s).map_err(ToolError::invalid)?;
                }
                Ok(Call::List { kind: a.kind, namespace: namespace.to_string(), selector: a.label_selector })
            }
            Op::Scale => {
                let a: ScaleArgs = parse(args)?;
                single(object(a.kind.target(), "name", &a.name)?, Action::Scale { replicas: a.replicas })
            }
            Op::Patch => {
                let a: PatchArgs = parse(args)?;
                single(object(a.kind, "name", &a.name)?, Action::Patch(Value::Object(a.patch)))
            }
            Op::Apply => {
                let a: ApplyArgs = parse(args)?;
                let (kind, name) = manifest_object(&a.manifest, namespace)?;
                single(object(kind, "manifest.metadata.name", &name)?, Action::Apply(Value::Object(a.manifest)))
            }
            Op::RolloutRestart => {
                let a: RestartArgs = parse(args)?;
                single(object(a.kind.target(), "name", &a.name)?, Action::RolloutRestart)
            }
            Op::Logs => {
                let a: LogsArgs = parse(args)?;
                let container = a
                    .container
                    .as_deref()
                    .map(|c| ObjectName::new("container", c, NameRule::Dns1123Label))
                    .transpose()?;
                let tail_lines = a.tail_lines.unwrap_or(DEFAULT_LOG_LINES).min(MAX_LOG_LINES);
                let contains = Needle::optional("contains", a.contains.as_deref())?;
                single(object(TargetKind::Pod, "pod", &a.pod)?, Action::Logs { container, tail_lines, contains })
            }
            Op::Events => {
                let a: EventsArgs = parse(args)?;
                let about = a.name.as_deref().map(|n| ObjectName::new("name", n, NameRule::Subdomain)).transpose()?;
                Ok(Call::Events { namespace: namespace.to_string(), about })
            }
        }
    }

    /// The normalized target policies see.
    pub fn target(&self) -> Target {
        match self {
            Call::Object { object, .. } => Target {
                kind: object.kind.as_str().to_string(),
                namespace: Some(object.namespace.clone()),
                name: Some(object.name.to_string()),
            },
            Call::List { kind, namespace, .. } => {
                Target { kind: kind.as_str().to_string(), namespace: Some(namespace.clone()), name: None }
            }
            Call::Events { namespace, about } => Target {
                kind: "Event".to_string(),
                namespace: Some(namespace.clone()),
                name: about.as_ref().map(ToString::to_string),
            },
        }
    }
}

/// The kind and name a manifest declares; it may not name another namespace.
fn manifest_object(m: &Map<String, Value>, namespace: &str) -> Result<(TargetKind, String), ToolError> {
    let api_version = m.get("apiVersion").and_then(Value::as_str).unwrap_or_default();
    let kind_name = m.get("kind").and_then(Value::as_str).unwrap_or_default();
    let kind = TargetKind::from_type(api_version, kind_name).ok_or_else(|| {
        let known: Vec<&str> = TargetKind::ALL.iter().map(|k| k.as_str()).collect();
        ToolError::invalid(format!(
            "manifest apiVersion/kind {api_version}/{kind_name} is not one the tools may touch: {known:?}"
        ))
    })?;
    let meta = m.get("metadata");
    let name = meta
        .and_then(|md| md.get("name"))
        .and_then(Value::as_str)
        .ok_or_else(|| ToolError::invalid("manifest.metadata.name is required"))?;
    if let Some(ns) = meta.and_then(|md| md.get("namespace"))
        && ns.as_str() != Some(namespace)
    {
        return Err(ToolError::invalid(format!(
            "manifest.metadata.namespace {ns}: tools act only in the run's namespace {namespace:?}"
        )));
    }
    Ok((kind, name.to_string()))
}

#[cfg(test)]
mod tests {

    use super::*;
    use crate::engine::gate::check_schema;

    fn patch(kind: &str, patch: Value) -> Result<(), Vec<String>> {
        check_schema(&Op::Patch.schema(), &json!({"kind": kind, "name": "web", "patch": patch}))
    }

    #[test]
    fn a_merge_patch_of_each_kind_fits_the_schema() {
        let patches = [
            (
                "Deployment",
                json!({"spec": {"template": {"spec": {"containers": [{"name": "web", "image": "nginx:1.27"}]}}}}),
            ),
            ("StatefulSet", json!({"spec": {"replicas": 3}, "metadata": {"labels": {"tier": "web"}}})),
            ("Service", json!({"metadata": {"annotations": {"a": "b"}}})),
            ("ConfigMap", json!({"data": {"mode": "fast"}, "immutable": true})),
            ("Secret", json!({"stringData": {"token": "x"}})),
            (
                "ServiceAccount",
                json!({"imagePullSecrets": [{"name": "registry"}], "automountServiceAccountToken": false}),
            ),
        ];
        for (kind, p) in patches {
            assert_eq!(patch(kind, p.clone()), Ok(()), "{kind} {p}");
        }
        let kinds = |s: &Value| -> usize {
            s["oneOf"]
                .as_array()
                .unwrap()
                .iter()
                .map(|a| a["properties"]["kind"]["enum"].as_array().unwrap().len())
                .sum()
        };
        assert_eq!(kinds(&Op::Patch.schema()), TargetKind::ALL.len(), "every kind in exactly one alternative");
    }

    #[test]
    fn a_json_patch_operation_or_a_field_the_kind_lacks_fails_the_schema() {
        let refused = [
            (
                "Deployment",
                json!({"op": "replace", "path": "/spec/template/spec/containers/0/image", "value": "nginx:1.27"}),
            ),
            ("Deployment", json!({"kind": "ImagePullPolicy", "value": "Always"})),
            ("Deployment", json!({"data": {"mode": "on"}})),
            ("ConfigMap", json!({"spec": {"data": {"mode": "on"}}})),
            ("Deployment", json!({"image": "nginx:1.27"})),
            ("Deployment", json!({"status": {"replicas": 3}})),
            ("Deployment", json!({})),
            ("Ingress", json!({"spec": {}})),
        ];
        for (kind, p) in refused {
            let errors = patch(kind, p.clone()).expect_err(&format!("{kind} {p}"));
            // Explained by the alternative for the kind: where the patch is wrong.
            let at = if kind == "Ingress" { "/kind" } else { "/patch" };
            assert!(errors.iter().all(|e| e.starts_with(at)), "{kind} {p}: {errors:?}");
        }
    }
}
