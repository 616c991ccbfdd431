//! Reconciles take turns in the order they asked (issue 13). kube-runtime can bound how many
//! reconciles a controller runs at once, but an object that waits for a free slot waits in a
//! hash set, and the first object the set's iteration finds goes next: at saturation, objects
//! triggered again and again (a Task whose pods keep changing) keep winning and others starve
//! (52 of 300 Tasks had no status for 20 minutes). So the controllers run without kube-runtime's
//! bound, and each reconcile first waits here for its controller's turn, on a semaphore that
//! serves its waiters first come, first served (tokio's is fair).
//!
//! kube-runtime still runs one reconcile per object at a time, and keeps each trigger of an
//! object whose reconcile is under way in a set that it scans on every poll. With every waiting
//! reconcile counted as under way, that set grew with the load: at 1,000 Tasks, 17,000 objects
//! waited here and the scan took 70 % of the operator's CPU. But a reconcile that has not had its
//! turn yet reads the caches only once it has, and a child's change is in the caches before it
//! triggers anything: so the change of a child whose owner waits here is dropped
//! ([`skip_waiting`]), not queued for one more reconcile after this one.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};

use futures::stream::BoxStream;
use futures::{Stream, StreamExt};
use kube::{Resource, ResourceExt};
use prometheus::IntCounter;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::Stop;

pub struct Turns {
    /// Reconciles that may run at once, per controller.
    permits: usize,
    lines: Mutex<HashMap<&'static str, Line>>,
    stop: Stop,
}

/// One controller's turns, and who waits for one.
struct Line {
    semaphore: Arc<Semaphore>,
    waiting: Waiting,
}

/// The objects (`namespace/name`) of one controller whose reconcile waits for its turn.
#[derive(Clone, Default)]
pub struct Waiting(Arc<Mutex<HashSet<String>>>);

impl Waiting {
    pub fn contains(&self, key: &str) -> bool {
        self.locked().contains(key)
    }

    fn locked(&self) -> MutexGuard<'_, HashSet<String>> {
        self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// An object's place among the waiting, given up when its turn comes or its reconcile is dropped.
struct InLine {
    waiting: Waiting,
    key: String,
}

impl InLine {
    fn join(waiting: Waiting, key: String) -> InLine {
        waiting.locked().insert(key.clone());
        InLine { waiting, key }
    }
}

impl Drop for InLine {
    fn drop(&mut self) {
        self.waiting.locked().remove(&self.key);
    }
}

impl Turns {
    pub fn new(permits: u16, stop: Stop) -> Turns {
        Turns { permits: usize::from(permits.max(1)), lines: Mutex::default(), stop }
    }

    fn line<T>(&self, controller: &'static str, read: impl FnOnce(&Line) -> T) -> T {
        let mut lines = self.lines.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let line = lines
            .entry(controller)
            .or_insert_with(|| Line { semaphore: Arc::new(Semaphore::new(self.permits)), waiting: Waiting::default() });
        read(line)
    }

    /// The objects of `controller` waiting for their turn.
    pub fn waiting(&self, controller: &'static str) -> Waiting {
        self.line(controller, |line| line.waiting.clone())
    }

    /// Waits for one of `controller`'s turns for the object `key` (`namespace/name`), kept until
    /// the permit is dropped; the object counts as waiting until then. `None` once the operator
    /// is stopping: a reconcile that has not started by then never starts (a replica that lost
    /// its lease writes nothing more).
    pub fn take(
        &self,
        controller: &'static str,
        key: String,
    ) -> impl Future<Output = Option<OwnedSemaphorePermit>> + Send + 'static {
        let (semaphore, waiting) = self.line(controller, |line| (line.semaphore.clone(), line.waiting.clone()));
        let in_line = InLine::join(waiting, key);
        let stop = self.stop.clone();
        // Owns what it waits on: a reconcile's future must be Send for any lifetime.
        async move {
            let permit = tokio::select! {
                biased;
                _ = stop => None,
                permit = semaphore.acquire_owned() => permit.ok(),
            };
            // Before the reconcile reads anything: a change dropped from now on would be lost.
            drop(in_line);
            permit
        }
    }
}

/// `changes` without those whose every object (`objects_of`, as `namespace/name`) waits for its
/// turn in `waiting`, each such change counted in `skipped`. A change that names no object
/// passes, and so does every error.
pub fn skip_waiting<Changed, E>(
    changes: impl Stream<Item = Result<Changed, E>> + Send + 'static,
    waiting: Waiting,
    skipped: IntCounter,
    objects_of: impl Fn(&Changed) -> Vec<String> + Send + 'static,
) -> BoxStream<'static, Result<Changed, E>>
where
    Changed: Send + 'static,
    E: Send + 'static,
{
    changes
        .filter(move |change| {
            let skip = change.as_ref().is_ok_and(|changed| {
                let objects = objects_of(changed);
                !objects.is_empty() && objects.iter().all(|key| waiting.contains(key))
            });
            if skip {
                skipped.inc();
            }
            futures::future::ready(!skip)
        })
        .boxed()
}

/// `child`'s owners of kind `Owner`, as `namespace/name`.
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
mod tests {
    use futures::FutureExt;
    use k8s_openapi::api::batch::v1::Job;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;

    use super::*;
    use crate::api::Task;

    fn never_stopped() -> Stop {
        futures::future::pending::<()>().boxed().shared()
    }

    fn key(name: &str) -> String {
        format!("ns/{name}")
    }

