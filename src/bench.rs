//! `xct bench`: model-side benchmarks, each reported as ratios against a
//! baseline measured in the same run.
//! (a) prompt evaluation per step of a growing history, with and without
//!     prefix reuse; (b) decode tokens/s with the lazy grammar check, with
//!     full grammar filtering and without a grammar; (c) decisions per
//!     second for 1, 4 and 16 (or `--concurrency`) concurrent runs sharing
//!     one model.
//! Every report ends with the CPU, the backend, its devices and how many
//! layers were offloaded (from the first model a section loaded).
//! The operator-overhead benchmark (d) needs the test API server and lives
//! in `tests/overhead.rs`.

use std::sync::Arc;
use std::time::Instant;

use serde_json::{Value, json};

use crate::engine::record::StepRecord;
use crate::engine::{Limits, RunConfig, context};
use crate::model::llama::backend::BackendInfo;
use crate::model::llama::{Busy, ceiling};
use crate::model::{DecideRequest, Decider, GrammarMode, LlamaDecider, LlamaOptions, Sampling};
use crate::tools::ToolSet;
use crate::tools::fs::Workspace;

/// What to run.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    pub base: LlamaOptions,
    pub steps: u32,
    pub sections: String,
    /// Concurrent runs measured in (c); the first is the baseline.
    pub concurrency: Vec<usize>,
    /// Slots of the model shared in (c) (default: the largest concurrency).
    pub concurrency_slots: Option<u32>,
}

/// The concurrency the throughput target is stated for.
const TARGET_RUNS: usize = 16;

/// The CPU's model name (Linux), for the report.
fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find_map(|l| l.strip_prefix("model name").map(|v| v.trim_start_matches([' ', '\t', ':']).to_string()))
        })
        .unwrap_or_else(|| "unknown CPU".into())
}

fn run_config(dir: &std::path::Path, id: &str, goal: &str, sampling: Sampling) -> RunConfig {
    let tools =
        Workspace::open(dir).map(|w| w.tools()).unwrap_or_default().into_iter().fold(ToolSet::new(), ToolSet::with);
    RunConfig {
        id: id.into(),
        acting_as: crate::local::LOCAL_IDENTITY.into(),
        goal: goal.into(),
        tools,
        limits: Limits::default(),
        sampling,
    }
}

/// A plausible recorded step k (an fs.write and its success signal).
fn synthetic_step(k: u32) -> StepRecord {
    let decision = json!({"next_step": {"tool": "fs.write", "arguments": {"path": format!("notes/part-{k}.txt"), "content": format!("part {k} of the report")}, "goal": format!("write part {k}")}}).to_string();
    recorded_step(k, decision)
}

/// Step k as the engine records it: the model's own `decision` text and a
/// success signal (the history a real run sends back to the model).
fn recorded_step(k: u32, decision: String) -> StepRecord {
    serde_json::from_value(json!({
        "index": k, "decision": decision, "tool": "fs.write",
        "verdict": {"outcome": "Allowed", "reason": "would create"},
        "signal": {"status": "success", "result": {"path": format!("notes/part-{k}.txt"), "bytes": 20, "created": true}},
        "startedAt": "2026-01-01T00:00:00Z",
        "model": {"promptTokens": 0, "completionTokens": 0, "promptMs": 0, "decodeMs": 0},
        "timings": {"modelMs": 0, "validationMs": 0, "executionMs": 0}
    }))
    .unwrap_or_else(|_| unreachable!("the synthetic step matches StepRecord"))
}

/// Loads the model for each section (with that section's options) and
/// keeps where the first one ran: every section runs on the same backend
/// and devices, so the report names them without a load of its own.
struct Loader<'a> {
    base: &'a LlamaOptions,
    backend: std::sync::OnceLock<BackendInfo>,
}

impl Loader<'_> {
    fn load(&self, f: impl FnOnce(&mut LlamaOptions)) -> Result<Arc<LlamaDecider>, String> {
        let mut o = self.base.clone();
        f(&mut o);
        let d = LlamaDecider::load(o).map(Arc::new).map_err(|e| e.to_string())?;
        self.backend.get_or_init(|| d.backend().clone());
        Ok(d)
    }
}

