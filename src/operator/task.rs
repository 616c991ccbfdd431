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
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, Preconditions, PropagationPolicy};
use kube::core::DeserializeGuard;
use kube::runtime::controller::{self, Action as Requeue, Controller};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource, ResourceExt};

use super::caches::{FIRST_LIST_WAIT, Triggers};
use super::condense;
use super::context::{Context, DEBOUNCE, apply, apply_status, list_all, log_stream_errors, object_key, scoped};
use super::error::Result;
use super::lifecycle;
use super::line;
use super::ownership::{self, Claim, Ownership, Record};
use super::retention::{self, FinishedJobs};
use super::telemetry;
use crate::api::conditions::{self, Observed};
use crate::api::evaluation::EvaluationPhase;
use crate::api::{Miner, MinerSubmission, Task, TaskStatus};
use crate::tournament::{self, Action, Observation, PoolMiner, WorkKind, WorkloadId, WorkloadState};
use crate::workloads::evaluator::Evaluated;
use crate::workloads::{evaluator, network_policy, prepare, seal, synthesize};

const NAME: &str = "task";
/// A task that is not finished is looked at again at least this often.
const RESYNC: Duration = Duration::from_secs(300);

pub fn controller(
    ctx: Arc<Context>,
    namespace: Option<&str>,
    children: Triggers,
    shutdown: super::Stop,
) -> (Store<DeserializeGuard<Task>>, BoxFuture<'static, ()>) {
    let client = ctx.client.clone();
    // The store keeps Tasks condensed (`condense::task`). Every change, to a Task or to one of its
    // children, puts the Task in line (`super::line`): the line hands it to kube-runtime when its
    // turn nears. The children's changes come through the watches that fill the context's caches.
    let (store, writer) = reflector::store();
    let line = ctx.line(NAME);
    let skipped = ctx.metrics.triggers_skipped.with_label_values(&[NAME]);
    let own = watcher(scoped::<DeserializeGuard<Task>>(&client, namespace), watcher::Config::default())
        .default_backoff()
        .modify(condense::task)
        .reflect(writer)
        .applied_objects();
    let pods = {
        let tasks = store.clone();
        line.line_by(children.pods, skipped.clone(), move |pod| {
            // A pod is owned by its Job, not its Task: its Task's label says which Task it is.
            super::caches::task_of_pod(&tasks, pod)
                .map(|task| format!("{}/{}", task.namespace.as_deref().unwrap_or_default(), task.name))
                .into_iter()
                .collect()
        })
    };
    let controller = Controller::for_stream(line.line_by(own, skipped.clone(), line::itself), store.clone())
        .owns_stream(line.line_by(children.jobs, skipped.clone(), line::owners::<Task, _>))
        .owns_stream(line.line_by(children.submissions, skipped.clone(), line::owners::<Task, _>))
        .owns_stream(line.line_by(children.evaluations, skipped.clone(), line::owners::<Task, _>))
        .owns_stream(pods)
        .reconcile_on(line.handover_refs(namespace))
        .with_config(controller::Config::default().debounce(DEBOUNCE))
        .graceful_shutdown_on(shutdown);
    let run = controller
        .run(reconcile, |object, error, ctx| ctx.error_policy(NAME, object, error), ctx.clone())
        .for_each(log_stream_errors(NAME, ctx))
        .boxed();
    (store, run)
}

pub(super) async fn reconcile(guarded: Arc<DeserializeGuard<Task>>, ctx: Arc<Context>) -> Result<Requeue> {
    let key = object_key(guarded.as_ref());
    let run_ctx = ctx.clone();
    ctx.instrumented(NAME, key, move || reconcile_task(guarded, run_ctx)).await
}

