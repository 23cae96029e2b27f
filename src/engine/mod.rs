//! The step machine: one call, one step.
//!
//! Pure with respect to the outside world: the engine knows nothing of
//! Kubernetes or files. It takes the run ([`RunConfig`]), its history, a
//! [`Decider`] and the run's tools, and produces one [`StepRecord`]. The
//! phases are public so a host that must persist between them (the operator
//! records the intent before executing a mutation) can call them one by one;
//! [`Engine::step`] chains them for hosts that need not (the local runner).

pub mod bounds;
pub mod context;
pub mod gate;
pub mod record;
mod resolve;
pub mod spans;

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use crate::model::{DecideRequest, Decider, DeciderError, Sampling};
use crate::protocol::{Decision, ErrorCode, NextStep, ProposalError, Signal, parse_decision, sha256_hex};
use crate::tools::ToolSet;
pub use gate::{GateVerdict, Judge, Proposal, Validated, check_schema};
use record::{JudgedFor, ModelStats, StepPhase, StepRecord, StepTimings, Verdict, VerdictOutcome};
use resolve::{recover, resume};

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
    /// The run instance (the XctRun's UID): identifies it to the decider
    /// (cache reuse) and binds its approvals.
    pub id: String,
    /// The identity its tools act as (a ServiceAccount's user name); an
    /// approval binds to it.
    pub acting_as: String,
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
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("run already finished: {0:?}")]
    Finished(RunOutcome),
    #[error(transparent)]
    Decider(#[from] DeciderError),
    /// The host could not record the step; nothing executed after it.
    #[error("journal: {0}")]
    Journal(JournalError),
}

impl EngineError {
    pub fn category(&self) -> &'static str {
        match self {
            EngineError::Finished(_) => "finished",
            EngineError::Decider(e) => e.category(),
            EngineError::Journal(_) => "journal",
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

/// Mutating steps that executed (allowed and completed): `run.mutations`
/// for policies, live and in the offline replay alike.
pub fn executed_mutations(history: &[StepRecord]) -> u32 {
    history
        .iter()
        .filter(|s| s.mutating && s.verdict.outcome == VerdictOutcome::Allowed && s.phase == StepPhase::Completed)
        .count() as u32
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

/// What humans decided about a step awaiting approval.
#[derive(Debug, Clone, PartialEq)]
pub enum Approval {
    Approved {
        approver: String,
    },
    Rejected {
        approver: String,
        reason: String,
    },
    TimedOut {
        after_secs: u32,
    },
    /// Still waiting; approvals that did not count, and why.
    Waiting {
        ignored: Vec<String>,
    },
}

/// Boundaries of the pipeline a host may want to know about (the operator's
/// fault injection aborts the process at them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Boundary {
    /// The model's answer is in; nothing is recorded yet.
    Decided,
    /// The tool returned; its result is not recorded yet.
    Executed,
}

impl Boundary {
    pub fn as_str(self) -> &'static str {
        match self {
            Boundary::Decided => "after-decision",
            Boundary::Executed => "after-execution",
        }
    }
}

/// Where a host keeps a run's history between the phases of a step.
#[async_trait::async_trait]
pub trait Journal: Send {
    /// Make the intent durable before a mutation executes: `step` (phase
    /// Executing) becomes the last step, replacing the current last one when
    /// `replaces_last` (an approved step). An error stops the step before
    /// anything executes.
    async fn intent(&mut self, step: &StepRecord, replaces_last: bool) -> Result<(), JournalError>;
    /// What humans decided about the pending step.
    async fn approval(&mut self, pending: &StepRecord) -> Result<Approval, JournalError>;
    /// The pipeline reached `boundary`.
    fn reached(&mut self, _boundary: Boundary) {}
}

/// A journal failure: the host's own error, carried through the engine.
pub type JournalError = Box<dyn std::error::Error + Send + Sync>;

/// A journal for hosts that persist only whole steps (the local runner):
/// nothing to make durable in between, and no one to approve.
pub struct NoJournal;

#[async_trait::async_trait]
impl Journal for NoJournal {
    async fn intent(&mut self, _step: &StepRecord, _replaces_last: bool) -> Result<(), JournalError> {
        Ok(())
    }
    async fn approval(&mut self, _pending: &StepRecord) -> Result<Approval, JournalError> {
        Ok(Approval::Rejected { approver: "local runner".into(), reason: "no approvals outside a cluster".into() })
    }
}

/// What a step did to the history.
#[derive(Debug, Clone, PartialEq)]
pub enum Stepped {
    /// A new step: append it.
    New(StepRecord),
    /// The last step (awaiting approval, or interrupted) is resolved:
    /// replace it.
    Resolved(StepRecord),
    /// The last step still awaits approval.
    Waiting { ignored: Vec<String> },
}

/// Runs steps with one decider.
pub struct Engine<'a> {
    decider: &'a dyn Decider,
}

