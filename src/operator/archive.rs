//! Bounded status, nothing lost: once a run has `2 * KEEP` steps in its
//! status, the oldest `KEEP` move, in order, into a ConfigMap owned by the
//! run (`<run>-history-<n>`), and the status keeps a reference with the last
//! digest so the hash chain continues. [`full_history`] reassembles it.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, ListParams, PostParams};
use kube::{Resource, ResourceExt};

use super::Error;
use crate::crd::run::ArchiveChunk;
use crate::crd::{XctRun, XctRunStatus};
use crate::engine::record::StepRecord;

/// Steps moved per ConfigMap (and kept at least in the status).
pub const KEEP: usize = 20;
/// Serialized size of the kept steps above which the oldest are archived
/// early, whatever their number. A step record is at most ~30 KiB (16 KiB
/// decision, 8 KiB result, detail), so the object stays under 256 KiB.
pub const MAX_KEPT_BYTES: usize = 160 * 1024;
/// Label naming the run on its archive ConfigMaps.
pub const RUN_LABEL: &str = "xct.dev/run";
const DATA_KEY: &str = "steps.yaml";

fn chunk_name(run: &str, n: usize) -> String {
    let mut base = run.to_string();
    base.truncate(230);
    format!("{base}-history-{n:05}")
}

/// Move the oldest steps into a ConfigMap if the status holds too many.
/// Returns whether the status changed (it must then be written).
pub async fn maybe_archive(client: &kube::Client, run: &XctRun, status: &mut XctRunStatus) -> Result<bool, Error> {
    let bytes = serde_json::to_string(&status.steps).map_or(0, |s| s.len());
    let take = if status.steps.len() >= 2 * KEEP {
        KEEP
    } else if bytes > MAX_KEPT_BYTES && status.steps.len() > 1 {
        // Large steps: move the older half (the last step always stays).
        (status.steps.len() / 2).max(1)
    } else {
        return Ok(false);
    };
    let ns = run.namespace().unwrap_or_default();
    let chunk: Vec<StepRecord> = status.steps[..take].to_vec();
    let name = chunk_name(&run.name_any(), status.archive.len());
    let yaml = serde_yaml::to_string(&chunk).map_err(|e| Error::Internal(e.to_string()))?;
    let owner = run.controller_owner_ref(&()).map(|mut o| {
        o.controller = Some(false);
        o.block_owner_deletion = Some(false);
        o
    });
    let cm = ConfigMap {
        metadata: kube::api::ObjectMeta {
            name: Some(name.clone()),
            namespace: Some(ns.clone()),
            labels: Some(BTreeMap::from([(RUN_LABEL.to_string(), run.name_any())])),
            owner_references: owner.map(|o| vec![o]),
            ..Default::default()
        },
        data: Some(BTreeMap::from([(DATA_KEY.to_string(), yaml)])),
        ..Default::default()
    };
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    match api.create(&PostParams::default(), &cm).await {
        Ok(_) => {}
        // Written before a crash: write it again with the same content.
        Err(kube::Error::Api(s)) if s.code == 409 => {
            let mut existing = api.get(&name).await?;
            existing.data = cm.data.clone();
            api.replace(&name, &PostParams::default(), &existing).await?;
        }
        Err(e) => return Err(e.into()),
    }
    let first = chunk.first().map_or(0, |s| s.index);
    let last = chunk.last().map_or(0, |s| s.index);
    let last_digest = chunk.last().and_then(|s| s.digest.clone()).unwrap_or_default();
    let errors = chunk.iter().filter(|s| s.error_code().is_some()).count() as u32;
    status.steps.drain(..take);
    status.archive.push(ArchiveChunk { config_map: name, first, last, last_digest, errors });
    Ok(true)
}

/// The whole history of a run: archived steps, then the status's.
pub async fn full_history(
    client: &kube::Client,
    namespace: &str,
    name: &str,
) -> Result<(XctRun, Vec<StepRecord>), Error> {
    let runs: Api<XctRun> = Api::namespaced(client.clone(), namespace);
    let run = runs.get(name).await?;
    let status = run.status.clone().unwrap_or_default();
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
    let listed = cms.list(&ListParams::default().labels(&format!("{RUN_LABEL}={name}"))).await?;
    let owned: Vec<&ConfigMap> = listed
        .items
        .iter()
        .filter(|c| c.owner_references().iter().any(|o| Some(&o.uid) == run.meta().uid.as_ref()))
        .collect();
    let mut steps = Vec::new();
    for chunk in &status.archive {
        let cm = owned
            .iter()
            .find(|c| c.name_any() == chunk.config_map)
            .ok_or_else(|| Error::Internal(format!("archive ConfigMap {} is missing", chunk.config_map)))?;
        let yaml = cm.data.as_ref().and_then(|d| d.get(DATA_KEY)).cloned().unwrap_or_default();
        let part: Vec<StepRecord> =
            serde_yaml::from_str(&yaml).map_err(|e| Error::Internal(format!("{}: {e}", chunk.config_map)))?;
        steps.extend(part);
    }
    steps.extend(status.steps.iter().cloned());
    Ok((run, steps))
}
