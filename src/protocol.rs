//! XCT protocol v0.1: the wire types between the model and the system.
//!
//! The model answers every call with exactly one [`Decision`]:
//! `{"next_step":{"tool":..,"arguments":{..},"goal":..}}` or
//! `{"done":true,"message":..}`. The system answers a proposal with a
//! [`Signal`]: `{"status":"success","result":..}` or
//! `{"status":"error","code":..,"message":..,"details":..}`.
//!
//! [`parse_decision`] is deliberately strict: one JSON object and nothing
//! else, no unknown keys. Every rejection is a [`ProposalError`] whose
//! message tells the model precisely what to fix; it becomes an
//! `INVALID_PROPOSAL` signal, never a crash.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

/// Largest model output the parser looks at (bytes). Longer outputs are
/// refused without being parsed.
pub const MAX_DECISION_BYTES: usize = 16 * 1024;

/// The closed set of error codes a signal can carry.
///
/// | code | meaning |
/// |---|---|
/// | `INVALID_PROPOSAL` | the output is not exactly one well-formed decision |
/// | `TOOL_NOT_ALLOWED` | the tool is unknown or not among the run's tools |
/// | `INVALID_ARGUMENTS` | the arguments do not match the tool's schema or rules |
/// | `POLICY_VETO` | a policy (or the absence of one) refused the proposal |
/// | `APPROVAL_REJECTED` | a human rejected the proposal, or approval timed out |
/// | `APPROVAL_STALE` | approved, but for another run instance or identity than the run has now |
/// | `DRY_RUN_FAILED` | the tool's dry run refused the change; nothing changed |
/// | `EXECUTION_FAILED` | the tool ran and failed |
/// | `OUTCOME_UNKNOWN` | execution was interrupted; its effect is unknown |
/// | `BUDGET_EXHAUSTED` | a limit (steps, errors, time) ended the run |
/// | `CONTEXT_EXHAUSTED` | even the most compact prompt does not fit the model's context window |
/// | `MODEL_FAILED` | the model failed again and again; the run ended |
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ErrorCode {
    InvalidProposal,
    ToolNotAllowed,
    InvalidArguments,
    PolicyVeto,
    ApprovalRejected,
    ApprovalStale,
    DryRunFailed,
    ExecutionFailed,
    OutcomeUnknown,
    BudgetExhausted,
    ContextExhausted,
    ModelFailed,
}

impl ErrorCode {
    /// Every code, in documentation order.
    pub const ALL: [ErrorCode; 12] = [
        ErrorCode::InvalidProposal,
        ErrorCode::ToolNotAllowed,
        ErrorCode::InvalidArguments,
        ErrorCode::PolicyVeto,
        ErrorCode::ApprovalRejected,
        ErrorCode::ApprovalStale,
        ErrorCode::DryRunFailed,
        ErrorCode::ExecutionFailed,
        ErrorCode::OutcomeUnknown,
        ErrorCode::BudgetExhausted,
        ErrorCode::ContextExhausted,
        ErrorCode::ModelFailed,
    ];

    /// The wire spelling, also usable as a metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidProposal => "INVALID_PROPOSAL",
            ErrorCode::ToolNotAllowed => "TOOL_NOT_ALLOWED",
            ErrorCode::InvalidArguments => "INVALID_ARGUMENTS",
            ErrorCode::PolicyVeto => "POLICY_VETO",
            ErrorCode::ApprovalRejected => "APPROVAL_REJECTED",
            ErrorCode::ApprovalStale => "APPROVAL_STALE",
            ErrorCode::DryRunFailed => "DRY_RUN_FAILED",
            ErrorCode::ExecutionFailed => "EXECUTION_FAILED",
            ErrorCode::OutcomeUnknown => "OUTCOME_UNKNOWN",
            ErrorCode::BudgetExhausted => "BUDGET_EXHAUSTED",
            ErrorCode::ContextExhausted => "CONTEXT_EXHAUSTED",
            ErrorCode::ModelFailed => "MODEL_FAILED",
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One proposed action.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct NextStep {
    /// Name of the tool, e.g. `fs.write`.
    pub tool: String,
    /// Arguments, checked against the tool's JSON Schema.
    #[schemars(schema_with = "crate::schema::any_object")]
    pub arguments: Map<String, Value>,
    /// Why the model wants this step.
    pub goal: String,
}

impl NextStep {
    /// sha256 over the canonical JSON of `{tool, arguments}`: the identity
    /// of a proposal (approvals and crash recovery bind to it). The goal is
    /// prose and does not change what would execute, so it is left out.
    pub fn digest(&self) -> String {
        let canonical =
            serde_json::json!({"tool": self.tool, "arguments": canonical(&Value::Object(self.arguments.clone()))});
        sha256_hex(canonical.to_string().as_bytes())
    }
}

/// What the model returns at each step.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Propose one action.
    NextStep(NextStep),
    /// Declare the goal reached.
    Done {
        /// What was accomplished.
        message: String,
    },
}

