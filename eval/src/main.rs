//! `xct-eval`: run the scenario suite with a model; print the table, write
//! the JSON. Exit 0 when no run was unsafe, 1 when one was, 2 when the
//! suite or the model could not be loaded.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use serde_json::json;
use xct_eval::report::{self, Pass};
use xct_eval::{run, scenario};

#[derive(Debug, Parser)]
#[command(name = "xct-eval", about = "Measure how well a model operates: scenario XctRuns judged by predicates")]
struct Cli {
    /// Folder of scenario YAML files.
    #[arg(long, default_value = "eval/scenarios")]
    scenarios: PathBuf,
    /// Only the scenarios whose name contains this (repeatable).
    #[arg(long)]
    only: Vec<String>,
    /// Sampled passes after the greedy one, with seeds `first-seed` and the
    /// N-1 after it.
    #[arg(long, default_value_t = 0)]
    repeat: u32,
    /// Seed of the first sampled pass: `--first-seed 4 --repeat 3` runs
    /// seeds 4, 5 and 6, to see how a rate measured on seeds 1-3 holds.
    #[arg(long, default_value_t = 1)]
    first_seed: u32,
    /// maxTokens for the scenarios that do not set their own (default: the
    /// XctRun default), to compare budgets in one run.
    #[arg(long)]
    max_tokens: Option<u32>,
    /// Temperature of the sampled passes.
    #[arg(long, default_value_t = 0.7)]
    temperature: f32,
    /// Also write the report as JSON.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Write each run's history here (PASS-SCENARIO.yaml; `xct history
    /// verify` and `xct policy test` read them).
    #[arg(long)]
    histories: Option<PathBuf>,
    #[command(flatten)]
    model: xct::cli::ModelArgs,
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let mut suite = match scenario::load_dir(&cli.scenarios) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("xct-eval: {e}");
            return ExitCode::from(2);
        }
    };
    if !cli.only.is_empty() {
        suite.retain(|s| cli.only.iter().any(|o| s.name.contains(o.as_str())));
    }
    let opts = cli.model.options();
    let decider = match tokio::task::spawn_blocking(move || xct::model::LlamaDecider::load(opts)).await {
        Ok(Ok(d)) => Arc::new(d),
        Ok(Err(e)) => {
            eprintln!("xct-eval: {e}");
            return ExitCode::from(2);
        }
        Err(e) => {
            eprintln!("xct-eval: {e}");
            return ExitCode::from(2);
        }
    };
    let mut passes = vec![];
    let settings: Vec<(String, Option<(u32, f32)>)> = std::iter::once(("greedy".to_string(), None))
        .chain(
            (cli.first_seed..cli.first_seed.saturating_add(cli.repeat))
                .map(|seed| (format!("seed {seed} at temperature {}", cli.temperature), Some((seed, cli.temperature)))),
        )
        .collect();
    for (label, sampling) in settings {
        let mut rows = vec![];
        for s in &suite {
            let mut s = s.clone();
            let (seed, temperature) = sampling.unwrap_or((42, 0.0));
            s.spec["model"]["seed"] = json!(seed);
            s.spec["model"]["temperature"] = json!(temperature);
            if let Some(n) = cli.max_tokens.filter(|_| s.spec["model"].get("maxTokens").is_none()) {
                s.spec["model"]["maxTokens"] = json!(n);
            }
            eprintln!("{label}: {} ...", s.name);
            match run::run(&s, decider.clone()).await {
                Ok(row) => {
                    if let Some(dir) = &cli.histories {
                        let file = dir.join(format!("{}-{}.yaml", passes.len(), s.name));
                        let written = std::fs::create_dir_all(dir).and_then(|_| {
                            std::fs::write(&file, serde_yaml::to_string(&row.status).unwrap_or_default())
                        });
                        if let Err(e) = written {
                            eprintln!("xct-eval: {}: {e}", file.display());
                            return ExitCode::from(2);
                        }
                    }
                    rows.push(row)
                }
                Err(e) => {
                    eprintln!("xct-eval: {e}");
                    return ExitCode::from(2);
                }
            }
        }
        passes.push(Pass { label, rows });
    }
    let model = cli.model.model.display().to_string();
    print!("{}", report::table(&model, &passes));
    if let Some(path) = &cli.json
        && let Err(e) = std::fs::write(path, report::json(&model, &passes).to_string())
    {
        eprintln!("xct-eval: {}: {e}", path.display());
        return ExitCode::from(2);
    }
    if passes.iter().any(|p| p.unsafe_count() > 0) { ExitCode::from(1) } else { ExitCode::SUCCESS }
}
