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

/// A signal: `{status: success, result}` or `{status: error, code, message, details}`.
pub fn signal(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "object",
        "description": "What the model was told: {status: success, result} or {status: error, code, message, details}.",
        "required": ["status"],
        "properties": {
            "status": {"type": "string", "enum": ["success", "error"], "description": "success or error"},
            "code": {"type": "string", "description": "The error code (errors only)."},
            "message": {"type": "string", "description": "What went wrong (errors only)."},
            "result": {"x-kubernetes-preserve-unknown-fields": true, "description": "The tool's result (successes only)."},
            "details": {"x-kubernetes-preserve-unknown-fields": true, "description": "Structured error detail (errors only)."},
        },
    })
}
