//! The order in which a controller's objects are reconciled (issue 13). Every change that would
//! trigger a reconcile (of the object itself or of a child it owns) puts the object in its
//! controller's line, first come, first served, and kube-runtime is handed the head of the line
//! only while fewer than [`Line::capacity`] of the controller's objects are with it. kube-runtime
//! alone could not be trusted with the order or the numbers:
//!
//! - with its own bound on reconciles at once, it picks the next waiting object by a hash set's
//!   iteration order, and busy objects kept winning (300 Tasks: 52 had no status for 20 minutes);
//! - without it, every triggered object's reconcile is spawned at once, and kube-runtime polls
//!   every one of them and scans its queued changes on each wake: at 1,000 Tasks, 17,000 waiting
//!   reconciles took two thirds of the operator's CPU.
//!
//! An object handed over and not yet started reads the caches when it starts, so a change to it
//! or its children meanwhile is dropped; a change while it runs lines it again. A handed-over
//! object that never starts (kube-runtime found it missing from its store: deleted, or an
//! archived submission) is lined again if a change was dropped meanwhile: it may be back (a
//! Task re-created under its name, a submission whose archived label was taken off). Timed
//! requeues (a deadline, a backoff) still go to kube-runtime directly.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use futures::stream::BoxStream;
use futures::{Stream, StreamExt};
use kube::runtime::reflector::ObjectRef;
use kube::{Resource, ResourceExt};
use prometheus::IntCounter;
use tokio::sync::mpsc::{UnboundedSender, unbounded_channel};

/// A handed-over object that has not started within this long (it was deleted, so kube-runtime
/// dropped it) no longer counts against the capacity.
pub const HANDOVER_LAPSE: Duration = Duration::from_secs(60);

/// One controller's line: shared by its controllers of every namespace served.
#[derive(Clone)]
pub struct Line {
    state: Arc<Mutex<State>>,
    capacity: usize,
}

#[derive(Default)]
struct State {
    queue: VecDeque<String>,
    lined: HashSet<String>,
    /// Handed to kube-runtime, by when, and whether its reconcile has started.
    handed: HashMap<String, (Instant, bool)>,
    /// Handed over and not started, with a change dropped since: lined again if it never starts.
    missed: HashSet<String>,
    /// Reconciles that wait for a turn (`super::turns`), whatever woke them.
    waiting: HashSet<String>,
    /// Each running controller's handle, with the namespace it serves (`None`: all).
    controllers: Vec<(Option<String>, UnboundedSender<String>)>,
}

impl State {
    /// Lines `key` again if a change to it was dropped while it was handed over.
    fn reline_if_missed(&mut self, key: &str) {
        if self.missed.remove(key) && self.lined.insert(key.to_string()) {
            self.queue.push_back(key.to_string());
        }
    }
}

/// What became of a change.
#[derive(Debug, PartialEq, Eq)]
pub enum Triggered {
    /// The object was put in line.
    Lined,
    /// The object will read the change anyway: in line, or handed over and not started.
    Skipped,
}

impl Line {
    pub fn new(capacity: usize) -> Line {
        Line { state: Arc::default(), capacity: capacity.max(1) }
    }

    fn locked(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The objects (`namespace/name`) this controller's instance serving `namespace` is to
    /// reconcile now, in line order.
    pub fn handovers(&self, namespace: Option<&str>) -> BoxStream<'static, String> {
        let (sender, receiver) = unbounded_channel();
        self.locked().controllers.push((namespace.map(str::to_string), sender));
        self.pump(Instant::now());
        // Handed-over objects that never start lapse without any other change to notice it.
        let line = self.clone();
        let lapses = futures::stream::unfold(line, |line| async move {
            tokio::time::sleep(HANDOVER_LAPSE / 4).await;
            line.pump(Instant::now());
            Some((None, line))
        });
        let handed = futures::stream::unfold(receiver, |mut receiver| async move {
            receiver.recv().await.map(|key| (Some(key), receiver))
        });
        futures::stream::select(handed, lapses).filter_map(futures::future::ready).boxed()
    }

    /// A change to the object `key` (`namespace/name`), or to one of its children.
    pub fn trigger(&self, key: &str) -> Triggered {
        self.trigger_at(key, Instant::now())
    }

    fn trigger_at(&self, key: &str, now: Instant) -> Triggered {
        {
            let mut state = self.locked();
            let not_started = state.handed.get(key).is_some_and(|(_, started)| !started);
            if not_started && !state.waiting.contains(key) {
                state.missed.insert(key.to_string());
            }
            if state.lined.contains(key) || not_started || state.waiting.contains(key) {
                return Triggered::Skipped;
            }
            state.lined.insert(key.to_string());
            state.queue.push_back(key.to_string());
        }
        self.pump(now);
        Triggered::Lined
    }

