//! The MinerSubmission controller: one trainer Job per submission, its state in the status.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::core::{DeserializeGuard, PartialObjectMeta};
use kube::runtime::controller::{self, Action, Controller};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Resource, ResourceExt};

use super::caches::Shared;
use super::context::{Context, DEBOUNCE, apply_status, log_stream_errors, object_key, scoped};
use super::error::Result;
use super::lifecycle;
use super::line;
use super::ownership::{self, Claim, Ownership, Record};
use crate::api::conditions::{self, Observed};
use crate::api::submission::{MinerSubmissionStatus, SubmissionPhase};
use crate::api::{MinerSubmission, Task};
use crate::workloads::{labels, trainer};

const NAME: &str = "submission";

/// `submissions`: the store the Task controller's reconciles read too, and its changes.
pub fn controller(
    ctx: Arc<Context>,
    namespace: Option<&str>,
    submissions: Shared<DeserializeGuard<MinerSubmission>>,
    tasks: Store<DeserializeGuard<Task>>,
    shutdown: super::Stop,
) -> (Store<DeserializeGuard<MinerSubmission>>, BoxFuture<'static, ()>) {
    let client = ctx.client.clone();
    let trainers = watcher(
        scoped::<PartialObjectMeta<Job>>(&client, namespace),
        watcher::Config::default().labels(&format!("{}={}", labels::ROLE, labels::ROLE_TRAINER)),
    )
    .default_backoff()
    .touched_objects();
    // Every change, to a submission or to its trainer Job, puts the submission in line
    // (`super::line`): the line hands it to kube-runtime when its turn nears.
    let line = ctx.line(NAME);
    let skipped = ctx.metrics.triggers_skipped.with_label_values(&[NAME]);
    let own = {
        let (line, skipped) = (line.clone(), skipped.clone());
        submissions.changes.filter(move |submission| {
            line.trigger_all(line::itself(submission.as_ref()), &skipped);
            futures::future::ready(false)
        })
    };
    let controller = Controller::for_shared_stream(own, submissions.store)
        .owns_stream(line.line_by(trainers, skipped, line::owners::<MinerSubmission, _>))
        .reconcile_on(line.handover_refs(namespace))
        .with_config(controller::Config::default().debounce(DEBOUNCE))
        .graceful_shutdown_on(shutdown);
    let store = controller.store();
    let run = controller
        .run(
            move |object, ctx| reconcile(object, ctx, tasks.clone()),
            |object, error, ctx| ctx.error_policy(NAME, object, error),
            ctx.clone(),
        )
        .for_each(log_stream_errors(NAME, ctx))
        .boxed();
    (store, run)
}

pub(super) async fn reconcile(
    guarded: Arc<DeserializeGuard<MinerSubmission>>,
    ctx: Arc<Context>,
    tasks: Store<DeserializeGuard<Task>>,
) -> Result<Action> {
    let key = object_key(guarded.as_ref());
    let run_ctx = ctx.clone();
    ctx.instrumented(NAME, key, move || reconcile_submission(guarded, run_ctx, tasks)).await
}

