//! `Table` responses for `kubectl get` ("Receiving resources as Tables" in
//! "API Concepts"): Name, the CRD's printer columns (simple `.a.b` JSON
//! paths), and Age.

use serde_json::{Value, json};

use crate::kinds::Kind;
use crate::select::field;

/// Whether the client asked for a Table.
pub fn wants_table(accept: &str) -> bool {
    accept.split(',').next().is_some_and(|first| first.contains("as=Table"))
}

/// Render objects as a `meta.k8s.io/v1` Table.
pub fn table(kind: &Kind, items: &[Value], resource_version: u64) -> Value {
    let mut columns = vec![
        json!({"name": "Name", "type": "string", "format": "name", "description": "Name of the object", "priority": 0}),
    ];
    let has_age = kind.printer_columns.iter().any(|c| c.json_path == ".metadata.creationTimestamp");
    for c in &kind.printer_columns {
        columns.push(json!({"name": c.name, "type": c.type_, "format": "", "description": c.description, "priority": c.priority}));
    }
    if !has_age {
        columns.push(
            json!({"name": "Age", "type": "date", "format": "", "description": "Age of the object", "priority": 0}),
        );
    }
    let rows: Vec<Value> = items
        .iter()
        .map(|o| {
            let mut cells = vec![o["metadata"]["name"].clone()];
            for c in &kind.printer_columns {
                let v = o.pointer(&c.json_path.replace('.', "/")).cloned();
                let v = v.unwrap_or_else(|| field(o, &c.json_path).map_or(Value::Null, Value::String));
                cells.push(if c.type_ == "date" { age(&v) } else { v });
            }
            if !has_age {
                cells.push(age(&o["metadata"]["creationTimestamp"]));
            }
            json!({
                "cells": cells,
                "object": {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": o["metadata"]},
            })
        })
        .collect();
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {"resourceVersion": resource_version.to_string()},
        "columnDefinitions": columns,
        "rows": rows,
    })
}

/// A timestamp as the age kube-apiserver prints ("45s", "3m", "2h", "5d").
fn age(ts: &Value) -> Value {
    let Some(t) = ts.as_str().and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok()) else {
        return json!("<unknown>");
    };
    let secs = (chrono::Utc::now() - t.with_timezone(&chrono::Utc)).num_seconds().max(0);
    json!(match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 7200 => format!("{}m", s / 60),
        s if s < 172_800 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86_400),
    })
}
