//! RBAC enforced from the stored Roles, ClusterRoles and bindings, as
//! kube-apiserver's RBAC authorizer decides ("Using RBAC Authorization"):
//! - a ClusterRoleBinding grants its ClusterRole's rules everywhere; a
//!   RoleBinding grants its Role's or ClusterRole's rules in its own
//!   namespace only;
//! - subjects: `User` by name, `Group` by the caller's groups,
//!   `ServiceAccount` as `system:serviceaccount:<namespace>:<name>`;
//! - a rule matches on verb, API group, resource or `resource/subresource`
//!   (`*` and `*/subresource` as wildcards, as `ResourceMatches` does) and,
//!   when it lists `resourceNames`, on the request's name (so a list,
//!   watch or create, which have no name, never matches such a rule);
//! - a ClusterRole with an `aggregationRule` has the rules of every
//!   ClusterRole its selectors match (what the aggregation controller
//!   writes into it on a real cluster, computed here at decision time);
//! - the user `admin` (the server's no-token user) and the group
//!   `system:masters` are allowed everything, as cluster admins are;
//! - every authenticated caller may create SelfSubjectReviews
//!   (`system:basic-user`).
//!
//! Decisions read the store at request time, so RBAC applied with kubectl
//! or a client takes effect at once (there is no cache to go stale).
//! Non-resource requests (discovery) are not authorized here: every
//! cluster grants them to authenticated users (`system:discovery`).

use std::collections::BTreeSet;
use std::sync::Arc;

use serde_json::Value;

use crate::audit::Attributes;
use crate::select::{FieldSelector, LabelSelector};
use crate::store::Store;

const RBAC_GROUP: &str = "rbac.authorization.k8s.io";
/// The server's user when a request carries no token (see `http`).
pub const ADMIN_USER: &str = "admin";
const MASTERS_GROUP: &str = "system:masters";
/// How deep aggregated ClusterRoles are followed (an aggregated role whose
/// selector matches another aggregated role); a cycle stops here.
const MAX_AGGREGATION_DEPTH: usize = 4;

/// The RBAC authorizer over a server's store.
pub struct Rbac {
    store: Arc<Store>,
}

impl Rbac {
    pub fn new(store: Arc<Store>) -> Self {
        Rbac { store }
    }

    /// Whether `a` is allowed.
    pub fn allows(&self, a: &Attributes) -> bool {
        if a.user == ADMIN_USER || a.groups.iter().any(|g| g == MASTERS_GROUP) {
            return true;
        }
        if a.group == "authentication.k8s.io" && a.resource == "selfsubjectreviews" && a.verb == "create" {
            return true;
        }
        let cluster_roles = self.objects("clusterroles", None);
        // Roles are only bound by RoleBindings of the request's namespace.
        let roles = if a.namespace.is_empty() { vec![] } else { self.objects("roles", Some(&a.namespace)) };
        let role_rules = |kind: &str, name: &str| -> Vec<Value> {
            match kind {
                "ClusterRole" => rules_of_cluster_role(&cluster_roles, name, 0),
                "Role" => roles.iter().find(|r| r["metadata"]["name"] == name).map(rules).unwrap_or_default(),
                _ => vec![],
            }
        };
        let granted = |binding: &Value| -> bool {
            binds(binding, a)
                && role_rules(
                    binding["roleRef"]["kind"].as_str().unwrap_or_default(),
                    binding["roleRef"]["name"].as_str().unwrap_or_default(),
                )
                .iter()
                .any(|r| rule_allows(r, a))
        };
        if self.objects("clusterrolebindings", None).iter().any(granted) {
            return true;
        }
        !a.namespace.is_empty() && self.objects("rolebindings", Some(&a.namespace)).iter().any(granted)
    }

    fn objects(&self, plural: &str, namespace: Option<&str>) -> Vec<Value> {
        let Some(kind) = self.store.find_kind(RBAC_GROUP, "v1", plural) else { return vec![] };
        self.store
            .list(&kind, namespace, &LabelSelector::default(), &FieldSelector::default(), None, None)
            .map(|page| page.items)
            .unwrap_or_default()
    }
}

fn rules(role: &Value) -> Vec<Value> {
    role["rules"].as_array().cloned().unwrap_or_default()
}

/// A ClusterRole's rules; an aggregated one's are those of the ClusterRoles
/// its selectors match.
fn rules_of_cluster_role(all: &[Value], name: &str, depth: usize) -> Vec<Value> {
    let Some(role) = all.iter().find(|r| r["metadata"]["name"] == name) else { return vec![] };
    let Some(selectors) = role["aggregationRule"]["clusterRoleSelectors"].as_array() else { return rules(role) };
    if depth >= MAX_AGGREGATION_DEPTH {
        return vec![];
    }
    let selectors: Vec<LabelSelector> = selectors.iter().filter_map(LabelSelector::from_object).collect();
    all.iter()
        .filter(|r| r["metadata"]["name"] != name && selectors.iter().any(|s| s.matches(r)))
        .flat_map(|r| rules_of_cluster_role(all, r["metadata"]["name"].as_str().unwrap_or_default(), depth + 1))
        .collect()
}

/// Whether one of the binding's subjects is the caller.
fn binds(binding: &Value, a: &Attributes) -> bool {
    binding["subjects"].as_array().into_iter().flatten().any(|s| {
        let name = s["name"].as_str().unwrap_or_default();
        match s["kind"].as_str().unwrap_or_default() {
            "User" => a.user == name,
            "Group" => a.groups.iter().any(|g| g == name),
            "ServiceAccount" => {
                let ns = s["namespace"].as_str().unwrap_or_default();
                !ns.is_empty() && a.user == format!("system:serviceaccount:{ns}:{name}")
            }
            _ => false,
        }
    })
}

