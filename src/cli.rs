//! The `xct` command line.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

use crate::crd::ApprovalDecision;

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
    /// Context window in tokens, per run.
    #[arg(long, default_value_t = 8192)]
    pub n_ctx: u32,
    /// Runs whose evaluated prompts are kept between steps (one KV sequence
    /// each, least recently used evicted); also how many requests are
    /// decoded together.
    #[arg(long, env = "XCT_SLOTS", default_value_t = 4)]
    pub slots: u32,
}

impl ModelArgs {
    pub fn options(&self) -> LlamaOptions {
        LlamaOptions {
            n_threads: self.threads,
            n_gpu_layers: self.n_gpu_layers,
            n_ctx: self.n_ctx,
            slots: self.slots,
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
        Command::Bench { sections, steps, json, model } => bench(sections, steps, json, model).await,
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
        Command::Approve { which, reason } => {
            crate::approvals::answer_command(which.run, which.namespace, which.step, ApprovalDecision::Approve, &reason)
                .await
        }
        Command::Reject { which, reason } => {
            crate::approvals::answer_command(which.run, which.namespace, which.step, ApprovalDecision::Reject, &reason)
                .await
        }
        Command::Local { manifest, workspace, history, scripted_decisions, model } => {
            local(manifest, workspace, history, scripted_decisions, model).await
        }
    }
}

async fn local(
    manifest: PathBuf,
    workspace: PathBuf,
    history: Option<PathBuf>,
    scripted: Option<PathBuf>,
    model: ModelArgs,
) -> ExitCode {
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
    let decider: Box<dyn crate::model::Decider> = match scripted {
        Some(path) => match crate::model::ScriptedDecider::from_file(&path) {
            Ok(d) => Box::new(d),
            Err(e) => return fail(&e),
        },
        None => {
            let opts = model.options();
            match tokio::task::spawn_blocking(move || LlamaDecider::load(opts)).await {
                Ok(Ok(d)) => Box::new(d),
                Ok(Err(e)) => return fail(&e),
                Err(e) => return fail(&e),
            }
        }
    };
    let mut stdout = std::io::stdout();
    match crate::local::run(&prepared, decider.as_ref(), &history, &mut stdout).await {
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

async fn controller(
    namespace: Option<String>,
    health_addr: std::net::SocketAddr,
    lease: Option<crate::operator::leader::LeaseConfig>,
    model: ModelArgs,
    scripted: Option<PathBuf>,
) -> ExitCode {
    use std::sync::Arc;
    use std::sync::atomic::Ordering;

    let readiness = Arc::new(crate::operator::health::Readiness::default());
    let metrics = crate::operator::default_metrics();
    let health_state = Arc::new(crate::operator::health::Health {
        readiness: readiness.clone(),
        metrics: metrics.clone(),
        decider: std::sync::RwLock::new(None),
    });
    let health = tokio::spawn(crate::operator::health::serve(health_addr, health_state.clone()));
    let config = match kube::Config::infer().await {
        Ok(c) => c,
        Err(e) => return fail(&format!("no Kubernetes configuration: {e}")),
    };
    let client = match kube::Client::try_from(config.clone()) {
        Ok(c) => c,
        Err(e) => return fail(&e),
    };
    let decider: Arc<dyn crate::model::Decider> = match scripted {
        Some(path) => match crate::model::ScriptedDecider::from_file(&path) {
            Ok(d) => Arc::new(d),
            Err(e) => return fail(&e),
        },
        None => {
            let opts = model.options();
            match tokio::task::spawn_blocking(move || LlamaDecider::load(opts)).await {
                Ok(Ok(d)) => {
                    tracing::info!(model = d.description(), "model loaded");
                    Arc::new(d)
                }
                Ok(Err(e)) => {
                    // Never ready without a model, but no crash loop: stay up, unready,
                    // say why on /readyz and in a Warning Event on this pod.
                    tracing::error!(error = %e, "model not loaded; the operator will not become ready");
                    eprintln!("xct: {e}");
                    if let Ok(mut m) = readiness.model_error.lock() {
                        *m = Some(e.to_string());
                    }
                    model_unavailable_event(&client, &e.to_string()).await;
                    let _ = health.await;
                    return ExitCode::from(2);
                }
                Err(e) => return fail(&e),
            }
        }
    };
    readiness.model_loaded.store(true, Ordering::SeqCst);
    if let Ok(mut d) = health_state.decider.write() {
        *d = Some(decider.clone());
    }
    let mut ctx = crate::operator::Context::with_metrics(client.clone(), config, decider, metrics);
    let mut election = None;
    if let Some(lease) = lease {
        let leadership = Arc::new(crate::operator::leader::Leadership::default());
        let task = tokio::spawn(crate::operator::leader::run(client.clone(), lease.clone(), leadership.clone()));
        ctx = ctx.with_leadership(leadership.clone());
        election = Some((task, lease, leadership));
    }
    let ctx = Arc::new(ctx);
    // Returns on SIGTERM or SIGINT once the steps in flight have finished
    // (an interrupted one is recoverable anyway: its intent is recorded).
    crate::operator::run(ctx, namespace, readiness).await;
    if let Some((task, lease, leadership)) = election {
        task.abort();
        crate::operator::leader::release(client, &lease, &leadership).await;
    }
    ExitCode::SUCCESS
}

/// Exit code of `xct policy test` for input it cannot read.
const UNREADABLE: u8 = 2;

/// What `xct policy test` replays: the histories, and what stands in for
/// the cluster (namespace labels, live targets).
struct PolicyInputs<'a> {
    ns_labels: &'a [String],
    targets: &'a [PathBuf],
    histories: &'a [PathBuf],
}

fn policy_test(
    policies: &std::path::Path,
    baseline: Option<&std::path::Path>,
    expect: Option<&std::path::Path>,
    output: crate::policy::report::Format,
    inputs: PolicyInputs<'_>,
) -> ExitCode {
    let PolicyInputs { ns_labels, targets, histories } = inputs;
    use crate::policy::{offline, report};
    // A policy that does not compile fails the gate (1); unreadable files are 2.
    let load = |dir: &std::path::Path| {
        offline::load_policies(dir).map_err(|errs| {
            for e in &errs {
                eprintln!("xct: {e}");
            }
            let unreadable = errs.iter().any(|e| matches!(e, offline::OfflineError::Read { .. }));
            ExitCode::from(if unreadable { UNREADABLE } else { 1 })
        })
    };
    let unreadable = |e: &dyn std::fmt::Display| {
        eprintln!("xct: {e}");
        ExitCode::from(UNREADABLE)
    };
    let mut labels: std::collections::BTreeMap<String, std::collections::BTreeMap<String, String>> = Default::default();
    for spec in ns_labels {
        let Some((ns, pairs)) = spec.split_once(':') else {
            return unreadable(&format!("--namespace-labels {spec:?}: expected NAMESPACE:key=value[,key=value]"));
        };
        let entry = labels.entry(ns.to_string()).or_default();
        for pair in pairs.split(',').filter(|p| !p.is_empty()) {
            let Some((k, v)) = pair.split_once('=') else {
                return unreadable(&format!("--namespace-labels {spec:?}: {pair:?} is not key=value"));
            };
            entry.insert(k.to_string(), v.to_string());
        }
    }
    let new = match load(policies) {
        Ok(p) => p,
        Err(code) => return code,
    };
    let mut recorded = match offline::load_histories(histories, &labels) {
        Ok(r) => r,
        Err(e) => return unreadable(&e),
    };
    match offline::Targets::load(targets) {
        Ok(t) => t.apply(&mut recorded),
        Err(e) => return unreadable(&e),
    }
    let expectations = match expect.map(report::load_expectations).transpose() {
        Ok(e) => e.unwrap_or_default(),
        Err(e) => return unreadable(&e),
    };
    let replayed = offline::replay(&new, &recorded);
    let before: Vec<Option<offline::Judged>> = match baseline {
        None => recorded.iter().map(|r| r.recorded.clone()).collect(),
        Some(dir) => match load(dir) {
            Ok(old) => offline::replay(&old, &recorded).iter().map(|r| Some(r.judged())).collect(),
            Err(code) => return code,
        },
    };
    let report = report::Report::new(replayed, before, &expectations);
    print!("{}", report.render(output));
    ExitCode::from(report.exit_code())
}

async fn history_show(run: &str, namespace: &str) -> ExitCode {
    let client = match kube::Client::try_default().await {
        Ok(c) => c,
        Err(e) => return fail(&format!("no Kubernetes configuration: {e}")),
    };
    let (mut object, steps) = match crate::operator::archive::full_history(&client, namespace, run).await {
        Ok(h) => h,
        Err(e) => return fail(&e),
    };
    // The run with its whole history inline: a file every reader takes.
    let mut status = object.status.take().unwrap_or_default();
    status.steps = steps;
    status.archive.clear();
    object.status = Some(status);
    object.metadata.managed_fields = None;
    match serde_yaml::to_string(&object) {
        Ok(y) => print!("{y}"),
        Err(e) => return fail(&e),
    }
    let steps = object.status.as_ref().map(|s| s.steps.as_slice()).unwrap_or_default();
    match crate::engine::record::verify_chain(steps, "", 1) {
        Ok(()) => {
            eprintln!("{namespace}/{run}: {} steps, chain ok", steps.len());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{namespace}/{run}: chain BROKEN at {e}");
            ExitCode::from(1)
        }
    }
}

fn history_verify(files: &[PathBuf]) -> ExitCode {
    let mut failed = false;
    for f in files {
        let histories = match crate::history::load(f) {
            Ok(h) => h,
            Err(e) => {
                eprintln!("xct: {e}");
                failed = true;
                continue;
            }
        };
        for h in histories {
            let name = h.id();
            if h.missing > 0 {
                println!(
                    "{}: {name}: {} archived steps are not in this file (`xct history show`, or `kubectl get xctrun,cm -o yaml`, has them)",
                    f.display(),
                    h.missing
                );
            }
            match h.verify() {
                Ok(()) => println!(
                    "{}: {name}: ok, {} steps, head {}",
                    f.display(),
                    h.steps.len(),
                    h.steps.last().and_then(|s| s.digest.as_deref()).unwrap_or("-")
                ),
                Err(e) => {
                    println!("{}: {name}: BROKEN at {e}", f.display());
                    failed = true;
                }
            }
        }
    }
    if failed { ExitCode::from(1) } else { ExitCode::SUCCESS }
}

/// A Warning Event on the operator's own pod (POD_NAME, POD_NAMESPACE).
async fn model_unavailable_event(client: &kube::Client, error: &str) {
    let (Ok(name), Ok(namespace)) = (std::env::var("POD_NAME"), std::env::var("POD_NAMESPACE")) else { return };
    let pods: kube::Api<k8s_openapi::api::core::v1::Pod> = kube::Api::namespaced(client.clone(), &namespace);
    let reference = match pods.get(&name).await {
        Ok(p) => kube::Resource::object_ref(&p, &()),
        Err(_) => k8s_openapi::api::core::v1::ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Pod".into()),
            name: Some(name),
            namespace: Some(namespace),
            ..Default::default()
        },
    };
    crate::operator::events::Events::new(client.clone())
        .publish(&reference, true, "ModelUnavailable", format!("the model could not be loaded; not ready: {error}"))
        .await;
}

async fn bench(sections: String, steps: u32, json: Option<PathBuf>, model: ModelArgs) -> ExitCode {
    let opts = crate::bench::BenchOptions { base: model.options(), steps: steps.max(2), sections };
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

/// Install the tracing subscriber (RUST_LOG, default warn).
pub fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}