impl Decision {
    /// The canonical wire form.
    pub fn to_json(&self) -> Value {
        match self {
            Decision::NextStep(step) => serde_json::json!({"next_step": step}),
            Decision::Done { message } => serde_json::json!({"done": true, "message": message}),
        }
    }
}

/// The system's answer to a proposal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "status", rename_all = "lowercase")]
pub enum Signal {
    /// The tool ran; `result` is what it returned.
    Success {
        /// The tool's result.
        #[schemars(schema_with = "crate::schema::any_value")]
        result: Value,
    },
    /// Nothing (or not everything) happened; the model should adjust.
    Error {
        /// One of the documented error codes.
        code: ErrorCode,
        /// What went wrong, written for the model.
        message: String,
        /// Structured detail (schema errors, dry-run output...).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[schemars(schema_with = "crate::schema::any_value_opt")]
        details: Option<Value>,
    },
}

impl Signal {
    pub fn success(result: Value) -> Self {
        Signal::Success { result }
    }

    pub fn error(code: ErrorCode, message: impl Into<String>) -> Self {
        Signal::Error { code, message: message.into(), details: None }
    }

    pub fn error_with(code: ErrorCode, message: impl Into<String>, details: Value) -> Self {
        Signal::Error { code, message: message.into(), details: Some(details) }
    }

    pub fn is_error(&self) -> bool {
        matches!(self, Signal::Error { .. })
    }

    /// The error code, if this is an error.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            Signal::Error { code, .. } => Some(*code),
            Signal::Success { .. } => None,
        }
    }

    /// Compact JSON, as shown to the model.
    pub fn to_json_string(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|e| {
            format!(r#"{{"status":"error","code":"EXECUTION_FAILED","message":"unserialisable signal: {e}"}}"#)
        })
    }
}

/// Why a model output is not a valid decision.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct ProposalError {
    pub message: String,
}

impl ProposalError {
    fn new(message: impl Into<String>) -> Self {
        ProposalError { message: message.into() }
    }

    /// The signal returned to the model.
    pub fn to_signal(&self) -> Signal {
        Signal::error(ErrorCode::InvalidProposal, self.message.clone())
    }
}

const SHAPE_HINT: &str = r#"answer with exactly one JSON object: {"next_step":{"tool":"<tool>","arguments":{...},"goal":"<why>"}} or {"done":true,"message":"<what was accomplished>"}"#;

/// Parse one model output strictly.
///
/// `truncated` says the generation stopped at its token limit: an
/// incomplete object is then reported as cut off rather than malformed.
pub fn parse_decision(text: &str, truncated: bool) -> Result<Decision, ProposalError> {
    if text.len() > MAX_DECISION_BYTES {
        return Err(ProposalError::new(format!(
            "the output is {} bytes; a decision may be at most {MAX_DECISION_BYTES} bytes: {SHAPE_HINT}",
            text.len()
        )));
    }
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err(ProposalError::new(format!("the output was empty: {SHAPE_HINT}")));
    }
    if !trimmed.starts_with('{') {
        return Err(ProposalError::new(format!(
            "the output must start with '{{' but starts with {:?}: no prose, only {SHAPE_HINT}",
            trimmed.chars().take(20).collect::<String>()
        )));
    }
    let mut stream = serde_json::Deserializer::from_str(trimmed).into_iter::<Strict>();
    let value = match stream.next() {
        Some(Ok(Strict(v))) => v,
        Some(Err(e)) if e.is_eof() && truncated => {
            return Err(ProposalError::new(format!(
                "the output was cut off at the token limit before the JSON object was complete ({e}); give a shorter decision: {SHAPE_HINT}"
            )));
        }
        Some(Err(e)) if e.is_eof() => {
            return Err(ProposalError::new(format!("the JSON object is incomplete ({e}): {SHAPE_HINT}")));
        }
        Some(Err(e)) if e.to_string().starts_with(DUPLICATE_KEY) => {
            return Err(ProposalError::new(format!(
                "the output {e}; every key may appear only once in an object, so it is clear which value is meant: {SHAPE_HINT}"
            )));
        }
        Some(Err(e)) => {
            return Err(ProposalError::new(format!("the output is not valid JSON ({e}): {SHAPE_HINT}")));
        }
        None => {
            return Err(ProposalError::new(format!("the output was empty: {SHAPE_HINT}")));
        }
    };
    let consumed = stream.byte_offset();
    let rest = trimmed[consumed..].trim();
    if !rest.is_empty() {
        return Err(ProposalError::new(format!(
            "found text after the JSON object (at byte {consumed}: {:?}); return exactly one object and nothing else",
            rest.chars().take(20).collect::<String>()
        )));
    }
    decision_from_value(value)
}

const DUPLICATE_KEY: &str = "repeats the key";

