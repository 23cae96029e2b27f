//! The gate: the one place that decides whether a proposal may execute,
//! called for every execution (a fresh proposal, an approved one, a read
//! re-run after a restart) at the moment it executes.
//!
//! In order, each check refusing with a coded signal: the tool is one of
//! the run's ([`ErrorCode::ToolNotAllowed`]), the arguments match its
//! schema and name one valid target ([`ErrorCode::InvalidArguments`]) —
//! nothing at all is sent for a proposal refused so far — then the host's
//! judge (policies: [`ErrorCode::PolicyVeto`], which may read the validated
//! target, the only request before the verdict), then the tool's own
//! validation and dry run ([`ErrorCode::DryRunFailed`]); a change whose
//! dry run says it replaces its target's content is refused the same way
//! until a step of the run has shown that content whole ([`BY_UNSEEN`]).

use std::time::Instant;

use serde_json::{Value, json};

use super::record::{DryRunRecord, PolicyDecision, StepRecord, Verdict, VerdictOutcome};
use super::{RunConfig, bounds};
use crate::protocol::{ErrorCode, NextStep, Signal};
use crate::tools::{Target, Tool};

/// A proposal as the judge sees it: the step, the tool that would run it,
/// its validated target and that target as it is now.
pub struct Proposal<'a> {
    pub step: &'a NextStep,
    pub tool: &'a dyn Tool,
    pub target: Option<&'a Target>,
    pub mutating: bool,
    /// The live target, read by the tool itself (as the run's identity,
    /// never with the host's own rights): null when absent or unreadable,
    /// for a Secret and for lists. The only request before the verdict.
    pub live: &'a Value,
}

/// Metadata the API server changes on every write: left out of
/// [`target_digest`] so a dump of an unchanged object still matches.
const VOLATILE_METADATA: [&str; 5] = ["managedFields", "resourceVersion", "generation", "uid", "creationTimestamp"];

/// sha256 of the canonical JSON of a judged live target, without its
/// volatile metadata (none for null): recorded with the policy decision, so
/// an offline replay can tell whether the target it is given is the one the
/// gate judged. The object itself is never copied into the status.
pub fn target_digest(live: &Value) -> Option<String> {
    if live.is_null() {
        return None;
    }
    let mut object = live.clone();
    if let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut) {
        VOLATILE_METADATA.iter().for_each(|k| {
            meta.remove(*k);
        });
    }
    Some(crate::protocol::sha256_hex(crate::protocol::canonical(&object).to_string().as_bytes()))
}

impl GateVerdict {
    /// The decision as recorded in the step, with the digest of the live
    /// target it was made on.
    pub fn decision(&self, live: &Value) -> PolicyDecision {
        let (verdict, by) = match self {
            GateVerdict::Allow { by, .. } => ("Allow", Some(by.clone())),
            GateVerdict::Deny { by, .. } => ("Deny", by.clone()),
            GateVerdict::RequireApproval { by, .. } => ("RequireApproval", Some(by.clone())),
        };
        PolicyDecision { verdict: verdict.to_string(), decided_by: by, target_digest: target_digest(live) }
    }
}

/// A host's veto point between the argument checks and the dry run (the
/// operator plugs its XctPolicies in here).
#[async_trait::async_trait]
pub trait Judge: Send + Sync {
    async fn judge(&self, proposal: &Proposal<'_>) -> GateVerdict;
}

/// What a judge decided, and by which rule.
#[derive(Debug, Clone, PartialEq)]
pub enum GateVerdict {
    Allow { by: String, message: String, audit: Vec<String> },
    Deny { by: Option<String>, message: String, audit: Vec<String> },
    RequireApproval { by: String, message: String, audit: Vec<String> },
}

/// The result of passing a proposal through the gate.
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
    /// What the judge decided, when it was asked.
    pub policy: Option<PolicyDecision>,
}

impl Validated {
    pub fn awaits_approval(&self) -> bool {
        self.refusal.is_none() && self.verdict.outcome == VerdictOutcome::AwaitingApproval
    }
}

/// What refused a proposal for its shape: arguments that do not match the
/// tool's schema, a nested tool call, a target the tool cannot name. Such a
/// refusal shows nothing of the world the goal is about (unlike the tool
/// list, a policy, an approval or a dry run), so it does not found a done
/// ([`super::context::may_finish`]).
pub const BY_SCHEMA: &str = "schema";
pub const BY_ARGUMENTS: &str = "arguments";
pub const BY_TARGET: &str = "target";
pub const SHAPE_CHECKS: [&str; 3] = [BY_SCHEMA, BY_ARGUMENTS, BY_TARGET];

