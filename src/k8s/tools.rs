//! The Kubernetes tool catalogue: `k8s.get`, `k8s.list`, `k8s.scale`,
//! `k8s.patch` (merge), `k8s.apply` (server-side apply, field manager
//! `xct`), `k8s.delete`, `k8s.rollout_restart`, `k8s.logs`, `k8s.events`.
//!
//! A call's arguments become a [`Call`] before anything is sent: one
//! validated object of the run's namespace (see [`super::target`]) and
//! what to do with it; requests are built from the `Call` only, so a
//! single-object tool can only ever make single-object requests, and only
//! `k8s.list` and `k8s.events` list. Every call goes through a client
//! impersonating the run's ServiceAccount. Each mutation is one request,
//! sent first with `dryRun=All` (in `validate`) and then for real; a failed
//! dry run is DRY_RUN_FAILED and nothing changes. Secret values are never
//! returned, at any depth.

use std::sync::Arc;

use async_trait::async_trait;
use k8s_openapi::api::core::v1::{Event as CoreEvent, Pod};
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, LogParams, Patch, PatchParams};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::TargetKind;
use super::redact::present;
use super::target::{NameRule, ObjectName, ObjectRef, check_label_selector, segment};
use crate::protocol::ErrorCode;
use crate::tools::{DryRun, Target, Tool, ToolError, parse, schema_of};

/// Field manager of `k8s.apply`.
pub const FIELD_MANAGER: &str = "xct";
const MAX_LIST_ITEMS: usize = 100;
const MAX_LOG_LINES: u32 = 500;
const DEFAULT_LOG_LINES: u32 = 50;
/// Most bytes of log `k8s.logs` asks for (however long the lines are).
pub const MAX_LOG_BYTES: i64 = 64 * 1024;
const MAX_EVENTS: usize = 50;

/// What every tool of one run shares: the impersonating client and the
/// run's namespace (the only namespace its tools act in).
pub struct K8sContext {
    pub client: kube::Client,
    pub namespace: String,
}

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

const OPS: [Op; 9] =
    [Op::Get, Op::List, Op::Scale, Op::Patch, Op::Apply, Op::Delete, Op::RolloutRestart, Op::Logs, Op::Events];

/// All nine tools over one context.
pub fn tools(ctx: Arc<K8sContext>) -> Vec<Arc<dyn Tool>> {
    OPS.iter().map(|op| Arc::new(K8sTool { op: *op, ctx: ctx.clone() }) as Arc<dyn Tool>).collect()
}

/// Names of the Kubernetes tools.
pub fn names() -> Vec<&'static str> {
    OPS.iter().map(|op| op.name()).collect()
}

/// The normalized target of a Kubernetes tool call, computed from the
/// arguments alone (policies, the offline policy replay and the engine all
/// use this): `None` if `tool` is not a Kubernetes tool.
pub fn target_of(tool: &str, args: &Value, namespace: &str) -> Option<Result<Target, ToolError>> {
    let op = OPS.into_iter().find(|op| op.name() == tool)?;
    Some(Call::new(op, args, namespace).map(|c| c.target()))
}

/// The object the gate shows policies for a call (`target` in CEL): one
/// named object that is not a Secret. Lists, events and Secrets are never
/// read for a judgement.
fn observed(call: &Call) -> Option<&ObjectRef> {
    match call {
        Call::Object { object, .. } if object.kind != TargetKind::Secret => Some(object),
        _ => None,
    }
}

