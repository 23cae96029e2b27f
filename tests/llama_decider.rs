//! LlamaDecider with the real SmolLM2 model: grammar-constrained outputs
//! always parse, and prefix reuse does not change what the model says.

use std::path::{Path, PathBuf};
use std::sync::Arc;

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

fn run(goal: &str, sampling: Sampling) -> (RunConfig, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let ws = Workspace::open(dir.path()).unwrap();
    let tools = ws.tools().into_iter().fold(ToolSet::new(), ToolSet::with);
    let cfg = RunConfig {
        id: goal.into(),
        acting_as: "tester".into(),
        goal: goal.into(),
        tools,
        limits: Limits::default(),
        sampling,
    };
    (cfg, dir)
}

fn request(cfg: &RunConfig) -> DecideRequest {
    DecideRequest {
        run_id: cfg.id.clone(),
        messages: context::render(cfg, &[], 0),
        schema: context::decision_schema(cfg, &[]),
        sampling: cfg.sampling.clone(),
    }
}

#[tokio::test]
async fn every_sampled_output_parses_or_is_reported_cut_off() {
    // Its own model instance: the grammar's counts below are this test's.
    let opts = LlamaOptions { n_threads: Some(2), n_ctx: 4096, ..LlamaOptions::new(model_path()) };
    let d = LlamaDecider::load(opts).expect("model loads");
    let before = d.busy();
    let (mut parsed, mut generated) = (0, 0);
    for (temperature, seed) in [(0.0, 1), (0.8, 1), (0.8, 2), (1.5, 3), (1.5, 4), (2.0, 5)] {
        let (cfg, _dir) = run("Write hello.txt containing hi.", Sampling { temperature, seed, max_tokens: 96 });
        let out = d.decide(request(&cfg)).await.expect("inference works");
        generated += u64::from(out.stats.completion_tokens);
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
    // Hot samples pick tokens the grammar refuses: the lazy check then went
    // through its shortlists, and filtered far fewer candidates than the
    // vocabulary (49152) per pick (63 measured).
    let spent = d.busy().since(&before);
    assert!(spent.picks >= generated && spent.picks > 100, "{spent:?}");
    assert!(spent.filtered > spent.picks, "some picks were refused: {spent:?}");
    assert!(spent.filtered < spent.picks * 512, "{} candidates per pick", spent.filtered / spent.picks);
}

/// The equivalence check for prefix reuse: the first sampled token (argmax)
/// after reusing the cache equals the one after a fresh evaluation. (Whole
/// generations may drift apart later: evaluating a prompt in different
/// batch splits changes floating-point rounding.)
#[tokio::test]
async fn prefix_reuse_gives_the_same_first_token() {
    // Its own model instance: no other test's requests in between.
    let opts = LlamaOptions { n_threads: Some(2), n_ctx: 4096, ..LlamaOptions::new(model_path()) };
    let d = LlamaDecider::load(opts).expect("model loads");
    let one = Sampling { temperature: 0.0, seed: 1, max_tokens: 1 };
    let (a, _da) = run("List the files in the workspace.", one.clone());
    let (mut b, _db) = run("Read notes.txt and summarise it.", one.clone());
    // A run with another system prompt (one tool), so `a` is then evaluated almost from scratch.
    let only_read: Vec<String> = vec!["fs.read".into()];
    b.tools = b.tools.select(&only_read).unwrap();
    d.decide(request(&b)).await.unwrap();
    let fresh = d.decide(request(&a)).await.unwrap();
    let reused = d.decide(request(&a)).await.unwrap();
    assert!(fresh.stats.prompt_tokens - fresh.stats.cached_tokens >= 150, "fresh: {:?}", fresh.stats);
    assert_eq!(reused.stats.cached_tokens + 1, reused.stats.prompt_tokens, "reused: {:?}", reused.stats);
    assert_eq!(fresh.stats.completion_tokens, 1);
    assert_eq!(fresh.text, reused.text, "the first token is the same with and without reuse");
}

/// Each run keeps its own slot; the least recently used is evicted and
/// simply evaluated again; concurrent requests are served together.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slots_keep_runs_apart_and_evict_the_least_recently_used() {
    let opts = LlamaOptions { n_threads: Some(2), n_ctx: 2048, slots: 2, ..LlamaOptions::new(model_path()) };
    let d = Arc::new(LlamaDecider::load(opts).expect("model loads"));
    let one = Sampling { temperature: 0.0, seed: 1, max_tokens: 1 };
    let mk = |id: &str, goal: &str| {
        let (mut cfg, dir) = run(goal, one.clone());
        cfg.id = id.into();
        (cfg, dir)
    };
    let (a, _da) = mk("a", "List the files in the workspace.");
    let (b, _db) = mk("b", "Read notes.txt and summarise it.");
    let (c, _dc) = mk("c", "Write hello.txt containing hi.");
    let full = |r: &xct::model::RawDecision| r.stats.cached_tokens + 1 == r.stats.prompt_tokens;
    d.decide(request(&a)).await.unwrap();
    d.decide(request(&b)).await.unwrap();
    assert!(full(&d.decide(request(&a)).await.unwrap()), "a kept its slot while b ran");
    assert!(full(&d.decide(request(&b)).await.unwrap()), "b kept its slot");
    d.decide(request(&c)).await.unwrap(); // evicts a, the least recently used
    let a_again = d.decide(request(&a)).await.unwrap();
    assert!(!full(&a_again), "a was evicted and evaluated again: {:?}", a_again.stats);
    // Four concurrent requests (more than the slots): all served, all parse.
    let mut handles = vec![];
    for (id, goal) in [("w", "List files."), ("x", "Read a.txt."), ("y", "Write b.txt."), ("z", "List the folder.")] {
        let d = d.clone();
        let (cfg, dir) = mk(id, goal);
        let mut req = request(&cfg);
        req.sampling.max_tokens = 64;
        handles.push(tokio::spawn(async move {
            let _keep = dir;
            d.decide(req).await
        }));
    }
    for h in handles {
        let out = h.await.unwrap().unwrap();
        assert!(parse_decision(&out.text, out.stats.truncated).is_ok() || out.stats.truncated, "{}", out.text);
    }
}

