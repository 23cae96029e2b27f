//! One Kubernetes Event per step on the XctRun, so `kubectl describe`
//! tells the run's story.

use k8s_openapi::api::core::v1::ObjectReference;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};

use crate::engine::record::{StepRecord, VerdictOutcome};
use crate::text::shown;

/// Publishes events as the operator.
pub struct Events {
    recorder: Recorder,
}

impl Events {
    pub fn new(client: kube::Client) -> Self {
        let reporter = Reporter { controller: "xct-operator".into(), instance: std::env::var("POD_NAME").ok() };
        Events { recorder: Recorder::new(client, reporter) }
    }

    /// Best effort: a failed event never fails the step. A note is read by
    /// people (`kubectl describe`, `kubectl get events`), so what a model
    /// or a manifest wrote is in it as escapes ([`shown`]), then bounded.
    pub async fn publish(&self, reference: &ObjectReference, warning: bool, reason: &str, note: String) {
        let note = bounded(shown(&note).into_owned());
        let ev = Event {
            type_: if warning { EventType::Warning } else { EventType::Normal },
            reason: reason.into(),
            note: Some(note),
            action: "Step".into(),
            secondary: None,
        };
        if let Err(e) = self.recorder.publish(&ev, reference).await {
            tracing::debug!(error = %e, "event not published");
        }
    }

    pub async fn step(&self, reference: &ObjectReference, step: &StepRecord) {
        let (warning, reason) = match (step.verdict.outcome, step.error_code()) {
            (VerdictOutcome::Done, _) => (false, "ModelDone"),
            (VerdictOutcome::Invalid, _) => (true, "InvalidProposal"),
            (VerdictOutcome::Vetoed, _) => (true, "ProposalVetoed"),
            (VerdictOutcome::AwaitingApproval, _) => (false, "AwaitingApproval"),
            (VerdictOutcome::Allowed, None) => (false, "StepExecuted"),
            (VerdictOutcome::Allowed, Some(_)) => (true, "StepFailed"),
        };
        self.publish(reference, warning, reason, step_note(step)).await;
    }
}

/// Longest Event note the API server accepts (events.k8s.io/v1: 1 KiB).
pub const MAX_NOTE_BYTES: usize = 1000;

/// A step's note: the digest first (it anchors the hash chain outside the
/// run, so no cut may lose it); for a step awaiting approval, what an
/// XctApproval must name (run UID, step, proposal digest); then the step's
/// line.
pub fn step_note(step: &StepRecord) -> String {
    let approval = match (&step.judged_for, &step.proposal_digest) {
        (Some(judged), Some(proposal)) if step.phase == crate::engine::record::StepPhase::AwaitingApproval => {
            format!(
                "awaits an XctApproval with runUid {} step {} proposalDigest {proposal}; ",
                judged.run_uid, step.index
            )
        }
        _ => String::new(),
    };
    bounded(format!("digest {} {approval}{}", step.digest.as_deref().unwrap_or("-"), crate::local::step_line(step)))
}

/// Cut a note to [`MAX_NOTE_BYTES`] on a character boundary.
fn bounded(mut note: String) -> String {
    note.truncate(note.floor_char_boundary(MAX_NOTE_BYTES));
    note
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_digest_survives_any_cut() {
        let mut step: StepRecord = serde_json::from_value(serde_json::json!({
            "index": 7, "decision": "x", "tool": format!("k8s.{}", "é".repeat(3000)),
            "verdict": {"outcome": "Vetoed", "reason": "r".repeat(5000)},
            "startedAt": "2026-11-28T00:00:00Z", "model": {"promptTokens": 0, "completionTokens": 0, "promptMs": 0, "decodeMs": 0},
            "timings": {"modelMs": 0, "validationMs": 0, "executionMs": 0},
        }))
        .unwrap();
        step.digest = Some("ab".repeat(32));
        let note = step_note(&step);
        assert!(note.len() <= MAX_NOTE_BYTES, "{}", note.len());
        assert!(note.starts_with(&format!("digest {}", "ab".repeat(32))), "{note}");
        // Awaiting approval: the note names what an approval must carry.
        step.phase = crate::engine::record::StepPhase::AwaitingApproval;
        step.proposal_digest = Some("cd".repeat(32));
        step.judged_for = Some(crate::engine::record::JudgedFor { run_uid: "u-1".into(), acting_as: "sa".into() });
        let note = step_note(&step);
        let want = format!(
            "digest {} awaits an XctApproval with runUid u-1 step 7 proposalDigest {}; ",
            "ab".repeat(32),
            "cd".repeat(32)
        );
        assert!(note.starts_with(&want), "{note}");
    }
}
