//! The Task lifecycle as a pure function: from what was observed (the task and its status, the
//! preparation Job, the miners, the submissions, the evaluation, the clock) to what should
//! exist and the status to write. The Task controller only gathers the observation and
//! applies the plan, so every rule here is unit-tested without a cluster.
//!
//! Decisions that must not change once made (the miner draw, the allocated hours, the start of
//! training) are recorded in the status the first time and read back from it afterwards.

use chrono::{DateTime, Duration, Utc};

use crate::api::conditions::{self, Observed};
use crate::api::evaluation::{EvaluatedSubmission, EvaluationStatus, ResultState};
use crate::api::submission::SubmissionPhase;
use crate::api::task::{Origin, TaskPhase, TaskResult};
use crate::api::{Evaluation, EvaluationSpec, MinerSubmission, MinerSubmissionSpec, Task, TaskStatus};
use crate::mechanism::MechanismConfig;
use crate::mechanism::selection::{self, Staffing};
use crate::workloads::{BuildError, WorkloadConfig, child_name, gpus};

/// A miner that may be drawn: a `Miner` object or an inline miner of the task.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Candidate {
    pub name: String,
    pub image: Option<String>,
    pub command: Vec<String>,
    pub strategy: Option<String>,
    pub args: Vec<String>,
    pub average_score_today: Option<f64>,
}

/// The dataset-preparation Job as observed.
#[derive(Debug, Clone, PartialEq)]
pub enum Preparation {
    Running,
    Succeeded,
    Failed(String),
}

#[derive(Debug, Clone, PartialEq)]
pub struct ObservedSubmission {
    pub name: String,
    pub miner: String,
    pub phase: SubmissionPhase,
    pub finished_at: Option<DateTime<Utc>>,
    pub artifact_uri: String,
}

pub struct Observation<'a> {
    pub task: &'a Task,
    pub preparation: Preparation,
    pub candidates: &'a [Candidate],
    pub submissions: &'a [ObservedSubmission],
    pub evaluation: Option<&'a EvaluationStatus>,
    pub now: DateTime<Utc>,
}

/// What should exist and what the status says. Children are complete objects to create if
/// missing; the status is written as a whole.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    pub status: TaskStatus,
    pub prepare: bool,
    pub submissions: Vec<MinerSubmission>,
    pub evaluation: Option<Evaluation>,
    pub requeue_after: Option<std::time::Duration>,
}

pub fn submission_name(task: &str, miner: &str) -> String {
    child_name(&[task, miner])
}

pub fn plan(
    observed: &Observation<'_>,
    workloads: &WorkloadConfig,
    mechanism: &MechanismConfig,
) -> Result<Plan, BuildError> {
    let task = observed.task;
    let previous = task.status.clone().unwrap_or_default();
    let mut plan = Plan { status: previous.clone(), ..Plan::default() };
    if !previous.phase.is_terminal() {
        advance(observed, workloads, mechanism, &mut plan)?;
    }
    let status = &mut plan.status;
    status.observed_generation = task.metadata.generation;
    status.miners_selected = status.selected_miners.len() as u32;
    status.conditions =
        conditions::merge(&previous.conditions, &observe_conditions(status), task.metadata.generation, observed.now);
    Ok(plan)
}

