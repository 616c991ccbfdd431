use chrono::{DateTime, Utc};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;

use super::*;
use crate::tournament::{Action, Observation, PoolMiner, SealSummary, TournamentConfig, decide};

fn now() -> DateTime<Utc> {
    "2026-11-26T12:00:00Z".parse().unwrap()
}

fn workloads() -> WorkloadConfig {
    serde_norway::from_str(include_str!("../../tests/fixtures/workloads/config.yaml")).unwrap()
}

fn task() -> Task {
    serde_norway::from_str(
        "apiVersion: gradients.io/v1alpha1
kind: Task
metadata: {name: t1, namespace: ns, uid: u-1, generation: 2}
spec:
  taskType: InstructText
  baseModel: {uri: /models/m, paramsB: 7}
  dataset: {uri: /data/d.jsonl}
  hours: 2
  minersPerTask: 2
  seed: 7
  baseline: false
  evaluateBase: false",
    )
    .unwrap()
}

fn job(status: serde_json::Value) -> Job {
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": "j", "creationTimestamp": "2026-11-26T11:00:00Z"},
        "status": status,
    }))
    .unwrap()
}

fn pod(container: &str, exit_code: i32, message: Option<&str>) -> Pod {
    let mut terminated = serde_json::json!({"exitCode": exit_code, "finishedAt": "2026-11-26T11:30:00Z"});
    if let Some(message) = message {
        terminated["message"] = serde_json::json!(message);
    }
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": "p"},
        "status": {"containerStatuses": [{"name": container, "image": "i", "imageID": "", "ready": false,
            "restartCount": 0, "state": {"terminated": terminated}}]},
    }))
    .unwrap()
}

#[test]
fn evaluator_results_come_from_the_termination_message_only() {
    let running = job(serde_json::json!({"active": 1, "ready": 1, "startTime": "2026-11-26T11:00:00Z"}));
    let good = r#"{"ok":true,"test_loss":1.25,"synth_loss":1.5,"weights_sha256":"ab","checks":[],"failure":null}"#;
    match evaluation_state(&running, &[pod("evaluator", 0, Some(good))]) {
        WorkloadState::Succeeded { output: WorkOutput::Evaluated(report), .. } => {
            assert_eq!(report.test_loss, Some(1.25))
        }
        other => panic!("expected a result, got {other:?}"),
    }
    match evaluation_state(&running, &[pod("evaluator", 0, Some("not json {"))]) {
        WorkloadState::Failed { reason, retryable: false, .. } => assert!(reason.contains("malformed"), "{reason}"),
        other => panic!("a malformed message fails the evaluation: {other:?}"),
    }
    match evaluation_state(&running, &[pod("evaluator", 137, None)]) {
        WorkloadState::Failed { retryable: true, .. } => {}
        other => panic!("a crash without a result is retried: {other:?}"),
    }
    // A hostile submission's refusal is final; the evaluator running out of memory is not.
    let hostile = r#"{"ok":false,"failure":"files: x is a FIFO","category":"submission"}"#;
    match evaluation_state(&running, &[pod("evaluator", 0, Some(hostile))]) {
        WorkloadState::Succeeded { output: WorkOutput::Evaluated(report), .. } => assert!(!report.ok),
        other => panic!("a refused submission is a final result: {other:?}"),
    }
    let oom = r#"{"ok":false,"failure":"resources: out of memory","category":"evaluator"}"#;
    match evaluation_state(&running, &[pod("evaluator", 0, Some(oom))]) {
        WorkloadState::Failed { reason, retryable: true, .. } => assert!(reason.contains("out of memory"), "{reason}"),
        other => panic!("an evaluator-side failure is retried: {other:?}"),
    }
    // Another container's message is never read.
    assert!(matches!(evaluation_state(&running, &[pod("sidecar", 0, Some(good))]), WorkloadState::Running { .. }));
    let pending = job(serde_json::json!({"active": 1}));
    assert_eq!(evaluation_state(&pending, &[]), WorkloadState::Pending { since: None });
    let admitted = job(serde_json::json!({"active": 1, "startTime": "2026-11-26T10:00:00Z"}));
    assert_eq!(
        evaluation_state(&admitted, &[]),
        WorkloadState::Pending { since: Some("2026-11-26T10:00:00Z".parse().unwrap()) }
    );
}

