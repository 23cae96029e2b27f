//! The operator: a kube-runtime `Controller` over `XctRun` that runs one
//! model step per reconcile (see [`reconcile`]).

pub mod approval;
pub mod archive;
pub mod events;
pub mod fault;
pub mod health;
pub mod leader;
pub mod metrics;
pub mod observe;
pub mod policy;
pub mod reconcile;
pub mod status;

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use kube::api::Api;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;

use crate::crd::{Readable, XctApproval, XctRun};
use crate::k8s::Impersonator;
use crate::model::{Decider, DeciderError};
use kube::runtime::reflector::ObjectRef;

/// Why a reconcile did not complete.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("status write conflict: the run changed since it was read")]
    Conflict,
    /// The API server refuses the run's status even whole (its schema and
    /// this operator disagree); recorded as a condition, waits for a change.
    #[error("the API server rejects this run's status: {0}")]
    StatusRejected(String),
    #[error("model: {0}")]
    Decider(#[from] DeciderError),
    #[error("engine: {0}")]
    Engine(crate::engine::EngineError),
    #[error("invalid spec: {0}")]
    InvalidSpec(String),
    #[error("internal: {0}")]
    Internal(String),
}

impl From<crate::engine::EngineError> for Error {
    /// The journal's own errors (status conflicts) come back as themselves.
    fn from(e: crate::engine::EngineError) -> Self {
        match e {
            crate::engine::EngineError::Journal(inner) => match inner.downcast::<Error>() {
                Ok(own) => *own,
                Err(other) => Error::Internal(other.to_string()),
            },
            crate::engine::EngineError::Decider(d) => Error::Decider(d),
            other => Error::Engine(other),
        }
    }
}

impl Error {
    /// Every value [`Error::category`] returns (the metrics start each at 0,
    /// so an alert's rate() sees the first error).
    pub const CATEGORIES: [&'static str; 7] =
        ["kube", "conflict", "status_rejected", "decider", "engine", "invalid_spec", "internal"];

    /// Static category for metrics and logs.
    pub fn category(&self) -> &'static str {
        match self {
            Error::Kube(_) => "kube",
            Error::Conflict => "conflict",
            Error::StatusRejected(_) => "status_rejected",
            Error::Decider(_) => "decider",
            Error::Engine(_) => "engine",
            Error::InvalidSpec(_) => "invalid_spec",
            Error::Internal(_) => "internal",
        }
    }
}

/// How far a run's recorded status has come, ordered: steps taken, archive
/// chunks, and the last step's phase. A cached object behind what this
/// process wrote is stale and waits for the watch to catch up.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Progress(u32, usize, u8);

impl Progress {
    pub fn of(status: &crate::crd::XctRunStatus) -> Self {
        use crate::engine::record::StepPhase;
        let phase = match status.steps.last().map(|s| s.phase) {
            Some(StepPhase::AwaitingApproval) => 0,
            Some(StepPhase::Executing) => 1,
            _ => 2,
        };
        Progress(crate::engine::steps_taken(&status.steps), status.archive.len(), phase)
    }
}

/// Consecutive model failures after which a run ends with MODEL_FAILED.
pub const MAX_MODEL_FAILURES: u32 = 5;
/// First retry delay after a failed reconcile; it doubles with each
/// consecutive failure of the same run, up to [`MAX_RETRY_DELAY`].
pub const FIRST_RETRY_DELAY: Duration = Duration::from_secs(1);
/// Longest retry delay.
pub const MAX_RETRY_DELAY: Duration = Duration::from_secs(300);

/// Shared by every reconcile.
pub struct Context {
    /// The operator's own identity: reads runs, writes their status and events.
    pub client: kube::Client,
    /// Clients acting as the runs' ServiceAccounts: the only ones tools use.
    pub impersonator: Impersonator,
    pub decider: Arc<dyn Decider>,
    pub events: events::Events,
    /// The watched, compiled XctPolicies.
    pub policies: Arc<policy::PolicyCache>,
    pub metrics: Arc<metrics::Metrics>,
    /// Only the leader decides and executes (always, without election).
    pub leadership: Arc<leader::Leadership>,
    /// Steps this process has recorded per run (uid): a cached object with
    /// fewer is stale and waits for the watch to catch up.
    known_steps: Mutex<HashMap<String, Progress>>,
    /// Consecutive failed reconciles per run (uid), for the backoff.
    failures: Mutex<HashMap<String, u32>>,
    /// Consecutive model failures per run (uid).
    model_failures: Mutex<HashMap<String, u32>>,
    /// First retry delay (tests shorten it).
    first_retry: Duration,
}

impl Context {
    pub fn new(client: kube::Client, base: kube::Config, decider: Arc<dyn Decider>) -> Self {
        Self::with_metrics(client, base, decider, default_metrics())
    }

    pub fn with_metrics(
        client: kube::Client,
        base: kube::Config,
        decider: Arc<dyn Decider>,
        metrics: Arc<metrics::Metrics>,
    ) -> Self {
        Context {
            metrics,
            leadership: Arc::new(leader::Leadership::always()),
            events: events::Events::new(client.clone()),
            policies: policy::PolicyCache::start(client.clone()),
            impersonator: Impersonator::new(base),
            client,
            decider,
            known_steps: Mutex::new(HashMap::new()),
            failures: Mutex::new(HashMap::new()),
            model_failures: Mutex::new(HashMap::new()),
            first_retry: FIRST_RETRY_DELAY,
        }
    }