async fn reconcile_task(guarded: Arc<DeserializeGuard<Task>>, ctx: Arc<Context>) -> Result<Requeue> {
    let Some(cached) = ctx.readable(guarded.as_ref()).await else { return Ok(Requeue::await_change()) };
    let namespace = cached.namespace().unwrap_or_default();
    let name = cached.name_any();
    if !ctx.caches.children_ready(&namespace, FIRST_LIST_WAIT).await {
        tracing::warn!(task = %name, "the caches of Jobs, MinerSubmissions and Evaluations are not synced yet");
        return Ok(Requeue::requeue(FIRST_LIST_WAIT));
    }
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
    let mut previous = task.status.clone().unwrap_or_default();
    let state = previous.lifecycle.clone().unwrap_or_default();
    let mut findings = Vec::new();
    let mut unrecorded = BTreeMap::new();
    let selector = task.spec.miner_selector.clone().unwrap_or_default();
    let miners = if state.draws_miners() { ctx.caches.miners(&namespace, &selector) } else { BTreeMap::new() };
    let evaluation = match ctx.caches.evaluation(&namespace, &name) {
        Some(found) if is_ours(&found, &previous, &mut unrecorded) => Some(found),
        Some(found) => {
            findings.push(Finding::not_adopted(&found, "record"));
            None
        }
        None => None,
    };
    let submissions = ctx.caches.submissions(&namespace, &name);
    let workloads =
        observe_workloads(&ctx, &task, &state, &previous, &submissions, &mut findings, &mut unrecorded).await?;
    // Our objects created just before a crash: their uids go into the status before anything
    // relies on them (a trainer runs only for a recorded MinerSubmission).
    if !unrecorded.is_empty() {
        for key in unrecorded.keys() {
            tracing::info!(task = %name, object = %key, "adopting an object created before its uid was recorded");
        }
        record_children(client, &task, &unrecorded, &[]).await?;
        for (key, uid) in unrecorded {
            previous.creating.remove(&key);
            previous.children.insert(key, uid);
        }
    }
    let observation = Observation {
        now,
        pool: pool(&task, &miners),
        workloads,
        recorded: evaluation
            .as_ref()
            .and_then(|e| e.status.as_ref())
            .is_some_and(|s| s.phase == EvaluationPhase::Complete),
    };
    let decision = tournament::decide(&name, &task.spec, &state, &observation, &ctx.tournament);

    // Persist first, then act: a crash between the two repeats idempotent actions, never
    // loses a decision.
    let mut status = lifecycle::task_status(
        &name,
        &previous,
        &decision.state,
        evaluation.as_ref().and_then(|e| e.status.as_ref()),
        task.metadata.generation,
        now,
    );
    status.conditions.extend(foreign_objects_condition(&previous, &findings, task.metadata.generation, now));
    let tokens = commit_children(&name, &decision.actions, &mut status);
    // An ended Task's Jobs go once kept long enough; deleted before the status says so, so a
    // failed delete is retried, never forgotten.
    let finished = retention::finished_jobs(&status, &previous, &submissions, ctx.keep_finished_jobs, now);
    if let FinishedJobs::Remove(jobs) = &finished {
        retention::remove(client, &namespace, jobs).await?;
    }
    let removed_now = matches!(finished, FinishedJobs::Remove(_));
    status.conditions.extend(retention::condition(&previous, removed_now, task.metadata.generation, now));
    if status != previous {
        apply_status(client, &task, &status).await?;
        let finished = previous.lifecycle.as_ref().map(|p| telemetry::finished_work(p, &decision.state));
        record_move(&ctx, &task, &previous, &status, &finished.unwrap_or_default(), now);
    }
    for finding in &findings {
        ctx.event_about(&task, Some(finding.related.clone()), true, finding.reason, finding.note.clone()).await;
    }
    let starts_pods = |action: &Action| {
        matches!(
            action,
            Action::PrepareDataset { .. }
                | Action::GenerateSyntheticSet { .. }
                | Action::StartTraining { .. }
                | Action::StartEvaluation { .. }
        )
    };
    if decision.actions.iter().any(starts_pods) {
        // Isolation first: no workload pod may exist without its role's deny-all policy.
        for policy in network_policy::task_network_policies(&task, &ctx.workloads)? {
            apply(client, &policy).await?;
        }
    }
    let mut children = Children {
        task: &task,
        recorded: status.children.clone(),
        creating: status.creating.clone(),
        tokens,
        created: BTreeMap::new(),
        refused: Vec::new(),
    };
    let mut executed = Ok(());
    for action in &decision.actions {
        executed = execute(&ctx, &mut children, &decision.state, action, &miners, &submissions).await;
        if executed.is_err() {
            break;
        }
    }
    // What was created is recorded even when a later action failed.
    children.record(client).await?;
    executed?;
    // Its Jobs gone (the status says so), an ended Task reads its MinerSubmissions no more:
    // archived, they leave the caches and stay in the API as its records.
    retention::archive(client, &namespace, &retention::to_archive(&status, &submissions)).await?;
    Ok(match (status.phase.is_terminal(), decision.wake_at) {
        (true, _) => match finished {
            FinishedJobs::KeepUntil(at) => Requeue::requeue(until(at, now).max(Duration::from_secs(1))),
            _ => Requeue::await_change(),
        },
        (false, Some(at)) => Requeue::requeue(until(at, now).clamp(Duration::from_secs(1), RESYNC)),
        (false, None) => Requeue::requeue(RESYNC),
    })
}

