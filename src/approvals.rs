//! Approvals from kubectl: `xct approvals list` shows the steps waiting for
//! a human, `xct approve RUN` / `xct reject RUN --reason ...` create the
//! XctApproval for exactly the pending proposal (run UID, step, digest) as
//! the current user, found with a SelfSubjectReview. Installed as
//! `kubectl-xct` (a link to `xct`), the same commands run as `kubectl xct`.
//!
//! Nothing here decides: the operator still checks the binding, refuses an
//! approval by the run's creator, and judges and dry-runs the step again
//! before it executes. The command only saves a reviewer from copying a
//! digest by hand, and says plainly when an approval could not count.

use std::process::ExitCode;

use k8s_openapi::api::authentication::v1::SelfSubjectReview;
use kube::api::{Api, ListParams, ObjectMeta, PostParams};

use crate::crd::run::CREATED_BY;
use crate::crd::{ApprovalDecision, Readable, RunPhase, Unreadable, XctApproval, XctApprovalSpec, XctRun};
use crate::engine::record::{StepPhase, StepRecord};
use crate::text::shown;

/// Longest prefix of the run name in a generated approval name (the API
/// server appends 5 characters; names stay well under 253).
const NAME_PREFIX_CHARS: usize = 40;
/// Hex digits of a proposal digest `approvals list` shows, and the fewest
/// `approve --digest` takes.
pub const SHOWN_DIGEST_CHARS: usize = 12;
/// Hex digits of a whole proposal digest (sha256).
const DIGEST_CHARS: usize = 64;

/// Why an approval was not created.
#[derive(Debug, thiserror::Error)]
pub enum ApproveError {
    #[error("run {0} is not awaiting approval")]
    NothingPending(String),
    #[error("run {run} awaits approval of step {pending}, not step {asked}")]
    OtherStep { run: String, pending: u32, asked: u32 },
    #[error(
        "run {run} step {step} waits on proposal {pending}, not the one you reviewed ({reviewed}); review it with \
         `xct approvals show`"
    )]
    OtherProposal { run: String, step: u32, pending: String, reviewed: String },
    #[error("you ({0}) created this run: an approval from you would be ignored; ask another reviewer")]
    OwnRun(String),
    #[error("the API server refused: {0}")]
    Refused(String),
    #[error("cannot reach the cluster: {0}")]
    Cluster(String),
}

impl ApproveError {
    /// Refused is 1 (the command worked, the answer is no), unreachable 2.
    pub fn exit_code(&self) -> u8 {
        match self {
            ApproveError::Cluster(_) => 2,
            _ => 1,
        }
    }

    fn from_kube(e: kube::Error) -> Self {
        match e {
            kube::Error::Api(s) => ApproveError::Refused(format!("{} ({} {})", s.message, s.code, s.reason)),
            other => ApproveError::Cluster(other.to_string()),
        }
    }
}

/// A step waiting for a human.
#[derive(Debug, Clone)]
pub struct Pending {
    pub namespace: String,
    pub run: String,
    pub run_uid: String,
    pub creator: Option<String>,
    pub step: StepRecord,
}

impl Pending {
    /// The step `run` waits on, if it is awaiting approval.
    pub fn of(run: &XctRun) -> Option<Pending> {
        let status = run.status.as_ref()?;
        let step = status.steps.last().filter(|s| s.phase == StepPhase::AwaitingApproval)?;
        (status.phase == RunPhase::AwaitingApproval).then(|| Pending {
            namespace: run.metadata.namespace.clone().unwrap_or_default(),
            run: run.metadata.name.clone().unwrap_or_default(),
            run_uid: run.metadata.uid.clone().unwrap_or_default(),
            creator: run.metadata.annotations.as_ref().and_then(|a| a.get(CREATED_BY)).cloned(),
            step: step.clone(),
        })
    }

    pub fn digest(&self) -> &str {
        self.step.proposal_digest.as_deref().unwrap_or_default()
    }

