//! The Task controller: drives the shared lifecycle state machine ([`crate::tournament`]).
//! Each reconcile observes the Task's workloads, calls `decide`, writes the new state to the
//! status (persist first), then applies the actions; all of them are idempotent, keyed by
//! workload id, so a reconcile never needs to know why it was called.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PropagationPolicy};
use kube::core::DeserializeGuard;
use kube::runtime::controller::{self, Action as Requeue, Controller};
use kube::runtime::reflector::Store;
use kube::runtime::watcher;
use kube::{Api, Client, ResourceExt};

use super::context::{Context, apply, apply_status, ensure, log_stream_errors, object_key};
use super::error::Result;
use super::lifecycle;
use crate::api::evaluation::EvaluationPhase;
use crate::api::{Evaluation, Miner, MinerSubmission, Task};
use crate::tournament::{self, Action, Observation, PoolMiner, WorkKind, WorkloadId, WorkloadState};
use crate::workloads::evaluator::Evaluated;
use crate::workloads::{evaluator, labels, network_policy, prepare, seal};

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
            watcher::Config::default().labels(&format!("{}={}", labels::MANAGED_BY, labels::MANAGER)),
        )
        .owns(Api::<MinerSubmission>::all(client.clone()), watcher::Config::default())
        .owns(Api::<Evaluation>::all(client), watcher::Config::default())
        .with_config(controller::Config::default().concurrency(concurrency))
        .graceful_shutdown_on(shutdown);
    let store = controller.store();
    let run = controller
        .run(reconcile, |object, error, ctx| ctx.error_policy(NAME, object_key(object.as_ref()), error), ctx)
        .for_each(log_stream_errors(NAME))
        .boxed();
    (store, run)
}

async fn reconcile(guarded: Arc<DeserializeGuard<Task>>, ctx: Arc<Context>) -> Result<Requeue> {
    let key = object_key(guarded.as_ref());
    ctx.instrumented(NAME, key, reconcile_task(guarded, ctx.clone())).await
}

async fn reconcile_task(guarded: Arc<DeserializeGuard<Task>>, ctx: Arc<Context>) -> Result<Requeue> {
    let Some(cached) = ctx.readable(guarded.as_ref()).await else { return Ok(Requeue::await_change()) };
    let namespace = cached.namespace().unwrap_or_default();
    let name = cached.name_any();
    // The cache can lag behind our own last status write, and the state in it is what every
    // decision builds on: read it fresh.
    let Some(task) = Api::<Task>::namespaced(ctx.client.clone(), &namespace).get_opt(&name).await? else {
        return Ok(Requeue::await_change());
    };
    if task.metadata.deletion_timestamp.is_some() {
        return Ok(Requeue::await_change());
    }
    let client = &ctx.client;
    let now = Utc::now();
    if let Err(refused) = ctx.workloads.check_sources(&task.spec)
        && !task.phase().is_terminal()
    {
        return fail_task(&ctx, &task, format!("Task {namespace}/{name}: {refused}"), now).await;
    }
    let miners = miners(client, &task).await?;
    let evaluation = Api::<Evaluation>::namespaced(client.clone(), &namespace).get_opt(&name).await?;
    let submissions = children::<MinerSubmission>(client, &namespace, &name).await?;
    let observation = Observation {
        now,
        pool: pool(&task, &miners),
        workloads: observe_workloads(client, &namespace, &name, &submissions).await?,
        recorded: evaluation
            .as_ref()
            .and_then(|e| e.status.as_ref())
            .is_some_and(|s| s.phase == EvaluationPhase::Complete),
    };
    let previous = task.status.clone().unwrap_or_default();
    let state = previous.lifecycle.clone().unwrap_or_default();
    let decision = tournament::decide(&name, &task.spec, &state, &observation, &ctx.tournament);

    // Persist first, then act: a crash between the two repeats idempotent actions, never
    // loses a decision.
    let status = lifecycle::task_status(
        &name,
        &previous,
        &decision.state,
        evaluation.as_ref().and_then(|e| e.status.as_ref()),
        task.metadata.generation,
        now,
    );
    if status != previous {
        apply_status(client, &task, &status).await?;
    }
    for action in &decision.actions {
        execute(&ctx, &task, &decision.state, action, &miners, &submissions).await?;
    }
    Ok(match (status.phase.is_terminal(), decision.wake_at) {
        (true, _) => Requeue::await_change(),
        (false, Some(at)) => {
            Requeue::requeue((at - now).to_std().unwrap_or_default().clamp(Duration::from_secs(1), RESYNC))
        }
        (false, None) => Requeue::requeue(RESYNC),
    })
}

