//! Training → Evaluating → Recording → Succeeded / Failed, with timeouts and retries.

use super::*;

#[test]
fn a_running_training_is_tracked_and_stopped_after_deadline_and_grace() {
    let state = training_state();
    let mut o = obs(secs(3));
    o.workloads.insert(id(WorkKind::Train, "alice", 1), WorkloadState::Running { started_at: secs(3) });
    o.workloads.insert(id(WorkKind::Train, "bob", 1), WorkloadState::Pending { since: None });
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
    o.workloads.insert(id(WorkKind::Train, "alice", 1), WorkloadState::Pending { since: None });
    let d = decide("task-1", &spec(), &state, &o, &cfg);
    assert_eq!(d.wake_at, Some(secs(101)));
    o.now = secs(102);
    let d = decide("task-1", &spec(), &d.state, &o, &cfg);
    assert!(starts(&d).contains(&"stop train-alice-1".to_string()));
    assert!(d.state.entrant("alice").unwrap().training.failure().unwrap().contains("did not start"));
}

#[test]
fn a_queued_workload_waits_without_timeout_and_its_clocks_start_at_admission() {
    let mut cfg = config();
    cfg.lifecycle.pending_timeout_s = Some(100);
    let mut state = training_state();
    let mut o = obs(secs(50));
    // Queued behind a GPU quota far longer than both the pending timeout and the hours.
    o.workloads.insert(id(WorkKind::Train, "alice", 1), WorkloadState::Queued);
    for now in [50, 500, 5_000] {
        o.now = secs(now);
        let d = decide("task-1", &spec(), &state, &o, &cfg);
        assert!(!starts(&d).contains(&"stop train-alice-1".to_string()), "stopped while queued at {now} s");
        assert_eq!(d.state.entrant("alice").unwrap().training.failure(), None);
        state = d.state;
    }
    // Admitted at 5,000 s and not started yet: the pending timeout counts from admission.
    o.workloads.insert(id(WorkKind::Train, "alice", 1), WorkloadState::Pending { since: Some(secs(5_000)) });
    o.now = secs(5_050);
    let d = decide("task-1", &spec(), &state, &o, &cfg);
    assert_eq!(d.wake_at, Some(secs(5_100)));
    assert_eq!(d.state.entrant("alice").unwrap().training.failure(), None);
    // Running from 5,060 s: its hours (36 s) and grace (10 s) count from then.
    o.workloads.insert(id(WorkKind::Train, "alice", 1), WorkloadState::Running { started_at: secs(5_060) });
    o.now = secs(5_070);
    let d = decide("task-1", &spec(), &d.state, &o, &cfg);
    assert!(!starts(&d).contains(&"stop train-alice-1".to_string()));
    assert_eq!(d.wake_at, Some(secs(5_060 + 36 + 10)));
    o.now = secs(5_060 + 36 + 11);
    let d = decide("task-1", &spec(), &d.state, &o, &cfg);
    assert!(starts(&d).contains(&"stop train-alice-1".to_string()), "past its hours counted from admission");
}

#[test]
fn a_run_whose_pod_ended_before_its_job_completed_is_not_a_new_wait() {
    let mut cfg = config();
    cfg.lifecycle.pending_timeout_s = Some(20);
    let mut o = obs(secs(10));
    o.workloads.insert(id(WorkKind::Train, "alice", 1), WorkloadState::Running { started_at: secs(3) });
    let d = decide("task-1", &spec(), &training_state(), &o, &cfg);
    // The pod finished, the Job is not yet Complete: no Ready pod, the same startTime.
    o.workloads.insert(id(WorkKind::Train, "alice", 1), WorkloadState::Pending { since: Some(secs(3)) });
    o.now = secs(40);
    let d = decide("task-1", &spec(), &d.state, &o, &cfg);
    assert!(!starts(&d).contains(&"stop train-alice-1".to_string()), "not a pending timeout");
    let alice = d.state.entrant("alice").unwrap();
    assert_eq!(alice.training, Work::Active { attempt: 1, requested_at: secs(1), started_at: Some(secs(3)) });
    assert_eq!(d.wake_at, Some(secs(3 + 36 + 10)), "still under its deadline");
    // Preempted and admitted again later: a new wait, timed from the new admission.
    o.workloads.insert(id(WorkKind::Train, "alice", 1), WorkloadState::Pending { since: Some(secs(45)) });
    o.now = secs(46);
    let d = decide("task-1", &spec(), &d.state, &o, &cfg);
    assert_eq!(d.wake_at, Some(secs(45 + 20)));
}

