use futures::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;

use super::*;

fn never_stopped() -> Stop {
    futures::future::pending::<()>().boxed().shared()
}

fn waiter(name: &str) -> Waiter {
    Waiter { namespace: "ns".into(), name: name.into() }
}

fn go(turn: Turn) -> Permit {
    match turn {
        Turn::Go(permit) => permit,
        Turn::Queued => panic!("queued, expected a turn"),
        Turn::Stopped => panic!("stopped, expected a turn"),
    }
}

fn queued(turn: Turn) -> bool {
    matches!(turn, Turn::Queued)
}

/// The next object woken, if one was.
fn woken(wakes: &mut (impl Stream<Item = ObjectRef<ConfigMap>> + Unpin)) -> Option<String> {
    wakes.next().now_or_never().flatten().map(|r| r.name)
}

#[test]
fn turns_go_in_the_order_they_were_asked_for_whoever_asks_again_first() {
    let turns = Turns::new(1, never_stopped());
    let mut wakes = Box::pin(turns.wakes::<ConfigMap>("task", None));
    let held = go(turns.take("task", &waiter("a")));
    assert!(queued(turns.take("task", &waiter("b"))));
    assert!(queued(turns.take("task", &waiter("c"))));
    // c asks again, as a busy object's reconcile would: it keeps its place behind b.
    assert!(queued(turns.take("task", &waiter("c"))));
    assert_eq!(woken(&mut wakes), None);
    drop(held);
    assert_eq!(woken(&mut wakes).as_deref(), Some("b"));
    // The turn is b's: c, asking first, still waits.
    assert!(queued(turns.take("task", &waiter("c"))));
    let b = go(turns.take("task", &waiter("b")));
    drop(b);
    assert_eq!(woken(&mut wakes).as_deref(), Some("c"));
    drop(go(turns.take("task", &waiter("c"))));
    // The line is empty: a newcomer goes at once.
    drop(go(turns.take("task", &waiter("d"))));
    assert_eq!(woken(&mut wakes), None);
}

#[test]
fn each_controller_has_its_own_turns() {
    let turns = Turns::new(1, never_stopped());
    let _task = go(turns.take("task", &waiter("a")));
    drop(go(turns.take("leaderboard", &waiter("a"))));
}

#[test]
fn no_turn_is_given_once_the_operator_stops() {
    let turns = Turns::new(2, futures::future::ready(()).boxed().shared());
    assert!(matches!(turns.take("task", &waiter("a")), Turn::Stopped));
}

#[test]
fn a_turn_granted_to_an_object_that_never_comes_passes_on() {
    let turns = Turns::new(1, never_stopped());
    let mut wakes = Box::pin(turns.wakes::<ConfigMap>("task", None));
    let start = Instant::now();
    let held = go(turns.take_at("task", &waiter("a"), start));
    assert!(queued(turns.take_at("task", &waiter("gone"), start)));
    assert!(queued(turns.take_at("task", &waiter("c"), start)));
    drop(held);
    assert_eq!(woken(&mut wakes).as_deref(), Some("gone"));
    // "gone" was deleted and never reconciles: c waits until the grant lapses, then goes.
    assert!(queued(turns.take_at("task", &waiter("c"), start + GRANT_DEADLINE / 2)));
    let lapsed = start + GRANT_DEADLINE + Duration::from_secs(1);
    drop(go(turns.take_at("task", &waiter("c"), lapsed)));
    assert_eq!(woken(&mut wakes).as_deref(), Some("c"));
}

#[test]
fn turns_run_at_once_up_to_the_permits() {
    let turns = Turns::new(2, never_stopped());
    let a = go(turns.take("task", &waiter("a")));
    let _b = go(turns.take("task", &waiter("b")));
    assert!(queued(turns.take("task", &waiter("c"))));
    drop(a);
    let _c = go(turns.take("task", &waiter("c")));
    assert!(queued(turns.take("task", &waiter("d"))));
}

/// The size of the future a controller's reconcile returns, without making one.
fn future_size<A, B, F>(_: impl Fn(A, B) -> F) -> usize {
    std::mem::size_of::<F>()
}

/// kube-runtime spawns every triggered object's reconcile at once: one must not hold room for
/// the whole reconcile before it runs (issue 13: at 1,000 Tasks, 16,000 waiting reconciles held
/// most of the operator's memory).
#[test]
fn a_reconcile_not_yet_running_holds_little_memory() {
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

#[test]
fn a_granted_object_is_woken_in_the_controller_that_serves_its_namespace() {
    let turns = Turns::new(1, never_stopped());
    let mut served = Box::pin(turns.wakes::<ConfigMap>("task", Some("ns")));
    let mut other = Box::pin(turns.wakes::<ConfigMap>("task", Some("other")));
    let held = go(turns.take("task", &waiter("a")));
    assert!(queued(turns.take("task", &waiter("b"))));
    drop(held);
    assert_eq!(woken(&mut served).as_deref(), Some("b"));
    assert_eq!(woken(&mut other), None);
}
