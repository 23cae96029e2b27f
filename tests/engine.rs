//! The step machine on a scripted decider: every transition, the budgets,
//! the rendering of the history.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use support::next;

use async_trait::async_trait;
use chrono::Utc;
use serde_json::{Value, json};
use xct::engine::record::{StepPhase, VerdictOutcome};
use xct::engine::{
    Engine, EngineError, Limits, MAX_RESULT_BYTES, RunConfig, RunOutcome, check_schema, context, run_outcome,
};
use xct::model::{Role, Sampling, ScriptedDecider};
use xct::protocol::{ErrorCode, Signal};
use xct::tools::{DryRun, Target, Tool, ToolError, ToolSet};

/// A tool whose behaviour is chosen by its `mode` argument, counting executions.
struct Probe {
    executed: AtomicUsize,
}

#[async_trait]
impl Tool for Probe {
    fn name(&self) -> &'static str {
        "test.probe"
    }
    fn description(&self) -> &'static str {
        "A probe."
    }
    fn schema(&self) -> Value {
        json!({"type":"object","properties":{"mode":{"type":"string","enum":["ok","refuse","bad","fail","huge"]}},"required":["mode"],"additionalProperties":false})
    }
    fn mutates(&self) -> bool {
        true
    }
    fn target(&self, _: &Value) -> Result<Option<Target>, ToolError> {
        Ok(None)
    }
    async fn validate(&self, args: &Value) -> Result<DryRun, ToolError> {
        if args["mode"] == "refuse" {
            return Err(ToolError::new(ErrorCode::DryRunFailed, "dry run refused"));
        }
        if args["mode"] == "bad" {
            return Err(ToolError::new(ErrorCode::InvalidArguments, "the tool refuses these arguments"));
        }
        Ok(DryRun::new("would probe"))
    }
    async fn execute(&self, args: &Value) -> Result<Value, ToolError> {
        self.executed.fetch_add(1, Ordering::SeqCst);
        match args["mode"].as_str() {
            Some("fail") => Err(ToolError::failed("probe failed")),
            Some("huge") => Ok(json!({"data": "x".repeat(100_000)})),
            _ => Ok(json!({"probed": true})),
        }
    }
}

struct Reader;

#[async_trait]
impl Tool for Reader {
    fn name(&self) -> &'static str {
        "test.read"
    }
    fn description(&self) -> &'static str {
        "Reads."
    }
    fn schema(&self) -> Value {
        json!({"type":"object","properties":{},"additionalProperties":false})
    }
    fn mutates(&self) -> bool {
        false
    }
    fn target(&self, _: &Value) -> Result<Option<Target>, ToolError> {
        Ok(None)
    }
    async fn validate(&self, _: &Value) -> Result<DryRun, ToolError> {
        Ok(DryRun::new("would read"))
    }
    async fn execute(&self, _: &Value) -> Result<Value, ToolError> {
        Ok(json!({"value": 7}))
    }
}

fn setup(limits: Limits) -> (RunConfig, Arc<Probe>) {
    let probe = Arc::new(Probe { executed: AtomicUsize::new(0) });
    let catalogue = ToolSet::new().with(probe.clone()).with(Arc::new(Reader));
    let cfg = RunConfig {
        id: "t".into(),
        acting_as: "tester".into(),
        goal: "probe things".into(),
        tools: catalogue.select(&["test.probe".into(), "test.read".into()]).unwrap(),
        limits,
        sampling: Sampling::default(),
    };
    (cfg, probe)
}

fn step(tool: &str, args: Value) -> String {
    json!({"next_step": {"tool": tool, "arguments": args, "goal": "because"}}).to_string()
}

const DONE: &str = r#"{"done":true,"message":"all probed"}"#;