fn advance(
    observed: &Observation<'_>,
    workloads: &WorkloadConfig,
    mechanism: &MechanismConfig,
    plan: &mut Plan,
) -> Result<(), BuildError> {
    let task = observed.task;
    let now = observed.now;
    let status = &mut plan.status;

    // 1. The data is split once, before anything is drawn.
    if status.selected_miners.is_empty() {
        plan.prepare = true;
        match &observed.preparation {
            Preparation::Running => {
                set(status, TaskPhase::Preparing, "splitting the dataset");
                return Ok(());
            }
            Preparation::Failed(reason) => {
                set(status, TaskPhase::Failed, &format!("dataset preparation failed: {reason}"));
                return Ok(());
            }
            Preparation::Succeeded => {}
        }
    }

    // 2. Draw the miners, or wait for more (WP §2.7).
    if status.selected_miners.is_empty() {
        if let Some(retry_at) = status.retry_at.filter(|at| *at > now) {
            set(
                status,
                TaskPhase::WaitingForMiners,
                &waiting_message(status.delays, observed.candidates.len(), retry_at),
            );
            plan.requeue_after = (retry_at - now).to_std().ok();
            return Ok(());
        }
        let base_hours = match (task.spec.hours, task.spec.deadline) {
            (Some(hours), _) => hours,
            (None, Some(deadline)) => (deadline - now).num_seconds() as f64 / 3600.0,
            (None, None) => 0.0,
        };
        if base_hours <= 0.0 {
            set(status, TaskPhase::Failed, "spec.deadline has passed before training could start");
            return Ok(());
        }
        let synthetic = task.spec.origin == Origin::Synthetic;
        match selection::staffing(mechanism, observed.candidates.len(), base_hours, status.delays, synthetic) {
            Staffing::Proceed { hours } => {
                let pool: Vec<selection::Candidate> = observed
                    .candidates
                    .iter()
                    .map(|c| selection::Candidate {
                        miner: c.name.clone(),
                        average_quality_today: c.average_score_today,
                    })
                    .collect();
                let wanted = task
                    .spec
                    .miners_per_task
                    .map(|k| k as usize)
                    .unwrap_or_else(|| selection::pool_size(mechanism, task.spec.task_type, task.seed()));
                status.selected_miners = selection::select_miners(mechanism, &pool, wanted, task.seed());
                status.allocated_hours = Some(hours);
                status.retry_at = None;
                status.training_started_at = Some(now);
                status.training_deadline = Some(now + Duration::seconds((hours * 3600.0).ceil() as i64));
            }
            Staffing::Delay { retry_after_minutes, delays, .. } => {
                let retry_at = now + Duration::minutes(i64::from(retry_after_minutes));
                status.delays = delays;
                status.retry_at = Some(retry_at);
                set(status, TaskPhase::WaitingForMiners, &waiting_message(delays, observed.candidates.len(), retry_at));
                plan.requeue_after = (retry_at - now).to_std().ok();
                return Ok(());
            }
            Staffing::GiveUp { reason } => {
                set(status, TaskPhase::Failed, &format!("not enough miners: {reason}"));
                return Ok(());
            }
        }
    }

    // 3. One submission per drawn miner; a miner deleted before its submission exists counts
    //    as finished without a model.
    let mut finished = 0usize;
    for miner in &status.selected_miners {
        match observed.submissions.iter().find(|s| &s.miner == miner) {
            Some(submission) if submission.phase.is_terminal() => finished += 1,
            Some(_) => {}
            None => match observed.candidates.iter().find(|c| &c.name == miner) {
                Some(candidate) => plan.submissions.push(build_submission(task, candidate, status, workloads)?),
                None => finished += 1,
            },
        }
    }
    let selected = status.selected_miners.len();
    status.submissions_finished = finished as u32;
    if finished < selected {
        set(status, TaskPhase::Training, &format!("{finished} of {selected} trainers finished"));
        return Ok(());
    }

    // 4. Evaluate what was submitted, then record the outcome.
    let mut succeeded: Vec<&ObservedSubmission> = observed
        .submissions
        .iter()
        .filter(|s| s.phase == SubmissionPhase::Succeeded && status.selected_miners.contains(&s.miner))
        .collect();
    if succeeded.is_empty() {
        set(status, TaskPhase::Failed, "no trainer produced a model");
        return Ok(());
    }
    succeeded.sort_by(|a, b| a.miner.cmp(&b.miner));
    plan.evaluation = Some(build_evaluation(task, &succeeded, status, workloads)?);
    match observed.evaluation {
        Some(evaluation) if evaluation.phase == crate::api::evaluation::EvaluationPhase::Complete => {
            let result = summarize(evaluation, &task.metadata.name.clone().unwrap_or_default());
            let message = match &result.winner {
                Some(winner) => format!("won by {winner} ({} ranked, {} failed)", result.ranked, result.failed),
                None => format!("no valid submission ({} failed)", result.failed),
            };
            status.result = Some(result);
            set(status, TaskPhase::Succeeded, &message);
        }
        Some(evaluation) => {
            let message = format!("{} of {} submissions evaluated", evaluation.evaluated, succeeded.len());
            set(status, TaskPhase::Evaluating, &message);
        }
        None => set(status, TaskPhase::Evaluating, &format!("evaluating {} submissions", succeeded.len())),
    }
    Ok(())
}

fn set(status: &mut TaskStatus, phase: TaskPhase, message: &str) {
    status.phase = phase;
    status.message = message.to_string();
}

fn waiting_message(delays: u32, available: usize, retry_at: DateTime<Utc>) -> String {
    format!("{available} miner(s) available; delay {delays}, retrying at {}", retry_at.to_rfc3339())
}

fn build_submission(
    task: &Task,
    candidate: &Candidate,
    status: &TaskStatus,
    workloads: &WorkloadConfig,
) -> Result<MinerSubmission, BuildError> {
    let (namespace, name, owner) = crate::workloads::owner(task)?;
    let spec = &task.spec;
    let mut submission = MinerSubmission::new(
        &submission_name(&name, &candidate.name),
        MinerSubmissionSpec {
            task: name.clone(),
            miner: candidate.name.clone(),
            task_type: spec.task_type,
            base_model_uri: spec.base_model.uri.clone(),
            base_model_params_b: spec.base_model.params_b,
            data_uri: workloads.data_uri(&namespace, &name),
            artifact_uri: workloads.model_uri(&namespace, &name, &candidate.name),
            hours: status.allocated_hours.unwrap_or_default(),
            gpus: gpus::training_gpus(spec.task_type, spec.base_model.params_b),
            gpu_class: gpu_class(task, workloads),
            image: candidate.image.clone(),
            command: candidate.command.clone(),
            strategy: candidate.strategy.clone(),
            args: candidate.args.clone(),
            seed: task.seed(),
        },
    );
    submission.metadata.namespace = Some(namespace);
    submission.metadata.owner_references = Some(vec![owner]);
    submission.metadata.labels = Some(child_labels(&name, Some(&candidate.name)));
    Ok(submission)
}

