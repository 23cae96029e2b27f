//! The Kubernetes tool catalogue: `k8s.get`, `k8s.list`, `k8s.scale`,
//! `k8s.patch` (strategic merge), `k8s.apply` (server-side apply, field manager
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
use serde_json::{Map, Value, json};

use super::TargetKind;
use super::call::{Action, Call, MAX_LOG_LINES, OPS, Op};
use super::redact::present;
use super::target::{ObjectRef, segment};
use crate::protocol::ErrorCode;
use crate::tools::{DryRun, Target, Tool, ToolError, lines};

/// Field manager of `k8s.apply`.
pub const FIELD_MANAGER: &str = "xct";
/// Most items `k8s.list` shows, and asks the API server for (one page).
const MAX_LIST_ITEMS: u32 = 100;
/// Most bytes of log `k8s.logs` asks for (however long the lines are).
pub const MAX_LOG_BYTES: i64 = 64 * 1024;
const MAX_EVENTS: usize = 50;
/// Most names a not-found signal lists.
const MAX_SUGGESTED_NAMES: usize = 10;
/// kube-apiserver's answer for an object that does not exist.
const NOT_FOUND: u16 = 404;

/// What every tool of one run shares: the impersonating client and the
/// run's namespace (the only namespace its tools act in).
pub struct K8sContext {
    pub client: kube::Client,
    pub namespace: String,
}

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

