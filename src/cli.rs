//! The `xct` command line.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

use crate::engine::RunOutcome;
use crate::model::{LlamaDecider, LlamaOptions};

/// Default model location (what scripts/fetch-model.sh writes).
pub const DEFAULT_MODEL: &str = "models/SmolLM2-135M-Instruct.Q4_1.gguf";

#[derive(Debug, Parser)]
#[command(name = "xct", version, about = "XCT: the model proposes, the system validates, tools execute")]
pub struct Cli {
    /// Log format on stderr.
    #[arg(long, value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Model selection shared by the commands that load one.
#[derive(Debug, Clone, clap::Args)]
pub struct ModelArgs {
    /// GGUF model file.
    #[arg(long, env = "XCT_MODEL", default_value = DEFAULT_MODEL)]
    pub model: PathBuf,
    /// CPU threads for inference (default: all cores).
    #[arg(long, env = "XCT_THREADS")]
    pub threads: Option<i32>,
    /// Layers to offload to the GPU (needs a cuda or vulkan build).
    #[arg(long, env = "XCT_N_GPU_LAYERS", default_value_t = 0)]
    pub n_gpu_layers: u32,
    /// Context window in tokens.
    #[arg(long, default_value_t = 8192)]
    pub n_ctx: u32,
}

impl ModelArgs {
    pub fn options(&self) -> LlamaOptions {
        LlamaOptions {
            n_threads: self.threads,
            n_gpu_layers: self.n_gpu_layers,
            n_ctx: self.n_ctx,
            ..LlamaOptions::new(&self.model)
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run an XctRun manifest on this machine with the fs tools.
    Local {
        /// The XctRun manifest (the same YAML the cluster takes).
        manifest: PathBuf,
        /// Folder the fs tools are confined to (created if missing).
        #[arg(long, default_value = "workspace")]
        workspace: PathBuf,
        /// Where to write the history (default: NAME.history.yaml).
        #[arg(long)]
        history: Option<PathBuf>,
        #[command(flatten)]
        model: ModelArgs,
    },
}

/// Entry point used by `main`.
pub async fn run(cli: Cli) -> ExitCode {
    match cli.command {
        Command::Local { manifest, workspace, history, model } => local(manifest, workspace, history, model).await,
    }
}

async fn local(manifest: PathBuf, workspace: PathBuf, history: Option<PathBuf>, model: ModelArgs) -> ExitCode {
    let run = match crate::local::load_manifest(&manifest) {
        Ok(r) => r,
        Err(e) => return fail(&e),
    };
    let history = history
        .unwrap_or_else(|| PathBuf::from(format!("{}.history.yaml", run.metadata.name.as_deref().unwrap_or("local"))));
    let prepared = match crate::local::prepare(&run, &manifest, &workspace) {
        Ok(p) => p,
        Err(e) => return fail(&e),
    };
    let opts = model.options();
    let decider = match tokio::task::spawn_blocking(move || LlamaDecider::load(opts)).await {
        Ok(Ok(d)) => d,
        Ok(Err(e)) => return fail(&e),
        Err(e) => return fail(&e),
    };
    let mut stdout = std::io::stdout();
    match crate::local::run(&prepared, &decider, &history, &mut stdout).await {
        Ok(report) => {
            println!("history: {}", history.display());
            match report.outcome {
                RunOutcome::Succeeded { .. } => ExitCode::SUCCESS,
                RunOutcome::Failed { .. } => ExitCode::from(1),
            }
        }
        Err(e) => fail(&e),
    }
}

fn fail(e: &dyn std::fmt::Display) -> ExitCode {
    eprintln!("xct: {e}");
    ExitCode::from(2)
}

/// Install the tracing subscriber (RUST_LOG, default warn).
pub fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}