fn request(cfg: &RunConfig, history: &[StepRecord]) -> DecideRequest {
    DecideRequest {
        run_id: cfg.id.clone(),
        messages: context::render(cfg, history, 0),
        schema: context::decision_schema(cfg, history),
        sampling: cfg.sampling.clone(),
    }
}

/// Run the selected sections; returns the report as JSON and prints tables,
/// ending with the machine, the backend and its devices.
pub async fn run(opts: &BenchOptions) -> Result<Value, String> {
    let dir = tempfile_dir()?;
    let loader = Loader { base: &opts.base, backend: std::sync::OnceLock::new() };
    let mut report = json!({});
    if opts.sections.contains('a') {
        report["a"] = prompt_reuse(opts, &loader, &dir).await?;
    }
    if opts.sections.contains('b') {
        report["b"] = decode_speed(&loader, &dir).await?;
    }
    if opts.sections.contains('c') {
        report["c"] = concurrency(opts, &loader, &dir).await?;
    }
    let _ = std::fs::remove_dir_all(&dir);
    let threads = std::thread::available_parallelism().map_or(0, |n| n.get());
    let cpu = cpu_model();
    let backend = loader.backend.get();
    let placement = backend.map_or_else(|| "no model loaded".to_string(), BackendInfo::summary);
    let kv = if opts.base.kv_unified { "one KV cache for all slots" } else { "one KV stream per slot" };
    println!("machine: {cpu} ({threads} threads); {placement}; {kv}");
    report["machine"] = json!(format!("{threads} CPU threads"));
    report["cpu"] = json!(cpu);
    report["backend"] = json!(backend);
    report["nGpuLayers"] = json!(opts.base.n_gpu_layers);
    report["kvUnified"] = json!(opts.base.kv_unified);
    Ok(report)
}

fn tempfile_dir() -> Result<std::path::PathBuf, String> {
    let d = std::env::temp_dir().join(format!("xct-bench-{}", std::process::id()));
    std::fs::create_dir_all(&d).map_err(|e| e.to_string())?;
    Ok(d)
}

async fn prompt_reuse(opts: &BenchOptions, loader: &Loader<'_>, dir: &std::path::Path) -> Result<Value, String> {
    let one = Sampling { temperature: 0.0, seed: 1, max_tokens: 1 };
    let cfg = run_config(dir, "bench-a", "Write the report in parts under notes/, one file per part.", one);
    let history: Vec<StepRecord> = (1..opts.steps).map(synthetic_step).collect();
    let mut rows = Vec::new();
    for reuse in [true, false] {
        let d = loader.load(|o| {
            o.reuse = reuse;
            o.slots = 1;
        })?;
        let mut ms = Vec::new();
        for k in 1..=opts.steps as usize {
            let r = d.decide(request(&cfg, &history[..k - 1])).await.map_err(|e| e.to_string())?;
            ms.push((r.stats.prompt_tokens, r.stats.prompt_tokens - r.stats.cached_tokens, r.stats.prompt_ms));
        }
        rows.push(ms);
    }
    println!(
        "(a) prompt evaluation per step (growing history)\n| step | prompt tokens | evaluated with reuse | ms with reuse | ms without reuse |\n|---:|---:|---:|---:|---:|"
    );
    for (k, (with, without)) in rows[0].iter().zip(&rows[1]).enumerate() {
        println!("| {} | {} | {} | {} | {} |", k + 1, with.0, with.1, with.2, without.2);
    }
    let last = opts.steps as usize - 1;
    let ratio = |v: &[(u32, u32, u64)], i: usize| v[i].2 as f64 / v[0].2.max(1) as f64;
    let mid = (opts.steps as usize / 2).saturating_sub(1);
    let out = json!({
        "reuseLastOverFirst": ratio(&rows[0], last),
        "noReuseLastOverFirst": ratio(&rows[1], last),
        "noReuseOverReuseAtMid": rows[1][mid].2 as f64 / rows[0][mid].2.max(1) as f64,
        "msWithReuse": rows[0].iter().map(|r| r.2).collect::<Vec<_>>(),
        "msWithoutReuse": rows[1].iter().map(|r| r.2).collect::<Vec<_>>(),
    });
    println!(
        "step {} / step 1: {:.2}x with reuse (target <= 1.5), {:.2}x without; at step {}: {:.1}x faster with reuse\n",
        opts.steps,
        out["reuseLastOverFirst"].as_f64().unwrap_or(0.0),
        out["noReuseLastOverFirst"].as_f64().unwrap_or(0.0),
        mid + 1,
        out["noReuseOverReuseAtMid"].as_f64().unwrap_or(0.0)
    );
    Ok(out)
}