/// A Kubernetes API failure as a tool error.
fn api_error(what: &str, code: ErrorCode, e: kube::Error) -> ToolError {
    match e {
        kube::Error::Api(s) => ToolError::new(code, format!("{what}: {} ({} {})", s.message, s.code, s.reason))
            .with_details(json!({"httpCode": s.code, "reason": s.reason})),
        other => ToolError::new(code, format!("{what}: request failed: {other}")),
    }
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
            // Strategic: a list with a merge key (containers, env, ports)
            // is merged item by item, so changing one container's image
            // keeps its other fields and the other containers; a JSON merge
            // patch would replace the whole list with the patch's items.
            Action::Patch(patch) => {
                serde_json::to_value(api.patch(&name, &pp(PatchParams::default()), &Patch::Strategic(patch)).await?)
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
        match call {
            Call::List { kind, namespace, selector } => {
                // One page, as many items as the model is shown: a kind
                // with thousands of objects is never read whole.
                let lp = ListParams::default().limit(MAX_LIST_ITEMS);
                let lp = match &selector {
                    Some(s) => lp.labels(s),
                    None => lp,
                };
                let list = self
                    .api(kind)
                    .list(&lp)
                    .await
                    .map_err(|e| fail(&format!("list {} in {namespace}", kind.as_str()), e))?;
                let shown = list.items.len();
                let truncated = list.metadata.continue_.as_deref().is_some_and(|c| !c.is_empty());
                // The API server counts what is left of a cut list, except
                // where a selector makes it unknown (null).
                let total = match list.metadata.remaining_item_count {
                    Some(left) => Some(shown as i64 + left),
                    None => (!truncated).then_some(shown as i64),
                };
                let items: Vec<Value> = list.items.iter().map(|o| summary(kind, o)).collect();
                let mut answer = json!({"kind": kind.as_str(), "namespace": namespace, "items": items, "total": total, "truncated": truncated});
                if truncated {
                    answer["note"] =
                        json!(format!("only the first {shown} are shown: narrow the list with labelSelector"));
                }
                Ok(answer)
            }
            Call::Events { namespace, about } => {
                let Some(about) = about else {
                    let all = self.events(&namespace, ListParams::default()).await?;
                    return Ok(json!({"namespace": namespace, "events": newest_events(&all)}));
                };
                let about_lp = ListParams::default().fields(&format!("involvedObject.name={about}"));
                let events = newest_events(&self.events(&namespace, about_lp).await?);
                let mut answer = json!({"namespace": namespace, "events": events});
                if events.is_empty() {
                    // A name with no events is most often a guessed one: say
                    // which objects do have events (one more list).
                    let all = self.events(&namespace, ListParams::default().limit(MAX_EVENTS as u32)).await?;
                    let mut objects: Vec<String> = all.iter().map(event_object).collect();
                    objects.sort();
                    objects.dedup();
                    answer["hint"] = json!(match objects.as_slice() {
                        [] => format!("there are no events in {namespace}"),
                        some =>
                            format!("no events are about {about}; events in {namespace} are about: {}", some.join(", ")),
                    });
                }
                Ok(answer)
            }
            Call::Object { op, object, action } => match self.act(&object, &action).await {
                Ok(v) => Ok(v),
                Err(e) => {
                    Err(self.failure(&format!("{} {object}", op.verb()), ErrorCode::ExecutionFailed, &object, e).await)
                }
            },
        }
    }

    async fn events(&self, namespace: &str, lp: ListParams) -> Result<Vec<CoreEvent>, ToolError> {
        let events: Api<CoreEvent> = Api::namespaced(self.ctx.client.clone(), &segment(namespace));
        let list = events.list(&lp).await;
        Ok(list.map_err(|e| api_error(&format!("events in {namespace}"), ErrorCode::ExecutionFailed, e))?.items)
    }

    /// Do one single-object call; what it returns to the model.
    async fn act(&self, object: &ObjectRef, action: &Action) -> Result<Value, kube::Error> {
        let ns = &object.namespace;
        let name = object.name.as_str();
        Ok(match action {
            Action::Get => self.read(object).await?,
            Action::Logs { container, tail_lines, contains } => {
                let pods: Api<Pod> = Api::namespaced(self.ctx.client.clone(), &segment(ns));
                let lp = LogParams {
                    tail_lines: Some((*tail_lines).into()),
                    limit_bytes: Some(MAX_LOG_BYTES),
                    container: container.as_ref().map(ToString::to_string),
                    ..LogParams::default()
                };
                let text = pods.logs(&object.segment(), &lp).await?;
                let mut answer = Map::from_iter([("pod".into(), json!(name)), ("namespace".into(), json!(ns))]);
                let all = || json!(text.lines().collect::<Vec<_>>());
                answer.extend(lines::show(contains.as_ref(), &text, "lines", all));
                // The eval model asked for 1 line with a search, found
                // nothing in it, and answered "the log shows no error".
                if text.lines().count() >= *tail_lines as usize {
                    let older = format!(
                        "only the newest {tail_lines} lines were read; older lines may say more: raise tailLines (at most {MAX_LOG_LINES}) to read them"
                    );
                    answer.insert("older".into(), json!(older));
                }
                Value::Object(answer)
            }
            Action::Scale { .. } => {
                let before = self.api(object.kind).get_scale(&object.segment()).await?;
                let after = self.mutate(object, action, false).await?;
                let from = before.spec.and_then(|s| s.replicas);
                let to = &after["spec"]["replicas"];
                let changed = from.map(Value::from).as_ref() != Some(to);
                let mut answer = json!({"kind": object.kind.as_str(), "name": name, "namespace": ns, "replicas": {"from": from, "to": to}, "changed": changed});
                if !changed {
                    answer["note"] = json!(format!("{name} already had {to} replicas: nothing changed"));
                }
                answer
            }
            Action::Patch(_) => {
                let after = self.mutate(object, action, false).await?;
                json!({"patched": format!("{ns}/{name}"), "generation": after["metadata"]["generation"], "resourceVersion": after["metadata"]["resourceVersion"]})
            }
            Action::Apply(_) => {
                let after = self.mutate(object, action, false).await?;
                json!({"applied": format!("{ns}/{name}"), "kind": object.kind.as_str(), "generation": after["metadata"]["generation"]})
            }
            Action::Delete => {
                self.mutate(object, action, false).await?;
                json!({"deleted": format!("{ns}/{name}"), "kind": object.kind.as_str()})
            }
            Action::RolloutRestart => {
                let after = self.mutate(object, action, false).await?;
                let at =
                    after["spec"]["template"]["metadata"]["annotations"]["kubectl.kubernetes.io/restartedAt"].clone();
                json!({"restarted": format!("{ns}/{name}"), "restartedAt": at})
            }
        })
    }

    /// A failed request about `object` as a tool error. When the object
    /// does not exist (404), the error also names the objects of its kind
    /// that do (one list request as the run's ServiceAccount, left out when
    /// that is refused), so the model picks a real name instead of guessing
    /// another.
    async fn failure(&self, what: &str, code: ErrorCode, object: &ObjectRef, e: kube::Error) -> ToolError {
        let missing = matches!(&e, kube::Error::Api(s) if s.code == NOT_FOUND);
        let mut err = api_error(what, code, e);
        if !missing {
            return err;
        }
        let kind = object.kind.as_str();
        let Ok(list) = self.api(object.kind).list(&ListParams::default().limit(MAX_SUGGESTED_NAMES as u32)).await
        else {
            return err;
        };
        let names: Vec<String> = list.items.into_iter().filter_map(|o| o.metadata.name).collect();
        err.message = match names.as_slice() {
            [] => format!("{}; there is no {kind} in {}", err.message, object.namespace),
            some => format!("{}; the {kind} objects in {} are: {}", err.message, object.namespace, some.join(", ")),
        };
        if let Some(d) = err.details.as_mut().and_then(Value::as_object_mut) {
            d.insert("existing".into(), json!(names));
        }
        err
    }
}