#[tokio::test]
async fn every_transition_is_recorded() {
    let (cfg, probe) = setup(Limits { max_steps: 20, max_consecutive_errors: 10, timeout: None });
    let outputs = vec![
        step("test.probe", json!({"mode": "ok"})),
        "not json at all".to_string(),
        step("fs.delete_everything", json!({})),
        step("test.probe", json!({"mode": "sideways"})),
        step("test.probe", json!({"mode": "refuse"})),
        step("test.probe", json!({"mode": "fail"})),
        step("test.read", json!({})),
        DONE.to_string(),
    ];
    let decider = ScriptedDecider::new(outputs.clone());
    let engine = Engine::new(&decider);
    let started = Utc::now();
    let mut history = Vec::new();
    let outcome = loop {
        match next(&engine, &cfg, &history, started).await {
            Ok(rec) => history.push(rec),
            Err(EngineError::Finished(o)) => break o,
            Err(e) => panic!("{e}"),
        }
    };
    assert_eq!(outcome, RunOutcome::Succeeded { message: "all probed".into() });
    assert_eq!(history.len(), 8);
    let expect: [(VerdictOutcome, &str, Option<&str>); 8] = [
        (VerdictOutcome::Allowed, "Success", Some("dry-run")),
        (VerdictOutcome::Invalid, "INVALID_PROPOSAL", Some("protocol")),
        (VerdictOutcome::Vetoed, "TOOL_NOT_ALLOWED", Some("tools")),
        (VerdictOutcome::Vetoed, "INVALID_ARGUMENTS", Some("schema")),
        (VerdictOutcome::Vetoed, "DRY_RUN_FAILED", Some("dry-run")),
        (VerdictOutcome::Allowed, "EXECUTION_FAILED", Some("dry-run")),
        (VerdictOutcome::Allowed, "Success", Some("dry-run")),
        (VerdictOutcome::Done, "Done", None),
    ];
    for (i, (rec, (verdict, outcome, by))) in history.iter().zip(expect).enumerate() {
        assert_eq!(rec.index as usize, i + 1);
        assert_eq!(rec.decision, outputs[i], "decision is kept verbatim");
        assert_eq!(rec.verdict.outcome, verdict, "step {}", i + 1);
        assert_eq!(rec.outcome_label(), outcome, "step {}", i + 1);
        assert_eq!(rec.verdict.decided_by.as_deref(), by, "step {}", i + 1);
        assert_eq!(rec.phase, StepPhase::Completed);
        assert!(rec.finished_at.is_some());
    }
    // Only the two allowed probe proposals executed; refusals touched nothing.
    assert_eq!(probe.executed.load(Ordering::SeqCst), 2);
    assert!(history[0].mutating && !history[6].mutating);
    assert_eq!(history[0].proposal_digest.as_deref().map(str::len), Some(64));
    assert_eq!(history[0].dry_run.as_ref().map(|d| d.ok), Some(true));
    assert_eq!(history[4].dry_run.as_ref().map(|d| d.ok), Some(false));
    assert!(history[7].signal.is_none());
    let Some(Signal::Error { details: Some(details), .. }) = &history[3].signal else {
        panic!("schema errors carry details")
    };
    assert!(details["errors"][0].as_str().unwrap().contains("/mode"), "{details}");
}

#[tokio::test]
async fn max_steps_ends_the_run_without_calling_the_model() {
    let (cfg, _) = setup(Limits { max_steps: 2, max_consecutive_errors: 10, timeout: None });
    let decider = ScriptedDecider::new([step("test.read", json!({})), step("test.read", json!({})), DONE.into()]);
    let engine = Engine::new(&decider);
    let started = Utc::now();
    let mut history = vec![];
    history.push(next(&engine, &cfg, &history, started).await.unwrap());
    history.push(next(&engine, &cfg, &history, started).await.unwrap());
    let err = next(&engine, &cfg, &history, started).await.unwrap_err();
    let EngineError::Finished(RunOutcome::Failed { code, reason }) = err else { panic!("{err:?}") };
    assert_eq!(code, ErrorCode::BudgetExhausted);
    assert!(reason.contains("maxSteps (2)"), "{reason}");
    assert_eq!(decider.requests().len(), 2, "no model call once the budget is spent");
}

