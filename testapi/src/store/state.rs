//! The write path under the store's lock: admission, no-op detection,
//! generation, resourceVersion, events, finalizers, namespace and CRD
//! side effects.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use serde_json::{Value, json};
use tokio::sync::broadcast;

use super::{Event, EventType, Key, LOG_CAPACITY, meta_mut, now, present, same_object, without};
use crate::error::ApiError;
use crate::kinds::{Kind, Registry};
use crate::validate;

pub(super) struct State {
    pub(super) rv: u64,
    pub(super) uids: u64,
    pub(super) objects: BTreeMap<Key, Value>,
    pub(super) log: VecDeque<Arc<Event>>,
    /// Watches from a resourceVersion below this get 410 Gone.
    pub(super) floor: u64,
    pub(super) registry: Registry,
}

impl State {
    fn emit(&mut self, tx: &broadcast::Sender<Arc<Event>>, type_: EventType, key: &Key, object: Value) {
        let e = Arc::new(Event {
            rv: self.rv,
            type_,
            group: key.group.clone(),
            plural: key.plural.clone(),
            namespace: key.namespace.clone(),
            object,
        });
        self.log.push_back(e.clone());
        while self.log.len() > LOG_CAPACITY {
            if let Some(old) = self.log.pop_front() {
                self.floor = old.rv;
            }
        }
        let _ = tx.send(e);
    }

    /// Admission, no-op detection, generation, resourceVersion, events.
    pub(super) fn commit(
        &mut self,
        tx: &broadcast::Sender<Arc<Event>>,
        kind: &Kind,
        key: Key,
        old: Option<&Value>,
        mut new: Value,
        dry_run: bool,
    ) -> Result<Value, ApiError> {
        new["apiVersion"] = json!(kind.api_version());
        new["kind"] = json!(kind.kind);
        let mut causes: Vec<String> = validate::check_name(&key.name).into_iter().collect();
        causes.extend(validate::check_labels(&new));
        causes.extend(validate::check_containers(&kind.group, &kind.kind, &new));
        if let Some(schema) = &kind.schema {
            causes.extend(validate::check_schema(schema, &mut new));
        }
        if kind.plural == "customresourcedefinitions"
            && let Err(errs) = crate::kinds::kinds_of_crd(&new)
        {
            causes.extend(errs);
        }
        if !causes.is_empty() {
            return Err(ApiError::invalid(&kind.kind, &key.name, causes));
        }
        if let Some(old) = old {
            let spec_keys: &[&str] = if kind.status { &["metadata", "status"] } else { &["metadata"] };
            let generation = old["metadata"]["generation"].as_i64().unwrap_or(1);
            let changed = without(old, spec_keys) != without(&new, spec_keys);
            meta_mut(&mut new).insert("generation".into(), json!(if changed { generation + 1 } else { generation }));
        }
        if kind.scale && kind.crd.is_none() {
            let replicas = new["spec"]["replicas"].as_i64().unwrap_or(1);
            let generation = new["metadata"]["generation"].clone();
            new["status"] = json!({"observedGeneration": generation, "replicas": replicas, "readyReplicas": replicas, "availableReplicas": replicas, "updatedReplicas": replicas});
        }
        if let Some(old) = old {
            if same_object(old, &new) {
                return Ok(present(kind, old));
            }
            let terminating = new["metadata"].get("deletionTimestamp").is_some();
            let no_finalizers = new["metadata"]["finalizers"].as_array().is_none_or(|f| f.is_empty());
            if terminating && no_finalizers {
                return self.remove(tx, kind, key, new, dry_run);
            }
        }
        if dry_run {
            if old.is_none() {
                meta_mut(&mut new).remove("resourceVersion");
            }
            return Ok(new);
        }
        self.rv += 1;
        meta_mut(&mut new).insert("resourceVersion".into(), json!(self.rv.to_string()));
        if kind.plural == "customresourcedefinitions" {
            self.apply_crd(tx, &mut new);
        }
        self.objects.insert(key.clone(), new.clone());
        self.emit(tx, if old.is_some() { EventType::Modified } else { EventType::Added }, &key, new.clone());
        Ok(new)
    }

