//! The step record: what the history keeps of every step, in the shape of
//! `XctRun.status.steps[]`.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::protocol::{ErrorCode, Signal};

/// Where a step stands. A step is recorded as `Executing` (its intent)
/// before a mutation runs, and `Completed` once its signal is known.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema, Default)]
pub enum StepPhase {
    /// Validated and dry-run; waiting for an XctApproval bound to its digest.
    AwaitingApproval,
    /// Decided and validated; the tool is running (or was, when the
    /// controller stopped).
    Executing,
    /// The signal is recorded.
    #[default]
    Completed,
}

/// The system's judgement of a decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum VerdictOutcome {
    /// Passed every check; the tool was executed.
    Allowed,
    /// Refused by the system (tool, arguments, policy, dry run).
    Vetoed,
    /// Waiting for a human approval bound to the proposal's digest.
    AwaitingApproval,
    /// The output was not a valid decision.
    Invalid,
    /// The model declared the goal reached.
    Done,
}

impl VerdictOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            VerdictOutcome::Allowed => "Allowed",
            VerdictOutcome::Vetoed => "Vetoed",
            VerdictOutcome::AwaitingApproval => "AwaitingApproval",
            VerdictOutcome::Invalid => "Invalid",
            VerdictOutcome::Done => "Done",
        }
    }
}

/// The verdict and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Verdict {
    /// Allowed, Vetoed, AwaitingApproval, Invalid or Done.
    pub outcome: VerdictOutcome,
    /// Why, in words.
    pub reason: String,
    /// What decided: a check (`protocol`, `tools`, `schema`, `arguments`,
    /// `target`, `dry-run`, `evidence` for a done before any look), a policy
    /// rule (`policy/rule`), or `default-deny`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decided_by: Option<String>,
}

impl Verdict {
    pub fn new(outcome: VerdictOutcome, reason: impl Into<String>, decided_by: Option<&str>) -> Self {
        Verdict { outcome, reason: reason.into(), decided_by: decided_by.map(str::to_string) }
    }
}

/// Outcome of the tool's validation and dry run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DryRunRecord {
    /// Whether the dry run passed.
    pub ok: bool,
    /// What would change, or why it cannot.
    pub summary: String,
}

/// The policies' decision on a proposal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PolicyDecision {
    /// Allow, Deny or RequireApproval.
    pub verdict: String,
    /// The rule that decided (`policy/rule`), or none for the default deny.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decided_by: Option<String>,
    /// sha256 of the live target the policies were shown (canonical JSON
    /// without volatile metadata; none when there was no object): `xct
    /// policy test --targets` says whether the target it is given matches.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_digest: Option<String>,
}

/// Who a pending proposal was judged for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct JudgedFor {
    /// UID of the run object (an XctApproval names it as `spec.runUid`).
    pub run_uid: String,
    /// The identity its tools act as (the ServiceAccount's user name).
    pub acting_as: String,
}

/// What the model call cost.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ModelStats {
    /// Tokens in the prompt.
    pub prompt_tokens: u32,
    /// Prompt tokens served from the cache instead of evaluated.
    #[serde(default)]
    pub cached_tokens: u32,
    /// Tokens generated.
    pub completion_tokens: u32,
    /// Milliseconds spent evaluating the prompt.
    pub prompt_ms: u64,
    /// Milliseconds spent generating.
    pub decode_ms: u64,
    /// Generation stopped at the token limit.
    #[serde(default)]
    pub truncated: bool,
}

/// Where the step's time went.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StepTimings {
    /// Milliseconds in the model call (prompt and generation).
    pub model_ms: u64,
    /// Milliseconds validating (schema, policy, dry run).
    pub validation_ms: u64,
    /// Milliseconds executing the tool.
    pub execution_ms: u64,
}