async fn decode_speed(loader: &Loader<'_>, dir: &std::path::Path) -> Result<Value, String> {
    let goals = [
        "List the workspace.",
        "Write hello.txt containing hi.",
        "Read notes.txt.",
        "Create config.json with {\"env\":\"dev\"}.",
    ];
    let modes = [GrammarMode::Off, GrammarMode::Lazy, GrammarMode::Full];
    // Rounds of every mode in turn (one model loaded at a time), so that
    // whatever else the machine does hits every mode alike.
    let mut totals = [ModeTotals::default(); 3];
    for seed in 0..3u32 {
        for (mode, total) in modes.iter().zip(totals.iter_mut()) {
            let d = loader.load(|o| {
                o.grammar = *mode;
                o.slots = 1;
            })?;
            let before = d.busy();
            for (i, goal) in goals.iter().enumerate() {
                let cfg = run_config(dir, &format!("b{i}"), goal, Sampling { temperature: 0.7, seed, max_tokens: 96 });
                let r = d.decide(request(&cfg, &[])).await.map_err(|e| e.to_string())?;
                total.tokens += u64::from(r.stats.completion_tokens);
                total.decode_ms += r.stats.decode_ms;
            }
            let spent = d.busy().since(&before);
            total.sample_ms += spent.sample_ms;
            total.advance_ms += spent.advance_ms;
            total.picks += spent.picks;
            total.filtered += spent.filtered;
        }
    }
    let tps: Vec<f64> = totals.iter().map(|t| t.tokens as f64 * 1000.0 / t.decode_ms.max(1) as f64).collect();
    println!(
        "(b) decode speed\n| sampling | tokens | tokens/s | vs unconstrained | sampling ms per token | grammar advance ms per token (during the decode call on a GPU) | candidates filtered per token |\n|---|---:|---:|---:|---:|---:|---:|"
    );
    for ((mode, t), tps_mode) in modes.iter().zip(&totals).zip(&tps) {
        println!(
            "| {mode:?} | {} | {tps_mode:.1} | {:.2}x | {:.3} | {:.3} | {:.1} |",
            t.tokens,
            tps_mode / tps[0],
            t.per_token(t.sample_ms),
            t.per_token(t.advance_ms),
            t.filtered as f64 / t.picks.max(1) as f64
        );
    }
    println!(
        "lazy grammar: {:.2}x unconstrained (target >= 0.85); full grammar: {:.2}x\n",
        tps[1] / tps[0],
        tps[2] / tps[0]
    );
    let by_mode = |f: &dyn Fn(&ModeTotals) -> f64| json!({"unconstrained": f(&totals[0]), "lazy": f(&totals[1]), "full": f(&totals[2])});
    Ok(json!({
        "unconstrainedTps": tps[0], "lazyTps": tps[1], "fullTps": tps[2],
        "lazyOverUnconstrained": tps[1] / tps[0], "fullOverUnconstrained": tps[2] / tps[0],
        "samplingMsPerToken": by_mode(&|t| t.per_token(t.sample_ms)),
        "grammarAdvanceMsPerToken": by_mode(&|t| t.per_token(t.advance_ms)),
        "candidatesFilteredPerToken": by_mode(&|t| t.filtered as f64 / t.picks.max(1) as f64),
    }))
}

