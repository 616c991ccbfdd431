use chrono::{DateTime, Utc};

use super::plan::{Existing, Observation, Waiting, organic_waiting, plan};
use crate::api::task_source::{Catalog, CatalogDataset, CatalogModel, TaskSourceSpec, TaskSourceStatus, TaskTemplate};
use crate::mechanism::TaskType;
use crate::synthetic::SourceError;
use crate::tournament::Phase;

fn spec(in_flight: u32) -> TaskSourceSpec {
    TaskSourceSpec {
        in_flight,
        seed: 3,
        mix: None,
        catalog: Catalog {
            models: vec![CatalogModel { uri: "/m".into(), params_b: 3.0, task_types: vec![TaskType::Dpo] }],
            datasets: vec![CatalogDataset {
                uri: "/d".into(),
                task_type: TaskType::Dpo,
                columns: Default::default(),
                rows: 100,
                synthetic_uri: None,
                reward_functions: vec![],
            }],
        },
        task_template: TaskTemplate::default(),
        pause_while_organic_waiting: true,
    }
}

fn at(second: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(second, 0).unwrap()
}

fn existing(index: u64, finished: bool) -> Existing {
    Existing { name: format!("src-{index}"), index: Some(index), task_type: TaskType::Dpo, finished }
}

fn observe<'a>(
    spec: &'a TaskSourceSpec,
    previous: &'a TaskSourceStatus,
    own: &'a [Existing],
    waiting: &'a [(String, Waiting)],
) -> Observation<'a> {
    Observation { source: "src", generation: Some(1), spec, previous, own, waiting, sources: &Ok(()), now: at(100) }
}

#[test]
fn a_catalog_the_operator_refuses_creates_nothing_and_says_which_entry() {
    // Each Task drawn from a refused URI would fail at once and be replaced by another.
    let spec = spec(3);
    let refused = Err(SourceError::Invalid {
        field: "spec.catalog.models[0].uri".into(),
        message: "'/models/x' is not under an allowed source".into(),
    });
    let decided = plan(&Observation { sources: &refused, ..observe(&spec, &TaskSourceStatus::default(), &[], &[]) });
    assert!(decided.create.is_empty());
    let condition = decided.status.conditions.iter().find(|c| c.type_ == "CatalogValid").unwrap();
    assert_eq!((condition.status.as_str(), condition.reason.as_str()), ("False", "InvalidCatalog"));
    assert!(decided.status.message.starts_with("spec.catalog.models[0].uri: "), "{}", decided.status.message);
    assert!(decided.notices.iter().any(|(warning, reason, _)| *warning && *reason == "InvalidCatalog"));
}

#[test]
fn creates_up_to_in_flight_and_continues_the_indices() {
    let spec = spec(3);
    let first = plan(&observe(&spec, &TaskSourceStatus::default(), &[], &[]));
    assert_eq!(first.create.iter().map(|d| d.name.as_str()).collect::<Vec<_>>(), ["src-0", "src-1", "src-2"]);
    assert_eq!((first.status.in_flight, first.status.created, first.status.next_index), (3, 3, 3));
    assert_eq!(first.status.last_created.as_ref().unwrap().name, "src-2");

    // One finished: one more, with the next index.
    let own = [existing(0, true), existing(1, false), existing(2, false)];
    let next = plan(&observe(&spec, &first.status, &own, &[]));
    assert_eq!(next.create.iter().map(|d| d.index).collect::<Vec<_>>(), [3]);
    assert_eq!((next.status.in_flight, next.status.created), (3, 4));
    let dpo = next.status.types.iter().find(|t| t.task_type == "Dpo").unwrap();
    assert_eq!((dpo.created, dpo.in_flight, dpo.share, dpo.created_share), (4, 3, 1.0, 1.0));
}

#[test]
fn a_lost_status_never_reuses_an_index_of_an_existing_task() {
    // After a restart with a status that missed the last write, the labels still hold the indices.
    let spec = spec(2);
    let own = [existing(4, true), existing(7, false)];
    let plan = plan(&observe(&spec, &TaskSourceStatus::default(), &own, &[]));
    assert_eq!(plan.create.iter().map(|d| d.index).collect::<Vec<_>>(), [8]);
    // And a recorded index is kept even when its Task was deleted since.
    let previous = TaskSourceStatus { next_index: 12, ..TaskSourceStatus::default() };
    let later = super::plan::plan(&observe(&spec, &previous, &own, &[]));
    assert_eq!(later.create.iter().map(|d| d.index).collect::<Vec<_>>(), [12]);
}

#[test]
fn nothing_is_created_while_organic_tasks_wait_and_the_status_says_why() {
    let spec = spec(2);
    let waiting = [("lonely".to_string(), Waiting::Miners), ("big".to_string(), Waiting::Gpus)];
    let paused = plan(&observe(&spec, &TaskSourceStatus::default(), &[], &waiting));
    assert!(paused.create.is_empty());
    assert!(paused.status.paused);
    assert_eq!(paused.status.message, "2 organic Tasks wait: lonely (for miners), big (for GPUs)");
    assert_eq!(paused.notices.iter().map(|n| n.1).collect::<Vec<_>>(), ["Paused"]);
    // Still paused: no second Event. Then resumed: an Event and the Tasks.
    let again = plan(&observe(&spec, &paused.status, &[], &waiting));
    assert!(again.notices.is_empty());
    let resumed = plan(&observe(&spec, &again.status, &[], &[]));
    assert_eq!(resumed.notices.iter().map(|n| n.1).collect::<Vec<_>>(), ["Resumed"]);
    assert_eq!(resumed.create.len(), 2);
    assert!(!resumed.status.paused);
    // A source told not to pause does not.
    let eager = TaskSourceSpec { pause_while_organic_waiting: false, ..spec.clone() };
    assert_eq!(plan(&observe(&eager, &TaskSourceStatus::default(), &[], &waiting)).create.len(), 2);
}

#[test]
fn an_invalid_catalogue_creates_nothing_and_warns_once() {
    let mut spec = spec(2);
    spec.catalog.models[0].params_b = -1.0;
    let first = plan(&observe(&spec, &TaskSourceStatus::default(), &[], &[]));
    assert!(first.create.is_empty());
    assert_eq!(first.status.message, "spec.catalog.models[0].paramsB: must be a number greater than 0, found -1");
    assert_eq!(first.notices.iter().map(|n| (n.0, n.1)).collect::<Vec<_>>(), [(true, "InvalidCatalog")]);
    assert!(plan(&observe(&spec, &first.status, &[], &[])).notices.is_empty());
}

#[test]
fn reconciling_twice_writes_the_same_status() {
    let spec = spec(1);
    let own = [existing(0, false)];
    let once = plan(&observe(&spec, &TaskSourceStatus { next_index: 1, ..Default::default() }, &own, &[]));
    assert!(once.create.is_empty());
    let twice = plan(&Observation { now: at(999), ..observe(&spec, &once.status, &own, &[]) });
    assert_eq!(twice.status, once.status);
}

#[test]
fn waiting_is_delayed_for_miners_or_training_with_a_trainer_not_running() {
    assert_eq!(organic_waiting(Phase::Delayed, 0), Some(Waiting::Miners));
    assert_eq!(organic_waiting(Phase::Training, 1), Some(Waiting::Gpus));
    assert_eq!(organic_waiting(Phase::Training, 0), None);
    for phase in [Phase::Pending, Phase::Preparing, Phase::Evaluating, Phase::Succeeded, Phase::Failed] {
        assert_eq!(organic_waiting(phase, 3), None, "{phase:?}");
    }
}
