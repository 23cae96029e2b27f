//! Approvals: a proposal that a policy sends for approval waits, with its
//! digest, the run's UID and its dry-run result in the status, until an
//! XctApproval for that run instance (name and UID), step and exact digest
//! says Approve or Reject, or the timeout rejects it. Approvals for another
//! instance or digest, by the run's own creator, or for a run whose creator
//! is unknown, do not count. (What an approval then executes is judged and
//! dry-run again by the engine.)
//!
//! Each approval considered for a step gets a status: Accepted, or Ignored
//! with the reason, and the run UID it was considered for. An approval that
//! cannot be read as one ([`Readable`]) counts for no run and is Ignored
//! with why; the others are decided as usual.

use chrono::{DateTime, Utc};
use kube::api::{Api, ListParams, Patch, PatchParams};
use serde_json::json;

use crate::crd::readable::read;
use crate::crd::run::CREATED_BY;
use crate::crd::{ApprovalDecision, ApprovalState, Readable, XctApproval, XctApprovalStatus, XctRun};
use crate::engine::Approval as Answer;
use crate::engine::record::StepRecord;

/// Decide from the approvals in the run's namespace, and write the status
/// of each approval considered.
pub async fn check(client: &kube::Client, run: &XctRun, step: &StepRecord) -> Result<Answer, kube::Error> {
    let ns = run.metadata.namespace.clone().unwrap_or_default();
    let api: Api<Readable<XctApproval>> = Api::namespaced(client.clone(), &ns);
    let (approvals, unreadable) = Readable::split(api.list(&ListParams::default()).await?.items);
    let decided = decide(run, step, &approvals, Utc::now());
    let uid = run.metadata.uid.clone().unwrap_or_default();
    let considered = decided.considered.iter().map(|(approval, state, message)| {
        let status = XctApprovalStatus::new(
            *state,
            message.clone(),
            &uid,
            approval.metadata.generation,
            approval.status.as_ref(),
        );
        (&approval.metadata, approval.status.clone(), status)
    });
    // Not matched to any run: its own run UID may be what cannot be read.
    let ignored = unreadable.iter().map(|u| {
        let message = format!("{u}; it counts for no run: create a new XctApproval");
        let stored: Option<XctApprovalStatus> = read(&u.status).ok();
        let status =
            XctApprovalStatus::new(ApprovalState::Ignored, message, "", u.metadata.generation, stored.as_ref());
        (&u.metadata, stored, status)
    });
    for (meta, stored, status) in considered.chain(ignored).collect::<Vec<_>>() {
        if status.differs_from(stored.as_ref()) {
            let name = meta.name.clone().unwrap_or_default();
            api.patch_status(&name, &PatchParams::default(), &Patch::Merge(json!({"status": status}))).await?;
        }
    }
    Ok(decided.answer)
}

/// What the approvals in a namespace say about one pending step.
pub struct Decided<'a> {
    pub answer: Answer,
    /// Each approval naming the run and step that was looked at, in order:
    /// Accepted (at most one, the last) or Ignored, with why.
    pub considered: Vec<(&'a XctApproval, ApprovalState, String)>,
}

/// Pure: the answer for `step` given `approvals` at `now`.
pub fn decide<'a>(run: &XctRun, step: &StepRecord, approvals: &'a [XctApproval], now: DateTime<Utc>) -> Decided<'a> {
    let name = run.metadata.name.clone().unwrap_or_default();
    let uid = run.metadata.uid.clone().unwrap_or_default();
    let creator = run.metadata.annotations.as_ref().and_then(|a| a.get(CREATED_BY)).filter(|c| !c.is_empty()).cloned();
    let digest = step.proposal_digest.clone().unwrap_or_default();
    let mut considered = Vec::new();
    let mut sorted: Vec<&XctApproval> =
        approvals.iter().filter(|a| a.spec.run_name == name && a.spec.step == step.index).collect();
    sorted.sort_by_key(|a| a.metadata.creation_timestamp.clone().map(|t| t.0));
    for a in sorted {
        let why_ignored = if a.spec.run_uid != uid {
            Some(format!("runUid {:?} is not this run's ({uid})", a.spec.run_uid))
        } else if a.spec.proposal_digest != digest {
            Some(format!("proposalDigest: digest does not match the proposal of step {} ({digest})", step.index))
        } else if creator.is_none() {
            Some(format!("the run has no {CREATED_BY} annotation, so who created it is unknown and no approval counts"))
        } else if creator.as_deref() == Some(a.spec.approver.as_str()) || a.spec.approver.is_empty() {
            Some(format!("{:?} created the run (or is empty) and cannot approve it", a.spec.approver))
        } else {
            None
        };
        if let Some(why) = why_ignored {
            considered.push((a, ApprovalState::Ignored, why));
            continue;
        }
        let (answer, said) = match a.spec.decision {
            ApprovalDecision::Approve => {
                (Answer::Approved { approver: a.spec.approver.clone() }, format!("approved step {}", step.index))
            }
            ApprovalDecision::Reject => (
                Answer::Rejected { approver: a.spec.approver.clone(), reason: a.spec.reason.clone() },
                format!("rejected step {}", step.index),
            ),
        };
        considered.push((a, ApprovalState::Accepted, said));
        return Decided { answer, considered };
    }
    let started = DateTime::parse_from_rfc3339(&step.started_at).map(|t| t.with_timezone(&Utc)).unwrap_or(now);
    let timeout = run.spec.limits.approval_timeout_seconds;
    let answer = if (now - started).num_seconds() >= i64::from(timeout) {
        Answer::TimedOut { after_secs: timeout }
    } else {
        let ignored = considered
            .iter()
            .map(|(a, _, why)| format!("{}: {why}", a.metadata.name.as_deref().unwrap_or_default()))
            .collect();
        Answer::Waiting { ignored }
    };
    Decided { answer, considered }
}
