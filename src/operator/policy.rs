//! XctPolicies in the operator: a watched cache compiled once per
//! generation, the judge that decides proposals with it (the tool reads the
//! live target as the run's ServiceAccount), and the policies' status.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use futures::channel::mpsc;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Resource, ResourceExt};
use serde_json::json;

use crate::crd::readable::read;
use crate::crd::{Readable, XctPolicy, XctPolicyStatus, set_condition};
use crate::engine::{GateVerdict, Judge, Proposal};
use crate::policy::{Judgement, Loaded, PolicyInput, RunInfo, Verdict, judge, load, unreadable};

/// The watched, compiled policies. A policy that cannot be read as an
/// XctPolicy is held as such, and vetoes every run ([`unreadable`]), so it
/// neither stops the watch nor lets through what it might have forbidden.
pub struct PolicyCache {
    store: Store<Readable<XctPolicy>>,
    compiled: Mutex<HashMap<String, (Option<i64>, Loaded)>>,
    /// Runs (uids) each policy has decided for.
    decided: Mutex<HashMap<String, HashSet<String>>>,
    /// Signals that a policy decided for a new run (its status changes).
    changed: mpsc::UnboundedSender<()>,
    /// The other end, taken by the status controller.
    changes: Mutex<Option<mpsc::UnboundedReceiver<()>>>,
}

