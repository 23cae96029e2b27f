//! Judging one proposal against the loaded policies.

use std::cell::OnceCell;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::mpsc;
use std::time::Duration;

use serde_json::{Value, json};

use super::compile::Selection;
use super::compile::{CompiledPolicy, Condition, Loaded};
use crate::crd::{Effect, Enforcement};
use crate::protocol::NextStep;
use crate::tools::Target;

/// Longest a single CEL evaluation may take; past it the rule vetoes.
pub const EVAL_TIMEOUT: Duration = Duration::from_millis(200);
/// Largest `target` handed to CEL (bigger objects are cut to metadata,
/// spec and status summaries by the caller; this is the hard cap).
pub const MAX_INPUT_BYTES: usize = 256 * 1024;
/// Most iterations a condition may be estimated to take on its input
/// ([`Condition::cost`]); past it the rule vetoes without running. A
/// condition runs to its end on its thread even after [`EVAL_TIMEOUT`] has
/// vetoed, so this bound, not the timeout, keeps a costly condition from
/// spinning on after each proposal. This 2-core machine runs about 2.3
/// million iterations of a simple condition per second (`a >= 0` nested
/// two and three deep), so the bound is some 45 ms of the 200.
pub const MAX_EVAL_COST: u64 = 100_000;
/// The name of the threads that evaluate conditions.
const EVAL_THREAD: &str = "xct-cel";

/// What the run looks like to a policy.
#[derive(Debug, Clone, Default)]
pub struct RunInfo {
    pub name: String,
    pub namespace: String,
    pub labels: BTreeMap<String, String>,
    pub namespace_labels: BTreeMap<String, String>,
    /// The run's metadata and spec as JSON (`run.metadata`, `run.spec`).
    pub metadata: Value,
    pub spec: Value,
    /// Index of the step being judged.
    pub step: u32,
    /// Executed mutating steps so far.
    pub mutations: u32,
    /// Steps that ended in an error signal so far.
    pub errors: u32,
}

/// Everything a judgement looks at.
#[derive(Debug, Clone)]
pub struct PolicyInput {
    pub tool: String,
    pub arguments: Value,
    pub goal: String,
    /// The normalized target (`proposal.target`: kind, namespace, name),
    /// the same for every tool that touches the object.
    pub proposal_target: Value,
    pub run: RunInfo,
    /// The live object the proposal would touch: null if absent; none when
    /// it is not known (an offline replay given no target for it), where a
    /// rule that reads `target` cannot be decided.
    pub target: Option<Value>,
}

impl PolicyInput {
    /// The one way a policy input is built, by the live gate and the
    /// offline replay alike: the proposal, its target as the tool computed
    /// it (`proposal.target`), the run, and the live object if known.
    pub fn new(step: &NextStep, target: Option<&Target>, run: RunInfo, live: Option<Value>) -> Self {
        PolicyInput {
            tool: step.tool.clone(),
            arguments: Value::Object(step.arguments.clone()),
            goal: step.goal.clone(),
            proposal_target: target.and_then(|t| serde_json::to_value(t).ok()).unwrap_or(Value::Null),
            run,
            target: live,
        }
    }
}

/// The decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Allow,
    Deny,
    RequireApproval,
}

impl Verdict {
    /// The verdict spelled as [`Verdict::as_str`] does.
    pub fn parse(s: &str) -> Option<Self> {
        [Verdict::Allow, Verdict::Deny, Verdict::RequireApproval].into_iter().find(|v| v.as_str() == s)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Allow => "Allow",
            Verdict::Deny => "Deny",
            Verdict::RequireApproval => "RequireApproval",
        }
    }
}

/// A judgement: the verdict, which rule decided (`policy/rule`), why, and
/// what Audit policies would have decided.
#[derive(Debug, Clone, PartialEq)]
pub struct Judgement {
    pub verdict: Verdict,
    pub decided_by: Option<String>,
    pub message: String,
    pub audit: Vec<String>,
    /// Every Enforce policy that selected the run.
    pub deciding_policies: Vec<String>,
    /// Rules (`policy/rule`) that read `target` where none was known: left
    /// undecided (an offline replay without `--targets`).
    pub needs_target: Vec<String>,
}

impl Judgement {
    /// A judgement that could not be made: it vetoes (fail closed), by no rule.
    pub fn failed(why: &str) -> Self {
        Judgement {
            verdict: Verdict::Deny,
            decided_by: None,
            message: format!("the policies could not judge this proposal (fail closed): {why}"),
            audit: vec![],
            deciding_policies: vec![],
            needs_target: vec![],
        }
    }

