//! How the operator executes the shared lifecycle state machine ([`crate::tournament`]): pure
//! translations between Kubernetes objects and the state machine's terms. The Task controller
//! gathers objects, turns them into an [`Observation`](crate::tournament::Observation) here,
//! calls [`crate::tournament::decide`], writes the status computed here, and applies the
//! actions with the objects built here.
//!
//! Workloads and their objects (one attempt each, see [`WorkloadId`]):
//! - prepare → Job `<task>-prepare-<attempt>`; its termination message holds the split sizes;
//! - train → MinerSubmission `<task>-<entrant>-<attempt>` (its controller runs the trainer Job);
//! - evaluate → Job `<task>-eval-<entrant>-<attempt>`; its termination message is the result;
//! - the record → the Evaluation `<task>`, which the leaderboard reads.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ContainerStateTerminated, Pod};

use crate::api::conditions::{self, Observed};
use crate::api::evaluation::{EvaluatedSubmission, EvaluationPhase, EvaluationStatus, ResultState, SubmissionResult};
use crate::api::submission::SubmissionPhase;
use crate::api::task::TaskResult;
use crate::api::{Evaluation, EvaluationSpec, MinerSpec, MinerSubmission, MinerSubmissionSpec, Task, TaskStatus};
use crate::mechanism::MechanismConfig;
use crate::mechanism::records::TaskRecord;
use crate::mechanism::scoring;
use crate::tournament::{
    DatasetFacts, EvalReport, Phase, Role, TaskState, TrainingSummary, Work, WorkKind, WorkOutput, WorkloadId,
    WorkloadState,
};
use crate::workloads::{BuildError, WorkloadConfig, evaluator, gpus, labels};

pub fn submission_name(task: &str, id: &WorkloadId) -> String {
    crate::workloads::workload_name(task, id)
}

/// The key (`Kind/name`) under which a task's status records the object of workload `id`: its
/// MinerSubmission for a training, else its Job.
pub fn child_key(task: &str, id: &WorkloadId) -> String {
    use super::ownership::key;
    match id.kind {
        WorkKind::Prepare => key::<Job>(&crate::workloads::prepare::job_name(task, id.attempt)),
        WorkKind::Train => key::<MinerSubmission>(&submission_name(task, id)),
        WorkKind::Synthesize | WorkKind::Seal | WorkKind::Evaluate => {
            key::<Job>(&crate::workloads::workload_name(task, id))
        }
    }
}

/// Where the model of one training attempt goes.
pub fn model_uri(workloads: &WorkloadConfig, namespace: &str, task: &str, id: &WorkloadId) -> String {
    workloads.model_uri(namespace, task, &id.to_string())
}

/// A training attempt's output (the seal's input) and its sealed copy, in the store.
pub fn seal_locations(
    workloads: &WorkloadConfig,
    namespace: &str,
    task: &str,
    training: &WorkloadId,
) -> (String, String) {
    (model_uri(workloads, namespace, task, training), workloads.sealed_uri(namespace, task, &training.to_string()))
}

/// The workload id a child object carries in its labels.
pub fn workload_id(kind: WorkKind, object_labels: &BTreeMap<String, String>) -> Option<WorkloadId> {
    let attempt = object_labels.get(labels::ATTEMPT)?.parse().ok()?;
    let entrant = match kind {
        WorkKind::Prepare | WorkKind::Synthesize => String::new(),
        _ => object_labels.get(labels::MINER)?.clone(),
    };
    let rung = object_labels.get(labels::RUNG).and_then(|r| r.parse().ok()).unwrap_or(0);
    Some(WorkloadId::new(kind, &entrant, attempt).at_rung(rung))
}

fn time(t: &Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::Time>) -> Option<DateTime<Utc>> {
    t.as_ref().and_then(conditions::from_time)
}

fn job_condition(job: &Job, type_: &str) -> Option<k8s_openapi::api::batch::v1::JobCondition> {
    job.status.as_ref()?.conditions.as_ref()?.iter().find(|c| c.type_ == type_ && c.status == "True").cloned()
}