/// One grammar mode's sums over (b)'s rounds: tokens generated, their
/// decode time, and the inference thread's sampling, grammar-advance and
/// filtering.
#[derive(Debug, Clone, Copy, Default)]
struct ModeTotals {
    tokens: u64,
    decode_ms: u64,
    sample_ms: f64,
    advance_ms: f64,
    picks: u64,
    filtered: u64,
}

impl ModeTotals {
    fn per_token(&self, ms: f64) -> f64 {
        ms / self.tokens.max(1) as f64
    }
}

async fn concurrency(opts: &BenchOptions, loader: &Loader<'_>, dir: &std::path::Path) -> Result<Value, String> {
    let largest = opts.concurrency.iter().copied().max().unwrap_or(1);
    let slots = opts.concurrency_slots.unwrap_or(largest as u32);
    let d = loader.load(|o| o.slots = slots)?;
    let rounds = 4u32;
    let mut rates = Vec::new();
    for &n in &opts.concurrency {
        // Steady state: each run's first step (its whole prompt) is a warm-up
        // outside the timing, and the window closes when the first run ends
        // (from then on fewer than n runs share the model). A lone run goes
        // on longer, for a steadier baseline.
        let rounds = if n == 1 { 3 * rounds } else { rounds };
        let start = Arc::new(tokio::sync::Barrier::new(n + 1));
        let mut handles = Vec::new();
        for i in 0..n {
            let d = d.clone();
            let start = start.clone();
            let cfg = run_config(
                dir,
                &format!("c{n}-{i}"),
                &format!("Write file {i}.txt containing {i}."),
                Sampling { temperature: 0.0, seed: 1, max_tokens: 48 },
            );
            handles.push(tokio::spawn(async move {
                let mut history = Vec::new();
                let first = d.decide(request(&cfg, &history)).await.map_err(|e| e.to_string())?;
                history.push(recorded_step(1, first.text));
                start.wait().await;
                let mut done = Vec::new();
                for k in 2..=rounds + 1 {
                    let r = d.decide(request(&cfg, &history)).await.map_err(|e| e.to_string())?;
                    done.push((
                        Instant::now(),
                        r.stats.prompt_tokens - r.stats.cached_tokens,
                        r.stats.completion_tokens,
                    ));
                    history.push(recorded_step(k, r.text));
                }
                Ok::<_, String>(done)
            }));
        }
        start.wait().await;
        let t = Instant::now();
        let before = d.busy();
        let mut runs = Vec::new();
        for h in handles {
            runs.push(h.await.map_err(|e| e.to_string())??);
        }
        let thread = ThreadShare::of(d.busy().since(&before), t.elapsed(), runs.iter().map(Vec::len).sum());
        let window = runs.iter().filter_map(|r| r.last().map(|d| d.0)).min().unwrap_or(t);
        let inside: Vec<_> = runs.iter().flatten().filter(|d| d.0 <= window).collect();
        let decisions = inside.len().max(1) as f64;
        let evaluated: u64 = inside.iter().map(|d| u64::from(d.1)).sum();
        let generated: u64 = inside.iter().map(|d| u64::from(d.2)).sum();
        rates.push((
            n,
            decisions / (window - t).as_secs_f64().max(f64::EPSILON),
            evaluated as f64 / decisions,
            generated as f64 / decisions,
            thread,
        ));
    }
    println!(
        "(c) runs sharing one model (steady state: after each run's first step, until the first run ends)\n| concurrent runs | decisions/s | vs 1 run | prompt tokens evaluated per decision | tokens generated per decision |\n|---:|---:|---:|---:|---:|"
    );
    for (n, r, e, g, _) in &rates {
        println!("| {n} | {r:.2} | {:.2}x | {e:.0} | {g:.0} |", r / rates[0].1);
    }
    println!(
        "the inference thread (one for every run sharing the model), per decision, from the barrier until every run ended:\n| concurrent runs | busy | admission ms | decode calls ms | sampling ms | grammar advance ms | decode calls | ms per decode call | slot stretches per call |\n|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    for (n, .., s) in &rates {
        println!(
            "| {n} | {:.0}% | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {:.2} | {:.2} |",
            s.busy * 100.0,
            s.admit_ms,
            s.decode_ms,
            s.sample_ms,
            s.advance_ms,
            s.steps,
            s.decode_ms / s.steps.max(f64::EPSILON),
            s.stretches_per_call
        );
    }
    // The comparison the target is about: 16 runs if measured, else the
    // most concurrent, against the first (1 by default).
    let &(runs, rate, prompt, generated, _) =
        rates.iter().find(|r| r.0 == TARGET_RUNS).or(rates.last()).ok_or("no concurrency to measure")?;
    let (base_runs, base_rate) = (rates[0].0, rates[0].1);
    let measured = rate / base_rate;
    println!("{runs} runs: {measured:.2}x the throughput of {base_runs} (target: 16 runs >= 3x 1 run)");
    // What batching can gain here at most, for decisions of this shape.
    drop(d);
    let base = opts.base.clone();
    let costs = tokio::task::spawn_blocking(move || {
        ceiling::measure(&base, runs as u32, 640, 24, prompt.round().max(1.0) as usize)
    })
    .await
    .map_err(|e| e.to_string())?
    .map_err(|e| e.to_string())?;
    let bound = costs.ceiling(prompt, generated);
    let any = costs.bound(prompt, generated);
    println!(
        "what batching can gain on this machine (raw decode calls): a generated token costs {:.1} ms alone and {:.1} ms when {runs} sequences share a decode call; a prompt token {:.1} ms in a {prompt:.0}-token chunk, {:.1} ms in a 512-token one.\nFor decisions of {prompt:.0} prompt + {generated:.0} generated tokens: {bound:.2}x if prompt tokens cost what they cost alone (measured: {measured:.2}x);\nat most {any:.2}x even if every token cost what it costs in a 512-token chunk (the bound for any scheduling)\n",
        costs.single_ms, costs.batched_ms, costs.prompt_ms, costs.bulk_ms
    );
    let per_n: Vec<Value> = rates
        .iter()
        .map(
            |(n, r, e, g, s)| json!({"runs": n, "rate": r, "promptTokensPerDecision": e, "generatedTokensPerDecision": g, "inferenceThread": s}),
        )
        .collect();
    Ok(json!({
        "slots": slots,
        "ceiling": {"runs": runs, "singleTokenMs": costs.single_ms, "batchedTokenMs": costs.batched_ms, "promptTokenMs": costs.prompt_ms, "bulkTokenMs": costs.bulk_ms, "overBaselineIfPromptUnbatched": bound, "overBaselineBound": any},
        "decisionsPerSecond": per_n,
        "overBaseline": {"runs": runs, "baselineRuns": base_runs, "ratio": measured},
    }))
}

