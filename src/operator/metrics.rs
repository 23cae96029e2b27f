//! Prometheus metrics (prometheus-client), served at `/metrics`. Every label
//! value comes from a closed set: tool names outside the catalogue are
//! counted as "other".

use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::crd::RunPhase;
use crate::engine::record::StepRecord;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StepLabels {
    pub tool: String,
    pub verdict: String,
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PhaseLabels {
    pub phase: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    pub kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CategoryLabels {
    pub category: String,
}

/// Which rule of which XctPolicy decided, and how. `policy` is empty when
/// no policy decided (`rule` is then `default-deny`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PolicyLabels {
    pub policy: String,
    pub rule: String,
    pub effect: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AnswerLabels {
    /// approved, rejected or timed_out.
    pub answer: String,
}

/// The phase label of a run whose object cannot be read as an XctRun.
pub const INVALID_PHASE: &str = "Invalid";

/// Every metric the operator exports.
pub struct Metrics {
    pub registry: Registry,
    pub steps: Family<StepLabels, Counter>,
    pub step_seconds: Family<PhaseLabels, Histogram>,
    pub tokens: Family<KindLabels, Counter>,
    /// Runs by phase, counted from the controller's watch store at each
    /// scrape (so right on a new leader after a failover).
    pub runs: Family<PhaseLabels, Gauge>,
    pub policy_seconds: Histogram,
    pub policy_decisions: Family<PolicyLabels, Counter>,
    /// From a proposal to its answer (approved, rejected, timed out).
    pub approval_wait_seconds: Family<AnswerLabels, Histogram>,
    /// 1 while this replica holds the leader Lease (or leads alone).
    pub leader: Gauge,
    /// 1 once the model is loaded (the pod is unready without it).
    pub model_loaded: Gauge,
    pub queue_depth: Gauge,
    pub reconcile_errors: Family<CategoryLabels, Counter>,
    /// Time per step outside the model: API calls, policy, status writes.
    pub overhead_seconds: Histogram,
    /// Bytes sent in status patches.
    pub status_bytes: Counter,
    known_tools: Vec<String>,
    overhead_samples: std::sync::Mutex<Vec<u32>>,
}

fn latency_buckets() -> impl Iterator<Item = f64> {
    exponential_buckets(0.0005, 2.0, 18)
}

/// One second to about three days: how long people take to answer.
fn approval_buckets() -> impl Iterator<Item = f64> {
    exponential_buckets(1.0, 4.0, 10)
}

impl Metrics {
    pub fn new(known_tools: Vec<String>) -> Arc<Self> {
        let mut registry = Registry::with_prefix("xct");
        let steps = Family::<StepLabels, Counter>::default();
        registry.register("steps", "Steps by tool, verdict and outcome", steps.clone());
        let step_seconds = Family::<PhaseLabels, Histogram>::new_with_constructor(|| Histogram::new(latency_buckets()));
        registry.register(
            "step_duration_seconds",
            "Step latency by phase: model, validation, execution",
            step_seconds.clone(),
        );
        let tokens = Family::<KindLabels, Counter>::default();
        registry.register("tokens", "Tokens by kind: prompt, cached, completion", tokens.clone());
        let runs = Family::<PhaseLabels, Gauge>::default();
        registry.register("runs", "Runs by phase, from the watch", runs.clone());
        let policy_seconds = Histogram::new(latency_buckets());
        registry.register("policy_evaluation_duration_seconds", "Time to judge one proposal", policy_seconds.clone());
        let policy_decisions = Family::<PolicyLabels, Counter>::default();
        registry.register(
            "policy_decisions",
            "Proposals judged, by deciding policy, rule and effect",
            policy_decisions.clone(),
        );
        let approval_wait_seconds =
            Family::<AnswerLabels, Histogram>::new_with_constructor(|| Histogram::new(approval_buckets()));
        registry.register(
            "approval_wait_seconds",
            "From a proposal to its approval's answer, by answer",
            approval_wait_seconds.clone(),
        );
        let leader = Gauge::default();
        registry.register("leader", "1 while this replica leads", leader.clone());
        let model_loaded = Gauge::default();
        registry.register("model_loaded", "1 once the model is loaded", model_loaded.clone());
        let build = prometheus_client::metrics::info::Info::new(vec![("version", env!("CARGO_PKG_VERSION"))]);
        registry.register("build", "The running build", build);
        let queue_depth = Gauge::default();
        registry.register("inference_queue_depth", "Requests waiting for the model", queue_depth.clone());
        let reconcile_errors = Family::<CategoryLabels, Counter>::default();
        registry.register("reconcile_errors", "Failed reconciles by error category", reconcile_errors.clone());
        let overhead_seconds = Histogram::new(latency_buckets());
        registry.register("step_overhead_seconds", "Time per step outside the model", overhead_seconds.clone());
        let status_bytes = Counter::default();
        registry.register("status_patch_bytes", "Bytes sent in status patches", status_bytes.clone());
        Arc::new(Metrics {
            registry,
            steps,
            step_seconds,
            tokens,
            runs,
            policy_seconds,
            policy_decisions,
            approval_wait_seconds,
            leader,
            model_loaded,
            queue_depth,
            reconcile_errors,
            overhead_seconds,
            status_bytes,
            known_tools,
            overhead_samples: std::sync::Mutex::new(Vec::new()),
        })
    }

    /// Count one recorded step.
    pub fn step(&self, s: &StepRecord) {
        let tool = match &s.tool {
            Some(t) if self.known_tools.contains(t) => t.clone(),
            Some(_) => "other".into(),
            None => "none".into(),
        };
        let labels = StepLabels { tool, verdict: s.verdict.outcome.as_str().into(), outcome: s.outcome_label().into() };
        self.steps.get_or_create(&labels).inc();
        for (phase, ms) in [
            ("model", s.timings.model_ms),
            ("validation", s.timings.validation_ms),
            ("execution", s.timings.execution_ms),
        ] {
            self.step_seconds.get_or_create(&PhaseLabels { phase: phase.into() }).observe(ms as f64 / 1000.0);
        }
        let m = &s.model;
        for (kind, n) in [("prompt", m.prompt_tokens), ("cached", m.cached_tokens), ("completion", m.completion_tokens)]
        {
            self.tokens.get_or_create(&KindLabels { kind: kind.into() }).inc_by(n.into());
        }
        if let Some(p) = &s.policy {
            let decided_by = p.decided_by.as_deref().unwrap_or_default();
            let (policy, rule) = decided_by.split_once('/').unwrap_or(("", decided_by));
            let labels = PolicyLabels { policy: policy.into(), rule: rule.into(), effect: p.verdict.clone() };
            self.policy_decisions.get_or_create(&labels).inc();
        }
    }

    /// A step that awaited approval was answered after `waited`.
    pub fn approval_answered(&self, answer: &crate::engine::Approval, waited: std::time::Duration) {
        use crate::engine::Approval;
        let answer = match answer {
            Approval::Approved { .. } => "approved",
            Approval::Rejected { .. } => "rejected",
            Approval::TimedOut { .. } => "timed_out",
            Approval::Waiting { .. } => return,
        };
        let labels = AnswerLabels { answer: answer.into() };
        self.approval_wait_seconds.get_or_create(&labels).observe(waited.as_secs_f64());
    }

    /// Set the runs gauge from the phases of every run the watch holds
    /// (`None`: an object that is not a valid XctRun). Phases with no run
    /// read 0, so a run that moved on leaves no stale count.
    pub fn runs_observed(&self, phases: impl Iterator<Item = Option<RunPhase>>) {
        let mut counts: std::collections::BTreeMap<String, i64> =
            RunPhase::ALL.iter().map(|p| (format!("{p:?}"), 0)).collect();
        counts.insert(INVALID_PHASE.into(), 0);
        for p in phases {
            *counts.entry(p.map_or_else(|| INVALID_PHASE.to_string(), |p| format!("{p:?}"))).or_default() += 1;
        }
        for (phase, n) in counts {
            self.runs.get_or_create(&PhaseLabels { phase }).set(n);
        }
    }

    /// One step's time outside the model.
    pub fn overhead(&self, d: std::time::Duration) {
        self.overhead_seconds.observe(d.as_secs_f64());
        if let Ok(mut v) = self.overhead_samples.lock()
            && v.len() < 100_000
        {
            v.push(d.as_micros() as u32);
        }
    }

    /// Median step overhead in microseconds and the number of samples.
    pub fn overhead_median_us(&self) -> (u32, usize) {
        let mut v = self.overhead_samples.lock().map(|v| v.clone()).unwrap_or_default();
        v.sort_unstable();
        (v.get(v.len() / 2).copied().unwrap_or(0), v.len())
    }

    pub fn error(&self, category: &'static str) {
        self.reconcile_errors.get_or_create(&CategoryLabels { category: category.into() }).inc();
    }

    /// The text exposition format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}
