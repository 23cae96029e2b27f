//! `xct policy test`: load XctPolicy YAML without a cluster, replay recorded
//! step histories, and print each proposal's verdict under the policies, or
//! with a baseline only what changes. What a GitOps pipeline runs on a
//! policy pull request.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use super::{Loaded, PolicyInput, RunInfo, Verdict, judge, load};
use crate::crd::XctPolicy;
use crate::engine::record::StepRecord;
use crate::protocol::{Decision, parse_decision};

/// A problem loading policies or histories.
#[derive(Debug, thiserror::Error)]
pub enum OfflineError {
    #[error("{path}: {message}")]
    Read { path: PathBuf, message: String },
    #[error("{path}: {message}")]
    Compile { path: PathBuf, message: String },
}

impl OfflineError {
    pub fn category(&self) -> &'static str {
        match self {
            OfflineError::Read { .. } => "read",
            OfflineError::Compile { .. } => "compile",
        }
    }
}

fn yaml_files(dir: &Path) -> Result<Vec<PathBuf>, OfflineError> {
    let read = |e: std::io::Error| OfflineError::Read { path: dir.into(), message: e.to_string() };
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(read)? {
        let p = entry.map_err(read)?.path();
        if p.is_dir() {
            out.extend(yaml_files(&p)?);
        } else if p.extension().is_some_and(|e| e == "yaml" || e == "yml") {
            out.push(p);
        }
    }
    out.sort();
    Ok(out)
}

fn documents(path: &Path) -> Result<Vec<Value>, OfflineError> {
    let text =
        std::fs::read_to_string(path).map_err(|e| OfflineError::Read { path: path.into(), message: e.to_string() })?;
    let mut out = Vec::new();
    for doc in serde_yaml::Deserializer::from_str(&text) {
        let v: Value = serde::Deserialize::deserialize(doc)
            .map_err(|e| OfflineError::Read { path: path.into(), message: format!("not YAML: {e}") })?;
        if !v.is_null() {
            out.push(v);
        }
    }
    Ok(out)
}

/// Every XctPolicy under `dir`, compiled. Any compile error fails the load,
/// naming the file, the policy, the rule and the position.
pub fn load_policies(dir: &Path) -> Result<Vec<Loaded>, Vec<OfflineError>> {
    let files = yaml_files(dir).map_err(|e| vec![e])?;
    let mut loaded = Vec::new();
    let mut errors = Vec::new();
    for file in files {
        let docs = match documents(&file) {
            Ok(d) => d,
            Err(e) => {
                errors.push(e);
                continue;
            }
        };
        for doc in docs.into_iter().filter(|d| d["kind"] == "XctPolicy") {
            match serde_json::from_value::<XctPolicy>(doc) {
                Err(e) => errors
                    .push(OfflineError::Compile { path: file.clone(), message: format!("not a valid XctPolicy: {e}") }),
                Ok(p) => {
                    let name = p.metadata.name.clone().unwrap_or_default();
                    match load(&name, p.metadata.generation, &p.spec) {
                        Loaded::Invalid(inv) => {
                            errors.push(OfflineError::Compile { path: file.clone(), message: inv.error.to_string() })
                        }
                        ok => loaded.push(ok),
                    }
                }
            }
        }
    }
    if errors.is_empty() {
        loaded.sort_by(|a, b| a.name().cmp(b.name()));
        Ok(loaded)
    } else {
        Err(errors)
    }
}

/// One recorded proposal to replay.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub run: String,
    pub step: u32,
    pub input: PolicyInput,
    /// What the policies decided when it was recorded (none for steps that
    /// were refused before the policies, or recorded without policies).
    pub recorded: Option<Judged>,
}

/// A verdict and the rule that decided it.
#[derive(Debug, Clone, PartialEq)]
pub struct Judged {
    pub verdict: Verdict,
    pub decided_by: Option<String>,
}