/// Continuous batching: a request that arrives while another is generating
/// joins the next decode step and is answered as soon as it is done, not
/// after the long one. A caller that gives up frees its place.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_request_is_not_held_behind_a_long_one() {
    let opts = LlamaOptions { n_threads: Some(2), n_ctx: 2048, slots: 2, ..LlamaOptions::new(model_path()) };
    let d = Arc::new(LlamaDecider::load(opts).expect("model loads"));
    let (long, _dl) = run(
        "Write story.txt containing a long story about a cat and a dog.",
        Sampling { temperature: 0.0, seed: 1, max_tokens: 160 },
    );
    let (mut short, _ds) =
        run("List the files in the workspace.", Sampling { temperature: 0.0, seed: 1, max_tokens: 1 });
    short.id = "short".into();
    // The short run's prompt is cached: its next request needs one token of prefill.
    d.decide(request(&short)).await.unwrap();
    let t = std::time::Instant::now();
    let long_task = {
        let d = d.clone();
        let req = request(&long);
        tokio::spawn(async move { (d.decide(req).await, t.elapsed()) })
    };
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    let short_out = d.decide(request(&short)).await.unwrap();
    let short_done = t.elapsed();
    let (long_out, long_done) = long_task.await.unwrap();
    let long_out = long_out.unwrap();
    assert!(long_out.stats.completion_tokens >= 30, "the long request generates many tokens: {:?}", long_out.stats);
    assert_eq!(short_out.stats.completion_tokens, 1);
    assert!(
        short_done < long_done,
        "the short request finished at {short_done:?}, before the long one at {long_done:?} ({} tokens)",
        long_out.stats.completion_tokens
    );

    // A caller that drops its request (a cancelled reconcile) does not block the next one.
    let abandoned = {
        let d = d.clone();
        let req = request(&long);
        tokio::spawn(async move { d.decide(req).await })
    };
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    abandoned.abort();
    let again = d.decide(request(&short)).await.unwrap();
    assert_eq!(again.stats.completion_tokens, 1);
}

