use chrono::{DateTime, Utc};

use super::*;
use crate::api::evaluation::{EvaluationPhase, SubmissionResult};

fn now() -> DateTime<Utc> {
    "2026-11-26T12:00:00Z".parse().unwrap()
}

fn workloads() -> WorkloadConfig {
    serde_yaml::from_str(include_str!("../../tests/fixtures/workloads/config.yaml")).unwrap()
}

fn task(extra: &str) -> Task {
    let yaml = format!(
        "apiVersion: gradients.io/v1alpha1
kind: Task
metadata: {{name: t1, namespace: ns, uid: u-1, generation: 2}}
spec:
  taskType: InstructText
  baseModel: {{uri: /models/m, paramsB: 7}}
  dataset: {{uri: /data/d.jsonl}}
  hours: 2
  minersPerTask: 2
  seed: 7
{extra}"
    );
    serde_yaml::from_str(&yaml).unwrap()
}

fn candidates(n: usize) -> Vec<Candidate> {
    (0..n).map(|i| Candidate { name: format!("m{i}"), strategy: Some("lora".into()), ..Candidate::default() }).collect()
}

fn run(task: &Task, preparation: Preparation, pool: &[Candidate], submissions: &[ObservedSubmission]) -> Plan {
    run_with(task, preparation, pool, submissions, None)
}

fn run_with(
    task: &Task,
    preparation: Preparation,
    pool: &[Candidate],
    submissions: &[ObservedSubmission],
    evaluation: Option<&EvaluationStatus>,
) -> Plan {
    let observation = Observation { task, preparation, candidates: pool, submissions, evaluation, now: now() };
    plan(&observation, &workloads(), &MechanismConfig::default()).unwrap()
}

fn with_status(mut task: Task, plan: &Plan) -> Task {
    task.status = Some(plan.status.clone());
    task
}

fn submitted(plan: &Plan, phase: SubmissionPhase) -> Vec<ObservedSubmission> {
    plan.submissions
        .iter()
        .map(|s| ObservedSubmission {
            name: s.metadata.name.clone().unwrap(),
            miner: s.spec.miner.clone(),
            phase,
            finished_at: Some(now()),
            artifact_uri: s.spec.artifact_uri.clone(),
        })
        .collect()
}

#[test]
fn a_new_task_prepares_its_data_first() {
    let plan = run(&task(""), Preparation::Running, &candidates(3), &[]);
    assert_eq!(plan.status.phase, TaskPhase::Preparing);
    assert!(plan.prepare);
    assert!(plan.submissions.is_empty());
    assert_eq!(plan.status.observed_generation, Some(2));
}

#[test]
fn a_tournament_runs_from_draw_to_result() {
    let pool = candidates(3);
    let drawn = run(&task(""), Preparation::Succeeded, &pool, &[]);
    assert_eq!(drawn.status.phase, TaskPhase::Training);
    assert_eq!(drawn.status.selected_miners.len(), 2);
    assert_eq!(drawn.status.allocated_hours, Some(2.0));
    assert_eq!(drawn.submissions.len(), 2);
    let first = &drawn.submissions[0];
    assert_eq!(first.spec.gpus, 2, "7B instruct: 2 GPUs");
    assert_eq!(first.spec.gpu_class, "h100");
    assert_eq!(first.spec.data_uri, "/artifacts/ns/t1/data");
    assert_eq!(first.metadata.owner_references.as_ref().unwrap()[0].uid, "u-1");

    // Re-planning with the recorded status and the submissions in flight changes nothing.
    let training = with_status(task(""), &drawn);
    let running = submitted(&drawn, SubmissionPhase::Training);
    let again = run(&training, Preparation::Succeeded, &candidates(1), &running);
    assert_eq!(again.status, drawn.status, "the draw is read back, not redone");
    assert!(again.submissions.is_empty() && !again.prepare);

    // One trainer fails, one succeeds: the survivor is evaluated.
    let mut finished = submitted(&drawn, SubmissionPhase::Succeeded);
    finished[1].phase = SubmissionPhase::Failed;
    let evaluating = run(&training, Preparation::Succeeded, &pool, &finished);
    assert_eq!(evaluating.status.phase, TaskPhase::Evaluating);
    let evaluation = evaluating.evaluation.clone().unwrap();
    assert_eq!(evaluation.spec.submissions.len(), 1);
    assert_eq!(evaluation.spec.submissions[0].miner, finished[0].miner);

    let scored = EvaluationStatus {
        phase: EvaluationPhase::Complete,
        ranked: 1,
        results: vec![SubmissionResult {
            miner: finished[0].miner.clone(),
            rank: Some(1),
            test_loss: Some(1.0),
            ..SubmissionResult::default()
        }],
        ..EvaluationStatus::default()
    };
    let done = run_with(&with_status(task(""), &evaluating), Preparation::Succeeded, &pool, &finished, Some(&scored));
    assert_eq!(done.status.phase, TaskPhase::Succeeded);
    let result = done.status.result.clone().unwrap();
    assert_eq!(result.winner.as_deref(), Some(finished[0].miner.as_str()));
    assert!(conditions::is_true(&done.status.conditions, "Succeeded"));
    // A finished task stays as it is.
    let after = run(&with_status(task(""), &done), Preparation::Failed("gone".into()), &[], &[]);
    assert_eq!(after.status, done.status);
}

#[test]
fn too_few_miners_delay_an_organic_task_and_fail_a_synthetic_one() {
    let waiting = run(&task(""), Preparation::Succeeded, &[], &[]);
    assert_eq!(waiting.status.phase, TaskPhase::WaitingForMiners);
    assert_eq!(waiting.status.delays, 1);
    assert_eq!(waiting.status.retry_at, Some(now() + chrono::Duration::minutes(15)));
    assert_eq!(waiting.requeue_after, Some(std::time::Duration::from_secs(900)));
    // Before the retry time nothing changes, even if miners appeared.
    let again = run(&with_status(task(""), &waiting), Preparation::Succeeded, &candidates(2), &[]);
    assert_eq!(again.status.phase, TaskPhase::WaitingForMiners);
    assert_eq!(again.status.delays, 1);

    let synthetic = run(&task("  origin: Synthetic"), Preparation::Succeeded, &[], &[]);
    assert_eq!(synthetic.status.phase, TaskPhase::Failed);
    assert!(synthetic.status.message.contains("not enough miners"));
}

#[test]
fn a_failed_preparation_fails_the_task() {
    let plan = run(&task(""), Preparation::Failed("BackoffLimitExceeded".into()), &candidates(3), &[]);
    assert_eq!(plan.status.phase, TaskPhase::Failed);
    let prepared = plan.status.conditions.iter().find(|c| c.type_ == "Prepared").unwrap();
    assert_eq!(prepared.status, "False");
}

#[test]
fn no_model_at_all_fails_the_task() {
    let drawn = run(&task(""), Preparation::Succeeded, &candidates(2), &[]);
    let failed = submitted(&drawn, SubmissionPhase::Failed);
    let plan = run(&with_status(task(""), &drawn), Preparation::Succeeded, &candidates(2), &failed);
    assert_eq!(plan.status.phase, TaskPhase::Failed);
    assert!(plan.evaluation.is_none());
}
