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
use kube::core::DeserializeGuard;
use kube::runtime::controller::Action;
use kube::{Resource, ResourceExt};
use serde_json::json;

use super::approval::{self, Answer};
use super::policy::{PolicyGate, labels};
use super::status::StatusWriter;
use super::{Context, Error};
use crate::crd::{RunPhase, XctRun, XctRunStatus, set_condition};
use crate::engine::record::VerdictOutcome;
use crate::engine::record::{StepPhase, StepRecord};
use crate::engine::{
    Engine, RunConfig, RunOutcome, complete, record_intent, record_unexecuted, run_outcome, steps_taken,
};
use crate::k8s::tools::K8sContext;
use crate::policy::RunInfo;
use crate::protocol::{Decision, ErrorCode, NextStep, Signal, parse_decision};
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
pub async fn reconcile(guard: Arc<DeserializeGuard<XctRun>>, ctx: Arc<Context>) -> Result<Action, Error> {
    let t = std::time::Instant::now();
    let mut model_ms = None;
    let result = reconcile_step(guard, ctx.clone(), &mut model_ms).await;
    if let Some(ms) = model_ms {
        ctx.metrics.overhead(t.elapsed().saturating_sub(Duration::from_millis(ms)));
    }
    result
}

async fn reconcile_step(
    guard: Arc<DeserializeGuard<XctRun>>,
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
            ctx.events
                .publish(&reference, true, "InvalidObject", format!("cannot read this XctRun: {}", invalid.error))
                .await;
            return Ok(Action::await_change());
        }
    };
    let status = run.status.clone().unwrap_or_default();
    if status.phase.is_terminal() {
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
    let generation = run.metadata.generation;
    let mut status = status;
    status.observed_generation = generation;

    // Validate the spec (what the schema cannot).
    let sa = run.spec.service_account_name.clone().unwrap_or_default();
    let sa = if sa.is_empty() { "default".to_string() } else { sa };
    let tools = catalogue(&ctx, &namespace, &sa)?;
    let mut problems = run.spec.problems(&tools);
    if run.spec.service_account_name.is_none() {
        problems.push("spec.serviceAccountName is required: tools act as that ServiceAccount".into());
    }
    if !problems.is_empty() {
        let message = problems.join("; ");
        set_condition(&mut status.conditions, "Valid", false, "InvalidSpec", &message, generation);
        status.message = Some(message.clone());
        writer.write(&status).await?;
        ctx.events.publish(&reference, true, "InvalidSpec", message.clone()).await;
        return Err(Error::InvalidSpec(message));
    }
    set_condition(&mut status.conditions, "Valid", true, "SpecAccepted", "", generation);
    if run.spec.suspend {
        if status.phase != RunPhase::Suspended {
            status.phase = RunPhase::Suspended;
            status.message = Some("suspended by spec.suspend".into());
            writer.write(&status).await?;
            ctx.events.publish(&reference, false, "Suspended", "the run is suspended".into()).await;
        }
        return Ok(Action::await_change());
    }
    let cfg = run.spec.run_config(uid.clone(), &tools).map_err(|e| Error::InvalidSpec(e.to_string()))?;
    let now = Utc::now();
    let started_at = status
        .started_at
        .as_deref()
        .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
        .map_or(now, |t| t.with_timezone(&Utc));
    status.started_at.get_or_insert_with(|| started_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true));
    status.phase = RunPhase::Running;
    status.message = None;

    // Recover a step found mid-execution (the controller stopped during it).
    if status.steps.last().is_some_and(|s| s.phase == StepPhase::Executing) {
        recover(&cfg, &mut status).await;
        return record(&ctx, run, &mut writer, &reference, &uid, &mut status).await;
    }
    // A step waiting for approval: approved, rejected, timed out, or still waiting.
    if let Some(pending) = status.steps.last().filter(|s| s.phase == StepPhase::AwaitingApproval).cloned() {
        return awaiting(&ctx, run, &cfg, &mut writer, &reference, &uid, &mut status, pending).await;
    }
    if let Some(outcome) = run_outcome(&cfg, &status.steps, started_at, now) {
        return finish(&ctx, &mut writer, &reference, &mut status, outcome, generation).await;
    }

    // Decide: exactly one model call.
    let engine = Engine::new(ctx.decider.as_ref());
    let decided = engine.decide(&cfg, &status.steps).await?;
    *model_ms = Some(decided.model_ms);
    super::fault::point("after-decision");
    let index = steps_taken(&status.steps) + 1;
    let step = match &decided.parsed {
        Ok(Decision::NextStep(step)) => step.clone(),
        _ => {
            status.steps.push(record_unexecuted(index, &decided, None));
            return record(&ctx, run, &mut writer, &reference, &uid, &mut status).await;
        }
    };
    // Validate: tools, schema, policies, the tool's own dry run.
    let gate = PolicyGate {
        cache: ctx.policies.clone(),
        run: run_info(&ctx, run, &status).await,
        run_uid: uid.clone(),
        client: ctx.impersonator.client_for(&namespace, &sa)?,
        metrics: ctx.metrics.clone(),
    };
    let validated = Engine::validate(&cfg, &step, Some(&gate)).await;
    if validated.refusal.is_some() {
        status.steps.push(record_unexecuted(index, &decided, Some(validated)));
        return record(&ctx, run, &mut writer, &reference, &uid, &mut status).await;
    }
    if validated.verdict.outcome == VerdictOutcome::AwaitingApproval {
        let pending = record_intent(index, &decided, &step, validated);
        status.phase = RunPhase::AwaitingApproval;
        status.message = Some(awaiting_message(&pending, &[]));
        status.steps.push(pending);
        record(&ctx, run, &mut writer, &reference, &uid, &mut status).await?;
        return Ok(Action::requeue(APPROVAL_POLL));
    }
    // Record the intent before a mutation executes.
    let intent = record_intent(index, &decided, &step, validated);
    let mutating = intent.mutating;
    status.steps.push(intent);
    if mutating {
        status.refresh_summary();
        writer.write(&status).await?;
        ctx.remember(&uid, &status);
        super::fault::point("after-intent");
    }
    // Execute, then record the result.
    let (signal, ms) = Engine::execute(&cfg, &step).await;
    super::fault::point("after-execution");
    if let Some(last) = status.steps.last_mut() {
        complete(last, signal, ms);
    }
    record(&ctx, run, &mut writer, &reference, &uid, &mut status).await
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
        mutations: status
            .steps
            .iter()
            .filter(|s| s.mutating && s.verdict.outcome == VerdictOutcome::Allowed && s.phase == StepPhase::Completed)
            .count() as u32,
        errors: status.error_count,
    }
}

