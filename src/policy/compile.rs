//! Compiling policies: every CEL condition is parsed once, when the policy
//! (or its generation) is new, and checked to use only the variables a
//! condition can see. Errors name the rule and the position.

use std::sync::Arc;

use kube::core::{Selector, SelectorExt};

use crate::crd::policy::{PolicyRule, PolicySelector};
use crate::crd::{Effect, Enforcement, XctPolicySpec};

/// The variables a `when` condition can use.
pub const VARIABLES: [&str; 3] = ["proposal", "run", "target"];
/// Longest accepted condition (bounds evaluation cost with bounded inputs).
pub const MAX_CONDITION_BYTES: usize = 4096;
/// Most comprehension macros (`all`, `exists`, `map`, ...) in one condition.
pub const MAX_COMPREHENSIONS: usize = 4;

/// A policy that failed to compile.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("policy {policy}, rule {rule}{}: {message}", position.map(|(l, c)| format!(" at {l}:{c}")).unwrap_or_default())]
pub struct CompileError {
    pub policy: String,
    pub rule: String,
    /// Line and column in the rule's `when`, when known.
    pub position: Option<(isize, isize)>,
    pub message: String,
}

/// One rule, ready to evaluate.
#[derive(Debug)]
pub struct CompiledRule {
    pub name: String,
    pub tools: Vec<String>,
    pub effect: Effect,
    pub when: Option<Condition>,
    pub message: String,
}

/// A compiled `when`: its source, its program, and what bounds the cost of
/// running it ([`Condition::cost`]).
#[derive(Debug)]
pub struct Condition {
    pub source: String,
    pub program: Arc<cel::Program>,
    /// How deep its comprehensions nest: each level may iterate once per
    /// item of a collection for every iteration of the level around it.
    depth: u32,
    /// The most items of a list or map literal in the source.
    literal_items: usize,
}

impl Condition {
    fn new(source: &str, program: cel::Program) -> Self {
        let (depth, literal_items) = shape(program.expression());
        Condition { source: source.to_string(), program: Arc::new(program), depth, literal_items }
    }

    /// An estimate of the iterations evaluating this condition takes when
    /// no collection it can reach is longer than `largest_input` items (or
    /// than a literal of its source): that length to the power of the
    /// nesting depth (saturating).
    pub fn cost(&self, largest_input: usize) -> u64 {
        let items = largest_input.max(self.literal_items).max(1) as u64;
        items.saturating_pow(self.depth)
    }
}

/// The comprehension nesting depth of `e`, and the most items of a list or
/// map literal in it. A comprehension's range, initial value and result
/// run once; its condition and step run once per item, so only they nest.
fn shape(e: &cel::IdedExpr) -> (u32, usize) {
    use cel::common::ast::Expr;
    let widest = |parts: Vec<&cel::IdedExpr>| {
        parts.into_iter().map(shape).fold((0, 0), |(d, n), (pd, pn)| (d.max(pd), n.max(pn)))
    };
    match &e.expr {
        Expr::Comprehension(c) => {
            let (once, once_items) = widest(vec![&c.iter_range, &c.accu_init, &c.result]);
            let (each, each_items) = widest(vec![&c.loop_cond, &c.loop_step]);
            (once.max(each + 1), once_items.max(each_items))
        }
        Expr::Call(call) => widest(call.target.iter().map(|t| &**t).chain(&call.args).collect()),
        Expr::Select(select) => shape(&select.operand),
        Expr::List(list) => {
            let (d, n) = widest(list.elements.iter().collect());
            (d, n.max(list.elements.len()))
        }
        Expr::Map(map) => {
            let (d, n) = widest(entry_parts(&map.entries));
            (d, n.max(map.entries.len()))
        }
        Expr::Struct(st) => widest(entry_parts(&st.entries)),
        Expr::Ident(_) | Expr::Literal(_) | Expr::Unspecified => (0, 0),
    }
}