fn strings(v: &Value) -> BTreeSet<&str> {
    v.as_array().into_iter().flatten().filter_map(Value::as_str).collect()
}

fn rule_allows(rule: &Value, a: &Attributes) -> bool {
    let verbs = strings(&rule["verbs"]);
    let groups = strings(&rule["apiGroups"]);
    let names = strings(&rule["resourceNames"]);
    (verbs.contains("*") || verbs.contains(a.verb.as_str()))
        && (groups.contains("*") || groups.contains(a.group.as_str()))
        && resource_matches(&strings(&rule["resources"]), &a.resource, &a.subresource)
        && (names.is_empty() || (!a.name.is_empty() && names.contains(a.name.as_str())))
}

/// As kube-apiserver's `ResourceMatches`: `*`, the exact `resource` or
/// `resource/subresource`, or `*/subresource`.
fn resource_matches(resources: &BTreeSet<&str>, resource: &str, subresource: &str) -> bool {
    let combined = if subresource.is_empty() { resource.to_string() } else { format!("{resource}/{subresource}") };
    resources
        .iter()
        .any(|r| *r == "*" || *r == combined || (!subresource.is_empty() && r.strip_prefix("*/") == Some(subresource)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn attrs(user: &str, verb: &str, group: &str, resource: &str, sub: &str, ns: &str, name: &str) -> Attributes {
        Attributes {
            user: user.into(),
            groups: vec!["system:authenticated".into()],
            verb: verb.into(),
            group: group.into(),
            resource: resource.into(),
            subresource: sub.into(),
            namespace: ns.into(),
            name: name.into(),
        }
    }

    #[test]
    fn resource_wildcards_follow_resource_matches() {
        let set = |v: &[&'static str]| v.iter().copied().collect::<BTreeSet<&str>>();
        assert!(resource_matches(&set(&["deployments/scale"]), "deployments", "scale"));
        assert!(!resource_matches(&set(&["deployments"]), "deployments", "scale"), "a subresource is its own grant");
        assert!(!resource_matches(&set(&["deployments/scale"]), "deployments", ""));
        assert!(resource_matches(&set(&["*/scale"]), "statefulsets", "scale"));
        assert!(!resource_matches(&set(&["*/scale"]), "statefulsets", ""));
        assert!(!resource_matches(&set(&["deployments/*"]), "deployments", "scale"), "not a wildcard upstream");
        assert!(resource_matches(&set(&["*"]), "pods", "log"));
    }

    #[test]
    fn resource_names_never_match_a_request_without_a_name() {
        let rule =
            json!({"verbs": ["get", "list"], "apiGroups": [""], "resources": ["configmaps"], "resourceNames": ["a"]});
        assert!(rule_allows(&rule, &attrs("u", "get", "", "configmaps", "", "ns", "a")));
        assert!(!rule_allows(&rule, &attrs("u", "get", "", "configmaps", "", "ns", "b")));
        assert!(!rule_allows(&rule, &attrs("u", "list", "", "configmaps", "", "ns", "")));
    }

    #[test]
    fn service_account_subjects_need_their_namespace() {
        let b = json!({"subjects": [{"kind": "ServiceAccount", "name": "op", "namespace": "sys"}]});
        assert!(binds(&b, &attrs("system:serviceaccount:sys:op", "get", "", "pods", "", "", "")));
        assert!(!binds(&b, &attrs("system:serviceaccount:other:op", "get", "", "pods", "", "", "")));
        assert!(!binds(&b, &attrs("op", "get", "", "pods", "", "", "")));
        let g = json!({"subjects": [{"kind": "Group", "name": "system:authenticated"}]});
        assert!(binds(&g, &attrs("anyone", "get", "", "pods", "", "", "")));
    }

    #[test]
    fn aggregation_collects_the_selected_roles_and_stops_at_cycles() {
        let all = vec![
            json!({"metadata": {"name": "edit"}, "aggregationRule": {"clusterRoleSelectors": [{"matchLabels": {"agg": "edit"}}]}}),
            json!({"metadata": {"name": "runs", "labels": {"agg": "edit"}}, "rules": [{"verbs": ["create"], "apiGroups": ["xct.dev"], "resources": ["xctruns"]}]}),
            json!({"metadata": {"name": "other"}, "rules": [{"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]}]}),
            json!({"metadata": {"name": "loop", "labels": {"agg": "loop"}}, "aggregationRule": {"clusterRoleSelectors": [{"matchLabels": {"agg": "loop"}}]}}),
            json!({"metadata": {"name": "loop2", "labels": {"agg": "loop"}}, "aggregationRule": {"clusterRoleSelectors": [{"matchLabels": {"agg": "loop"}}]}}),
        ];
        let r = rules_of_cluster_role(&all, "edit", 0);
        assert_eq!(r.len(), 1, "only the labelled role's rule: {r:?}");
        assert!(rule_allows(&r[0], &attrs("u", "create", "xct.dev", "xctruns", "", "ns", "")));
        assert!(rules_of_cluster_role(&all, "loop", 0).is_empty());
        let bad = json!({"matchExpressions": [{"key": "a", "operator": "Unknown"}]});
        assert!(LabelSelector::from_object(&bad).is_none(), "an unknown operator selects nothing");
    }
}
