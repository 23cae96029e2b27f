//! The Kubernetes tool catalogue: `k8s.get`, `k8s.list`, `k8s.scale`,
//! `k8s.patch` (merge), `k8s.apply` (server-side apply, field manager
//! `xct`), `k8s.delete`, `k8s.rollout_restart`, `k8s.logs`, `k8s.events`.
//!
//! Every call goes through a client impersonating the run's ServiceAccount,
//! in the run's own namespace (tools take no namespace argument).
//! Every mutation is first sent with `dryRun=All` (in `validate`); a failed
//! dry run is DRY_RUN_FAILED and nothing changes. Secret values are never
//! returned: `k8s.get` on a Secret shows its keys only.

use std::sync::Arc;

use async_trait::async_trait;
use k8s_openapi::api::core::v1::{Event as CoreEvent, Pod};
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, LogParams, Patch, PatchParams};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::TargetKind;
use crate::protocol::ErrorCode;
use crate::tools::{DryRun, Tool, ToolError, parse, schema_of};

/// Field manager of `k8s.apply`.
pub const FIELD_MANAGER: &str = "xct";
const MAX_LIST_ITEMS: usize = 100;
const MAX_LOG_LINES: u32 = 500;

/// What every tool of one run shares: the impersonating client and the
/// run's namespace (the only namespace its tools act in).
pub struct K8sContext {
    pub client: kube::Client,
    pub namespace: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
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
    fn name(self) -> &'static str {
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
            Op::Patch => "Change fields of an object with a JSON merge patch.",
            Op::Apply => "Create or update an object from a full manifest (server-side apply).",
            Op::Delete => "Delete an object.",
            Op::RolloutRestart => "Restart the pods of a Deployment or StatefulSet.",
            Op::Logs => "Read the last lines of a pod's log.",
            Op::Events => "List recent events in the namespace, optionally about one object.",
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

fn dry() -> PatchParams {
    PatchParams { dry_run: true, ..PatchParams::default() }
}

struct K8sTool {
    op: Op,
    ctx: Arc<K8sContext>,
}

impl K8sTool {
    /// Tools act in the run's own namespace only.
    fn api(&self, kind: TargetKind) -> (Api<DynamicObject>, String) {
        let ns = self.ctx.namespace.clone();
        (Api::namespaced_with(self.ctx.client.clone(), &ns, &kind.api_resource()), ns)
    }

    /// Mutations: send the request with dryRun=All. Reads: nothing to check.
    async fn dry_run(&self, args: &Value) -> Result<DryRun, ToolError> {
        let fail = |what: &str, e| api_error(what, ErrorCode::DryRunFailed, e);
        match self.op {
            Op::Scale => {
                let a: ScaleArgs = parse(args)?;
                let (api, ns) = self.api(a.kind.target());
                let what = format!("scale {:?} {ns}/{}", a.kind, a.name);
                let s =
                    api.patch_scale(&a.name, &dry(), &Patch::Merge(json!({"spec": {"replicas": a.replicas}}))).await;
                s.map_err(|e| fail(&what, e))?;
                Ok(DryRun::new(format!("would {what} to {} replicas", a.replicas)))
            }
            Op::Patch => {
                let a: PatchArgs = parse(args)?;
                let (api, ns) = self.api(a.kind);
                let what = format!("patch {} {ns}/{}", a.kind.as_str(), a.name);
                let after = api
                    .patch(&a.name, &dry(), &Patch::Merge(Value::Object(a.patch)))
                    .await
                    .map_err(|e| fail(&what, e))?;
                Ok(DryRun {
                    summary: format!("would {what}"),
                    details: Some(json!({"generation": after.metadata.generation})),
                })
            }
            Op::Apply => {
                let (kind, name, body) = self.manifest(args)?;
                let (api, ns) = self.api(kind);
                let what = format!("apply {} {ns}/{name}", kind.as_str());
                let pp = PatchParams { dry_run: true, ..PatchParams::apply(FIELD_MANAGER) };
                api.patch(&name, &pp, &Patch::Apply(body)).await.map_err(|e| fail(&what, e))?;
                Ok(DryRun::new(format!("would {what}")))
            }
            Op::Delete => {
                let a: ObjectArgs = parse(args)?;
                let (api, ns) = self.api(a.kind);
                let what = format!("delete {} {ns}/{}", a.kind.as_str(), a.name);
                api.delete(&a.name, &DeleteParams { dry_run: true, ..DeleteParams::default() })
                    .await
                    .map_err(|e| fail(&what, e))?;
                Ok(DryRun::new(format!("would {what}")))
            }
            Op::RolloutRestart => {
                let a: RestartArgs = parse(args)?;
                let (api, ns) = self.api(a.kind.target());
                let what = format!("restart {:?} {ns}/{}", a.kind, a.name);
                api.patch(&a.name, &dry(), &Patch::Merge(restart_patch())).await.map_err(|e| fail(&what, e))?;
                Ok(DryRun::new(format!("would {what}")))
            }
            Op::Get | Op::List | Op::Logs | Op::Events => {
                Ok(DryRun::new(format!("would call {} (read-only)", self.op.name())))
            }
        }
    }