/// Proposals from history files (any file [`crate::history::load`] reads).
/// `namespace_labels` stands in for the cluster's namespaces.
pub fn load_histories(
    paths: &[PathBuf],
    namespace_labels: &BTreeMap<String, BTreeMap<String, String>>,
) -> Result<Vec<Recorded>, OfflineError> {
    let mut out = Vec::new();
    for path in paths {
        let histories = crate::history::load(path)
            .map_err(|e| OfflineError::Read { path: path.clone(), message: e.to_string() })?;
        for h in histories {
            for (position, step, s) in replayable(&h.steps) {
                // What the run looked like when this step was judged: the
                // steps before it (and the errors of archived steps the file
                // does not hold), as the live gate counts them.
                let before = &h.steps[..position];
                out.push(Recorded {
                    run: h.id(),
                    step: step.index,
                    recorded: step.policy.as_ref().and_then(|p| {
                        Some(Judged { verdict: Verdict::parse(&p.verdict)?, decided_by: p.decided_by.clone() })
                    }),
                    input: PolicyInput {
                        proposal_target: normalized_target(&s.tool, &s.arguments, &h.namespace),
                        tool: s.tool,
                        arguments: Value::Object(s.arguments),
                        goal: s.goal,
                        run: RunInfo {
                            name: h.name.clone(),
                            namespace: h.namespace.clone(),
                            labels: h.labels.clone(),
                            namespace_labels: namespace_labels.get(&h.namespace).cloned().unwrap_or_default(),
                            metadata: h.metadata.clone(),
                            spec: h.spec.clone(),
                            step: step.index,
                            mutations: crate::engine::executed_mutations(before),
                            errors: h.missing_errors()
                                + before.iter().filter(|s| s.error_code().is_some()).count() as u32,
                        },
                        target: Value::Null,
                    },
                });
            }
        }
    }
    Ok(out)
}

/// `proposal.target` as the tools compute it (null if the arguments name
/// no valid target: the operator would have refused the proposal before
/// judging it).
fn normalized_target(tool: &str, args: &serde_json::Map<String, Value>, namespace: &str) -> Value {
    let args = Value::Object(args.clone());
    let target = match crate::k8s::tools::target_of(tool, &args, namespace) {
        Some(t) => t.map(Some),
        None => crate::tools::fs::target_of(tool, &args).unwrap_or(Ok(None)),
    };
    target.ok().flatten().map_or(Value::Null, |t| serde_json::to_value(t).unwrap_or(Value::Null))
}

/// The proposals of a history, with their position in it.
fn replayable(steps: &[StepRecord]) -> impl Iterator<Item = (usize, &StepRecord, crate::protocol::NextStep)> {
    steps.iter().enumerate().filter_map(|(i, s)| match parse_decision(&s.decision, false) {
        Ok(Decision::NextStep(step)) => Some((i, s, step)),
        _ => None,
    })
}

/// One replayed verdict.
#[derive(Debug, Clone, PartialEq)]
pub struct Replayed {
    pub run: String,
    pub step: u32,
    pub tool: String,
    pub verdict: Verdict,
    pub decided_by: Option<String>,
    pub message: String,
    /// What audit-only policies would have decided.
    pub audit: Vec<String>,
}

impl Replayed {
    pub fn line(&self) -> String {
        format!(
            "{} step {} {}: {} by {}{}",
            self.run,
            self.step,
            self.tool,
            self.verdict.as_str(),
            self.decided_by.as_deref().unwrap_or("default-deny"),
            if self.message.is_empty() { String::new() } else { format!(" ({})", self.message) }
        ) + &self.audit.iter().map(|a| format!(" [{a}]")).collect::<String>()
    }

    pub fn to_json(&self) -> Value {
        json!({"run": self.run, "step": self.step, "tool": self.tool, "verdict": self.verdict.as_str(), "decidedBy": self.decided_by, "message": self.message})
    }
}

impl Replayed {
    /// This verdict and its rule.
    pub fn judged(&self) -> Judged {
        Judged { verdict: self.verdict, decided_by: self.decided_by.clone() }
    }
}

/// Judge every recorded proposal.
pub fn replay(policies: &[Loaded], recorded: &[Recorded]) -> Vec<Replayed> {
    recorded
        .iter()
        .map(|r| {
            let j = judge(policies, &r.input);
            Replayed {
                run: r.run.clone(),
                step: r.step,
                tool: r.input.tool.clone(),
                verdict: j.verdict,
                decided_by: j.decided_by,
                message: j.message,
                audit: j.audit,
            }
        })
        .collect()
}
