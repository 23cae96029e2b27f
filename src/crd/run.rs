//! `XctRun`: one goal pursued by a model, one step at a time.

use std::borrow::Cow;
use std::time::Duration;

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::engine::record::StepRecord;
use crate::engine::{Limits, RunConfig};
use crate::model::Sampling;
use crate::text::shown;
use crate::tools::{ToolSet, ToolSetError};

/// Annotation holding the user who created a run; the chart's
/// ValidatingAdmissionPolicy requires it to be the authenticated creator.
pub const CREATED_BY: &str = "xct.dev/created-by";

/// Longest goal in bytes (the schema's `maxLength` counts characters).
pub const MAX_GOAL_BYTES: usize = 8 * 1024;
/// kube-apiserver's rule for ServiceAccount names, a DNS-1123 subdomain
/// (`IsDNS1123Subdomain`): labels of lowercase alphanumerics and `-`,
/// alphanumeric at both ends, joined by single dots.
const SUBDOMAIN_PATTERN: &str = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$";

/// A goal for a model to reach by proposing tool calls, one per step, each
/// validated by the system before anything executes.
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "xct.dev",
    version = "v1alpha1",
    kind = "XctRun",
    namespaced,
    shortname = "xr",
    category = "xct",
    status = "XctRunStatus",
    doc = "An XCT run: a goal pursued by a model one validated step at a time, with the full step history in its status.",
    printcolumn = r#"{"name":"Phase","type":"string","jsonPath":".status.phase"}"#,
    printcolumn = r#"{"name":"Steps","type":"integer","jsonPath":".status.stepCount"}"#,
    printcolumn = r#"{"name":"Last Tool","type":"string","jsonPath":".status.lastTool"}"#,
    printcolumn = r#"{"name":"Last Outcome","type":"string","jsonPath":".status.lastOutcome"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#,
    printcolumn = r#"{"name":"Message","type":"string","jsonPath":".status.message","priority":1}"#
)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "self.tools.all(t, self.tools.exists_one(u, u == t))", "message": "spec.tools must not repeat a tool"},
]))]
pub struct XctRunSpec {
    /// What the run should achieve, in plain words for the model. Immutable.
    #[schemars(length(min = 1, max = 8192))]
    #[schemars(extend("x-kubernetes-validations" = [{"rule": "self == oldSelf", "message": "spec.goal is immutable"}]))]
    pub goal: String,
    /// Names of the tools this run may use (from the operator's catalogue).
    #[schemars(length(min = 1, max = 64), inner(length(min = 1, max = 64)))]
    pub tools: Vec<String>,
    /// ServiceAccount in the run's own namespace that every tool call acts
    /// as (by impersonation). Required in a cluster; a plain name, so a run
    /// cannot name a ServiceAccount of another namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253), regex(pattern = SUBDOMAIN_PATTERN))]
    pub service_account_name: Option<String>,
    /// Budgets that end the run.
    #[serde(default)]
    pub limits: RunLimits,
    /// Sampling parameters for the model.
    #[serde(default)]
    pub model: ModelParams,
    /// Pause the run after the current step; resume by setting it false.
    #[serde(default)]
    pub suspend: bool,
}

/// Budgets of a run. Exhausting one ends the run with BUDGET_EXHAUSTED.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RunLimits {
    /// Most steps (model decisions) the run may take.
    #[serde(default = "default_max_steps")]
    #[schemars(range(min = 1, max = 10000))]
    pub max_steps: u32,
    /// Consecutive error signals after which the run fails.
    #[serde(default = "default_max_errors")]
    #[schemars(range(min = 1, max = 1000))]
    pub max_consecutive_errors: u32,
    /// Wall-clock seconds from the first step after which the run fails.
    #[serde(default = "default_timeout")]
    #[schemars(range(min = 1, max = 604800))]
    pub timeout_seconds: u32,
    /// Seconds a proposal may wait for an XctApproval before it is rejected.
    #[serde(default = "default_approval_timeout")]
    #[schemars(range(min = 1, max = 604800))]
    pub approval_timeout_seconds: u32,
}

fn default_approval_timeout() -> u32 {
    3600
}

fn default_max_steps() -> u32 {
    20
}
fn default_max_errors() -> u32 {
    5
}
fn default_timeout() -> u32 {
    3600
}

impl Default for RunLimits {
    fn default() -> Self {
        RunLimits {
            max_steps: default_max_steps(),
            max_consecutive_errors: default_max_errors(),
            timeout_seconds: default_timeout(),
            approval_timeout_seconds: default_approval_timeout(),
        }
    }
}