fn terminated(pods: &[Pod], container: &str) -> Option<ContainerStateTerminated> {
    pods.iter().find_map(|pod| {
        pod.status
            .as_ref()?
            .container_statuses
            .iter()
            .flatten()
            .find(|c| c.name == container)?
            .state
            .as_ref()?
            .terminated
            .clone()
    })
}

/// Whether the Job has finished but none of `pods` shows its container's end: the pods were
/// read from a cache older than the Job, and must be read again before the Job is judged.
pub fn pods_behind(job: &Job, pods: &[Pod], container: &str) -> bool {
    let finished = job_condition(job, "Complete").is_some() || job_condition(job, "Failed").is_some();
    finished && terminated(pods, container).is_none()
}

/// Evicted or preempted pods are not the workload's fault: worth another attempt.
fn lost(pods: &[Pod]) -> bool {
    pods.iter().any(|p| {
        let reason = p.status.as_ref().and_then(|s| s.reason.clone()).unwrap_or_default();
        matches!(reason.as_str(), "Evicted" | "Preempting" | "NodeLost" | "Terminated")
    })
}

/// A Job's state; `output` turns the finished container into the workload's output (or why not).
fn job_state(
    job: &Job,
    pods: &[Pod],
    container: &str,
    output: impl Fn(&ContainerStateTerminated) -> Result<WorkOutput, (String, bool)>,
) -> WorkloadState {
    let created = job.metadata.creation_timestamp.as_ref().and_then(conditions::from_time).unwrap_or_default();
    let status = job.status.clone().unwrap_or_default();
    let started_at = time(&status.start_time).unwrap_or(created);
    if let Some(finished) = terminated(pods, container) {
        let finished_at = time(&finished.finished_at).unwrap_or(started_at);
        return match output(&finished) {
            Ok(output) => WorkloadState::Succeeded { started_at, finished_at, output },
            Err((reason, retryable)) => WorkloadState::Failed {
                started_at: Some(started_at),
                finished_at,
                reason,
                log_tail: String::new(),
                retryable,
            },
        };
    }
    if let Some(failed) = job_condition(job, "Failed") {
        return WorkloadState::Failed {
            started_at: Some(started_at),
            finished_at: time(&failed.last_transition_time).unwrap_or(started_at),
            reason: format!("{}: {}", failed.reason.unwrap_or_default(), failed.message.unwrap_or_default()),
            log_tail: String::new(),
            retryable: lost(pods),
        };
    }
    if let Some(complete) = job_condition(job, "Complete") {
        // The Job controller counts any pod it adopted (one matching its selector); only its
        // own pod's result counts here, so a Job completed by another is no result, and not
        // the miner's doing.
        return WorkloadState::Failed {
            started_at: Some(started_at),
            finished_at: time(&complete.last_transition_time).unwrap_or(started_at),
            reason: "the Job completed without a result from a pod of its own".to_string(),
            log_tail: String::new(),
            retryable: true,
        };
    }
    if crate::workloads::awaiting_admission(job) {
        WorkloadState::Queued
    } else if status.ready.unwrap_or(0) > 0 {
        WorkloadState::Running { started_at }
    } else {
        WorkloadState::Pending { since: time(&status.start_time) }
    }
}

/// The preparation: its termination message is `{"rows","train","test","synthetic"}`.
pub fn preparation_state(job: &Job, pods: &[Pod]) -> WorkloadState {
    job_state(job, pods, "prepare", |finished| {
        let message = finished.message.as_deref().unwrap_or("").trim();
        if finished.exit_code != 0 {
            let detail = if message.is_empty() { String::new() } else { format!(": {message}") };
            return Err((format!("exited with code {}{detail}", finished.exit_code), false));
        }
        serde_json::from_str::<DatasetFacts>(message)
            .map(WorkOutput::Prepared)
            .map_err(|e| (format!("the split sizes in the termination message are unreadable: {e}"), false))
    })
}