/// The status message of a run awaiting approval.
fn awaiting_message(step: &StepRecord, ignored: &[String]) -> String {
    let mut m = format!(
        "step {} ({}) awaits an XctApproval with proposalDigest {}: {}",
        step.index,
        step.tool.as_deref().unwrap_or_default(),
        step.proposal_digest.as_deref().unwrap_or_default(),
        step.verdict.reason
    );
    if !ignored.is_empty() {
        m.push_str(&format!("; ignored: {}", ignored.join("; ")));
    }
    m
}

/// The pending step's approval, one way or the other.
#[allow(clippy::too_many_arguments)]
async fn awaiting(
    ctx: &Context,
    run: &XctRun,
    cfg: &RunConfig,
    writer: &mut StatusWriter,
    reference: &k8s_openapi::api::core::v1::ObjectReference,
    uid: &str,
    status: &mut XctRunStatus,
    pending: StepRecord,
) -> Result<Action, Error> {
    let rejected = |m: String| Signal::error(ErrorCode::ApprovalRejected, m);
    let signal = match approval::check(&ctx.client, run, &pending).await? {
        Answer::Waiting { ignored } => {
            status.phase = RunPhase::AwaitingApproval;
            status.message = Some(awaiting_message(&pending, &ignored));
            writer.write(status).await?;
            return Ok(Action::requeue(APPROVAL_POLL));
        }
        Answer::Rejected { approver, reason } => rejected(format!("the proposal was rejected by {approver}: {reason}")),
        Answer::TimedOut { after_secs } => {
            rejected(format!("no approval arrived within {after_secs}s; the proposal was not executed"))
        }
        Answer::Approved { approver } => {
            // Record the intent, then execute, as for any mutation.
            status.phase = RunPhase::Running;
            status.message = None;
            if let Some(last) = status.steps.last_mut() {
                last.phase = StepPhase::Executing;
                last.verdict.outcome = VerdictOutcome::Allowed;
                last.verdict.reason = format!("approved by {approver}; {}", last.verdict.reason);
            }
            status.refresh_summary();
            writer.write(status).await?;
            ctx.remember(uid, status);
            let step = match parse_decision(&pending.decision, false) {
                Ok(Decision::NextStep(step)) => step,
                _ => return Err(Error::Internal("an approved step has no proposal".into())),
            };
            let (signal, ms) = Engine::execute(cfg, &step).await;
            if let Some(last) = status.steps.last_mut() {
                complete(last, signal, ms);
            }
            return record(ctx, run, writer, reference, uid, status).await;
        }
    };
    status.phase = RunPhase::Running;
    status.message = None;
    if let Some(last) = status.steps.last_mut() {
        last.verdict.outcome = VerdictOutcome::Vetoed;
        complete(last, signal, 0);
    }
    record(ctx, run, writer, reference, uid, status).await
}

