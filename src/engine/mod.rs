//! The step machine: one call, one step.
//!
//! Pure with respect to the outside world: the engine knows nothing of
//! Kubernetes or files. It takes the run ([`RunConfig`]), its history, a
//! [`Decider`] and the run's tools, and produces one [`StepRecord`]. The
//! phases are public so a host that must persist between them (the operator
//! records the intent before executing a mutation) can call them one by one;
//! [`Engine::step`] chains them for hosts that need not (the local runner).

pub mod context;
pub mod record;

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use crate::model::{DecideRequest, Decider, DeciderError, Sampling};
use crate::protocol::{Decision, ErrorCode, NextStep, ProposalError, Signal, parse_decision, sha256_hex};
use crate::tools::ToolSet;
use record::{DryRunRecord, ModelStats, StepPhase, StepRecord, StepTimings, Verdict, VerdictOutcome};

/// Largest serialized result returned to the model; larger ones are
/// replaced by a preview, their size and their sha256.
pub const MAX_RESULT_BYTES: usize = 8 * 1024;

/// Run limits.
#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    pub max_steps: u32,
    pub max_consecutive_errors: u32,
    pub timeout: Option<Duration>,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { max_steps: 20, max_consecutive_errors: 5, timeout: None }
    }
}

/// Everything the engine needs to know about a run.
#[derive(Debug, Clone)]
pub struct RunConfig {
    /// Identifies the run to the decider (cache reuse).
    pub id: String,
    pub goal: String,
    /// The tools this run may use (already restricted to the run's list).
    pub tools: ToolSet,
    pub limits: Limits,
    pub sampling: Sampling,
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq)]
pub enum RunOutcome {
    Succeeded { message: String },
    Failed { code: ErrorCode, reason: String },
}

/// The engine could not produce a step (nothing was recorded).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EngineError {
    #[error("run already finished: {0:?}")]
    Finished(RunOutcome),
    #[error(transparent)]
    Decider(#[from] DeciderError),
}

impl EngineError {
    pub fn category(&self) -> &'static str {
        match self {
            EngineError::Finished(_) => "finished",
            EngineError::Decider(e) => e.category(),
        }
    }
}

/// Whether the run is over, from its history alone (and the clock).
pub fn run_outcome(
    run: &RunConfig,
    history: &[StepRecord],
    started_at: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Option<RunOutcome> {
    if let Some(last) = history.last()
        && last.verdict.outcome == VerdictOutcome::Done
    {
        let message = match parse_decision(&last.decision, false) {
            Ok(Decision::Done { message }) => message,
            _ => last.verdict.reason.clone(),
        };
        return Some(RunOutcome::Succeeded { message });
    }
    let steps = steps_taken(history);
    if steps >= run.limits.max_steps {
        return Some(RunOutcome::Failed {
            code: ErrorCode::BudgetExhausted,
            reason: format!("reached maxSteps ({}) without done", run.limits.max_steps),
        });
    }
    let errors = consecutive_errors(history);
    if errors >= run.limits.max_consecutive_errors {
        return Some(RunOutcome::Failed {
            code: ErrorCode::BudgetExhausted,
            reason: format!("{errors} consecutive errors (maxConsecutiveErrors {})", run.limits.max_consecutive_errors),
        });
    }
    if let Some(timeout) = run.limits.timeout {
        let elapsed = (now - started_at).to_std().unwrap_or_default();
        if elapsed >= timeout {
            return Some(RunOutcome::Failed {
                code: ErrorCode::BudgetExhausted,
                reason: format!("timeout of {}s reached", timeout.as_secs()),
            });
        }
    }
    None
}

/// Steps taken so far. The history may be only the recent part of the run
/// (older steps archived), so this is the last step's index, not a count.
pub fn steps_taken(history: &[StepRecord]) -> u32 {
    history.last().map_or(0, |s| s.index)
}

/// Error signals at the end of the history.
pub fn consecutive_errors(history: &[StepRecord]) -> u32 {
    history.iter().rev().take_while(|s| s.signal.as_ref().is_some_and(Signal::is_error)).count() as u32
}

/// The model's answer, parsed.
#[derive(Debug, Clone)]
pub struct Decided {
    pub raw: String,
    pub stats: ModelStats,
    pub parsed: Result<Decision, ProposalError>,
    pub model_ms: u64,
    pub started_at: DateTime<Utc>,
}

/// The result of validating a proposal.
#[derive(Debug, Clone)]
pub struct Validated {
    pub verdict: Verdict,
    pub dry_run: Option<DryRunRecord>,
    /// Set when refused: what the model is told.
    pub refusal: Option<Signal>,
    pub mutating: bool,
    pub validation_ms: u64,
    /// What audit-only policies would have decided.
    pub audit: Vec<String>,
}

/// A host's veto point between the schema check and the dry run (the
/// operator plugs its XctPolicies in here).
#[async_trait::async_trait]
pub trait Gate: Send + Sync {
    async fn judge(&self, step: &NextStep, mutating: bool) -> GateVerdict;
}

/// What a gate decided, and by which rule.
#[derive(Debug, Clone, PartialEq)]
pub enum GateVerdict {
    Allow { by: String, message: String, audit: Vec<String> },
    Deny { by: Option<String>, message: String, audit: Vec<String> },
    RequireApproval { by: String, message: String, audit: Vec<String> },
}

/// Runs steps with one decider.
pub struct Engine<'a> {
    decider: &'a dyn Decider,
}