/// The synthetic set's generation: the generator's `done` record as the termination message.
/// A failure is the task's (its generator or data), never worth a retry unless the pod was lost.
pub fn synthesis_state(job: &Job, pods: &[Pod]) -> WorkloadState {
    job_state(job, pods, crate::workloads::synthesize::CONTAINER, |finished| {
        if finished.exit_code != 0 {
            let detail = finished.message.as_deref().unwrap_or("").trim();
            return Err((format!("the generator exited with code {}: {detail}", finished.exit_code), false));
        }
        crate::workloads::synthesize::summary(finished.message.as_deref().unwrap_or(""))
            .map(WorkOutput::Synthesized)
            .map_err(|e| (e, false))
    })
}

/// An evaluation: only the evaluator container's termination message counts. A malformed or
/// missing message fails this entrant's evaluation, never the task; a crash without a result
/// is worth another attempt.
pub fn evaluation_state(job: &Job, pods: &[Pod]) -> WorkloadState {
    job_state(job, pods, evaluator::EVALUATOR_CONTAINER, |finished| {
        match EvalReport::parse(finished.message.as_deref().unwrap_or("")) {
            Ok(report) if report.worth_retry() => Err((report.failure_reason().unwrap_or_default(), true)),
            Ok(report) => Ok(WorkOutput::Evaluated(report)),
            Err(e) if finished.exit_code == 0 => Err((format!("malformed evaluator message: {e}"), false)),
            Err(e) => Err((format!("evaluator exited with code {}: {e}", finished.exit_code), true)),
        }
    })
}

/// The workloads the state waits for (requested or running): the only ones to observe.
pub fn in_flight(state: &TaskState) -> Vec<WorkloadId> {
    let current = |work: &Work| matches!(work, Work::Requested { .. } | Work::Active { .. }).then(|| work.attempt());
    let task_wide = [(WorkKind::Prepare, &state.prepare), (WorkKind::Synthesize, &state.synthesize)];
    let mut ids: Vec<WorkloadId> = task_wide
        .into_iter()
        .filter_map(|(kind, work)| current(work).map(|attempt| WorkloadId::new(kind, "", attempt)))
        .collect();
    for entrant in &state.entrants {
        let works = [
            (WorkKind::Train, &entrant.training),
            (WorkKind::Seal, &entrant.seal),
            (WorkKind::Evaluate, &entrant.evaluation),
        ];
        for (kind, work) in works {
            if let Some(attempt) = current(work) {
                ids.push(WorkloadId::new(kind, &entrant.name, attempt).at_rung(entrant.rung));
            }
        }
    }
    ids
}

/// A workload whose name someone else's object holds: that attempt fails and, not being the
/// miner's fault, is retried under the next attempt's name.
pub fn not_adopted(now: DateTime<Utc>, squatter: &str) -> WorkloadState {
    WorkloadState::Failed {
        started_at: None,
        finished_at: now,
        reason: format!("{squatter} holds this workload's name and was not created by the operator; not adopted"),
        log_tail: String::new(),
        retryable: true,
    }
}

/// The condition reason of a submission whose trainer Job's name someone else's Job held.
pub const NOT_ADOPTED: &str = "NotAdopted";

/// A seal: its termination message is the seal's report. A refusal (`"ok": false`) fails the
/// submission for good; a crash without a report is worth another attempt.
pub fn seal_state(job: &Job, pods: &[Pod]) -> WorkloadState {
    job_state(job, pods, crate::workloads::seal::SEAL_CONTAINER, |finished| {
        let message = finished.message.as_deref().unwrap_or("").trim();
        match (serde_json::from_str::<crate::seal::SealReport>(message), finished.exit_code) {
            (Ok(report), 0) => report.into_output().map_err(|why| (why, false)),
            (Ok(report), code) => {
                Err((format!("seal exited with code {code}: {}", report.failure.unwrap_or_default()), true))
            }
            (Err(e), 0) => Err((format!("the seal's report is unreadable: {e}"), false)),
            (Err(_), code) => Err((format!("seal exited with code {code}"), true)),
        }
    })
}