/// Offline: the target a proposal's live object would be read for, if the
/// gate reads one ([`observed`]); `None` also for other tools' proposals.
pub fn observed_target(tool: &str, args: &Value, namespace: &str) -> Option<Target> {
    let op = OPS.into_iter().find(|op| op.name() == tool)?;
    let call = Call::new(op, args, namespace).ok()?;
    observed(&call).is_some().then(|| call.target())
}

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
    /// JSON merge patch (RFC 7386) to apply.
    #[schemars(schema_with = "crate::schema::any_object")]
    pub patch: Map<String, Value>,
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

    fn description(self) -> &'static str {
        match self {
            Op::Get => "Read one object (Secret values are never shown).",
            Op::List => "List objects of a kind, optionally by label selector.",
            Op::Scale => "Set the replicas of a Deployment or StatefulSet.",
            Op::Patch => {
                "Change fields of an object with a JSON merge patch: an object shaped like the resource, holding only the fields to change (not JSON Patch op/path/value)."
            }
            Op::Apply => "Create or update an object from a full manifest (server-side apply).",
            Op::Delete => "Delete an object.",
            Op::RolloutRestart => "Restart the pods of a Deployment or StatefulSet.",
            Op::Logs => "Read the last lines of a pod's log.",
            Op::Events => "List recent events in the namespace, optionally about one object.",
        }
    }

    /// The verb in messages: "would delete ConfigMap demo/old".
    fn verb(self) -> &'static str {
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

    fn mutates(self) -> bool {
        matches!(self, Op::Scale | Op::Patch | Op::Apply | Op::Delete | Op::RolloutRestart)
    }

    fn schema(self) -> Value {
        match self {
            Op::Get | Op::Delete => schema_of::<ObjectArgs>(),
            Op::List => schema_of::<ListArgs>(),
            Op::Scale => schema_of::<ScaleArgs>(),
            Op::Patch => schema_of::<PatchArgs>(),
            Op::Apply => schema_of::<ApplyArgs>(),
            Op::RolloutRestart => schema_of::<RestartArgs>(),
            Op::Logs => schema_of::<LogsArgs>(),
            Op::Events => schema_of::<EventsArgs>(),
        }
    }
}

