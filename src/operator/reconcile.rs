//! One reconcile = one model step, as a pipeline:
//! fetch -> recover -> decide (one model call) -> validate -> record intent
//! -> execute -> record result -> requeue.
//!
//! Every status write carries a resourceVersion precondition (see
//! [`super::status`]); the intent of a mutation is recorded before it runs,
//! so a second controller, or this one after a restart, can never execute
//! the same step twice.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use kube::api::Api;
use kube::runtime::controller::Action;
use kube::{Resource, ResourceExt};
use serde_json::json;

use super::approval;
use super::policy::{PolicyJudge, labels};
use super::status::{STATUS_WRITABLE, StatusWriter};
use super::{Context, Error, MAX_MODEL_FAILURES};
use crate::crd::{Readable, RunPhase, XctRun, XctRunStatus, set_condition};
use crate::engine::record::{StepPhase, StepRecord};
use crate::engine::{Approval, Boundary, Engine, EngineError, Journal, JournalError, RunOutcome, Stepped, steps_taken};
use crate::k8s::service_account_user;
use crate::k8s::tools::K8sContext;
use crate::policy::RunInfo;
use crate::protocol::ErrorCode;
use crate::tools::ToolSet;
use k8s_openapi::api::core::v1::Namespace;

/// Pause between steps of a run (the next step is also triggered by the
/// watch event of the status write).
pub const NEXT_STEP: Duration = Duration::from_millis(500);
/// How often a run awaiting approval looks again (approvals also trigger it).
pub const APPROVAL_POLL: Duration = Duration::from_secs(5);

/// The tools a run may use, acting as its ServiceAccount.
fn catalogue(ctx: &Context, namespace: &str, service_account: &str) -> Result<ToolSet, Error> {
    let client = ctx.impersonator.client_for(namespace, service_account)?;
    let k8s = Arc::new(K8sContext { client, namespace: namespace.to_string() });
    Ok(crate::k8s::tools::tools(k8s).into_iter().fold(ToolSet::new(), ToolSet::with))
}

/// The reconcile entry point: one step, and its time outside the model.
pub async fn reconcile(guard: Arc<Readable<XctRun>>, ctx: Arc<Context>) -> Result<Action, Error> {
    let t = std::time::Instant::now();
    let mut model_ms = None;
    let uid = guard.meta().uid.clone().unwrap_or_default();
    let span = super::observe::reconcile_span(&guard);
    let result = tracing::Instrument::instrument(reconcile_step(guard, ctx.clone(), &mut model_ms), span).await;
    if let Some(ms) = model_ms {
        ctx.metrics.overhead(t.elapsed().saturating_sub(Duration::from_millis(ms)));
    }
    if result.is_ok() {
        Context::reset(&ctx.failures, &uid);
    }
    result
}