/// A training, as its MinerSubmission reports it.
pub fn training_state(submission: &MinerSubmission) -> WorkloadState {
    let created = submission.metadata.creation_timestamp.as_ref().and_then(conditions::from_time).unwrap_or_default();
    let status = submission.status.clone().unwrap_or_default();
    let started_at = status.started_at.unwrap_or(created);
    match status.phase {
        SubmissionPhase::Pending => WorkloadState::Pending { since: status.started_at },
        SubmissionPhase::Queued => WorkloadState::Queued,
        SubmissionPhase::Training => WorkloadState::Running { started_at },
        SubmissionPhase::Succeeded => WorkloadState::Succeeded {
            started_at,
            finished_at: status.finished_at.unwrap_or(started_at),
            output: WorkOutput::Trained(TrainingSummary::default()),
        },
        SubmissionPhase::Failed => WorkloadState::Failed {
            started_at: Some(started_at),
            finished_at: status.finished_at.unwrap_or(started_at),
            retryable: status.conditions.iter().any(|c| c.reason == NOT_ADOPTED),
            reason: status.failure_reason.unwrap_or_else(|| "the trainer failed".into()),
            log_tail: String::new(),
        },
    }
}

/// The MinerSubmission for `StartTraining`. A `Miner` object brings its own image, command and
/// arguments; an inline miner, the baseline and anything else run the reference trainer.
#[allow(clippy::too_many_arguments)]
pub fn build_submission(
    task: &Task,
    id: &WorkloadId,
    strategy: Option<String>,
    (hours, deadline, resume_from): (f64, Option<DateTime<Utc>>, Option<&WorkloadId>),
    miner: Option<&MinerSpec>,
    workloads: &WorkloadConfig,
    now: DateTime<Utc>,
) -> Result<MinerSubmission, BuildError> {
    let (namespace, name, owner) = crate::workloads::owner(task)?;
    let spec = &task.spec;
    // A deadline caps the allotment: the Job may not run past it.
    let hours = crate::workloads::contract::budget_hours(hours, deadline, now);
    let mut submission = MinerSubmission::new(
        &submission_name(&name, id),
        MinerSubmissionSpec {
            task: name.clone(),
            miner: id.entrant.clone(),
            task_type: spec.task_type,
            base_model_uri: spec.base_model.uri.clone(),
            base_model_params_b: spec.base_model.params_b,
            data_uri: workloads.data_uri(&namespace, &name),
            columns: spec.dataset.columns.clone(),
            artifact_uri: model_uri(workloads, &namespace, &name, id),
            resume_uri: resume_from.map(|from| model_uri(workloads, &namespace, &name, from)),
            hours,
            gpus: gpus::training_gpus(spec.task_type, spec.base_model.params_b),
            gpu_class: spec.gpu_class.clone().unwrap_or_else(|| workloads.default_gpu_class.clone()),
            image: miner.and_then(|m| m.image.clone()),
            command: miner.map(|m| m.command.clone()).unwrap_or_default(),
            strategy: strategy.or_else(|| miner.and_then(|m| m.strategy.clone())),
            args: miner.map(|m| m.args.clone()).unwrap_or_default(),
            seed: task.seed(),
        },
    );
    submission.metadata.namespace = Some(namespace);
    submission.metadata.owner_references = Some(vec![owner]);
    submission.metadata.labels = Some(BTreeMap::from([
        (labels::MANAGED_BY.to_string(), labels::MANAGER.to_string()),
        (labels::TASK.to_string(), crate::workloads::label_value(&name)),
        (labels::MINER.to_string(), crate::workloads::label_value(&id.entrant)),
        (labels::ATTEMPT.to_string(), id.attempt.to_string()),
    ]));
    if id.rung > 0 {
        submission.metadata.labels.get_or_insert_default().insert(labels::RUNG.to_string(), id.rung.to_string());
    }
    Ok(submission)
}