/// Sampling parameters.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ModelParams {
    /// Sampling temperature; 0 is greedy (deterministic).
    #[serde(default)]
    #[schemars(range(min = 0.0, max = 2.0))]
    pub temperature: f32,
    /// Random seed for sampling.
    #[serde(default = "default_seed")]
    pub seed: u32,
    /// Most tokens per decision; a longer one is cut off and refused. It
    /// also bounds the free texts so a decision closes in time: the step's
    /// goal to maxTokens/4 characters, the free string arguments of a tool
    /// (a file's content, a label selector) to a share of maxTokens/2, the
    /// done message to maxTokens/2. Raise it for longer file contents.
    #[serde(default = "default_max_tokens")]
    #[schemars(range(min = 1, max = 4096))]
    pub max_tokens: u32,
}

fn default_seed() -> u32 {
    42
}
fn default_max_tokens() -> u32 {
    256
}

impl Default for ModelParams {
    fn default() -> Self {
        ModelParams { temperature: 0.0, seed: default_seed(), max_tokens: default_max_tokens() }
    }
}

/// A status condition: Kubernetes' own `metav1.Condition`.
pub use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;

/// Set a condition, keeping `lastTransitionTime` when the status is unchanged.
pub fn set_condition(
    conditions: &mut Vec<Condition>,
    type_: &str,
    status: bool,
    reason: &str,
    message: &str,
    generation: Option<i64>,
) {
    let status = if status { "True" } else { "False" };
    set_condition_status(conditions, type_, status, reason, message, generation);
}

/// [`set_condition`] with the status spelled out: True, False or Unknown.
pub fn set_condition_status(
    conditions: &mut Vec<Condition>,
    type_: &str,
    status: &str,
    reason: &str,
    message: &str,
    generation: Option<i64>,
) {
    let status = status.to_string();
    let now = k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(k8s_openapi::jiff::Timestamp::now());
    match conditions.iter_mut().find(|c| c.type_ == type_) {
        Some(c) => {
            if c.status != status {
                c.last_transition_time = now;
            }
            c.status = status;
            c.reason = reason.into();
            c.message = shown(message).into_owned();
            c.observed_generation = generation;
        }
        None => conditions.push(Condition {
            type_: type_.into(),
            status,
            reason: reason.into(),
            message: shown(message).into_owned(),
            last_transition_time: now,
            observed_generation: generation,
        }),
    }
}

/// Where a run stands.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema, Default)]
pub enum RunPhase {
    #[default]
    Pending,
    Running,
    AwaitingApproval,
    Suspended,
    Succeeded,
    Failed,
}

impl RunPhase {
    /// Every phase, in lifecycle order.
    pub const ALL: [RunPhase; 6] = [
        RunPhase::Pending,
        RunPhase::Running,
        RunPhase::AwaitingApproval,
        RunPhase::Suspended,
        RunPhase::Succeeded,
        RunPhase::Failed,
    ];

    pub fn is_terminal(self) -> bool {
        matches!(self, RunPhase::Succeeded | RunPhase::Failed)
    }
}

/// The observed state of a run: its phase and its full step history.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct XctRunStatus {
    /// Pending, Running, AwaitingApproval, Suspended, Succeeded or Failed.
    #[serde(default)]
    pub phase: RunPhase,
    /// The spec generation this status reflects.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Valid (the spec is usable), Completed (the run has ended), and the
    /// kstatus conditions Ready, Reconciling and Stalled, plus Succeeded
    /// (Unknown until the run ends).
    #[serde(default)]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// Why the run is in this phase (the done message, or the failure),
    /// with control and bidirectional characters written as escapes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// When the first step began (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
    /// Number of recorded steps.
    #[serde(default)]
    pub step_count: u32,
    /// Steps whose signal was an error.
    #[serde(default)]
    pub error_count: u32,
    /// Tool of the last proposal, with control and bidirectional
    /// characters written as escapes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_tool: Option<String>,
    /// Outcome of the last step: Done, Success or an error code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_outcome: Option<String>,
    /// The most recent steps, in order (older ones are in `archive`).
    #[serde(default)]
    pub steps: Vec<StepRecord>,
    /// Older steps, moved in order into ConfigMaps owned by the run, so the
    /// status stays small whatever the run's length. `xct history` puts
    /// them back together.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub archive: Vec<ArchiveChunk>,
}