/// A Kubernetes API failure as a tool error.
fn api_error(what: &str, code: ErrorCode, e: kube::Error) -> ToolError {
    match e {
        kube::Error::Api(s) => ToolError::new(code, format!("{what}: {} ({} {})", s.message, s.code, s.reason))
            .with_details(json!({"httpCode": s.code, "reason": s.reason})),
        other => ToolError::new(code, format!("{what}: request failed: {other}")),
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
    Logs { container: Option<ObjectName>, tail_lines: u32 },
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
                single(object(TargetKind::Pod, "pod", &a.pod)?, Action::Logs { container, tail_lines })
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

fn restart_patch() -> Value {
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    json!({"spec": {"template": {"metadata": {"annotations": {"kubectl.kubernetes.io/restartedAt": now}}}}})
}

struct K8sTool {
    op: Op,
    ctx: Arc<K8sContext>,
}

impl K8sTool {
    fn call(&self, args: &Value) -> Result<Call, ToolError> {
        Call::new(self.op, args, &self.ctx.namespace)
    }

    /// The run's namespace, `kind` resource; the namespace is encoded as a
    /// path segment like every name.
    fn api(&self, kind: TargetKind) -> Api<DynamicObject> {
        Api::namespaced_with(self.ctx.client.clone(), &segment(&self.ctx.namespace), &kind.api_resource())
    }

    /// Send a mutation: the one request for it, with or without dryRun.
    /// Returns the server's answer.
    async fn mutate(&self, object: &ObjectRef, action: &Action, dry_run: bool) -> Result<Value, kube::Error> {
        let api = self.api(object.kind);
        let name = object.segment();
        // Strict: a field the kind lacks is refused by the server (400)
        // instead of dropped, so a wrongly shaped patch never "succeeds".
        let pp = |base: PatchParams| PatchParams { dry_run, ..base.validation_strict() };
        let answer = match action {
            Action::Scale { replicas } => serde_json::to_value(
                api.patch_scale(
                    &name,
                    &pp(PatchParams::default()),
                    &Patch::Merge(json!({"spec": {"replicas": replicas}})),
                )
                .await?,
            ),
            Action::Patch(patch) => {
                serde_json::to_value(api.patch(&name, &pp(PatchParams::default()), &Patch::Merge(patch)).await?)
            }
            Action::Apply(body) => serde_json::to_value(
                api.patch(&name, &pp(PatchParams::apply(FIELD_MANAGER)), &Patch::Apply(body)).await?,
            ),
            Action::RolloutRestart => serde_json::to_value(
                api.patch(&name, &pp(PatchParams::default()), &Patch::Merge(restart_patch())).await?,
            ),
            Action::Delete => {
                api.delete(&name, &DeleteParams { dry_run, ..DeleteParams::default() }).await?;
                Ok(Value::Null)
            }
            Action::Get | Action::Logs { .. } => Ok(Value::Null),
        };
        Ok(answer.unwrap_or_default())
    }

    /// The one object, as the model may see it (Secrets: not read).
    async fn read(&self, object: &ObjectRef) -> Result<Value, kube::Error> {
        let obj = self.api(object.kind).get(&object.segment()).await?;
        Ok(present(serde_json::to_value(obj).unwrap_or_default()))
    }

    async fn run(&self, call: Call) -> Result<Value, ToolError> {
        let fail = |what: &str, e| api_error(what, ErrorCode::ExecutionFailed, e);
        let (op, object, action) = match call {
            Call::List { kind, namespace, selector } => {
                let lp = match &selector {
                    Some(s) => ListParams::default().labels(s),
                    None => ListParams::default(),
                };
                let list = self
                    .api(kind)
                    .list(&lp)
                    .await
                    .map_err(|e| fail(&format!("list {} in {namespace}", kind.as_str()), e))?;
                let total = list.items.len();
                let items: Vec<Value> =
                    list.items.into_iter().take(MAX_LIST_ITEMS).map(|o| summary(kind, &o)).collect();
                return Ok(json!({"kind": kind.as_str(), "namespace": namespace, "items": items, "total": total}));
            }
            Call::Events { namespace, about } => {
                let events: Api<CoreEvent> = Api::namespaced(self.ctx.client.clone(), &segment(&namespace));
                let lp = match &about {
                    Some(n) => ListParams::default().fields(&format!("involvedObject.name={n}")),
                    None => ListParams::default(),
                };
                let list = events.list(&lp).await.map_err(|e| fail(&format!("events in {namespace}"), e))?;
                let items: Vec<Value> = list
                    .items
                    .iter()
                    .rev()
                    .take(MAX_EVENTS)
                    .map(|e| json!({"type": e.type_, "reason": e.reason, "message": e.message, "object": format!("{}/{}", e.involved_object.kind.clone().unwrap_or_default(), e.involved_object.name.clone().unwrap_or_default())}))
                    .collect();
                return Ok(json!({"namespace": namespace, "events": items}));
            }
            Call::Object { op, object, action } => (op, object, action),
        };
        let what = format!("{} {object}", op.verb());
        let ns = &object.namespace;
        let name = object.name.as_str();
        match &action {
            Action::Get => self.read(&object).await.map_err(|e| fail(&what, e)),
            Action::Logs { container, tail_lines } => {
                let pods: Api<Pod> = Api::namespaced(self.ctx.client.clone(), &segment(ns));
                let lp = LogParams {
                    tail_lines: Some((*tail_lines).into()),
                    limit_bytes: Some(MAX_LOG_BYTES),
                    container: container.as_ref().map(ToString::to_string),
                    ..LogParams::default()
                };
                let text = pods.logs(&object.segment(), &lp).await.map_err(|e| fail(&what, e))?;
                let lines: Vec<&str> = text.lines().collect();
                Ok(json!({"pod": name, "namespace": ns, "lines": lines}))
            }
            Action::Scale { .. } => {
                let before = self.api(object.kind).get_scale(&object.segment()).await.map_err(|e| fail(&what, e))?;
                let after = self.mutate(&object, &action, false).await.map_err(|e| fail(&what, e))?;
                let from = before.spec.and_then(|s| s.replicas);
                Ok(
                    json!({"kind": object.kind.as_str(), "name": name, "namespace": ns, "replicas": {"from": from, "to": after["spec"]["replicas"]}}),
                )
            }
            Action::Patch(_) => {
                let after = self.mutate(&object, &action, false).await.map_err(|e| fail(&what, e))?;
                Ok(
                    json!({"patched": format!("{ns}/{name}"), "generation": after["metadata"]["generation"], "resourceVersion": after["metadata"]["resourceVersion"]}),
                )
            }
            Action::Apply(_) => {
                let after = self.mutate(&object, &action, false).await.map_err(|e| fail(&what, e))?;
                Ok(
                    json!({"applied": format!("{ns}/{name}"), "kind": object.kind.as_str(), "generation": after["metadata"]["generation"]}),
                )
            }
            Action::Delete => {
                self.mutate(&object, &action, false).await.map_err(|e| fail(&what, e))?;
                Ok(json!({"deleted": format!("{ns}/{name}"), "kind": object.kind.as_str()}))
            }
            Action::RolloutRestart => {
                let after = self.mutate(&object, &action, false).await.map_err(|e| fail(&what, e))?;
                let at =
                    after["spec"]["template"]["metadata"]["annotations"]["kubectl.kubernetes.io/restartedAt"].clone();
                Ok(json!({"restarted": format!("{ns}/{name}"), "restartedAt": at}))
            }
        }
    }
}

fn summary(kind: TargetKind, o: &DynamicObject) -> Value {
    let mut s = json!({"name": o.metadata.name, "labels": o.metadata.labels});
    match kind {
        TargetKind::Deployment | TargetKind::StatefulSet => {
            s["replicas"] = o.data["spec"]["replicas"].clone();
            s["readyReplicas"] = o.data["status"]["readyReplicas"].clone();
        }
        TargetKind::Pod => s["phase"] = o.data["status"]["phase"].clone(),
        _ => {}
    }
    s
}

#[async_trait]
impl Tool for K8sTool {
    fn name(&self) -> &'static str {
        self.op.name()
    }
    fn description(&self) -> &'static str {
        self.op.description()
    }
    fn schema(&self) -> Value {
        self.op.schema()
    }
    fn mutates(&self) -> bool {
        self.op.mutates()
    }
    fn target(&self, args: &Value) -> Result<Option<Target>, ToolError> {
        Ok(Some(self.call(args)?.target()))
    }
    /// The single object a call is about, as `k8s.get` shows it; Secrets
    /// are never read for this (null), nor are lists.
    async fn observe(&self, args: &Value) -> Result<Value, ToolError> {
        let call = self.call(args)?;
        let Some(object) = observed(&call) else { return Ok(Value::Null) };
        match self.read(object).await {
            Ok(v) => Ok(v),
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(Value::Null),
            Err(e) => Err(api_error(&format!("read {object}"), ErrorCode::ExecutionFailed, e)),
        }
    }
    fn observation(&self, args: &Value) -> Option<crate::protocol::NextStep> {
        match self.call(args).ok()? {
            Call::Object { object, .. } => Some(crate::protocol::NextStep {
                tool: Op::Get.name().to_string(),
                arguments: json!({"kind": object.kind, "name": object.name}).as_object().cloned().unwrap_or_default(),
                goal: "observe the target of an interrupted step".to_string(),
            }),
            _ => None,
        }
    }
    async fn validate(&self, args: &Value) -> Result<DryRun, ToolError> {
        let call = self.call(args)?;
        let Call::Object { op, object, action } = &call else {
            return Ok(DryRun::new(format!("would call {} (read-only)", self.op.name())));
        };
        if !op.mutates() {
            return Ok(DryRun::new(format!("would call {} on {object} (read-only)", op.name())));
        }
        let what = format!("{} {object}", op.verb());
        let after =
            self.mutate(object, action, true).await.map_err(|e| api_error(&what, ErrorCode::DryRunFailed, e))?;
        let details = after["metadata"]["generation"].as_i64().map(|g| json!({"generation": g}));
        let summary = match action {
            Action::Scale { replicas } => format!("would {what} to {replicas} replicas"),
            _ => format!("would {what}"),
        };
        Ok(DryRun { summary, details })
    }
    async fn execute(&self, args: &Value) -> Result<Value, ToolError> {
        self.run(self.call(args)?).await
    }
}
