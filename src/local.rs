//! The local host: runs an `XctRun` manifest on this machine with the fs
//! tools confined to a workspace, one step at a time, printing a line per
//! step and writing the history in the shape of `XctRun.status`.

use std::io::Write;
use std::path::{Path, PathBuf};

use chrono::Utc;

use crate::crd::{RunPhase, XctRun, XctRunStatus};
use crate::engine::record::{StepRecord, VerdictOutcome};
use crate::engine::{Engine, EngineError, NoJournal, RunConfig, RunOutcome, Stepped};
use crate::model::Decider;
use crate::protocol::Signal;
use crate::text::{clip, shown};
use crate::tools::ToolSet;
use crate::tools::fs::Workspace;

/// Why a local run could not run to an outcome.
#[derive(Debug, thiserror::Error)]
pub enum LocalError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path} is not an XctRun manifest: {message}")]
    Manifest { path: PathBuf, message: String },
    #[error("{path}: invalid spec: {}", problems.join("; "))]
    Spec { path: PathBuf, problems: Vec<String> },
    #[error("workspace {path}: {source}")]
    Workspace { path: PathBuf, source: std::io::Error },
    #[error("cannot write the history to {path}: {message}")]
    History { path: PathBuf, message: String },
    #[error("model failure at step {step}: {source}")]
    Decider { step: u32, source: crate::model::DeciderError },
}

impl LocalError {
    /// Static category for logs and exit codes.
    pub fn category(&self) -> &'static str {
        match self {
            LocalError::Read { .. } => "read",
            LocalError::Manifest { .. } => "manifest",
            LocalError::Spec { .. } => "spec",
            LocalError::Workspace { .. } => "workspace",
            LocalError::History { .. } => "history",
            LocalError::Decider { .. } => "decider",
        }
    }
}

/// Parse an `XctRun` manifest (the same YAML the cluster takes).
pub fn load_manifest(path: &Path) -> Result<XctRun, LocalError> {
    let text = std::fs::read_to_string(path).map_err(|source| LocalError::Read { path: path.into(), source })?;
    parse_manifest(&text).map_err(|message| LocalError::Manifest { path: path.into(), message })
}

/// Parse manifest text, checking apiVersion and kind.
pub fn parse_manifest(text: &str) -> Result<XctRun, String> {
    let value: serde_yaml::Value = serde_yaml::from_str(text).map_err(|e| e.to_string())?;
    let api = value.get("apiVersion").and_then(|v| v.as_str()).unwrap_or_default();
    let kind = value.get("kind").and_then(|v| v.as_str()).unwrap_or_default();
    if api != "xct.dev/v1alpha1" || kind != "XctRun" {
        return Err(format!("expected apiVersion xct.dev/v1alpha1 and kind XctRun, found {api:?} / {kind:?}"));
    }
    serde_yaml::from_value(value).map_err(|e| e.to_string())
}

/// The local tool catalogue over a workspace.
pub fn catalogue(workspace: &Workspace) -> ToolSet {
    workspace.tools().into_iter().fold(ToolSet::new(), ToolSet::with)
}

/// A finished local run.
#[derive(Debug)]
pub struct LocalReport {
    pub outcome: RunOutcome,
    pub status: XctRunStatus,
}

/// A run checked and ready: its engine configuration over a workspace.
#[derive(Debug)]
pub struct Prepared {
    pub name: String,
    pub cfg: RunConfig,
}

/// Check the manifest's spec and open the workspace (created if missing).
/// Done before the model is loaded, so a bad manifest fails fast.
pub fn prepare(run: &XctRun, manifest: &Path, workspace_dir: &Path) -> Result<Prepared, LocalError> {
    std::fs::create_dir_all(workspace_dir)
        .map_err(|source| LocalError::Workspace { path: workspace_dir.into(), source })?;
    let workspace = Workspace::open(workspace_dir)
        .map_err(|source| LocalError::Workspace { path: workspace_dir.into(), source })?;
    let tools = catalogue(&workspace);
    let problems = run.spec.problems(&tools.names());
    if !problems.is_empty() {
        return Err(LocalError::Spec { path: manifest.into(), problems });
    }
    let name = run.metadata.name.clone().unwrap_or_else(|| "local".into());
    let cfg = run
        .spec
        .run_config(name.clone(), LOCAL_IDENTITY, &tools)
        .map_err(|e| LocalError::Spec { path: manifest.into(), problems: vec![e.to_string()] })?;
    Ok(Prepared { name, cfg })
}