#[test]
fn a_queued_job_waits_for_admission_until_the_job_controller_starts_it() {
    let queue = Some([(crate::workloads::labels::KUEUE_QUEUE.to_string(), "gpu-queue".to_string())].into());
    let mut suspended = job(serde_json::json!({}));
    suspended.metadata.labels = queue.clone();
    suspended.spec = Some(k8s_openapi::api::batch::v1::JobSpec { suspend: Some(true), ..Default::default() });
    assert_eq!(evaluation_state(&suspended, &[]), WorkloadState::Queued);
    // Kueue has resumed it; the Job controller has not yet set its startTime. A pending state
    // here (since: None) would count the pending timeout from the request, made long before.
    let mut resumed = job(serde_json::json!({}));
    resumed.metadata.labels = queue.clone();
    assert_eq!(evaluation_state(&resumed, &[]), WorkloadState::Queued);
    let mut started = job(serde_json::json!({"active": 1, "startTime": "2026-11-26T12:00:00Z"}));
    started.metadata.labels = queue;
    assert_eq!(
        evaluation_state(&started, &[]),
        WorkloadState::Pending { since: Some("2026-11-26T12:00:00Z".parse().unwrap()) }
    );
    // Without a queue, a Job the Job controller has not seen yet is pending as before.
    assert_eq!(evaluation_state(&job(serde_json::json!({})), &[]), WorkloadState::Pending { since: None });
}

#[test]
fn a_job_completed_without_a_trusted_pod_is_no_result() {
    // A forged pod that the Job controller adopted finished the Job; the trusted pods (here:
    // none left) hold no result. That attempt fails and is retried, never scored.
    let completed = job(serde_json::json!({"startTime": "2026-11-26T11:00:00Z", "conditions": [{"type": "Complete",
        "status": "True", "lastTransitionTime": "2026-11-26T11:05:00Z"}]}));
    match evaluation_state(&completed, &[]) {
        WorkloadState::Failed { reason, retryable: true, .. } => assert!(reason.contains("of its own"), "{reason}"),
        other => panic!("{other:?}"),
    }
    assert!(matches!(preparation_state(&completed, &[]), WorkloadState::Failed { retryable: true, .. }));
}

#[test]
fn in_flight_lists_only_requested_and_active_work() {
    use crate::tournament::{Entrant, Role, TaskState, Work};
    let at = now();
    let mut state = TaskState { prepare: Work::Requested { attempt: 2, requested_at: at }, ..TaskState::default() };
    let mut a = Entrant::new("a", Role::Miner, None);
    a.training = Work::Active { attempt: 1, requested_at: at, started_at: None };
    let mut b = Entrant::new("b", Role::Miner, None);
    b.training = Work::Failed { attempt: 3, finished_at: at, reason: "x".into(), log_tail: String::new() };
    b.evaluation = Work::Requested { attempt: 1, requested_at: at };
    state.entrants = vec![a, b, Entrant::new("base-model", Role::BaseModel, None)];
    assert_eq!(
        in_flight(&state),
        vec![
            WorkloadId::new(WorkKind::Prepare, "", 2),
            WorkloadId::new(WorkKind::Train, "a", 1),
            WorkloadId::new(WorkKind::Evaluate, "b", 1),
        ]
    );
    // A squatted name fails the attempt as retryable: the lifecycle moves to the next name.
    assert!(matches!(not_adopted(at, "Job ns/x"), WorkloadState::Failed { retryable: true, .. }));
}

