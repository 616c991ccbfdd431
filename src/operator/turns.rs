//! Reconciles take turns in the order they asked (issue 13). kube-runtime can bound how many
//! reconciles a controller runs at once, but an object that waits for a free slot waits in a
//! hash set, and the first object the set's iteration finds goes next: at saturation, objects
//! triggered again and again (a Task whose pods keep changing) keep winning and others starve
//! (52 of 300 Tasks had no status for 20 minutes).
//!
//! Nor may a reconcile wait for its turn inside kube-runtime: every waiting object then counts
//! as running, each change to one of them waits in kube-runtime's pending set, and kube-runtime
//! scans that whole set on every poll for an object it may start. At 1,000 Tasks, 17,000 objects
//! waited so, and the scan took 70 % of the operator's CPU.
//!
//! So the controllers run without kube-runtime's bound, and a reconcile that finds no free turn
//! joins its controller's line (first come, first served) and returns at once. A freed turn is
//! granted to the head of the line, which is woken (`Controller::reconcile_on`) and takes it. A
//! grant not taken within [`GRANT_DEADLINE`] (the object was deleted meanwhile) passes on.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::{FutureExt, Stream, StreamExt};
use kube::Resource;
use kube::runtime::reflector::ObjectRef;
use tokio::sync::mpsc::{UnboundedSender, unbounded_channel};

use super::Stop;

/// How long a granted turn waits for its object's reconcile.
pub const GRANT_DEADLINE: Duration = Duration::from_secs(30);

/// An object in a line: its namespace and name.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Waiter {
    pub namespace: String,
    pub name: String,
}

impl Waiter {
    pub fn of<K: Resource>(object: &K) -> Waiter {
        let meta = object.meta();
        Waiter { namespace: meta.namespace.clone().unwrap_or_default(), name: meta.name.clone().unwrap_or_default() }
    }
}

impl std::fmt::Display for Waiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// What a reconcile gets when it asks for a turn.
pub enum Turn {
    /// Its turn, held until the permit is dropped.
    Go(Permit),
    /// It is in line; it will be woken when its turn comes.
    Queued,
    /// The operator is stopping: a reconcile that has not started by then never starts (a
    /// replica that lost its lease writes nothing more).
    Stopped,
}

/// One controller's line.
#[derive(Default)]
struct Line {
    /// Turns held, and turns granted but not taken yet.
    held: usize,
    waiting: VecDeque<Waiter>,
    queued: HashSet<Waiter>,
    /// Granted turns and when each lapses.
    granted: HashMap<Waiter, Instant>,
    /// Each running controller's wakes, by the namespace it serves (`None`: all of them).
    wakes: Vec<(Option<String>, UnboundedSender<Waiter>)>,
}

impl Line {
    /// Returns lapsed grants, then grants free turns to the head of the line and wakes it.
    fn grant(&mut self, permits: usize, now: Instant) {
        let before = self.granted.len();
        self.granted.retain(|_, lapses| *lapses > now);
        self.held -= before - self.granted.len();
        while self.held < permits {
            let Some(next) = self.waiting.pop_front() else { break };
            self.queued.remove(&next);
            self.held += 1;
            self.granted.insert(next.clone(), now + GRANT_DEADLINE);
            // Only the controller that serves its namespace knows the object. With none running,
            // the grant lapses and passes on.
            self.wakes.retain(|(_, wake)| !wake.is_closed());
            for (_, wake) in self.wakes.iter().filter(|(scope, _)| scope.as_ref().is_none_or(|s| *s == next.namespace))
            {
                let _ = wake.send(next.clone());
            }
        }
    }
}

type Lines = Arc<Mutex<HashMap<&'static str, Line>>>;

fn locked(lines: &Lines) -> std::sync::MutexGuard<'_, HashMap<&'static str, Line>> {
    lines.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

pub struct Turns {
    /// Reconciles that may run at once, per controller.
    permits: usize,
    lines: Lines,
    stop: Stop,
}

/// A turn held; dropping it frees the turn for the head of the line.
pub struct Permit {
    lines: Lines,
    controller: &'static str,
    permits: usize,
}

impl Drop for Permit {
    fn drop(&mut self) {
        let mut lines = locked(&self.lines);
        let line = lines.entry(self.controller).or_default();
        line.held -= 1;
        line.grant(self.permits, Instant::now());
    }
}

impl Turns {
    pub fn new(permits: u16, stop: Stop) -> Turns {
        Turns { permits: usize::from(permits.max(1)), lines: Arc::default(), stop }
    }

    /// `waiter`'s turn in `controller`'s line, if it is its turn now.
    pub fn take(&self, controller: &'static str, waiter: &Waiter) -> Turn {
        self.take_at(controller, waiter, Instant::now())
    }

    fn take_at(&self, controller: &'static str, waiter: &Waiter, now: Instant) -> Turn {
        if self.stop.clone().now_or_never().is_some() {
            return Turn::Stopped;
        }
        let mut lines = locked(&self.lines);
        let line = lines.entry(controller).or_default();
        line.grant(self.permits, now);
        let go = if line.granted.remove(waiter).is_some() {
            true
        } else if line.queued.contains(waiter) {
            false
        } else if line.held < self.permits {
            // The line is empty: `grant` gives every free turn to a waiter.
            line.held += 1;
            true
        } else {
            line.queued.insert(waiter.clone());
            line.waiting.push_back(waiter.clone());
            false
        };
        match go {
            true => Turn::Go(Permit { lines: self.lines.clone(), controller, permits: self.permits }),
            false => Turn::Queued,
        }
    }

    /// The objects of `controller` in `namespace` (`None`: all) whose turn came, for that
    /// controller's `Controller::reconcile_on` (one runs per namespace served).
    pub fn wakes<K: Resource>(
        &self,
        controller: &'static str,
        namespace: Option<&str>,
    ) -> impl Stream<Item = ObjectRef<K>> + Send + 'static
    where
        K::DynamicType: Default,
    {
        let (sender, mut receiver) = unbounded_channel::<Waiter>();
        let scope = namespace.map(str::to_string);
        locked(&self.lines).entry(controller).or_default().wakes.push((scope, sender));
        futures::stream::poll_fn(move |cx| receiver.poll_recv(cx))
            .map(|waiter| ObjectRef::new(&waiter.name).within(&waiter.namespace))
    }
}

#[cfg(test)]
#[path = "turns_tests.rs"]
mod tests;
