//! Status writes: a JSON patch of exactly what changed, guarded by a `test`
//! of the resourceVersion the decision was based on. A stale or second
//! controller gets 409 Conflict and records (and executes) nothing.
//! Writes that change nothing are skipped.

use kube::api::{Api, Patch, PatchParams};
use serde_json::{Value, json};

use super::Error;
use crate::crd::{XctRun, XctRunStatus};

/// Writes one run's status, tracking its resourceVersion.
pub struct StatusWriter {
    api: Api<XctRun>,
    name: String,
    resource_version: String,
    current: Value,
    metrics: Option<std::sync::Arc<super::metrics::Metrics>>,
}

impl StatusWriter {
    pub fn new(api: Api<XctRun>, run: &XctRun) -> Self {
        StatusWriter {
            api,
            name: run.metadata.name.clone().unwrap_or_default(),
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
        let updated = self
            .api
            .patch_status(&self.name, &PatchParams::default(), &Patch::<()>::Json(patch))
            .await
            .map_err(|e| match e {
                kube::Error::Api(s) if s.code == 409 || s.code == 422 && s.message.contains("test") => Error::Conflict,
                other => Error::Kube(other),
            })?;
        self.resource_version = updated.metadata.resource_version.unwrap_or_default();
        self.current = new;
        Ok(())
    }
}

fn status_value(status: Option<&XctRunStatus>) -> Value {
    status.map_or(Value::Null, |s| serde_json::to_value(s).unwrap_or(Value::Null))
}
