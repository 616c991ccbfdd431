//! The Evaluation controller: isolates the evaluation pods, runs one evaluator Job per
//! submission, reads each result from the evaluator container's termination message, scores
//! the task when every result is in, and deletes the record once it leaves the longest window.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{DeleteParams, ListParams};
use kube::core::DeserializeGuard;
use kube::runtime::controller::{self, Action, Controller};
use kube::runtime::watcher;
use kube::{Api, Client, ResourceExt};

use super::context::{Context, apply, apply_status, ensure, object_key};
use super::error::Result;
use super::results;
use crate::api::Evaluation;
use crate::api::conditions::{self, Observed};
use crate::api::evaluation::{EvaluatedSubmission, EvaluationPhase, EvaluationStatus, ResultState, SubmissionResult};
use crate::workloads::{evaluator, labels, network_policy};

const NAME: &str = "evaluation";

pub fn controller(ctx: Arc<Context>, concurrency: u16, shutdown: super::Stop) -> BoxFuture<'static, ()> {
    let client = ctx.client.clone();
    Controller::new(Api::<DeserializeGuard<Evaluation>>::all(client.clone()), watcher::Config::default())
        .owns(
            Api::<Job>::all(client),
            watcher::Config::default().labels(&format!("{}={}", labels::ROLE, labels::ROLE_EVALUATOR)),
        )
        .with_config(controller::Config::default().concurrency(concurrency))
        .graceful_shutdown_on(shutdown)
        .run(reconcile, |object, error, ctx| ctx.error_policy(NAME, object_key(object.as_ref()), error), ctx)
        .for_each(|result| {
            if let Err(error) = result {
                tracing::warn!(controller = NAME, %error, "controller stream error");
            }
            futures::future::ready(())
        })
        .boxed()
}

async fn reconcile(guarded: Arc<DeserializeGuard<Evaluation>>, ctx: Arc<Context>) -> Result<Action> {
    let key = object_key(guarded.as_ref());
    ctx.instrumented(NAME, key, reconcile_evaluation(guarded, ctx.clone())).await
}

async fn reconcile_evaluation(guarded: Arc<DeserializeGuard<Evaluation>>, ctx: Arc<Context>) -> Result<Action> {
    let cached = match &guarded.0 {
        Ok(evaluation) => evaluation,
        Err(invalid) => {
            ctx.event(guarded.as_ref(), true, "InvalidObject", invalid.error.clone()).await;
            return Ok(Action::await_change());
        }
    };
    let namespace = cached.namespace().unwrap_or_default();
    let api = Api::<Evaluation>::namespaced(ctx.client.clone(), &namespace);
    let Some(evaluation) = api.get_opt(&cached.name_any()).await? else { return Ok(Action::await_change()) };
    if evaluation.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let now = Utc::now();
    let previous = evaluation.status.clone().unwrap_or_default();

    // A complete record only waits to expire.
    if previous.phase == EvaluationPhase::Complete {
        let horizon = chrono::Duration::days(i64::from(ctx.mechanism.horizon_days()));
        let expires = previous.finished_at.map(|at| at + horizon);
        return match expires {
            Some(at) if at <= now => {
                api.delete(&evaluation.name_any(), &DeleteParams::default()).await?;
                Ok(Action::await_change())
            }
            Some(at) => Ok(Action::requeue((at - now).to_std().unwrap_or(Duration::from_secs(3600)))),
            None => Ok(Action::await_change()),
        };
    }

    // Isolation first: no evaluator pod may exist without its deny-all policy.
    apply(&ctx.client, &network_policy::evaluation_network_policy(&evaluation)?).await?;
    let mut observed = Vec::with_capacity(evaluation.spec.submissions.len());
    for entry in &evaluation.spec.submissions {
        let kept = previous.results.iter().find(|r| r.miner == entry.miner && r.state != ResultState::Running);
        let result = match kept {
            Some(result) => result.clone(),
            None => {
                let job = ensure(&ctx.client, &evaluator::evaluation_job(&evaluation, entry, &ctx.workloads)?).await?;
                observe_result(&ctx.client, &namespace, entry, &job).await?
            }
        };
        observed.push(result);
    }
    let status = next_status(&ctx.mechanism, &evaluation, &previous, observed, now);
    if status != previous {
        apply_status(&ctx.client, &evaluation, &status).await?;
        for result in status.results.iter().filter(|r| r.state == ResultState::Failed) {
            if !previous.results.iter().any(|p| p.miner == result.miner && p.state == ResultState::Failed) {
                let note = format!("{}: {}", result.miner, result.failure.clone().unwrap_or_default());
                ctx.event(&evaluation, true, "EvaluationFailed", note).await;
            }
        }
        if status.phase == EvaluationPhase::Complete {
            let note = match &status.winner {
                Some(winner) => format!("scored: {winner} ranks first of {}", status.ranked),
                None => "scored: no valid submission".to_string(),
            };
            ctx.event(&evaluation, false, "Scored", note).await;
        }
    }
    Ok(Action::await_change())
}