impl<'a> Engine<'a> {
    pub fn new(decider: &'a dyn Decider) -> Self {
        Engine { decider }
    }

    /// Phase 1: one model call.
    pub async fn decide(&self, run: &RunConfig, history: &[StepRecord]) -> Result<Decided, EngineError> {
        let started_at = Utc::now();
        let t = Instant::now();
        let request = DecideRequest {
            run_id: run.id.clone(),
            messages: context::render(run, history),
            schema: context::decision_schema(run),
            // A different seed per step, so a retry after an error is not forced
            // to repeat itself; still deterministic for a given run and step.
            sampling: Sampling { seed: run.sampling.seed.wrapping_add(steps_taken(history)), ..run.sampling.clone() },
        };
        let raw = self.decider.decide(request).await?;
        let parsed = parse_decision(&raw.text, raw.stats.truncated);
        Ok(Decided { raw: raw.text, stats: raw.stats, parsed, model_ms: ms(t), started_at })
    }

    /// Phase 2: may this proposal run? Tool allowed, arguments valid against
    /// the tool's schema, the host's gate (policies), the tool's own
    /// validation and dry run.
    pub async fn validate(run: &RunConfig, step: &NextStep, gate: Option<&dyn Gate>) -> Validated {
        let t = Instant::now();
        let Some(tool) = run.tools.get(&step.tool) else {
            let allowed = run.tools.names();
            let msg = format!("tool {:?} is not allowed in this run; allowed tools: {allowed:?}", step.tool);
            let signal = Signal::error_with(ErrorCode::ToolNotAllowed, msg, json!({"allowed": allowed}));
            return refused(t, false, "tools", signal, None);
        };
        let mutating = tool.mutates();
        let args = Value::Object(step.arguments.clone());
        if let Err(errors) = check_schema(&tool.schema(), &args) {
            let msg = format!("arguments do not match the schema of {}: {}", step.tool, errors.join("; "));
            let details = json!({"errors": errors, "schema": tool.schema()});
            return refused(t, mutating, "schema", Signal::error_with(ErrorCode::InvalidArguments, msg, details), None);
        }
        let (decided_by, approval, audit) = match gate {
            None => (None, None, vec![]),
            Some(g) => match g.judge(step, mutating).await {
                GateVerdict::Allow { by, audit, .. } => (Some(by), None, audit),
                GateVerdict::RequireApproval { by, message, audit } => (Some(by.clone()), Some(message), audit),
                GateVerdict::Deny { by, message, audit } => {
                    let details = json!({"decidedBy": by});
                    let mut v = refused(
                        t,
                        mutating,
                        by.as_deref().unwrap_or("default-deny"),
                        Signal::error_with(ErrorCode::PolicyVeto, message, details),
                        None,
                    );
                    v.audit = audit;
                    return v;
                }
            },
        };
        match tool.validate(&args).await {
            Ok(dry) => {
                let outcome =
                    if approval.is_some() { VerdictOutcome::AwaitingApproval } else { VerdictOutcome::Allowed };
                let reason = match &approval {
                    Some(m) if !m.is_empty() => format!("approval required: {m}; {}", dry.summary),
                    Some(_) => format!("approval required; {}", dry.summary),
                    None => dry.summary.clone(),
                };
                Validated {
                    verdict: Verdict::new(outcome, reason, Some(decided_by.as_deref().unwrap_or("dry-run"))),
                    dry_run: Some(DryRunRecord { ok: true, summary: dry.summary }),
                    refusal: None,
                    mutating,
                    validation_ms: ms(t),
                    audit,
                }
            }
            Err(e) => {
                let dry = DryRunRecord { ok: false, summary: e.message.clone() };
                let mut v = refused(t, mutating, "dry-run", e.to_signal(), Some(dry));
                v.audit = audit;
                v
            }
        }
    }