/// One ConfigMap of archived steps.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ArchiveChunk {
    /// The ConfigMap (same namespace, owned by the run).
    pub config_map: String,
    /// Index of its first step.
    pub first: u32,
    /// Index of its last step.
    pub last: u32,
    /// Digest of its last step (the chain continues from it).
    pub last_digest: String,
    /// Steps in it whose signal was an error.
    #[serde(default)]
    pub errors: u32,
}

impl XctRunStatus {
    /// The digest the kept steps' chain starts from ("" without an archive).
    pub fn chain_start(&self) -> &str {
        self.archive.last().map_or("", |a| a.last_digest.as_str())
    }

    /// The kstatus conditions (what Flux health checks, `kubectl wait` and
    /// cli-utils read) and `Succeeded`, derived from the phase and the
    /// `Valid` condition: `Reconciling` while the run works toward its goal
    /// (running or awaiting approval), `Stalled` when it failed or its spec
    /// is invalid, `Ready` once it succeeded; `Succeeded` is Unknown until
    /// the run ends, then True or False
    /// (`kubectl wait --for=condition=Succeeded`).
    fn refresh_kstatus(&mut self) {
        let generation = self.observed_generation;
        let message = self.message.clone().unwrap_or_default();
        let invalid = self.conditions.iter().any(|c| c.type_ == "Valid" && c.status == "False");
        let (ready, reconciling, stalled, succeeded, reason) = match self.phase {
            _ if invalid => ("False", "False", "True", "Unknown", "InvalidSpec"),
            RunPhase::Pending | RunPhase::Running => ("False", "True", "False", "Unknown", "Running"),
            RunPhase::AwaitingApproval => ("False", "True", "False", "Unknown", "AwaitingApproval"),
            RunPhase::Suspended => ("False", "False", "False", "Unknown", "Suspended"),
            RunPhase::Succeeded => ("True", "False", "False", "True", "Succeeded"),
            RunPhase::Failed => ("False", "False", "True", "False", "Failed"),
        };
        for (type_, status) in
            [("Ready", ready), ("Reconciling", reconciling), ("Stalled", stalled), ("Succeeded", succeeded)]
        {
            set_condition_status(&mut self.conditions, type_, status, reason, &message, generation);
        }
    }

    /// Recompute the summary fields from `steps`, and the kstatus
    /// conditions. The summary is what `kubectl get` and `describe` show a
    /// person, so what a model wrote is in it as escapes (`text::shown`);
    /// only `steps` keep it as it was.
    pub fn refresh_summary(&mut self) {
        if let Some(message) = &self.message
            && let Cow::Owned(escaped) = shown(message)
        {
            self.message = Some(escaped);
        }
        self.refresh_kstatus();
        let start = self.chain_start().to_string();
        crate::engine::record::seal(&mut self.steps, &start);
        self.step_count = crate::engine::steps_taken(&self.steps).max(self.archive.last().map_or(0, |a| a.last));
        self.error_count = self.archive.iter().map(|a| a.errors).sum::<u32>()
            + self.steps.iter().filter(|s| s.error_code().is_some()).count() as u32;
        self.last_tool = self.steps.last().and_then(|s| s.tool.as_deref()).map(|t| shown(t).into_owned());
        self.last_outcome = self.steps.last().map(|s| s.outcome_label().to_string());
    }
}

impl XctRunSpec {
    /// Everything that makes the spec unusable, each a line naming the
    /// field; empty when the spec is usable. First the CRD's own schema
    /// ([`spec_schema`]: types, bounds, the ServiceAccount name's pattern),
    /// checked here too because the CRD in a cluster may be older or
    /// loosened, and a local manifest has no API server; then what a schema
    /// cannot say: a blank goal, the goal's bytes, tools not among the
    /// `known` ones or repeated.
    pub fn problems(&self, known: &[String]) -> Vec<String> {
        let mut out = schema_problems(self);
        if self.goal.trim().is_empty() {
            out.push("spec.goal is empty".to_string());
        }
        if self.goal.len() > MAX_GOAL_BYTES {
            out.push(format!("spec.goal is {} bytes; at most {MAX_GOAL_BYTES}", self.goal.len()));
        }
        if let Err(e) = crate::tools::check_names(&self.tools, known) {
            out.push(format!("spec.tools: {e}"));
        }
        out
    }

