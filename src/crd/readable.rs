//! An object as the operator lists or watches it: its type, or, when it
//! cannot be read as that type, its metadata, its status as stored and why,
//! naming the field (`spec.step: invalid value: integer 4294967297, expected
//! u32`).
//!
//! An older or loosened CRD lets anything in, and even the real one stores
//! what the types refuse (a number past `u32`, an enum value of a newer
//! chart). Read strictly, one such object fails a whole list or watch and
//! stops every run that depends on it; read as [`Readable`], it is one
//! item the caller reports on and the others go on. Like kube's
//! `DeserializeGuard`, with the path of the field that failed.

use std::borrow::Cow;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Resource;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};
use serde_json::Value;

use crate::text::{MAX_QUOTED_CHARS, clip};

/// An object of type `K`, or what is known of it when it is not one.
#[derive(Debug, Clone)]
pub struct Readable<K>(pub Result<K, Box<Unreadable>>);

/// An object that could not be read as its type.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("this {kind} cannot be read: {error}")]
pub struct Unreadable {
    /// The kind the object was read as.
    pub kind: String,
    /// Where and why reading it failed.
    pub error: String,
    pub metadata: ObjectMeta,
    /// Its `status` as stored (null if none).
    pub status: Value,
}

/// Read `value` as `K`, without copying it; a refusal names the field's
/// path, cut to [`MAX_QUOTED_CHARS`].
pub fn read<K: DeserializeOwned>(value: &Value) -> Result<K, String> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let error = match e.path().to_string() {
            path if path == "." => e.into_inner().to_string(),
            path => format!("{path}: {}", e.into_inner()),
        };
        clip(&error, MAX_QUOTED_CHARS)
    })
}

impl<K> Readable<K> {
    /// A listing's readable objects, and the unreadable ones.
    pub fn split(items: Vec<Readable<K>>) -> (Vec<K>, Vec<Unreadable>) {
        let (mut read, mut unreadable) = (Vec::new(), Vec::new());
        for item in items {
            match item.0 {
                Ok(k) => read.push(k),
                Err(u) => unreadable.push(*u),
            }
        }
        (read, unreadable)
    }
}

impl<'de, K> Deserialize<'de> for Readable<K>
where
    K: DeserializeOwned + Resource<DynamicType = ()>,
{
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = Value::deserialize(deserializer)?;
        match read::<K>(&value) {
            Ok(k) => Ok(Readable(Ok(k))),
            Err(error) => {
                // An object whose metadata cannot be read is no object: the
                // list or watch reports it as the API server's error.
                let metadata: ObjectMeta =
                    read(&value["metadata"]).map_err(|e| serde::de::Error::custom(format!("metadata.{e}")))?;
                let kind = K::kind(&()).into_owned();
                let status = value.get("status").cloned().unwrap_or_default();
                Ok(Readable(Err(Box::new(Unreadable { kind, error, metadata, status }))))
            }
        }
    }
}

impl<K: Resource> Resource for Readable<K> {
    type DynamicType = K::DynamicType;
    type Scope = K::Scope;

    fn kind(dt: &Self::DynamicType) -> Cow<'_, str> {
        K::kind(dt)
    }
    fn group(dt: &Self::DynamicType) -> Cow<'_, str> {
        K::group(dt)
    }
    fn version(dt: &Self::DynamicType) -> Cow<'_, str> {
        K::version(dt)
    }
    fn plural(dt: &Self::DynamicType) -> Cow<'_, str> {
        K::plural(dt)
    }
    fn meta(&self) -> &ObjectMeta {
        self.0.as_ref().map_or_else(|u| &u.metadata, K::meta)
    }
    fn meta_mut(&mut self) -> &mut ObjectMeta {
        match &mut self.0 {
            Ok(k) => k.meta_mut(),
            Err(u) => &mut u.metadata,
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::crd::XctApproval;

    #[test]
    fn an_object_past_its_types_range_is_one_unreadable_item_naming_the_field() {
        let approval = |step: Value| {
            json!({"apiVersion": "xct.dev/v1alpha1", "kind": "XctApproval",
                   "metadata": {"name": "a", "namespace": "demo", "generation": 2},
                   "spec": {"runName": "r", "runUid": "u", "step": step, "proposalDigest": "d", "decision": "Approve", "approver": "bob"},
                   "status": {"state": "Ignored"}})
        };
        let list: Vec<Readable<XctApproval>> =
            serde_json::from_value(json!([approval(json!(1)), approval(json!(4_294_967_297u64))])).unwrap();
        assert!(list[0].0.as_ref().is_ok_and(|a| a.spec.step == 1));
        let unreadable = list[1].0.as_ref().unwrap_err();
        assert_eq!(unreadable.error, "spec.step: invalid value: integer `4294967297`, expected u32");
        assert_eq!(
            unreadable.to_string(),
            "this XctApproval cannot be read: spec.step: invalid value: integer `4294967297`, expected u32"
        );
        assert_eq!((list[1].meta().name.as_deref(), list[1].meta().generation), (Some("a"), Some(2)));
        assert_eq!(unreadable.status, json!({"state": "Ignored"}));
        let mut long = approval(json!(1));
        long["spec"]["decision"] = json!("x".repeat(100_000));
        let error = serde_json::from_value::<Readable<XctApproval>>(long).unwrap().0.unwrap_err().error;
        assert!(error.starts_with("spec.decision: unknown variant") && error.chars().count() <= MAX_QUOTED_CHARS + 3);
        let no_metadata = serde_json::from_value::<Readable<XctApproval>>(json!({"metadata": {"name": 5}}));
        assert!(no_metadata.unwrap_err().to_string().starts_with("metadata.name: "));
    }
}