async fn reconcile_submission(
    guarded: Arc<DeserializeGuard<MinerSubmission>>,
    ctx: Arc<Context>,
    tasks: Store<DeserializeGuard<Task>>,
) -> Result<Action> {
    let Some(cached) = ctx.readable(guarded.as_ref()).await else { return Ok(Action::await_change()) };
    let namespace = cached.namespace().unwrap_or_default();
    let api = Api::<MinerSubmission>::namespaced(ctx.client.clone(), &namespace);
    let Some(submission) = api.get_opt(&cached.name_any()).await? else { return Ok(Action::await_change()) };
    if submission.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    // Only a submission that a Task's reconcile created and recorded runs a trainer: anyone
    // else's MinerSubmission is left alone, whatever it says.
    match trusted(&ctx, &tasks, &submission, &namespace).await? {
        Trust::Recorded => {}
        Trust::NotYet => return Ok(Action::requeue(Duration::from_secs(2))),
        Trust::Foreign(why) => {
            ctx.event(&submission, true, lifecycle::NOT_ADOPTED, why).await;
            return Ok(Action::await_change());
        }
    }
    let previous = submission.status.clone().unwrap_or_default();
    let generation = submission.metadata.generation;
    // A finished submission keeps its verdict even when its Job is gone.
    let status = if previous.phase.is_terminal() {
        next_status(&previous, None, generation, Utc::now())
    } else {
        let access = ctx.object_access(&[&submission.spec.base_model_uri]).await?;
        let job = match trainer::trainer_job(&submission, &ctx.workloads, access.as_ref()) {
            Ok(job) => job,
            // A submission that asks for what no trainer may have fails; no Job is created.
            Err(refused) if refused.is_refusal() => {
                let status = refused_status(&previous, &refused.to_string(), generation, Utc::now());
                apply_status(&ctx.client, &submission, &status).await?;
                ctx.event(&submission, true, "Refused", refused.to_string()).await;
                return Ok(Action::await_change());
            }
            Err(e) => return Err(e.into()),
        };
        let record = Record { uid: previous.job_uid.as_deref(), commitment: previous.job_commitment.as_deref() };
        let commit = |commitment: String| {
            let committed = MinerSubmissionStatus { job_commitment: Some(commitment), ..previous.clone() };
            let (client, submission) = (&ctx.client, &submission);
            async move { apply_status(client, submission, &committed).await }
        };
        match ownership::claim(&ctx.client, &job, record, commit).await? {
            Claim::Ours(job) | Claim::Unrecorded(job) => next_status(&previous, Some(&job), generation, Utc::now()),
            Claim::Foreign(job) => not_adopted(&previous, &ownership::describe(&job), generation, Utc::now()),
        }
    };
    if status != previous {
        apply_status(&ctx.client, &submission, &status).await?;
        if status.phase != previous.phase {
            let note = match &status.failure_reason {
                Some(reason) => format!("trainer of {}: {reason}", submission.spec.miner),
                None => format!("trainer of {} is {}", submission.spec.miner, status.phase.as_str()),
            };
            ctx.event(&submission, status.phase == SubmissionPhase::Failed, status.phase.as_str(), note).await;
        }
    }
    Ok(Action::await_change())
}

/// Whether a submission is one the operator created.
#[derive(Debug, PartialEq, Eq)]
pub enum Trust {
    /// Its controlling Task recorded its uid.
    Recorded,
    /// Just created (its token matches the Task's commitment): the Task's reconcile records
    /// its uid right after creating it, or adopts it after a crash.
    NotYet,
    /// Not created by the operator, with why.
    Foreign(String),
}

/// Whether the submission is the operator's. The Task controller's cache answers for one its
/// Task recorded (a record once made stays the operator's, however old the copy, and saves a
/// GET per reconcile); anything else is judged against the Task read fresh.
async fn trusted(
    ctx: &Context,
    tasks: &Store<DeserializeGuard<Task>>,
    submission: &MinerSubmission,
    namespace: &str,
) -> Result<Trust> {
    let Some(owner) = controlling_task(submission).map(|o| o.name.as_str()) else {
        return Ok(trust(submission, None));
    };
    let cached = tasks.get(&ObjectRef::new(owner).within(namespace));
    if let Some(task) = cached.as_ref().and_then(|guarded| guarded.0.as_ref().ok())
        && trust(submission, Some(task)) == Trust::Recorded
    {
        return Ok(Trust::Recorded);
    }
    let fresh = Api::<Task>::namespaced(ctx.client.clone(), namespace).get_opt(owner).await?;
    Ok(trust(submission, fresh.as_ref()))
}

/// The Task that controls the submission, if one does.
fn controlling_task(submission: &MinerSubmission) -> Option<&OwnerReference> {
    submission.owner_references().iter().find(|o| o.controller == Some(true) && o.kind == "Task")
}

pub fn trust(submission: &MinerSubmission, owner: Option<&Task>) -> Trust {
    let name = submission.name_any();
    let Some(reference) = controlling_task(submission) else {
        return Trust::Foreign(format!("MinerSubmission {name} is not controlled by a Task; no trainer runs for it"));
    };
    let Some(task) = owner.filter(|t| t.uid().as_deref() == Some(reference.uid.as_str())) else {
        return Trust::Foreign(format!(
            "MinerSubmission {name} names Task {} (uid {}), which does not exist",
            reference.name, reference.uid
        ));
    };
    let key = ownership::key::<MinerSubmission>(&name);
    let status = task.status.as_ref();
    let record = Record {
        uid: status.and_then(|s| s.children.get(&key)).map(String::as_str),
        commitment: status.and_then(|s| s.creating.get(&key)).map(String::as_str),
    };
    match ownership::ownership(Some(submission.meta()), record) {
        Ownership::Ours => Trust::Recorded,
        Ownership::Unrecorded => Trust::NotYet,
        Ownership::Absent | Ownership::Foreign => Trust::Foreign(format!(
            "MinerSubmission {name} was not created by the operator for Task {} (uid {}, written by {})",
            reference.name,
            submission.uid().unwrap_or_default(),
            ownership::describe(submission)
        )),
    }
}

