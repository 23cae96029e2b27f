//! Schema helpers shared by the wire types and the CRDs.
//!
//! Free-form JSON (tool arguments, results, details) must be declared with
//! `x-kubernetes-preserve-unknown-fields` for a CRD schema to be structural.

use schemars::{Schema, SchemaGenerator, json_schema};

/// Any JSON value, kept as is by the API server.
pub fn any_value(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "x-kubernetes-preserve-unknown-fields": true,
    })
}

/// Optional any JSON value.
pub fn any_value_opt(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "nullable": true,
        "x-kubernetes-preserve-unknown-fields": true,
    })
}

/// A free-form JSON object.
pub fn any_object(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": true,
    })
}