/// What refused a change that would replace content the run has not seen
/// ([`shown_whole`]).
pub const BY_UNSEEN: &str = "unseen";

/// Tool, arguments, target, judge, dry run, and for a change that replaces
/// its target's content, a look at that content in `history`: may `step`
/// execute now?
pub async fn admit(run: &RunConfig, step: &NextStep, judge: Option<&dyn Judge>, history: &[StepRecord]) -> Validated {
    let t = Instant::now();
    let Some(tool) = run.tools.get(&step.tool) else {
        let allowed = run.tools.names();
        let msg = format!("tool {:?} is not allowed in this run; allowed tools: {allowed:?}", step.tool);
        let signal = Signal::error_with(ErrorCode::ToolNotAllowed, msg, json!({"allowed": allowed}));
        return refused(t, false, "tools", signal, None);
    };
    let mutating = tool.mutates();
    let args = Value::Object(step.arguments.clone());
    let schema = bounds::argument_schema(tool.as_ref(), run.sampling.max_tokens);
    if let Err(errors) = check_schema(&schema, &args) {
        let mut msg = format!("arguments do not match the schema of {}: {}", step.tool, errors.join("; "));
        if check_schema(&tool.schema(), &args).is_ok() {
            msg.push_str(&format!(
                "; free strings are bounded by this run's maxTokens ({}): shorten the argument, split the work \
                 into several steps, or ask for a larger spec.model.maxTokens",
                run.sampling.max_tokens
            ));
        }
        let details = json!({"errors": errors, "schema": schema});
        return refused(t, mutating, BY_SCHEMA, Signal::error_with(ErrorCode::InvalidArguments, msg, details), None);
    }
    if let Some((argument, called)) = nested_call(&step.arguments, &run.tools.names()) {
        let msg = format!(
            "argument {argument} holds a call to {called} instead of a value: tools are never nested. If {called} \
             has not run yet, call it in its own step; then put the text its result shows (not a call) in {argument}."
        );
        let signal = Signal::error_with(
            ErrorCode::InvalidArguments,
            msg,
            json!({NESTED_ARGUMENT: argument, NESTED_TOOL: called}),
        );
        return refused(t, mutating, BY_ARGUMENTS, signal, None);
    }
    let target = match tool.target(&args) {
        Ok(target) => target,
        Err(e) => return refused(t, mutating, BY_TARGET, e.to_signal(), None),
    };
    let mut policy = None;
    let (decided_by, approval, audit) = match judge {
        None => (None, None, vec![]),
        Some(j) => {
            let live = tool.observe(&args).await.unwrap_or(Value::Null);
            let proposal = Proposal { step, tool: tool.as_ref(), target: target.as_ref(), mutating, live: &live };
            let verdict = j.judge(&proposal).await;
            policy = Some(verdict.decision(&live));
            match verdict {
                GateVerdict::Allow { by, audit, .. } => (Some(by), None, audit),
                GateVerdict::RequireApproval { by, message, audit } => (Some(by), Some(message), audit),
                GateVerdict::Deny { by, message, audit } => {
                    let details = json!({"decidedBy": by});
                    let signal = Signal::error_with(ErrorCode::PolicyVeto, message, details);
                    let mut v = refused(t, mutating, by.as_deref().unwrap_or("default-deny"), signal, None);
                    v.audit = audit;
                    v.policy = policy;
                    return v;
                }
            }
        }
    };
    // The tool's own refusal, or one of a change that would replace what
    // the run has not seen: by whom, what the model is told, what the dry
    // run said.
    let dry = match tool.validate(&args).await {
        Ok(dry) if dry.replaces && !shown_whole(run, history, target.as_ref()) => {
            let what = target.as_ref().and_then(|t| t.name.as_deref()).unwrap_or("the target");
            let msg = format!(
                "{} would replace the whole content of {what}, and no step of this run has shown that content: \
                 read all of it first (without a search), then write the new content with everything that must stay",
                step.tool
            );
            Err((BY_UNSEEN, Signal::error(ErrorCode::DryRunFailed, msg), dry.summary))
        }
        Ok(dry) => Ok(dry),
        Err(e) => Err(("dry-run", e.to_signal(), e.message)),
    };
    match dry {
        Ok(dry) => {
            let outcome = if approval.is_some() { VerdictOutcome::AwaitingApproval } else { VerdictOutcome::Allowed };
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
                policy,
            }
        }
        Err((by, signal, summary)) => {
            let mut v = refused(t, mutating, by, signal, Some(DryRunRecord { ok: false, summary }));
            v.audit = audit;
            v.policy = policy;
            v
        }
    }
}

