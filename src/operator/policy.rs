//! XctPolicies in the operator: a watched cache compiled once per
//! generation, the gate that judges proposals with it (fetching the live
//! target as the run's ServiceAccount), and the policies' status.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Resource, ResourceExt};
use serde_json::{Value, json};

use crate::crd::{XctPolicy, set_condition};
use crate::engine::{Gate, GateVerdict};
use crate::k8s::TargetKind;
use crate::policy::{Loaded, PolicyInput, RunInfo, Verdict, judge, load};
use crate::protocol::NextStep;

/// The watched, compiled policies.
pub struct PolicyCache {
    store: Store<XctPolicy>,
    compiled: Mutex<HashMap<String, (Option<i64>, Loaded)>>,
    /// Runs (uids) each policy has decided for.
    decided: Mutex<HashMap<String, HashSet<String>>>,
}

impl PolicyCache {
    /// Start watching XctPolicies.
    pub fn start(client: kube::Client) -> Arc<Self> {
        let (store, writer) = reflector::store();
        let api: Api<XctPolicy> = Api::all(client);
        let stream =
            reflector::reflector(writer, watcher(api, watcher::Config::default())).default_backoff().touched_objects();
        tokio::spawn(stream.for_each(|_| async {}));
        Arc::new(PolicyCache { store, compiled: Mutex::new(HashMap::new()), decided: Mutex::new(HashMap::new()) })
    }

    /// Whether the policy watch has synced (readiness).
    pub async fn wait_until_ready(&self) {
        loop {
            if tokio::time::timeout(Duration::from_millis(100), self.store.wait_until_ready()).await.is_ok() {
                return;
            }
        }
    }

    /// Every policy, compiled (from cache when its generation is unchanged).
    pub fn loaded(&self) -> Vec<Loaded> {
        let mut cache = self.compiled.lock().unwrap_or_else(|e| e.into_inner());
        let mut out: Vec<Loaded> = self
            .store
            .state()
            .iter()
            .map(|p| {
                let name = p.name_any();
                let generation = p.metadata.generation;
                match cache.get(&name) {
                    Some((g, l)) if *g == generation => l.clone(),
                    _ => {
                        let l = load(&name, generation, &p.spec);
                        cache.insert(name, (generation, l.clone()));
                        l
                    }
                }
            })
            .collect();
        out.sort_by(|a, b| a.name().cmp(b.name()));
        out
    }

    fn record(&self, policies: &[String], run_uid: &str) {
        let mut d = self.decided.lock().unwrap_or_else(|e| e.into_inner());
        for p in policies {
            d.entry(p.clone()).or_default().insert(run_uid.to_string());
        }
    }

    fn runs_decided(&self, policy: &str) -> u64 {
        self.decided.lock().map(|d| d.get(policy).map_or(0, |s| s.len() as u64)).unwrap_or(0)
    }
}

/// Judges one run's proposals.
pub struct PolicyGate {
    pub cache: Arc<PolicyCache>,
    pub run: RunInfo,
    pub run_uid: String,
    /// The run's impersonating client: the target is read as the run's
    /// ServiceAccount, never with the operator's own rights.
    pub client: kube::Client,
    pub metrics: Arc<super::metrics::Metrics>,
}

#[async_trait]
impl Gate for PolicyGate {
    async fn judge(&self, step: &NextStep, _mutating: bool) -> GateVerdict {
        let target = self.target(step).await;
        let input = PolicyInput {
            tool: step.tool.clone(),
            arguments: Value::Object(step.arguments.clone()),
            goal: step.goal.clone(),
            run: self.run.clone(),
            target,
        };
        let t = std::time::Instant::now();
        let j = judge(&self.cache.loaded(), &input);
        self.metrics.policy_seconds.observe(t.elapsed().as_secs_f64());
        self.cache.record(&j.deciding_policies, &self.run_uid);
        match j.verdict {
            Verdict::Allow => {
                GateVerdict::Allow { by: j.decided_by.unwrap_or_default(), message: j.message, audit: j.audit }
            }
            Verdict::RequireApproval => GateVerdict::RequireApproval {
                by: j.decided_by.unwrap_or_default(),
                message: j.message,
                audit: j.audit,
            },
            Verdict::Deny => GateVerdict::Deny { by: j.decided_by, message: j.message, audit: j.audit },
        }
    }
}

