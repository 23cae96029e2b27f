//! The object store: one global resourceVersion counter, an event log for
//! watch replay, finalizers, namespaces, CRD registration, subresources.
//!
//! Semantics follow "Kubernetes API Concepts" (resource versions, watch,
//! dry run, generation), "Finalizers" and "Namespaces" in the Kubernetes
//! documentation. Everything happens under one lock, so every write is
//! atomic and the event log is totally ordered by resourceVersion.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use serde_json::{Map, Value, json};
use tokio::sync::broadcast;

use crate::error::ApiError;
use crate::kinds::{Kind, Registry};
use crate::select::{FieldSelector, LabelSelector};

mod state;

use state::State;

/// Events kept for watch replay; an older resourceVersion gets 410 Gone.
pub const LOG_CAPACITY: usize = 50_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    Added,
    Modified,
    Deleted,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
        }
    }
}

/// One change, as watchers see it.
#[derive(Debug, Clone)]
pub struct Event {
    pub rv: u64,
    pub type_: EventType,
    pub group: String,
    pub plural: String,
    pub namespace: String,
    pub object: Value,
}

/// How a write is done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriteOpts {
    pub sub: Sub,
    pub dry_run: bool,
}

/// Where a watch starts: the events to replay, a receiver for later ones,
/// and the resourceVersion it starts from.
pub struct WatchStart {
    pub replay: Vec<Arc<Event>>,
    pub rx: broadcast::Receiver<Arc<Event>>,
    pub rv: u64,
}

/// Which part of an object a write may change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sub {
    /// The main endpoint: everything but status (when status is a subresource).
    Main,
    /// `/status`: status only.
    Status,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Key {
    group: String,
    plural: String,
    namespace: String,
    name: String,
}

impl Key {
    fn new(kind: &Kind, namespace: &str, name: &str) -> Self {
        Key { group: kind.group.clone(), plural: kind.plural.clone(), namespace: namespace.into(), name: name.into() }
    }
}

/// A page of a list.
#[derive(Debug, Clone)]
pub struct ListPage {
    pub items: Vec<Value>,
    pub resource_version: u64,
    pub continue_token: Option<String>,
    pub remaining: usize,
}

/// The whole in-memory cluster state.
pub struct Store {
    state: Mutex<State>,
    tx: broadcast::Sender<Arc<Event>>,
}

impl Default for Store {
    fn default() -> Self {
        let (tx, _) = broadcast::channel(LOG_CAPACITY);
        Store {
            state: Mutex::new(State {
                rv: 1,
                uids: 0,
                objects: BTreeMap::new(),
                log: VecDeque::new(),
                floor: 0,
                registry: Registry::default(),
            }),
            tx,
        }
    }
}