impl<'a> Engine<'a> {
    pub fn new(decider: &'a dyn Decider) -> Self {
        Engine { decider }
    }

    /// One model call, at the least compaction of the history whose prompt
    /// fits the model's context window. If even the most compact rendering
    /// (system prompt, goal, newest step) does not fit, the run is over:
    /// CONTEXT_EXHAUSTED.
    async fn decide(&self, run: &RunConfig, history: &[StepRecord]) -> Result<Decided, EngineError> {
        let started_at = Utc::now();
        let t = Instant::now();
        // A different seed per step, so a retry after an error is not forced
        // to repeat itself; still deterministic for a given run and step.
        let sampling = Sampling { seed: run.sampling.seed.wrapping_add(steps_taken(history)), ..run.sampling.clone() };
        let schema = context::decision_schema(run, history);
        let mut refused: Option<Vec<crate::model::ChatMessage>> = None;
        let mut level = 0;
        loop {
            let messages = context::render(run, history, level);
            // A rendering the model already refused is not sent again.
            if refused.as_ref() != Some(&messages) {
                let request = DecideRequest {
                    run_id: run.id.clone(),
                    messages: messages.clone(),
                    schema: schema.clone(),
                    sampling: sampling.clone(),
                };
                let span = spans::chat(self.decider.model());
                let answer = tracing::Instrument::instrument(self.decider.decide(request), span.clone()).await;
                match &answer {
                    Ok(raw) => spans::chat_usage(&span, &raw.stats),
                    Err(e) => spans::chat_failed(&span, e.category()),
                }
                match answer {
                    Err(DeciderError::PromptTooLong(_)) => refused = Some(messages),
                    Err(e) => return Err(e.into()),
                    Ok(raw) => {
                        let parsed = parse_decision(&raw.text, raw.stats.truncated);
                        return Ok(Decided { raw: raw.text, stats: raw.stats, parsed, model_ms: ms(t), started_at });
                    }
                }
            }
            if context::Compaction::at(level, history.len()) == context::Compaction::at(level + 1, history.len()) {
                break;
            }
            level += 1;
        }
        Err(EngineError::Finished(RunOutcome::Failed {
            code: ErrorCode::ContextExhausted,
            reason: format!(
                "even the system prompt, the goal and the newest step alone (results cut to {} bytes) do not fit the model's context window with maxTokens {}",
                context::MIN_SIGNAL_BYTES,
                run.sampling.max_tokens
            ),
        }))
    }

    /// One step: the only way anything executes.
    ///
    /// An interrupted last step is resolved first (a read runs again through
    /// the gate; a mutation is never re-run: OUTCOME_UNKNOWN with what the
    /// gate lets the model see of its target), then a step awaiting approval
    /// (approved: bound to this run instance and identity, judged and dry-run
    /// again now, then executed), and otherwise the model decides a new step:
    /// gate ([`gate::admit`]), intent (mutations), execute, record.
    pub async fn step(
        &self,
        run: &RunConfig,
        history: &[StepRecord],
        started_at: DateTime<Utc>,
        judge: Option<&dyn Judge>,
        journal: &mut dyn Journal,
    ) -> Result<Stepped, EngineError> {
        match history.last() {
            Some(last) if last.phase == StepPhase::Executing => {
                let span = spans::step(&run.id, last.index);
                let recovered = tracing::Instrument::instrument(recover(run, history, last, judge), span).await;
                return Ok(Stepped::Resolved(recovered));
            }
            // Polled until answered: no step span per poll (an approved
            // step's execute_tool span sits under the caller's span).
            Some(last) if last.phase == StepPhase::AwaitingApproval => {
                return resume(run, history, last, judge, journal).await;
            }
            _ => {}
        }
        if let Some(outcome) = run_outcome(run, history, started_at, Utc::now()) {
            return Err(EngineError::Finished(outcome));
        }
        let span = spans::step(&run.id, steps_taken(history) + 1);
        tracing::Instrument::instrument(self.new_step(run, history, judge, journal), span).await
    }

