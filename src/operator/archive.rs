//! Bounded status, nothing lost: once a run has `2 * KEEP` steps in its
//! status, the oldest `KEEP` move, in order, into a ConfigMap owned by the
//! run, and the status keeps a reference with the last digest so the hash
//! chain continues. [`full_history`] reassembles it.
//!
//! The archives are the operator's own and nothing else: each is created
//! with `generateName` (the API server picks a fresh name, so no existing
//! object is ever hit, whatever the run is called), owned by the run, and
//! labelled with the run's UID and the chunk number (label values that are
//! always valid). The operator never reads, updates or deletes a ConfigMap
//! (its RBAC grants `create` only): after a crash between creating a chunk
//! and recording it, the next attempt creates another, and the spare, owned
//! by the run, is garbage-collected with it. Reading the archive back
//! ([`full_history`]) is for whoever may read the run's ConfigMaps.

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
/// Label holding the UID of the run an archive belongs to.
pub const RUN_UID_LABEL: &str = "xct.dev/run-uid";
/// Label holding the chunk number within the run's archive.
pub const CHUNK_LABEL: &str = "xct.dev/archive-chunk";
/// Annotation naming the run (names can be longer than a label value).
pub const RUN_ANNOTATION: &str = "xct.dev/run";
/// Prefix of archive names; the API server appends a random suffix.
pub const NAME_PREFIX: &str = "xct-history-";
/// The data key holding a chunk's steps (YAML).
pub const DATA_KEY: &str = "steps.yaml";

/// This run's archive ConfigMaps: labelled with its UID and owned by it
/// (a label alone can be set by anyone who may create ConfigMaps).
async fn owned_chunks(api: &Api<ConfigMap>, run: &XctRun) -> Result<Vec<ConfigMap>, Error> {
    let uid = run.meta().uid.clone().unwrap_or_default();
    let selector = format!("{RUN_UID_LABEL}={uid}");
    let listed = api.list(&ListParams::default().labels(&selector)).await?;
    Ok(listed.items.into_iter().filter(|c| c.owner_references().iter().any(|o| o.uid == uid)).collect())
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
    let n = status.archive.len();
    let yaml = serde_yaml::to_string(&chunk).map_err(|e| Error::Internal(e.to_string()))?;
    let data = BTreeMap::from([(DATA_KEY.to_string(), yaml)]);
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    let owner = run.controller_owner_ref(&()).map(|mut o| {
        o.controller = Some(false);
        o.block_owner_deletion = Some(false);
        o
    });
    let uid = run.meta().uid.clone().unwrap_or_default();
    let cm = ConfigMap {
        metadata: kube::api::ObjectMeta {
            generate_name: Some(NAME_PREFIX.to_string()),
            namespace: Some(ns.clone()),
            labels: Some(BTreeMap::from([(RUN_UID_LABEL.to_string(), uid), (CHUNK_LABEL.to_string(), n.to_string())])),
            annotations: Some(BTreeMap::from([(RUN_ANNOTATION.to_string(), run.name_any())])),
            owner_references: owner.map(|o| vec![o]),
            ..Default::default()
        },
        data: Some(data),
        ..Default::default()
    };
    let name = api.create(&PostParams::default(), &cm).await?.name_any();
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
    let owned = owned_chunks(&cms, &run).await?;
    let found = |config_map: &str| {
        owned.iter().find(|c| c.name_any() == config_map).and_then(|c| c.data.as_ref()?.get(DATA_KEY).cloned())
    };
    let steps = reassemble(&status, found).map_err(Error::Internal)?;
    Ok((run, steps))
}

/// Pure: the archived steps (each chunk's YAML found by its ConfigMap name)
/// followed by the status's, or which chunk is missing or unreadable.
pub fn reassemble(
    status: &XctRunStatus,
    chunk_yaml: impl Fn(&str) -> Option<String>,
) -> Result<Vec<StepRecord>, String> {
    let mut steps = Vec::new();
    for chunk in &status.archive {
        let yaml = chunk_yaml(&chunk.config_map)
            .ok_or_else(|| format!("archive ConfigMap {} is missing", chunk.config_map))?;
        let part: Vec<StepRecord> = serde_yaml::from_str(&yaml).map_err(|e| format!("{}: {e}", chunk.config_map))?;
        steps.extend(part);
    }
    steps.extend(status.steps.iter().cloned());
    Ok(steps)
}
