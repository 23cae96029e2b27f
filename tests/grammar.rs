//! Every tool's argument schema can be embedded in the decision schema and
//! turned into a grammar by llama.cpp's converter (a failure there would
//! stop every run that lists the tool).

use std::sync::Arc;

use xct::engine::{Limits, RunConfig, context};
use xct::k8s::tools::K8sContext;
use xct::model::Sampling;
use xct::model::grammar::schema_to_gbnf;
use xct::tools::ToolSet;
use xct::tools::fs::Workspace;

/// Every tool (the Kubernetes ones against an address nothing listens on)
/// and the workspace the fs tools are confined to.
fn all_tools() -> (Vec<Arc<dyn xct::tools::Tool>>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let client = kube::Client::try_from(kube::Config::new("http://127.0.0.1:9".parse().unwrap())).unwrap();
    let k8s = xct::k8s::tools::tools(Arc::new(K8sContext { client, namespace: "demo".into() }));
    let fs = Workspace::open(dir.path()).unwrap().tools();
    (k8s.into_iter().chain(fs).collect(), dir)
}

/// A run with `tools` and `max_tokens`.
fn run_with(tools: ToolSet, max_tokens: u32) -> RunConfig {
    RunConfig {
        id: "g".into(),
        acting_as: "tester".into(),
        goal: "g".into(),
        tools,
        limits: Limits::default(),
        sampling: Sampling { max_tokens, ..Sampling::default() },
    }
}

/// A step that read a file: once one is in the history, done is offered.
fn looked() -> xct::engine::record::StepRecord {
    use xct::engine::record::{ModelStats, StepTimings};
    serde_json::from_value(serde_json::json!({
        "index": 1, "decision": "{}", "tool": "fs.read", "verdict": {"outcome": "Allowed", "reason": "read"},
        "startedAt": "2026-11-28T00:00:00Z", "model": ModelStats::default(), "timings": StepTimings::default(),
    }))
    .unwrap()
}

#[tokio::test]
async fn every_tool_schema_becomes_a_grammar() {
    let (all, _dir) = all_tools();
    assert_eq!(all.len(), 12);
    for tool in &all {
        let schema = tool.schema();
        assert!(!schema.to_string().contains("$ref"), "{} has a $ref: {schema}", tool.name());
        let run = run_with(ToolSet::new().with(tool.clone()), Sampling::default().max_tokens);
        let gbnf = schema_to_gbnf(&context::decision_schema(&run, &[]))
            .unwrap_or_else(|e| panic!("{}: {e}\n{schema}", tool.name()));
        assert!(gbnf.contains(tool.name()), "{}", tool.name());
        if tool.name() == "k8s.patch" {
            // Per kind, the patch is an object of that kind's top-level
            // fields only (TargetKind::patchable), the most changed first;
            // never a free key such as a JSON Patch's "op".
            let patches: Vec<&str> = gbnf.lines().filter(|l| l.contains("-patch ::=")).collect();
            assert_eq!(patches.len(), 4, "{gbnf}");
            for p in &patches {
                assert!(!p.contains(" string ") && !p.contains(" object "), "{p}");
            }
            let first_field = |p: &str| p.split("-patch-").nth(1).map(|f| f.split("-kv").next().unwrap().to_string());
            let firsts: Vec<_> = patches.iter().map(|p| first_field(p).unwrap_or_default()).collect();
            assert_eq!(firsts, ["spec", "data", "stringData", "imagePullSecrets"], "{patches:#?}");
        }
    }
    let run = run_with(all.into_iter().fold(ToolSet::new(), ToolSet::with), Sampling::default().max_tokens);
    let first = schema_to_gbnf(&context::decision_schema(&run, &[])).unwrap();
    // Once a step has looked, done is offered too, and converts.
    let later = schema_to_gbnf(&context::decision_schema(&run, &[looked()])).unwrap();
    assert!(later.contains("done") && !first.contains("done"), "{first}\n{later}");
}

/// Every free string of a decision is bounded in the grammar (`char{0,n}`,
/// never `char*`) except inside the free objects of k8s.patch, k8s.apply
/// and fs.write's object content, whose size llama.cpp's converter cannot
/// bound (an object cut by maxTokens is an invalid output, never executed). The grammar allows one
/// character more than the schema the gate checks (engine/bounds.rs).
#[tokio::test]
async fn the_grammar_bounds_every_free_string_argument() {
    let (all, _dir) = all_tools();
    let mut checked = 0;
    for tool in all {
        let run = run_with(ToolSet::new().with(tool.clone()), 256);
        let gbnf = schema_to_gbnf(&context::decision_schema(&run, &[])).unwrap();
        let free_object = matches!(tool.name(), "k8s.patch" | "k8s.apply" | "fs.write");
        assert_eq!(gbnf.contains("char*"), free_object, "{}:\n{gbnf}", tool.name());
        if tool.name() == "fs.write" {
            // path and content share 128 characters; the grammar allows 65.
            assert_eq!(gbnf.matches("char{0,65}").count(), 2, "{gbnf}");
        }
        checked += 1;
    }
    assert_eq!(checked, 12);
}

/// The step's goal and the done message are one-line texts for people
/// (engine/bounds.rs `free_text`): their pattern reaches the grammar as
/// bounded character classes. llama.cpp's converter accepts any string for
/// a pattern it cannot read, so the rules themselves are checked.
#[tokio::test]
async fn the_goal_and_the_done_message_are_finished_lines_in_the_grammar() {
    let (all, _dir) = all_tools();
    let run = run_with(all.into_iter().fold(ToolSet::new(), ToolSet::with), 256);
    let gbnf = schema_to_gbnf(&context::decision_schema(&run, &[looked()])).unwrap();
    let body = r#"[^"\\\x00-\x1F\x7F]"#;
    let ending = r#"[^"\\\x00-\x1F\x7F\x20{(=:,;])?) "\"""#;
    // 64 characters of goal and 128 of message at maxTokens 256.
    let goals = gbnf.lines().filter(|l| l.contains("{0,63} ") && l.ends_with(ending)).count();
    let messages = gbnf.lines().filter(|l| l.contains("{0,127} ") && l.ends_with(ending)).count();
    assert!(goals >= 1 && messages == 1, "{gbnf}");
    assert!(gbnf.lines().any(|l| l.ends_with(&format!("::= {body}"))), "{gbnf}");
}