fn until(at: chrono::DateTime<Utc>, now: chrono::DateTime<Utc>) -> Duration {
    (at - now).to_std().unwrap_or_default()
}

/// Something in the task's namespace that pretends to be the task's: a Warning Event each.
struct Finding {
    reason: &'static str,
    note: String,
    /// The object pretending: its own Event (the recorder folds one reason's repeats per pair).
    related: k8s_openapi::api::core::v1::ObjectReference,
}

impl Finding {
    fn not_adopted<K: kube::Resource<DynamicType = ()>>(object: &K, role: &str) -> Finding {
        Finding {
            reason: "NotAdopted",
            note: format!(
                "{} holds the name of this task's {role}; not created by the operator, left alone",
                ownership::describe(object)
            ),
            related: object.object_ref(&()),
        }
    }

    fn archived_in_flight(submission: &MinerSubmission) -> Finding {
        Finding {
            reason: "ArchivedInFlight",
            note: format!(
                "{} was labelled {} while its training runs, not by the operator; the label was removed",
                ownership::describe(submission),
                crate::workloads::labels::ARCHIVED
            ),
            related: submission.object_ref(&()),
        }
    }
}

/// `ForeignObjects=True` once anything pretended to be the task's, naming the latest; it stays.
fn foreign_objects_condition(
    previous: &TaskStatus,
    findings: &[Finding],
    generation: Option<i64>,
    now: chrono::DateTime<Utc>,
) -> Vec<Condition> {
    const TYPE: &str = "ForeignObjects";
    let observed = match findings.last() {
        Some(finding) => Observed::new(TYPE, Some(true), finding.reason, finding.note.clone()),
        None => match previous.conditions.iter().find(|c| c.type_ == TYPE) {
            Some(before) => {
                let reason = if before.reason == "ForgedPod" { "ForgedPod" } else { "NotAdopted" };
                Observed::new(TYPE, Some(true), reason, before.message.clone())
            }
            None => return Vec::new(),
        },
    };
    conditions::merge(&previous.conditions, &[observed], generation, now)
}

/// What the task's status says of its child `K/name`.
fn record<'a, K: kube::Resource<DynamicType = ()>>(status: &'a TaskStatus, name: &str) -> Record<'a> {
    let key = ownership::key::<K>(name);
    Record {
        uid: status.children.get(&key).map(String::as_str),
        commitment: status.creating.get(&key).map(String::as_str),
    }
}

/// Whether `object`, a child of the task, is ours. One created before a crash, whose uid is
/// not recorded yet, goes into `unrecorded`, to be recorded before anything relies on it.
fn is_ours<K: kube::Resource<DynamicType = ()>>(
    object: &K,
    status: &TaskStatus,
    unrecorded: &mut BTreeMap<String, String>,
) -> bool {
    let name = object.meta().name.clone().unwrap_or_default();
    match ownership::ownership(Some(object.meta()), record::<K>(status, &name)) {
        Ownership::Ours => true,
        Ownership::Unrecorded => {
            unrecorded.insert(ownership::key::<K>(&name), object.meta().uid.clone().unwrap_or_default());
            true
        }
        Ownership::Absent | Ownership::Foreign => false,
    }
}

