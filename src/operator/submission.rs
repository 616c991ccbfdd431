//! The MinerSubmission controller: one trainer Job per submission, its state in the status.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt};
use k8s_openapi::api::batch::v1::Job;
use kube::core::DeserializeGuard;
use kube::runtime::controller::{self, Action, Controller};
use kube::runtime::reflector::Store;
use kube::runtime::watcher;
use kube::{Api, ResourceExt};

use super::context::{Context, apply_status, ensure, log_stream_errors, object_key};
use super::error::Result;
use crate::api::MinerSubmission;
use crate::api::conditions::{self, Observed};
use crate::api::submission::{MinerSubmissionStatus, SubmissionPhase};
use crate::workloads::{labels, trainer};

const NAME: &str = "submission";

pub fn controller(
    ctx: Arc<Context>,
    concurrency: u16,
    shutdown: super::Stop,
) -> (Store<DeserializeGuard<MinerSubmission>>, BoxFuture<'static, ()>) {
    let client = ctx.client.clone();
    let controller =
        Controller::new(Api::<DeserializeGuard<MinerSubmission>>::all(client.clone()), watcher::Config::default())
            .owns(
                Api::<Job>::all(client),
                watcher::Config::default().labels(&format!("{}={}", labels::ROLE, labels::ROLE_TRAINER)),
            )
            .with_config(controller::Config::default().concurrency(concurrency))
            .graceful_shutdown_on(shutdown);
    let store = controller.store();
    let run = controller
        .run(reconcile, |object, error, ctx| ctx.error_policy(NAME, object_key(object.as_ref()), error), ctx)
        .for_each(log_stream_errors(NAME))
        .boxed();
    (store, run)
}

async fn reconcile(guarded: Arc<DeserializeGuard<MinerSubmission>>, ctx: Arc<Context>) -> Result<Action> {
    let key = object_key(guarded.as_ref());
    ctx.instrumented(NAME, key, reconcile_submission(guarded, ctx.clone())).await
}

async fn reconcile_submission(guarded: Arc<DeserializeGuard<MinerSubmission>>, ctx: Arc<Context>) -> Result<Action> {
    let Some(cached) = ctx.readable(guarded.as_ref()).await else { return Ok(Action::await_change()) };
    let api = Api::<MinerSubmission>::namespaced(ctx.client.clone(), &cached.namespace().unwrap_or_default());
    let Some(submission) = api.get_opt(&cached.name_any()).await? else { return Ok(Action::await_change()) };
    if submission.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let previous = submission.status.clone().unwrap_or_default();
    // A finished submission keeps its verdict even when its Job is gone.
    let job = if previous.phase.is_terminal() {
        None
    } else {
        match trainer::trainer_job(&submission, &ctx.workloads) {
            Ok(job) => Some(ensure(&ctx.client, &job).await?),
            // A submission that asks for what no trainer may have fails; no Job is created.
            Err(refused) if refused.is_refusal() => {
                let status =
                    refused_status(&previous, &refused.to_string(), submission.metadata.generation, Utc::now());
                apply_status(&ctx.client, &submission, &status).await?;
                ctx.event(&submission, true, "Refused", refused.to_string()).await;
                return Ok(Action::await_change());
            }
            Err(e) => return Err(e.into()),
        }
    };
    let status = next_status(&previous, job.as_ref(), submission.metadata.generation, Utc::now());
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

/// The status of a submission refused before any Job: failed, with the reason.
pub fn refused_status(
    previous: &MinerSubmissionStatus,
    reason: &str,
    generation: Option<i64>,
    now: DateTime<Utc>,
) -> MinerSubmissionStatus {
    let mut status = previous.clone();
    status.observed_generation = generation;
    status.phase = SubmissionPhase::Failed;
    status.failure_reason = Some(reason.to_string());
    status.finished_at = Some(now);
    let trained = Observed::new("Trained", Some(false), "Refused", reason);
    status.conditions = conditions::merge(&previous.conditions, &[trained], generation, now);
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