    fn manifest(&self, args: &Value) -> Result<(TargetKind, String, Value), ToolError> {
        let a: ApplyArgs = parse(args)?;
        let m = Value::Object(a.manifest);
        let api_version = m["apiVersion"].as_str().unwrap_or_default();
        let kind_name = m["kind"].as_str().unwrap_or_default();
        let kind = TargetKind::from_type(api_version, kind_name).ok_or_else(|| {
            let known: Vec<&str> = TargetKind::ALL.iter().map(|k| k.as_str()).collect();
            ToolError::invalid(format!(
                "manifest apiVersion/kind {api_version}/{kind_name} is not one the tools may touch: {known:?}"
            ))
        })?;
        let name = m["metadata"]["name"]
            .as_str()
            .filter(|n| !n.is_empty())
            .ok_or_else(|| ToolError::invalid("manifest.metadata.name is required"))?;
        if let Some(ns) = m["metadata"]["namespace"].as_str().filter(|ns| *ns != self.ctx.namespace) {
            return Err(ToolError::invalid(format!(
                "manifest.metadata.namespace {ns:?}: tools act only in the run's namespace {:?}",
                self.ctx.namespace
            )));
        }
        Ok((kind, name.to_string(), m.clone()))
    }

    async fn run(&self, args: &Value) -> Result<Value, ToolError> {
        let fail = |what: &str, e| api_error(what, ErrorCode::ExecutionFailed, e);
        match self.op {
            Op::Get => {
                let a: ObjectArgs = parse(args)?;
                let (api, ns) = self.api(a.kind);
                let obj =
                    api.get(&a.name).await.map_err(|e| fail(&format!("get {} {ns}/{}", a.kind.as_str(), a.name), e))?;
                Ok(present(a.kind, serde_json::to_value(obj).unwrap_or_default()))
            }
            Op::List => {
                let a: ListArgs = parse(args)?;
                let (api, ns) = self.api(a.kind);
                let lp = match &a.label_selector {
                    Some(s) => ListParams::default().labels(s),
                    None => ListParams::default(),
                };
                let list = api.list(&lp).await.map_err(|e| fail(&format!("list {} in {ns}", a.kind.as_str()), e))?;
                let total = list.items.len();
                let items: Vec<Value> =
                    list.items.into_iter().take(MAX_LIST_ITEMS).map(|o| summary(a.kind, &o)).collect();
                Ok(json!({"kind": a.kind.as_str(), "namespace": ns, "items": items, "total": total}))
            }
            Op::Scale => {
                let a: ScaleArgs = parse(args)?;
                let (api, ns) = self.api(a.kind.target());
                let what = format!("scale {:?} {ns}/{}", a.kind, a.name);
                let before = api.get_scale(&a.name).await.map_err(|e| fail(&what, e))?;
                let after = api
                    .patch_scale(
                        &a.name,
                        &PatchParams::default(),
                        &Patch::Merge(json!({"spec": {"replicas": a.replicas}})),
                    )
                    .await
                    .map_err(|e| fail(&what, e))?;
                let from = before.spec.and_then(|s| s.replicas);
                let to = after.spec.and_then(|s| s.replicas);
                Ok(
                    json!({"kind": format!("{:?}", a.kind), "name": a.name, "namespace": ns, "replicas": {"from": from, "to": to}}),
                )
            }
            Op::Patch => {
                let a: PatchArgs = parse(args)?;
                let (api, ns) = self.api(a.kind);
                let what = format!("patch {} {ns}/{}", a.kind.as_str(), a.name);
                let after = api
                    .patch(&a.name, &PatchParams::default(), &Patch::Merge(Value::Object(a.patch)))
                    .await
                    .map_err(|e| fail(&what, e))?;
                Ok(
                    json!({"patched": format!("{}/{}", ns, a.name), "generation": after.metadata.generation, "resourceVersion": after.metadata.resource_version}),
                )
            }
            Op::Apply => {
                let (kind, name, body) = self.manifest(args)?;
                let (api, ns) = self.api(kind);
                let what = format!("apply {} {ns}/{name}", kind.as_str());
                let after = api
                    .patch(&name, &PatchParams::apply(FIELD_MANAGER), &Patch::Apply(body))
                    .await
                    .map_err(|e| fail(&what, e))?;
                Ok(
                    json!({"applied": format!("{}/{}", ns, name), "kind": kind.as_str(), "generation": after.metadata.generation}),
                )
            }
            Op::Delete => {
                let a: ObjectArgs = parse(args)?;
                let (api, ns) = self.api(a.kind);
                let what = format!("delete {} {ns}/{}", a.kind.as_str(), a.name);
                api.delete(&a.name, &DeleteParams::default()).await.map_err(|e| fail(&what, e))?;
                Ok(json!({"deleted": format!("{}/{}", ns, a.name), "kind": a.kind.as_str()}))
            }
            Op::RolloutRestart => {
                let a: RestartArgs = parse(args)?;
                let (api, ns) = self.api(a.kind.target());
                let patch = restart_patch();
                let at =
                    patch["spec"]["template"]["metadata"]["annotations"]["kubectl.kubernetes.io/restartedAt"].clone();
                let what = format!("restart {:?} {ns}/{}", a.kind, a.name);
                api.patch(&a.name, &PatchParams::default(), &Patch::Merge(patch)).await.map_err(|e| fail(&what, e))?;
                Ok(json!({"restarted": format!("{}/{}", ns, a.name), "restartedAt": at}))
            }
            Op::Logs => {
                let a: LogsArgs = parse(args)?;
                let ns = self.ctx.namespace.clone();
                let pods: Api<Pod> = Api::namespaced(self.ctx.client.clone(), &ns);
                let tail = a.tail_lines.unwrap_or(50).min(MAX_LOG_LINES);
                let lp =
                    LogParams { tail_lines: Some(tail.into()), container: a.container.clone(), ..LogParams::default() };
                let text = pods.logs(&a.pod, &lp).await.map_err(|e| fail(&format!("logs of pod {ns}/{}", a.pod), e))?;
                let lines: Vec<&str> = text.lines().collect();
                Ok(json!({"pod": a.pod, "namespace": ns, "lines": lines}))
            }
            Op::Events => {
                let a: EventsArgs = parse(args)?;
                let ns = self.ctx.namespace.clone();
                let events: Api<CoreEvent> = Api::namespaced(self.ctx.client.clone(), &ns);
                let lp = match &a.name {
                    Some(n) => ListParams::default().fields(&format!("involvedObject.name={n}")),
                    None => ListParams::default(),
                };
                let list = events.list(&lp).await.map_err(|e| fail(&format!("events in {ns}"), e))?;
                let items: Vec<Value> = list
                    .items
                    .iter()
                    .rev()
                    .take(50)
                    .map(|e| json!({"type": e.type_, "reason": e.reason, "message": e.message, "object": format!("{}/{}", e.involved_object.kind.clone().unwrap_or_default(), e.involved_object.name.clone().unwrap_or_default())}))
                    .collect();
                Ok(json!({"namespace": ns, "events": items}))
            }
        }
    }
}

fn restart_patch() -> Value {
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    json!({"spec": {"template": {"metadata": {"annotations": {"kubectl.kubernetes.io/restartedAt": now}}}}})
}

/// An object as shown to the model: no managedFields, no last-applied
/// annotation, Secret values redacted.
fn present(kind: TargetKind, mut v: Value) -> Value {
    if let Some(m) = v["metadata"].as_object_mut() {
        m.remove("managedFields");
        if let Some(a) = m.get_mut("annotations").and_then(Value::as_object_mut) {
            a.remove("kubectl.kubernetes.io/last-applied-configuration");
        }
    }
    if kind == TargetKind::Secret {
        for field in ["data", "stringData"] {
            if let Some(d) = v.get_mut(field).and_then(Value::as_object_mut) {
                for val in d.values_mut() {
                    *val = json!("<redacted>");
                }
            }
        }
    }
    v
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
    async fn validate(&self, args: &Value) -> Result<DryRun, ToolError> {
        self.dry_run(args).await
    }
    async fn execute(&self, args: &Value) -> Result<Value, ToolError> {
        self.run(args).await
    }
}
