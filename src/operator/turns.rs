//! Reconciles take turns in the order they asked (issue 13): each reconcile first waits here for
//! one of its controller's turns, on a semaphore that serves its waiters first come, first served
//! (tokio's is fair). Which objects ask, and in what order, is the line's business
//! ([`super::line`]): a turn tells the line when its object starts and ends.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::Stop;
use super::line::Line;

/// How many objects a controller's line hands to kube-runtime at once, per turn: enough that
/// its turns never wait for the 1 s debounce of a handed-over object.
pub const HANDED_PER_TURN: usize = 32;

pub struct Turns {
    /// Reconciles that may run at once, per controller.
    permits: usize,
    controllers: Mutex<HashMap<&'static str, (Arc<Semaphore>, Line)>>,
    stop: Stop,
}

/// A turn held: its object's reconcile runs until it is dropped.
pub struct Turn {
    _permit: OwnedSemaphorePermit,
    _asked: Asked,
}

/// An object's reconcile that asked for a turn: the line learns when it ends, even if it is
/// dropped before its turn.
struct Asked {
    line: Line,
    key: String,
}

impl Drop for Asked {
    fn drop(&mut self) {
        self.line.finished(&self.key);
    }
}

impl Turns {
    pub fn new(permits: u16, stop: Stop) -> Turns {
        Turns { permits: usize::from(permits.max(1)), controllers: Mutex::default(), stop }
    }

    fn controller(&self, controller: &'static str) -> (Arc<Semaphore>, Line) {
        let mut controllers = self.controllers.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let (semaphore, line) = controllers
            .entry(controller)
            .or_insert_with(|| (Arc::new(Semaphore::new(self.permits)), Line::new(self.permits * HANDED_PER_TURN)));
        (semaphore.clone(), line.clone())
    }

    /// `controller`'s line.
    pub fn line(&self, controller: &'static str) -> Line {
        self.controller(controller).1
    }

    /// Waits for one of `controller`'s turns for the object `key` (`namespace/name`). `None`
    /// once the operator is stopping: a reconcile that has not started by then never starts (a
    /// replica that lost its lease writes nothing more).
    pub fn take(&self, controller: &'static str, key: String) -> impl Future<Output = Option<Turn>> + Send + 'static {
        let (semaphore, line) = self.controller(controller);
        line.waiting(&key);
        let asked = Asked { line, key };
        let stop = self.stop.clone();
        // Owns what it waits on: a reconcile's future must be Send for any lifetime.
        async move {
            let permit = tokio::select! {
                biased;
                _ = stop => None,
                permit = semaphore.acquire_owned() => permit.ok(),
            }?;
            // Before the reconcile reads anything: a change from now on lines the object again.
            asked.line.started(&asked.key);
            Some(Turn { _permit: permit, _asked: asked })
        }
    }
}

#[cfg(test)]
mod tests {
    use futures::FutureExt;

    use super::*;

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
