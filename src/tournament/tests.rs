//! Every phase transition of the lifecycle, including timeouts, retries and delays.

use chrono::{DateTime, Duration, TimeZone, Utc};

use super::*;
use crate::api::task::{BaseModel, DatasetSpec, Origin, TaskSpec};
use crate::mechanism::TaskType;

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 26, 12, 0, 0).unwrap()
}

fn secs(s: i64) -> DateTime<Utc> {
    t0() + Duration::seconds(s)
}

fn spec() -> TaskSpec {
    TaskSpec {
        task_type: TaskType::InstructText,
        base_model: BaseModel { uri: "base".into(), params_b: 0.5 },
        dataset: DatasetSpec { uri: "data.jsonl".into(), columns: Default::default(), synthetic_uri: None },
        hours: Some(0.01), // 36 s
        deadline: None,
        miners_per_task: None,
        miners: Vec::new(),
        miner_selector: None,
        gpu_class: None,
        origin: Origin::Organic,
        reward_functions: Vec::new(),
        baseline: true,
        evaluate_base: true,
        seed: Some(7),
    }
}

fn config() -> TournamentConfig {
    let mut config = TournamentConfig::default();
    config.lifecycle.deadline_grace_s = 10;
    config.lifecycle.evaluation_timeout_s = 60;
    config.lifecycle.prepare_timeout_s = 30;
    config.lifecycle.pending_timeout_s = None;
    config
}

fn pool(names: &[&str]) -> Vec<PoolMiner> {
    names
        .iter()
        .map(|n| PoolMiner { name: n.to_string(), strategy: Some(format!("s-{n}")), average_quality_today: None })
        .collect()
}

fn obs(now: DateTime<Utc>) -> Observation {
    let mut obs = Observation::new(now);
    obs.pool = pool(&["alice", "bob"]);
    obs
}

fn id(kind: WorkKind, entrant: &str, attempt: u32) -> WorkloadId {
    WorkloadId::new(kind, entrant, attempt)
}

fn prepared() -> WorkloadState {
    WorkloadState::Succeeded {
        started_at: secs(0),
        finished_at: secs(1),
        output: WorkOutput::Prepared(DatasetFacts { rows: 100, train: 85, test: 10, synthetic: 5 }),
    }
}

fn trained(finished: i64) -> WorkloadState {
    WorkloadState::Succeeded {
        started_at: secs(2),
        finished_at: secs(finished),
        output: WorkOutput::Trained(TrainingSummary {
            steps: Some(10),
            final_train_loss: Some(0.5),
            ..Default::default()
        }),
    }
}

fn evaluated(test: f64, synth: f64) -> WorkloadState {
    let report = EvalReport {
        ok: true,
        test_loss: Some(test),
        synth_loss: Some(synth),
        weights_sha256: Some(format!("{test}-{synth}")),
        ..Default::default()
    };
    WorkloadState::Succeeded { started_at: secs(40), finished_at: secs(45), output: WorkOutput::Evaluated(report) }
}

fn failed(reason: &str, retryable: bool) -> WorkloadState {
    WorkloadState::Failed {
        started_at: Some(secs(2)),
        finished_at: secs(5),
        reason: reason.into(),
        log_tail: "Traceback: boom".into(),
        retryable,
    }
}

fn step(state: &TaskState, obs: &Observation) -> Decision {
    decide("task-1", &spec(), state, obs, &config())
}

fn starts(decision: &Decision) -> Vec<String> {
    decision
        .actions
        .iter()
        .filter_map(|a| match a {
            Action::PrepareDataset { id, .. }
            | Action::StartTraining { id, .. }
            | Action::StartEvaluation { id, .. }
            | Action::StopWorkload { id, .. } => {
                Some(format!("{}{id}", if matches!(a, Action::StopWorkload { .. }) { "stop " } else { "" }))
            }
            _ => None,
        })
        .collect()
}

/// The state once training has started for alice, bob, baseline (and the base is evaluating).
fn training_state() -> TaskState {
    let mut o = obs(secs(1));
    o.workloads.insert(id(WorkKind::Prepare, "", 1), prepared());
    let d = step(&step(&TaskState::default(), &obs(secs(0))).state, &o);
    assert_eq!(d.state.phase, Phase::Training);
    d.state
}

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

