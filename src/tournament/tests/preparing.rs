//! Pending → Preparing → Selecting (⇄ Delayed) → Training.

use super::*;

#[test]
fn pending_starts_preparation() {
    let d = step(&TaskState::default(), &obs(secs(0)));
    assert_eq!(d.state.phase, Phase::Preparing);
    assert_eq!(starts(&d), vec!["prepare-1"]);
    assert!(d.actions.contains(&Action::PrepareDataset { id: id(WorkKind::Prepare, "", 1), seed: 7 }));
    // Not observed yet: asked again, same id, no new attempt.
    let again = step(&d.state, &obs(secs(1)));
    assert_eq!(again.state, d.state);
    assert_eq!(starts(&again), vec!["prepare-1"]);
}

#[test]
fn prepared_dataset_leads_to_selection_and_training() {
    let state = training_state();
    assert_eq!(state.hours, Some(0.01));
    assert_eq!(state.dataset.map(|d| d.train), Some(85));
    let names: Vec<(&str, Role)> = state.entrants.iter().map(|e| (e.name.as_str(), e.role)).collect();
    assert_eq!(names.len(), 4);
    assert!(names.contains(&("alice", Role::Miner)) && names.contains(&("bob", Role::Miner)));
    assert_eq!(&names[2..], &[(BASELINE, Role::Baseline), (BASE_MODEL, Role::BaseModel)]);
    let d = step(&state, &obs(secs(2)));
    let mut s = starts(&d);
    s.sort();
    assert_eq!(s, vec!["evaluate-base-model-1", "train-alice-1", "train-baseline-1", "train-bob-1"]);
    let training = d.actions.iter().find_map(|a| match a {
        Action::StartTraining { entrant, strategy, hours, .. } if entrant == "alice" => {
            Some((strategy.clone(), *hours))
        }
        _ => None,
    });
    assert_eq!(training, Some((Some("s-alice".into()), 0.01)));
    assert!(
        d.actions
            .iter()
            .any(|a| matches!(a, Action::StartEvaluation { entrant, submission: None, .. } if entrant == BASE_MODEL))
    );
}

#[test]
fn hours_come_from_the_deadline_or_the_allocation() {
    let mut o = obs(secs(1));
    o.workloads.insert(id(WorkKind::Prepare, "", 1), prepared());
    let preparing = step(&TaskState::default(), &obs(secs(0))).state;

    let mut by_deadline = spec();
    by_deadline.hours = None;
    by_deadline.deadline = Some(secs(1 + 1800));
    let d = decide("t", &by_deadline, &preparing, &o, &config());
    assert!((d.state.hours.unwrap() - 0.5).abs() < 1e-9);

    let mut allocated = spec();
    allocated.hours = None;
    let d = decide("t", &allocated, &preparing, &o, &config());
    assert!((3.0..=6.0).contains(&d.state.hours.unwrap()), "{:?}", d.state.hours);

    let mut passed = spec();
    passed.hours = None;
    passed.deadline = Some(secs(0));
    let d = decide("t", &passed, &preparing, &o, &config());
    assert_eq!(d.state.phase, Phase::Failed);
    assert!(d.state.message.unwrap().contains("deadline"));
}

#[test]
fn preparation_retries_when_lost_and_fails_on_its_own_error() {
    let preparing = step(&TaskState::default(), &obs(secs(0))).state;
    let mut o = obs(secs(1));
    o.workloads.insert(id(WorkKind::Prepare, "", 1), failed("node lost", true));
    let d = step(&preparing, &o);
    assert_eq!(d.state.phase, Phase::Preparing);
    assert_eq!(starts(&d), vec!["prepare-2"]);

    let mut o = obs(secs(1));
    o.workloads.insert(id(WorkKind::Prepare, "", 1), failed("column \"q\" missing", false));
    let d = step(&preparing, &o);
    assert_eq!(d.state.phase, Phase::Failed);
    assert!(d.state.message.unwrap().contains("column \"q\" missing"));
}

