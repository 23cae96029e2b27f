//! Approvals: a proposal that a policy sends for approval waits, with its
//! digest, the run's UID and its dry-run result in the status, until an
//! XctApproval for that run instance (name and UID), step and exact digest
//! says Approve or Reject, or the timeout rejects it. Approvals for another
//! instance or digest, by the run's own creator, or for a run whose creator
//! is unknown, do not count. (What an approval then executes is judged and
//! dry-run again by the engine.)

use chrono::{DateTime, Utc};
use kube::api::{Api, ListParams};

use crate::crd::run::CREATED_BY;
use crate::crd::{ApprovalDecision, XctApproval, XctRun};
use crate::engine::Approval as Answer;
use crate::engine::record::StepRecord;

/// Decide from the approvals in the run's namespace.
pub async fn check(client: &kube::Client, run: &XctRun, step: &StepRecord) -> Result<Answer, kube::Error> {
    let ns = run.metadata.namespace.clone().unwrap_or_default();
    let api: Api<XctApproval> = Api::namespaced(client.clone(), &ns);
    let approvals = api.list(&ListParams::default()).await?.items;
    Ok(decide(run, step, &approvals, Utc::now()))
}

/// Pure: the answer for `step` given `approvals` at `now`.
pub fn decide(run: &XctRun, step: &StepRecord, approvals: &[XctApproval], now: DateTime<Utc>) -> Answer {
    let name = run.metadata.name.clone().unwrap_or_default();
    let uid = run.metadata.uid.clone().unwrap_or_default();
    let creator = run.metadata.annotations.as_ref().and_then(|a| a.get(CREATED_BY)).filter(|c| !c.is_empty()).cloned();
    let digest = step.proposal_digest.clone().unwrap_or_default();
    let mut ignored = Vec::new();
    let mut sorted: Vec<&XctApproval> =
        approvals.iter().filter(|a| a.spec.run_name == name && a.spec.step == step.index).collect();
    sorted.sort_by_key(|a| a.metadata.creation_timestamp.clone().map(|t| t.0));
    for a in sorted {
        let who = a.metadata.name.clone().unwrap_or_default();
        if a.spec.run_uid != uid {
            ignored.push(format!("{who}: runUid {:?} is not this run's ({uid})", a.spec.run_uid));
            continue;
        }
        if a.spec.proposal_digest != digest {
            ignored.push(format!("{who}: digest does not match the proposal"));
            continue;
        }
        let Some(creator) = creator.as_deref() else {
            ignored.push(format!(
                "{who}: the run has no {CREATED_BY} annotation, so who created it is unknown and no approval counts"
            ));
            continue;
        };
        if creator == a.spec.approver || a.spec.approver.is_empty() {
            ignored.push(format!("{who}: {:?} created the run (or is empty) and cannot approve it", a.spec.approver));
            continue;
        }
        return match a.spec.decision {
            ApprovalDecision::Approve => Answer::Approved { approver: a.spec.approver.clone() },
            ApprovalDecision::Reject => {
                Answer::Rejected { approver: a.spec.approver.clone(), reason: a.spec.reason.clone() }
            }
        };
    }
    let started = DateTime::parse_from_rfc3339(&step.started_at).map(|t| t.with_timezone(&Utc)).unwrap_or(now);
    let timeout = run.spec.limits.approval_timeout_seconds;
    if (now - started).num_seconds() >= i64::from(timeout) {
        return Answer::TimedOut { after_secs: timeout };
    }
    Answer::Waiting { ignored }
}
