//! Discovery documents ("Discovery API"): `/version`, `/api`, `/api/v1`,
//! `/apis`, `/apis/<group>`, `/apis/<group>/<version>`, in the legacy
//! (unaggregated) format; clients that ask for aggregated discovery fall
//! back to it.

use serde_json::{Value, json};

use crate::kinds::Registry;

pub fn version() -> Value {
    json!({
        "major": "1", "minor": "35", "gitVersion": "v1.35.0+xct-testapi", "gitCommit": "0000000",
        "gitTreeState": "clean", "buildDate": "2026-01-01T00:00:00Z", "goVersion": "go1.25",
        "compiler": "gc", "platform": "linux/amd64",
    })
}

pub fn core_versions(addr: &str) -> Value {
    json!({"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": addr}]})
}

fn group_doc(name: &str, versions: &[String]) -> Value {
    let vs: Vec<Value> =
        versions.iter().map(|v| json!({"groupVersion": format!("{name}/{v}"), "version": v})).collect();
    json!({"kind": "APIGroup", "apiVersion": "v1", "name": name, "versions": vs.clone(), "preferredVersion": vs[0]})
}

pub fn groups(reg: &Registry) -> Value {
    let groups: Vec<Value> =
        reg.groups().iter().filter(|(g, _)| !g.is_empty()).map(|(g, vs)| group_doc(g, vs)).collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

pub fn group(reg: &Registry, name: &str) -> Option<Value> {
    reg.groups().iter().find(|(g, _)| g == name).map(|(g, vs)| group_doc(g, vs))
}

pub fn resources(reg: &Registry, group: &str, version: &str) -> Option<Value> {
    let list: Vec<Value> = reg.in_version(group, version).flat_map(|k| k.discovery()).collect();
    if list.is_empty() {
        return None;
    }
    let gv = if group.is_empty() { version.to_string() } else { format!("{group}/{version}") };
    Some(json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": list}))
}
