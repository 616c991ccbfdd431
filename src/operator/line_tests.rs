use futures::StreamExt;
use futures::stream::BoxStream;

use super::*;

fn key(name: &str) -> String {
    format!("ns/{name}")
}

/// What a controller's instance has been handed so far, without waiting.
fn handed_now(handovers: &mut BoxStream<'static, String>) -> Vec<String> {
    let mut handed = Vec::new();
    while let Some(Some(key)) = futures::FutureExt::now_or_never(handovers.next()) {
        handed.push(key);
    }
    handed
}

#[tokio::test]
async fn objects_are_handed_over_in_the_order_they_changed_never_more_than_the_capacity() {
    let line = Line::new(2);
    let mut handovers = line.handovers(None);
    for name in ["a", "b", "c", "d"] {
        assert_eq!(line.trigger(&key(name)), Triggered::Lined);
    }
    assert_eq!(handed_now(&mut handovers), [key("a"), key("b")]);
    // One ends: the next in line goes.
    line.started(&key("a"));
    line.finished(&key("a"));
    assert_eq!(handed_now(&mut handovers), [key("c")]);
    line.finished(&key("b"));
    assert_eq!(handed_now(&mut handovers), [key("d")]);
}

#[tokio::test]
async fn a_change_is_dropped_while_its_object_will_read_it_and_lines_it_again_while_it_runs() {
    let line = Line::new(1);
    let mut handovers = line.handovers(None);
    line.trigger(&key("busy"));
    line.trigger(&key("next"));
    assert_eq!(handed_now(&mut handovers), [key("busy")]);
    // Handed over, not started: it will read the change. In line: it will too.
    assert_eq!(line.trigger(&key("busy")), Triggered::Skipped);
    assert_eq!(line.trigger(&key("next")), Triggered::Skipped);
    // Once it runs, a change may come after what it read: it goes to the back of the line.
    line.started(&key("busy"));
    assert_eq!(line.trigger(&key("busy")), Triggered::Lined);
    line.finished(&key("busy"));
    assert_eq!(handed_now(&mut handovers), [key("next")]);
    line.finished(&key("next"));
    assert_eq!(handed_now(&mut handovers), [key("busy")]);
}

#[tokio::test]
async fn a_reconcile_waiting_for_its_turn_reads_the_changes_that_come_meanwhile() {
    let line = Line::new(4);
    let _handovers = line.handovers(None);
    // A timed requeue woke it, not the line.
    line.waiting(&key("requeued"));
    assert_eq!(line.trigger(&key("requeued")), Triggered::Skipped);
    line.started(&key("requeued"));
    assert_eq!(line.trigger(&key("requeued")), Triggered::Lined);
}

#[tokio::test]
async fn a_handover_that_never_starts_lapses_and_frees_its_place() {
    let line = Line::new(1);
    let mut handovers = line.handovers(None);
    let now = Instant::now();
    line.trigger_at(&key("deleted"), now);
    line.trigger_at(&key("next"), now);
    assert_eq!(handed_now(&mut handovers), [key("deleted")]);
    line.pump(now + HANDOVER_LAPSE / 2);
    assert!(handed_now(&mut handovers).is_empty());
    line.pump(now + HANDOVER_LAPSE);
    assert_eq!(handed_now(&mut handovers), [key("next")]);
}

#[tokio::test]
async fn each_object_goes_to_the_controller_serving_its_namespace() {
    let line = Line::new(4);
    let mut first = line.handovers(Some("a"));
    let mut second = line.handovers(Some("b"));
    line.trigger("a/x");
    line.trigger("b/y");
    line.trigger("c/z");
    assert_eq!(handed_now(&mut first), ["a/x"]);
    assert_eq!(handed_now(&mut second), ["b/y"]);
    // No controller serves c: nothing would reconcile it, and it takes no place.
    line.finished("a/x");
    line.finished("b/y");
    assert!(line.locked().handed.is_empty());
}

#[tokio::test]
async fn changes_are_consumed_and_line_their_objects() {
    use k8s_openapi::api::batch::v1::Job;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;

    use crate::api::Task;

    let owned_by = |owners: &[(&str, &str)]| {
        let mut job = Job::default();
        job.metadata.namespace = Some("ns".into());
        job.metadata.name = Some("job".into());
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
    };
    let line = Line::new(8);
    let mut handovers = line.handovers(None);
    let skipped = IntCounter::new("skipped", "skipped").unwrap();
    let changes = vec![
        Ok(owned_by(&[("Task", "t1")])),
        Ok(owned_by(&[("ConfigMap", "c")])),
        Ok(owned_by(&[("Task", "t1")])),
        Ok(owned_by(&[("Task", "t2")])),
        Err("a watch error"),
    ];
    let passed: Vec<_> =
        line.line_by(futures::stream::iter(changes), skipped.clone(), owners::<Task, _>).collect().await;
    assert_eq!(passed.len(), 1, "only the error reaches the controller");
    assert!(passed[0].is_err());
    assert_eq!(handed_now(&mut handovers), [key("t1"), key("t2")]);
    assert_eq!(skipped.get(), 1, "t1's second change: handed over, not started");
    assert_eq!(itself(&owned_by(&[])), [key("job")]);
}

#[tokio::test]
async fn an_object_found_missing_is_lined_again_only_if_a_change_came_meanwhile() {
    let line = Line::new(1);
    let mut handovers = line.handovers(None);
    // Handed over, then found missing from the store (an archived submission): a change while
    // it was handed over (its label taken off, so it is back) was dropped, so it goes again.
    line.trigger(&key("back"));
    assert_eq!(handed_now(&mut handovers), [key("back")]);
    assert_eq!(line.trigger(&key("back")), Triggered::Skipped);
    line.dropped(&key("back"));
    assert_eq!(handed_now(&mut handovers), [key("back")]);
    // Found missing with no change since (deleted for good): it leaves the line, its place freed.
    line.dropped(&key("back"));
    line.trigger(&key("next"));
    assert_eq!(handed_now(&mut handovers), [key("next")]);
    line.started(&key("next"));
    line.finished(&key("next"));
    assert!(handed_now(&mut handovers).is_empty(), "the deleted object was handed over again");
}

#[tokio::test]
async fn a_lapsed_handover_with_a_dropped_change_is_lined_again() {
    let line = Line::new(1);
    let mut handovers = line.handovers(None);
    let now = Instant::now();
    line.trigger_at(&key("gone"), now);
    assert_eq!(handed_now(&mut handovers), [key("gone")]);
    assert_eq!(line.trigger_at(&key("gone"), now), Triggered::Skipped);
    line.pump(now + HANDOVER_LAPSE);
    assert_eq!(handed_now(&mut handovers), [key("gone")], "the dropped change was lost");
}
