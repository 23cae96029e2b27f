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

/// Every metric the operator exports.
pub struct Metrics {
    pub registry: Registry,
    pub steps: Family<StepLabels, Counter>,
    pub step_seconds: Family<PhaseLabels, Histogram>,
    pub tokens: Family<KindLabels, Counter>,
    pub runs: Family<PhaseLabels, Gauge>,
    pub policy_seconds: Histogram,
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
        registry.register("runs", "Runs by phase (as seen by this operator)", runs.clone());
        let policy_seconds = Histogram::new(latency_buckets());
        registry.register("policy_evaluation_duration_seconds", "Time to judge one proposal", policy_seconds.clone());
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
    }

    /// A run moved from one phase to another.
    pub fn run_phase(&self, from: Option<RunPhase>, to: RunPhase) {
        if from == Some(to) {
            return;
        }
        if let Some(f) = from {
            self.runs.get_or_create(&PhaseLabels { phase: format!("{f:?}") }).dec();
        }
        self.runs.get_or_create(&PhaseLabels { phase: format!("{to:?}") }).inc();
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