    /// What a reviewer needs to see: the proposal, why, and its dry run.
    pub fn describe(&self) -> String {
        let s = &self.step;
        let dry = s.dry_run.as_ref().map_or("(none)", |d| d.summary.as_str());
        // Each field on its one line, as the terminal shows it and never
        // obeys it: the proposal, and what quotes it, is the model's text.
        format!(
            "run:      {}/{} (uid {})\nstep:     {}\ntool:     {}\nproposal: {}\nreason:   {}\ndry run:  {}\ndigest:   {}\ncreator:  {}\n",
            shown(&self.namespace),
            shown(&self.run),
            shown(&self.run_uid),
            s.index,
            shown(s.tool.as_deref().unwrap_or("-")),
            shown(&s.decision),
            shown(&s.verdict.reason),
            shown(dry),
            shown(self.digest()),
            shown(self.creator.as_deref().unwrap_or("(unknown: no approval can count)")),
        )
    }

    /// The XctApproval for this exact proposal, by `approver`.
    pub fn approval(&self, decision: ApprovalDecision, reason: &str, approver: &str) -> XctApproval {
        let prefix: String = self.run.chars().take(NAME_PREFIX_CHARS).collect();
        let prefix = prefix.trim_end_matches(['-', '.']);
        let meta = ObjectMeta {
            generate_name: Some(format!("{prefix}-{}-", self.step.index)),
            namespace: Some(self.namespace.clone()),
            ..ObjectMeta::default()
        };
        let spec = XctApprovalSpec {
            run_name: self.run.clone(),
            run_uid: self.run_uid.clone(),
            step: self.step.index,
            proposal_digest: self.digest().to_string(),
            decision,
            reason: reason.to_string(),
            approver: approver.to_string(),
        };
        XctApproval { metadata: meta, spec, status: None }
    }
}

/// A digest as `approve --digest` takes it: at least [`SHOWN_DIGEST_CHARS`]
/// and at most all 64 hex digits, lowercase as the status shows them.
pub fn reviewed_digest(s: &str) -> Result<String, String> {
    let d = s.trim().to_ascii_lowercase();
    if (SHOWN_DIGEST_CHARS..=DIGEST_CHARS).contains(&d.len()) && d.chars().all(|c| c.is_ascii_hexdigit()) {
        Ok(d)
    } else {
        Err(format!(
            "{s:?} is not a proposal digest: give at least {SHOWN_DIGEST_CHARS} hex digits of it (as `xct approvals \
             list` shows it), at most {DIGEST_CHARS}"
        ))
    }
}

/// The step `run` waits on.
async fn pending(client: &kube::Client, namespace: &str, run: &str) -> Result<Pending, ApproveError> {
    let runs: Api<XctRun> = Api::namespaced(client.clone(), namespace);
    let object = runs.get(run).await.map_err(ApproveError::from_kube)?;
    Pending::of(&object).ok_or_else(|| ApproveError::NothingPending(format!("{namespace}/{run}")))
}

/// Steps awaiting approval, in `namespace` or everywhere, and the runs
/// that cannot be read as XctRuns (none of them can await an approval).
pub async fn list(
    client: &kube::Client,
    namespace: Option<&str>,
) -> Result<(Vec<Pending>, Vec<Unreadable>), ApproveError> {
    let api: Api<Readable<XctRun>> = match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    let runs = api.list(&ListParams::default()).await.map_err(ApproveError::from_kube)?;
    let (runs, unreadable) = Readable::split(runs.items);
    Ok((runs.iter().filter_map(Pending::of).collect(), unreadable))
}

/// The table `xct approvals list` prints.
pub fn table(pending: &[Pending]) -> String {
    let mut out = String::from("NAMESPACE\tRUN\tSTEP\tTOOL\tDIGEST\tDRY RUN\n");
    for p in pending {
        let digest: String = p.digest().chars().take(SHOWN_DIGEST_CHARS).collect();
        let dry = p.step.dry_run.as_ref().map_or("-", |d| d.summary.as_str());
        let tool = p.step.tool.as_deref().unwrap_or("-");
        let (namespace, run, tool, dry) = (shown(&p.namespace), shown(&p.run), shown(tool), shown(dry));
        out.push_str(&format!("{namespace}\t{run}\t{}\t{tool}\t{digest}\t{dry}\n", p.step.index));
    }
    out
}

/// Who the current credentials are, as the API server sees them.
pub async fn whoami(client: &kube::Client) -> Result<String, ApproveError> {
    let api: Api<SelfSubjectReview> = Api::all(client.clone());
    let review =
        api.create(&PostParams::default(), &SelfSubjectReview::default()).await.map_err(ApproveError::from_kube)?;
    review
        .status
        .and_then(|s| s.user_info)
        .and_then(|u| u.username)
        .ok_or_else(|| ApproveError::Refused("the SelfSubjectReview named no user".into()))
}