    /// The engine's view of this run.
    pub fn run_config(
        &self,
        id: impl Into<String>,
        acting_as: impl Into<String>,
        catalogue: &ToolSet,
    ) -> Result<RunConfig, ToolSetError> {
        Ok(RunConfig {
            id: id.into(),
            acting_as: acting_as.into(),
            goal: self.goal.clone(),
            tools: catalogue.select(&self.tools)?,
            limits: Limits {
                max_steps: self.limits.max_steps,
                max_consecutive_errors: self.limits.max_consecutive_errors,
                timeout: Some(Duration::from_secs(self.limits.timeout_seconds.into())),
            },
            sampling: Sampling {
                temperature: self.model.temperature,
                seed: self.model.seed,
                max_tokens: self.model.max_tokens,
            },
        })
    }
}

/// The schema of `spec` in the CRD that `xct crdgen` writes: the one the
/// API server enforces at admission.
fn spec_schema() -> &'static serde_json::Value {
    static SCHEMA: std::sync::OnceLock<serde_json::Value> = std::sync::OnceLock::new();
    SCHEMA.get_or_init(|| {
        let crd = serde_json::to_value(<XctRun as kube::CustomResourceExt>::crd()).unwrap_or_default();
        crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"].clone()
    })
}

/// The violations of [`spec_schema`], each as `spec.field: why`, cut to
/// [`crate::text::MAX_QUOTED_CHARS`] (a violation quotes the offending value).
fn schema_problems(spec: &XctRunSpec) -> Vec<String> {
    let value = serde_json::to_value(spec).unwrap_or_default();
    let Err(violations) = crate::engine::gate::check_schema(spec_schema(), &value) else { return vec![] };
    violations
        .into_iter()
        .map(|v| {
            let line = match v.split_once(": ") {
                Some((at, why)) if at.starts_with('/') => format!("spec{}: {why}", at.replace('/', ".")),
                _ => format!("spec: {v}"),
            };
            crate::text::clip(&line, crate::text::MAX_QUOTED_CHARS)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(yaml: &str) -> XctRunSpec {
        serde_yaml::from_str(&format!("goal: g\ntools: [fs.read]\n{yaml}")).unwrap()
    }

    fn problems(yaml: &str) -> Vec<String> {
        spec(yaml).problems(&["fs.read".to_string(), "fs.write".to_string()])
    }

    #[test]
    fn a_spec_within_the_crds_bounds_has_no_problems() {
        assert_eq!(problems("serviceAccountName: xct-runner.v2\nlimits: {maxSteps: 10000}"), Vec::<String>::new());
    }

    #[test]
    fn every_bound_the_crd_declares_is_a_problem_naming_its_field() {
        for (yaml, field) in [
            ("limits: {maxSteps: 10001}", "spec.limits.maxSteps: 10001 is greater than the maximum of 10000"),
            ("limits: {maxConsecutiveErrors: 0}", "spec.limits.maxConsecutiveErrors: 0 is less than the minimum of 1"),
            ("limits: {approvalTimeoutSeconds: 604801}", "spec.limits.approvalTimeoutSeconds: 604801"),
            ("model: {temperature: 2.5}", "spec.model.temperature: 2.5"),
            ("model: {maxTokens: 0}", "spec.model.maxTokens: 0"),
            ("serviceAccountName: 'a:b'", "spec.serviceAccountName: \"a:b\" does not match"),
            ("serviceAccountName: a..b", "spec.serviceAccountName: \"a..b\" does not match"),
            ("serviceAccountName: ''", "spec.serviceAccountName: \"\" is shorter than 1 character"),
        ] {
            let found = problems(yaml);
            let at = field.split(':').next().unwrap_or_default();
            assert!(found.iter().any(|p| p.starts_with(field)), "{yaml}: {found:?}");
            assert!(found.iter().all(|p| p.starts_with(at)), "{yaml}: only {at} is wrong: {found:?}");
        }
    }

    #[test]
    fn what_a_schema_cannot_say_is_checked_too_and_no_line_is_unbounded() {
        let found = spec("").problems(&[]);
        assert_eq!(found, vec![r#"spec.tools: unknown tool "fs.read"; known tools: []"#.to_string()]);
        let repeated: XctRunSpec = serde_yaml::from_str("goal: ' '\ntools: [fs.read, fs.read]").unwrap();
        assert_eq!(
            repeated.problems(&["fs.read".to_string()]),
            vec!["spec.goal is empty".to_string(), r#"spec.tools: tool "fs.read" is listed twice"#.to_string()]
        );
        let long = spec(&format!("serviceAccountName: '{}'", "a:".repeat(5000)));
        let found = long.problems(&["fs.read".to_string()]);
        assert_eq!(found.len(), 2, "pattern and length: {found:?}");
        assert!(found.iter().all(|p| p.chars().count() <= crate::text::MAX_QUOTED_CHARS + 3), "{found:?}");
    }
}