/// The Evaluation object for `RecordResults`: the record's submissions with every miner's
/// evaluator result, scored by the mechanism exactly as `gradients score` scores the record.
pub fn build_evaluation(
    task: &Task,
    record: &TaskRecord,
    state: &TaskState,
    workloads: &WorkloadConfig,
    mechanism: &MechanismConfig,
    now: DateTime<Utc>,
) -> Result<(Evaluation, EvaluationStatus), BuildError> {
    let (namespace, name, owner) = crate::workloads::owner(task)?;
    let spec = &task.spec;
    let mut submissions = Vec::new();
    let mut results = Vec::new();
    for submitted in &record.submissions {
        let Some(entrant) = state.entrant(&submitted.miner) else { continue };
        let training = entrant.workload_id(WorkKind::Train);
        submissions.push(EvaluatedSubmission {
            miner: entrant.name.clone(),
            submission: submission_name(&name, &training),
            artifact_uri: model_uri(workloads, &namespace, &name, &training),
            submitted_at: submitted.submitted_at,
            rung: submitted.rung,
        });
        let outcome = crate::tournament::outcome(entrant);
        results.push(SubmissionResult {
            miner: entrant.name.clone(),
            state: if outcome.is_scored() { ResultState::Evaluated } else { ResultState::Failed },
            test_loss: submitted.test_loss,
            synth_loss: submitted.synth_loss,
            text_guided_loss: submitted.text_guided_loss,
            no_text_loss: submitted.no_text_loss,
            weights_sha256: outcome.report.and_then(|r| r.weights_sha256.clone()),
            model_digest: outcome.sealed.map(|s| s.digest.clone()),
            failure: outcome.failure.map(|f| truncate(&f, 512)),
            ..SubmissionResult::default()
        });
    }
    let scored = scoring::score_task(mechanism, record);
    for result in &mut results {
        if let Some(verdict) = scored.submissions.iter().find(|s| s.miner == result.miner) {
            result.status = Some(verdict.status.label().to_string());
            result.duplicate_of = verdict.duplicate_of.clone();
            result.weighted_loss = verdict.weighted_loss;
            result.rank = verdict.rank.map(|r| r as u32);
            result.score = Some(verdict.score);
            result.adjusted_score = Some(verdict.adjusted_score);
        }
    }
    let mut evaluation = Evaluation::new(
        &name,
        EvaluationSpec {
            task: name.clone(),
            task_type: spec.task_type,
            origin: spec.origin,
            base_model_uri: spec.base_model.uri.clone(),
            base_model_params_b: record.model_params_b,
            hours: record.hours,
            data_uri: workloads.data_uri(&namespace, &name),
            gpu_class: spec.gpu_class.clone().unwrap_or_else(|| workloads.default_gpu_class.clone()),
            submissions,
        },
    );
    evaluation.metadata.namespace = Some(namespace);
    evaluation.metadata.owner_references = Some(vec![owner]);
    evaluation.metadata.labels = Some(BTreeMap::from([
        (labels::MANAGED_BY.to_string(), labels::MANAGER.to_string()),
        (labels::TASK.to_string(), crate::workloads::label_value(&name)),
    ]));
    let status = EvaluationStatus {
        phase: EvaluationPhase::Complete,
        observed_generation: Some(1),
        conditions: conditions::merge(&[], &[Observed::new("Evaluated", Some(true), "Scored", "")], Some(1), now),
        evaluated: results.len() as u32,
        ranked: scored.ranked as u32,
        winner: results.iter().find(|r| r.rank == Some(1)).map(|r| r.miner.clone()),
        task_weight: Some(scored.task_weight),
        finished_at: Some(record.finished_at),
        results,
    };
    Ok((evaluation, status))
}