    /// Whether a rule left undecided could change the verdict (nothing can
    /// override a Deny).
    pub fn uncertain(&self) -> bool {
        !self.needs_target.is_empty() && self.verdict != Verdict::Deny
    }
}

/// Judge one proposal.
pub fn judge(policies: &[Loaded], input: &PolicyInput) -> Judgement {
    let (enforce, audit): (Vec<&Loaded>, Vec<&Loaded>) = policies
        .iter()
        .filter(|p| selection_of(p).selects(&input.run.namespace_labels, &input.run.labels))
        .partition(|p| enforcement_of(p) == Enforcement::Enforce);
    let bindings = Bindings { input, built: OnceCell::new() };
    let mut j = decide(&enforce, &bindings);
    j.deciding_policies = enforce.iter().map(|p| p.name().to_string()).collect();
    // Audit policies are recorded only when one of their rules matched.
    if !audit.is_empty() {
        let a = decide(&audit, &bindings);
        if let Some(by) = &a.decided_by {
            let message = if a.message.is_empty() { String::new() } else { format!(": {}", a.message) };
            j.audit.push(format!("audit: {} by {by}{message}", a.verdict.as_str()));
        }
    }
    j
}

fn selection_of(p: &Loaded) -> &Selection {
    match p {
        Loaded::Ready(c) => &c.selection,
        Loaded::Invalid(p) => &p.selection,
    }
}

fn enforcement_of(p: &Loaded) -> Enforcement {
    match p {
        Loaded::Ready(c) => c.enforcement,
        Loaded::Invalid(p) => p.enforcement,
    }
}

struct Hit {
    effect: Effect,
    by: String,
    message: String,
}

fn decide(policies: &[&Loaded], bindings: &Bindings) -> Judgement {
    let input = bindings.input;
    let mut hits: Vec<Hit> = Vec::new();
    let mut needs_target = Vec::new();
    for p in policies {
        match p {
            Loaded::Invalid(p) => hits.push(Hit {
                effect: Effect::Deny,
                by: format!("{}/-", p.name),
                message: format!("policy {} is invalid and vetoes everything it selects: {}", p.name, p.error),
            }),
            Loaded::Ready(policy) => {
                let (h, n) = rule_hits(policy, bindings);
                hits.extend(h);
                needs_target.extend(n);
            }
        }
    }
    let pick = |effect: Effect| hits.iter().find(|h| h.effect == effect);
    let (verdict, hit) = if let Some(h) = pick(Effect::Deny) {
        (Verdict::Deny, Some(h))
    } else if let Some(h) = pick(Effect::RequireApproval) {
        (Verdict::RequireApproval, Some(h))
    } else if let Some(h) = pick(Effect::Allow) {
        (Verdict::Allow, Some(h))
    } else {
        (Verdict::Deny, None)
    };
    match hit {
        Some(h) => Judgement {
            verdict,
            decided_by: Some(h.by.clone()),
            message: h.message.clone(),
            audit: vec![],
            deciding_policies: vec![],
            needs_target,
        },
        None => Judgement {
            verdict,
            decided_by: None,
            message: format!("no XctPolicy allows {} for run {}/{}", input.tool, input.run.namespace, input.run.name),
            audit: vec![],
            deciding_policies: vec![],
            needs_target,
        },
    }
}

/// The rules of `policy` that match, and those that read a target not known.
fn rule_hits(policy: &CompiledPolicy, bindings: &Bindings) -> (Vec<Hit>, Vec<String>) {
    let input = bindings.input;
    let mut out = Vec::new();
    let mut needs_target = Vec::new();
    for rule in &policy.rules {
        if !rule.tools.iter().any(|pattern| glob(pattern, &input.tool)) {
            continue;
        }
        let by = format!("{}/{}", policy.name, rule.name);
        let matched = match &rule.when {
            None => Ok(true),
            Some(cond) if input.target.is_none() && cond.program.references().has_variable("target") => {
                needs_target.push(by);
                continue;
            }
            Some(cond) => evaluate(cond, bindings.built()).map_err(|e| format!("when {:?} failed: {e}", cond.source)),
        };
        match matched {
            Ok(true) => out.push(Hit { effect: rule.effect, by, message: rule.message.clone() }),
            Ok(false) => {}
            // Fail closed: an error vetoes, with the error text.
            Err(e) => out.push(Hit { effect: Effect::Deny, by, message: format!("CEL error (fail closed): {e}") }),
        }
    }
    (out, needs_target)
}