/// The expressions of a map or struct literal's entries.
fn entry_parts(entries: &[cel::common::ast::IdedEntryExpr]) -> Vec<&cel::IdedExpr> {
    use cel::common::ast::EntryExpr;
    entries
        .iter()
        .flat_map(|e| match &e.expr {
            EntryExpr::StructField(f) => vec![&f.value],
            EntryExpr::MapEntry(m) => vec![&m.key, &m.value],
        })
        .collect()
}

/// Which runs a policy selects, parsed once.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    namespace: Option<Selector>,
    run: Option<Selector>,
}

impl Selection {
    fn parse(sel: &PolicySelector) -> Result<Self, String> {
        let parse = |which: &str, s: &Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector>| {
            s.clone().map(Selector::try_from).transpose().map_err(|e| format!("{which}: {}", e.0))
        };
        Ok(Selection {
            namespace: parse("selector.namespaceSelector", &sel.namespace_selector)?,
            run: parse("selector.runSelector", &sel.run_selector)?,
        })
    }

    /// Whether a run with these labels, in a namespace with those, is selected.
    pub fn selects(
        &self,
        namespace_labels: &std::collections::BTreeMap<String, String>,
        run_labels: &std::collections::BTreeMap<String, String>,
    ) -> bool {
        self.namespace.as_ref().is_none_or(|s| s.matches(namespace_labels))
            && self.run.as_ref().is_none_or(|s| s.matches(run_labels))
    }
}

/// A policy, ready to evaluate.
#[derive(Debug)]
pub struct CompiledPolicy {
    pub name: String,
    pub generation: Option<i64>,
    pub enforcement: Enforcement,
    pub selection: Selection,
    pub rules: Vec<CompiledRule>,
}

/// A policy as the operator holds it: compiled, or why it is not.
#[derive(Debug, Clone)]
pub enum Loaded {
    Ready(Arc<CompiledPolicy>),
    /// Invalid policies still select runs and veto everything for them: an
    /// invalid policy never silently allows anything.
    Invalid(Arc<InvalidPolicy>),
}

/// A policy that did not compile.
#[derive(Debug)]
pub struct InvalidPolicy {
    pub name: String,
    pub enforcement: Enforcement,
    /// The runs it vetoes everything for: every run when its selector
    /// itself is invalid (it fails closed).
    pub selection: Selection,
    pub error: CompileError,
}

impl Loaded {
    pub fn name(&self) -> &str {
        match self {
            Loaded::Ready(p) => &p.name,
            Loaded::Invalid(p) => &p.name,
        }
    }
}

/// Compile one policy.
pub fn compile(name: &str, generation: Option<i64>, spec: &XctPolicySpec) -> Result<CompiledPolicy, CompileError> {
    let err = |rule: &str, position, message: String| CompileError {
        policy: name.into(),
        rule: rule.into(),
        position,
        message,
    };
    let selection = Selection::parse(&spec.selector).map_err(|m| err("-", None, m))?;
    let mut rules = Vec::new();
    for (i, r) in spec.rules.iter().enumerate() {
        if spec.rules[..i].iter().any(|o| o.name == r.name) {
            return Err(err(&r.name, None, "rule names must be unique within a policy".into()));
        }
        rules.push(compile_rule(r).map_err(|(pos, m)| err(&r.name, pos, m))?);
    }
    if rules.is_empty() {
        return Err(err("-", None, "a policy needs at least one rule".into()));
    }
    Ok(CompiledPolicy { name: name.into(), generation, enforcement: spec.enforcement, selection, rules })
}

/// Compile, keeping failures as [`Loaded::Invalid`].
pub fn load(name: &str, generation: Option<i64>, spec: &XctPolicySpec) -> Loaded {
    match compile(name, generation, spec) {
        Ok(p) => Loaded::Ready(Arc::new(p)),
        Err(error) => Loaded::Invalid(Arc::new(InvalidPolicy {
            name: name.into(),
            enforcement: spec.enforcement,
            selection: Selection::parse(&spec.selector).unwrap_or_default(),
            error,
        })),
    }
}

/// Policy `name`, whose object cannot be read as an XctPolicy (`why`): it
/// might have been a Deny, so it is Invalid, enforced, and selects every
/// run (it fails closed, like an invalid selector).
pub fn unreadable(name: &str, why: String) -> Loaded {
    Loaded::Invalid(Arc::new(InvalidPolicy {
        name: name.into(),
        enforcement: Enforcement::Enforce,
        selection: Selection::default(),
        error: CompileError { policy: name.into(), rule: "-".into(), position: None, message: why },
    }))
}

