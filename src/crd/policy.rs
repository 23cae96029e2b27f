//! `XctPolicy`: the veto layer.

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::run::Condition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

/// Rules that decide which proposals may execute. Deny overrides allow;
/// what no policy allows is vetoed.
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "xct.dev",
    version = "v1alpha1",
    kind = "XctPolicy",
    shortname = "xp",
    category = "xct",
    status = "XctPolicyStatus",
    doc = "Rules that allow, deny or require approval for the proposals of XctRuns. Deny overrides allow; what no policy allows is vetoed.",
    printcolumn = r#"{"name":"Enforcement","type":"string","jsonPath":".spec.enforcement"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Runs","type":"integer","jsonPath":".status.runsDecided"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#,
    printcolumn = r#"{"name":"Message","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].message","priority":1}"#
)]
#[serde(rename_all = "camelCase")]
pub struct XctPolicySpec {
    /// Which runs this policy applies to (all runs when empty).
    #[serde(default)]
    pub selector: PolicySelector,
    /// Enforce decides; Audit only records what it would have decided.
    #[serde(default)]
    pub enforcement: Enforcement,
    /// The rules, evaluated in order; names are unique (a list map keyed
    /// by name, so a GitOps tool's server-side apply merges rule by rule).
    #[schemars(length(min = 1, max = 256))]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"]))]
    pub rules: Vec<PolicyRule>,
}

/// Which runs a policy selects.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PolicySelector {
    /// Labels of the run's namespace (a Kubernetes label selector).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_selector: Option<LabelSelector>,
    /// Labels of the run (a Kubernetes label selector).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_selector: Option<LabelSelector>,
}

/// Enforce or only audit.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum Enforcement {
    #[default]
    Enforce,
    Audit,
}

/// What a matching rule decides.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
pub enum Effect {
    Allow,
    Deny,
    RequireApproval,
}

/// One rule.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PolicyRule {
    /// Unique within the policy; named in step records.
    #[schemars(length(min = 1, max = 63))]
    pub name: String,
    /// Tool name patterns (`*` matches any run of characters), e.g. `k8s.*`.
    #[schemars(length(min = 1, max = 64))]
    pub tools: Vec<String>,
    /// Allow, Deny or RequireApproval.
    pub effect: Effect,
    /// Optional CEL condition over `proposal`, `run` and `target`; the rule
    /// matches only when it is true. An evaluation error vetoes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 4096))]
    pub when: Option<String>,
    /// Said to the model (and recorded) when this rule decides.
    #[serde(default)]
    #[schemars(length(max = 1024))]
    pub message: String,
}

/// What the operator observed of a policy.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct XctPolicyStatus {
    /// The generation the conditions describe.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Ready (compiled), Stalled and Invalid (it does not compile: naming
    /// the rule and the CEL error; it vetoes every run it selects), and
    /// Reconciling (always False): the kstatus conditions.
    #[serde(default)]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// How many distinct runs this policy has decided for.
    #[serde(default)]
    pub runs_decided: u64,
}