/// The CEL variables.
pub fn variables(input: &PolicyInput) -> Value {
    json!({
        "proposal": {"tool": input.tool, "arguments": input.arguments, "goal": input.goal, "target": input.proposal_target},
        "run": {
            "metadata": input.run.metadata,
            "spec": input.run.spec,
            "step": input.run.step,
            "mutations": input.run.mutations,
            "errors": input.run.errors,
        },
        "target": input.target.clone().unwrap_or(Value::Null),
    })
}

/// The CEL variables of one judgement, built when the first condition needs
/// them and then read by every condition of its Enforce and Audit policies.
struct Bindings<'a> {
    input: &'a PolicyInput,
    built: OnceCell<Built>,
}

/// The variables, their size as JSON, and their longest list or map.
struct Built {
    vars: Arc<Value>,
    bytes: usize,
    largest: usize,
}

impl Bindings<'_> {
    fn built(&self) -> &Built {
        self.built.get_or_init(|| {
            let vars = variables(self.input);
            Built { bytes: vars.to_string().len(), largest: largest_collection(&vars), vars: Arc::new(vars) }
        })
    }
}

/// Evaluate a condition on a helper thread, bounded by [`EVAL_TIMEOUT`],
/// once its input is known to be small enough for it ([`MAX_EVAL_COST`]).
fn evaluate(cond: &Condition, built: &Built) -> Result<bool, String> {
    if built.bytes > MAX_INPUT_BYTES {
        return Err(format!("the policy input is larger than {MAX_INPUT_BYTES} bytes"));
    }
    let largest = built.largest;
    let cost = cond.cost(largest);
    if cost > MAX_EVAL_COST {
        return Err(format!(
            "its estimated cost is {cost} iterations (comprehensions nested over a collection of {largest} \
             items), more than the {MAX_EVAL_COST} it may take; it was not run"
        ));
    }
    let (program, vars) = (cond.program.clone(), built.vars.clone());
    let (tx, rx) = mpsc::channel();
    let spawned = std::thread::Builder::new().name(EVAL_THREAD.into()).spawn(move || {
        let run = || -> Result<bool, String> {
            let mut ctx = cel::Context::default();
            for name in super::compile::VARIABLES {
                let v = cel::to_value(&vars[name]).map_err(|e| format!("cannot convert {name}: {e}"))?;
                ctx.add_variable_from_value(name, v);
            }
            match program.execute(&ctx).map_err(|e| e.to_string())? {
                cel::Value::Bool(b) => Ok(b),
                other => Err(format!("the condition must be a bool, got {other:?}")),
            }
        };
        let _ = tx.send(run());
    });
    spawned.map_err(|e| format!("no thread to evaluate it: {e}"))?;
    rx.recv_timeout(EVAL_TIMEOUT).unwrap_or_else(|_| Err(format!("evaluation took longer than {EVAL_TIMEOUT:?}")))
}

/// The most items of any list or map in `v`, at any depth.
fn largest_collection(v: &Value) -> usize {
    match v {
        Value::Array(items) => items.iter().map(largest_collection).fold(items.len(), usize::max),
        Value::Object(map) => map.values().map(largest_collection).fold(map.len(), usize::max),
        _ => 0,
    }
}

/// `*` matches any run of characters (dots included); everything else is
/// literal. In time linear in pattern times name: after a star, a mismatch
/// lets only the latest star take one more character (an earlier star could
/// not do better), instead of retrying every split of the name per star.
pub fn glob(pattern: &str, name: &str) -> bool {
    let (pattern, name): (Vec<char>, Vec<char>) = (pattern.chars().collect(), name.chars().collect());
    let (mut p, mut n) = (0, 0);
    // The latest star and where in the name its match ends so far.
    let mut star: Option<(usize, usize)> = None;
    while n < name.len() {
        match pattern.get(p) {
            Some('*') => {
                star = Some((p, n));
                p += 1;
            }
            Some(c) if *c == name[n] => {
                p += 1;
                n += 1;
            }
            _ => match star {
                Some((sp, sn)) => {
                    star = Some((sp, sn + 1));
                    (p, n) = (sp + 1, sn + 1);
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|c| *c == '*')
}