#[tokio::test]
async fn consecutive_errors_end_the_run_and_a_success_resets_the_count() {
    let (cfg, _) = setup(Limits { max_steps: 50, max_consecutive_errors: 2, timeout: None });
    let decider = ScriptedDecider::new(
        ["junk", "{\"done\":false}", "more junk", "junk"]
            .map(String::from)
            .into_iter()
            .chain([step("test.read", json!({}))]),
    );
    let engine = Engine::new(&decider);
    let started = Utc::now();
    let mut history = vec![];
    history.push(next(&engine, &cfg, &history, started).await.unwrap());
    history.push(next(&engine, &cfg, &history, started).await.unwrap());
    let err = next(&engine, &cfg, &history, started).await.unwrap_err();
    assert!(
        matches!(err, EngineError::Finished(RunOutcome::Failed { code: ErrorCode::BudgetExhausted, ref reason }) if reason.contains("2 consecutive errors"))
    );
    // A success in between resets the count.
    let (cfg, _) = setup(Limits { max_steps: 50, max_consecutive_errors: 2, timeout: None });
    let decider =
        ScriptedDecider::new(["junk".to_string(), step("test.read", json!({})), "junk".to_string(), DONE.to_string()]);
    let engine = Engine::new(&decider);
    let mut history = vec![];
    for _ in 0..4 {
        history.push(next(&engine, &cfg, &history, started).await.unwrap());
    }
    assert_eq!(
        run_outcome(&cfg, &history, started, Utc::now()),
        Some(RunOutcome::Succeeded { message: "all probed".into() })
    );
}

/// A done before anything was looked at is refused once with
/// INVALID_PROPOSAL (nothing executes; the model is told to look first); a
/// second done is accepted, and a done after a step that reached a tool,
/// even a refused one, is accepted at once, unless it was refused for its
/// shape or its arguments. The decision schema, which a
/// model's grammar is built from, offers done exactly when it would be
/// accepted.
#[tokio::test]
async fn a_done_before_any_step_is_refused_once() {
    let (cfg, probe) = setup(Limits { max_steps: 10, max_consecutive_errors: 10, timeout: None });
    let offers_done = |d: &ScriptedDecider| -> Vec<bool> {
        let done = json!({"done": true, "message": "m"});
        d.requests().iter().map(|r| check_schema(&r.schema, &done).is_ok()).collect()
    };
    let (history, decider) = run_script(&cfg, vec![DONE.into(), DONE.into()]).await;
    assert_eq!(offers_done(&decider), [false, true], "done is offered once the first was refused");
    assert_eq!(history.len(), 2);
    assert_eq!(history[0].verdict.outcome, VerdictOutcome::Invalid);
    assert_eq!(history[0].verdict.decided_by.as_deref(), Some(xct::engine::UNFOUNDED_DONE));
    assert_eq!(history[0].error_code(), Some(ErrorCode::InvalidProposal));
    let told = history[0].signal.as_ref().unwrap().to_json_string();
    assert!(told.contains("nothing has been looked at"), "{told}");
    assert_eq!(history[1].verdict.outcome, VerdictOutcome::Done, "the second done is accepted");
    let started = Utc::now();
    assert_eq!(run_outcome(&cfg, &history[..1], started, started), None, "a refused done does not end the run");
    assert_eq!(
        run_outcome(&cfg, &history, started, started),
        Some(RunOutcome::Succeeded { message: "all probed".into() })
    );

    // A dry run's refusal is something looked at: the done after it is not
    // unfounded (it waits once for the unmade change, see below).
    let (history, decider) =
        run_script(&cfg, vec![step("test.probe", json!({"mode": "refuse"})), DONE.into(), DONE.into()]).await;
    assert_eq!(offers_done(&decider), [false, true, true], "done is offered once a step reached a tool");
    assert_eq!(history.len(), 3);
    assert_eq!(history[0].error_code(), Some(ErrorCode::DryRunFailed));
    assert_eq!(history[1].verdict.decided_by.as_deref(), Some(xct::engine::UNMADE_DONE));
    assert_eq!(history[2].verdict.outcome, VerdictOutcome::Done, "a refusal is something looked at");
    let (history, _) = run_script(&cfg, vec![step("test.read", json!({})), DONE.into()]).await;
    assert_eq!(history.len(), 2);
    assert_eq!(history[1].verdict.outcome, VerdictOutcome::Done);
    // A proposal refused for its shape (here arguments outside the schema)
    // shows nothing of the world: a done after it is still unfounded.
    let (history, decider) =
        run_script(&cfg, vec![step("test.probe", json!({"mode": "nope"})), DONE.into(), DONE.into()]).await;
    assert_eq!(offers_done(&decider), [false, false, true]);
    assert_eq!(history.len(), 3);
    assert_eq!(history[0].verdict.decided_by.as_deref(), Some(xct::engine::gate::BY_SCHEMA));
    assert_eq!(history[1].verdict.decided_by.as_deref(), Some(xct::engine::UNFOUNDED_DONE));
    assert_eq!(history[2].verdict.outcome, VerdictOutcome::Done, "the second done is accepted");
    // So does the tool's own refusal of its arguments in the dry run.
    let (history, decider) =
        run_script(&cfg, vec![step("test.probe", json!({"mode": "bad"})), DONE.into(), DONE.into()]).await;
    assert_eq!(offers_done(&decider), [false, false, true]);
    assert_eq!(history.len(), 3);
    assert_eq!(history[0].verdict.decided_by.as_deref(), Some("dry-run"));
    assert_eq!(history[0].error_code(), Some(ErrorCode::InvalidArguments));
    assert_eq!(history[1].verdict.decided_by.as_deref(), Some(xct::engine::UNFOUNDED_DONE));
    assert_eq!(history[2].verdict.outcome, VerdictOutcome::Done, "the second done is accepted");
    assert_eq!(probe.executed.load(Ordering::SeqCst), 0, "nothing executed the probe");
}

