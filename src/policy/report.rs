//! `xct policy test` as a CI gate: every replayed verdict compared with a
//! baseline (another set of policies, or the verdicts recorded in the
//! histories), pinned expectations checked, and the result rendered for a
//! person (text), a program (json), a CI test report (junit) or GitHub
//! annotations (github). A changed verdict or a failed expectation fails
//! the gate.

use std::path::Path;

use serde::Deserialize;
use serde_json::{Value, json};

use super::Verdict;
use super::offline::{Judged, OfflineError, Replayed};

/// How a replayed verdict compares with its baseline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    Unchanged,
    NewlyAllowed,
    NewlyDenied,
    NewlyNeedingApproval,
    /// The baseline has no verdict for it (the step was refused before the
    /// policies, or recorded without any): nothing to compare.
    NoBaseline,
    /// A rule reads `target` and none was given (`--targets`): the verdict
    /// is not known, so neither a change nor a false deny is reported.
    NeedsTarget,
}

impl Change {
    fn of(before: Option<&Judged>, now: &Replayed) -> Self {
        if !now.needs_target.is_empty() || before.is_some_and(|b| b.uncertain) {
            return Change::NeedsTarget;
        }
        let now = now.verdict;
        match before {
            None => Change::NoBaseline,
            Some(b) if b.verdict == now => Change::Unchanged,
            Some(_) => match now {
                Verdict::Allow => Change::NewlyAllowed,
                Verdict::Deny => Change::NewlyDenied,
                Verdict::RequireApproval => Change::NewlyNeedingApproval,
            },
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Change::Unchanged => "unchanged",
            Change::NewlyAllowed => "newly allowed",
            Change::NewlyDenied => "newly denied",
            Change::NewlyNeedingApproval => "newly needing approval",
            Change::NoBaseline => "no baseline",
            Change::NeedsTarget => "needs a target",
        }
    }

    fn changed(self) -> bool {
        matches!(self, Change::NewlyAllowed | Change::NewlyDenied | Change::NewlyNeedingApproval)
    }
}

/// A pinned verdict: "step 5 of demo/scale-web must stay Deny".
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expectation {
    /// `namespace/name` of the run.
    pub run: String,
    pub step: u32,
    /// Allow, Deny or RequireApproval.
    pub verdict: String,
}

/// The expectations in a YAML list file.
pub fn load_expectations(path: &Path) -> Result<Vec<Expectation>, OfflineError> {
    let read = |message: String| OfflineError::Read { path: path.into(), message };
    let text = std::fs::read_to_string(path).map_err(|e| read(e.to_string()))?;
    let list: Vec<Expectation> =
        serde_yaml::from_str(&text).map_err(|e| read(format!("not a list of expectations: {e}")))?;
    for e in &list {
        if Verdict::parse(&e.verdict).is_none() {
            return Err(read(format!(
                "{} step {}: verdict {:?} is not Allow, Deny or RequireApproval",
                e.run, e.step, e.verdict
            )));
        }
    }
    Ok(list)
}

/// One replayed proposal, compared.
#[derive(Debug, Clone)]
pub struct Case {
    pub replayed: Replayed,
    pub before: Option<Judged>,
    pub change: Change,
}

/// The gate's result.
#[derive(Debug, Clone)]
pub struct Report {
    pub cases: Vec<Case>,
    /// Expectations that did not hold, each said in words.
    pub failed: Vec<String>,
}

/// Output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Text,
    Json,
    Junit,
    Github,
}

impl Report {
    /// Compare `replayed` with `baseline` (same order) and check `expectations`.
    pub fn new(replayed: Vec<Replayed>, baseline: Vec<Option<Judged>>, expectations: &[Expectation]) -> Self {
        let cases: Vec<Case> = replayed
            .into_iter()
            .zip(baseline)
            .map(|(replayed, before)| Case { change: Change::of(before.as_ref(), &replayed), replayed, before })
            .collect();
        let failed = expectations
            .iter()
            .filter_map(|e| {
                let case = cases.iter().find(|c| c.replayed.run == e.run && c.replayed.step == e.step);
                match case {
                    None => Some(format!(
                        "{} step {}: expected {}, but no such proposal was replayed",
                        e.run, e.step, e.verdict
                    )),
                    Some(c) if c.replayed.verdict.as_str() != e.verdict => {
                        Some(format!("{} step {}: expected {}, got {}", e.run, e.step, e.verdict, c.replayed.line()))
                    }
                    Some(_) => None,
                }
            })
            .collect();
        Report { cases, failed }
    }

    fn count(&self, change: Change) -> usize {
        self.cases.iter().filter(|c| c.change == change).count()
    }