/// Who the tools act as in a local run: the user running `xct local`.
pub const LOCAL_IDENTITY: &str = "local";

/// Run to the end, writing the history after every step.
pub async fn run(
    prepared: &Prepared,
    decider: &dyn Decider,
    history_path: &Path,
    out: &mut dyn Write,
) -> Result<LocalReport, LocalError> {
    let (name, cfg) = (&prepared.name, &prepared.cfg);
    let engine = Engine::new(decider);
    let started = Utc::now();
    let mut status = XctRunStatus {
        phase: RunPhase::Running,
        started_at: Some(started.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)),
        ..XctRunStatus::default()
    };
    let _ = writeln!(out, "run {name}: goal {:?}, tools {:?}", cfg.goal, cfg.tools.names());
    let outcome = loop {
        match engine.step(cfg, &status.steps, started, None, &mut NoJournal).await {
            Ok(Stepped::New(record)) => {
                let _ = writeln!(out, "{}", step_line(&record));
                status.steps.push(record);
            }
            Ok(Stepped::Resolved(record)) => {
                let _ = writeln!(out, "{}", step_line(&record));
                status.steps.pop();
                status.steps.push(record);
            }
            // No judge locally: nothing ever awaits approval.
            Ok(Stepped::Waiting { .. }) => {}
            Err(EngineError::Finished(outcome)) => break outcome,
            Err(EngineError::Decider(source)) => {
                status.phase = RunPhase::Failed;
                status.message = Some(format!("model failure: {source}"));
                write_history(history_path, &status)?;
                return Err(LocalError::Decider { step: status.steps.len() as u32 + 1, source });
            }
            Err(EngineError::Journal(e)) => {
                return Err(LocalError::History { path: history_path.into(), message: e.to_string() });
            }
        }
        status.refresh_summary();
        write_history(history_path, &status)?;
    };
    match &outcome {
        RunOutcome::Succeeded { message } => {
            status.phase = RunPhase::Succeeded;
            status.message = Some(message.clone());
        }
        RunOutcome::Failed { code, reason } => {
            status.phase = RunPhase::Failed;
            status.message = Some(format!("{code}: {reason}"));
        }
    }
    write_history(history_path, &status)?;
    let _ = writeln!(
        out,
        "run {name}: {:?} after {} steps: {}",
        status.phase,
        status.steps.len(),
        shown(status.message.as_deref().unwrap_or_default())
    );
    Ok(LocalReport { outcome, status })
}

/// One line per step: index, proposal, verdict, outcome.
pub fn step_line(r: &StepRecord) -> String {
    let proposal = match (r.verdict.outcome, &r.tool) {
        (VerdictOutcome::Done, _) => "done".to_string(),
        (_, Some(tool)) => tool.clone(),
        (_, None) => "(invalid output)".to_string(),
    };
    let by = r.verdict.decided_by.as_deref().map(|b| format!(" by {b}")).unwrap_or_default();
    let detail = match &r.signal {
        Some(Signal::Error { message, .. }) => format!(": {}", clip(message, 100)),
        Some(Signal::Success { result }) => format!(": {}", clip(&result.to_string(), 100)),
        None => format!(": {}", clip(&r.verdict.reason, 100)),
    };
    // What the model wrote, shown and never obeyed (the line is also the
    // step's Event, which `kubectl describe` prints).
    let line = format!(
        "step {:>3}  {:<18} {}{} -> {}{}  ({} ms model, {}+{} tok)",
        r.index,
        proposal,
        r.verdict.outcome.as_str(),
        by,
        r.outcome_label(),
        detail,
        r.timings.model_ms,
        r.model.prompt_tokens,
        r.model.completion_tokens
    );
    shown(&line).into_owned()
}

fn write_history(path: &Path, status: &XctRunStatus) -> Result<(), LocalError> {
    let yaml = crate::history::to_yaml(status)
        .map_err(|e| LocalError::History { path: path.into(), message: e.to_string() })?;
    let tmp = path.with_extension("yaml.tmp");
    std::fs::write(&tmp, yaml)
        .and_then(|_| std::fs::rename(&tmp, path))
        .map_err(|e| LocalError::History { path: path.into(), message: e.to_string() })
}