/// Records the uids of children (by key) in the task's status, and drops their commitments and
/// those of the `unused` keys.
async fn record_children(
    client: &Client,
    task: &Task,
    uids: &BTreeMap<String, String>,
    unused: &[&String],
) -> Result<()> {
    if uids.is_empty() && unused.is_empty() {
        return Ok(());
    }
    let creating: serde_json::Map<String, serde_json::Value> =
        uids.keys().chain(unused.iter().copied()).map(|key| (key.clone(), serde_json::Value::Null)).collect();
    let patch = serde_json::json!({"status": {"children": uids, "creating": creating}});
    Api::<Task>::namespaced(client.clone(), &task.namespace().unwrap_or_default())
        .patch_status(&task.name_any(), &PatchParams::default(), &Patch::Merge(&patch))
        .await?;
    Ok(())
}

/// Commits, in the status about to be written, to a fresh token for each child that `actions`
/// create and that was never committed to: one status write for all of them rather than one
/// each. A child committed to before (a create that may have happened) keeps its commitment;
/// [`Children::create`] looks before it creates one.
fn commit_children(task: &str, actions: &[Action], status: &mut TaskStatus) -> BTreeMap<String, String> {
    let mut tokens = BTreeMap::new();
    for id in actions.iter().filter_map(created_workload) {
        let key = lifecycle::child_key(task, id);
        if !status.children.contains_key(&key) && !status.creating.contains_key(&key) {
            let token = ownership::new_token();
            status.creating.insert(key.clone(), ownership::commitment(&token));
            tokens.insert(key, token);
        }
    }
    tokens
}

/// The workload whose object an action creates.
fn created_workload(action: &Action) -> Option<&WorkloadId> {
    match action {
        Action::PrepareDataset { id, .. }
        | Action::GenerateSyntheticSet { id, .. }
        | Action::StartTraining { id, .. }
        | Action::StartSeal { id, .. }
        | Action::StartEvaluation { id, .. } => Some(id),
        _ => None,
    }
}

/// The task's children as the operator created them: each new one carries a token whose
/// commitment the Task's status recorded before the create, and its uid is recorded in one
/// patch after this reconcile's creates, before anything relies on it (see [`ownership`]).
struct Children<'a> {
    task: &'a Task,
    recorded: BTreeMap<String, String>,
    creating: BTreeMap<String, String>,
    /// The tokens committed to by this reconcile's status write ([`commit_children`]), by key.
    tokens: BTreeMap<String, String>,
    /// The uids of the children created by this reconcile and not recorded yet.
    created: BTreeMap<String, String>,
    /// The keys whose create found someone else's object: their commitments are dropped.
    refused: Vec<String>,
}

impl Children<'_> {
    /// Creates `object` unless it exists; `None` when someone else's object holds its name.
    async fn create<K>(&mut self, client: &Client, object: &K) -> Result<Option<K>>
    where
        K: kube::Resource<DynamicType = (), Scope = kube::core::NamespaceResourceScope>
            + Clone
            + serde::Serialize
            + serde::de::DeserializeOwned
            + std::fmt::Debug,
    {
        let key = ownership::key::<K>(&object.name_any());
        let record = Record {
            uid: self.recorded.get(&key).map(String::as_str),
            commitment: self.creating.get(&key).map(String::as_str),
        };
        let tasks = Api::<Task>::namespaced(client.clone(), &self.task.namespace().unwrap_or_default());
        let commit = |commitment: String| {
            let patch = serde_json::json!({"status": {"creating": {&key: commitment}}});
            let (tasks, name) = (&tasks, self.task.name_any());
            async move {
                tasks.patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch)).await?;
                Ok(())
            }
        };
        let claim = match self.tokens.remove(&key) {
            Some(token) => ownership::create_committed(client, object, token).await?,
            None => ownership::claim(client, object, record, commit).await?,
        };
        match claim {
            Claim::Ours(existing) => Ok(Some(existing)),
            Claim::Unrecorded(created) => {
                let uid = created.uid().unwrap_or_default();
                self.creating.remove(&key);
                self.recorded.insert(key.clone(), uid.clone());
                self.created.insert(key, uid);
                Ok(Some(created))
            }
            Claim::Foreign(foreign) => {
                // The next observation fails this attempt and names the squatter.
                if self.creating.remove(&key).is_some() {
                    self.refused.push(key);
                }
                tracing::warn!(object = %ownership::describe(&foreign), "not adopting an object the operator did not create");
                Ok(None)
            }
        }
    }

    /// Records the uids of the children created, in one patch, and drops the commitments of
    /// tokens no object carries: those no create used, and those of creates someone else's
    /// object refused.
    async fn record(&mut self, client: &Client) -> Result<()> {
        let created = std::mem::take(&mut self.created);
        let unused = std::mem::take(&mut self.tokens);
        let refused = std::mem::take(&mut self.refused);
        let dropped: Vec<&String> = unused.keys().chain(&refused).collect();
        record_children(client, self.task, &created, &dropped).await
    }
}