#[test]
fn a_running_training_is_tracked_and_stopped_after_deadline_and_grace() {
    let state = training_state();
    let mut o = obs(secs(3));
    o.workloads.insert(id(WorkKind::Train, "alice", 1), WorkloadState::Running { started_at: secs(3) });
    o.workloads.insert(id(WorkKind::Train, "bob", 1), WorkloadState::Pending);
    let d = step(&state, &o);
    let alice = d.state.entrant("alice").unwrap();
    assert_eq!(alice.training, Work::Active { attempt: 1, requested_at: secs(1), started_at: Some(secs(3)) });
    assert_eq!(d.wake_at, Some(secs(3 + 36 + 10)));
    assert!(!starts(&d).contains(&"train-alice-1".to_string()), "running: not started again");

    o.now = secs(3 + 36 + 11);
    let d = step(&d.state, &o);
    assert!(starts(&d).contains(&"stop train-alice-1".to_string()));
    let alice = d.state.entrant("alice").unwrap();
    assert!(alice.training.failure().unwrap().contains("deadline"), "{:?}", alice.training);
    assert!(alice.evaluation.failure().unwrap().contains("training failed"));
}

#[test]
fn the_task_deadline_caps_every_training() {
    let mut capped = spec();
    capped.deadline = Some(secs(20));
    let state = training_state();
    let mut o = obs(secs(3));
    o.workloads.insert(id(WorkKind::Train, "alice", 1), WorkloadState::Running { started_at: secs(3) });
    let d = decide("task-1", &capped, &state, &o, &config());
    assert_eq!(d.wake_at, Some(secs(30)));
}

#[test]
fn a_crashed_training_fails_with_its_log_and_is_not_retried() {
    let state = training_state();
    let mut o = obs(secs(6));
    o.workloads.insert(id(WorkKind::Train, "alice", 1), failed("trainer exited with code 1", false));
    let d = step(&state, &o);
    let alice = d.state.entrant("alice").unwrap();
    match &alice.training {
        Work::Failed { reason, log_tail, attempt: 1, .. } => {
            assert_eq!(reason, "trainer exited with code 1");
            assert_eq!(log_tail, "Traceback: boom");
        }
        other => panic!("{other:?}"),
    }
    assert!(!starts(&d).iter().any(|s| s.contains("alice")));
}

#[test]
fn lost_and_interrupted_trainings_are_retried_as_new_attempts_up_to_the_limit() {
    let state = training_state();
    let mut o = obs(secs(3));
    o.workloads.insert(id(WorkKind::Train, "alice", 1), WorkloadState::Running { started_at: secs(3) });
    let running = step(&state, &o).state;
    // The process died with the executor: absent after having been seen.
    let d = step(&running, &obs(secs(4)));
    assert_eq!(d.state.entrant("alice").unwrap().training.attempt(), 2);
    assert!(starts(&d).contains(&"train-alice-2".to_string()));

    let mut o = obs(secs(5));
    o.workloads.insert(id(WorkKind::Train, "alice", 2), failed("evicted", true));
    let d = step(&d.state, &o);
    assert!(starts(&d).contains(&"train-alice-3".to_string()));
    let mut o = obs(secs(6));
    o.workloads.insert(id(WorkKind::Train, "alice", 3), failed("evicted", true));
    let d = step(&d.state, &o);
    let alice = d.state.entrant("alice").unwrap();
    assert_eq!(alice.training.failure(), Some("evicted (after 3 attempts)"));
}

#[test]
fn a_workload_that_never_starts_times_out_when_configured() {
    let mut cfg = config();
    cfg.lifecycle.pending_timeout_s = Some(100);
    let state = training_state();
    let mut o = obs(secs(50));
    o.workloads.insert(id(WorkKind::Train, "alice", 1), WorkloadState::Pending);
    let d = decide("task-1", &spec(), &state, &o, &cfg);
    assert_eq!(d.wake_at, Some(secs(101)));
    o.now = secs(102);
    let d = decide("task-1", &spec(), &d.state, &o, &cfg);
    assert!(starts(&d).contains(&"stop train-alice-1".to_string()));
    assert!(d.state.entrant("alice").unwrap().training.failure().unwrap().contains("did not start"));
}

/// Observations in which everything trained; `evals` are the evaluation results.
fn all_trained(now: i64, evals: &[(&str, WorkloadState)]) -> Observation {
    let mut o = obs(secs(now));
    for name in ["alice", "bob", BASELINE] {
        o.workloads.insert(id(WorkKind::Train, name, 1), trained(30));
    }
    for (name, state) in evals {
        o.workloads.insert(id(WorkKind::Evaluate, name, 1), state.clone());
    }
    o
}

#[test]
fn trained_models_are_evaluated_and_the_phase_moves_on() {
    let state = training_state();
    let d = step(&state, &all_trained(31, &[]));
    assert_eq!(d.state.phase, Phase::Evaluating);
    let evals: Vec<&Action> = d.actions.iter().filter(|a| matches!(a, Action::StartEvaluation { .. })).collect();
    assert_eq!(evals.len(), 4);
    assert!(d.actions.contains(&Action::StartEvaluation {
        id: id(WorkKind::Evaluate, "bob", 1),
        entrant: "bob".into(),
        submission: Some(id(WorkKind::Train, "bob", 1)),
    }));
}

