//! Preparing with `spec.dataset.generator`: the split, then the generated synthetic set, then
//! selection; the generator's failure is the task's.

use super::*;
use crate::api::task::SyntheticGenerator;

fn generating(rows: Option<u32>) -> TaskSpec {
    let mut spec = spec();
    spec.dataset.generator = Some(SyntheticGenerator {
        model_uri: "generator".into(),
        weaker_model_uri: None,
        rows,
        temperature: 0.7,
        max_new_tokens: 48,
    });
    spec
}

fn synthesized(rows: u64) -> WorkloadState {
    WorkloadState::Succeeded {
        started_at: secs(1),
        finished_at: secs(3),
        output: WorkOutput::Synthesized(SyntheticSummary { rows }),
    }
}

/// The state right after the split, with the observation that reported it.
fn split(spec: &TaskSpec) -> (Decision, Observation) {
    let preparing = decide("t", spec, &TaskState::default(), &obs(secs(0)), &config()).state;
    let mut o = obs(secs(1));
    o.workloads.insert(id(WorkKind::Prepare, "", 1), prepared());
    (decide("t", spec, &preparing, &o, &config()), o)
}

fn generations(d: &Decision) -> Vec<(WorkloadId, u64)> {
    d.actions
        .iter()
        .filter_map(|a| match a {
            Action::GenerateSyntheticSet { id, rows, .. } => Some((id.clone(), *rows)),
            _ => None,
        })
        .collect()
}

#[test]
fn the_generator_runs_after_the_split_and_before_any_miner_is_drawn() {
    let spec = generating(None);
    let (d, _) = split(&spec);
    assert_eq!(d.state.phase, Phase::Preparing);
    // As many rows as the split would have held out (5 of 100 here).
    assert_eq!(generations(&d), vec![(id(WorkKind::Synthesize, "", 1), 5)]);
    assert!(d.state.entrants.is_empty() && starts(&d).iter().all(|s| !s.starts_with("train")));
    assert!(d.actions.iter().any(|a| matches!(a, Action::Notify { reason, .. } if reason == "Synthesizing")));
}

#[test]
fn the_generated_row_count_replaces_the_held_out_one_and_training_starts() {
    let spec = generating(Some(40));
    let (d, mut o) = split(&spec);
    assert_eq!(generations(&d)[0].1, 40);
    o.now = secs(4);
    o.workloads.insert(id(WorkKind::Synthesize, "", 1), synthesized(37));
    let d = decide("t", &spec, &d.state, &o, &config());
    assert_eq!(d.state.phase, Phase::Training);
    assert_eq!(d.state.dataset.map(|f| (f.train, f.test, f.synthetic)), Some((85, 10, 37)));
    assert!(generations(&d).is_empty());
    assert!(starts(&d).contains(&"train-alice-1".to_string()));
}

#[test]
fn a_failed_generation_fails_the_task_and_no_miner_trains() {
    let spec = generating(None);
    let (d, mut o) = split(&spec);
    o.workloads.insert(id(WorkKind::Synthesize, "", 1), failed("generator: no config.json", false));
    let d = decide("t", &spec, &d.state, &o, &config());
    assert_eq!(d.state.phase, Phase::Failed);
    let message = d.state.message.unwrap_or_default();
    assert!(message.contains("synthetic evaluation set") && message.contains("no config.json"), "{message}");
    assert!(d.state.entrants.is_empty());
}

#[test]
fn a_lost_generation_is_retried_as_a_new_attempt() {
    let spec = generating(None);
    let (d, mut o) = split(&spec);
    o.workloads.insert(id(WorkKind::Synthesize, "", 1), failed("node lost", true));
    let d = decide("t", &spec, &d.state, &o, &config());
    assert_eq!(d.state.phase, Phase::Preparing);
    assert_eq!(generations(&d), vec![(id(WorkKind::Synthesize, "", 2), 5)]);
}

#[test]
fn a_task_without_a_generator_never_asks_for_one() {
    let (d, _) = split(&spec());
    assert_eq!(d.state.phase, Phase::Training);
    assert!(generations(&d).is_empty());
    assert!(d.state.synthesize.is_waiting());
}
