//! What reaches a person's terminal is shown, never obeyed. A step's tool
//! name, goal and arguments decode from JSON escapes into any character,
//! and the messages and dry runs that quote them carry those characters
//! on: printed raw, ESC sequences clear the screen, retitle the window or
//! hide a line, and bidirectional overrides reorder what a reviewer reads
//! ("Trojan Source"). Every view made for a terminal (`xct local`'s step
//! lines, which are also each step's Event, `xct approvals list`, the
//! review `xct approve` prints, `xct policy test`'s lines) writes them as
//! visible escapes, and so does every history file `xct` writes (`xct
//! history show`, `xct local`'s history), as YAML escapes that read back
//! to the same text.

mod support;

use serde_json::json;
use xct::approvals::Pending;
use xct::engine::record::StepRecord;

/// ESC (a CSI that erases the line and returns), a C1 CSI, BEL, a newline,
/// and the bidi overrides RLO and LRI.
const HOSTILE: &str = "\u{1b}[2K\r\u{9b}1A\u{7}\nscale\u{202e}eteled\u{2066}";

/// The characters a terminal acts on or reorders by: none may be printed.
fn acted_on(c: char) -> bool {
    (c.is_control() && c != '\n' && c != '\t') || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

fn step(phase: &str, outcome: &str) -> StepRecord {
    serde_json::from_value(json!({
        "index": 3,
        "decision": format!("{{\"next_step\":{{\"tool\":\"k8s.scale\",\"arguments\":{{}},\"goal\":\"{HOSTILE}\"}}}}"),
        "tool": format!("k8s.{HOSTILE}"),
        "proposalDigest": "ab".repeat(32),
        "phase": phase,
        "verdict": {"outcome": outcome, "reason": format!("approval required; would scale {HOSTILE}")},
        "dryRun": {"ok": true, "summary": format!("would scale {HOSTILE}")},
        "startedAt": "2026-12-07T00:00:00Z",
        "model": {"promptTokens": 0, "completionTokens": 0, "promptMs": 0, "decodeMs": 0},
        "timings": {"modelMs": 0, "validationMs": 0, "executionMs": 0},
    }))
    .unwrap()
}

fn assert_shown_not_obeyed(view: &str, text: &str) {
    let bad: Vec<char> = text.chars().filter(|c| acted_on(*c)).collect();
    assert!(bad.is_empty(), "{view} prints {bad:?} raw: {text:?}");
    for escaped in ["\\u{1b}", "\\u{9b}", "\\u{202e}", "\\u{2066}"] {
        assert!(text.contains(escaped), "{view} does not show {escaped}: {text:?}");
    }
}

#[test]
fn a_step_line_shows_control_and_bidi_characters_as_escapes() {
    let line = xct::local::step_line(&step("Completed", "Vetoed"));
    assert_shown_not_obeyed("a step line", &line);
    assert!(!line.contains('\n'), "{line:?}");
    let note = xct::operator::events::step_note(&step("Completed", "Vetoed"));
    assert_shown_not_obeyed("a step's Event", &note);
}

#[test]
fn an_approval_review_shows_control_and_bidi_characters_as_escapes() {
    let pending = Pending {
        namespace: "demo".into(),
        run: "scale-web".into(),
        run_uid: "6f1c7a52-0000-4000-8000-000000000001".into(),
        creator: Some(format!("alice{HOSTILE}")),
        step: step("AwaitingApproval", "AwaitingApproval"),
    };
    let review = pending.describe();
    assert_shown_not_obeyed("the review", &review);
    // One line per field: a newline the model wrote cannot add a line.
    assert_eq!(review.lines().count(), 8, "{review}");
    let table = xct::approvals::table(std::slice::from_ref(&pending));
    assert_shown_not_obeyed("the approvals table", &table);
    assert_eq!(table.lines().count(), 2, "{table}");
}

/// `xct local` prints a line per step and the run's last line, with the
/// model's done message: a tool name and a message the model wrote show as
/// escapes, and add no line.
#[tokio::test]
async fn xct_local_prints_what_the_model_wrote_as_escapes() {
    let dir = tempfile::tempdir().unwrap();
    let prepared = support::prepare_local(dir.path(), "hostile", "fs.list");
    let unknown = json!({"next_step": {"tool": format!("fs.{HOSTILE}"), "arguments": {}, "goal": HOSTILE}});
    let list = json!({"next_step": {"tool": "fs.list", "arguments": {"path": "."}, "goal": "look"}});
    let done = json!({"done": true, "message": format!("all done{HOSTILE}")});
    let decider = xct::model::ScriptedDecider::new([unknown, list, done].map(|d| d.to_string()));
    let mut out = Vec::new();
    xct::local::run(&prepared, &decider, &dir.path().join("h.yaml"), &mut out).await.unwrap();
    let out = String::from_utf8(out).unwrap();
    assert_shown_not_obeyed("xct local", &out);
    assert_eq!(out.lines().count(), 5, "{out}");
    assert!(out.lines().last().unwrap().contains("all done\\u{1b}[2K"), "{out}");
    let history = std::fs::read_to_string(dir.path().join("h.yaml")).unwrap();
    assert_history_file_shown(&history, 3, "fs.\u{1b}");
}

/// A history file is YAML for a person (`cat`, `less`) and for every
/// reader alike: what the model wrote is in it as YAML escapes, none
/// raw, and it reads back to the very text recorded, its chain intact.
fn assert_history_file_shown(text: &str, steps: usize, tool_starts: &str) {
    let bad: Vec<char> = text.chars().filter(|c| acted_on(*c)).collect();
    assert!(bad.is_empty(), "the history file holds {bad:?} raw:\n{text}");
    let histories = xct::history::parse(text, std::path::Path::new("history.yaml")).unwrap();
    assert_eq!(histories.len(), 1);
    let h = &histories[0];
    assert_eq!(h.steps.len(), steps, "{text}");
    h.verify().unwrap();
    let tool = h.steps[0].tool.as_deref().unwrap_or_default();
    assert!(tool.starts_with(tool_starts) && tool.ends_with(HOSTILE), "{tool:?}");
    let done = h.steps.last().unwrap().decision.clone();
    assert!(done.contains("\u{202e}eteled\u{2066}"), "the done step reads back as written: {done:?}");
}

/// A run in the cluster: its Events (`kubectl describe`, `kubectl get
/// events`), its summary fields (the `Last Tool` and `Message` columns of
/// `kubectl get xctrun -o wide`, the conditions) and `xct history show`,
/// which prints the run with its whole history inline, show what the model
/// wrote as escapes; only the recorded steps keep it as it was. (kubectl
/// itself escapes ESC and CR in tables and describe, not C1 controls or
/// bidi overrides.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_in_the_cluster_shows_control_and_bidi_characters_as_escapes() {
    let srv = support::cluster().await;
    let runs: kube::Api<xct::crd::XctRun> = kube::Api::namespaced(srv.client(), support::NS);
    let unknown = json!({"next_step": {"tool": format!("k8s.{HOSTILE}"), "arguments": {}, "goal": HOSTILE}});
    let done = json!({"done": true, "message": format!("all done{HOSTILE}")});
    let decider = xct::model::ScriptedDecider::new([unknown, done].map(|d| d.to_string()));
    let controller = support::start_operator(&srv, std::sync::Arc::new(decider), None);
    support::create_runs(&runs, 1, "hostile").await;
    let all = support::wait_all_terminal(&runs, 1).await;
    assert_eq!(all.len(), 1);
    let status = all[0].status.clone().unwrap();
    assert_eq!(status.phase, xct::crd::RunPhase::Succeeded);
    let message = status.message.clone().unwrap_or_default();
    assert!(message.starts_with("all done\\u{1b}[2K"), "{message:?}");
    assert_shown_not_obeyed("the run's message", &message);
    for c in &status.conditions {
        assert!(!c.message.chars().any(acted_on), "condition {} prints {:?} raw", c.type_, c.message);
    }
    assert!(status.steps[0].tool.as_deref().unwrap_or_default().ends_with(HOSTILE), "the step keeps what was proposed");
    // Every Event of the run, the last one (RunSucceeded) among them.
    let events: kube::Api<k8s_openapi::api::events::v1::Event> = kube::Api::namespaced(srv.client(), support::NS);
    let mut notes = Vec::new();
    for _ in 0..100 {
        let list = events.list(&Default::default()).await.unwrap().items;
        if list.iter().any(|e| e.reason.as_deref() == Some("RunSucceeded")) {
            notes = list.into_iter().map(|e| (e.reason.unwrap_or_default(), e.note.unwrap_or_default())).collect();
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    controller.abort();
    assert!(notes.len() >= 3, "an Event per step and one at the end: {notes:?}");
    for (reason, note) in &notes {
        let bad: Vec<char> = note.chars().filter(|c| acted_on(*c)).collect();
        assert!(bad.is_empty(), "the {reason} Event prints {bad:?} raw: {note:?}");
    }
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    srv.write_kubeconfig(&kubeconfig, None).unwrap();
    let (code, show, err) = support::xct(&["history", "show", "hostile-000", "-n", support::NS], &kubeconfig);
    assert_eq!(code, Some(0), "{err}");
    assert_history_file_shown(&show, 2, "k8s.\u{1b}");
}

/// A run's summary (`lastTool`, `message` and the conditions, which `kubectl
/// get -o wide` and `describe` show) holds what the model wrote as
/// escapes; the step keeps it as it was, so the chain still verifies.
#[test]
fn a_runs_summary_shows_control_and_bidi_characters_as_escapes() {
    let mut status = xct::crd::XctRunStatus {
        steps: vec![step("Completed", "Vetoed")],
        message: Some(format!("model failure: {HOSTILE}")),
        ..Default::default()
    };
    status.refresh_summary();
    assert_shown_not_obeyed("the last tool", status.last_tool.as_deref().unwrap_or_default());
    assert_shown_not_obeyed("the message", status.message.as_deref().unwrap_or_default());
    assert!(!status.conditions.is_empty());
    for c in &status.conditions {
        assert!(!c.message.chars().any(acted_on), "condition {} prints {:?} raw", c.type_, c.message);
    }
    assert_eq!(status.steps[0].tool.as_deref(), Some(format!("k8s.{HOSTILE}").as_str()));
    xct::engine::record::verify_chain(&status.steps, "", 3).unwrap();
    // Escaped once: a summary refreshed again is the same.
    let before = status.message.clone();
    status.refresh_summary();
    assert_eq!(status.message, before);
}

/// `xct policy test` prints a line per replayed proposal: its run and tool
/// come from a recorded history, and the default-deny message quotes them.
#[test]
fn a_replayed_verdict_shows_control_and_bidi_characters_as_escapes() {
    let replayed = xct::policy::offline::Replayed {
        run: format!("demo/cleanup{HOSTILE}"),
        step: 3,
        tool: format!("k8s.{HOSTILE}"),
        verdict: xct::policy::Verdict::Deny,
        decided_by: None,
        message: format!("no XctPolicy allows k8s.{HOSTILE} for run demo/cleanup"),
        audit: vec![],
        needs_target: vec![],
        target_matches: None,
    };
    let line = replayed.line();
    assert_shown_not_obeyed("a replayed verdict", &line);
    assert!(!line.contains('\n'), "{line:?}");
}