/// What kube-apiserver says of a list item without its merge key.
const NO_MERGE_KEY: &str = "does not contain declared merge key: ";

/// The refusal of a patch whose list item lacks its merge key ("map:
/// map[image:nginx:1.27] does not contain declared merge key: name") names
/// the key, not the list or what to do: the eval model, refused so, resent
/// the patch unchanged or sent the name without the image. Says which list
/// of the patch and what its items need; from the patch and the message
/// only (no request).
fn explain_merge_key(err: &mut ToolError, patch: &Value) {
    let Some((_, rest)) = err.message.split_once(NO_MERGE_KEY) else { return };
    let key: String = rest.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
    let Some(list) = keyless_list(patch, &key, String::new()) else { return };
    err.message.push_str(&format!(
        "; a patch matches the items of {list} by {key}: give each item the {key:?} of the item it changes (k8s.get shows them), with only the fields to change"
    ));
}

/// The JSON pointer of the first list in `v` with an object item that
/// lacks `key`.
fn keyless_list(v: &Value, key: &str, at: String) -> Option<String> {
    match v {
        Value::Array(items) if items.iter().any(|i| i.as_object().is_some_and(|o| !o.contains_key(key))) => Some(at),
        Value::Array(items) => items.iter().enumerate().find_map(|(i, x)| keyless_list(x, key, format!("{at}/{i}"))),
        Value::Object(map) => map.iter().find_map(|(k, x)| keyless_list(x, key, format!("{at}/{k}"))),
        _ => None,
    }
}

/// The newest events first, at most [`MAX_EVENTS`], as the model sees them.
fn newest_events(items: &[CoreEvent]) -> Vec<Value> {
    items
        .iter()
        .rev()
        .take(MAX_EVENTS)
        .map(|e| json!({"type": e.type_, "reason": e.reason, "message": e.message, "object": event_object(e)}))
        .collect()
}

/// `Kind/name` of what an event is about.
fn event_object(e: &CoreEvent) -> String {
    let o = &e.involved_object;
    format!("{}/{}", o.kind.as_deref().unwrap_or_default(), o.name.as_deref().unwrap_or_default())
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
            Err(kube::Error::Api(s)) if s.code == NOT_FOUND => Ok(Value::Null),
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
        let after = match self.mutate(object, action, true).await {
            Ok(after) => after,
            Err(e) => {
                let mut err = self.failure(&what, ErrorCode::DryRunFailed, object, e).await;
                if let Action::Patch(patch) = action {
                    explain_merge_key(&mut err, patch);
                }
                return Err(err);
            }
        };
        let details = after["metadata"]["generation"].as_i64().map(|g| json!({"generation": g}));
        let summary = match action {
            Action::Scale { replicas } => format!("would {what} to {replicas} replicas"),
            _ => format!("would {what}"),
        };
        Ok(DryRun { summary, details, replaces: false })
    }
    async fn execute(&self, args: &Value) -> Result<Value, ToolError> {
        self.run(self.call(args)?).await
    }
}