/// Write the status with the new step, publish its event, come back soon.
async fn record(
    ctx: &Context,
    run: &XctRun,
    writer: &mut StatusWriter,
    reference: &k8s_openapi::api::core::v1::ObjectReference,
    uid: &str,
    status: &mut XctRunStatus,
) -> Result<Action, Error> {
    status.refresh_summary();
    writer.write(status).await?;
    super::fault::point("after-result");
    ctx.remember(uid, status);
    ctx.phase(uid, status.phase);
    if let Some(step) = status.steps.last() {
        ctx.metrics.step(step);
        ctx.events.step(reference, step).await;
    }
    // Keep the status bounded: the result is recorded first, so archiving
    // can fail or be interrupted without losing anything.
    if super::archive::maybe_archive(&ctx.client, run, status).await? {
        status.refresh_summary();
        writer.write(status).await?;
        ctx.remember(uid, status);
    }
    Ok(Action::requeue(NEXT_STEP))
}

/// The run is over: record why.
async fn finish(
    ctx: &Context,
    writer: &mut StatusWriter,
    reference: &k8s_openapi::api::core::v1::ObjectReference,
    status: &mut XctRunStatus,
    outcome: RunOutcome,
    generation: Option<i64>,
) -> Result<Action, Error> {
    let (phase, reason, message, warning) = match outcome {
        RunOutcome::Succeeded { message } => (RunPhase::Succeeded, "Succeeded", message, false),
        RunOutcome::Failed { code, reason } => (RunPhase::Failed, "Failed", format!("{code}: {reason}"), true),
    };
    status.phase = phase;
    status.message = Some(message.clone());
    set_condition(&mut status.conditions, "Completed", true, reason, &message, generation);
    status.refresh_summary();
    writer.write(status).await?;
    if let Some(uid) = reference.uid.as_deref() {
        ctx.phase(uid, status.phase);
    }
    ctx.events.publish(reference, warning, &format!("Run{reason}"), message).await;
    Ok(Action::await_change())
}

/// A step was left `Executing`: a read-only tool runs again; a mutation is
/// never re-executed blindly: the model gets OUTCOME_UNKNOWN with what can
/// be observed now.
async fn recover(cfg: &RunConfig, status: &mut XctRunStatus) {
    let Some(last) = status.steps.last_mut() else { return };
    let step = match parse_decision(&last.decision, last.model.truncated) {
        Ok(Decision::NextStep(step)) => step,
        _ => {
            NextStep { tool: last.tool.clone().unwrap_or_default(), arguments: Default::default(), goal: String::new() }
        }
    };
    if !last.mutating {
        let (signal, ms) = Engine::execute(cfg, &step).await;
        complete(last, signal, ms);
        return;
    }
    let observed = observe(cfg, &step).await;
    let signal = Signal::error_with(
        ErrorCode::OutcomeUnknown,
        format!(
            "the controller stopped while {} was executing; it was not run again and its effect is unknown: check the current state before retrying",
            step.tool
        ),
        json!({"observed": observed}),
    );
    complete(last, signal, 0);
}

/// What the target of a Kubernetes proposal looks like now (read-only).
async fn observe(cfg: &RunConfig, step: &NextStep) -> serde_json::Value {
    let (Some(kind), Some(name)) = (step.arguments.get("kind"), step.arguments.get("name")) else {
        return serde_json::Value::Null;
    };
    let Some(get) = cfg.tools.get("k8s.get") else { return serde_json::Value::Null };
    let mut args = json!({"kind": kind, "name": name});
    if let Some(ns) = step.arguments.get("namespace") {
        args["namespace"] = ns.clone();
    }
    match get.execute(&args).await {
        Ok(v) => v,
        Err(e) => json!({"error": e.message}),
    }
}