    /// Phase 3: execute a validated proposal. Never fails: failures are
    /// error signals. Large results are bounded.
    pub async fn execute(run: &RunConfig, step: &NextStep) -> (Signal, u64) {
        let t = Instant::now();
        let signal = match run.tools.get(&step.tool) {
            None => Signal::error(ErrorCode::ToolNotAllowed, format!("tool {:?} is not allowed", step.tool)),
            Some(tool) => match tool.execute(&Value::Object(step.arguments.clone())).await {
                Ok(result) => Signal::success(bound_result(result)),
                Err(e) => e.to_signal(),
            },
        };
        (signal, ms(t))
    }

    /// All phases in one go, for hosts with nothing to persist in between.
    pub async fn step(
        &self,
        run: &RunConfig,
        history: &[StepRecord],
        started_at: DateTime<Utc>,
    ) -> Result<StepRecord, EngineError> {
        if let Some(outcome) = run_outcome(run, history, started_at, Utc::now()) {
            return Err(EngineError::Finished(outcome));
        }
        let decided = self.decide(run, history).await?;
        let index = steps_taken(history) + 1;
        let step = match &decided.parsed {
            Ok(Decision::NextStep(step)) => step.clone(),
            _ => return Ok(record_unexecuted(index, &decided, None)),
        };
        let validated = Self::validate(run, &step, None).await;
        if validated.refusal.is_some() {
            return Ok(record_unexecuted(index, &decided, Some(validated)));
        }
        let mut record = record_intent(index, &decided, &step, validated);
        let (signal, exec_ms) = Self::execute(run, &step).await;
        complete(&mut record, signal, exec_ms);
        Ok(record)
    }
}

/// The record of a step that executes nothing: a done, an invalid output,
/// or a refused proposal.
pub fn record_unexecuted(index: u32, decided: &Decided, validated: Option<Validated>) -> StepRecord {
    let mut rec = base_record(index, decided);
    match (&decided.parsed, validated) {
        (Err(e), _) => {
            rec.verdict = Verdict::new(VerdictOutcome::Invalid, e.message.clone(), Some("protocol"));
            rec.signal = Some(e.to_signal());
        }
        (Ok(Decision::Done { message }), _) => {
            rec.verdict = Verdict::new(VerdictOutcome::Done, message.clone(), None);
        }
        (Ok(Decision::NextStep(step)), v) => {
            rec.tool = Some(step.tool.clone());
            rec.proposal_digest = Some(step.digest());
            if let Some(v) = v {
                rec.audit = v.audit;
                rec.verdict = v.verdict;
                rec.dry_run = v.dry_run;
                rec.mutating = v.mutating;
                rec.timings.validation_ms = v.validation_ms;
                rec.signal = v.refusal;
            }
        }
    }
    rec.finished_at = Some(now_rfc3339());
    rec
}