/// Whether a successful step of `history` showed the whole content of
/// `target`, or set it ([`Tool::shows_whole`]). A change that replaces a
/// target's content (an existing file) waits for one: the eval model
/// overwrote `app.conf` with the one line it was asked to change, never
/// having read the file, and the other settings were lost (xct-eval,
/// fs-edit-port). The content counts as seen as it was at that step: a
/// change made since by someone other than the run is not detected here.
fn shown_whole(run: &RunConfig, history: &[StepRecord], target: Option<&Target>) -> bool {
    let Some(target) = target else { return false };
    history.iter().any(|s| {
        let (Some(Signal::Success { result }), Some(step)) = (&s.signal, s.proposal()) else { return false };
        let Some(tool) = run.tools.get(&step.tool) else { return false };
        let args = Value::Object(step.arguments);
        tool.target(&args).ok().flatten().as_ref() == Some(target) && tool.shows_whole(result)
    })
}

/// What the target of an interrupted step looks like now, shown only if the
/// judge allows the tool's read-only observation of it (as it would a
/// proposal to read it); otherwise what withheld it.
pub async fn observe(run: &RunConfig, step: &NextStep, judge: Option<&dyn Judge>) -> Value {
    let Some(tool) = run.tools.get(&step.tool) else { return Value::Null };
    let args = Value::Object(step.arguments.clone());
    let (Some(observation), Ok(target)) = (tool.observation(&args), tool.target(&args)) else {
        return Value::Null;
    };
    // Read once: what the judge sees is what the model is shown.
    let live = tool.observe(&args).await;
    if let Some(j) = judge {
        let seen = live.as_ref().cloned().unwrap_or(Value::Null);
        let proposal =
            Proposal { step: &observation, tool: tool.as_ref(), target: target.as_ref(), mutating: false, live: &seen };
        match j.judge(&proposal).await {
            GateVerdict::Allow { .. } => {}
            GateVerdict::Deny { by, message, .. } => {
                return json!({"withheld": format!("{}: {message}", ErrorCode::PolicyVeto), "decidedBy": by});
            }
            GateVerdict::RequireApproval { by, .. } => {
                return json!({"withheld": "reading the target requires an approval", "decidedBy": by});
            }
        }
    }
    match live {
        Ok(v) => v,
        Err(e) => json!({"error": e.message}),
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
        policy: None,
    }
}

/// A refusal decided outside the checks above (an approval no longer
/// valid), in the same shape.
pub fn veto(mutating: bool, by: &str, signal: Signal) -> Validated {
    refused(Instant::now(), mutating, by, signal, None)
}

/// The details of a nested-call refusal: the argument, and the tool it nested.
const NESTED_ARGUMENT: &str = "argument";
const NESTED_TOOL: &str = "tool";

/// The argument and the tool of a nested-call refusal (see [`nested_call`]),
/// read back from its signal: the engine quotes what that tool returned.
pub fn nested_call_of(signal: &Signal) -> Option<(&str, &str)> {
    match signal {
        Signal::Error { code: ErrorCode::InvalidArguments, details: Some(d), .. } => {
            Some((d[NESTED_ARGUMENT].as_str()?, d[NESTED_TOOL].as_str()?))
        }
        _ => None,
    }
}

/// An argument that is, whole, a call of one of the run's tools: a string
/// `fs.read(path='notes.txt')` (or a field of its result,
/// `fs.read(path='notes.txt').content`), or an object whose only key is a tool's
/// name (`{"fs.read": {"path": "notes.txt"}}`, once `fs.write` took an
/// object). A small model's way of asking for a value it has not read.
/// Written as a file's content it would be a silent wrong result; refused,
/// it tells the model what to do. Returns the argument's path and the tool
/// called.
fn nested_call(arguments: &serde_json::Map<String, Value>, tools: &[String]) -> Option<(String, String)> {
    fn walk(at: String, v: &Value, tools: &[String]) -> Option<(String, String)> {
        match v {
            Value::String(s) => {
                let s = without_accessors(s.trim());
                let called = tools.iter().find(|t| s.strip_prefix(t.as_str()).is_some_and(|r| r.starts_with('(')))?;
                s.ends_with(')').then(|| (at, called.clone()))
            }
            Value::Array(items) => items.iter().enumerate().find_map(|(i, x)| walk(format!("{at}/{i}"), x, tools)),
            Value::Object(map) if map.len() == 1 && tools.iter().any(|t| map.contains_key(t)) => {
                map.keys().next().map(|called| (at, called.clone()))
            }
            Value::Object(map) => map.iter().find_map(|(k, x)| walk(format!("{at}/{k}"), x, tools)),
            _ => None,
        }
    }
    arguments.iter().find_map(|(k, v)| walk(format!("/{k}"), v, tools))
}