/// The lazy grammar check changes the cost, not the answer: greedy outputs
/// equal those of filtering the whole vocabulary at every token.
#[tokio::test]
async fn lazy_grammar_checks_give_the_same_greedy_output_as_full_filtering() {
    use xct::model::GrammarMode;
    let load = |grammar| {
        let opts =
            LlamaOptions { n_threads: Some(2), n_ctx: 2048, slots: 1, grammar, ..LlamaOptions::new(model_path()) };
        LlamaDecider::load(opts).expect("model loads")
    };
    let (lazy, full) = (load(GrammarMode::Lazy), load(GrammarMode::Full));
    let greedy = Sampling { temperature: 0.0, seed: 1, max_tokens: 64 };
    for goal in ["Write hello.txt containing hi.", "List the workspace.", "Create config.json with {\"env\":\"dev\"}."]
    {
        let (cfg, _dir) = run(goal, greedy.clone());
        let a = lazy.decide(request(&cfg)).await.unwrap();
        let b = full.decide(request(&cfg)).await.unwrap();
        assert!(a.stats.completion_tokens > 5, "{goal}: {:?}", a.stats);
        assert_eq!(a.text, b.text, "{goal}");
    }
}

/// Requests beyond the slots wait in the bounded queue, visible as queue
/// depth (the `xct_inference_queue_depth` metric), and are all served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_beyond_the_slots_wait_in_a_visible_queue() {
    let opts = LlamaOptions { n_threads: Some(2), n_ctx: 2048, slots: 1, ..LlamaOptions::new(model_path()) };
    let d = Arc::new(LlamaDecider::load(opts).expect("model loads"));
    let mut handles = vec![];
    for i in 0..4 {
        let (mut cfg, dir) =
            run("List the files in the workspace.", Sampling { temperature: 0.0, seed: 1, max_tokens: 8 });
        cfg.id = format!("q{i}");
        let d = d.clone();
        handles.push(tokio::spawn(async move {
            let _keep = dir;
            d.decide(request(&cfg)).await
        }));
    }
    let mut deepest = 0;
    let until = std::time::Instant::now() + std::time::Duration::from_secs(2);
    while std::time::Instant::now() < until && deepest < 3 {
        deepest = deepest.max(d.queue_depth());
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    // Three wait while one runs in the single slot (four if all arrive before the first is taken).
    assert!((3..=4).contains(&deepest), "queue depth reached {deepest}");
    for h in handles {
        assert!(h.await.unwrap().unwrap().stats.completion_tokens > 0);
    }
    assert_eq!(d.queue_depth(), 0);
}

/// The decider says where it runs: the devices llama.cpp offers, the
/// model's layers and how many went to a GPU (none on a CPU-only build,
/// whatever --n-gpu-layers asks), as /readyz and `xct bench` report it.
#[test]
fn the_backend_and_offloaded_layers_are_reported() {
    let opts =
        LlamaOptions { n_threads: Some(2), n_ctx: 512, slots: 1, n_gpu_layers: 99, ..LlamaOptions::new(model_path()) };
    let d = LlamaDecider::load(opts).expect("model loads");
    let info = d.backend();
    assert_eq!(info.layers, 31, "SmolLM2-135M: 30 layers and the output layer");
    assert!(info.devices.iter().any(|dev| dev.kind == "cpu" && dev.backend == "CPU"), "{info:?}");
    let gpu = info.devices.iter().any(|dev| matches!(dev.kind, "gpu" | "igpu"));
    assert_eq!(info.layers_offloaded, if gpu { 31 } else { 0 }, "{info:?}");
    let expected_build = if cfg!(feature = "dynamic-backends") { "dynamic" } else { "static" };
    assert_eq!(info.build, expected_build);
    assert_eq!(info.loaded_from.is_some(), cfg!(feature = "dynamic-backends"), "{info:?}");
    let summary = d.placement().unwrap();
    assert!(
        summary.starts_with("CPU") && summary.contains(&format!("{} of 31 layers offloaded", info.layers_offloaded)),
        "{summary}"
    );
    let json = serde_json::to_value(info).unwrap();
    assert!(json["devices"][0]["memoryTotalBytes"].as_u64().is_some(), "{json}");
}

