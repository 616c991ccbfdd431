//! The TaskSource controller: keeps `spec.inFlight` synthetic Tasks of a source running, and
//! pauses while organic Tasks of its namespace wait. The decisions are
//! [`crate::synthetic::plan`]'s; this file reads the namespace and applies them.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt};
use kube::api::ListParams;
use kube::core::DeserializeGuard;
use kube::runtime::controller::{Action as Requeue, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Api, Resource, ResourceExt};

use super::context::{Context, apply_status, ensure, list_all, log_stream_errors, object_key, scoped};
use super::error::{Error, Result};
use crate::api::submission::SubmissionPhase;
use crate::api::task::Origin;
use crate::api::task_source::TaskSourceSpec;
use crate::api::{MinerSubmission, Task, TaskSource};
use crate::synthetic::plan::{self, Existing, Observation};
use crate::synthetic::{SourceError, file, labels};
use crate::workloads::WorkloadConfig;

const NAME: &str = "tasksource";
/// Looked at again at least this often, whatever happens in the namespace.
const RESYNC: Duration = Duration::from_secs(60);

pub fn controller(ctx: Arc<Context>, namespace: Option<&str>, shutdown: super::Stop) -> BoxFuture<'static, ()> {
    let client = ctx.client.clone();
    let controller =
        Controller::new(scoped::<DeserializeGuard<TaskSource>>(&client, namespace), watcher::Config::default());
    // Any Task or trainer change in a namespace may end a pause or free a slot: wake its sources.
    let sources = controller.store();
    let in_namespace = move |namespace: Option<String>| -> Vec<ObjectRef<DeserializeGuard<TaskSource>>> {
        sources.state().iter().filter(|s| s.namespace() == namespace).map(|s| ObjectRef::from_obj(s.as_ref())).collect()
    };
    let for_submissions = in_namespace.clone();
    controller
        .watches(scoped::<DeserializeGuard<Task>>(&client, namespace), watcher::Config::default(), move |task| {
            in_namespace(task.namespace())
        })
        .watches(
            scoped::<DeserializeGuard<MinerSubmission>>(&client, namespace),
            watcher::Config::default(),
            move |s| for_submissions(s.namespace()),
        )
        .graceful_shutdown_on(shutdown)
        .run(reconcile, |object, error, ctx| ctx.error_policy(NAME, object, error), ctx.clone())
        .for_each(log_stream_errors(NAME, ctx))
        .boxed()
}

pub(super) async fn reconcile(guarded: Arc<DeserializeGuard<TaskSource>>, ctx: Arc<Context>) -> Result<Requeue> {
    let key = object_key(guarded.as_ref());
    let run_ctx = ctx.clone();
    ctx.instrumented(NAME, key, move || reconcile_source(guarded, run_ctx)).await
}