/// The status of a submission whose trainer Job's name someone else's Job holds: failed, not
/// the miner's fault (the Task retries it under a new name).
pub fn not_adopted(
    previous: &MinerSubmissionStatus,
    squatter: &str,
    generation: Option<i64>,
    now: DateTime<Utc>,
) -> MinerSubmissionStatus {
    let reason = format!("{squatter} holds the trainer Job's name; not created by the operator, not adopted");
    failed_without_training(previous, lifecycle::NOT_ADOPTED, &reason, generation, now)
}

/// The status of a submission refused before any Job: failed, with the reason.
pub fn refused_status(
    previous: &MinerSubmissionStatus,
    reason: &str,
    generation: Option<i64>,
    now: DateTime<Utc>,
) -> MinerSubmissionStatus {
    failed_without_training(previous, "Refused", reason, generation, now)
}

fn failed_without_training(
    previous: &MinerSubmissionStatus,
    category: &'static str,
    reason: &str,
    generation: Option<i64>,
    now: DateTime<Utc>,
) -> MinerSubmissionStatus {
    let mut status = previous.clone();
    status.observed_generation = generation;
    status.phase = SubmissionPhase::Failed;
    status.finished_at = Some(now);
    status.failure_reason = Some(reason.to_string());
    let failed = Observed::new("Trained", Some(false), category, reason);
    status.conditions = conditions::merge(&previous.conditions, &[failed], generation, now);
    status
}