async fn reconcile_step(
    guard: Arc<Readable<XctRun>>,
    ctx: Arc<Context>,
    model_ms: &mut Option<u64>,
) -> Result<Action, Error> {
    let run = match &guard.0 {
        Ok(run) => run,
        Err(invalid) => {
            // A malformed object: say so on it and wait for it to change.
            let reference = k8s_openapi::api::core::v1::ObjectReference {
                api_version: Some("xct.dev/v1alpha1".into()),
                kind: Some("XctRun".into()),
                name: invalid.metadata.name.clone(),
                namespace: invalid.metadata.namespace.clone(),
                uid: invalid.metadata.uid.clone(),
                ..Default::default()
            };
            ctx.events.publish(&reference, true, "InvalidObject", invalid.to_string()).await;
            return Ok(Action::await_change());
        }
    };
    let status = run.status.clone().unwrap_or_default();
    let generation = run.metadata.generation;
    // A finished run has nothing to do unless its spec changed: then only
    // its observedGeneration follows (kstatus readers wait on it).
    let terminal = status.phase.is_terminal();
    if terminal && status.observed_generation == generation {
        return Ok(Action::await_change());
    }
    // Every replica watches; only the leader decides and executes.
    if !ctx.leadership.is_leader() {
        return Ok(Action::requeue(Duration::from_secs(1)));
    }
    let uid = run.uid().unwrap_or_default();
    if super::Progress::of(&status) < ctx.known(&uid) {
        // Our cache has not seen our own last write yet.
        return Ok(Action::requeue(Duration::from_millis(200)));
    }
    let namespace = run.namespace().unwrap_or_default();
    let api: Api<XctRun> = Api::namespaced(ctx.client.clone(), &namespace);
    let mut writer = StatusWriter::new(api, run).with_metrics(ctx.metrics.clone());
    let reference = run.object_ref(&());
    let mut status = status;
    if terminal {
        status.observed_generation = generation;
        status.refresh_summary();
        writer.write(&status).await?;
        return Ok(Action::await_change());
    }
    // The server rejected this generation's status: said on the run; wait
    // for a change rather than decide (and be rejected) again.
    let rejected = |c: &crate::crd::Condition| c.type_ == STATUS_WRITABLE && c.status == "False";
    if status.conditions.iter().any(|c| rejected(c) && c.observed_generation == generation) {
        return Ok(Action::await_change());
    }
    status.conditions.retain(|c| !rejected(c));
    status.observed_generation = generation;

    // Validate the spec, its ServiceAccount name included, before any of it
    // becomes an identity: the CRD in the cluster may be older or loosened,
    // and only a valid spec gets a client acting as that account.
    let known: Vec<String> = crate::k8s::tools::names().into_iter().map(String::from).collect();
    let mut problems = run.spec.problems(&known);
    let sa = run.spec.service_account_name.clone().unwrap_or_default();
    if run.spec.service_account_name.is_none() {
        problems.push("spec.serviceAccountName is required: tools act as that ServiceAccount".into());
    }
    if !problems.is_empty() {
        let message = problems.join("; ");
        set_condition(&mut status.conditions, "Valid", false, "InvalidSpec", &message, generation);
        status.message = Some(message.clone());
        status.refresh_summary();
        writer.write(&status).await?;
        ctx.events.publish(&reference, true, "InvalidSpec", message.clone()).await;
        return Err(Error::InvalidSpec(message));
    }
    set_condition(&mut status.conditions, "Valid", true, "SpecAccepted", "", generation);
    let tools = catalogue(&ctx, &namespace, &sa)?;
    if run.spec.suspend {
        let newly = status.phase != RunPhase::Suspended;
        status.phase = RunPhase::Suspended;
        status.message = Some("suspended by spec.suspend".into());
        status.refresh_summary();
        // Also when already suspended: observedGeneration follows the spec.
        writer.write(&status).await?;
        if newly {
            ctx.events.publish(&reference, false, "Suspended", "the run is suspended".into()).await;
        }
        return Ok(Action::await_change());
    }
    let acting_as = service_account_user(&namespace, &sa);
    let cfg = run.spec.run_config(uid.clone(), acting_as, &tools).map_err(|e| Error::InvalidSpec(e.to_string()))?;
    let now = Utc::now();
    let started_at = status
        .started_at
        .as_deref()
        .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
        .map_or(now, |t| t.with_timezone(&Utc));
    status.started_at.get_or_insert_with(|| started_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true));
    status.phase = RunPhase::Running;
    status.message = None;

    // One step through the engine: the only path to execution.
    let judge = PolicyJudge {
        cache: ctx.policies.clone(),
        run: run_info(&ctx, run, &status).await,
        run_uid: uid.clone(),
        metrics: ctx.metrics.clone(),
    };
    let history = status.steps.clone();
    let engine = Engine::new(ctx.decider.as_ref());
    let mut journal =
        RunJournal { ctx: &ctx, run, writer: &mut writer, status: &mut status, uid: &uid, reference: &reference };
    let stepped = engine.step(&cfg, &history, started_at, Some(&judge), &mut journal).await;
    match stepped {
        Err(EngineError::Finished(outcome)) => journal.finish(outcome, generation).await,
        // A model failure is retried with backoff (error_policy), a bounded
        // number of times, then recorded as the run's outcome.
        Err(EngineError::Decider(e)) if e.counts_against_the_run() => {
            let failures = Context::count(&ctx.model_failures, &uid);
            if failures < MAX_MODEL_FAILURES {
                return Err(Error::Decider(e));
            }
            Context::reset(&ctx.model_failures, &uid);
            let reason = format!("the model failed {failures} times in a row; last: {e}");
            let outcome = RunOutcome::Failed { code: ErrorCode::ModelFailed, reason };
            journal.finish(outcome, generation).await
        }
        Err(e) => Err(e.into()),
        Ok(stepped) => {
            Context::reset(&ctx.model_failures, &uid);
            journal.recorded(&history, stepped, model_ms).await
        }
    }
}

/// The operator's journal: the run's status, written with a
/// resourceVersion precondition.
struct RunJournal<'a> {
    ctx: &'a Context,
    run: &'a XctRun,
    writer: &'a mut StatusWriter,
    status: &'a mut XctRunStatus,
    uid: &'a str,
    /// The run, for its Events.
    reference: &'a k8s_openapi::api::core::v1::ObjectReference,
}