impl PolicyGate {
    /// The live object a Kubernetes proposal would touch (null if absent or
    /// not a Kubernetes proposal).
    async fn target(&self, step: &NextStep) -> Value {
        let args = &step.arguments;
        let (kind, name) = match (args.get("kind").and_then(Value::as_str), args.get("name").and_then(Value::as_str)) {
            (Some(k), Some(n)) => (TargetKind::ALL.into_iter().find(|t| t.as_str() == k), n.to_string()),
            _ => match args.get("manifest") {
                Some(m) => (
                    TargetKind::from_type(
                        m["apiVersion"].as_str().unwrap_or_default(),
                        m["kind"].as_str().unwrap_or_default(),
                    ),
                    m["metadata"]["name"].as_str().unwrap_or_default().to_string(),
                ),
                None => (None, String::new()),
            },
        };
        // Secrets are never fetched for a policy: reading one is exactly what
        // a policy must be able to forbid before it happens.
        let Some(kind) = kind.filter(|k| *k != TargetKind::Secret) else { return Value::Null };
        let api: Api<kube::api::DynamicObject> =
            Api::namespaced_with(self.client.clone(), &self.run.namespace, &kind.api_resource());
        match api.get_opt(&name).await {
            Ok(Some(o)) => {
                let mut v = serde_json::to_value(o).unwrap_or(Value::Null);
                if let Some(m) = v["metadata"].as_object_mut() {
                    m.remove("managedFields");
                }
                v
            }
            _ => Value::Null,
        }
    }
}

/// Labels as a map.
pub fn labels(map: Option<&BTreeMap<String, String>>) -> BTreeMap<String, String> {
    map.cloned().unwrap_or_default()
}

struct StatusCtx {
    client: kube::Client,
    cache: Arc<PolicyCache>,
    leadership: Arc<super::leader::Leadership>,
}

/// Keep every XctPolicy's status current: Ready or Invalid (naming the rule
/// and the CEL error), observedGeneration, runs decided.
pub async fn run_status_controller(
    client: kube::Client,
    cache: Arc<PolicyCache>,
    leadership: Arc<super::leader::Leadership>,
) {
    let api: Api<XctPolicy> = Api::all(client.clone());
    let ctx = Arc::new(StatusCtx { client, cache, leadership });
    Controller::new(api, watcher::Config::default())
        .shutdown_on_signal()
        .run(reconcile_status, |_, _, _| Action::requeue(Duration::from_secs(10)), ctx)
        .for_each(|_| async {})
        .await;
}

async fn reconcile_status(policy: Arc<XctPolicy>, ctx: Arc<StatusCtx>) -> Result<Action, kube::Error> {
    if !ctx.leadership.is_leader() {
        return Ok(Action::requeue(Duration::from_secs(3)));
    }
    let name = policy.name_any();
    let generation = policy.metadata.generation;
    let mut status = policy.status.clone().unwrap_or_default();
    let before = serde_json::to_value(&status).unwrap_or_default();
    match load(&name, generation, &policy.spec) {
        Loaded::Ready(p) => {
            let msg = format!("{} rule(s) compiled", p.rules.len());
            set_condition(&mut status.conditions, "Ready", true, "Compiled", &msg, generation);
            status.conditions.retain(|c| c.type_ != "Invalid");
        }
        Loaded::Invalid(p) => {
            set_condition(&mut status.conditions, "Ready", false, "Invalid", &p.error.to_string(), generation);
            set_condition(&mut status.conditions, "Invalid", true, "CompileError", &p.error.to_string(), generation);
        }
    }
    status.observed_generation = generation;
    status.runs_decided = ctx.cache.runs_decided(&name);
    if serde_json::to_value(&status).unwrap_or_default() != before {
        let api: Api<XctPolicy> = Api::all(ctx.client.clone());
        let rv = policy.meta().resource_version.clone();
        let patch = json!({"metadata": {"resourceVersion": rv}, "status": status});
        api.patch_status(&name, &PatchParams::default(), &Patch::Merge(patch)).await?;
    }
    Ok(Action::requeue(Duration::from_secs(3)))
}