/// Fails a task the operator may not run (its status says why, and an Event).
async fn fail_task(ctx: &Context, task: &Task, message: String, now: chrono::DateTime<Utc>) -> Result<Requeue> {
    let previous = task.status.clone().unwrap_or_default();
    let mut state = previous.lifecycle.clone().unwrap_or_default();
    state.phase = tournament::Phase::Failed;
    state.message = Some(message.clone());
    let status = lifecycle::task_status(&task.name_any(), &previous, &state, None, task.metadata.generation, now);
    apply_status(&ctx.client, task, &status).await?;
    ctx.event(task, true, "Failed", message).await;
    Ok(Requeue::await_change())
}

async fn execute(
    ctx: &Context,
    task: &Task,
    state: &tournament::TaskState,
    action: &Action,
    miners: &BTreeMap<String, Miner>,
    submissions: &[MinerSubmission],
) -> Result<()> {
    let client = &ctx.client;
    let namespace = task.namespace().unwrap_or_default();
    let name = task.name_any();
    match action {
        Action::PrepareDataset { id, seed } => {
            ensure(client, &prepare::prepare_job(task, id.attempt, *seed, &ctx.workloads)?).await?;
        }
        Action::StartTraining { id, entrant, strategy, hours, deadline } => {
            let submission = lifecycle::build_submission(
                task,
                id,
                strategy.clone(),
                *hours,
                *deadline,
                miners.get(entrant).map(|m| &m.spec),
                &ctx.workloads,
                Utc::now(),
            )?;
            ensure(client, &submission).await?;
        }
        Action::StartSeal { id, entrant, training } => {
            let (output, sealed) = lifecycle::seal_locations(&ctx.workloads, &namespace, &name, training);
            let job_name = crate::workloads::workload_name(&name, id);
            let job = seal::seal_job(task, job_name, entrant, id.attempt, &output, &sealed, &ctx.workloads)?;
            ensure(client, &job).await?;
        }
        Action::StartEvaluation { id, entrant, submission } => {
            // Isolation first: no evaluator pod may exist without its deny-all policy.
            apply(client, &network_policy::evaluation_network_policy(task)?).await?;
            let evaluated = match submission {
                Some(model) => {
                    let (_, sealed) = lifecycle::seal_locations(&ctx.workloads, &namespace, &name, &model.training);
                    record_seal(client, &namespace, &name, model, &sealed, submissions).await?;
                    Evaluated::Sealed { uri: sealed, digest: model.digest.clone() }
                }
                None => Evaluated::BaseModel,
            };
            let job = evaluator::evaluation_job(task, entrant, id.attempt, evaluated, &ctx.workloads)?;
            ensure(client, &job).await?;
        }
        Action::StopWorkload { id, reason } => {
            tracing::info!(task = %name, workload = %id, reason, "stopping a workload");
            stop(client, &namespace, &name, id).await?;
        }
        Action::RecordResults { record } => {
            let (evaluation, status) =
                lifecycle::build_evaluation(task, record, state, &ctx.workloads, ctx.mechanism(), Utc::now())?;
            let evaluation = ensure(client, &evaluation).await?;
            apply_status(client, &evaluation, &status).await?;
        }
        // The Leaderboard controller recomputes whenever an Evaluation changes.
        Action::EmitWeights => {}
        Action::Notify { reason, message } => {
            ctx.event(task, reason == "Failed", reason, message.clone()).await;
        }
    }
    Ok(())
}

/// Records the seal on the training's MinerSubmission (digest and location), before its model
/// is evaluated. A merge patch of those fields only: the submission controller owns the rest.
async fn record_seal(
    client: &Client,
    namespace: &str,
    task: &str,
    model: &tournament::SealedModel,
    sealed: &str,
    submissions: &[MinerSubmission],
) -> Result<()> {
    let name = lifecycle::submission_name(task, &model.training);
    let current = submissions.iter().find(|s| s.name_any() == name).and_then(|s| s.status.as_ref());
    if current.is_some_and(|s| s.sealed_digest.as_deref() == Some(model.digest.as_str())) {
        return Ok(());
    }
    let patch = serde_json::json!({"status": {"sealedDigest": model.digest, "sealedUri": sealed}});
    let api = Api::<MinerSubmission>::namespaced(client.clone(), namespace);
    match api.patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch)).await {
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
        other => other.map(|_| ()).map_err(Into::into),
    }
}