#[tokio::test]
async fn the_deadline_ends_the_run() {
    let (cfg, _) = setup(Limits { max_steps: 50, max_consecutive_errors: 5, timeout: Some(Duration::from_secs(60)) });
    let started = Utc::now() - chrono::Duration::seconds(61);
    let decider = ScriptedDecider::new([DONE]);
    let err = next(&Engine::new(&decider), &cfg, &[], started).await.unwrap_err();
    assert!(
        matches!(err, EngineError::Finished(RunOutcome::Failed { code: ErrorCode::BudgetExhausted, ref reason }) if reason.contains("timeout"))
    );
    assert!(decider.requests().is_empty());
    assert_eq!(run_outcome(&cfg, &[], Utc::now(), Utc::now()), None);
}

#[tokio::test]
async fn a_decider_failure_records_nothing() {
    let (cfg, _) = setup(Limits::default());
    let decider = ScriptedDecider::new(Vec::<String>::new());
    let err = next(&Engine::new(&decider), &cfg, &[], Utc::now()).await.unwrap_err();
    assert!(matches!(err, EngineError::Decider(_)));
}

#[tokio::test]
async fn huge_results_are_bounded_with_a_digest() {
    let (cfg, _) = setup(Limits::default());
    let decider = ScriptedDecider::new([step("test.probe", json!({"mode": "huge"}))]);
    let rec = next(&Engine::new(&decider), &cfg, &[], Utc::now()).await.unwrap();
    let Some(Signal::Success { result }) = rec.signal else { panic!() };
    assert_eq!(result["truncated"], true);
    assert!(result["bytes"].as_u64().unwrap() > 100_000);
    assert_eq!(result["sha256"].as_str().unwrap().len(), 64);
    assert!(result.to_string().len() <= MAX_RESULT_BYTES);
}