/// The result of one submission from its Job's pods: only the evaluator container's
/// termination message counts.
async fn observe_result(
    client: &Client,
    namespace: &str,
    entry: &EvaluatedSubmission,
    job: &Job,
) -> Result<SubmissionResult> {
    let job_name = job.name_any();
    let pods = Api::<Pod>::namespaced(client.clone(), namespace)
        .list(&ListParams::default().labels(&format!("batch.kubernetes.io/job-name={job_name}")))
        .await?;
    Ok(result_from(entry, job, &pods.items))
}

/// Pure: the result from a Job and its pods.
pub fn result_from(entry: &EvaluatedSubmission, job: &Job, pods: &[Pod]) -> SubmissionResult {
    let terminated = pods.iter().find_map(|pod| {
        pod.status
            .as_ref()?
            .container_statuses
            .iter()
            .flatten()
            .find(|c| c.name == evaluator::EVALUATOR_CONTAINER)?
            .state
            .as_ref()?
            .terminated
            .clone()
    });
    if let Some(terminated) = terminated {
        return results::read_termination(&entry.miner, terminated.exit_code, terminated.message.as_deref());
    }
    let failed = job
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == "Failed" && c.status == "True"));
    match failed {
        Some(condition) => SubmissionResult {
            miner: entry.miner.clone(),
            state: ResultState::Failed,
            failure: Some(format!("evaluation Job failed: {}", condition.reason.clone().unwrap_or_default())),
            ..SubmissionResult::default()
        },
        None => {
            SubmissionResult { miner: entry.miner.clone(), state: ResultState::Running, ..SubmissionResult::default() }
        }
    }
}

/// Pure: the status from the results; scored once every result is in.
pub fn next_status(
    mechanism: &crate::mechanism::MechanismConfig,
    evaluation: &Evaluation,
    previous: &EvaluationStatus,
    observed: Vec<SubmissionResult>,
    now: DateTime<Utc>,
) -> EvaluationStatus {
    let total = evaluation.spec.submissions.len();
    let done = observed.iter().filter(|r| r.state != ResultState::Running).count();
    let mut status = EvaluationStatus {
        observed_generation: evaluation.metadata.generation,
        evaluated: done as u32,
        ..EvaluationStatus::default()
    };
    if done == total {
        let finished_at = previous.finished_at.unwrap_or(now);
        let (scored, task_weight) = results::score(mechanism, evaluation, &observed, finished_at);
        status.ranked = scored.iter().filter(|r| r.rank.is_some()).count() as u32;
        status.winner = scored.iter().find(|r| r.rank == Some(1)).map(|r| r.miner.clone());
        status.task_weight = Some(task_weight);
        status.finished_at = Some(finished_at);
        status.phase = EvaluationPhase::Complete;
        status.results = scored;
    } else {
        status.phase = EvaluationPhase::Running;
        status.results = observed;
    }
    let condition = match status.phase {
        EvaluationPhase::Complete => Observed::new("Evaluated", Some(true), "Scored", ""),
        _ => Observed::new("Evaluated", None, "Evaluating", format!("{done} of {total} results in")),
    };
    status.conditions = conditions::merge(&previous.conditions, &[condition], evaluation.metadata.generation, now);
    status
}
