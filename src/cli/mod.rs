//! The `xct` command line: arguments and dispatch. The long-running
//! commands live in `serve`, the offline checks in `inspect`.

mod inspect;
mod serve;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

use crate::crd::ApprovalDecision;

use crate::model::LlamaOptions;
use inspect::{PolicyInputs, history_show, history_verify, policy_test};
use serve::{controller, local};

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
    /// Context window in tokens, per run.
    #[arg(long, default_value_t = 8192)]
    pub n_ctx: u32,
    /// Runs whose evaluated prompts are kept between steps (one KV sequence
    /// each, least recently used evicted); also how many requests are
    /// decoded together.
    #[arg(long, env = "XCT_SLOTS", default_value_t = 4)]
    pub slots: u32,
    /// One KV cache all slots share: a decode call for many runs stays one
    /// micro-batch, but each token attends over every slot's cells (slower
    /// on a CPU; see the README's "Benchmark").
    #[arg(long, env = "XCT_KV_UNIFIED")]
    pub kv_unified: bool,
}

impl ModelArgs {
    pub fn options(&self) -> LlamaOptions {
        LlamaOptions {
            n_threads: self.threads,
            n_gpu_layers: self.n_gpu_layers,
            n_ctx: self.n_ctx,
            slots: self.slots,
            kv_unified: self.kv_unified,
            ..LlamaOptions::new(&self.model)
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Replay recorded histories against policies, offline: a CI gate for
    /// policy pull requests. Exit 0: no verdict changed and every
    /// expectation held; 1: a verdict changed, an expectation failed or a
    /// policy does not compile; 2: unreadable input.
    Test {
        /// Folder of XctPolicy YAML (the proposed policies).
        #[arg(long)]
        policies: PathBuf,
        /// Folder of the current policies to compare with (default: the
        /// verdicts recorded in the histories).
        #[arg(long)]
        baseline: Option<PathBuf>,
        /// Labels of a namespace, as NAMESPACE:key=value[,key=value]; repeatable.
        #[arg(long = "namespace-labels")]
        namespace_labels: Vec<String>,
        /// YAML list of pinned verdicts: `- {run: demo/web, step: 5, verdict: Deny}`.
        #[arg(long)]
        expect: Option<PathBuf>,
        /// text, json, junit or github (workflow annotations).
        #[arg(long, value_enum, default_value = "text")]
        output: crate::policy::report::Format,
        /// Live objects the policies may read as `target` (manifests or
        /// `kubectl get -o yaml` dumps, files or folders; repeatable). An
        /// object not among them is judged absent; without any, a rule that
        /// reads `target` is reported as needing one, not as a deny.
        #[arg(long)]
        targets: Vec<PathBuf>,
        /// Histories: any file `xct history verify` reads.
        histories: Vec<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
pub enum HistoryCommand {
    /// Check the hash chain of recorded histories (kubectl get -o yaml or xct local output).
    Verify {
        /// History files.
        files: Vec<PathBuf>,
    },
    /// Print a run with its whole history inline (archived steps reassembled), as YAML every `xct` reader takes, and verify its chain.
    Show {
        /// The XctRun.
        run: String,
        /// Its namespace.
        #[arg(short, long, default_value = "default")]
        namespace: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum ApprovalsCommand {
    /// Steps awaiting approval: run, step, tool, proposal digest, dry run.
    List {
        /// Only this namespace (default: all namespaces).
        #[arg(short, long)]
        namespace: Option<String>,
    },
    /// The step a run waits on, whole: its proposal, the verdict, the dry
    /// run and the digest to approve it by (`approve --digest`). Writes nothing.
    Show {
        /// The XctRun awaiting approval.
        run: String,
        /// Its namespace (default: the kubeconfig context's).
        #[arg(short, long)]
        namespace: Option<String>,
    },
}

/// Which pending step to answer, and why.
#[derive(Debug, clap::Args)]
pub struct AnswerArgs {
    /// The XctRun awaiting approval.
    pub run: String,
    /// Its namespace (default: the kubeconfig context's).
    #[arg(short, long)]
    pub namespace: Option<String>,
    /// The step you reviewed; refused if the run now waits on another one.
    #[arg(long)]
    pub step: Option<u32>,
    /// The proposal digest you reviewed (`approvals show`, or its first 12
    /// hex digits as `approvals list` shows them); refused if the run now
    /// waits on another proposal, such as a re-created run's.
    #[arg(long, value_parser = crate::approvals::reviewed_digest)]
    pub digest: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Steps awaiting a human decision.
    Approvals {
        #[command(subcommand)]
        command: ApprovalsCommand,
    },
    /// Approve the pending step of a run as the current user (an
    /// XctApproval bound to its run UID, step and proposal digest).
    Approve {
        #[command(flatten)]
        which: AnswerArgs,
        /// Why (recorded in the approval).
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Reject the pending step of a run as the current user; the model is told the reason.
    Reject {
        #[command(flatten)]
        which: AnswerArgs,
        /// Why (told to the model).
        #[arg(long)]
        reason: String,
    },
    /// Model-side benchmarks: (a) prefix reuse, (b) constrained decoding, (c) concurrent runs.
    Bench {
        /// Sections to run: any of a, b, c.
        #[arg(long, default_value = "abc")]
        sections: String,
        /// Steps of the growing history in (a).
        #[arg(long, default_value_t = 16)]
        steps: u32,
        /// Also write the numbers as JSON.
        #[arg(long)]
        json: Option<PathBuf>,
        /// Concurrent runs measured in (c), comma-separated; the first is the
        /// baseline.
        #[arg(long, value_delimiter = ',', default_value = "1,4,16")]
        concurrency: Vec<usize>,
        /// Slots of the model shared in (c) (default: the largest concurrency).
        #[arg(long)]
        concurrency_slots: Option<u32>,
        #[command(flatten)]
        model: ModelArgs,
    },
    /// Step histories.
    History {
        #[command(subcommand)]
        command: HistoryCommand,
    },
    /// Work with XctPolicies offline.
    Policy {
        #[command(subcommand)]
        command: PolicyCommand,
    },
    /// Run the operator: reconcile XctRuns, one model step per reconcile.
    Controller {
        /// Only watch runs in this namespace (default: all namespaces).
        #[arg(long, env = "XCT_NAMESPACE")]
        namespace: Option<String>,
        /// Address of /livez, /readyz and /metrics.
        #[arg(long, env = "XCT_HEALTH_ADDR", default_value = "0.0.0.0:8080")]
        health_addr: std::net::SocketAddr,
        /// Elect a leader on a Lease; only the leader decides and executes.
        #[arg(long)]
        leader_elect: bool,
        /// Namespace of the leader Lease.
        #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
        leader_election_namespace: String,
        /// Name of the leader Lease.
        #[arg(long, default_value = "xct-operator")]
        leader_election_name: String,
        /// Lease duration in seconds.
        #[arg(long, default_value_t = 15)]
        leader_election_seconds: u64,
        /// Replay model outputs from a YAML list instead of loading a model
        /// (tests and overhead benchmarks only).
        #[arg(long, value_name = "FILE")]
        scripted_decisions: Option<PathBuf>,
        #[command(flatten)]
        model: ModelArgs,
    },
    /// Write the CRDs (crds/*.yaml) from the Rust types.
    Crdgen {
        /// Output folder.
        #[arg(long, default_value = "crds")]
        out: PathBuf,
    },
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
        /// Replay model outputs from a YAML list instead of loading a model
        /// (to drive a rare path, e.g. a proposal the gate refuses).
        #[arg(long, value_name = "FILE")]
        scripted_decisions: Option<PathBuf>,
        #[command(flatten)]
        model: ModelArgs,
    },
}

/// Entry point used by `main`.
pub async fn run(cli: Cli) -> ExitCode {
    match cli.command {
        Command::Bench { sections, steps, json, concurrency, concurrency_slots, model } => {
            let opts = crate::bench::BenchOptions {
                base: model.options(),
                steps: steps.max(2),
                sections,
                concurrency,
                concurrency_slots,
            };
            bench(opts, json).await
        }
        Command::History { command: HistoryCommand::Verify { files } } => history_verify(&files),
        Command::History { command: HistoryCommand::Show { run, namespace } } => history_show(&run, &namespace).await,
        Command::Policy {
            command: PolicyCommand::Test { policies, baseline, namespace_labels, expect, output, targets, histories },
        } => {
            let inputs = PolicyInputs { ns_labels: &namespace_labels, targets: &targets, histories: &histories };
            policy_test(&policies, baseline.as_deref(), expect.as_deref(), output, inputs)
        }
        Command::Controller {
            namespace,
            health_addr,
            leader_elect,
            leader_election_namespace,
            leader_election_name,
            leader_election_seconds,
            scripted_decisions,
            model,
        } => {
            let lease = leader_elect.then(|| crate::operator::leader::LeaseConfig {
                namespace: leader_election_namespace,
                name: leader_election_name,
                identity: std::env::var("POD_NAME").unwrap_or_else(|_| format!("xct-{}", std::process::id())),
                duration: std::time::Duration::from_secs(leader_election_seconds.max(3)),
            });
            controller(namespace, health_addr, lease, model, scripted_decisions).await
        }
        Command::Crdgen { out } => crdgen(&out),
        Command::Approvals { command: ApprovalsCommand::List { namespace } } => {
            crate::approvals::list_command(namespace).await
        }
        Command::Approvals { command: ApprovalsCommand::Show { run, namespace } } => {
            crate::approvals::show_command(run, namespace).await
        }
        Command::Approve { which, reason } => {
            crate::approvals::answer_command(which, ApprovalDecision::Approve, &reason).await
        }
        Command::Reject { which, reason } => {
            crate::approvals::answer_command(which, ApprovalDecision::Reject, &reason).await
        }
        Command::Local { manifest, workspace, history, scripted_decisions, model } => {
            local(manifest, workspace, history, scripted_decisions, model).await
        }
    }
}

async fn bench(opts: crate::bench::BenchOptions, json: Option<PathBuf>) -> ExitCode {
    if opts.concurrency.is_empty() || opts.concurrency.contains(&0) {
        return fail(&"--concurrency needs one or more counts of at least 1");
    }
    match crate::bench::run(&opts).await {
        Ok(report) => {
            if let Some(path) = json
                && let Err(e) = std::fs::write(&path, serde_json::to_string_pretty(&report).unwrap_or_default())
            {
                return fail(&format!("{}: {e}", path.display()));
            }
            ExitCode::SUCCESS
        }
        Err(e) => fail(&e),
    }
}

fn crdgen(out: &std::path::Path) -> ExitCode {
    if let Err(e) = std::fs::create_dir_all(out) {
        return fail(&e);
    }
    for (file, crd) in crate::crd::all() {
        let path = out.join(file);
        if let Err(e) = std::fs::write(&path, crate::crd::render(&crd)) {
            return fail(&format!("{}: {e}", path.display()));
        }
        println!("wrote {}", path.display());
    }
    ExitCode::SUCCESS
}

fn fail(e: &dyn std::fmt::Display) -> ExitCode {
    eprintln!("xct: {e}");
    ExitCode::from(2)
}

/// What is logged without RUST_LOG: warnings, and for the controller the
/// operator's own info lines too (one per recorded step, leadership, the
/// model loading).
const DEFAULT_LOG: &str = "warn";
const DEFAULT_CONTROLLER_LOG: &str = "warn,xct=info";

/// Install the tracing subscriber: logs to stderr (RUST_LOG, else the
/// defaults above) and, when the environment asks for them, OpenTelemetry
/// traces ([`crate::telemetry`]). Call before the async runtime starts; keep
/// the returned guard until the end of `main` (it flushes the traces).
pub fn init_logging(cli: &Cli) -> Option<crate::telemetry::Telemetry> {
    use tracing_subscriber::Layer;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let default = match cli.command {
        Command::Controller { .. } => DEFAULT_CONTROLLER_LOG,
        _ => DEFAULT_LOG,
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| default.into());
    let logs = match cli.log_format {
        LogFormat::Text => tracing_subscriber::fmt::layer().with_writer(std::io::stderr).with_filter(filter).boxed(),
        LogFormat::Json => {
            tracing_subscriber::fmt::layer().json().with_writer(std::io::stderr).with_filter(filter).boxed()
        }
    };
    let (traces, guard, failed) = match crate::telemetry::requested().then(crate::telemetry::otlp_layer) {
        None => (None, None, None),
        Some(Ok((layer, guard))) => (Some(layer), Some(guard), None),
        Some(Err(e)) => (None, None, Some(e)),
    };
    let _ = tracing_subscriber::registry().with(logs).with(traces).try_init();
    if let Some(e) = failed {
        tracing::warn!(category = e.category(), error = %e, "traces are off");
    }
    guard
}
