//! Status writes: a JSON patch of exactly what changed, guarded by a `test`
//! of the resourceVersion the decision was based on. A stale or second
//! controller gets 409 Conflict and records (and executes) nothing.
//! Writes that change nothing are skipped.
//!
//! The patch is computed against the status as this process serializes it,
//! which is not always what is stored: a stored status missing a field the
//! types default (an admin's edit, an older version) makes a `replace` of
//! that field fail with 422, and every retry would fail the same way. On a
//! 422 the whole status is replaced instead, guarded by the same
//! resourceVersion (a stale writer still gets 409), which repairs it. If
//! even that is rejected (the CRD installed and this operator disagree),
//! the run gets a `StatusWritable=False` condition saying why, and waits
//! for a change instead of retrying (and spending model calls) forever.

use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::{Value, json};

use super::Error;
use crate::crd::{XctRun, XctRunStatus, set_condition};

/// Condition saying the API server accepts this run's status.
pub const STATUS_WRITABLE: &str = "StatusWritable";

/// Writes one run's status, tracking its resourceVersion.
pub struct StatusWriter {
    api: Api<XctRun>,
    name: String,
    /// The run as read, for a whole-status replace (only its status changes).
    run: XctRun,
    resource_version: String,
    current: Value,
    metrics: Option<std::sync::Arc<super::metrics::Metrics>>,
}

impl StatusWriter {
    pub fn new(api: Api<XctRun>, run: &XctRun) -> Self {
        StatusWriter {
            api,
            name: run.metadata.name.clone().unwrap_or_default(),
            run: XctRun { status: None, ..run.clone() },
            resource_version: run.metadata.resource_version.clone().unwrap_or_default(),
            current: status_value(run.status.as_ref()),
            metrics: None,
        }
    }

    /// Count the bytes written in these metrics.
    pub fn with_metrics(mut self, m: std::sync::Arc<super::metrics::Metrics>) -> Self {
        self.metrics = Some(m);
        self
    }

    /// Write `status` if it differs from what is stored.
    pub async fn write(&mut self, status: &XctRunStatus) -> Result<(), Error> {
        let new = status_value(Some(status));
        let diff = json_patch::diff(&json!({"status": self.current}), &json!({"status": new}));
        if diff.0.is_empty() {
            return Ok(());
        }
        let mut ops = vec![json!({"op": "test", "path": "/metadata/resourceVersion", "value": self.resource_version})];
        if self.current.is_null() {
            ops.push(json!({"op": "add", "path": "/status", "value": new}));
        } else {
            ops.extend(diff.0.iter().filter_map(|op| serde_json::to_value(op).ok()));
        }
        let body = Value::Array(ops);
        if let Some(m) = &self.metrics {
            m.status_bytes.inc_by(body.to_string().len() as u64);
        }
        let patch: json_patch::Patch = serde_json::from_value(body).map_err(|e| Error::Internal(e.to_string()))?;
        let updated = match self.api.patch_status(&self.name, &PatchParams::default(), &Patch::<()>::Json(patch)).await
        {
            Err(kube::Error::Api(s)) if s.code == 422 => self.replace(status).await?,
            other => other.map_err(conflict)?,
        };
        self.resource_version = updated.metadata.resource_version.unwrap_or_default();
        self.current = new;
        Ok(())
    }

    /// Replace the whole status, guarded by the resourceVersion.
    async fn replace(&self, status: &XctRunStatus) -> Result<XctRun, Error> {
        tracing::warn!(run = %self.name, "the stored status differs from what was read; replacing it whole");
        let mut body = self.run.clone();
        body.metadata.resource_version = Some(self.resource_version.clone());
        body.status = Some(status.clone());
        match self.api.replace_status(&self.name, &PostParams::default(), &body).await {
            Err(kube::Error::Api(s)) if s.code == 422 => Err(self.rejected(status, s.message).await),
            other => other.map_err(conflict),
        }
    }

    /// Say on the run, in a condition alone, that its status is rejected.
    async fn rejected(&self, status: &XctRunStatus, why: String) -> Error {
        let mut conditions = status.conditions.clone();
        let generation = self.run.metadata.generation;
        set_condition(&mut conditions, STATUS_WRITABLE, false, "StatusRejected", &why, generation);
        let patch =
            json!({"metadata": {"resourceVersion": self.resource_version}, "status": {"conditions": conditions}});
        if let Err(e) = self.api.patch_status(&self.name, &PatchParams::default(), &Patch::Merge(patch)).await {
            tracing::error!(run = %self.name, error = %e, "cannot even record that the status is rejected");
        }
        Error::StatusRejected(why)
    }
}

/// 409 (and a failed resourceVersion test) is a conflict: someone else wrote.
fn conflict(e: kube::Error) -> Error {
    match e {
        kube::Error::Api(s) if s.code == 409 => Error::Conflict,
        other => Error::Kube(other),
    }
}

fn status_value(status: Option<&XctRunStatus>) -> Value {
    status.map_or(Value::Null, |s| serde_json::to_value(s).unwrap_or(Value::Null))
}
