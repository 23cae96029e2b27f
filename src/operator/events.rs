//! One Kubernetes Event per step on the XctRun, so `kubectl describe`
//! tells the run's story.

use k8s_openapi::api::core::v1::ObjectReference;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};

use crate::engine::record::{StepRecord, VerdictOutcome};

/// Publishes events as the operator.
pub struct Events {
    recorder: Recorder,
}

impl Events {
    pub fn new(client: kube::Client) -> Self {
        let reporter = Reporter { controller: "xct-operator".into(), instance: std::env::var("POD_NAME").ok() };
        Events { recorder: Recorder::new(client, reporter) }
    }

    /// Best effort: a failed event never fails the step.
    pub async fn publish(&self, reference: &ObjectReference, warning: bool, reason: &str, note: String) {
        let mut note = note;
        if note.len() > 1000 {
            let mut cut = 1000;
            while !note.is_char_boundary(cut) {
                cut -= 1;
            }
            note.truncate(cut);
        }
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
        // The digest in the event anchors the hash chain outside the run.
        let note = format!("{} [digest {}]", crate::local::step_line(step), step.digest.as_deref().unwrap_or("-"));
        self.publish(reference, warning, reason, note).await;
    }
}