#[tokio::test]
async fn history_is_rendered_as_chat_turns() {
    let (cfg, _) = setup(Limits::default());
    let first = step("test.read", json!({}));
    let decider = ScriptedDecider::new([first.clone(), "oops".to_string(), DONE.to_string()]);
    let engine = Engine::new(&decider);
    let started = Utc::now();
    let mut history = vec![];
    for _ in 0..3 {
        history.push(next(&engine, &cfg, &history, started).await.unwrap());
    }
    let reqs = decider.requests();
    // First call: system prompt and goal only.
    assert_eq!(reqs[0].messages.len(), 2);
    let system = &reqs[0].messages[0];
    assert_eq!(system.role, Role::System);
    assert!(system.content.contains("test.probe (changes state)") && system.content.contains("test.read (read-only)"));
    assert!(system.content.contains("\"enum\":[\"ok\",\"refuse\",\"bad\",\"fail\",\"huge\"]"), "schemas are listed");
    assert!(system.content.contains("{\"done\":true"), "the contract is stated");
    assert_eq!(reqs[0].messages[1].content, "Goal: probe things");
    // Third call: the two earlier decisions as assistant turns, each
    // followed by its signal as a tool turn.
    let m = &reqs[2].messages;
    let roles: Vec<Role> = m.iter().map(|x| x.role).collect();
    assert_eq!(roles, [Role::System, Role::User, Role::Assistant, Role::Tool, Role::Assistant, Role::Tool]);
    assert_eq!(m[2].content, first);
    assert_eq!(m[3].content, r#"{"status":"success","result":{"value":7}}"#);
    assert_eq!(m[4].content, "oops");
    assert!(m[5].content.starts_with(r#"{"status":"error","code":"INVALID_PROPOSAL""#), "{}", m[5].content);
    assert_eq!(reqs[2].run_id, "t");
}

#[tokio::test]
async fn the_decision_schema_accepts_exactly_done_or_an_allowed_tool() {
    let (cfg, _) = setup(Limits::default());
    let (looked, _) = run_script(&cfg, vec![step("test.read", json!({}))]).await;
    assert_eq!(looked.len(), 1);
    let schema = context::decision_schema(&cfg, &looked);
    let ok = [
        json!({"done": true, "message": "m"}),
        json!({"next_step": {"tool": "test.probe", "arguments": {"mode": "ok"}, "goal": "g"}}),
        json!({"next_step": {"tool": "test.read", "arguments": {}, "goal": "g"}}),
    ];
    for v in ok {
        assert!(check_schema(&schema, &v).is_ok(), "{v}");
    }
    let bad = [
        json!({"done": false, "message": "m"}),
        json!({"done": true}),
        json!({"next_step": {"tool": "fs.write", "arguments": {}, "goal": "g"}}),
        json!({"next_step": {"tool": "test.probe", "arguments": {"mode": "nope"}, "goal": "g"}}),
        json!({"next_step": {"tool": "test.read", "arguments": {"x": 1}, "goal": "g"}}),
        json!({"next_step": {"tool": "test.read", "arguments": {}}}),
    ];
    for v in bad {
        assert!(check_schema(&schema, &v).is_err(), "{v}");
    }
}

/// A decider with a context window measured in prompt bytes: a prompt over
/// it is refused as a real model's worker refuses one over its tokens.
struct Window {
    bytes: usize,
    seen: std::sync::Mutex<Vec<usize>>,
    last: std::sync::Mutex<Vec<xct::model::ChatMessage>>,
}

#[async_trait]
impl xct::model::Decider for Window {
    async fn decide(
        &self,
        req: xct::model::DecideRequest,
    ) -> Result<xct::model::RawDecision, xct::model::DeciderError> {
        let size: usize = req.messages.iter().map(|m| m.content.len()).sum();
        self.seen.lock().unwrap().push(size);
        if size > self.bytes {
            return Err(xct::model::DeciderError::PromptTooLong(format!("{size} bytes > {}", self.bytes)));
        }
        *self.last.lock().unwrap() = req.messages;
        Ok(xct::model::RawDecision { text: step("test.read", json!({})), stats: Default::default() })
    }
}

/// A long history with large results: older steps are compacted (the model
/// is told), large results cut, newest first, until the prompt fits; when
/// even the newest step alone cannot fit, the run ends CONTEXT_EXHAUSTED.
#[tokio::test]
async fn the_context_budget_compacts_then_ends_the_run() {
    let (cfg, _) = setup(Limits { max_steps: 1000, max_consecutive_errors: 1000, timeout: None });
    let huge = ScriptedDecider::new(vec![step("test.probe", json!({"mode": "huge"})); 30]);
    let engine = Engine::new(&huge);
    let mut history = Vec::new();
    for _ in 0..30 {
        history.push(next(&engine, &cfg, &history, Utc::now()).await.unwrap());
    }
    let full: usize = context::render(&cfg, &history, 0).iter().map(|m| m.content.len()).sum();
    assert!(full > 100_000, "{full}");
    let window = Window { bytes: 12_000, seen: Default::default(), last: Default::default() };
    let rec = next(&Engine::new(&window), &cfg, &history, Utc::now()).await.unwrap();
    assert_eq!(rec.outcome_label(), "Success", "a decision was made and executed");
    let seen = window.seen.lock().unwrap().clone();
    assert!(seen.len() >= 2 && seen.windows(2).all(|w| w[1] < w[0]), "each level is smaller: {seen:?}");
    let shown = window.last.lock().unwrap().clone();
    assert!(shown[2].content.starts_with("Steps 1 to "), "the model is told: {}", shown[2].content);
    assert!(shown[2].content.contains("step 1: test.probe args "), "{}", shown[2].content);
    let last = shown.last().unwrap();
    assert!(last.content.contains("bytes cut]"), "the newest result is cut: {}", last.content.len());
    // A window that cannot hold even the system prompt and the goal.
    let tiny = Window { bytes: 100, seen: Default::default(), last: Default::default() };
    let err = next(&Engine::new(&tiny), &cfg, &history, Utc::now()).await.unwrap_err();
    let EngineError::Finished(RunOutcome::Failed { code, reason }) = err else { panic!("{err:?}") };
    assert_eq!(code, ErrorCode::ContextExhausted, "{reason}");
    assert!(tiny.last.lock().unwrap().is_empty(), "no decision was made");
}

/// Every step of `outputs` replayed until the run ends: the history and
/// the decider (for the requests it was given).
async fn run_script(cfg: &RunConfig, outputs: Vec<String>) -> (Vec<xct::engine::record::StepRecord>, ScriptedDecider) {
    let decider = ScriptedDecider::new(outputs);
    let engine = Engine::new(&decider);
    let started = Utc::now();
    let mut history = Vec::new();
    while let Ok(rec) = next(&engine, cfg, &history, started).await {
        history.push(rec);
    }
    (history, decider)
}

/// A proposal that repeats, exactly, one that failed with the same code is
/// told so (small models otherwise resend it until the error budget ends
/// the run); a different proposal is not.
#[tokio::test]
async fn an_identical_failed_proposal_is_named_as_a_repeat() {
    let (cfg, _) = setup(Limits { max_steps: 10, max_consecutive_errors: 10, timeout: None });
    let refused = step("test.probe", json!({"mode": "refuse"}));
    let outputs =
        vec![refused.clone(), refused.clone(), step("test.probe", json!({"mode": "fail"})), refused, DONE.into()];
    let (history, _) = run_script(&cfg, outputs).await;
    let told: Vec<String> = history[..4]
        .iter()
        .map(|s| match &s.signal {
            Some(Signal::Error { message, .. }) => message.clone(),
            other => panic!("{other:?}"),
        })
        .collect();
    let repeat = "You proposed exactly this in step 1";
    assert!(!told[0].contains("You proposed exactly this"), "{}", told[0]);
    assert!(told[1].contains(repeat), "{}", told[1]);
    assert!(!told[2].contains("You proposed exactly this"), "a different proposal: {}", told[2]);
    assert!(told[3].contains("You proposed exactly this in step 2"), "the latest such step: {}", told[3]);
}

/// A done while a change refused for how it was written (its arguments,
/// its dry run) is unmade is refused once, naming the step and its refusal:
/// the eval model, its copy refused for a nested call, read the file and
/// answered done without writing. The second done is accepted; a done after
/// the change was made, or after a failure that is no refusal of how the
/// change was written, is accepted at once.
#[tokio::test]
async fn a_done_while_a_correctable_change_is_unmade_is_refused_once() {
    let (cfg, probe) = setup(Limits { max_steps: 10, max_consecutive_errors: 10, timeout: None });
    let bad = step("test.probe", json!({"mode": "bad"}));
    let read = step("test.read", json!({}));
    let (history, _) = run_script(&cfg, vec![bad.clone(), read.clone(), DONE.into(), DONE.into()]).await;
    assert_eq!(history.len(), 4);
    assert_eq!(history[2].verdict.outcome, VerdictOutcome::Invalid);
    assert_eq!(history[2].verdict.decided_by.as_deref(), Some(xct::engine::UNMADE_DONE));
    assert_eq!(history[2].error_code(), Some(ErrorCode::InvalidProposal));
    let told = history[2].signal.as_ref().unwrap().to_json_string();
    assert!(
        told.contains("step 1 (test.probe) was refused with INVALID_ARGUMENTS (the tool refuses these arguments)"),
        "{told}"
    );
    assert_eq!(history[3].verdict.outcome, VerdictOutcome::Done, "the second done is accepted");
    assert_eq!(probe.executed.load(Ordering::SeqCst), 0);

    let ok = step("test.probe", json!({"mode": "ok"}));
    let (history, _) = run_script(&cfg, vec![bad.clone(), read.clone(), DONE.into(), ok, DONE.into()]).await;
    assert_eq!(history.len(), 5);
    assert_eq!(history[2].verdict.decided_by.as_deref(), Some(xct::engine::UNMADE_DONE));
    assert_eq!(history[4].verdict.outcome, VerdictOutcome::Done, "made since: accepted at once");
    assert_eq!(probe.executed.load(Ordering::SeqCst), 1);

    // A new correctable refusal after the refused done holds the next done again.
    let outputs = vec![bad.clone(), read.clone(), DONE.into(), bad, DONE.into(), DONE.into()];
    let (history, _) = run_script(&cfg, outputs).await;
    let by: Vec<_> = history.iter().map(|s| s.verdict.decided_by.as_deref()).collect();
    let unmade = Some(xct::engine::UNMADE_DONE);
    assert_eq!(by, [Some("dry-run"), Some("dry-run"), unmade, Some("dry-run"), unmade, None]);
    assert_eq!(history[5].verdict.outcome, VerdictOutcome::Done);

    let (history, _) = run_script(&cfg, vec![step("test.probe", json!({"mode": "fail"})), DONE.into()]).await;
    assert_eq!(history.len(), 2);
    assert_eq!(history[0].error_code(), Some(ErrorCode::ExecutionFailed));
    assert_eq!(history[1].verdict.outcome, VerdictOutcome::Done, "a failed execution is no correctable refusal");
    assert_eq!(probe.executed.load(Ordering::SeqCst), 2);
}

/// The newest result, and only it, ends with the goal restated when it is a
/// success (small models lose the goal behind a long result); a failure
/// does not (its error says what to do); the recorded history keeps the
/// plain result.
#[tokio::test]
async fn the_newest_successful_result_restates_the_goal() {
    let (cfg, _) = setup(Limits { max_steps: 10, max_consecutive_errors: 10, timeout: None });
    let outputs = vec![
        step("test.read", json!({})),
        step("test.probe", json!({"mode": "ok"})),
        step("test.probe", json!({"mode": "fail"})),
        DONE.into(),
    ];
    let (history, decider) = run_script(&cfg, outputs).await;
    assert_eq!(history.len(), 4);
    let requests = decider.requests();
    assert_eq!(requests.len(), 4);
    let restated = "\n\nGoal: probe things";
    let count = |m: &[xct::model::ChatMessage]| m.iter().filter(|m| m.content.contains(restated)).count();
    assert_eq!(count(&requests[0].messages), 0, "no result yet");
    for r in &requests[1..3] {
        let (last, earlier) = r.messages.split_last().unwrap();
        assert_eq!(last.role, xct::model::Role::Tool);
        assert!(last.content.ends_with(restated), "{}", last.content);
        assert_eq!(count(earlier), 0, "only the newest result: {earlier:?}");
    }
    let failed = requests[3].messages.last().unwrap();
    assert!(failed.content.contains("EXECUTION_FAILED"), "{}", failed.content);
    assert_eq!(count(&requests[3].messages), 0, "not after a failure: {:?}", requests[3].messages);
    for s in &history {
        let shown = serde_json::to_string(&s.signal).unwrap();
        assert!(!shown.contains("Goal:"), "the history keeps the plain result: {shown}");
    }
}

/// A proposal repeated exactly, with the same result, is named as a repeat
/// in what the model sees next (small models re-read a file, or re-send a
/// change that changed nothing, until the step budget ends); the recorded
/// history keeps the plain result.
#[tokio::test]
async fn an_identical_proposal_with_the_same_result_is_named_as_a_repeat() {
    let (cfg, probe) = setup(Limits { max_steps: 10, max_consecutive_errors: 10, timeout: None });
    let read = step("test.read", json!({}));
    let change = step("test.probe", json!({"mode": "ok"}));
    let outputs = vec![read.clone(), read.clone(), change.clone(), read, change, DONE.into()];
    let (history, decider) = run_script(&cfg, outputs).await;
    assert_eq!(history.len(), 6);
    assert_eq!(probe.executed.load(Ordering::SeqCst), 2, "a repeat is named, never withheld");
    let requests = decider.requests();
    assert_eq!(requests.len(), 6);
    // The newest result each decision saw, as the model saw it.
    let newest: Vec<String> = requests[1..]
        .iter()
        .map(|r| {
            let last = r.messages.last().unwrap();
            assert_eq!(last.role, xct::model::Role::Tool, "results are tool turns");
            last.content.clone()
        })
        .collect();
    let repeat = "You proposed exactly this in step";
    assert!(!newest[0].contains(repeat), "{}", newest[0]);
    assert!(newest[1].contains(&format!("{repeat} 1 ")), "{}", newest[1]);
    assert!(!newest[2].contains(repeat), "the first change is not a repeat: {}", newest[2]);
    assert!(newest[3].contains(&format!("{repeat} 2 ")), "the latest such step: {}", newest[3]);
    assert!(newest[4].contains(&format!("{repeat} 3 ")), "a change with the same result: {}", newest[4]);
    // The earlier turns are rendered the same way in every later prompt.
    assert_eq!(requests[5].messages.iter().filter(|m| m.content.contains(repeat)).count(), 3);
    for s in &history {
        let shown = serde_json::to_string(&s.signal).unwrap();
        assert!(!shown.contains(repeat), "the history keeps the plain result: {shown}");
    }
}

/// A refused proposal is shown verbatim while it is the newest step; once a
/// later step exists, the model sees its one-line record instead (small
/// models copy their own earlier text). The recorded history keeps every
/// decision verbatim.
#[tokio::test]
async fn an_earlier_refused_proposal_is_echoed_as_its_record_line() {
    let (cfg, _) = setup(Limits { max_steps: 10, max_consecutive_errors: 10, timeout: None });
    let refused = step("test.probe", json!({"mode": "refuse"}));
    let outputs = vec![refused.clone(), step("test.read", json!({})), DONE.into()];
    let (history, decider) = run_script(&cfg, outputs).await;
    assert_eq!(history.len(), 3);
    assert_eq!(history[0].outcome_label(), "DRY_RUN_FAILED");
    let requests = decider.requests();
    let assistant = |i: usize| -> Vec<String> {
        requests[i]
            .messages
            .iter()
            .filter(|m| m.role == xct::model::Role::Assistant)
            .map(|m| m.content.clone())
            .collect()
    };
    assert_eq!(assistant(1), std::slice::from_ref(&refused), "the newest step is shown verbatim");
    let shown = assistant(2);
    assert_eq!(shown.len(), 2);
    assert!(
        shown[0].starts_with("(refused) step 1: test.probe args ") && shown[0].ends_with("-> DRY_RUN_FAILED"),
        "{}",
        shown[0]
    );
    assert_eq!(shown[1], step("test.read", json!({})), "a step that was not refused stays verbatim");
    assert_eq!(history[0].decision, refused, "the history keeps the decision");
}

/// A refused change that no later success of its tool made is named after
/// the newest success (the eval model, refused a write, read the source
/// and answered "copied"); once the tool succeeds, the note is gone.
#[tokio::test]
async fn a_refused_change_is_named_until_it_is_made() {
    let (cfg, _) = setup(Limits { max_steps: 10, max_consecutive_errors: 10, timeout: None });
    let refused = step("test.probe", json!({"mode": "refuse"}));
    let read = step("test.read", json!({}));
    let outputs = vec![refused, read.clone(), step("test.probe", json!({"mode": "ok"})), read, DONE.into()];
    let (history, decider) = run_script(&cfg, outputs).await;
    assert_eq!(history.len(), 5);
    let newest: Vec<String> =
        decider.requests()[2..].iter().map(|r| r.messages.last().unwrap().content.clone()).collect();
    assert_eq!(newest.len(), 3);
    let note = "Changes that did not happen (refused, and not made since): step 1 (test.probe).";
    assert!(newest[0].contains(note) && newest[0].ends_with("\n\nGoal: probe things"), "{}", newest[0]);
    for later in &newest[1..] {
        assert!(!later.contains("did not happen"), "made in step 3: {later}");
    }
}
