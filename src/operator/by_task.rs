//! Which cached children carry each Task's label, kept from the same watch events that fill the
//! store (issue 13). A Task's reconcile found its Jobs, pods and MinerSubmissions by walking every
//! cached one: each reconcile cost grew with the number of Tasks, so the cost of a run grew with
//! its square (at 1,000 Tasks, 16,000 MinerSubmissions walked per reconcile).
//!
//! The index only names candidates: the reader takes each from the store and checks its label
//! there, so an index a moment ahead of or behind the store never yields a wrong child.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, RwLock};

use kube::ResourceExt;
use kube::runtime::watcher::Event;

use super::caches::Kept;
use super::context::object_key;

/// The names of the objects of one kind in the store, by namespace and Task label.
#[derive(Clone, Default)]
pub struct ByTask {
    inner: Arc<RwLock<Index>>,
}

#[derive(Default)]
struct Index {
    /// `namespace/label` → the names of the objects that carry it.
    names: HashMap<Arc<str>, BTreeSet<String>>,
    /// `namespace/name` → the `namespace/label` it was indexed under (a label can change).
    under: HashMap<String, Arc<str>>,
    /// A relist in progress: the index it builds replaces this one when complete.
    relist: Option<Box<Index>>,
}

impl ByTask {
    /// Follows one of the watch's events, before the store applies it.
    pub fn observe<K: Kept>(&self, event: &Event<K>) {
        let mut index = self.inner.write().unwrap_or_else(|poisoned| poisoned.into_inner());
        match event {
            Event::Apply(object) => index.insert(object),
            Event::Delete(object) => index.remove(&object_key(object)),
            Event::Init => index.relist = Some(Box::default()),
            Event::InitApply(object) => index.relist.get_or_insert_default().insert(object),
            Event::InitDone => {
                if let Some(relisted) = index.relist.take() {
                    *index = *relisted;
                }
            }
        }
    }

    /// The names of the objects in `namespace` that carry the label value `label` (a Task's
    /// `workloads::label_value`), in name order.
    pub fn names(&self, namespace: &str, label: &str) -> Vec<String> {
        let index = self.inner.read().unwrap_or_else(|poisoned| poisoned.into_inner());
        let key = format!("{namespace}/{label}");
        index.names.get(key.as_str()).map(|names| names.iter().cloned().collect()).unwrap_or_default()
    }

    /// How many objects are indexed (a relist in progress aside).
    #[cfg(test)]
    fn len(&self) -> usize {
        self.inner.read().unwrap_or_else(|poisoned| poisoned.into_inner()).under.len()
    }
}

impl Index {
    fn insert<K: Kept>(&mut self, object: &K) {
        let key = object_key(object);
        let Some(label) = object.task_label() else {
            self.remove(&key);
            return;
        };
        let under = format!("{}/{label}", object.namespace().unwrap_or_default());
        if self.under.get(&key).is_some_and(|current| **current == *under) {
            return;
        }
        self.remove(&key);
        let under: Arc<str> = match self.names.get_key_value(under.as_str()) {
            Some((shared, _)) => shared.clone(),
            None => under.into(),
        };
        self.names.entry(under.clone()).or_default().insert(object.name_any());
        self.under.insert(key, under);
    }

    fn remove(&mut self, key: &str) {
        let Some(under) = self.under.remove(key) else { return };
        let name = key.split_once('/').map_or(key, |(_, name)| name);
        if let Some(names) = self.names.get_mut(&under) {
            names.remove(name);
            if names.is_empty() {
                self.names.remove(&under);
            }
        }
    }
}

#[cfg(test)]
#[path = "by_task_tests.rs"]
mod tests;