#[test]
fn preparation_reports_split_sizes() {
    let done = job(serde_json::json!({"startTime": "2026-11-26T11:00:00Z"}));
    let facts = r#"{"rows":100,"train":80,"test":10,"synthetic":10}"#;
    match preparation_state(&done, &[pod("prepare", 0, Some(facts))]) {
        WorkloadState::Succeeded { output: WorkOutput::Prepared(facts), .. } => assert_eq!(facts.train, 80),
        other => panic!("{other:?}"),
    }
    assert!(matches!(preparation_state(&done, &[pod("prepare", 0, None)]), WorkloadState::Failed { .. }));
    let deadline = job(serde_json::json!({"conditions": [{"type": "Failed", "status": "True",
        "reason": "DeadlineExceeded", "lastTransitionTime": "2026-11-26T11:40:00Z"}]}));
    match preparation_state(&deadline, &[]) {
        WorkloadState::Failed { reason, retryable: false, .. } => assert!(reason.starts_with("DeadlineExceeded")),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_seal_reports_its_digest_or_why_it_refused() {
    let done = job(serde_json::json!({"startTime": "2026-11-26T11:00:00Z"}));
    let sealed = r#"{"ok":true,"digest":"sha256:ab","files":2,"bytes":3}"#;
    match seal_state(&done, &[pod("seal", 0, Some(sealed))]) {
        WorkloadState::Succeeded { output: WorkOutput::Sealed(summary), .. } => assert_eq!(summary.digest, "sha256:ab"),
        other => panic!("{other:?}"),
    }
    let refused = r#"{"ok":false,"files":0,"bytes":0,"failure":"model/leak is a symlink"}"#;
    match seal_state(&done, &[pod("seal", 0, Some(refused))]) {
        WorkloadState::Failed { reason, retryable: false, .. } => assert!(reason.contains("model/leak is a symlink")),
        other => panic!("{other:?}"),
    }
    match seal_state(&done, &[pod("seal", 1, None)]) {
        WorkloadState::Failed { retryable: true, .. } => {}
        other => panic!("a crashed seal is retried: {other:?}"),
    }
}

#[test]
fn workload_ids_round_trip_through_labels() {
    let id = WorkloadId::new(WorkKind::Train, "miner-a", 2);
    let submission =
        build_submission(&task(), &id, Some("lora".into()), (2.0, None, None), None, &workloads(), now()).unwrap();
    assert_eq!(submission.metadata.name, Some(crate::workloads::workload_name("t1", &id)));
    assert!(submission.metadata.name.as_deref().unwrap().starts_with("t1-train-miner-a-2-"));
    assert_eq!(workload_id(WorkKind::Train, submission.metadata.labels.as_ref().unwrap()), Some(id));
    assert_eq!(submission.spec.gpus, 2, "7B instruct: 2 GPUs");
    assert_eq!(submission.spec.artifact_uri, "/artifacts/tournaments/ns/t1/models/train-miner-a-2");
    let capped = build_submission(
        &task(),
        &WorkloadId::new(WorkKind::Train, "m", 1),
        None,
        (2.0, Some(now() + chrono::Duration::minutes(30)), None),
        None,
        &workloads(),
        now(),
    )
    .unwrap();
    assert_eq!(capped.spec.hours, 0.5, "a deadline caps the allotment");
    // Successive halving: a later rung is an object of its own that continues from the last.
    let earlier = WorkloadId::new(WorkKind::Train, "miner-a", 1);
    let rung = WorkloadId::new(WorkKind::Train, "miner-a", 1).at_rung(1);
    let resumed =
        build_submission(&task(), &rung, None, (1.0, None, Some(&earlier)), None, &workloads(), now()).unwrap();
    assert!(resumed.metadata.name.as_deref().unwrap().starts_with("t1-train-miner-a-1-r1-"));
    assert_eq!(workload_id(WorkKind::Train, resumed.metadata.labels.as_ref().unwrap()), Some(rung));
    assert_eq!(resumed.spec.resume_uri.as_deref(), Some("/artifacts/tournaments/ns/t1/models/train-miner-a-1"));
    assert_eq!(resumed.spec.artifact_uri, "/artifacts/tournaments/ns/t1/models/train-miner-a-1-r1");
}

/// The operator's side of a whole tournament, without a cluster: decide, then play every
/// workload the actions ask for, until the task is recorded.
#[test]
fn a_tournament_runs_through_the_shared_state_machine() {
    let task = task();
    let config = TournamentConfig::default();
    let pool: Vec<PoolMiner> = ["a", "b", "c"]
        .iter()
        .map(|m| PoolMiner { name: m.to_string(), strategy: None, average_quality_today: None })
        .collect();
    let mut state = crate::tournament::TaskState::default();
    let mut workloads_seen: BTreeMap<WorkloadId, WorkloadState> = BTreeMap::new();
    let mut evaluation: Option<EvaluationStatus> = None;
    let mut status = TaskStatus::default();
    let started = now();
    let finished = now() + chrono::Duration::minutes(5);
    for step in 0..20 {
        let observation = Observation {
            now: now() + chrono::Duration::minutes(step),
            pool: pool.clone(),
            workloads: workloads_seen.clone(),
            recorded: evaluation.is_some(),
        };
        let decision = decide("t1", &task.spec, &state, &observation, &config);
        state = decision.state.clone();
        status = task_status("t1", &status, &state, evaluation.as_ref(), Some(2), observation.now);
        for action in &decision.actions {
            match action {
                Action::PrepareDataset { id, .. } => {
                    let facts = DatasetFacts { rows: 100, train: 80, test: 10, synthetic: 10 };
                    workloads_seen.insert(
                        id.clone(),
                        WorkloadState::Succeeded {
                            started_at: started,
                            finished_at: finished,
                            output: WorkOutput::Prepared(facts),
                        },
                    );
                }
                Action::StartTraining { id, .. } => {
                    workloads_seen.insert(
                        id.clone(),
                        WorkloadState::Succeeded {
                            started_at: started,
                            finished_at: finished,
                            output: WorkOutput::Trained(TrainingSummary::default()),
                        },
                    );
                }
                Action::StartSeal { id, .. } => {
                    let summary = SealSummary { digest: format!("sha256:{id}"), files: 1, bytes: 1, training: None };
                    let sealed = WorkOutput::Sealed(summary);
                    let state = WorkloadState::Succeeded { started_at: started, finished_at: finished, output: sealed };
                    workloads_seen.insert(id.clone(), state);
                }
                Action::StartEvaluation { id, entrant, .. } => {
                    let loss = match entrant.as_str() {
                        "a" => Some(1.0),
                        "b" => Some(1.5),
                        _ => None,
                    };
                    let state = match loss {
                        Some(loss) => WorkloadState::Succeeded {
                            started_at: started,
                            finished_at: finished,
                            output: WorkOutput::Evaluated(EvalReport {
                                ok: true,
                                test_loss: Some(loss),
                                synth_loss: Some(loss),
                                ..EvalReport::default()
                            }),
                        },
                        None => WorkloadState::Failed {
                            started_at: Some(started),
                            finished_at: finished,
                            reason: "malformed evaluator message: x".into(),
                            log_tail: String::new(),
                            retryable: false,
                        },
                    };
                    workloads_seen.insert(id.clone(), state);
                }
                Action::RecordResults { record } => {
                    let (object, scored) =
                        build_evaluation(&task, record, &state, &workloads(), &MechanismConfig::default(), now())
                            .unwrap();
                    assert_eq!(object.spec.submissions.len(), record.submissions.len());
                    evaluation = Some(scored);
                }
                _ => {}
            }
        }
        if state.phase.is_terminal() {
            break;
        }
    }
    let status = task_status("t1", &status, &state, evaluation.as_ref(), Some(2), now());
    assert_eq!(status.phase, crate::api::task::TaskPhase::Succeeded, "{status:?}");
    assert_eq!(status.miners_selected, 2);
    assert!(conditions::is_true(&status.conditions, "Succeeded"));
    let result = status.result.unwrap();
    assert_eq!(result.evaluation, "t1");
    let evaluation = evaluation.unwrap();
    let failed: Vec<&SubmissionResult> = evaluation.results.iter().filter(|r| r.state == ResultState::Failed).collect();
    for failed in failed {
        assert!(failed.failure.as_deref().unwrap_or_default().contains("malformed"));
        assert_eq!(failed.status.as_deref(), Some("failed"));
    }
    let a = evaluation.results.iter().find(|r| r.miner == "a").unwrap();
    assert_eq!(a.model_digest.as_deref(), Some("sha256:seal-a-1"), "the Evaluation records the sealed digest");
}

#[test]
fn the_status_is_a_fixed_point_of_the_same_state() {
    let state = crate::tournament::TaskState { phase: Phase::Training, hours: Some(2.0), ..Default::default() };
    let first = task_status("t1", &TaskStatus::default(), &state, None, Some(1), now());
    let again = task_status("t1", &first, &state, None, Some(1), now() + chrono::Duration::hours(1));
    assert_eq!(first, again, "no timestamps move unless something changed");
}

#[test]
fn a_child_key_names_the_object_its_workload_creates() {
    // The Task commits to a child's token under this key before the create: a key the object
    // does not have would leave the commitment unused and the create unbatched.
    let mut task = task();
    task.spec.dataset.uri = "/artifacts/datasets/d.jsonl".into();
    task.spec.base_model.uri = "/artifacts/models/m".into();
    let config = workloads();
    let key_of = |meta: &kube::api::ObjectMeta, kind: &str| format!("{kind}/{}", meta.name.clone().unwrap());
    let prepare = WorkloadId::new(WorkKind::Prepare, "", 2);
    let job = crate::workloads::prepare::prepare_job(&task, prepare.attempt, 7, &config, None).unwrap();
    assert_eq!(child_key("t1", &prepare), key_of(&job.metadata, "Job"));
    let evaluate = WorkloadId::new(WorkKind::Evaluate, "m1", 1);
    let job =
        evaluator::evaluation_job(&task, &evaluate, crate::workloads::evaluator::Evaluated::BaseModel, &config, None)
            .unwrap();
    assert_eq!(child_key("t1", &evaluate), key_of(&job.metadata, "Job"));
    let train = WorkloadId::new(WorkKind::Train, "m1", 1);
    let submission = build_submission(&task, &train, None, (1.0, None, None), None, &config, now()).unwrap();
    assert_eq!(child_key("t1", &train), key_of(&submission.metadata, "MinerSubmission"));
    assert_ne!(child_key("t1", &train), child_key("t1", &WorkloadId::new(WorkKind::Seal, "m1", 1)));
}
