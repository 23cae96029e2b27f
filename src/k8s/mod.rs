//! Kubernetes side of the tools: the kinds a tool may touch, and clients
//! that act as a run's ServiceAccount through impersonation. The operator's
//! own identity never acts for the model.

pub mod call;
pub mod redact;
pub mod target;
pub mod tools;

use std::collections::HashMap;
use std::sync::Mutex;

use kube::api::{ApiResource, GroupVersionKind};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Top-level fields of a kind a merge patch can change: name and JSON type.
pub type PatchableFields = &'static [(&'static str, &'static str)];

/// Kinds the Kubernetes tools can address (a closed set: the grammar and
/// the argument schemas only offer these).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum TargetKind {
    Deployment,
    StatefulSet,
    ConfigMap,
    Secret,
    Pod,
    Service,
    ServiceAccount,
}

impl TargetKind {
    pub const ALL: [TargetKind; 7] = [
        TargetKind::Deployment,
        TargetKind::StatefulSet,
        TargetKind::ConfigMap,
        TargetKind::Secret,
        TargetKind::Pod,
        TargetKind::Service,
        TargetKind::ServiceAccount,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            TargetKind::Deployment => "Deployment",
            TargetKind::StatefulSet => "StatefulSet",
            TargetKind::ConfigMap => "ConfigMap",
            TargetKind::Secret => "Secret",
            TargetKind::Pod => "Pod",
            TargetKind::Service => "Service",
            TargetKind::ServiceAccount => "ServiceAccount",
        }
    }

    /// Group, version, plural.
    pub fn gvr(self) -> (&'static str, &'static str, &'static str) {
        match self {
            TargetKind::Deployment => ("apps", "v1", "deployments"),
            TargetKind::StatefulSet => ("apps", "v1", "statefulsets"),
            TargetKind::ConfigMap => ("", "v1", "configmaps"),
            TargetKind::Secret => ("", "v1", "secrets"),
            TargetKind::Pod => ("", "v1", "pods"),
            TargetKind::Service => ("", "v1", "services"),
            TargetKind::ServiceAccount => ("", "v1", "serviceaccounts"),
        }
    }

    pub fn api_resource(self) -> ApiResource {
        let (g, v, plural) = self.gvr();
        ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(g, v, self.as_str()), plural)
    }

    /// The top-level fields a merge patch of this kind can change, with
    /// their JSON type, the most often changed first (the grammar lets the
    /// model write them in this order only). `apiVersion`, `kind` and
    /// `status` are not changed by a patch, nor a Secret's `type`.
    pub fn patchable(self) -> PatchableFields {
        match self {
            TargetKind::Deployment | TargetKind::StatefulSet | TargetKind::Pod | TargetKind::Service => {
                &[("spec", "object"), ("metadata", "object")]
            }
            TargetKind::ConfigMap => {
                &[("data", "object"), ("binaryData", "object"), ("immutable", "boolean"), ("metadata", "object")]
            }
            TargetKind::Secret => {
                &[("stringData", "object"), ("data", "object"), ("immutable", "boolean"), ("metadata", "object")]
            }
            TargetKind::ServiceAccount => &[
                ("imagePullSecrets", "array"),
                ("secrets", "array"),
                ("automountServiceAccountToken", "boolean"),
                ("metadata", "object"),
            ],
        }
    }

    /// The kind for an `apiVersion` + `kind` pair, if tools may touch it.
    pub fn from_type(api_version: &str, kind: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| {
            let (g, v, _) = k.gvr();
            let av = if g.is_empty() { v.to_string() } else { format!("{g}/{v}") };
            k.as_str() == kind && av == api_version
        })
    }
}

/// The user name Kubernetes gives a ServiceAccount.
pub fn service_account_user(namespace: &str, name: &str) -> String {
    format!("system:serviceaccount:{namespace}:{name}")
}

/// Builds (and caches) clients impersonating ServiceAccounts.
pub struct Impersonator {
    base: kube::Config,
    cache: Mutex<HashMap<(String, String), kube::Client>>,
}

impl Impersonator {
    pub fn new(base: kube::Config) -> Self {
        Impersonator { base, cache: Mutex::new(HashMap::new()) }
    }

    /// A client acting as `namespace/name`. No groups are requested:
    /// kube-apiserver adds a ServiceAccount's own groups when one is
    /// impersonated, so the operator needs `impersonate` on serviceaccounts
    /// only.
    pub fn client_for(&self, namespace: &str, name: &str) -> Result<kube::Client, kube::Error> {
        let key = (namespace.to_string(), name.to_string());
        if let Some(c) = self.cache.lock().ok().and_then(|c| c.get(&key).cloned()) {
            return Ok(c);
        }
        let mut config = self.base.clone();
        config.auth_info.impersonate = Some(service_account_user(namespace, name));
        config.default_namespace = namespace.to_string();
        let client = kube::Client::try_from(config)?;
        if let Ok(mut c) = self.cache.lock() {
            c.insert(key, client.clone());
        }
        Ok(client)
    }
}