/// Approve or reject the pending step of `run` as the current user: the
/// created approval and the step it answers. With `step` or `digest`
/// ([`reviewed_digest`]), only if the run still waits on that step and
/// that proposal.
pub async fn answer(
    client: &kube::Client,
    namespace: &str,
    run: &str,
    (step, digest): (Option<u32>, Option<&str>),
    decision: ApprovalDecision,
    reason: &str,
) -> Result<(XctApproval, Pending), ApproveError> {
    let pending = pending(client, namespace, run).await?;
    if let Some(asked) = step.filter(|s| *s != pending.step.index) {
        return Err(ApproveError::OtherStep { run: format!("{namespace}/{run}"), pending: pending.step.index, asked });
    }
    if let Some(reviewed) = digest.filter(|d| !pending.digest().starts_with(d)) {
        return Err(ApproveError::OtherProposal {
            run: format!("{namespace}/{run}"),
            step: pending.step.index,
            pending: pending.digest().chars().take(reviewed.len().max(SHOWN_DIGEST_CHARS)).collect(),
            reviewed: reviewed.to_string(),
        });
    }
    let me = whoami(client).await?;
    if pending.creator.as_deref() == Some(me.as_str()) {
        return Err(ApproveError::OwnRun(me));
    }
    let api: Api<XctApproval> = Api::namespaced(client.clone(), namespace);
    let created = api
        .create(&PostParams::default(), &pending.approval(decision, reason, &me))
        .await
        .map_err(ApproveError::from_kube)?;
    Ok((created, pending))
}

/// `xct approvals list`: the table, or why not (exit 1 refused, 2 unreachable).
pub async fn list_command(namespace: Option<String>) -> ExitCode {
    let client = match client().await {
        Ok(c) => c,
        Err(e) => return refused(&e),
    };
    match list(&client, namespace.as_deref()).await {
        Ok((pending, unreadable)) => {
            print!("{}", table(&pending));
            for u in unreadable {
                let (ns, name) = (u.metadata.namespace.as_deref(), u.metadata.name.as_deref());
                eprintln!("warning: {}/{}: {u}", ns.unwrap_or_default(), name.unwrap_or_default());
            }
            ExitCode::SUCCESS
        }
        Err(e) => refused(&e),
    }
}

/// `xct approvals show`: the pending step, whole (exit 1: none).
pub async fn show_command(run: String, namespace: Option<String>) -> ExitCode {
    let client = match client().await {
        Ok(c) => c,
        Err(e) => return refused(&e),
    };
    let namespace = namespace.unwrap_or_else(|| client.default_namespace().to_string());
    match pending(&client, &namespace, &run).await {
        Ok(p) => {
            print!("{}", p.describe());
            ExitCode::SUCCESS
        }
        Err(e) => refused(&e),
    }
}

/// `xct approve` / `xct reject`: what was reviewed and the approval created.
pub async fn answer_command(which: crate::cli::AnswerArgs, decision: ApprovalDecision, reason: &str) -> ExitCode {
    let client = match client().await {
        Ok(c) => c,
        Err(e) => return refused(&e),
    };
    let namespace = which.namespace.unwrap_or_else(|| client.default_namespace().to_string());
    let pinned = (which.step, which.digest.as_deref());
    match answer(&client, &namespace, &which.run, pinned, decision, reason).await {
        Ok((created, pending)) => {
            print!("{}", pending.describe());
            let name = created.metadata.name.unwrap_or_default();
            println!(
                "xctapproval.xct.dev/{name} created: {decision:?} step {} as {}",
                pending.step.index, created.spec.approver
            );
            ExitCode::SUCCESS
        }
        Err(e) => refused(&e),
    }
}

/// The client of the current kubeconfig (or in-cluster configuration).
async fn client() -> Result<kube::Client, ApproveError> {
    kube::Client::try_default().await.map_err(|e| ApproveError::Cluster(format!("no Kubernetes configuration: {e}")))
}

fn refused(e: &ApproveError) -> ExitCode {
    eprintln!("error: {e}");
    ExitCode::from(e.exit_code())
}