async fn reconcile_source(guarded: Arc<DeserializeGuard<TaskSource>>, ctx: Arc<Context>) -> Result<Requeue> {
    let Some(cached) = ctx.readable(guarded.as_ref()).await else { return Ok(Requeue::await_change()) };
    let namespace = cached.namespace().unwrap_or_default();
    let name = cached.name_any();
    let client = &ctx.client;
    // The next index is in the status: read it fresh, never from a cache that may lag behind
    // our own last write. The Tasks too, so none is counted twice or missed.
    let Some(source) = Api::<TaskSource>::namespaced(client.clone(), &namespace).get_opt(&name).await? else {
        return Ok(Requeue::await_change());
    };
    if source.metadata.deletion_timestamp.is_some() {
        return Ok(Requeue::await_change());
    }
    let tasks = readable(Api::<DeserializeGuard<Task>>::namespaced(client.clone(), &namespace)).await?;
    let submissions =
        readable(Api::<DeserializeGuard<MinerSubmission>>::namespaced(client.clone(), &namespace)).await?;
    let own: Vec<Existing> = tasks
        .iter()
        .filter(|t| t.labels().get(labels::SOURCE) == Some(&name))
        .map(|t| Existing {
            name: t.name_any(),
            index: t.labels().get(labels::INDEX).and_then(|i| i.parse().ok()),
            task_type: t.spec.task_type,
            finished: t.phase().is_terminal(),
        })
        .collect();
    let waiting: Vec<(String, plan::Waiting)> = tasks
        .iter()
        .filter(|t| t.spec.origin == Origin::Organic)
        .filter_map(|t| {
            let task = t.name_any();
            let pending = submissions
                .iter()
                .filter(|s| {
                    // A trainer not yet observed (no status) does not run either: counting it
                    // closes the window in which a just-staffed organic Task looked satisfied.
                    s.spec.task == task
                        && s.status
                            .as_ref()
                            .is_none_or(|st| matches!(st.phase, SubmissionPhase::Pending | SubmissionPhase::Queued))
                })
                .count();
            plan::organic_waiting(t.phase(), pending).map(|why| (task, why))
        })
        .collect();
    let previous = source.status.clone().unwrap_or_default();
    let sources = refused_sources(&source.spec, &ctx.workloads);
    let decided = plan::plan(&Observation {
        source: &name,
        generation: source.metadata.generation,
        spec: &source.spec,
        previous: &previous,
        own: &own,
        waiting: &waiting,
        sources: &sources,
        now: Utc::now(),
    });

    let owner =
        source.controller_owner_ref(&()).ok_or_else(|| Error::InvalidObject("TaskSource without uid".into()))?;
    for drawn in &decided.create {
        let mut task = file::task(drawn, &name);
        task.metadata.namespace = Some(namespace.clone());
        task.metadata.owner_references = Some(vec![owner.clone()]);
        // Create-if-absent under a name fixed by the draw: a retry or a restart finds it.
        ensure(client, &task).await?;
        let spec = &drawn.spec;
        let note = format!(
            "{}: {} of {} on {} for {} h",
            drawn.name,
            drawn.task_type,
            spec.base_model.uri,
            spec.dataset.uri,
            spec.hours.unwrap_or_default()
        );
        tracing::info!(source = %name, task = %drawn.name, "created a synthetic task");
        ctx.event(&source, false, "Created", note).await;
    }
    for (warning, reason, note) in decided.notices {
        ctx.event(&source, warning, reason, note).await;
    }
    if Some(&decided.status) != source.status.as_ref() {
        apply_status(client, &source, &decided.status).await?;
    }
    Ok(Requeue::requeue(RESYNC))
}

/// The first catalog URI the operator would refuse to read (`workloads.allowedSources`).
fn refused_sources(spec: &TaskSourceSpec, workloads: &WorkloadConfig) -> std::result::Result<(), SourceError> {
    let models = spec.catalog.models.iter().enumerate().map(|(i, m)| (format!("spec.catalog.models[{i}].uri"), &m.uri));
    let datasets = spec.catalog.datasets.iter().enumerate().flat_map(|(i, d)| {
        std::iter::once((format!("spec.catalog.datasets[{i}].uri"), &d.uri))
            .chain(d.synthetic_uri.iter().map(move |u| (format!("spec.catalog.datasets[{i}].syntheticUri"), u)))
    });
    match models.chain(datasets).find(|(_, uri)| !workloads.source_allowed(uri)) {
        None => Ok(()),
        Some((field, uri)) => Err(SourceError::Invalid {
            field,
            message: format!(
                "'{uri}' is not under a source this operator may read (workloads.allowedSources: {})",
                workloads.allowed_sources.join(", ")
            ),
        }),
    }
}

/// The objects of a namespace that deserialize (one malformed object is skipped, not fatal).
async fn readable<K>(api: Api<DeserializeGuard<K>>) -> Result<Vec<K>>
where
    K: Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    Ok(list_all(&api, &ListParams::default()).await?.into_iter().filter_map(|k| k.0.ok()).collect())
}
