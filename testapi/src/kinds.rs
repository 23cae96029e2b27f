//! The resource registry: the built-in kinds the project uses, and every
//! kind registered by a `CustomResourceDefinition` ("Discovery API",
//! "Custom Resources" in the Kubernetes documentation).

use serde_json::{Value, json};

/// A printer column of a CRD (`additionalPrinterColumns`).
#[derive(Debug, Clone, PartialEq)]
pub struct PrinterColumn {
    pub name: String,
    pub type_: String,
    pub json_path: String,
    pub description: String,
    pub priority: i64,
}

/// One served resource.
#[derive(Debug, Clone, PartialEq)]
pub struct Kind {
    /// "" for the core group.
    pub group: String,
    pub version: String,
    pub kind: String,
    pub plural: String,
    pub singular: String,
    pub short_names: Vec<String>,
    /// `kubectl get CATEGORY` groups (a CRD's `spec.names.categories`).
    pub categories: Vec<String>,
    pub namespaced: bool,
    /// Has a `/status` subresource.
    pub status: bool,
    /// Has a `/scale` subresource (spec.replicas).
    pub scale: bool,
    /// Has a `/log` subresource (pods).
    pub log: bool,
    pub printer_columns: Vec<PrinterColumn>,
    /// `openAPIV3Schema` of a CRD version, used to validate writes.
    pub schema: Option<Value>,
    /// Set for kinds registered from a CRD (its name).
    pub crd: Option<String>,
    /// A review answered on create and never stored (SelfSubjectReview).
    pub review: bool,
}

impl Kind {
    fn builtin(group: &str, version: &str, kind: &str, plural: &str, namespaced: bool) -> Self {
        Kind {
            group: group.into(),
            version: version.into(),
            kind: kind.into(),
            plural: plural.into(),
            singular: kind.to_lowercase(),
            short_names: vec![],
            categories: vec![],
            namespaced,
            status: false,
            scale: false,
            log: false,
            printer_columns: vec![],
            schema: None,
            crd: None,
            review: false,
        }
    }

    fn short(mut self, names: &[&str]) -> Self {
        self.short_names = names.iter().map(|s| s.to_string()).collect();
        self
    }

    fn with_status(mut self) -> Self {
        self.status = true;
        self
    }

    pub fn api_version(&self) -> String {
        if self.group.is_empty() { self.version.clone() } else { format!("{}/{}", self.group, self.version) }
    }

    /// `plural` or `plural.group`, as in messages and RBAC.
    pub fn resource_name(&self) -> String {
        if self.group.is_empty() { self.plural.clone() } else { format!("{}.{}", self.plural, self.group) }
    }

    fn verbs(&self) -> Value {
        if self.review {
            return json!(["create"]);
        }
        json!(["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"])
    }

    /// Entries of this kind in an `APIResourceList`.
    pub fn discovery(&self) -> Vec<Value> {
        let mut out = vec![json!({
            "name": self.plural,
            "singularName": self.singular,
            "namespaced": self.namespaced,
            "kind": self.kind,
            "verbs": self.verbs(),
            "shortNames": self.short_names,
            "categories": self.categories,
        })];
        if self.status {
            out.push(json!({"name": format!("{}/status", self.plural), "singularName": "", "namespaced": self.namespaced, "kind": self.kind, "verbs": ["get", "patch", "update"]}));
        }
        if self.scale {
            out.push(json!({"name": format!("{}/scale", self.plural), "singularName": "", "namespaced": self.namespaced, "group": "autoscaling", "version": "v1", "kind": "Scale", "verbs": ["get", "patch", "update"]}));
        }
        if self.log {
            out.push(json!({"name": format!("{}/log", self.plural), "singularName": "", "namespaced": self.namespaced, "kind": self.kind, "verbs": ["get"]}));
        }
        out
    }
}

/// All served kinds.
#[derive(Debug, Clone)]
pub struct Registry {
    kinds: Vec<Kind>,
}