impl RunJournal<'_> {
    /// Record what the engine did: a new or resolved step, or a step still
    /// awaiting approval.
    async fn recorded(
        &mut self,
        history: &[StepRecord],
        stepped: Stepped,
        model_ms: &mut Option<u64>,
    ) -> Result<Action, Error> {
        match stepped {
            Stepped::Waiting { ignored } => {
                self.status.phase = RunPhase::AwaitingApproval;
                self.status.message = self.status.steps.last().map(|pending| awaiting_message(pending, &ignored));
                self.status.refresh_summary();
                self.writer.write(self.status).await?;
                Ok(Action::requeue(APPROVAL_POLL))
            }
            Stepped::New(rec) | Stepped::Resolved(rec) => {
                if history.last().is_none_or(|l| l.index != rec.index) {
                    *model_ms = Some(rec.timings.model_ms);
                }
                let awaiting = rec.phase == StepPhase::AwaitingApproval;
                // The intent of this step may already be the last entry.
                match self.status.steps.last_mut() {
                    Some(last) if last.index == rec.index => *last = rec,
                    _ => self.status.steps.push(rec),
                }
                if awaiting {
                    self.status.phase = RunPhase::AwaitingApproval;
                    self.status.message = self.status.steps.last().map(|p| awaiting_message(p, &[]));
                    self.record().await?;
                    return Ok(Action::requeue(APPROVAL_POLL));
                }
                self.record().await
            }
        }
    }

    /// Write the status with the new step, publish its event, come back soon.
    async fn record(&mut self) -> Result<Action, Error> {
        let (ctx, status) = (self.ctx, &mut *self.status);
        status.refresh_summary();
        self.writer.write(status).await?;
        super::fault::point("after-result");
        ctx.remember(self.uid, status);
        if let Some(step) = status.steps.last() {
            ctx.metrics.step(step);
            super::observe::step_recorded(self.run, step);
            ctx.events.step(self.reference, step).await;
        }
        // Keep the status bounded: the result is recorded first, so archiving
        // can fail or be interrupted without losing anything.
        if super::archive::maybe_archive(&ctx.client, self.run, status).await? {
            status.refresh_summary();
            self.writer.write(status).await?;
            ctx.remember(self.uid, status);
        }
        Ok(Action::requeue(NEXT_STEP))
    }

    /// The run is over: record why.
    async fn finish(&mut self, outcome: RunOutcome, generation: Option<i64>) -> Result<Action, Error> {
        let (phase, reason, message, warning) = match outcome {
            RunOutcome::Succeeded { message } => (RunPhase::Succeeded, "Succeeded", message, false),
            RunOutcome::Failed { code, reason } => (RunPhase::Failed, "Failed", format!("{code}: {reason}"), true),
        };
        self.status.phase = phase;
        self.status.message = Some(message.clone());
        set_condition(&mut self.status.conditions, "Completed", true, reason, &message, generation);
        self.status.refresh_summary();
        self.writer.write(self.status).await?;
        self.ctx.events.publish(self.reference, warning, &format!("Run{reason}"), message).await;
        Ok(Action::await_change())
    }
}

#[async_trait::async_trait]
impl Journal for RunJournal<'_> {
    async fn intent(&mut self, step: &StepRecord, replaces_last: bool) -> Result<(), JournalError> {
        if replaces_last && let Some(last) = self.status.steps.last_mut() {
            *last = step.clone();
        } else {
            self.status.steps.push(step.clone());
        }
        self.status.phase = RunPhase::Running;
        self.status.message = None;
        self.status.refresh_summary();
        self.writer.write(self.status).await.map_err(|e| Box::new(e) as JournalError)?;
        self.ctx.remember(self.uid, self.status);
        super::fault::point("after-intent");
        Ok(())
    }

    async fn approval(&mut self, pending: &StepRecord) -> Result<Approval, JournalError> {
        let answer = approval::check(&self.ctx.client, self.run, pending)
            .await
            .map_err(|e| Box::new(Error::Kube(e)) as JournalError)?;
        if !matches!(answer, Approval::Waiting { .. })
            && let Ok(asked) = DateTime::parse_from_rfc3339(&pending.started_at)
        {
            let waited = (Utc::now() - asked.with_timezone(&Utc)).to_std().unwrap_or_default();
            self.ctx.metrics.approval_answered(&answer, waited);
        }
        Ok(answer)
    }

    fn reached(&mut self, boundary: Boundary) {
        super::fault::point(boundary.as_str());
    }
}

/// What a run looks like to its policies.
async fn run_info(ctx: &Context, run: &XctRun, status: &XctRunStatus) -> RunInfo {
    let namespace = run.namespace().unwrap_or_default();
    let nss: Api<Namespace> = Api::all(ctx.client.clone());
    let namespace_labels =
        nss.get_opt(&namespace).await.ok().flatten().map(|n| labels(n.metadata.labels.as_ref())).unwrap_or_default();
    RunInfo {
        name: run.name_any(),
        namespace,
        labels: labels(run.metadata.labels.as_ref()),
        namespace_labels,
        metadata: json!({
            "name": run.metadata.name, "namespace": run.metadata.namespace,
            "labels": run.metadata.labels, "annotations": run.metadata.annotations,
        }),
        spec: serde_json::to_value(&run.spec).unwrap_or_default(),
        step: steps_taken(&status.steps) + 1,
        mutations: crate::engine::executed_mutations(&status.steps),
        errors: status.error_count,
    }
}

/// The status message of a run awaiting approval.
fn awaiting_message(step: &StepRecord, ignored: &[String]) -> String {
    let mut m = format!(
        "step {} ({}) awaits an XctApproval with runUid {}, step {} and proposalDigest {}: {}",
        step.index,
        step.tool.as_deref().unwrap_or_default(),
        step.judged_for.as_ref().map_or("", |j| j.run_uid.as_str()),
        step.index,
        step.proposal_digest.as_deref().unwrap_or_default(),
        step.verdict.reason
    );
    if !ignored.is_empty() {
        m.push_str(&format!("; ignored: {}", ignored.join("; ")));
    }
    m
}