#[test]
fn preparation_times_out() {
    let preparing = step(&TaskState::default(), &obs(secs(0))).state;
    let mut o = obs(secs(1));
    o.workloads.insert(id(WorkKind::Prepare, "", 1), WorkloadState::Running { started_at: secs(1) });
    let running = step(&preparing, &o);
    assert_eq!(running.wake_at, Some(secs(31)));
    o.now = secs(32);
    let d = step(&running.state, &o);
    assert_eq!(starts(&d), vec!["stop prepare-1"]);
    assert_eq!(d.state.phase, Phase::Failed);
}

#[test]
fn too_few_miners_delays_with_an_extended_allocation_then_proceeds() {
    let preparing = step(&TaskState::default(), &Observation::new(secs(0))).state;
    let mut o = Observation::new(secs(1));
    o.workloads.insert(id(WorkKind::Prepare, "", 1), prepared());
    let delayed = step(&preparing, &o);
    assert_eq!(delayed.state.phase, Phase::Delayed);
    assert_eq!(delayed.state.delays, 1);
    assert_eq!(delayed.state.retry_at, Some(secs(1) + Duration::minutes(15)));
    assert_eq!(delayed.wake_at, delayed.state.retry_at);
    assert!(delayed.actions.iter().any(|a| matches!(a, Action::Notify { reason, .. } if reason == "Delayed")));

    // Before the retry time nothing changes, even when miners appear.
    let mut early = o.clone();
    early.now = secs(60);
    early.pool = pool(&["alice"]);
    let d = step(&delayed.state, &early);
    assert_eq!(d.state.phase, Phase::Delayed);

    let mut later = early.clone();
    later.now = secs(1) + Duration::minutes(15);
    let d = step(&delayed.state, &later);
    assert_eq!(d.state.phase, Phase::Training);
    assert!((d.state.hours.unwrap() - 0.011).abs() < 1e-12, "{:?}", d.state.hours);
}

#[test]
fn delays_are_bounded_and_synthetic_tasks_never_wait() {
    let mut o = Observation::new(secs(1));
    o.workloads.insert(id(WorkKind::Prepare, "", 1), prepared());
    let mut state = step(&TaskState::default(), &Observation::new(secs(0))).state;
    let mut now = secs(1);
    for _ in 0..10 {
        o.now = now;
        state = step(&state, &o).state;
        if state.phase != Phase::Delayed {
            break;
        }
        now = state.retry_at.unwrap();
    }
    assert_eq!(state.phase, Phase::Failed);
    assert_eq!(state.delays, 6);

    let mut synthetic = spec();
    synthetic.origin = Origin::Synthetic;
    let preparing = decide("t", &synthetic, &TaskState::default(), &Observation::new(secs(0)), &config()).state;
    o.now = secs(1);
    let d = decide("t", &synthetic, &preparing, &o, &config());
    assert_eq!(d.state.phase, Phase::Failed);
    assert!(d.state.message.unwrap().contains("synthetic"));
}

#[test]
fn selection_draws_miners_per_task_from_the_pool() {
    let mut small = spec();
    small.miners_per_task = Some(2);
    small.baseline = false;
    small.evaluate_base = false;
    let mut o = Observation::new(secs(1));
    o.pool = pool(&["a", "b", "c", "d", "e"]);
    o.workloads.insert(id(WorkKind::Prepare, "", 1), prepared());
    let preparing = decide("t", &small, &TaskState::default(), &Observation::new(secs(0)), &config()).state;
    let d = decide("t", &small, &preparing, &o, &config());
    assert_eq!(d.state.entrants.len(), 2);
    assert!(d.state.entrants.iter().all(|e| e.role == Role::Miner));
    assert_eq!(d, decide("t", &small, &preparing, &o, &config()), "deterministic");
}