/// Observations in which everything trained and was sealed; `evals` are the evaluation results.
pub(super) fn all_trained(now: i64, evals: &[(&str, WorkloadState)]) -> Observation {
    let mut o = obs(secs(now));
    for name in ["alice", "bob", BASELINE] {
        o.workloads.insert(id(WorkKind::Train, name, 1), trained(30));
        o.workloads.insert(id(WorkKind::Seal, name, 1), sealed(&format!("sha256:{name}")));
    }
    for (name, state) in evals {
        o.workloads.insert(id(WorkKind::Evaluate, name, 1), state.clone());
    }
    o
}

#[test]
fn trained_models_are_sealed_then_evaluated_with_their_digest() {
    let state = training_state();
    let mut o = obs(secs(31));
    for name in ["alice", "bob", BASELINE] {
        o.workloads.insert(id(WorkKind::Train, name, 1), trained(30));
    }
    let d = step(&state, &o);
    assert_eq!(d.state.phase, Phase::Evaluating);
    // Seals first; only the base model (nothing to seal) is evaluated at once.
    assert_eq!(starts(&d), ["seal-alice-1", "seal-bob-1", "seal-baseline-1", "evaluate-base-model-1"]);
    assert!(d.actions.contains(&Action::StartSeal {
        id: id(WorkKind::Seal, "bob", 1),
        entrant: "bob".into(),
        training: id(WorkKind::Train, "bob", 1),
    }));
    // Until a seal reports, its model is not evaluated (the state machine asks again, idempotently).
    let again = step(&d.state, &o);
    assert!(!starts(&again).iter().any(|s| s.starts_with("evaluate-alice")));
    let d = step(&d.state, &all_trained(33, &[]));
    let evals: Vec<&Action> = d.actions.iter().filter(|a| matches!(a, Action::StartEvaluation { .. })).collect();
    assert_eq!(evals.len(), 4);
    assert!(d.actions.contains(&Action::StartEvaluation {
        id: id(WorkKind::Evaluate, "bob", 1),
        entrant: "bob".into(),
        submission: Some(SealedModel {
            training: id(WorkKind::Train, "bob", 1),
            seal: id(WorkKind::Seal, "bob", 1),
            digest: "sha256:bob".into(),
            summary: None,
        }),
    }));
}

#[test]
fn a_refused_seal_fails_the_submission_and_a_crashed_seal_is_retried() {
    let state = training_state();
    let mut o = all_trained(31, &[]);
    o.workloads.insert(id(WorkKind::Seal, "alice", 1), failed("model/leak is a symlink", false));
    o.workloads.insert(id(WorkKind::Seal, "bob", 1), failed("seal exited with code 1", true));
    let d = step(&state, &o);
    let alice = d.state.entrant("alice").unwrap();
    assert!(alice.evaluation.failure().unwrap().contains("the seal failed: model/leak is a symlink"));
    assert!(starts(&d).contains(&"seal-bob-2".to_string()), "{:?}", starts(&d));
    assert!(!starts(&d).iter().any(|s| s.starts_with("evaluate-alice") || s.starts_with("evaluate-bob")));
    let record = crate::tournament::outcome(alice);
    assert_eq!(record.scores, None);
    assert!(record.failure.unwrap().contains("symlink"));
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
    assert!(message.contains("alice: trainer exited with code 1"), "{message}");
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

#[test]
fn after_the_draw_no_decision_reads_the_miner_pool() {
    let state = training_state();
    assert!(!state.draws_miners(), "the operator skips listing Miners in this phase");
    for now in [secs(3), secs(3 + 36 + 11)] {
        let mut o = obs(now);
        o.workloads.insert(id(WorkKind::Train, "alice", 1), WorkloadState::Running { started_at: secs(3) });
        let mut without_pool = o.clone();
        without_pool.pool.clear();
        assert_eq!(step(&state, &o), step(&state, &without_pool));
    }
    for phase in [Phase::Pending, Phase::Preparing, Phase::Selecting, Phase::Delayed] {
        assert!(TaskState { phase, ..TaskState::default() }.draws_miners(), "{phase:?}");
    }
}
