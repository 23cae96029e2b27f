//! Patch types ("Patch" in "API Concepts"; "Server-Side Apply"):
//! JSON patch (RFC 6902, `test` included, via the json-patch crate), JSON
//! merge patch (RFC 7386), strategic merge patch ([`crate::strategic`]) and
//! apply patch.
//!
//! Apply is modelled as create-or-merge under a required field manager.
//! Field ownership is NOT modelled: no managedFields, no conflicts between
//! managers, and fields dropped from a later apply are not removed.

use serde_json::Value;

use crate::error::ApiError;

/// The supported patch content types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchType {
    Json,
    Merge,
    Strategic,
    Apply,
}

impl PatchType {
    pub fn from_content_type(ct: &str) -> Result<Self, ApiError> {
        let base = ct.split(';').next().unwrap_or_default().trim();
        match base {
            "application/json-patch+json" => Ok(PatchType::Json),
            "application/merge-patch+json" => Ok(PatchType::Merge),
            "application/strategic-merge-patch+json" => Ok(PatchType::Strategic),
            "application/apply-patch+yaml" | "application/apply-patch+cbor" => Ok(PatchType::Apply),
            _ => Err(ApiError::unsupported_media(ct)),
        }
    }
}

/// Parse a patch body (YAML accepted for apply).
pub fn parse_body(pt: PatchType, body: &[u8]) -> Result<Value, ApiError> {
    let parsed = match pt {
        PatchType::Apply => serde_yaml::from_slice::<Value>(body).map_err(|e| e.to_string()),
        _ => serde_json::from_slice::<Value>(body).map_err(|e| e.to_string()),
    };
    parsed.map_err(|e| ApiError::bad_request(format!("error decoding patch: {e}")))
}

/// Apply `patch` to `doc`.
pub fn apply(pt: PatchType, doc: &Value, patch: &Value) -> Result<Value, ApiError> {
    let mut out = doc.clone();
    match pt {
        PatchType::Json => {
            let p: json_patch::Patch = serde_json::from_value(patch.clone())
                .map_err(|e| ApiError::bad_request(format!("invalid JSON patch: {e}")))?;
            json_patch::patch(&mut out, &p)
                .map_err(|e| ApiError::new(422, "Invalid", format!("the JSON patch could not be applied: {e}")))?;
        }
        PatchType::Strategic => return crate::strategic::merge(doc, patch),
        PatchType::Merge | PatchType::Apply => {
            if !patch.is_object() {
                return Err(ApiError::bad_request("a merge patch must be a JSON object"));
            }
            json_patch::merge(&mut out, patch);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn patch_types() {
        let doc = json!({"spec": {"replicas": 1, "paused": true}, "metadata": {"name": "a"}});
        let merged = apply(PatchType::Merge, &doc, &json!({"spec": {"replicas": 3, "paused": null}})).unwrap();
        assert_eq!(merged["spec"], json!({"replicas": 3}));
        let jp = json!([{"op": "test", "path": "/spec/replicas", "value": 1}, {"op": "replace", "path": "/spec/replicas", "value": 5}]);
        assert_eq!(apply(PatchType::Json, &doc, &jp).unwrap()["spec"]["replicas"], 5);
        let failing = json!([{"op": "test", "path": "/spec/replicas", "value": 2}]);
        assert_eq!(apply(PatchType::Json, &doc, &failing).unwrap_err().code, 422);
        assert_eq!(PatchType::from_content_type("text/plain").unwrap_err().code, 415);
        assert_eq!(parse_body(PatchType::Apply, b"spec:\n  replicas: 2\n").unwrap()["spec"]["replicas"], 2);
    }
}