#[test]
fn evaluations_lead_to_recording_then_success_and_weights() {
    let state = step(&training_state(), &all_trained(31, &[])).state;
    let evals = [
        ("alice", evaluated(1.0, 1.2)),
        ("bob", evaluated(2.0, 2.1)),
        (BASELINE, evaluated(2.5, 2.6)),
        (BASE_MODEL, evaluated(3.0, 3.0)),
    ];
    let d = step(&state, &all_trained(50, &evals));
    assert_eq!(d.state.phase, Phase::Recording);
    assert_eq!(d.state.finished_at, Some(secs(50)));
    let record = d
        .actions
        .iter()
        .find_map(|a| match a {
            Action::RecordResults { record } => Some(record.clone()),
            _ => None,
        })
        .expect("a record");
    let miners: Vec<&str> = record.submissions.iter().map(|s| s.miner.as_str()).collect();
    assert_eq!(record.id, "task-1");
    assert_eq!(record.hours, 0.01);
    assert_eq!(record.submissions.len(), 2, "references are never scored: {miners:?}");
    assert_eq!(record.submissions.iter().find(|s| s.miner == "alice").unwrap().submitted_at, secs(30));

    // Repeated until stored, then done.
    let again = step(&d.state, &all_trained(51, &evals));
    assert!(again.actions.iter().any(|a| matches!(a, Action::RecordResults { .. })));
    let mut stored = all_trained(52, &evals);
    stored.recorded = true;
    let done = step(&d.state, &stored);
    assert_eq!(done.state.phase, Phase::Succeeded);
    assert!(done.actions.contains(&Action::EmitWeights));
    assert_eq!(step(&done.state, &stored).actions, Vec::new(), "terminal");
}

#[test]
fn when_every_miner_fails_the_task_fails_and_scores_are_still_recorded() {
    let state = training_state();
    let mut o = all_trained(31, &[]);
    o.workloads.insert(id(WorkKind::Train, "alice", 1), failed("trainer exited with code 1", false));
    let not_ok = EvalReport { ok: false, failure: Some("weights are a pickle".into()), ..Default::default() };
    o.workloads.insert(
        id(WorkKind::Evaluate, "bob", 1),
        WorkloadState::Succeeded { started_at: secs(40), finished_at: secs(41), output: WorkOutput::Evaluated(not_ok) },
    );
    o.workloads.insert(id(WorkKind::Evaluate, BASELINE, 1), evaluated(2.5, 2.6));
    o.workloads.insert(id(WorkKind::Evaluate, BASE_MODEL, 1), evaluated(3.0, 3.0));
    let d = step(&step(&state, &o).state, &o);
    assert_eq!(d.state.phase, Phase::Recording);
    let record = task_record("task-1", &spec(), &d.state).unwrap();
    assert!(record.submissions.iter().all(|s| s.test_loss.is_none()));
    o.recorded = true;
    let d = step(&d.state, &o);
    assert_eq!(d.state.phase, Phase::Failed);
    let message = d.state.message.unwrap();
    assert!(message.contains("every miner failed"), "{message}");
    assert!(message.contains("alice: not evaluated: training failed: trainer exited with code 1"), "{message}");
    assert!(message.contains("bob: weights are a pickle"), "{message}");
    assert!(d.actions.contains(&Action::EmitWeights));
}

#[test]
fn evaluations_time_out_and_crashed_evaluators_are_retried() {
    let state = step(&training_state(), &all_trained(31, &[])).state;
    let mut o = all_trained(40, &[("alice", WorkloadState::Running { started_at: secs(40) })]);
    o.workloads.insert(id(WorkKind::Evaluate, "bob", 1), failed("evaluator exited with code 1", true));
    let d = step(&state, &o);
    assert!(starts(&d).contains(&"evaluate-bob-2".to_string()));
    assert_eq!(d.wake_at, Some(secs(100)));
    o.now = secs(101);
    let d = step(&d.state, &o);
    assert!(starts(&d).contains(&"stop evaluate-alice-1".to_string()));
    assert!(d.state.entrant("alice").unwrap().evaluation.failure().unwrap().contains("longer than 60 s"));
}

#[test]
fn the_state_round_trips_through_json() {
    let state = step(&training_state(), &all_trained(31, &[("alice", evaluated(1.0, 1.1))])).state;
    let text = serde_json::to_string(&state).unwrap();
    let back: TaskState = serde_json::from_str(&text).unwrap();
    assert_eq!(back, state);
}