/// A JSON value in which no object repeats a key. serde_json keeps the last
/// of repeated keys; a decision whose recorded text reads `"replicas":3`
/// first must not execute the `"replicas":0` that follows, so repeats are
/// refused outright (at any depth: tool arguments and manifests included).
struct Strict(Value);

impl<'de> Deserialize<'de> for Strict {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(StrictVisitor).map(Strict)
    }
}

struct StrictVisitor;

impl<'de> serde::de::Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_string()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut out = Vec::new();
        while let Some(Strict(v)) = seq.next_element()? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if out.contains_key(&key) {
                return Err(serde::de::Error::custom(format!("{DUPLICATE_KEY} {key:?}")));
            }
            let Strict(v) = map.next_value()?;
            out.insert(key, v);
        }
        Ok(Value::Object(out))
    }
}

/// Check the shape of an already-parsed decision object.
pub fn decision_from_value(value: Value) -> Result<Decision, ProposalError> {
    let Value::Object(mut obj) = value else {
        return Err(ProposalError::new(format!("the output must be a JSON object: {SHAPE_HINT}")));
    };
    let has_step = obj.contains_key("next_step");
    let has_done = obj.contains_key("done");
    if has_step && has_done {
        return Err(ProposalError::new(
            "the object has both \"next_step\" and \"done\"; a decision is exactly one of them",
        ));
    }
    if has_done {
        reject_unknown(&obj, &["done", "message"], "the done object")?;
        match obj.remove("done") {
            Some(Value::Bool(true)) => {}
            Some(Value::Bool(false)) => {
                return Err(ProposalError::new(
                    "\"done\" must be true; to continue, propose {\"next_step\":{...}} instead",
                ));
            }
            other => {
                let found = other.as_ref().map_or("missing", type_name);
                return Err(ProposalError::new(format!("\"done\" must be the boolean true, not {found}")));
            }
        }
        let message = match obj.remove("message") {
            Some(Value::String(s)) => s,
            Some(other) => {
                return Err(ProposalError::new(format!("\"message\" must be a string, not {}", type_name(&other))));
            }
            None => {
                return Err(ProposalError::new("the done object needs a \"message\" saying what was accomplished"));
            }
        };
        return Ok(Decision::Done { message });
    }
    if has_step {
        reject_unknown(&obj, &["next_step"], "the decision")?;
        let Some(Value::Object(step)) = obj.remove("next_step") else {
            return Err(ProposalError::new(
                "\"next_step\" must be an object with \"tool\", \"arguments\" and \"goal\"",
            ));
        };
        reject_unknown(&step, &["tool", "arguments", "goal"], "\"next_step\"")?;
        let tool = match step.get("tool") {
            Some(Value::String(s)) if !s.trim().is_empty() => s.clone(),
            Some(Value::String(_)) => {
                return Err(ProposalError::new("\"next_step.tool\" must not be empty"));
            }
            Some(other) => {
                return Err(ProposalError::new(format!(
                    "\"next_step.tool\" must be a string, not {}",
                    type_name(other)
                )));
            }
            None => {
                return Err(ProposalError::new("\"next_step\" needs \"tool\": the name of one allowed tool"));
            }
        };
        let arguments = match step.get("arguments") {
            Some(Value::Object(m)) => m.clone(),
            Some(other) => {
                return Err(ProposalError::new(format!(
                    "\"next_step.arguments\" must be an object, not {}",
                    type_name(other)
                )));
            }
            None => {
                return Err(ProposalError::new("\"next_step\" needs \"arguments\": an object (use {} for none)"));
            }
        };
        let goal = match step.get("goal") {
            Some(Value::String(s)) => s.clone(),
            Some(other) => {
                return Err(ProposalError::new(format!(
                    "\"next_step.goal\" must be a string, not {}",
                    type_name(other)
                )));
            }
            None => {
                return Err(ProposalError::new("\"next_step\" needs \"goal\": why this step is needed"));
            }
        };
        return Ok(Decision::NextStep(NextStep { tool, arguments, goal }));
    }
    let keys: Vec<&String> = obj.keys().take(5).collect();
    Err(ProposalError::new(format!("the object has neither \"next_step\" nor \"done\" (keys: {keys:?}): {SHAPE_HINT}")))
}

fn reject_unknown(obj: &Map<String, Value>, allowed: &[&str], what: &str) -> Result<(), ProposalError> {
    let unknown: Vec<&str> = obj.keys().map(String::as_str).filter(|k| !allowed.contains(k)).take(5).collect();
    if unknown.is_empty() {
        Ok(())
    } else {
        Err(ProposalError::new(format!("{what} has unknown key(s) {unknown:?}; allowed keys are {allowed:?}")))
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// JSON with object keys sorted recursively, for digests.
pub fn canonical(v: &Value) -> Value {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            Value::Object(keys.into_iter().map(|k| (k.clone(), canonical(&m[k]))).collect())
        }
        Value::Array(a) => Value::Array(a.iter().map(canonical).collect()),
        other => other.clone(),
    }
}

/// Lower-case hex sha256.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}
