//! Discovery documents ("Discovery API"): `/version`, `/api`, `/api/v1`,
//! `/apis`, `/apis/<group>`, `/apis/<group>/<version>`, in the legacy
//! (unaggregated) format; clients that ask for aggregated discovery fall
//! back to it. A minimal OpenAPI v3 (`/openapi/v3`): one PATCH operation per
//! kind that declares the `fieldValidation` parameter, which is what kubectl
//! looks for before leaving validation to the server; no schemas.

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

fn gv_path(group: &str, version: &str) -> String {
    if group.is_empty() { format!("api/{version}") } else { format!("apis/{group}/{version}") }
}

/// `/openapi/v3`: where each group-version's document is.
pub fn openapi_root(reg: &Registry) -> Value {
    let mut paths = serde_json::Map::new();
    for (g, vs) in reg.groups() {
        for v in vs {
            let p = gv_path(&g, &v);
            paths.insert(p.clone(), json!({"serverRelativeURL": format!("/openapi/v3/{p}?hash=0")}));
        }
    }
    json!({"paths": paths})
}

/// `/openapi/v3/<gv>`: PATCH operations with their GVK and parameters.
pub fn openapi_group_version(reg: &Registry, group: &str, version: &str) -> Option<Value> {
    let mut paths = serde_json::Map::new();
    for k in reg.in_version(group, version) {
        let base = format!("/{}", gv_path(group, version));
        let path = if k.namespaced {
            format!("{base}/namespaces/{{namespace}}/{}/{{name}}", k.plural)
        } else {
            format!("{base}/{}/{{name}}", k.plural)
        };
        let params: Vec<Value> = ["dryRun", "fieldManager", "fieldValidation", "force"]
            .iter()
            .map(|n| json!({"name": n, "in": "query", "schema": {"type": "string", "uniqueItems": true}}))
            .collect();
        paths.insert(
            path,
            json!({"patch": {
                "x-kubernetes-group-version-kind": {"group": group, "version": version, "kind": k.kind},
                "x-kubernetes-action": "patch",
                "parameters": params,
                "responses": {"200": {"description": "OK"}},
            }}),
        );
    }
    if paths.is_empty() {
        return None;
    }
    Some(json!({"openapi": "3.0.0", "info": {"title": "xct-testapi", "version": version}, "paths": paths}))
}