    /// A new step: decide, gate, intent, execute, record.
    async fn new_step(
        &self,
        run: &RunConfig,
        history: &[StepRecord],
        judge: Option<&dyn Judge>,
        journal: &mut dyn Journal,
    ) -> Result<Stepped, EngineError> {
        let decided = self.decide(run, history).await?;
        journal.reached(Boundary::Decided);
        let index = steps_taken(history) + 1;
        if matches!(decided.parsed, Ok(Decision::Done { .. })) {
            if !context::may_finish(history) {
                return Ok(Stepped::New(record_refused_done(index, &decided, UNFOUNDED_DONE, UNFOUNDED_DONE_MESSAGE)));
            }
            if let Some(message) = context::unmade_done(history) {
                return Ok(Stepped::New(record_refused_done(index, &decided, UNMADE_DONE, &message)));
            }
        }
        let step = match &decided.parsed {
            Ok(Decision::NextStep(step)) => step.clone(),
            _ => return Ok(Stepped::New(record_unexecuted(index, &decided, None))),
        };
        let validated = gate::admit(run, &step, judge, history).await;
        if validated.refusal.is_some() {
            let mut record = record_unexecuted(index, &decided, Some(validated));
            context::advise(run, &step, history, &mut record);
            return Ok(Stepped::New(record));
        }
        let awaits = validated.awaits_approval();
        let mut record = record_intent(index, &decided, &step, validated);
        if awaits {
            record.judged_for = Some(JudgedFor { run_uid: run.id.clone(), acting_as: run.acting_as.clone() });
            return Ok(Stepped::New(record));
        }
        execute(run, &step, &mut record, false, journal).await?;
        context::advise(run, &step, history, &mut record);
        Ok(Stepped::New(record))
    }
}

/// Record the intent of a mutation, execute, complete the record.
async fn execute(
    run: &RunConfig,
    step: &NextStep,
    record: &mut StepRecord,
    replaces_last: bool,
    journal: &mut dyn Journal,
) -> Result<(), EngineError> {
    record.phase = StepPhase::Executing;
    if record.mutating {
        journal.intent(record, replaces_last).await.map_err(EngineError::Journal)?;
    }
    let (signal, took) = run_tool(run, step).await;
    journal.reached(Boundary::Executed);
    complete(record, signal, took);
    Ok(())
}

/// Run the step's tool: its signal (results bounded) and milliseconds.
async fn run_tool(run: &RunConfig, step: &NextStep) -> (Signal, u64) {
    let t = Instant::now();
    let signal = match run.tools.get(&step.tool) {
        None => Signal::error(ErrorCode::ToolNotAllowed, format!("tool {:?} is not allowed", step.tool)),
        Some(tool) => {
            // The catalogue's name, not the model's string.
            let span = spans::execute_tool(tool.name());
            let arguments = Value::Object(step.arguments.clone());
            let result = tracing::Instrument::instrument(tool.execute(&arguments), span.clone());
            let signal = match result.await {
                Ok(result) => Signal::success(bound_result(result)),
                Err(e) => e.to_signal(),
            };
            spans::tool_outcome(&span, &signal);
            signal
        }
    };
    (signal, ms(t))
}

/// Complete `rec` as refused by `validated` with `signal`.
fn apply_refusal(rec: &mut StepRecord, validated: Validated, signal: Signal) {
    rec.verdict = validated.verdict;
    rec.verdict.outcome = VerdictOutcome::Vetoed;
    if validated.dry_run.is_some() {
        rec.dry_run = validated.dry_run;
    }
    rec.audit = validated.audit;
    if validated.policy.is_some() {
        rec.policy = validated.policy;
    }
    complete(rec, signal, 0);
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
                rec.policy = v.policy;
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

/// What decided a done refused because the run had looked at nothing.
pub const UNFOUNDED_DONE: &str = "evidence";

/// Why a done before anything was looked at is refused: small models answer
/// a report or a change from the goal's words alone ("max_connections is
/// 50", "the ConfigMap was deleted") at their first step.
const UNFOUNDED_DONE_MESSAGE: &str = "done before any look: nothing has been looked at yet (a proposal refused for its \
     arguments shows nothing), so this done message could only guess. Propose a step that shows the state the goal \
     is about (a read-only tool first), then answer done with what its result shows.";

/// What decided a done refused, once, while a change refused for how it was
/// written is unmade ([`context::unmade_done`]).
pub const UNMADE_DONE: &str = "unmade-change";

/// A done refused with INVALID_PROPOSAL by the engine's rule `by`: nothing
/// executes, and `message` tells the model what to do instead.
fn record_refused_done(index: u32, decided: &Decided, by: &str, message: &str) -> StepRecord {
    let mut rec = record_unexecuted(index, decided, None);
    rec.verdict = Verdict::new(VerdictOutcome::Invalid, message, Some(by));
    rec.signal = Some(Signal::error(ErrorCode::InvalidProposal, message));
    rec
}

/// The record of an allowed proposal about to execute (phase Executing).
pub fn record_intent(index: u32, decided: &Decided, step: &NextStep, validated: Validated) -> StepRecord {
    let mut rec = base_record(index, decided);
    rec.tool = Some(step.tool.clone());
    rec.proposal_digest = Some(step.digest());
    rec.audit = validated.audit;
    rec.policy = validated.policy;
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
        judged_for: None,
        verdict: Verdict::new(VerdictOutcome::Invalid, String::new(), None),
        policy: None,
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