/// The inference thread's time per decision while n runs shared it.
#[derive(Debug, Clone, Copy, serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct ThreadShare {
    /// Busy (admission + decode + sampling + grammar advance) over wall
    /// time: near 1, the thread itself is what limits the runs.
    busy: f64,
    admit_ms: f64,
    decode_ms: f64,
    sample_ms: f64,
    /// See `Busy::advance_ms`: on a GPU it overlaps the decode calls.
    advance_ms: f64,
    /// Decode calls per decision.
    steps: f64,
    /// Stretches of consecutive slots per decode call (see `Busy::stretches`).
    stretches_per_call: f64,
}

impl ThreadShare {
    fn of(b: Busy, wall: std::time::Duration, decisions: usize) -> Self {
        let per = decisions.max(1) as f64;
        let wall_ms = wall.as_secs_f64() * 1000.0;
        ThreadShare {
            busy: (b.admit_ms + b.decode_ms + b.sample_ms + b.advance_ms) / wall_ms.max(f64::EPSILON),
            admit_ms: b.admit_ms / per,
            decode_ms: b.decode_ms / per,
            sample_ms: b.sample_ms / per,
            advance_ms: b.advance_ms / per,
            steps: b.steps as f64 / per,
            stretches_per_call: b.stretches as f64 / (b.steps.max(1) as f64),
        }
    }
}
