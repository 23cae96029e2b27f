//! What a tool shows the model of an object: no managedFields, no
//! last-applied annotation, and never a Secret value, wherever a Secret
//! appears in what a tool returns.

use serde_json::{Value, json};

/// What replaces a Secret value in anything a tool returns.
pub const REDACTED: &str = "<redacted>";

/// An object as shown to the model: no managedFields, no last-applied
/// annotation, Secret values redacted at any depth.
pub fn present(mut v: Value) -> Value {
    if let Some(m) = v.get_mut("metadata").and_then(Value::as_object_mut) {
        m.remove("managedFields");
        if let Some(a) = m.get_mut("annotations").and_then(Value::as_object_mut) {
            a.remove("kubectl.kubernetes.io/last-applied-configuration");
        }
    }
    redact_secrets(&mut v, false);
    v
}

/// Replace every Secret value (`data`, `stringData`) with [`REDACTED`],
/// wherever a Secret appears: the object itself, a list's items, or nested
/// anywhere inside another value. `secret` says the value is known to be a
/// Secret (an item of a SecretList).
pub fn redact_secrets(v: &mut Value, secret: bool) {
    match v {
        Value::Object(m) => {
            let kind = m.get("kind").and_then(Value::as_str).unwrap_or_default().to_string();
            if secret || kind == "Secret" {
                for field in ["data", "stringData"] {
                    if let Some(d) = m.get_mut(field).and_then(Value::as_object_mut) {
                        for val in d.values_mut() {
                            *val = json!(REDACTED);
                        }
                    }
                }
            }
            let items_are_secrets = kind == "SecretList";
            for (k, child) in m.iter_mut() {
                redact_secrets(child, items_are_secrets && k == "items");
            }
        }
        Value::Array(a) => a.iter_mut().for_each(|x| redact_secrets(x, secret)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_values_are_redacted_at_any_depth_and_in_lists() {
        let secret =
            |v: &str| json!({"kind": "Secret", "metadata": {"name": "s"}, "data": {"k": v}, "stringData": {"p": v}});
        let mut v = json!({
            "kind": "SecretList",
            "items": [{"metadata": {"name": "a"}, "data": {"k": "c2VjcmV0"}}],
            "nested": {"deeper": [secret("hunter2")]},
            "metadata": {"annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{\"data\":{\"k\":\"hunter2\"}}"}, "managedFields": [{}]},
        });
        v = present(v);
        let text = v.to_string();
        assert!(!text.contains("hunter2") && !text.contains("c2VjcmV0"), "{text}");
        assert_eq!(v["items"][0]["data"]["k"], REDACTED);
        assert_eq!(v["nested"]["deeper"][0]["stringData"]["p"], REDACTED);
        assert!(v["metadata"].get("managedFields").is_none());
        // Keys stay visible, other kinds keep their data.
        let mut cm = json!({"kind": "ConfigMap", "data": {"k": "v"}});
        redact_secrets(&mut cm, false);
        assert_eq!(cm["data"]["k"], "v");
    }
}