impl Default for Registry {
    fn default() -> Self {
        let mut pods = Kind::builtin("", "v1", "Pod", "pods", true).short(&["po"]).with_status();
        pods.log = true;
        let mut deploy =
            Kind::builtin("apps", "v1", "Deployment", "deployments", true).short(&["deploy"]).with_status();
        deploy.scale = true;
        let mut sts = Kind::builtin("apps", "v1", "StatefulSet", "statefulsets", true).short(&["sts"]).with_status();
        sts.scale = true;
        Registry {
            kinds: vec![
                Kind::builtin("", "v1", "Namespace", "namespaces", false).short(&["ns"]).with_status(),
                Kind::builtin("", "v1", "ServiceAccount", "serviceaccounts", true).short(&["sa"]),
                Kind::builtin("", "v1", "ConfigMap", "configmaps", true).short(&["cm"]),
                Kind::builtin("", "v1", "Secret", "secrets", true),
                Kind::builtin("", "v1", "Event", "events", true).short(&["ev"]),
                Kind::builtin("", "v1", "Service", "services", true).short(&["svc"]).with_status(),
                pods,
                deploy,
                sts,
                Kind::builtin("coordination.k8s.io", "v1", "Lease", "leases", true),
                Kind::builtin("events.k8s.io", "v1", "Event", "events", true).short(&["ev"]),
                Kind::builtin(
                    "apiextensions.k8s.io",
                    "v1",
                    "CustomResourceDefinition",
                    "customresourcedefinitions",
                    false,
                )
                .short(&["crd", "crds"])
                .with_status(),
                Kind::builtin("policy", "v1", "PodDisruptionBudget", "poddisruptionbudgets", true)
                    .short(&["pdb"])
                    .with_status(),
                Kind::builtin(
                    "admissionregistration.k8s.io",
                    "v1",
                    "ValidatingAdmissionPolicy",
                    "validatingadmissionpolicies",
                    false,
                )
                .with_status(),
                Kind::builtin(
                    "admissionregistration.k8s.io",
                    "v1",
                    "ValidatingAdmissionPolicyBinding",
                    "validatingadmissionpolicybindings",
                    false,
                ),
                Kind::builtin("rbac.authorization.k8s.io", "v1", "Role", "roles", true),
                Kind::builtin("rbac.authorization.k8s.io", "v1", "RoleBinding", "rolebindings", true),
                Kind::builtin("rbac.authorization.k8s.io", "v1", "ClusterRole", "clusterroles", false),
                Kind::builtin("rbac.authorization.k8s.io", "v1", "ClusterRoleBinding", "clusterrolebindings", false),
                Kind {
                    review: true,
                    ..Kind::builtin("authentication.k8s.io", "v1", "SelfSubjectReview", "selfsubjectreviews", false)
                },
            ],
        }
    }
}

impl Registry {
    pub fn find(&self, group: &str, version: &str, plural: &str) -> Option<&Kind> {
        self.kinds.iter().find(|k| k.group == group && k.version == version && k.plural == plural)
    }

    /// Groups and their versions, in registration order.
    pub fn groups(&self) -> Vec<(String, Vec<String>)> {
        let mut out: Vec<(String, Vec<String>)> = Vec::new();
        for k in &self.kinds {
            match out.iter_mut().find(|(g, _)| *g == k.group) {
                Some((_, vs)) if !vs.contains(&k.version) => vs.push(k.version.clone()),
                Some(_) => {}
                None => out.push((k.group.clone(), vec![k.version.clone()])),
            }
        }
        out
    }

    pub fn in_version<'a>(&'a self, group: &'a str, version: &'a str) -> impl Iterator<Item = &'a Kind> + 'a {
        self.kinds.iter().filter(move |k| k.group == group && k.version == version)
    }

    pub fn all(&self) -> &[Kind] {
        &self.kinds
    }

    /// Register the kinds a CRD serves (replacing an earlier registration).
    pub fn register_crd(&mut self, crd: &Value) -> Result<Vec<Kind>, Vec<String>> {
        let kinds = kinds_of_crd(crd)?;
        let name = crd["metadata"]["name"].as_str().unwrap_or_default().to_string();
        self.kinds.retain(|k| k.crd.as_deref() != Some(name.as_str()));
        self.kinds.extend(kinds.iter().cloned());
        Ok(kinds)
    }

    /// Remove a CRD's kinds; returns them.
    pub fn unregister_crd(&mut self, name: &str) -> Vec<Kind> {
        let (gone, keep): (Vec<Kind>, Vec<Kind>) = self.kinds.drain(..).partition(|k| k.crd.as_deref() == Some(name));
        self.kinds = keep;
        gone
    }
}