    fn apply_crd(&mut self, _tx: &broadcast::Sender<Arc<Event>>, crd: &mut Value) {
        if self.registry.register_crd(crd).is_ok() {
            let names = crd["spec"]["names"].clone();
            crd["status"] = json!({
                "acceptedNames": names,
                "storedVersions": crd["spec"]["versions"].as_array().map(|vs| vs.iter().filter(|v| v["storage"] == true).map(|v| v["name"].clone()).collect::<Vec<_>>()).unwrap_or_default(),
                "conditions": [
                    {"type": "NamesAccepted", "status": "True", "reason": "NoConflicts", "message": "no conflicts found", "lastTransitionTime": now()},
                    {"type": "Established", "status": "True", "reason": "InitialNamesAccepted", "message": "the initial names have been accepted", "lastTransitionTime": now()},
                ],
            });
        }
    }

    pub(super) fn delete_locked(
        &mut self,
        tx: &broadcast::Sender<Arc<Event>>,
        kind: &Kind,
        key: Key,
        current: Value,
        dry_run: bool,
    ) -> Result<Value, ApiError> {
        let has_finalizers = current["metadata"]["finalizers"].as_array().is_some_and(|f| !f.is_empty());
        let is_namespace = kind.group.is_empty() && kind.plural == "namespaces";
        if has_finalizers || is_namespace {
            if current["metadata"].get("deletionTimestamp").is_some() {
                return Ok(present(kind, &current));
            }
            let mut marked = current.clone();
            meta_mut(&mut marked).insert("deletionTimestamp".into(), json!(now()));
            meta_mut(&mut marked).insert("deletionGracePeriodSeconds".into(), json!(0));
            if is_namespace {
                marked["status"] = json!({"phase": "Terminating"});
            }
            if dry_run {
                return Ok(present(kind, &marked));
            }
            self.rv += 1;
            meta_mut(&mut marked).insert("resourceVersion".into(), json!(self.rv.to_string()));
            self.objects.insert(key.clone(), marked.clone());
            self.emit(tx, EventType::Modified, &key, marked.clone());
            if is_namespace {
                self.empty_namespace(tx, &key.name);
            }
            return Ok(present(kind, &marked));
        }
        self.remove(tx, kind, key, current, dry_run)
    }

    fn remove(
        &mut self,
        tx: &broadcast::Sender<Arc<Event>>,
        kind: &Kind,
        key: Key,
        mut obj: Value,
        dry_run: bool,
    ) -> Result<Value, ApiError> {
        if dry_run {
            return Ok(present(kind, &obj));
        }
        self.rv += 1;
        meta_mut(&mut obj).insert("resourceVersion".into(), json!(self.rv.to_string()));
        self.objects.remove(&key);
        self.emit(tx, EventType::Deleted, &key, present(kind, &obj));
        if kind.plural == "customresourcedefinitions" {
            let gone = self.registry.unregister_crd(&key.name);
            if let Some(k) = gone.first() {
                let keys: Vec<Key> =
                    self.objects.keys().filter(|o| o.group == k.group && o.plural == k.plural).cloned().collect();
                for ok in keys {
                    if let Some(o) = self.objects.get(&ok).cloned() {
                        let _ = self.remove(tx, k, ok, o, false);
                    }
                }
            }
        }
        if !key.namespace.is_empty() {
            self.reap_namespace(tx, &key.namespace);
        }
        Ok(present(kind, &obj))
    }

    /// Namespace deletion: delete everything in it (finalizers honoured).
    fn empty_namespace(&mut self, tx: &broadcast::Sender<Arc<Event>>, ns: &str) {
        let keys: Vec<Key> = self.objects.keys().filter(|k| k.namespace == ns).cloned().collect();
        for key in keys {
            let kind = self.registry.all().iter().find(|k| k.group == key.group && k.plural == key.plural).cloned();
            if let (Some(kind), Some(obj)) = (kind, self.objects.get(&key).cloned()) {
                let _ = self.delete_locked(tx, &kind, key, obj, false);
            }
        }
        self.reap_namespace(tx, ns);
    }

    /// A terminating namespace goes once it is empty.
    fn reap_namespace(&mut self, tx: &broadcast::Sender<Arc<Event>>, ns: &str) {
        let key = Key { group: String::new(), plural: "namespaces".into(), namespace: String::new(), name: ns.into() };
        let terminating = self.objects.get(&key).is_some_and(|n| n["metadata"].get("deletionTimestamp").is_some());
        let kind = self.registry.find("", "v1", "namespaces").cloned();
        if terminating
            && !self.objects.keys().any(|k| k.namespace == ns)
            && let (Some(obj), Some(kind)) = (self.objects.get(&key).cloned(), kind)
        {
            let _ = self.remove(tx, &kind, key, obj, false);
        }
    }
}
