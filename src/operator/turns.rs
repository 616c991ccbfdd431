//! Reconciles take turns in the order they asked (issue 13). kube-runtime can bound how many
//! reconciles a controller runs at once, but an object that waits for a free slot waits in a
//! hash set, and the first object the set's iteration finds goes next: at saturation, objects
//! triggered again and again (a Task whose pods keep changing) keep winning and others starve
//! (52 of 300 Tasks had no status for 20 minutes). So the controllers run without kube-runtime's
//! bound, and each reconcile first waits here for its controller's turn, on a semaphore that
//! serves its waiters first come, first served (tokio's is fair).
//!
//! kube-runtime still runs one reconcile per object at a time: an object triggered while its
//! reconcile waits here runs once more after it, as before.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::Stop;

pub struct Turns {
    /// Reconciles that may run at once, per controller.
    permits: usize,
    semaphores: Mutex<HashMap<&'static str, Arc<Semaphore>>>,
    stop: Stop,
}

impl Turns {
    pub fn new(permits: u16, stop: Stop) -> Turns {
        Turns { permits: usize::from(permits.max(1)), semaphores: Mutex::default(), stop }
    }

    /// Waits for one of `controller`'s turns, kept until the permit is dropped. `None` once the
    /// operator is stopping: a reconcile that has not started by then never starts (a replica
    /// that lost its lease writes nothing more).
    pub fn take(
        &self,
        controller: &'static str,
    ) -> impl Future<Output = Option<OwnedSemaphorePermit>> + Send + 'static {
        let semaphore = {
            let mut semaphores = self.semaphores.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            semaphores.entry(controller).or_insert_with(|| Arc::new(Semaphore::new(self.permits))).clone()
        };
        let stop = self.stop.clone();
        // Owns what it waits on: a reconcile's future must be Send for any lifetime.
        async move {
            tokio::select! {
                biased;
                _ = stop => None,
                permit = semaphore.acquire_owned() => permit.ok(),
            }
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

    #[tokio::test]
    async fn turns_go_in_the_order_they_were_asked_for_whoever_asks_again_first() {
        let turns = Turns::new(1, never_stopped());
        let held = turns.take("task").await.expect("a free turn");
        let mut first = Box::pin(turns.take("task"));
        let mut second = Box::pin(turns.take("task"));
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
        let _task = turns.take("task").await;
        assert!(turns.take("leaderboard").now_or_never().flatten().is_some());
    }

    #[tokio::test]
    async fn no_turn_is_given_once_the_operator_stops() {
        let turns = Turns::new(2, futures::future::ready(()).boxed().shared());
        assert!(turns.take("task").await.is_none());
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