/// At most `limit` bytes of `text` (on a character boundary), with `…` when cut.
pub(crate) fn truncate(text: &str, limit: usize) -> String {
    if text.len() <= limit {
        return text.to_string();
    }
    let mut end = limit;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

/// The Task's status from the lifecycle state (and the Evaluation once recorded).
pub fn task_status(
    name: &str,
    previous: &TaskStatus,
    state: &TaskState,
    evaluation: Option<&EvaluationStatus>,
    generation: Option<i64>,
    now: DateTime<Utc>,
) -> TaskStatus {
    let miners: Vec<&crate::tournament::Entrant> = state.entrants.iter().filter(|e| e.role == Role::Miner).collect();
    let trainees: Vec<&crate::tournament::Entrant> =
        state.entrants.iter().filter(|e| e.role != Role::BaseModel).collect();
    let trained = trainees.iter().filter(|e| e.training.is_terminal()).count();
    let evaluated = state.entrants.iter().filter(|e| e.evaluation.is_terminal()).count();
    let result = evaluation.filter(|e| e.phase == EvaluationPhase::Complete).map(|e| summarize(e, name));
    let phase = state.phase;
    let message = state.message.clone().unwrap_or_else(|| match state.phase {
        Phase::Pending | Phase::Preparing => "splitting the dataset".to_string(),
        Phase::Selecting => "drawing the miners".to_string(),
        Phase::Training => format!("{trained} of {} trainings ended", trainees.len()),
        Phase::Evaluating => format!("{evaluated} of {} evaluations done", state.entrants.len()),
        Phase::Recording => "recording the scores".to_string(),
        Phase::Succeeded => match result.as_ref().and_then(|r| r.winner.clone()) {
            Some(winner) => format!("won by {winner}"),
            None => "scored".to_string(),
        },
        Phase::Delayed | Phase::Failed => String::new(),
    });
    let mut status = TaskStatus {
        phase,
        phase_started_at: if previous.phase == phase && previous.phase_started_at.is_some() {
            previous.phase_started_at
        } else {
            Some(now)
        },
        message,
        observed_generation: generation,
        conditions: Vec::new(),
        selected_miners: miners.iter().map(|e| e.name.clone()).collect(),
        miners_selected: miners.len() as u32,
        submissions_finished: trained as u32,
        allocated_hours: state.hours,
        delays: state.delays,
        retry_at: state.retry_at,
        result,
        lifecycle: Some(state.clone()),
        children: previous.children.clone(),
        creating: previous.creating.clone(),
    };
    status.conditions = conditions::merge(&previous.conditions, &observe_conditions(state), generation, now);
    status
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

/// One condition per step: `True` once done, `False` when the task failed before it,
/// `Unknown` while it is still ahead.
fn observe_conditions(state: &TaskState) -> Vec<Observed> {
    let failed = state.phase == Phase::Failed;
    let past = |phases: &[Phase]| phases.contains(&state.phase);
    let steps = [
        ("Prepared", matches!(state.prepare, Work::Succeeded { .. }), "DatasetSplit", "Preparing"),
        ("Staffed", !state.entrants.is_empty(), "MinersSelected", "WaitingForMiners"),
        ("Trained", past(&[Phase::Evaluating, Phase::Recording, Phase::Succeeded]), "TrainingsEnded", "Training"),
        ("Evaluated", past(&[Phase::Recording, Phase::Succeeded]), "Scored", "Evaluating"),
    ];
    let mut observed: Vec<Observed> = steps
        .into_iter()
        .map(|(type_, done, reason, waiting)| match (done, failed) {
            (true, _) => Observed::new(type_, Some(true), reason, ""),
            (false, true) => Observed::new(type_, Some(false), "TaskFailed", ""),
            (false, false) => Observed::new(type_, None, waiting, ""),
        })
        .collect();
    observed.push(match state.phase {
        Phase::Succeeded => Observed::new("Succeeded", Some(true), "Succeeded", ""),
        Phase::Failed => Observed::new("Succeeded", Some(false), "Failed", state.message.clone().unwrap_or_default()),
        _ => Observed::new("Succeeded", None, "InProgress", ""),
    });
    observed
}

#[cfg(test)]
#[path = "lifecycle_tests.rs"]
mod tests;