/// Validate a CRD and derive its kinds (one per served version).
pub fn kinds_of_crd(crd: &Value) -> Result<Vec<Kind>, Vec<String>> {
    let mut errs = Vec::new();
    let spec = &crd["spec"];
    let s = |v: &Value, what: &str, errs: &mut Vec<String>| -> String {
        match v.as_str() {
            Some(x) if !x.is_empty() => x.to_string(),
            _ => {
                errs.push(format!("{what}: Required value"));
                String::new()
            }
        }
    };
    let group = s(&spec["group"], "spec.group", &mut errs);
    let plural = s(&spec["names"]["plural"], "spec.names.plural", &mut errs);
    let kind = s(&spec["names"]["kind"], "spec.names.kind", &mut errs);
    let scope = s(&spec["scope"], "spec.scope", &mut errs);
    if !scope.is_empty() && scope != "Namespaced" && scope != "Cluster" {
        errs.push(format!("spec.scope: Unsupported value: {scope:?}: supported values: \"Cluster\", \"Namespaced\""));
    }
    let name = crd["metadata"]["name"].as_str().unwrap_or_default();
    if !plural.is_empty() && !group.is_empty() && name != format!("{plural}.{group}") {
        errs.push(format!("metadata.name: Invalid value: {name:?}: must be spec.names.plural+\".\"+spec.group"));
    }
    let versions = spec["versions"].as_array().cloned().unwrap_or_default();
    if versions.is_empty() {
        errs.push("spec.versions: Invalid value: must have exactly one version marked as storage version".into());
    }
    if versions.iter().filter(|v| v["storage"] == true).count() != 1 {
        errs.push("spec.versions: Invalid value: must have exactly one version marked as storage version".into());
    }
    if !errs.is_empty() {
        return Err(errs);
    }
    let singular = spec["names"]["singular"].as_str().map(str::to_string).unwrap_or_else(|| kind.to_lowercase());
    let strings = |v: &Value| -> Vec<String> {
        v.as_array().map(|a| a.iter().filter_map(|x| x.as_str().map(str::to_string)).collect()).unwrap_or_default()
    };
    let short_names = strings(&spec["names"]["shortNames"]);
    let categories = strings(&spec["names"]["categories"]);
    Ok(versions
        .iter()
        .filter(|v| v["served"] != false)
        .map(|v| Kind {
            group: group.clone(),
            version: v["name"].as_str().unwrap_or("v1").to_string(),
            kind: kind.clone(),
            plural: plural.clone(),
            singular: singular.clone(),
            short_names: short_names.clone(),
            categories: categories.clone(),
            namespaced: scope == "Namespaced",
            status: v["subresources"].get("status").is_some(),
            scale: v["subresources"].get("scale").is_some(),
            log: false,
            printer_columns: v["additionalPrinterColumns"]
                .as_array()
                .map(|cols| {
                    cols.iter()
                        .map(|c| PrinterColumn {
                            name: c["name"].as_str().unwrap_or_default().into(),
                            type_: c["type"].as_str().unwrap_or("string").into(),
                            json_path: c["jsonPath"].as_str().unwrap_or_default().into(),
                            description: c["description"].as_str().unwrap_or_default().into(),
                            priority: c["priority"].as_i64().unwrap_or(0),
                        })
                        .collect()
                })
                .unwrap_or_default(),
            schema: v["schema"].get("openAPIV3Schema").cloned(),
            crd: Some(name.to_string()),
            review: false,
        })
        .collect())
}
