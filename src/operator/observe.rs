//! What a platform team reads of each step without opening the run: the
//! reconcile span that names the run, and one structured log line per
//! recorded step (`--log-format json` carries every field; the span's
//! run, namespace and uid ride along as `span`).
//!
//! The fields are the operator's own (the proposal digest, never the
//! proposal: arguments can be long and hostile, and they are in the run's
//! status for whoever may read it).

use kube::Resource;
use tracing::field::Empty;

use crate::crd::{Readable, XctRun};
use crate::engine::record::StepRecord;
use crate::protocol::Signal;

/// The log target of the per-step line, for filters (`RUST_LOG`).
pub const STEP_TARGET: &str = "xct::step";

/// The span one reconcile runs in.
pub fn reconcile_span(run: &Readable<XctRun>) -> tracing::Span {
    let meta = run.meta();
    tracing::info_span!(
        "reconcile",
        run = meta.name.as_deref().unwrap_or_default(),
        namespace = meta.namespace.as_deref().unwrap_or_default(),
        uid = meta.uid.as_deref().unwrap_or_default(),
        step = Empty,
        tool = Empty,
        verdict = Empty,
        decided_by = Empty,
        outcome = Empty,
        error_code = Empty,
        proposal_digest = Empty,
    )
}

/// One line for a recorded step: what was proposed (tool and digest), the
/// verdict and who decided it, the outcome, its error code, and where the
/// time went.
pub fn step_recorded(run: &XctRun, step: &StepRecord) {
    let namespace = run.metadata.namespace.as_deref().unwrap_or_default();
    let run = run.metadata.name.as_deref().unwrap_or_default();
    let error_code = match &step.signal {
        Some(Signal::Error { code, .. }) => code.as_str(),
        _ => "",
    };
    // The reconcile span that recorded it carries the same fields.
    let span = tracing::Span::current();
    span.record("step", step.index);
    span.record("tool", step.tool.as_deref().unwrap_or_default());
    span.record("verdict", step.verdict.outcome.as_str());
    span.record("decided_by", step.verdict.decided_by.as_deref().unwrap_or_default());
    span.record("outcome", step.outcome_label());
    span.record("error_code", error_code);
    span.record("proposal_digest", step.proposal_digest.as_deref().unwrap_or_default());
    tracing::info!(
        target: STEP_TARGET,
        run,
        namespace,
        step = step.index,
        tool = step.tool.as_deref().unwrap_or_default(),
        verdict = step.verdict.outcome.as_str(),
        decided_by = step.verdict.decided_by.as_deref().unwrap_or_default(),
        outcome = step.outcome_label(),
        error_code,
        proposal_digest = step.proposal_digest.as_deref().unwrap_or_default(),
        phase = ?step.phase,
        model_ms = step.timings.model_ms,
        validation_ms = step.timings.validation_ms,
        execution_ms = step.timings.execution_ms,
        prompt_tokens = step.model.prompt_tokens,
        completion_tokens = step.model.completion_tokens,
        "step recorded"
    );
}