    /// 0: nothing changed and every expectation held; 1: otherwise.
    pub fn exit_code(&self) -> u8 {
        u8::from(self.cases.iter().any(|c| c.change.changed()) || !self.failed.is_empty())
    }

    pub fn summary(&self) -> String {
        let changed = self.cases.iter().filter(|c| c.change.changed()).count();
        format!(
            "{} proposal(s) replayed: {changed} changed ({} newly allowed, {} newly denied, {} newly needing approval), {} unchanged, {} without a baseline, {} needing a target (--targets); {} expectation(s) failed",
            self.cases.len(),
            self.count(Change::NewlyAllowed),
            self.count(Change::NewlyDenied),
            self.count(Change::NewlyNeedingApproval),
            self.count(Change::Unchanged),
            self.count(Change::NoBaseline),
            self.count(Change::NeedsTarget),
            self.failed.len()
        )
    }

    fn change_line(c: &Case) -> String {
        let was = c.before.as_ref().map_or(String::new(), |b| {
            format!(" (was {} by {})", b.verdict.as_str(), b.decided_by.as_deref().unwrap_or("default-deny"))
        });
        format!("{}: {}{was}", c.change.as_str(), c.replayed.line())
    }

    pub fn render(&self, format: Format) -> String {
        let changed = || self.cases.iter().filter(|c| c.change.changed());
        match format {
            Format::Text => {
                let mut lines: Vec<String> = changed().map(Self::change_line).collect();
                lines.extend(self.cases.iter().filter(|c| c.change == Change::NeedsTarget).map(Self::change_line));
                lines.extend(self.failed.iter().map(|f| format!("expectation failed: {f}")));
                lines.push(self.summary());
                lines.join("\n") + "\n"
            }
            Format::Json => {
                let results: Vec<Value> = self
                    .cases
                    .iter()
                    .map(|c| {
                        let mut v = c.replayed.to_json();
                        v["change"] = json!(c.change.as_str());
                        v["before"] = c
                            .before
                            .as_ref()
                            .map_or(Value::Null, |b| json!({"verdict": b.verdict.as_str(), "decidedBy": b.decided_by}));
                        v
                    })
                    .collect();
                let summary = json!({
                    "replayed": self.cases.len(),
                    "newlyAllowed": self.count(Change::NewlyAllowed),
                    "newlyDenied": self.count(Change::NewlyDenied),
                    "newlyNeedingApproval": self.count(Change::NewlyNeedingApproval),
                    "unchanged": self.count(Change::Unchanged),
                    "noBaseline": self.count(Change::NoBaseline),
                    "needsTarget": self.count(Change::NeedsTarget),
                    "failedExpectations": self.failed,
                });
                json!({"results": results, "summary": summary}).to_string() + "\n"
            }
            Format::Junit => {
                let failures = changed().count() + self.failed.len();
                let mut xml = format!(
                    "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites>\n<testsuite name=\"xct policy test\" tests=\"{}\" failures=\"{failures}\">\n",
                    self.cases.len() + self.failed.len()
                );
                for c in &self.cases {
                    let name = format!("step {} {}", c.replayed.step, c.replayed.tool);
                    xml.push_str(&format!(
                        "<testcase classname=\"{}\" name=\"{}\">",
                        escape(&c.replayed.run),
                        escape(&name)
                    ));
                    if c.change.changed() {
                        xml.push_str(&format!("<failure message=\"{}\"/>", escape(&Self::change_line(c))));
                    }
                    xml.push_str("</testcase>\n");
                }
                for f in &self.failed {
                    xml.push_str(&format!(
                        "<testcase classname=\"expectations\" name=\"{}\"><failure message=\"{}\"/></testcase>\n",
                        escape(f),
                        escape(f)
                    ));
                }
                xml + "</testsuite>\n</testsuites>\n"
            }
            Format::Github => {
                let mut lines: Vec<String> = changed()
                    .map(|c| format!("::error title=xct policy test::{}", workflow_escape(&Self::change_line(c))))
                    .collect();
                lines.extend(
                    self.cases.iter().filter(|c| c.change == Change::NeedsTarget).map(|c| {
                        format!("::warning title=xct policy test::{}", workflow_escape(&Self::change_line(c)))
                    }),
                );
                lines.extend(
                    self.failed.iter().map(|f| format!("::error title=xct policy expectation::{}", workflow_escape(f))),
                );
                lines.push(format!("::notice title=xct policy test::{}", workflow_escape(&self.summary())));
                lines.join("\n") + "\n"
            }
        }
    }
}

/// XML attribute escaping.
fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// GitHub workflow command escaping (`%`, CR, LF).
fn workflow_escape(s: &str) -> String {
    s.replace('%', "%25").replace('\r', "%0D").replace('\n', "%0A")
}
