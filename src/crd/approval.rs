//! `XctApproval`: a human decision bound to one exact proposal of one run
//! instance, and what the operator made of it.

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::run::{Condition, set_condition};

/// A human decision on one proposal, bound to its digest.
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "xct.dev",
    version = "v1alpha1",
    kind = "XctApproval",
    namespaced,
    shortname = "xa",
    category = "xct",
    status = "XctApprovalStatus",
    doc = "Approves or rejects one proposal of an XctRun; it counts only if runUid and proposalDigest match that run instance and that exact proposal.",
    printcolumn = r#"{"name":"Run","type":"string","jsonPath":".spec.runName"}"#,
    printcolumn = r#"{"name":"Step","type":"integer","jsonPath":".spec.step"}"#,
    printcolumn = r#"{"name":"Decision","type":"string","jsonPath":".spec.decision"}"#,
    printcolumn = r#"{"name":"Approver","type":"string","jsonPath":".spec.approver"}"#,
    printcolumn = r#"{"name":"State","type":"string","jsonPath":".status.state"}"#,
    printcolumn = r#"{"name":"Digest","type":"string","jsonPath":".spec.proposalDigest","priority":1}"#,
    printcolumn = r#"{"name":"Message","type":"string","jsonPath":".status.message","priority":1}"#
)]
#[serde(rename_all = "camelCase")]
pub struct XctApprovalSpec {
    /// The XctRun (same namespace).
    #[schemars(length(min = 1, max = 253))]
    pub run_name: String,
    /// The run's `metadata.uid`, as shown in its status next to the
    /// proposal digest: an approval never carries over to another run
    /// created later under the same name.
    #[schemars(length(min = 1, max = 128))]
    pub run_uid: String,
    /// The step index awaiting approval.
    #[schemars(range(min = 1))]
    pub step: u32,
    /// sha256 of the proposal, as shown in the run's status.
    #[schemars(length(min = 64, max = 64), regex(pattern = "^[0-9a-f]{64}$"))]
    pub proposal_digest: String,
    /// Approve or Reject.
    pub decision: ApprovalDecision,
    /// Why; told to the model on Reject.
    #[serde(default)]
    #[schemars(length(max = 1024))]
    pub reason: String,
    /// Who decided; the chart's ValidatingAdmissionPolicy requires it to be
    /// the authenticated user that creates the object.
    #[serde(default)]
    pub approver: String,
}

/// Approve or Reject.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum ApprovalDecision {
    Approve,
    Reject,
}

/// What the operator made of an approval, written when it considered it
/// for the step it names.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct XctApprovalStatus {
    /// Accepted (it decided the step) or Ignored (it cannot count).
    pub state: ApprovalState,
    /// What it decided, or why it was ignored.
    #[serde(default)]
    pub message: String,
    /// The run instance (`metadata.uid`) it was considered for.
    #[serde(default)]
    pub applied_to_run_uid: String,
    /// The generation the conditions describe.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Ready (Accepted), Stalled (Ignored: a new approval is needed) and
    /// Reconciling (always False): the kstatus conditions.
    #[serde(default)]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
}

/// Whether an approval counted.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum ApprovalState {
    Accepted,
    Ignored,
}

impl XctApprovalStatus {
    /// The status for `state`, with its kstatus conditions, keeping the
    /// transition times of `previous` where nothing changed.
    pub fn new(
        state: ApprovalState,
        message: String,
        run_uid: &str,
        generation: Option<i64>,
        previous: Option<&XctApprovalStatus>,
    ) -> Self {
        let mut conditions = previous.map(|p| p.conditions.clone()).unwrap_or_default();
        let (accepted, reason) = match state {
            ApprovalState::Accepted => (true, "Accepted"),
            ApprovalState::Ignored => (false, "Ignored"),
        };
        set_condition(&mut conditions, "Ready", accepted, reason, &message, generation);
        set_condition(&mut conditions, "Stalled", !accepted, reason, &message, generation);
        set_condition(&mut conditions, "Reconciling", false, reason, "", generation);
        XctApprovalStatus {
            state,
            message,
            applied_to_run_uid: run_uid.to_string(),
            observed_generation: generation,
            conditions,
        }
    }

    /// Whether writing `self` over `old` changes what it says.
    pub fn differs_from(&self, old: Option<&XctApprovalStatus>) -> bool {
        old.is_none_or(|o| {
            (o.state, &o.message, &o.applied_to_run_uid, o.observed_generation)
                != (self.state, &self.message, &self.applied_to_run_uid, self.observed_generation)
        })
    }
}