/// Observes the phase a written status left, the workloads that ended and the task's end.
fn record_move(
    ctx: &Context,
    task: &Task,
    previous: &TaskStatus,
    status: &TaskStatus,
    finished: &[telemetry::Finished],
    now: chrono::DateTime<Utc>,
) {
    let created = task.metadata.creation_timestamp.as_ref().and_then(conditions::from_time);
    let ended = (status.phase.is_terminal() && !previous.phase.is_terminal()).then_some(status.phase);
    ctx.metrics.task_moved(telemetry::phase_left(previous, status, created, now), finished, ended);
}

/// Fails a task the operator may not run (its status says why, and an Event).
async fn fail_task(ctx: &Context, task: &Task, message: String, now: chrono::DateTime<Utc>) -> Result<Requeue> {
    let previous = task.status.clone().unwrap_or_default();
    let mut state = previous.lifecycle.clone().unwrap_or_default();
    state.phase = tournament::Phase::Failed;
    state.message = Some(message.clone());
    let status = lifecycle::task_status(&task.name_any(), &previous, &state, None, task.metadata.generation, now);
    apply_status(&ctx.client, task, &status).await?;
    record_move(ctx, task, &previous, &status, &[], now);
    ctx.event(task, true, "Failed", message).await;
    Ok(Requeue::await_change())
}

async fn execute(
    ctx: &Context,
    children: &mut Children<'_>,
    state: &tournament::TaskState,
    action: &Action,
    miners: &BTreeMap<String, Miner>,
    submissions: &[MinerSubmission],
) -> Result<()> {
    let client = &ctx.client;
    let task = children.task;
    let namespace = task.namespace().unwrap_or_default();
    let name = task.name_any();
    match action {
        Action::PrepareDataset { id, seed } => {
            let access = ctx.object_access(&[&task.spec.dataset.uri]).await?;
            let job = prepare::prepare_job(task, id.attempt, *seed, &ctx.workloads, access.as_ref())?;
            children.create(client, &job).await?;
        }
        Action::GenerateSyntheticSet { id, seed, rows } => {
            let generator = task.spec.dataset.generator.as_ref();
            let models: Vec<&str> = generator
                .map(|g| std::iter::once(g.model_uri.as_str()).chain(g.weaker_model_uri.as_deref()).collect())
                .unwrap_or_default();
            let access = ctx.object_access(&models).await?;
            if let Some(job) =
                synthesize::synthesize_job(task, id.attempt, *seed, *rows, &ctx.workloads, access.as_ref())?
            {
                children.create(client, &job).await?;
            }
        }
        Action::StartTraining { id, entrant, strategy, hours, deadline, resume_from } => {
            let submission = lifecycle::build_submission(
                task,
                id,
                strategy.clone(),
                (*hours, *deadline, resume_from.as_ref()),
                miners.get(entrant).map(|m| &m.spec),
                &ctx.workloads,
                Utc::now(),
            )?;
            children.create(client, &submission).await?;
        }
        Action::StartSeal { id, entrant, training } => {
            let (output, sealed) = lifecycle::seal_locations(&ctx.workloads, &namespace, &name, training);
            let job_name = crate::workloads::workload_name(&name, id);
            let access = ctx.object_access(&[]).await?;
            let job = seal::seal_job(
                task,
                job_name,
                entrant,
                id.attempt,
                (&output, &sealed),
                &ctx.workloads,
                access.as_ref(),
            )?;
            children.create(client, &job).await?;
        }
        Action::StartEvaluation { id, submission, .. } => {
            let evaluated = match submission {
                Some(model) => {
                    let (_, sealed) = lifecycle::seal_locations(&ctx.workloads, &namespace, &name, &model.training);
                    record_seal(client, &namespace, &name, model, &sealed, submissions).await?;
                    Evaluated::Sealed { uri: sealed, digest: model.digest.clone() }
                }
                None => Evaluated::BaseModel,
            };
            let access = ctx.object_access(&[&task.spec.base_model.uri]).await?;
            let job = evaluator::evaluation_job(task, id, evaluated, &ctx.workloads, access.as_ref())?;
            children.create(client, &job).await?;
        }
        Action::StopWorkload { id, reason } => {
            tracing::info!(task = %name, workload = %id, reason, "stopping a workload");
            stop(client, &namespace, &name, id, &children.recorded).await?;
        }
        Action::RecordResults { record } => {
            let (evaluation, status) =
                lifecycle::build_evaluation(task, record, state, &ctx.workloads, ctx.mechanism(), Utc::now())?;
            // Written once: a cache that has not seen the write yet asks for it again, and the
            // record (read from the API server by the claim) must not be rewritten.
            if let Some(evaluation) = children.create(client, &evaluation).await?
                && evaluation.status.as_ref().is_none_or(|s| s.phase != EvaluationPhase::Complete)
            {
                apply_status(client, &evaluation, &status).await?;
            }
        }
        // The Leaderboard controller recomputes whenever an Evaluation changes.
        Action::EmitWeights => {}
        Action::Notify { reason, message } => {
            ctx.event(task, reason == "Failed", reason, message.clone()).await;
        }
    }
    Ok(())
}

