//! The offline and read-only commands: `xct policy test`, `xct history`.

use std::path::PathBuf;
use std::process::ExitCode;

use super::fail;

/// Exit code of `xct policy test` for input it cannot read.
const UNREADABLE: u8 = 2;

/// What `xct policy test` replays: the histories, and what stands in for
/// the cluster (namespace labels, live targets).
pub(super) struct PolicyInputs<'a> {
    pub(super) ns_labels: &'a [String],
    pub(super) targets: &'a [PathBuf],
    pub(super) histories: &'a [PathBuf],
}

pub(super) fn policy_test(
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

pub(super) async fn history_show(run: &str, namespace: &str) -> ExitCode {
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
    match crate::history::to_yaml(&object) {
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

pub(super) fn history_verify(files: &[PathBuf]) -> ExitCode {
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
