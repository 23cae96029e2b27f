//! Resolving a step left pending in the history: one interrupted while
//! executing (a read runs again through the gate; a mutation never re-runs)
//! and one awaiting approval (approved: bound to this run instance and
//! identity, judged and dry-run again now, then executed).

use serde_json::json;

use super::record::{JudgedFor, StepRecord, Verdict, VerdictOutcome};
use super::{
    Approval, EngineError, Journal, Judge, RunConfig, Stepped, apply_refusal, complete, execute, gate, run_tool,
};
use crate::protocol::{ErrorCode, Signal};

/// Resolve a step left `Executing` by a stopped controller.
pub(super) async fn recover(
    run: &RunConfig,
    history: &[StepRecord],
    last: &StepRecord,
    judge: Option<&dyn Judge>,
) -> StepRecord {
    let mut rec = last.clone();
    let Some(step) = last.proposal() else {
        let signal = Signal::error(ErrorCode::OutcomeUnknown, "an interrupted step holds no proposal; nothing was run");
        complete(&mut rec, signal, 0);
        return rec;
    };
    if !last.mutating {
        // A read: run it again, through the gate, as now judged.
        let validated = gate::admit(run, &step, judge, history).await;
        if let Some(signal) = validated.refusal.clone() {
            apply_refusal(&mut rec, validated, signal);
            return rec;
        }
        // A read records no intent: it just runs.
        let (signal, took) = run_tool(run, &step).await;
        complete(&mut rec, signal, took);
        return rec;
    }
    let observed = gate::observe(run, &step, judge).await;
    let signal = Signal::error_with(
        ErrorCode::OutcomeUnknown,
        format!(
            "the controller stopped while {} was executing; it was not run again and its effect is unknown: check the current state before retrying",
            step.tool
        ),
        json!({"observed": observed}),
    );
    complete(&mut rec, signal, 0);
    rec
}

/// A step awaiting approval: still waiting, refused, or approved and then
/// executed, if it is still the same run, identity and verdict.
pub(super) async fn resume(
    run: &RunConfig,
    history: &[StepRecord],
    pending: &StepRecord,
    judge: Option<&dyn Judge>,
    journal: &mut dyn Journal,
) -> Result<Stepped, EngineError> {
    let mut rec = pending.clone();
    let rejected = |m: String| Signal::error(ErrorCode::ApprovalRejected, m);
    let approver = match journal.approval(pending).await.map_err(EngineError::Journal)? {
        Approval::Waiting { ignored } => return Ok(Stepped::Waiting { ignored }),
        Approval::Rejected { approver, reason } => {
            let signal = rejected(format!("the proposal was rejected by {approver}: {reason}"));
            return Ok(Stepped::Resolved(vetoed(rec, signal)));
        }
        Approval::TimedOut { after_secs } => {
            let signal = rejected(format!("no approval arrived within {after_secs}s; the proposal was not executed"));
            return Ok(Stepped::Resolved(vetoed(rec, signal)));
        }
        Approval::Approved { approver } => approver,
    };
    let now = JudgedFor { run_uid: run.id.clone(), acting_as: run.acting_as.clone() };
    if pending.judged_for.as_ref() != Some(&now) {
        let signal = Signal::error_with(
            ErrorCode::ApprovalStale,
            format!(
                "the approval by {approver} was for another run instance or identity; the run is now {} acting as {}: nothing was executed",
                now.run_uid, now.acting_as
            ),
            json!({"judgedFor": pending.judged_for, "now": now}),
        );
        return Ok(Stepped::Resolved(vetoed(rec, signal)));
    }
    let Some(step) = pending.proposal() else {
        let signal =
            Signal::error(ErrorCode::ApprovalStale, "the approved step holds no proposal; nothing was executed");
        return Ok(Stepped::Resolved(vetoed(rec, signal)));
    };
    // Judged and dry-run again now: the policies or the cluster may have
    // changed while it waited. An approval never overrides a veto.
    let validated = gate::admit(run, &step, judge, history).await;
    if let Some(signal) = validated.refusal.clone() {
        apply_refusal(&mut rec, validated, signal);
        return Ok(Stepped::Resolved(rec));
    }
    let dry_run = validated.dry_run.as_ref().map_or("", |d| d.summary.as_str());
    rec.verdict = Verdict::new(
        VerdictOutcome::Allowed,
        format!("approved by {approver}; {dry_run}"),
        validated.verdict.decided_by.as_deref(),
    );
    rec.audit = validated.audit;
    rec.policy = validated.policy;
    rec.dry_run = validated.dry_run;
    rec.timings.validation_ms += validated.validation_ms;
    execute(run, &step, &mut rec, true, journal).await?;
    Ok(Stepped::Resolved(rec))
}

/// A pending step refused by its approval (or its absence).
fn vetoed(mut rec: StepRecord, signal: Signal) -> StepRecord {
    let validated = gate::veto(rec.mutating, "approval", signal.clone());
    apply_refusal(&mut rec, validated, signal);
    rec
}