fn now() -> String {
    chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

fn meta(obj: &Value, field: &str) -> Option<String> {
    obj["metadata"][field].as_str().map(str::to_string)
}

fn meta_mut(obj: &mut Value) -> &mut Map<String, Value> {
    if !obj["metadata"].is_object() {
        obj["metadata"] = json!({});
    }
    obj["metadata"].as_object_mut().expect("metadata is an object")
}

fn without(obj: &Value, keys: &[&str]) -> Value {
    let mut o = obj.clone();
    if let Some(m) = o.as_object_mut() {
        for k in keys {
            m.remove(*k);
        }
    }
    o
}

/// Equal but for the fields the server maintains.
fn same_object(a: &Value, b: &Value) -> bool {
    let strip = |v: &Value| {
        let mut v = v.clone();
        if let Some(m) = v["metadata"].as_object_mut() {
            m.remove("resourceVersion");
            m.remove("managedFields");
        }
        v
    };
    strip(a) == strip(b)
}

impl Store {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn registry(&self) -> Registry {
        self.lock().registry.clone()
    }

    pub fn find_kind(&self, group: &str, version: &str, plural: &str) -> Option<Kind> {
        self.lock().registry.find(group, version, plural).cloned()
    }

    pub fn resource_version(&self) -> u64 {
        self.lock().rv
    }

    /// Forget the event log: any watch from an earlier resourceVersion gets 410.
    pub fn compact(&self) {
        let mut st = self.lock();
        st.log.clear();
        st.floor = st.rv;
    }

    pub fn get(&self, kind: &Kind, ns: &str, name: &str) -> Result<Value, ApiError> {
        let st = self.lock();
        st.objects
            .get(&Key::new(kind, ns, name))
            .map(|o| present(kind, o))
            .ok_or_else(|| ApiError::not_found(&kind.resource_name(), name))
    }

    pub fn list(
        &self,
        kind: &Kind,
        ns: Option<&str>,
        labels: &LabelSelector,
        fields: &FieldSelector,
        limit: Option<usize>,
        continue_after: Option<&str>,
    ) -> Result<ListPage, ApiError> {
        let st = self.lock();
        let matching: Vec<(&Key, &Value)> = st
            .objects
            .iter()
            .filter(|(k, o)| {
                k.group == kind.group
                    && k.plural == kind.plural
                    && ns.is_none_or(|n| k.namespace == n)
                    && labels.matches(o)
                    && fields.matches(o)
            })
            .filter(|(k, _)| continue_after.is_none_or(|c| format!("{}/{}", k.namespace, k.name).as_str() > c))
            .collect();
        let take = limit.filter(|l| *l > 0).unwrap_or(usize::MAX).min(matching.len());
        let remaining = matching.len() - take;
        let continue_token =
            (remaining > 0).then(|| format!("{}/{}", matching[take - 1].0.namespace, matching[take - 1].0.name));
        Ok(ListPage {
            items: matching[..take].iter().map(|(_, o)| present(kind, o)).collect(),
            resource_version: st.rv,
            continue_token,
            remaining,
        })
    }

    /// Create an object. `ns` is the request's namespace ("" for cluster scope).
    pub fn create(&self, kind: &Kind, ns: &str, mut obj: Value, dry_run: bool) -> Result<Value, ApiError> {
        let mut st = self.lock();
        if !obj.is_object() {
            return Err(ApiError::bad_request("the request body must be a JSON object"));
        }
        let body_ns = meta(&obj, "namespace").unwrap_or_default();
        if kind.namespaced && !body_ns.is_empty() && body_ns != ns {
            return Err(ApiError::bad_request(
                "the namespace of the provided object does not match the namespace sent on the request",
            ));
        }
        let name = match (meta(&obj, "name"), meta(&obj, "generateName")) {
            (Some(n), _) if !n.is_empty() => n,
            (_, Some(prefix)) if !prefix.is_empty() => {
                st.uids += 1;
                format!("{prefix}{:05x}", st.uids)
            }
            _ => {
                return Err(ApiError::invalid(
                    &kind.kind,
                    "",
                    vec!["metadata.name: Required value: name or generateName is required".into()],
                ));
            }
        };
        if kind.namespaced {
            match st.objects.get(&Key {
                group: String::new(),
                plural: "namespaces".into(),
                namespace: String::new(),
                name: ns.into(),
            }) {
                None => return Err(ApiError::not_found("namespaces", ns)),
                Some(n) if n["metadata"].get("deletionTimestamp").is_some() => {
                    return Err(ApiError::forbidden(format!(
                        "{} \"{name}\" is forbidden: unable to create new content in namespace {ns} because it is being terminated",
                        kind.resource_name()
                    )));
                }
                Some(_) => {}
            }
        }
        let key = Key::new(kind, ns, &name);
        if st.objects.contains_key(&key) {
            return Err(ApiError::already_exists(&kind.resource_name(), &name));
        }
        st.uids += 1;
        let uid = format!("00000000-0000-4000-8000-{:012x}", st.uids);
        {
            let m = meta_mut(&mut obj);
            m.insert("name".into(), json!(name));
            if kind.namespaced {
                m.insert("namespace".into(), json!(ns));
            } else {
                m.remove("namespace");
            }
            m.insert("uid".into(), json!(uid));
            m.insert("creationTimestamp".into(), json!(now()));
            m.insert("generation".into(), json!(1));
            m.remove("resourceVersion");
            m.remove("deletionTimestamp");
        }
        if kind.status
            && let Some(m) = obj.as_object_mut()
        {
            m.remove("status");
        }
        if kind.plural == "namespaces" && kind.group.is_empty() {
            obj["status"] = json!({"phase": "Active"});
        }
        st.commit(&self.tx, kind, key, None, obj, dry_run)
    }

    /// Update through `f`, which gets the current object and returns the
    /// proposed one. A proposed `metadata.resourceVersion` must match the
    /// current one (optimistic concurrency). `create` is used when the object
    /// does not exist (server-side apply); without it that is a 404.
    pub fn update(
        &self,
        kind: &Kind,
        ns: &str,
        name: &str,
        opts: WriteOpts,
        f: impl FnOnce(&Value) -> Result<Value, ApiError>,
        create: Option<Value>,
    ) -> Result<Value, ApiError> {
        let WriteOpts { sub, dry_run } = opts;
        let key = Key::new(kind, ns, name);
        let mut st = self.lock();
        let Some(current) = st.objects.get(&key).cloned() else {
            drop(st);
            return match create {
                Some(obj) => self.create(kind, ns, obj, dry_run),
                None => Err(ApiError::not_found(&kind.resource_name(), name)),
            };
        };
        // Computed under the lock: the patch applies to exactly this version.
        let proposed = f(&present(kind, &current))?;
        match meta(&proposed, "resourceVersion") {
            Some(rv) if !rv.is_empty() && Some(&rv) != meta(&current, "resourceVersion").as_ref() => {
                return Err(ApiError::conflict(&kind.resource_name(), name));
            }
            _ => {}
        }
        if !proposed.is_object() {
            return Err(ApiError::bad_request("the request body must be a JSON object"));
        }
        if meta(&proposed, "name").is_some_and(|n| n != name) {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({}) does not match the name on the URL ({name})",
                meta(&proposed, "name").unwrap_or_default()
            )));
        }
        let mut new = match sub {
            Sub::Main => {
                let mut n = proposed;
                if kind.status {
                    match current.get("status") {
                        Some(s) => n["status"] = s.clone(),
                        None => {
                            if let Some(m) = n.as_object_mut() {
                                m.remove("status");
                            }
                        }
                    }
                }
                n
            }
            Sub::Status => {
                let mut n = current.clone();
                match proposed.get("status") {
                    Some(s) => n["status"] = s.clone(),
                    None => {
                        if let Some(m) = n.as_object_mut() {
                            m.remove("status");
                        }
                    }
                }
                n
            }
        };
        {
            let cur_meta = current["metadata"].clone();
            let m = meta_mut(&mut new);
            for keep in [
                "name",
                "namespace",
                "uid",
                "creationTimestamp",
                "generation",
                "deletionTimestamp",
                "deletionGracePeriodSeconds",
            ] {
                match cur_meta.get(keep) {
                    Some(v) => m.insert(keep.into(), v.clone()),
                    None => m.remove(keep),
                };
            }
        }
        st.commit(&self.tx, kind, key, Some(&current), new, dry_run)
    }

    /// Delete, honouring finalizers. Returns the object as deleted (or as
    /// marked for deletion).
    pub fn delete(
        &self,
        kind: &Kind,
        ns: &str,
        name: &str,
        preconditions: &Value,
        dry_run: bool,
    ) -> Result<Value, ApiError> {
        let mut st = self.lock();
        let key = Key::new(kind, ns, name);
        let current = st.objects.get(&key).cloned().ok_or_else(|| ApiError::not_found(&kind.resource_name(), name))?;
        if let Some(rv) = preconditions["resourceVersion"].as_str()
            && Some(rv.to_string()) != meta(&current, "resourceVersion")
        {
            return Err(ApiError::conflict(&kind.resource_name(), name));
        }
        if let Some(uid) = preconditions["uid"].as_str()
            && Some(uid.to_string()) != meta(&current, "uid")
        {
            return Err(ApiError::conflict(&kind.resource_name(), name));
        }
        st.delete_locked(&self.tx, kind, key, current, dry_run)
    }

    /// Events after `from` for one resource, and a receiver for later ones.
    /// `None` for `from` means "from now".
    pub fn watch_from(&self, kind: &Kind, from: Option<u64>) -> Result<WatchStart, ApiError> {
        let st = self.lock();
        let rx = self.tx.subscribe();
        let from = from.unwrap_or(st.rv);
        if from < st.floor {
            return Err(ApiError::gone(format!("too old resource version: {from} ({})", st.floor)));
        }
        let replay = st
            .log
            .iter()
            .filter(|e| e.rv > from && e.group == kind.group && e.plural == kind.plural)
            .cloned()
            .collect();
        Ok(WatchStart { replay, rx, rv: from })
    }
}

/// The object as served for `kind`'s version.
fn present(kind: &Kind, obj: &Value) -> Value {
    let mut o = obj.clone();
    o["apiVersion"] = json!(kind.api_version());
    o["kind"] = json!(kind.kind);
    o
}