    /// Start retries at `first` instead of [`FIRST_RETRY_DELAY`].
    pub fn with_first_retry(mut self, first: Duration) -> Self {
        self.first_retry = first;
        self
    }

    /// Count one more consecutive failure of `counter` for run `uid`.
    fn count(counter: &Mutex<HashMap<String, u32>>, uid: &str) -> u32 {
        let mut m = counter.lock().unwrap_or_else(|e| e.into_inner());
        let n = m.entry(uid.to_string()).or_default();
        *n += 1;
        *n
    }

    fn reset(counter: &Mutex<HashMap<String, u32>>, uid: &str) {
        counter.lock().unwrap_or_else(|e| e.into_inner()).remove(uid);
    }

    /// The delay before retry `n` (1-based): doubling from the first retry
    /// delay, capped, with equal jitter (half fixed, half random) so runs
    /// that failed together do not retry together.
    fn retry_delay(&self, n: u32) -> Duration {
        let full = self.first_retry.saturating_mul(2u32.saturating_pow(n.saturating_sub(1))).min(MAX_RETRY_DELAY);
        full / 2 + full.mul_f64(fastrand::f64() / 2.0)
    }

    /// Use a Lease-based election instead of always leading.
    pub fn with_leadership(mut self, leadership: Arc<leader::Leadership>) -> Self {
        self.leadership = leadership;
        self
    }

    fn known(&self, uid: &str) -> Progress {
        self.known_steps.lock().map(|m| m.get(uid).copied().unwrap_or_default()).unwrap_or_default()
    }

    fn remember(&self, uid: &str, status: &crate::crd::XctRunStatus) {
        if let Ok(mut m) = self.known_steps.lock() {
            m.insert(uid.to_string(), Progress::of(status));
        }
    }
}

/// Invalid specs wait for a change; conflicts retry at once; transient
/// failures back off with jitter.
/// Metrics with the Kubernetes tools as the known tool names.
pub fn default_metrics() -> Arc<metrics::Metrics> {
    let m = metrics::Metrics::new(crate::k8s::tools::names().into_iter().map(str::to_string).collect());
    for category in Error::CATEGORIES {
        m.reconcile_errors.get_or_create(&metrics::CategoryLabels { category: category.into() }).inc_by(0);
    }
    m
}

pub fn error_policy(run: Arc<Readable<XctRun>>, error: &Error, ctx: Arc<Context>) -> Action {
    let meta = kube::Resource::meta(run.as_ref());
    tracing::warn!(
        run = meta.name.as_deref().unwrap_or_default(),
        namespace = meta.namespace.as_deref().unwrap_or_default(),
        category = error.category(),
        %error,
        "reconcile failed"
    );
    ctx.metrics.error(error.category());
    let uid = meta.uid.clone().unwrap_or_default();
    match error {
        Error::InvalidSpec(_) | Error::StatusRejected(_) => Action::await_change(),
        Error::Conflict => Action::requeue(Duration::from_millis(100)),
        _ => Action::requeue(ctx.retry_delay(Context::count(&ctx.failures, &uid))),
    }
}

/// Run the controller until shutdown. `namespace` limits it to one namespace.
pub async fn run(ctx: Arc<Context>, namespace: Option<String>, readiness: Arc<health::Readiness>) {
    let api: Api<Readable<XctRun>> = match &namespace {
        Some(ns) => Api::namespaced(ctx.client.clone(), ns),
        None => Api::all(ctx.client.clone()),
    };
    let approvals: Api<Readable<XctApproval>> = match &namespace {
        Some(ns) => Api::namespaced(ctx.client.clone(), ns),
        None => Api::all(ctx.client.clone()),
    };
    // An approval triggers its run.
    let controller =
        Controller::new(api, watcher::Config::default()).watches(approvals, watcher::Config::default(), |a| {
            let a = a.0.ok()?;
            Some(ObjectRef::new(&a.spec.run_name).within(a.metadata.namespace.as_deref().unwrap_or_default()))
        });
    tokio::spawn(policy::run_status_controller(ctx.client.clone(), ctx.policies.clone(), ctx.leadership.clone()));
    // No proposal is judged before the policies are known: an empty cache
    // would veto everything that is in fact allowed.
    ctx.policies.wait_until_ready().await;
    let store = controller.store();
    let _ = readiness.observed.set(health::Observed { runs: store.clone(), leadership: ctx.leadership.clone() });
    let synced = readiness.clone();
    let policies = ctx.policies.clone();
    tokio::spawn(async move {
        // Re-poll: the controller waits on the same readiness signal, and
        // kube-runtime's DelayedInit wakes only one waiter.
        loop {
            match tokio::time::timeout(Duration::from_millis(100), store.wait_until_ready()).await {
                Ok(Ok(())) => {
                    policies.wait_until_ready().await;
                    synced.watches_synced.store(true, Ordering::SeqCst);
                    break;
                }
                Ok(Err(_)) => break,
                Err(_) => {}
            }
        }
    });
    controller
        .shutdown_on_signal()
        .run(reconcile::reconcile, error_policy, ctx)
        .for_each(|res| async move {
            if let Err(e) = res {
                tracing::debug!(error = %e, "reconcile error");
            }
        })
        .await;
}