type RuleError = (Option<(isize, isize)>, String);

fn compile_rule(r: &PolicyRule) -> Result<CompiledRule, RuleError> {
    if r.tools.is_empty() {
        return Err((None, "tools must name at least one tool pattern".into()));
    }
    let when = match r.when.as_deref().map(str::trim).filter(|w| !w.is_empty()) {
        None => None,
        Some(src) => {
            if src.len() > MAX_CONDITION_BYTES {
                return Err((None, format!("when is {} bytes; at most {MAX_CONDITION_BYTES}", src.len())));
            }
            let comprehensions = ["all(", "exists(", "exists_one(", "map(", "filter("]
                .iter()
                .map(|m| src.matches(m).count())
                .sum::<usize>();
            if comprehensions > MAX_COMPREHENSIONS {
                return Err((None, format!("when uses {comprehensions} comprehensions; at most {MAX_COMPREHENSIONS}")));
            }
            let program = cel::Program::compile(src).map_err(|e| {
                let first = e.errors.first();
                (first.map(|p| p.pos), first.map_or_else(|| e.to_string(), |p| format!("CEL syntax error: {}", p.msg)))
            })?;
            let refs = program.references();
            let bound = comprehension_variables(src);
            let unknown: Vec<String> = refs
                .variables()
                .into_iter()
                .filter(|v| !VARIABLES.contains(v) && !bound.iter().any(|b| b == v))
                .map(str::to_string)
                .collect();
            if !unknown.is_empty() {
                return Err((None, format!("unknown variable(s) {unknown:?}; a condition can use {VARIABLES:?}")));
            }
            Some(Condition::new(src, program))
        }
    };
    Ok(CompiledRule {
        name: r.name.clone(),
        tools: r.tools.clone(),
        effect: r.effect,
        when,
        message: r.message.clone(),
    })
}

/// Names bound by comprehension macros, e.g. `k` in `m.all(k, k != 'x')`.
fn comprehension_variables(src: &str) -> Vec<String> {
    let mut out = Vec::new();
    for mac in ["all(", "exists(", "exists_one(", "map(", "filter("] {
        for (i, _) in src.match_indices(mac) {
            let rest = &src[i + mac.len()..];
            let name: String = rest.trim_start().chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
            if !name.is_empty() && rest.trim_start()[name.len()..].trim_start().starts_with(',') {
                out.push(name);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn condition(src: &str) -> Condition {
        Condition::new(src, cel::Program::compile(src).unwrap())
    }

    /// Only what runs once per item nests: a comprehension over another's
    /// result, or inside its initial value, adds no level.
    #[test]
    fn cost_is_the_widest_collection_to_the_nesting_depth() {
        let cases = [
            ("proposal.tool == 'k8s.get'", 0, 0),
            ("proposal.arguments.items.all(a, a > 0)", 1, 0),
            ("proposal.arguments.items.all(a, proposal.arguments.items.exists(b, a == b))", 2, 0),
            // map's expansion appends each item as a one-item list.
            ("proposal.arguments.items.map(a, a * 2).all(b, b > 0)", 1, 1),
            ("[1, 2, 3].all(a, target.items.all(b, b != a))", 2, 3),
            ("{'a': 1, 'b': 2}.all(k, k != proposal.tool)", 1, 2),
        ];
        for (src, depth, literal_items) in cases {
            let c = condition(src);
            assert_eq!((c.depth, c.literal_items), (depth, literal_items), "{src}");
        }
        let nested = condition(cases[2].0);
        assert_eq!((nested.cost(300), nested.cost(0)), (90_000, 1));
        assert_eq!(condition(cases[4].0).cost(0), 9, "a literal is a collection too");
        let deep = condition("a.all(x, a.all(y, a.all(z, a.all(w, x == w))))");
        assert_eq!(deep.cost(usize::MAX), u64::MAX, "saturates");
    }
}
