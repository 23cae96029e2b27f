//! LlamaDecider with the real SmolLM2 model: grammar-constrained outputs
//! always parse, and prefix reuse does not change what the model says.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use xct::engine::{Limits, RunConfig, context};
use xct::model::{DecideRequest, Decider, LlamaDecider, LlamaOptions, Sampling};
use xct::protocol::{Decision, parse_decision};
use xct::tools::ToolSet;
use xct::tools::fs::Workspace;

fn model_path() -> PathBuf {
    let p = std::env::var("XCT_MODEL")
        .map(PathBuf::from)
        .unwrap_or_else(|_| Path::new(env!("CARGO_MANIFEST_DIR")).join("models/SmolLM2-135M-Instruct.Q4_1.gguf"));
    assert!(p.is_file(), "the test model {} is missing: run scripts/fetch-model.sh", p.display());
    p
}

fn decider() -> Arc<LlamaDecider> {
    static D: OnceLock<Arc<LlamaDecider>> = OnceLock::new();
    D.get_or_init(|| {
        let opts = LlamaOptions { n_threads: Some(2), n_ctx: 4096, ..LlamaOptions::new(model_path()) };
        Arc::new(LlamaDecider::load(opts).expect("model loads"))
    })
    .clone()
}

fn run(goal: &str, sampling: Sampling) -> (RunConfig, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let ws = Workspace::open(dir.path()).unwrap();
    let tools = ws.tools().into_iter().fold(ToolSet::new(), ToolSet::with);
    let cfg = RunConfig { id: goal.into(), goal: goal.into(), tools, limits: Limits::default(), sampling };
    (cfg, dir)
}

fn request(cfg: &RunConfig) -> DecideRequest {
    DecideRequest {
        run_id: cfg.id.clone(),
        messages: context::render(cfg, &[]),
        schema: context::decision_schema(cfg),
        sampling: cfg.sampling.clone(),
    }
}

#[tokio::test]
async fn every_sampled_output_parses_or_is_reported_cut_off() {
    let d = decider();
    let mut parsed = 0;
    for (temperature, seed) in [(0.0, 1), (0.8, 1), (0.8, 2), (1.5, 3), (1.5, 4), (2.0, 5)] {
        let (cfg, _dir) = run("Write hello.txt containing hi.", Sampling { temperature, seed, max_tokens: 96 });
        let out = d.decide(request(&cfg)).await.expect("inference works");
        match parse_decision(&out.text, out.stats.truncated) {
            Ok(Decision::NextStep(step)) => {
                assert!(cfg.tools.get(&step.tool).is_some(), "grammar only allows the run's tools: {}", step.tool);
                parsed += 1;
            }
            Ok(Decision::Done { .. }) => parsed += 1,
            Err(e) => {
                assert!(out.stats.truncated, "only a cut-off output may fail to parse: {e}: {}", out.text);
                assert!(e.message.contains("cut off"), "{e}");
            }
        }
        assert!(out.stats.prompt_tokens > 100 && out.stats.completion_tokens > 0);
    }
    assert!(parsed >= 3, "most sampled outputs complete within 96 tokens, got {parsed}");
}

#[tokio::test]
async fn prefix_reuse_does_not_change_the_decision() {
    let d = decider();
    let (a, _da) = run("List the files in the workspace.", Sampling { temperature: 0.0, seed: 1, max_tokens: 64 });
    let (b, _db) = run("Read notes.txt and summarise it.", Sampling { temperature: 0.0, seed: 1, max_tokens: 64 });
    let first = d.decide(request(&a)).await.unwrap();
    let again = d.decide(request(&a)).await.unwrap();
    assert!(again.stats.cached_tokens > 100, "the second identical prompt reuses the cache: {:?}", again.stats);
    assert_eq!(first.text, again.text, "reuse gives the same greedy output");
    let other = d.decide(request(&b)).await.unwrap();
    let back = d.decide(request(&a)).await.unwrap();
    assert_eq!(first.text, back.text, "switching runs in between does not leak state");
    assert!(other.stats.cached_tokens < other.stats.prompt_tokens);
}