/// One step of a run's history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StepRecord {
    /// 1-based position in the run.
    pub index: u32,
    /// The model's output, verbatim (an invalid output over 2 KiB is cut;
    /// see `decisionBytes` and `decisionSha256`).
    pub decision: String,
    /// Size of the full output, when `decision` was cut.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decision_bytes: Option<u32>,
    /// sha256 of the full output, when `decision` was cut.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decision_sha256: Option<String>,
    /// The proposed tool, when the decision parsed as a proposal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool: Option<String>,
    /// sha256 of the canonical `{tool, arguments}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proposal_digest: Option<String>,
    /// The run instance and identity the proposal was judged for (set while
    /// it awaits approval): an approval executes it only for the same ones.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub judged_for: Option<JudgedFor>,
    /// The system's verdict and why.
    pub verdict: Verdict,
    /// What the policies decided, when they judged the proposal (the
    /// baseline `xct policy test` compares a policy change against).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<PolicyDecision>,
    /// The tool's validation / dry-run outcome, when it got that far.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dry_run: Option<DryRunRecord>,
    /// What the model is told: absent only for `done` and in-flight steps.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::schema::signal")]
    pub signal: Option<Signal>,
    /// What audit-only policies would have decided.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub audit: Vec<String>,
    /// AwaitingApproval, Executing (intent recorded) or Completed.
    #[serde(default)]
    pub phase: StepPhase,
    /// Whether the proposed tool mutates state.
    #[serde(default)]
    pub mutating: bool,
    /// When the step began (RFC 3339).
    pub started_at: String,
    /// When the step's signal was recorded (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<String>,
    /// Model statistics.
    pub model: ModelStats,
    /// Time split.
    pub timings: StepTimings,
    /// sha256 of the previous step's `digest` ("" for the first step).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prev_digest: Option<String>,
    /// sha256 over this record (without `digest`) and `prevDigest`: a hash
    /// chain, so any edit of recorded history is detectable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
}

impl StepRecord {
    /// The error code of the step's signal, if any.
    pub fn error_code(&self) -> Option<ErrorCode> {
        self.signal.as_ref().and_then(Signal::code)
    }

    /// The proposal this step's decision holds, if it holds one.
    pub fn proposal(&self) -> Option<crate::protocol::NextStep> {
        match crate::protocol::parse_decision(&self.decision, self.model.truncated) {
            Ok(crate::protocol::Decision::NextStep(step)) => Some(step),
            _ => None,
        }
    }

    /// A short outcome word for tables: Done, Success, or the error code.
    pub fn outcome_label(&self) -> &'static str {
        match (&self.signal, self.verdict.outcome, self.phase) {
            (_, _, StepPhase::Executing) => "Executing",
            (_, _, StepPhase::AwaitingApproval) => "AwaitingApproval",
            (_, VerdictOutcome::Done, _) => "Done",
            (Some(Signal::Success { .. }), _, _) => "Success",
            (Some(Signal::Error { code, .. }), _, _) => code.as_str(),
            (None, _, _) => "Pending",
        }
    }
}

/// The digest a step should carry, given the previous step's digest.
pub fn step_digest(step: &StepRecord, prev: &str) -> String {
    let mut v = serde_json::to_value(step).unwrap_or_default();
    if let Some(m) = v.as_object_mut() {
        m.remove("digest");
        m.insert("prevDigest".into(), serde_json::Value::String(prev.to_string()));
    }
    crate::protocol::sha256_hex(crate::protocol::canonical(&v).to_string().as_bytes())
}

/// Seal the chain: steps without a digest, and the last step (still
/// changing while it executes), get theirs. Sealed earlier steps are never
/// recomputed, so an edit to one of them stays detectable.
pub fn seal(steps: &mut [StepRecord], start: &str) {
    let last = steps.len().saturating_sub(1);
    let mut prev = start.to_string();
    for (i, s) in steps.iter_mut().enumerate() {
        if s.digest.is_none() || i == last {
            s.prev_digest = Some(prev.clone());
            s.digest = Some(step_digest(s, &prev));
        }
        prev = s.digest.clone().unwrap_or_default();
    }
}

/// A break in the chain.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("step {index}: {reason}")]
pub struct ChainError {
    pub index: u32,
    pub reason: String,
}

/// Verify the chain over `steps`, starting after `prev` ("" from the first
/// step): indices consecutive, each `prevDigest` the previous `digest`,
/// each `digest` matching its content.
pub fn verify_chain(steps: &[StepRecord], prev: &str, first_index: u32) -> Result<(), ChainError> {
    let mut prev = prev.to_string();
    for (i, s) in steps.iter().enumerate() {
        let fail = |reason: &str| ChainError { index: s.index, reason: reason.to_string() };
        if s.index != first_index + i as u32 {
            return Err(fail(&format!(
                "index {} where {} was expected (a step is missing or repeated)",
                s.index,
                first_index + i as u32
            )));
        }
        let Some(d) = &s.digest else { return Err(fail("no digest")) };
        if s.prev_digest.as_deref() != Some(prev.as_str()) {
            return Err(fail("prevDigest does not match the previous step's digest"));
        }
        if *d != step_digest(s, &prev) {
            return Err(fail("the record does not match its digest (it was edited)"));
        }
        prev = d.clone();
    }
    Ok(())
}
