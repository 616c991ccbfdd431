//! The Task controller: gathers what the lifecycle needs to know, applies the plan it returns.

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt};
use k8s_openapi::api::batch::v1::Job;
use kube::api::ListParams;
use kube::core::DeserializeGuard;
use kube::runtime::controller::{self, Action, Controller};
use kube::runtime::reflector::Store;
use kube::runtime::watcher;
use kube::{Api, Client, ResourceExt};

use super::context::{Context, apply_status, ensure, object_key};
use super::error::Result;
use super::lifecycle::{self, Candidate, Observation, ObservedSubmission, Preparation};
use crate::api::{Evaluation, Miner, MinerSubmission, Task};
use crate::workloads::{labels, prepare};

const NAME: &str = "task";
/// A task that is not finished is looked at again at least this often.
const RESYNC: Duration = Duration::from_secs(300);

pub fn controller(
    ctx: Arc<Context>,
    concurrency: u16,
    shutdown: super::Stop,
) -> (Store<DeserializeGuard<Task>>, BoxFuture<'static, ()>) {
    let client = ctx.client.clone();
    let controller = Controller::new(Api::<DeserializeGuard<Task>>::all(client.clone()), watcher::Config::default())
        .owns(
            Api::<Job>::all(client.clone()),
            watcher::Config::default().labels(&format!("{}={}", labels::ROLE, labels::ROLE_PREPARE)),
        )
        .owns(Api::<MinerSubmission>::all(client.clone()), watcher::Config::default())
        .owns(Api::<Evaluation>::all(client), watcher::Config::default())
        .with_config(controller::Config::default().concurrency(concurrency))
        .graceful_shutdown_on(shutdown);
    let store = controller.store();
    let run = controller
        .run(reconcile, |object, error, ctx| ctx.error_policy(NAME, object_key(object.as_ref()), error), ctx)
        .for_each(|result| {
            if let Err(error) = result {
                tracing::warn!(controller = NAME, %error, "controller stream error");
            }
            futures::future::ready(())
        })
        .boxed();
    (store, run)
}

async fn reconcile(guarded: Arc<DeserializeGuard<Task>>, ctx: Arc<Context>) -> Result<Action> {
    let key = object_key(guarded.as_ref());
    ctx.instrumented(NAME, key, reconcile_task(guarded, ctx.clone())).await
}

async fn reconcile_task(guarded: Arc<DeserializeGuard<Task>>, ctx: Arc<Context>) -> Result<Action> {
    let cached = match &guarded.0 {
        Ok(task) => task,
        Err(invalid) => {
            ctx.event(guarded.as_ref(), true, "InvalidObject", invalid.error.clone()).await;
            return Ok(Action::await_change());
        }
    };
    let namespace = cached.namespace().unwrap_or_default();
    let name = cached.name_any();
    // The cache can lag behind our own last status write; decisions recorded there (the miner
    // draw, the start of training) must be read back, not made twice.
    let Some(task) = Api::<Task>::namespaced(ctx.client.clone(), &namespace).get_opt(&name).await? else {
        return Ok(Action::await_change());
    };
    if task.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let client = &ctx.client;
    let preparation = observe_preparation(client, &namespace, &name).await?;
    let candidates = candidates(client, &task).await?;
    let submissions = observe_submissions(client, &namespace, &name).await?;
    let evaluation = Api::<Evaluation>::namespaced(client.clone(), &namespace).get_opt(&name).await?;
    let observation = Observation {
        task: &task,
        preparation,
        candidates: &candidates,
        submissions: &submissions,
        evaluation: evaluation.as_ref().and_then(|e| e.status.as_ref()),
        now: chrono::Utc::now(),
    };
    let plan = lifecycle::plan(&observation, &ctx.workloads, &ctx.mechanism)?;

    if plan.prepare {
        ensure(client, &prepare::prepare_job(&task, &ctx.workloads)?).await?;
    }
    for submission in &plan.submissions {
        ensure(client, submission).await?;
    }
    if let Some(evaluation) = &plan.evaluation {
        ensure(client, evaluation).await?;
    }
    let previous = task.status.clone().unwrap_or_default();
    if plan.status != previous {
        apply_status(client, &task, &plan.status).await?;
        if plan.status.phase != previous.phase {
            let warning = plan.status.phase == crate::api::task::TaskPhase::Failed;
            ctx.event(&task, warning, plan.status.phase.as_str(), plan.status.message.clone()).await;
        }
    }
    Ok(match (plan.status.phase.is_terminal(), plan.requeue_after) {
        (true, _) => Action::await_change(),
        (false, Some(after)) => Action::requeue(after.min(RESYNC)),
        (false, None) => Action::requeue(RESYNC),
    })
}

async fn observe_preparation(client: &Client, namespace: &str, task: &str) -> Result<Preparation> {
    let job = Api::<Job>::namespaced(client.clone(), namespace).get_opt(&prepare::job_name(task)).await?;
    Ok(match job.as_ref().and_then(|j| j.status.as_ref()) {
        Some(status) => {
            let condition = |type_: &str| {
                status.conditions.iter().flatten().find(|c| c.type_ == type_ && c.status == "True").cloned()
            };
            if condition("Complete").is_some() {
                Preparation::Succeeded
            } else if let Some(failed) = condition("Failed") {
                Preparation::Failed(format!(
                    "{}: {}",
                    failed.reason.unwrap_or_default(),
                    failed.message.unwrap_or_default()
                ))
            } else {
                Preparation::Running
            }
        }
        None => Preparation::Running,
    })
}

/// Inline miners of the task first, then the enabled `Miner` objects its selector matches.
/// A Miner that does not deserialize is skipped, not fatal.
async fn candidates(client: &Client, task: &Task) -> Result<Vec<Candidate>> {
    let mut candidates: Vec<Candidate> = task
        .spec
        .miners
        .iter()
        .map(|m| Candidate { name: m.name.clone(), strategy: Some(m.strategy.clone()), ..Candidate::default() })
        .collect();
    let selector =
        task.spec.miner_selector.iter().flatten().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(",");
    let api = Api::<DeserializeGuard<Miner>>::namespaced(client.clone(), &task.namespace().unwrap_or_default());
    let miners = api.list(&ListParams::default().labels(&selector)).await?;
    for miner in miners.items.into_iter().filter_map(|m| m.0.ok()) {
        let name = miner.name_any();
        if !miner.spec.enabled || candidates.iter().any(|c| c.name == name) {
            continue;
        }
        candidates.push(Candidate {
            name,
            image: miner.spec.image.clone(),
            command: miner.spec.command.clone(),
            strategy: miner.spec.strategy.clone(),
            args: miner.spec.args.clone(),
            average_score_today: miner.status.as_ref().and_then(|s| s.average_score_today),
        });
    }
    Ok(candidates)
}

async fn observe_submissions(client: &Client, namespace: &str, task: &str) -> Result<Vec<ObservedSubmission>> {
    let api = Api::<DeserializeGuard<MinerSubmission>>::namespaced(client.clone(), namespace);
    let selector = format!("{}={}", labels::TASK, crate::workloads::label_value(task));
    let list = api.list(&ListParams::default().labels(&selector)).await?;
    Ok(list
        .items
        .into_iter()
        .filter_map(|s| s.0.ok())
        .filter(|s| s.spec.task == task)
        .map(|s| {
            let status = s.status.clone().unwrap_or_default();
            ObservedSubmission {
                name: s.name_any(),
                miner: s.spec.miner.clone(),
                phase: status.phase,
                finished_at: status.finished_at,
                artifact_uri: s.spec.artifact_uri.clone(),
            }
        })
        .collect())
}