    #[tokio::test]
    async fn turns_go_in_the_order_they_were_asked_for_whoever_asks_again_first() {
        let turns = Turns::new(1, never_stopped());
        let held = turns.take("task", key("held")).await.expect("a free turn");
        let mut first = Box::pin(turns.take("task", key("a")));
        let mut second = Box::pin(turns.take("task", key("b")));
        assert!((&mut first).now_or_never().is_none());
        assert!((&mut second).now_or_never().is_none());
        drop(held);
        // The later waiter is polled first, as a busy object's reconcile would be: it still waits.
        assert!((&mut second).now_or_never().is_none());
        let first_turn = (&mut first).now_or_never().expect("the first waiter's turn").expect("not stopped");
        drop(first_turn);
        assert!((&mut second).now_or_never().expect("then the second's").is_some());
    }

    #[tokio::test]
    async fn each_controller_has_its_own_turns() {
        let turns = Turns::new(1, never_stopped());
        let _task = turns.take("task", key("a")).await;
        assert!(turns.take("leaderboard", key("a")).now_or_never().flatten().is_some());
    }

    #[tokio::test]
    async fn no_turn_is_given_once_the_operator_stops() {
        let turns = Turns::new(2, futures::future::ready(()).boxed().shared());
        assert!(turns.take("task", key("a")).await.is_none());
    }

    #[tokio::test]
    async fn an_object_waits_from_asking_until_its_turn_comes_or_its_reconcile_is_dropped() {
        let turns = Turns::new(1, never_stopped());
        let waiting = turns.waiting("task");
        let held = turns.take("task", key("held")).await.expect("a free turn");
        assert!(!waiting.contains(&key("held")), "an object with its turn no longer waits");
        let mut next = Box::pin(turns.take("task", key("next")));
        let dropped = turns.take("task", key("dropped"));
        assert!((&mut next).now_or_never().is_none());
        assert!(waiting.contains(&key("next")) && waiting.contains(&key("dropped")));
        assert!(!turns.waiting("leaderboard").contains(&key("next")), "each controller has its own waiting");
        drop(dropped);
        assert!(!waiting.contains(&key("dropped")));
        drop(held);
        let _turn = next.await.expect("its turn");
        assert!(!waiting.contains(&key("next")));
    }

    fn job_of(owners: &[(&str, &str)]) -> Job {
        let mut job = Job::default();
        job.metadata.namespace = Some("ns".into());
        job.metadata.owner_references = Some(
            owners
                .iter()
                .map(|(kind, name)| OwnerReference {
                    api_version: if *kind == "Task" { Task::api_version(&()).into() } else { "v1".into() },
                    kind: (*kind).into(),
                    name: (*name).into(),
                    ..OwnerReference::default()
                })
                .collect(),
        );
        job
    }

    /// A waiting Task reads its Jobs only once its turn comes: their changes until then need no
    /// reconcile of their own. Every other change still triggers one.
    #[tokio::test]
    async fn a_childs_change_is_dropped_only_while_every_owner_waits_for_its_turn() {
        let turns = Turns::new(1, never_stopped());
        let _running = turns.take("task", key("running")).await.expect("a free turn");
        let mut waiter = Box::pin(turns.take("task", key("waiting")));
        assert!((&mut waiter).now_or_never().is_none());
        let skipped = IntCounter::new("skipped", "skipped").unwrap();
        let changes = vec![
            Ok(job_of(&[("Task", "waiting")])),
            Ok(job_of(&[("Task", "running")])),
            Ok(job_of(&[("Task", "waiting"), ("Task", "running")])),
            Ok(job_of(&[])),
            Ok(job_of(&[("ConfigMap", "waiting")])),
            Err("a watch error"),
        ];
        let passed: Vec<_> =
            skip_waiting(futures::stream::iter(changes), turns.waiting("task"), skipped.clone(), owners::<Task, _>)
                .collect()
                .await;
        let owners: Vec<_> = passed
            .iter()
            .map(|change| match change {
                Ok(job) => job.owner_references().iter().map(|o| o.name.as_str()).collect::<Vec<_>>().join("+"),
                Err(error) => error.to_string(),
            })
            .collect();
        assert_eq!(owners, ["running", "waiting+running", "", "waiting", "a watch error"]);
        assert_eq!(skipped.get(), 1);
    }

    /// The size of the future a controller's reconcile returns, without making one.
    fn future_size<A, B, F>(_: impl Fn(A, B) -> F) -> usize {
        std::mem::size_of::<F>()
    }

    /// kube-runtime spawns every triggered object's reconcile at once, and most of them wait here
    /// for a turn: such a future must not hold room for the whole reconcile (issue 13: at 1,000
    /// Tasks, 16,000 waiting reconciles held most of the operator's memory).
    #[test]
    fn a_reconcile_waiting_for_its_turn_holds_little_memory() {
        use crate::operator::{evaluation, leaderboard, submission, task, task_source};
        let tasks = |g, c| submission::reconcile(g, c, kube::runtime::reflector::store().0);
        let sizes = [
            ("task", future_size(task::reconcile)),
            ("submission", future_size(tasks)),
            ("evaluation", future_size(evaluation::reconcile)),
            ("leaderboard", future_size(leaderboard::reconcile)),
            ("task source", future_size(task_source::reconcile)),
        ];
        for (controller, size) in sizes {
            assert!(size <= 1024, "a waiting {controller} reconcile holds {size} bytes");
        }
    }
}
