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
use crate::tools::Target;

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
    /// Its target is unknown (`input.target` is none) until [`Targets`]
    /// supply it, where the live gate read one.
    pub input: PolicyInput,
    /// What the policies decided when it was recorded (none for steps that
    /// were refused before the policies, or recorded without policies).
    pub recorded: Option<Judged>,
    /// The object the live gate read for it, if it reads one.
    pub observed: Option<Target>,
    /// Digest of the live target it was judged on, as recorded.
    pub judged_digest: Option<String>,
}

/// A verdict and the rule that decided it.
#[derive(Debug, Clone, PartialEq)]
pub struct Judged {
    pub verdict: Verdict,
    pub decided_by: Option<String>,
    /// A rule that reads `target` could not be decided (no target given).
    pub uncertain: bool,
}

/// Live objects given offline (`--targets`), by kind, namespace and name.
#[derive(Debug, Clone, Default)]
pub struct Targets {
    objects: BTreeMap<(String, String, String), Value>,
    /// Whether any were given: then an object not among them is absent.
    pub given: bool,
}

impl Targets {
    /// Every object in the manifests under `paths` (files or folders:
    /// `kubectl get -o yaml` dumps, Lists, a Git repository's manifests).
    pub fn load(paths: &[PathBuf]) -> Result<Self, OfflineError> {
        let mut objects = BTreeMap::new();
        for path in paths {
            let files = if path.is_dir() { yaml_files(path)? } else { vec![path.clone()] };
            for file in files {
                for doc in documents(&file)? {
                    let items = match doc["kind"].as_str() {
                        Some(k) if k.ends_with("List") => doc["items"].as_array().cloned().unwrap_or_default(),
                        _ => vec![doc],
                    };
                    for item in items {
                        let (Some(kind), Some(name)) = (item["kind"].as_str(), item["metadata"]["name"].as_str())
                        else {
                            continue;
                        };
                        let namespace = item["metadata"]["namespace"].as_str().unwrap_or("default");
                        objects.insert((kind.to_string(), namespace.to_string(), name.to_string()), item.clone());
                    }
                }
            }
        }
        Ok(Targets { objects, given: !paths.is_empty() })
    }

    /// What the live gate would have read for `target`: the given object,
    /// null if targets were given without it, unknown if none were given.
    fn lookup(&self, target: &Target) -> Option<Value> {
        if !self.given {
            return None;
        }
        let key = (
            target.kind.clone(),
            target.namespace.clone().unwrap_or_default(),
            target.name.clone().unwrap_or_default(),
        );
        Some(self.objects.get(&key).cloned().unwrap_or(Value::Null))
    }

    /// Give each recorded proposal the live target the gate would read.
    pub fn apply(&self, recorded: &mut [Recorded]) {
        for r in recorded.iter_mut() {
            r.input.target = match &r.observed {
                None => Some(Value::Null),
                Some(t) => self.lookup(t),
            };
        }
    }
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
                let args = Value::Object(s.arguments.clone());
                let observed = crate::k8s::tools::observed_target(&s.tool, &args, &h.namespace);
                let run = RunInfo {
                    name: h.name.clone(),
                    namespace: h.namespace.clone(),
                    labels: h.labels.clone(),
                    namespace_labels: namespace_labels.get(&h.namespace).cloned().unwrap_or_default(),
                    metadata: h.metadata.clone(),
                    spec: h.spec.clone(),
                    step: step.index,
                    mutations: crate::engine::executed_mutations(before),
                    errors: h.missing_errors() + before.iter().filter(|s| s.error_code().is_some()).count() as u32,
                };
                let target = normalized_target(&s.tool, &args, &h.namespace);
                // Unknown until targets are given, where the gate reads one.
                let live = if observed.is_some() { None } else { Some(Value::Null) };
                out.push(Recorded {
                    run: h.id(),
                    step: step.index,
                    recorded: step.policy.as_ref().and_then(|p| {
                        let verdict = Verdict::parse(&p.verdict)?;
                        Some(Judged { verdict, decided_by: p.decided_by.clone(), uncertain: false })
                    }),
                    judged_digest: step.policy.as_ref().and_then(|p| p.target_digest.clone()),
                    input: PolicyInput::new(&s, target.as_ref(), run, live),
                    observed,
                });
            }
        }
    }
    Ok(out)
}

/// `proposal.target` as the tools compute it (none if the arguments name no
/// valid target: the operator would have refused the proposal before
/// judging it).
fn normalized_target(tool: &str, args: &Value, namespace: &str) -> Option<Target> {
    let target = match crate::k8s::tools::target_of(tool, args, namespace) {
        Some(t) => t.map(Some),
        None => crate::tools::fs::target_of(tool, args).unwrap_or(Ok(None)),
    };
    target.ok().flatten()
}

/// The proposals of a history, with their position in it.
fn replayable(steps: &[StepRecord]) -> impl Iterator<Item = (usize, &StepRecord, crate::protocol::NextStep)> {
    steps.iter().enumerate().filter_map(|(i, s)| s.proposal().map(|step| (i, s, step)))
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
    /// Rules that read `target` where none was given, when they could
    /// change the verdict: the verdict is then not known.
    pub needs_target: Vec<String>,
    /// Whether the given target is the one the gate judged live (by
    /// digest); none when no target was given or none was recorded.
    pub target_matches: Option<bool>,
}

impl Replayed {
    pub fn line(&self) -> String {
        let mut line = format!(
            "{} step {} {}: {} by {}{}",
            self.run,
            self.step,
            self.tool,
            self.verdict.as_str(),
            self.decided_by.as_deref().unwrap_or("default-deny"),
            if self.message.is_empty() { String::new() } else { format!(" ({})", self.message) }
        ) + &self.audit.iter().map(|a| format!(" [{a}]")).collect::<String>();
        if !self.needs_target.is_empty() {
            line.push_str(&format!(" [needs a target: {} read it; pass --targets]", self.needs_target.join(", ")));
        }
        if self.target_matches == Some(false) {
            line.push_str(" [the given target differs from the one judged live]");
        }
        // The tool and the run name come from a recorded history.
        crate::text::shown(&line).into_owned()
    }

    pub fn to_json(&self) -> Value {
        json!({"run": self.run, "step": self.step, "tool": self.tool, "verdict": self.verdict.as_str(), "decidedBy": self.decided_by, "message": self.message, "needsTarget": self.needs_target, "targetMatches": self.target_matches})
    }

    /// This verdict and its rule.
    pub fn judged(&self) -> Judged {
        Judged { verdict: self.verdict, decided_by: self.decided_by.clone(), uncertain: !self.needs_target.is_empty() }
    }
}

/// Judge every recorded proposal.
pub fn replay(policies: &[Loaded], recorded: &[Recorded]) -> Vec<Replayed> {
    recorded
        .iter()
        .map(|r| {
            let j = judge(policies, &r.input);
            let given = r.input.target.as_ref().filter(|_| r.observed.is_some());
            let target_matches = match (given, &r.judged_digest) {
                (Some(t), Some(d)) => Some(crate::engine::gate::target_digest(t).as_ref() == Some(d)),
                _ => None,
            };
            Replayed {
                run: r.run.clone(),
                step: r.step,
                tool: r.input.tool.clone(),
                needs_target: if j.uncertain() { j.needs_target.clone() } else { vec![] },
                verdict: j.verdict,
                decided_by: j.decided_by,
                message: j.message,
                audit: j.audit,
                target_matches,
            }
        })
        .collect()
}