/// The record of an allowed proposal about to execute (phase Executing).
pub fn record_intent(index: u32, decided: &Decided, step: &NextStep, validated: Validated) -> StepRecord {
    let mut rec = base_record(index, decided);
    rec.tool = Some(step.tool.clone());
    rec.proposal_digest = Some(step.digest());
    rec.audit = validated.audit;
    rec.phase = if validated.verdict.outcome == VerdictOutcome::AwaitingApproval {
        StepPhase::AwaitingApproval
    } else {
        StepPhase::Executing
    };
    rec.verdict = validated.verdict;
    rec.dry_run = validated.dry_run;
    rec.mutating = validated.mutating;
    rec.timings.validation_ms = validated.validation_ms;
    rec
}

/// Complete an intent with its signal.
pub fn complete(rec: &mut StepRecord, signal: Signal, execution_ms: u64) {
    rec.signal = Some(signal);
    rec.timings.execution_ms = execution_ms;
    rec.phase = StepPhase::Completed;
    rec.finished_at = Some(now_rfc3339());
}

/// Longest invalid output kept verbatim in a record; longer ones are cut,
/// with their size and sha256. (Valid decisions are at most
/// [`crate::protocol::MAX_DECISION_BYTES`] and are kept whole.)
pub const MAX_KEPT_INVALID_BYTES: usize = 2048;

fn base_record(index: u32, decided: &Decided) -> StepRecord {
    let (decision, decision_sha256) = if decided.parsed.is_err() && decided.raw.len() > MAX_KEPT_INVALID_BYTES {
        let mut cut = MAX_KEPT_INVALID_BYTES;
        while !decided.raw.is_char_boundary(cut) {
            cut -= 1;
        }
        (decided.raw[..cut].to_string(), Some(sha256_hex(decided.raw.as_bytes())))
    } else {
        (decided.raw.clone(), None)
    };
    StepRecord {
        index,
        decision,
        decision_bytes: decision_sha256.as_ref().map(|_| decided.raw.len() as u32),
        decision_sha256,
        tool: None,
        proposal_digest: None,
        verdict: Verdict::new(VerdictOutcome::Invalid, String::new(), None),
        dry_run: None,
        signal: None,
        audit: vec![],
        phase: StepPhase::Completed,
        mutating: false,
        started_at: decided.started_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        finished_at: None,
        model: decided.stats.clone(),
        timings: StepTimings { model_ms: decided.model_ms, ..StepTimings::default() },
        prev_digest: None,
        digest: None,
    }
}

fn refused(t: Instant, mutating: bool, by: &str, signal: Signal, dry_run: Option<DryRunRecord>) -> Validated {
    let reason = match &signal {
        Signal::Error { message, .. } => message.clone(),
        Signal::Success { .. } => String::new(),
    };
    Validated {
        verdict: Verdict::new(VerdictOutcome::Vetoed, reason, Some(by)),
        dry_run,
        refusal: Some(signal),
        mutating,
        validation_ms: ms(t),
        audit: vec![],
    }
}

/// Validate `instance` against a JSON Schema; every violation as a line
/// naming where it is.
pub fn check_schema(schema: &Value, instance: &Value) -> Result<(), Vec<String>> {
    let validator =
        jsonschema::validator_for(schema).map_err(|e| vec![format!("the tool's schema is invalid: {e}")])?;
    let errors: Vec<String> = validator
        .iter_errors(instance)
        .take(10)
        .map(|e| {
            let at = e.instance_path().to_string();
            if at.is_empty() { e.to_string() } else { format!("{at}: {e}") }
        })
        .collect();
    if errors.is_empty() { Ok(()) } else { Err(errors) }
}

/// Keep results small enough for the model and the status: a result over
/// [`MAX_RESULT_BYTES`] becomes a preview with its size and sha256.
pub fn bound_result(result: Value) -> Value {
    let text = result.to_string();
    if text.len() <= MAX_RESULT_BYTES {
        return result;
    }
    let mut cut = MAX_RESULT_BYTES / 2;
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    json!({
        "truncated": true,
        "bytes": text.len(),
        "sha256": sha256_hex(text.as_bytes()),
        "preview": &text[..cut],
        "note": "the result was too large and was cut; the sha256 covers the full JSON result",
    })
}

fn ms(t: Instant) -> u64 {
    t.elapsed().as_millis() as u64
}

/// Now, as recorded in histories.
pub fn now_rfc3339() -> String {
    Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}