/// The status from the trainer Job's status. Timestamps are copied from the Job, so the same
/// Job always gives the same status.
pub fn next_status(
    previous: &MinerSubmissionStatus,
    job: Option<&Job>,
    generation: Option<i64>,
    now: DateTime<Utc>,
) -> MinerSubmissionStatus {
    let mut status = previous.clone();
    status.observed_generation = generation;
    if let Some(job) = job.filter(|_| !previous.phase.is_terminal()) {
        status.job = job.metadata.name.clone();
        status.job_uid = job.metadata.uid.clone();
        status.job_commitment = None;
        let job_status = job.status.clone().unwrap_or_default();
        let time = |t: &Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::Time>| {
            t.as_ref().and_then(conditions::from_time)
        };
        let condition = |type_: &str| {
            job_status.conditions.iter().flatten().find(|c| c.type_ == type_ && c.status == "True").cloned()
        };
        status.started_at = time(&job_status.start_time).or(status.started_at);
        if let Some(complete) = condition("Complete") {
            status.phase = SubmissionPhase::Succeeded;
            status.finished_at = time(&job_status.completion_time).or(time(&complete.last_transition_time));
        } else if let Some(failed) = condition("Failed") {
            status.phase = SubmissionPhase::Failed;
            status.finished_at = time(&failed.last_transition_time);
            status.failure_reason = Some(match failed.message.filter(|m| !m.is_empty()) {
                Some(message) => format!("{}: {message}", failed.reason.unwrap_or_default()),
                None => failed.reason.unwrap_or_else(|| "Failed".to_string()),
            });
        } else if crate::workloads::awaiting_admission(job) {
            // Kueue holds the Job until its quota admits it (and suspends it again to preempt).
            status.phase = SubmissionPhase::Queued;
        } else if job_status.ready.unwrap_or(0) > 0 {
            // A ready pod is a running trainer; an active one may still wait for GPUs.
            status.phase = SubmissionPhase::Training;
        } else {
            status.phase = SubmissionPhase::Pending;
        }
    }
    let trained = match status.phase {
        SubmissionPhase::Succeeded => Observed::new("Trained", Some(true), "TrainerSucceeded", ""),
        SubmissionPhase::Failed => {
            Observed::new("Trained", Some(false), "TrainerFailed", status.failure_reason.clone().unwrap_or_default())
        }
        SubmissionPhase::Training => Observed::new("Trained", None, "Training", ""),
        SubmissionPhase::Pending => Observed::new("Trained", None, "WaitingForGpus", ""),
        SubmissionPhase::Queued => Observed::new("Trained", None, "WaitingForAdmission", ""),
    };
    status.conditions = conditions::merge(&previous.conditions, &[trained], generation, now);
    status
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(status: serde_json::Value) -> Job {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "t-m-train"},
            "status": status,
        }))
        .unwrap()
    }

    fn now() -> DateTime<Utc> {
        "2026-11-26T12:00:00Z".parse().unwrap()
    }

    #[test]
    fn job_states_map_to_phases() {
        let pending = next_status(&Default::default(), Some(&job(serde_json::json!({"active": 1}))), Some(1), now());
        assert_eq!(pending.phase, SubmissionPhase::Pending);
        let running = job(serde_json::json!({"active": 1, "ready": 1, "startTime": "2026-11-26T10:00:00Z"}));
        let training = next_status(&pending, Some(&running), Some(1), now());
        assert_eq!(training.phase, SubmissionPhase::Training);
        assert_eq!(training.started_at, Some("2026-11-26T10:00:00Z".parse().unwrap()));
        let done =
            job(serde_json::json!({"startTime": "2026-11-26T10:00:00Z", "completionTime": "2026-11-26T11:00:00Z",
            "conditions": [{"type": "Complete", "status": "True", "lastTransitionTime": "2026-11-26T11:00:00Z"}]}));
        let succeeded = next_status(&training, Some(&done), Some(1), now());
        assert_eq!(succeeded.phase, SubmissionPhase::Succeeded);
        assert_eq!(succeeded.finished_at, Some("2026-11-26T11:00:00Z".parse().unwrap()));
        assert!(conditions::is_true(&succeeded.conditions, "Trained"));
        // Idempotent: the same Job later gives the same status.
        assert_eq!(next_status(&succeeded, Some(&done), Some(1), now() + chrono::Duration::hours(1)), succeeded);
    }

    #[test]
    fn a_suspended_job_is_queued_and_its_training_waits_without_a_clock() {
        use crate::tournament::WorkloadState;
        use k8s_openapi::api::batch::v1::JobSpec;
        let mut suspended = job(serde_json::json!({}));
        suspended.spec = Some(JobSpec { suspend: Some(true), ..JobSpec::default() });
        let queued = next_status(&Default::default(), Some(&suspended), Some(1), now());
        assert_eq!(queued.phase, SubmissionPhase::Queued);
        assert_eq!(queued.conditions[0].reason, "WaitingForAdmission");
        let mut submission = submission(None, None);
        submission.status = Some(queued.clone());
        assert_eq!(super::super::lifecycle::training_state(&submission), WorkloadState::Queued);
        // Resumed by Kueue but not yet started by the Job controller (no startTime): still
        // waiting for admission, not a pending wait counted from the request.
        let mut resumed = job(serde_json::json!({}));
        resumed.metadata.labels = Some([(crate::workloads::labels::KUEUE_QUEUE.to_string(), "q".to_string())].into());
        let still_queued = next_status(&queued, Some(&resumed), Some(1), now());
        assert_eq!(still_queued.phase, SubmissionPhase::Queued);
        // Admitted (resumed): the Job's startTime is the admission, the pending clock's start.
        let mut admitted = job(serde_json::json!({"active": 1, "startTime": "2026-11-26T11:40:00Z"}));
        admitted.metadata.labels = resumed.metadata.labels.clone();
        submission.status = Some(next_status(&queued, Some(&admitted), Some(1), now()));
        assert_eq!(
            super::super::lifecycle::training_state(&submission),
            WorkloadState::Pending { since: Some("2026-11-26T11:40:00Z".parse().unwrap()) }
        );
    }

    fn submission(owner_uid: Option<&str>, token: Option<&str>) -> MinerSubmission {
        let owners = owner_uid.map(|uid| {
            serde_json::json!([{"apiVersion": "gradients.io/v1alpha1", "kind": "Task", "name": "t", "uid": uid,
                "controller": true}])
        });
        let annotations = token.map(|t| serde_json::json!({ownership::CREATION_TOKEN: t}));
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "t-m-1", "namespace": "ns", "uid": "s-1", "creationTimestamp": "2026-11-26T11:00:00Z",
                "ownerReferences": owners, "annotations": annotations},
            "spec": {"task": "t", "miner": "m", "taskType": "Dpo", "baseModelUri": "/m", "baseModelParamsB": 3,
                "dataUri": "/d", "artifactUri": "/a", "hours": 1, "gpus": 1, "gpuClass": "h100", "seed": 1},
        }))
        .unwrap()
    }

    /// Task `t` that recorded `recorded` as the uid of submission t-m-1, or `committed` before
    /// creating it.
    fn task(uid: &str, recorded: Option<&str>, committed: Option<&str>) -> Task {
        let entry = |value: Option<&str>| -> serde_json::Map<String, serde_json::Value> {
            value.map(|v| ("MinerSubmission/t-m-1".to_string(), serde_json::json!(v))).into_iter().collect()
        };
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "t", "namespace": "ns", "uid": uid},
            "spec": {"taskType": "Dpo", "baseModel": {"uri": "/m", "paramsB": 3}, "dataset": {"uri": "/d"}, "hours": 1},
            "status": {"children": entry(recorded), "creating": entry(committed)},
        }))
        .unwrap()
    }

    #[test]
    fn only_a_submission_its_task_recorded_runs_a_trainer() {
        let recorded = task("t-uid", Some("s-1"), None);
        assert_eq!(trust(&submission(Some("t-uid"), None), Some(&recorded)), Trust::Recorded);
        // Made by a user: no owner, or an owner reference copied onto it, or a stale Task's.
        assert!(matches!(trust(&submission(None, None), Some(&recorded)), Trust::Foreign(_)));
        let unrecorded = task("t-uid", None, None);
        match trust(&submission(Some("t-uid"), None), Some(&unrecorded)) {
            Trust::Foreign(why) => {
                assert!(why.contains("t-m-1") && why.contains("not created by the operator"), "{why}")
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(trust(&submission(Some("old-uid"), None), Some(&recorded)), Trust::Foreign(_)));
        assert!(matches!(trust(&submission(Some("t-uid"), None), None), Trust::Foreign(_)));
        let other = task("t-uid", Some("s-2"), None);
        assert!(matches!(trust(&submission(Some("t-uid"), None), Some(&other)), Trust::Foreign(_)));
    }

    #[test]
    fn a_submission_created_before_its_uid_was_recorded_waits_for_its_task() {
        let token = ownership::new_token();
        let committed = task("t-uid", None, Some(&ownership::commitment(&token)));
        // However long the operator was down: the token, not the age, says whose it is.
        assert_eq!(trust(&submission(Some("t-uid"), Some(&token)), Some(&committed)), Trust::NotYet);
        // A copy of the commitment, or another token, is not the token.
        let copied = ownership::commitment(&token);
        assert!(matches!(trust(&submission(Some("t-uid"), Some(&copied)), Some(&committed)), Trust::Foreign(_)));
        let other = ownership::new_token();
        assert!(matches!(trust(&submission(Some("t-uid"), Some(&other)), Some(&committed)), Trust::Foreign(_)));
    }

    #[test]
    fn a_squatted_trainer_job_fails_the_submission_as_retryable() {
        let status = not_adopted(&Default::default(), "Job ns/t-m-1-train (uid x, written by kubectl)", Some(1), now());
        assert_eq!(status.phase, SubmissionPhase::Failed);
        assert!(status.failure_reason.as_deref().unwrap().contains("kubectl"));
        let mut submission = submission(Some("t-uid"), None);
        submission.status = Some(status);
        assert!(matches!(
            lifecycle::training_state(&submission),
            crate::tournament::WorkloadState::Failed { retryable: true, .. }
        ));
    }

    #[test]
    fn a_deadline_fails_the_submission_with_the_reason() {
        let failed = job(
            serde_json::json!({"conditions": [{"type": "Failed", "status": "True", "reason": "DeadlineExceeded",
            "message": "Job was active longer than specified deadline", "lastTransitionTime": "2026-11-26T11:30:00Z"}]}),
        );
        let status = next_status(&Default::default(), Some(&failed), Some(1), now());
        assert_eq!(status.phase, SubmissionPhase::Failed);
        assert!(status.failure_reason.unwrap().starts_with("DeadlineExceeded"));
    }
}