    /// The reconcile of `key` waits for its turn.
    pub fn waiting(&self, key: &str) {
        self.locked().waiting.insert(key.to_string());
    }

    /// The reconcile of `key` has its turn: it reads the caches from now on.
    pub fn started(&self, key: &str) {
        let mut state = self.locked();
        state.waiting.remove(key);
        state.missed.remove(key);
        if let Some((_, started)) = state.handed.get_mut(key) {
            *started = true;
        }
    }

    /// The reconcile of `key` ended (or was dropped before its turn).
    pub fn finished(&self, key: &str) {
        {
            let mut state = self.locked();
            state.waiting.remove(key);
            state.handed.remove(key);
            state.missed.remove(key);
        }
        self.pump(Instant::now());
    }

    /// kube-runtime found no object `key` in its store when handed it: it never starts. A
    /// change dropped meanwhile lines it again (it may be back); otherwise it leaves the line.
    pub fn dropped(&self, key: &str) {
        {
            let mut state = self.locked();
            if state.handed.get(key).is_some_and(|(_, started)| *started) {
                return;
            }
            state.handed.remove(key);
            state.reline_if_missed(key);
        }
        self.pump(Instant::now());
    }

    /// Hands the head of the line over while there is room.
    fn pump(&self, now: Instant) {
        let mut state = self.locked();
        let lapsed: Vec<String> = state
            .handed
            .iter()
            .filter(|(_, (since, started))| !*started && now.duration_since(*since) >= HANDOVER_LAPSE)
            .map(|(key, _)| key.clone())
            .collect();
        for key in lapsed {
            state.handed.remove(&key);
            state.reline_if_missed(&key);
        }
        state.controllers.retain(|(_, sender)| !sender.is_closed());
        while state.handed.len() < self.capacity {
            let Some(key) = state.queue.pop_front() else { break };
            state.lined.remove(&key);
            let namespace = key.split_once('/').map(|(namespace, _)| namespace).unwrap_or_default();
            let serving = state.controllers.iter().find(|(scope, _)| scope.as_deref().is_none_or(|s| s == namespace));
            // No controller serves it (any more): nothing would reconcile it.
            if serving.is_some_and(|(_, sender)| sender.send(key.clone()).is_ok()) {
                state.handed.insert(key, (now, false));
            }
        }
    }

    /// `changes` consumed: each change lines the objects `objects_of` names (`namespace/name`)
    /// instead of waking them; `skipped` counts the changes an object will read anyway. Errors
    /// pass, for the controller to log and back off.
    pub fn line_by<Changed, E>(
        &self,
        changes: impl Stream<Item = Result<Changed, E>> + Send + 'static,
        skipped: IntCounter,
        objects_of: impl Fn(&Changed) -> Vec<String> + Send + 'static,
    ) -> BoxStream<'static, Result<Changed, E>>
    where
        Changed: Send + 'static,
        E: Send + 'static,
    {
        let line = self.clone();
        changes
            .filter(move |change| {
                let Ok(changed) = change else { return futures::future::ready(true) };
                line.trigger_all(objects_of(changed), &skipped);
                futures::future::ready(false)
            })
            .boxed()
    }

    /// A change to each of `keys`; `skipped` counts those an object will read anyway.
    pub fn trigger_all(&self, keys: Vec<String>, skipped: &IntCounter) {
        for key in keys {
            if self.trigger(&key) == Triggered::Skipped {
                skipped.inc();
            }
        }
    }

    /// [`Line::handovers`] as the references kube-runtime reconciles (`Controller::reconcile_on`).
    pub fn handover_refs<K>(&self, namespace: Option<&str>) -> BoxStream<'static, ObjectRef<K>>
    where
        K: Resource<DynamicType = ()> + 'static,
    {
        self.handovers(namespace)
            .map(|key| {
                let (namespace, name) = key.split_once('/').unwrap_or_default();
                ObjectRef::new(name).within(namespace)
            })
            .boxed()
    }
}

/// The object itself, as a line's key.
pub fn itself<K: Resource>(object: &K) -> Vec<String> {
    vec![super::context::object_key(object)]
}

/// `child`'s owners of kind `Owner`, as a line's keys.
pub fn owners<Owner: Resource<DynamicType = ()>, Child: Resource>(child: &Child) -> Vec<String> {
    let namespace = child.namespace().unwrap_or_default();
    child
        .owner_references()
        .iter()
        .filter(|owner| owner.kind == Owner::kind(&()) && owner.api_version == Owner::api_version(&()))
        .map(|owner| format!("{namespace}/{}", owner.name))
        .collect()
}

#[cfg(test)]
#[path = "line_tests.rs"]
mod tests;