fn build_evaluation(
    task: &Task,
    succeeded: &[&ObservedSubmission],
    status: &TaskStatus,
    workloads: &WorkloadConfig,
) -> Result<Evaluation, BuildError> {
    let (namespace, name, owner) = crate::workloads::owner(task)?;
    let spec = &task.spec;
    let fallback = status.training_deadline.unwrap_or(DateTime::UNIX_EPOCH);
    let mut evaluation = Evaluation::new(
        &name,
        EvaluationSpec {
            task: name.clone(),
            task_type: spec.task_type,
            origin: spec.origin,
            base_model_uri: spec.base_model.uri.clone(),
            base_model_params_b: spec.base_model.params_b,
            hours: status.allocated_hours.unwrap_or_default(),
            data_uri: workloads.data_uri(&namespace, &name),
            gpu_class: gpu_class(task, workloads),
            submissions: succeeded
                .iter()
                .map(|s| EvaluatedSubmission {
                    miner: s.miner.clone(),
                    submission: s.name.clone(),
                    artifact_uri: s.artifact_uri.clone(),
                    submitted_at: s.finished_at.unwrap_or(fallback),
                })
                .collect(),
        },
    );
    evaluation.metadata.namespace = Some(namespace);
    evaluation.metadata.owner_references = Some(vec![owner]);
    evaluation.metadata.labels = Some(child_labels(&name, None));
    Ok(evaluation)
}

fn gpu_class(task: &Task, workloads: &WorkloadConfig) -> String {
    task.spec.gpu_class.clone().unwrap_or_else(|| workloads.default_gpu_class.clone())
}

fn child_labels(task: &str, miner: Option<&str>) -> std::collections::BTreeMap<String, String> {
    use crate::workloads::labels;
    let mut labels = std::collections::BTreeMap::from([
        (labels::MANAGED_BY.to_string(), labels::MANAGER.to_string()),
        (labels::TASK.to_string(), crate::workloads::label_value(task)),
    ]);
    if let Some(miner) = miner {
        labels.insert(labels::MINER.to_string(), crate::workloads::label_value(miner));
    }
    labels
}

/// The few numbers a Task keeps from its Evaluation.
pub fn summarize(evaluation: &EvaluationStatus, name: &str) -> TaskResult {
    let winner = evaluation.results.iter().find(|r| r.rank == Some(1));
    TaskResult {
        winner: winner.map(|r| r.miner.clone()),
        best_weighted_loss: winner.and_then(|r| r.weighted_loss),
        best_test_loss: winner.and_then(|r| r.test_loss),
        best_synth_loss: winner.and_then(|r| r.synth_loss),
        ranked: evaluation.ranked,
        failed: evaluation.results.iter().filter(|r| r.state == ResultState::Failed).count() as u32,
        evaluation: name.to_string(),
    }
}

/// One condition per step: `True` once the step is done, `False` when the task failed before
/// it, `Unknown` while it is still ahead.
fn observe_conditions(status: &TaskStatus) -> Vec<Observed> {
    use TaskPhase::*;
    let phase = status.phase;
    let staffed = !status.selected_miners.is_empty();
    let failed = phase == Failed;
    let steps = [
        ("Prepared", staffed || phase == WaitingForMiners, "DatasetSplit", "Preparing"),
        ("Staffed", staffed, "MinersSelected", "WaitingForMiners"),
        ("Trained", matches!(phase, Evaluating | Succeeded), "TrainersFinished", "Training"),
        ("Evaluated", phase == Succeeded, "Scored", "Evaluating"),
    ];
    let mut observed: Vec<Observed> = steps
        .into_iter()
        .map(|(type_, done, reason, waiting)| match (done, failed) {
            (true, _) => Observed::new(type_, Some(true), reason, ""),
            (false, true) => Observed::new(type_, Some(false), "TaskFailed", ""),
            (false, false) => Observed::new(type_, None, waiting, ""),
        })
        .collect();
    let outcome = match phase {
        Succeeded => Observed::new("Succeeded", Some(true), "Succeeded", status.message.clone()),
        Failed => Observed::new("Succeeded", Some(false), "Failed", status.message.clone()),
        _ => Observed::new("Succeeded", None, "InProgress", ""),
    };
    observed.push(outcome);
    observed
}

#[cfg(test)]
#[path = "lifecycle_tests.rs"]
mod tests;