async fn stop(client: &Client, namespace: &str, task: &str, id: &WorkloadId) -> Result<()> {
    let background =
        DeleteParams { propagation_policy: Some(PropagationPolicy::Background), ..DeleteParams::default() };
    let result = match id.kind {
        WorkKind::Prepare => Api::<Job>::namespaced(client.clone(), namespace)
            .delete(&prepare::job_name(task, id.attempt), &background)
            .await
            .map(|_| ()),
        WorkKind::Train => Api::<MinerSubmission>::namespaced(client.clone(), namespace)
            .delete(&lifecycle::submission_name(task, id), &background)
            .await
            .map(|_| ()),
        WorkKind::Seal | WorkKind::Evaluate => Api::<Job>::namespaced(client.clone(), namespace)
            .delete(&crate::workloads::workload_name(task, id), &background)
            .await
            .map(|_| ()),
    };
    match result {
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
        other => Ok(other?),
    }
}

/// Enabled `Miner` objects the task's selector matches, by name. A Miner that does not
/// deserialize is skipped, not fatal.
async fn miners(client: &Client, task: &Task) -> Result<BTreeMap<String, Miner>> {
    let selector =
        task.spec.miner_selector.iter().flatten().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(",");
    let api = Api::<DeserializeGuard<Miner>>::namespaced(client.clone(), &task.namespace().unwrap_or_default());
    let list = api.list(&ListParams::default().labels(&selector)).await?;
    Ok(list.items.into_iter().filter_map(|m| m.0.ok()).filter(|m| m.spec.enabled).map(|m| (m.name_any(), m)).collect())
}

/// The pool: the task's inline miners, then the matching Miner objects, with the day's quality
/// the leaderboard copied into their status.
fn pool(task: &Task, miners: &BTreeMap<String, Miner>) -> Vec<PoolMiner> {
    let mut pool: Vec<PoolMiner> = task
        .spec
        .miners
        .iter()
        .map(|m| PoolMiner { name: m.name.clone(), strategy: Some(m.strategy.clone()), average_quality_today: None })
        .collect();
    for (name, miner) in miners {
        if !pool.iter().any(|p| &p.name == name) {
            pool.push(PoolMiner {
                name: name.clone(),
                strategy: miner.spec.strategy.clone(),
                average_quality_today: miner.status.as_ref().and_then(|s| s.average_score_today),
            });
        }
    }
    pool
}

async fn children<K>(client: &Client, namespace: &str, task: &str) -> Result<Vec<K>>
where
    K: kube::Resource<DynamicType = (), Scope = kube::core::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    let api = Api::<DeserializeGuard<K>>::namespaced(client.clone(), namespace);
    let selector = format!("{}={}", labels::TASK, crate::workloads::label_value(task));
    Ok(api.list(&ListParams::default().labels(&selector)).await?.items.into_iter().filter_map(|k| k.0.ok()).collect())
}

/// Every workload of the task that exists, by id.
async fn observe_workloads(
    client: &Client,
    namespace: &str,
    task: &str,
    submissions: &[MinerSubmission],
) -> Result<BTreeMap<WorkloadId, WorkloadState>> {
    let mut workloads = BTreeMap::new();
    for submission in submissions.iter().filter(|s| s.spec.task == task) {
        if let Some(id) =
            lifecycle::workload_id(WorkKind::Train, submission.metadata.labels.as_ref().unwrap_or(&BTreeMap::new()))
        {
            workloads.insert(id, lifecycle::training_state(submission));
        }
    }
    let jobs: Vec<Job> = children(client, namespace, task).await?;
    let pods: Vec<Pod> = children(client, namespace, task).await?;
    for job in &jobs {
        let job_labels = job.metadata.labels.clone().unwrap_or_default();
        let role = job_labels.get(labels::ROLE).map(String::as_str);
        let job_name = job.name_any();
        let job_pods: Vec<Pod> = pods
            .iter()
            .filter(|p| p.labels().get("batch.kubernetes.io/job-name") == Some(&job_name))
            .cloned()
            .collect();
        match role {
            Some(labels::ROLE_PREPARE) => {
                if let Some(id) = lifecycle::workload_id(WorkKind::Prepare, &job_labels) {
                    workloads.insert(id, lifecycle::preparation_state(job, &job_pods));
                }
            }
            Some(labels::ROLE_SEAL) => {
                if let Some(id) = lifecycle::workload_id(WorkKind::Seal, &job_labels) {
                    workloads.insert(id, lifecycle::seal_state(job, &job_pods));
                }
            }
            Some(labels::ROLE_EVALUATOR) => {
                if let Some(id) = lifecycle::workload_id(WorkKind::Evaluate, &job_labels) {
                    workloads.insert(id, lifecycle::evaluation_state(job, &job_pods));
                }
            }
            _ => {}
        }
    }
    Ok(workloads)
}