/// Records the seal on the training's MinerSubmission (digest, location and the training's
/// summary), before its model is evaluated. A merge patch of those fields only: the submission
/// controller owns the rest.
async fn record_seal(
    client: &Client,
    namespace: &str,
    task: &str,
    model: &tournament::SealedModel,
    sealed: &str,
    submissions: &[MinerSubmission],
) -> Result<()> {
    let name = lifecycle::submission_name(task, &model.training);
    let submission = submissions.iter().find(|s| s.name_any() == name);
    let current = submission.and_then(|s| s.status.as_ref());
    let training = submission.map(|s| telemetry::trainer_report(model.summary.as_ref(), s));
    if current.is_some_and(|s| s.sealed_digest.as_deref() == Some(model.digest.as_str()) && s.training == training) {
        return Ok(());
    }
    let patch =
        serde_json::json!({"status": {"sealedDigest": model.digest, "sealedUri": sealed, "training": training}});
    let api = Api::<MinerSubmission>::namespaced(client.clone(), namespace);
    match api.patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch)).await {
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
        other => other.map(|_| ()).map_err(Into::into),
    }
}

/// Deletes a workload's object, only if it is the one the operator created (the uid is a
/// precondition of the delete): a squatter under the same name is never touched.
async fn stop(
    client: &Client,
    namespace: &str,
    task: &str,
    id: &WorkloadId,
    recorded: &BTreeMap<String, String>,
) -> Result<()> {
    let key = lifecycle::child_key(task, id);
    let Some(uid) = recorded.get(&key) else { return Ok(()) };
    let object = key.split_once('/').map(|(_, name)| name).unwrap_or_default();
    let params = DeleteParams {
        propagation_policy: Some(PropagationPolicy::Background),
        preconditions: Some(Preconditions { uid: Some(uid.clone()), resource_version: None }),
        ..DeleteParams::default()
    };
    let result = match id.kind {
        WorkKind::Train => {
            Api::<MinerSubmission>::namespaced(client.clone(), namespace).delete(object, &params).await.map(|_| ())
        }
        _ => Api::<Job>::namespaced(client.clone(), namespace).delete(object, &params).await.map(|_| ()),
    };
    match result {
        // Gone already, or replaced by someone else's object (the uid precondition fails).
        Err(kube::Error::Api(status)) if status.code == 404 || status.code == 409 => Ok(()),
        other => Ok(other?),
    }
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

/// Every workload the state waits for that exists, by id: the objects the operator created
/// (recorded uid, or committed token: those go into `unrecorded`), with results only from their
/// own pods. An object of a workload's name that the operator did not create fails that
/// attempt (retried under a new name); a pod that merely looks like a Job's is ignored. Each
/// is reported as a finding.
async fn observe_workloads(
    ctx: &Context,
    task: &Task,
    state: &tournament::TaskState,
    status: &TaskStatus,
    submissions: &[MinerSubmission],
    findings: &mut Vec<Finding>,
    unrecorded: &mut BTreeMap<String, String>,
) -> Result<BTreeMap<WorkloadId, WorkloadState>> {
    let client = &ctx.client;
    let namespace = task.namespace().unwrap_or_default();
    let name = task.name_any();
    let now = Utc::now();
    let mut workloads = BTreeMap::new();
    let ids = lifecycle::in_flight(state);
    if ids.is_empty() {
        return Ok(workloads);
    }
    let jobs = ctx.caches.jobs(&namespace, &name);
    let pods = ctx.caches.pods(&namespace, &name);
    for id in ids {
        if id.kind == WorkKind::Train {
            let object = lifecycle::submission_name(&name, &id);
            let found = match submissions.iter().find(|s| s.name_any() == object) {
                Some(listed) => Some(listed.clone()),
                None => Api::<MinerSubmission>::namespaced(client.clone(), &namespace).get_opt(&object).await?,
            };
            let Some(found) = found else { continue };
            if is_ours(&found, status, unrecorded) {
                // Archived in flight (by someone else: the operator archives only an ended Task's),
                // it left the caches and its controller: the label goes, and the Task says so.
                if retention::is_archived(&found) {
                    retention::unarchive(client, &namespace, &found).await?;
                    findings.push(Finding::archived_in_flight(&found));
                }
                workloads.insert(id, lifecycle::training_state(&found));
            } else {
                findings.push(Finding::not_adopted(&found, &id.to_string()));
                workloads.insert(id, lifecycle::not_adopted(now, &ownership::describe(&found)));
            }
            continue;
        }
        let (object, container, image) = match id.kind {
            WorkKind::Prepare => (prepare::job_name(&name, id.attempt), "prepare", &ctx.workloads.operator_image),
            WorkKind::Synthesize => {
                (synthesize::job_name(&name, id.attempt), synthesize::CONTAINER, &ctx.workloads.evaluator_image)
            }
            WorkKind::Seal => {
                (crate::workloads::workload_name(&name, &id), seal::SEAL_CONTAINER, &ctx.workloads.operator_image)
            }
            _ => (
                crate::workloads::workload_name(&name, &id),
                evaluator::EVALUATOR_CONTAINER,
                &ctx.workloads.evaluator_image,
            ),
        };
        let found = match jobs.iter().find(|j| j.name_any() == object) {
            Some(listed) => Some(listed.clone()),
            None => Api::<Job>::namespaced(client.clone(), &namespace).get_opt(&object).await?.map(|mut job| {
                condense::job(&mut job);
                job
            }),
        };
        let Some(job) = found else { continue };
        if !is_ours(&job, status, unrecorded) {
            findings.push(Finding::not_adopted(&job, &id.to_string()));
            workloads.insert(id, lifecycle::not_adopted(now, &ownership::describe(&job)));
            continue;
        }
        let of_job = format!("{}={object}", crate::workloads::labels::JOB_NAME);
        let mut labelled: Vec<Pod> = pods
            .iter()
            .filter(|p| p.labels().get(crate::workloads::labels::JOB_NAME) == Some(&object))
            .cloned()
            .collect();
        if lifecycle::pods_behind(&job, &ownership::trusted_pods(&labelled, &job, container, image).0, container) {
            let api = Api::<Pod>::namespaced(client.clone(), &namespace);
            labelled = list_all(&api, &ListParams::default().labels(&of_job)).await?;
            labelled.iter_mut().for_each(condense::pod);
        }
        let (trusted, ignored) = ownership::trusted_pods(&labelled, &job, container, image);
        findings.extend(ignored.into_iter().map(|(pod, why)| Finding {
            reason: "ForgedPod",
            note: format!("{why}: its result for {id} is ignored"),
            related: pod.object_ref(&()),
        }));
        let observed = match id.kind {
            WorkKind::Prepare => lifecycle::preparation_state(&job, &trusted),
            WorkKind::Synthesize => lifecycle::synthesis_state(&job, &trusted),
            WorkKind::Seal => lifecycle::seal_state(&job, &trusted),
            _ => lifecycle::evaluation_state(&job, &trusted),
        };
        workloads.insert(id, observed);
    }
    Ok(workloads)
}