impl PolicyCache {
    /// Start watching XctPolicies.
    pub fn start(client: kube::Client) -> Arc<Self> {
        let (store, writer) = reflector::store();
        let api: Api<Readable<XctPolicy>> = Api::all(client);
        let stream =
            reflector::reflector(writer, watcher(api, watcher::Config::default())).default_backoff().touched_objects();
        tokio::spawn(stream.for_each(|_| async {}));
        let (changed, changes) = mpsc::unbounded();
        Arc::new(PolicyCache {
            store,
            compiled: Mutex::new(HashMap::new()),
            decided: Mutex::new(HashMap::new()),
            changed,
            changes: Mutex::new(Some(changes)),
        })
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
                let generation = p.meta().generation;
                match cache.get(&name) {
                    Some((g, l)) if *g == generation => l.clone(),
                    _ => {
                        let l = loaded(p);
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
        let mut new = false;
        for p in policies {
            new |= d.entry(p.clone()).or_default().insert(run_uid.to_string());
        }
        if new {
            let _ = self.changed.unbounded_send(());
        }
    }

    fn runs_decided(&self, policy: &str) -> u64 {
        self.decided.lock().map(|d| d.get(policy).map_or(0, |s| s.len() as u64)).unwrap_or(0)
    }
}

/// A watched policy, compiled, or held as unreadable.
fn loaded(policy: &Readable<XctPolicy>) -> Loaded {
    match &policy.0 {
        Ok(p) => load(&p.name_any(), p.metadata.generation, &p.spec),
        Err(u) => unreadable(&policy.name_any(), u.to_string()),
    }
}

/// Judges one run's proposals.
pub struct PolicyJudge {
    pub cache: Arc<PolicyCache>,
    pub run: RunInfo,
    pub run_uid: String,
    pub metrics: Arc<super::metrics::Metrics>,
}

#[async_trait]
impl Judge for PolicyJudge {
    async fn judge(&self, p: &Proposal<'_>) -> GateVerdict {
        let input = PolicyInput::new(p.step, p.target, self.run.clone(), Some(p.live.clone()));
        let t = std::time::Instant::now();
        // Evaluating conditions waits on their threads (up to EVAL_TIMEOUT
        // per rule): on a blocking thread, never on the runtime's own,
        // which the other reconciles, the watches and the probes share.
        let cache = self.cache.clone();
        let j = tokio::task::spawn_blocking(move || judge(&cache.loaded(), &input))
            .await
            .unwrap_or_else(|e| Judgement::failed(&format!("the judgement did not finish: {e}")));
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

/// Labels as a map.
pub fn labels(map: Option<&BTreeMap<String, String>>) -> BTreeMap<String, String> {
    map.cloned().unwrap_or_default()
}

struct StatusCtx {
    client: kube::Client,
    cache: Arc<PolicyCache>,
    leadership: Arc<super::leader::Leadership>,
}

/// How often a replica that does not lead looks whether it leads now.
const FOLLOWER_POLL: Duration = Duration::from_secs(3);

/// Keep every XctPolicy's status current: Ready or Invalid (naming the rule
/// and the CEL error), observedGeneration, runs decided. Written when it
/// changes: a policy's spec changes (the watch), or it decides for a new
/// run (the cache's signal); not polled.
pub async fn run_status_controller(
    client: kube::Client,
    cache: Arc<PolicyCache>,
    leadership: Arc<super::leader::Leadership>,
) {
    let api: Api<Readable<XctPolicy>> = Api::all(client.clone());
    let changes = cache.changes.lock().unwrap_or_else(|e| e.into_inner()).take();
    let ctx = Arc::new(StatusCtx { client, cache, leadership });
    let mut controller = Controller::new(api, watcher::Config::default());
    if let Some(changes) = changes {
        controller = controller.reconcile_all_on(changes);
    }
    controller
        .shutdown_on_signal()
        .run(reconcile_status, |_, _, _| Action::requeue(Duration::from_secs(10)), ctx)
        .for_each(|_| async {})
        .await;
}

/// The status of `policy` as the operator observes it (runsDecided kept):
/// kstatus Ready when it compiles; Stalled and Invalid (it vetoes every run
/// it selects until fixed) when it does not, or cannot be read; never
/// Reconciling.
pub fn observed(policy: &Readable<XctPolicy>) -> XctPolicyStatus {
    status_of(stored_status(policy), policy.meta().generation, &loaded(policy))
}

/// A policy's status as stored, as far as it reads as one.
fn stored_status(policy: &Readable<XctPolicy>) -> XctPolicyStatus {
    match &policy.0 {
        Ok(p) => p.status.clone().unwrap_or_default(),
        Err(u) => read(&u.status).unwrap_or_default(),
    }
}

fn status_of(mut status: XctPolicyStatus, generation: Option<i64>, loaded: &Loaded) -> XctPolicyStatus {
    match loaded {
        Loaded::Ready(p) => {
            let msg = format!("{} rule(s) compiled", p.rules.len());
            set_condition(&mut status.conditions, "Ready", true, "Compiled", &msg, generation);
            set_condition(&mut status.conditions, "Stalled", false, "Compiled", "", generation);
            status.conditions.retain(|c| c.type_ != "Invalid");
        }
        Loaded::Invalid(p) => {
            let error = p.error.to_string();
            set_condition(&mut status.conditions, "Ready", false, "Invalid", &error, generation);
            set_condition(&mut status.conditions, "Stalled", true, "CompileError", &error, generation);
            set_condition(&mut status.conditions, "Invalid", true, "CompileError", &error, generation);
        }
    }
    set_condition(&mut status.conditions, "Reconciling", false, "Compiled", "", generation);
    status.observed_generation = generation;
    status
}

async fn reconcile_status(policy: Arc<Readable<XctPolicy>>, ctx: Arc<StatusCtx>) -> Result<Action, kube::Error> {
    if !ctx.leadership.is_leader() {
        return Ok(Action::requeue(FOLLOWER_POLL));
    }
    let name = policy.name_any();
    let before = serde_json::to_value(stored_status(&policy)).unwrap_or_default();
    let mut status = observed(&policy);
    status.runs_decided = ctx.cache.runs_decided(&name);
    if serde_json::to_value(&status).unwrap_or_default() != before {
        let api: Api<Readable<XctPolicy>> = Api::all(ctx.client.clone());
        let rv = policy.meta().resource_version.clone();
        let patch = json!({"metadata": {"resourceVersion": rv}, "status": status});
        api.patch_status(&name, &PatchParams::default(), &Patch::Merge(patch)).await?;
    }
    Ok(Action::await_change())
}