/// The inference thread accounts for its time by phase (what `xct bench`
/// (c) reports per decision): one decode call per generated token at
/// least, and time in each phase. The second request's grammar is a clone
/// of the one parsed for the first (same schema): the same greedy output
/// (without prefix reuse, which may change the rounding).
#[tokio::test]
async fn the_inference_thread_accounts_its_time_and_a_cloned_grammar_decides_alike() {
    let opts =
        LlamaOptions { n_threads: Some(2), n_ctx: 2048, slots: 1, reuse: false, ..LlamaOptions::new(model_path()) };
    let d = LlamaDecider::load(opts).expect("model loads");
    let (cfg, _dir) = run("Write hello.txt containing hi.", Sampling { temperature: 0.0, seed: 1, max_tokens: 64 });
    let before = d.busy();
    let first = d.decide(request(&cfg)).await.unwrap();
    let spent = d.busy().since(&before);
    assert!(first.stats.completion_tokens > 5, "{:?}", first.stats);
    // The prompt (one call per 512 tokens), then one call per generated token but the last.
    let prompt_calls = u64::from(first.stats.prompt_tokens).div_ceil(512);
    assert_eq!(spent.steps, prompt_calls + u64::from(first.stats.completion_tokens) - 1, "{spent:?} {:?}", first.stats);
    assert!(spent.admit_ms > 0.0 && spent.decode_ms > 0.0 && spent.sample_ms > 0.0, "{spent:?}");
    // The grammar advanced past each decoded token: every token but the last.
    assert!(spent.advance_ms > 0.0, "{spent:?}");
    assert!(spent.decode_ms > spent.sample_ms, "on a CPU decode calls dominate: {spent:?}");
    let second = d.decide(request(&cfg)).await.unwrap();
    assert_eq!(first.text, second.text);
    assert_eq!(d.busy().since(&before).steps, 2 * spent.steps);
}

/// One KV cache for every slot (`kv_unified`) still keeps each run to its
/// own cells: run b's answer is the same, token for token, whatever the
/// other run's cells hold (two other runs with prompts of equal length lay
/// the cache out alike), the other run's prompt survives b's decoding, and
/// runs decoded together all get their answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_unified_kv_cache_keeps_runs_apart() {
    let greedy = Sampling { temperature: 0.0, seed: 1, max_tokens: 24 };
    let (mut b, _db) = run("Write hello.txt containing hi.", greedy.clone());
    b.id = "b".into();
    let mut seen = Vec::new();
    for goal in ["List the files in the workspace.", "Read the notes in the workspace."] {
        let opts = LlamaOptions {
            n_threads: Some(2),
            n_ctx: 2048,
            slots: 2,
            kv_unified: true,
            ..LlamaOptions::new(model_path())
        };
        let d = LlamaDecider::load(opts).expect("model loads");
        // One token: the other run's cells are its prompt alone.
        let (mut other, _do) = run(goal, Sampling { max_tokens: 1, ..greedy.clone() });
        other.id = "other".into();
        let first = d.decide(request(&other)).await.unwrap();
        let answer = d.decide(request(&b)).await.unwrap();
        let again = d.decide(request(&other)).await.unwrap();
        assert_eq!(again.stats.cached_tokens + 1, again.stats.prompt_tokens, "the other run's prompt stayed cached");
        let (x, y) = futures::future::join(d.decide(request(&other)), d.decide(request(&b))).await;
        assert_eq!(x.unwrap().stats.completion_tokens, 1);
        assert!(y.unwrap().stats.completion_tokens > 0);
        assert!(answer.stats.completion_tokens > 1, "{:?}", answer.stats);
        seen.push((first.stats.prompt_tokens, answer.text));
    }
    assert_eq!(seen[0].0, seen[1].0, "the two other runs' prompts are as long, so the cache is laid out alike");
    assert_eq!(seen[0].1, seen[1].1, "b's answer does not depend on what the other run's cells hold");
}