/// `text` without the field accessors that end it (`.content`,
/// `['content']`): the eval model wrote `fs.read(contains=notes.txt).content`
/// as a file's content.
fn without_accessors(mut text: &str) -> &str {
    loop {
        let field = |f: &str| !f.is_empty() && f.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        text = match (text.strip_suffix(']').and_then(|t| t.rfind('[')), text.rfind('.')) {
            (Some(open), _) => &text[..open],
            (None, Some(dot)) if field(&text[dot + 1..]) => &text[..dot],
            _ => return text,
        };
    }
}

/// Validate `instance` against a JSON Schema; every violation as a line
/// naming where it is. A top-level `oneOf` that no alternative matches is
/// explained by its closest alternative, not by "not valid under any of the
/// schemas": the one whose fixed values (`const`, `enum`: for `k8s.patch`,
/// the kind) the instance has, then the one with the fewest violations.
pub fn check_schema(schema: &Value, instance: &Value) -> Result<(), Vec<String>> {
    let errors = violations(schema, instance)?;
    if errors.is_empty() {
        return Ok(());
    }
    let closest = schema
        .get("oneOf")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|alternative| Some((alternative, violations(alternative, instance).ok()?)))
        .filter(|(_, e)| !e.is_empty())
        .min_by_key(|(alternative, e)| (e.iter().filter(|v| fixed_at(alternative, &v.at)).count(), e.len()));
    let lines = |e: Vec<Violation>| e.into_iter().map(|v| v.text).collect();
    Err(closest.map_or_else(|| lines(errors), |(_, e)| lines(e)))
}

/// Most violations reported for one proposal.
const MAX_VIOLATIONS: usize = 10;

/// One violation: where (a JSON pointer into the instance) and the line
/// that says it.
struct Violation {
    at: String,
    text: String,
}

fn violations(schema: &Value, instance: &Value) -> Result<Vec<Violation>, Vec<String>> {
    let validator =
        jsonschema::validator_for(schema).map_err(|e| vec![format!("the tool's schema is invalid: {e}")])?;
    Ok(validator
        .iter_errors(instance)
        .take(MAX_VIOLATIONS)
        .map(|e| {
            let at = e.instance_path().to_string();
            let text = if at.is_empty() { e.to_string() } else { format!("{at}: {e}") };
            Violation { at, text }
        })
        .collect())
}

/// Whether `at` is a property that `schema` fixes with `const` or `enum`.
fn fixed_at(schema: &Value, at: &str) -> bool {
    let Some(name) = at.strip_prefix('/') else { return false };
    schema["properties"].get(name).is_some_and(|p| p.get("const").is_some() || p.get("enum").is_some())
}

fn ms(t: Instant) -> u64 {
    t.elapsed().as_millis() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(args: Value) -> Option<(String, String)> {
        nested_call(args.as_object().unwrap(), &["fs.read".to_string(), "fs.write".to_string()])
    }

    #[test]
    fn a_whole_argument_that_calls_a_tool_is_found() {
        let found = call(json!({"path": "b.txt", "content": " fs.read(path='notes.txt') "}));
        assert_eq!(found, Some(("/content".into(), "fs.read".into())));
        let deep = call(json!({"patch": {"data": ["x", "fs.write(path='a')"]}}));
        assert_eq!(deep, Some(("/patch/data/1".into(), "fs.write".into())));
        let field = call(json!({"content": "fs.read(contains=notes.txt).content"}));
        assert_eq!(field, Some(("/content".into(), "fs.read".into())));
        let indexed = call(json!({"content": "fs.read(path='notes.txt')['content'][0]"}));
        assert_eq!(indexed, Some(("/content".into(), "fs.read".into())));
        let object = call(json!({"path": "b.txt", "content": {"fs.read": {"path": "notes.txt"}}}));
        assert_eq!(object, Some(("/content".into(), "fs.read".into())));
    }

    #[test]
    fn an_object_with_a_tool_name_among_other_keys_is_a_value() {
        assert_eq!(call(json!({"content": {"fs.read": 1, "other": 2}})), None);
        assert_eq!(call(json!({"content": {"read": {"path": "x"}}})), None);
    }

    #[test]
    fn text_that_only_mentions_a_tool_is_a_value() {
        for content in [
            "use fs.read(path) to read",
            "fs.read",
            "fs.readme(x)",
            "k8s.get(kind)",
            "fs.read(x) and more",
            "fs.read(x) and more.txt",
            "fs.read(x).",
        ] {
            assert_eq!(call(json!({"content": content})), None, "{content}");
        }
    }
}
