//! What a Task or Leaderboard reconcile reads besides its own object: the Miners and the
//! Task's children, served from one watch per kind and namespace served (issue 13: listing them
//! from the API server on every reconcile made the cost per Task grow with the number of Tasks).
//!
//! A store can lag a write the same reconcile just made. The readers stay safe: creating a
//! child still asks the API server first (`ownership::claim`), a child the state waits for but
//! the store lacks is fetched by name, and a finished Job whose result pod the store does not
//! show yet has its pods listed fresh (see `task::observe_workloads`).

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt::Debug;

use futures::future::BoxFuture;
use futures::stream::BoxStream;
use futures::{FutureExt, StreamExt};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::core::DeserializeGuard;
use kube::runtime::reflector::{self, ReflectHandle, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;

use super::by_task::ByTask;
use super::condense::{CachedJob, CachedPod};
use super::context::scoped;
use crate::api::{Evaluation, Miner, MinerSubmission, Task};
use crate::workloads::labels;

/// The stores of one namespace served (or of the whole cluster).
struct Scope {
    namespace: Option<String>,
    miners: Store<DeserializeGuard<Miner>>,
    jobs: OfTasks<CachedJob>,
    pods: OfTasks<CachedPod>,
    submissions: OfTasks<DeserializeGuard<MinerSubmission>>,
    evaluations: Store<DeserializeGuard<Evaluation>>,
}

/// A store of a kind of Task children and its index by Task, filled by the same watch.
struct OfTasks<K: Kept<DynamicType = ()> + Clone + 'static> {
    store: Store<K>,
    by_task: ByTask,
}

impl<K: Kept<DynamicType = ()> + Clone + 'static> From<(Store<K>, ByTask)> for OfTasks<K> {
    fn from((store, by_task): (Store<K>, ByTask)) -> Self {
        OfTasks { store, by_task }
    }
}

impl<K: Kept<DynamicType = ()> + Clone + 'static> OfTasks<K> {
    /// The objects of `namespace` labelled as the Task's: those the index names, as the store
    /// holds them and still labelled so (the index may be a moment ahead of or behind the store).
    fn of_task<'a>(&'a self, namespace: &'a str, task: &str) -> impl Iterator<Item = std::sync::Arc<K>> + 'a {
        let value = crate::workloads::label_value(task);
        let found = self.by_task.names(namespace, &value).into_iter();
        found
            .filter_map(|name| self.store.get(&reflector::ObjectRef::new(&name).within(namespace)))
            .filter(move |object| object.task_label().as_deref() == Some(value.as_str()))
    }
}

/// How long a reconcile waits for the caches it reads to hold their first complete list.
pub const FIRST_LIST_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

pub struct Caches {
    scopes: Vec<Scope>,
}

/// What a cache keeps of an object of its kind. Who wrote which field is never read, so it is not
/// kept (the largest part of most objects). A kind may drop more here, or where it is read from
/// JSON (`condense::CachedJob`, `CachedPod`). Public for `benches/cache_footprint.rs`.
pub trait Kept: Resource + Sized {
    fn condense(&mut self) {
        self.managed_fields_mut().clear();
    }

    /// The label value of the Task it is of (the caches' index by Task).
    fn task_label(&self) -> Option<Cow<'_, str>> {
        task_label_of(self)
    }
}

/// The Task label an object's metadata carries.
fn task_label_of(object: &impl Resource) -> Option<Cow<'_, str>> {
    object.labels().get(labels::TASK).map(|label| Cow::Borrowed(label.as_str()))
}

impl Kept for DeserializeGuard<Miner> {}

/// A cached Evaluation keeps what its readers read (`condense::evaluation`).
impl Kept for DeserializeGuard<Evaluation> {
    fn condense(&mut self) {
        self.managed_fields_mut().clear();
        if let Ok(evaluation) = &mut self.0 {
            super::condense::evaluation(evaluation);
        }
    }
}

/// A cached Job or pod holds its kept labels beside its metadata (`condense`).
impl Kept for CachedJob {
    fn task_label(&self) -> Option<Cow<'_, str>> {
        self.label(labels::TASK).map(Cow::Borrowed)
    }
}

impl Kept for CachedPod {
    fn task_label(&self) -> Option<Cow<'_, str>> {
        self.label(labels::TASK).map(Cow::Borrowed)
    }
}

/// A cached MinerSubmission keeps no labels (`condense::submission`): it is of the Task its spec
/// names, which is what the operator labels it with. Trust never rests on either (its uid does).
impl Kept for DeserializeGuard<MinerSubmission> {
    fn condense(&mut self) {
        self.managed_fields_mut().clear();
        if let Ok(submission) = &mut self.0 {
            super::condense::submission(submission);
        }
    }

    fn task_label(&self) -> Option<Cow<'_, str>> {
        match &self.0 {
            Ok(submission) => Some(Cow::Owned(crate::workloads::label_value(&submission.spec.task))),
            Err(_) => task_label_of(self),
        }
    }
}

/// A store of `K` and the watch that fills it, as the stream of the objects it touched (to be
/// polled for the store to move); `by_task`, if given, follows the same watch.
fn cached<K>(
    api: kube::Api<K>,
    config: watcher::Config,
    by_task: Option<ByTask>,
) -> (Store<K>, BoxStream<'static, Result<K, watcher::Error>>)
where
    K: Kept<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    let (reader, writer) = reflector::store();
    let stream = indexed(watcher(api, config).default_backoff().modify(K::condense), by_task);
    (reader, reflector::reflector(writer, stream).touched_objects().boxed())
}

/// `events`, with `by_task` (if any) following each before the store applies it.
fn indexed<K: Kept>(
    events: impl futures::Stream<Item = watcher::Result<watcher::Event<K>>> + Send,
    by_task: Option<ByTask>,
) -> impl futures::Stream<Item = watcher::Result<watcher::Event<K>>> + Send {
    events.inspect(move |event| {
        if let (Ok(event), Some(by_task)) = (event, &by_task) {
            by_task.observe(event);
        }
    })
}

/// How many changes a shared store's subscriber may lag before the watch waits for it.
const SUBSCRIBER_BUFFER: usize = 256;

/// Like [`cached`], for a kind whose own controller reads the same store: the store's writer
/// also hands each applied object to `Shared::changes` (deletions are not handed on: such a
/// controller has nothing to do for an object that is gone).
fn cached_shared<K>(
    api: kube::Api<K>,
    config: watcher::Config,
    by_task: Option<ByTask>,
) -> (Shared<K>, BoxStream<'static, Result<K, watcher::Error>>)
where
    K: Kept<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    let (store, writer) = reflector::store_shared(SUBSCRIBER_BUFFER);
    let changes = writer.subscribe().expect("a shared store's writer has subscribers");
    let stream = indexed(watcher(api, config).default_backoff().modify(K::condense), by_task).reflect_shared(writer);
    (Shared { store, changes }, stream.touched_objects().boxed())
}

/// Polls a watch that triggers nothing, for its store.
fn drain<K: Resource<DynamicType = ()> + 'static>(
    stream: BoxStream<'static, Result<K, watcher::Error>>,
) -> BoxFuture<'static, ()> {
    let kind = K::kind(&()).to_string();
    stream
        .for_each(move |event| {
            if let Err(error) = event {
                tracing::warn!(kind, %error, "cache watch error");
            }
            futures::future::ready(())
        })
        .boxed()
}

/// The watches of the children whose changes wake their Task: the Task controller polls them
/// (`Controller::owns_stream`), so its store is never older than the change that woke it.
pub struct Triggers {
    pub jobs: BoxStream<'static, Result<CachedJob, watcher::Error>>,
    pub pods: BoxStream<'static, Result<CachedPod, watcher::Error>>,
    pub submissions: BoxStream<'static, Result<DeserializeGuard<MinerSubmission>, watcher::Error>>,
    pub evaluations: BoxStream<'static, Result<DeserializeGuard<Evaluation>, watcher::Error>>,
}

/// The MinerSubmission and Evaluation controllers read the same stores as the Task's
/// reconciles: one copy of each object (issue 13: two stores held every one twice).
pub struct SharedStores {
    pub submissions: Shared<DeserializeGuard<MinerSubmission>>,
    pub evaluations: Shared<DeserializeGuard<Evaluation>>,
    /// Marked after the store of Evaluations applied a change (a deletion too), for the
    /// Leaderboards, which read their records from that store.
    pub evaluations_changed: tokio::sync::watch::Receiver<()>,
}

/// A store and the changes it applied, for the controller of its kind
/// (`Controller::for_shared_stream`). Its watch moves only while the Task controller polls it.
pub struct Shared<K: Resource<DynamicType = ()> + Clone + 'static> {
    pub store: Store<K>,
    pub changes: ReflectHandle<K>,
}

impl Caches {
    /// The stores of `scopes` (a namespace each, `None` for the whole cluster); the watches of
    /// Miners, to be spawned; and per scope, in order, the children's watches for its
    /// Task controller and the stores its other controllers share.
    pub fn new(
        client: &Client,
        scopes: &[Option<String>],
    ) -> (Caches, Vec<BoxFuture<'static, ()>>, Vec<(Triggers, SharedStores)>) {
        let mut background = Vec::new();
        let mut triggers = Vec::new();
        let mut out = Vec::new();
        for namespace in scopes {
            let ns = namespace.as_deref();
            let (miners, stream) = cached(scoped(client, ns), watcher::Config::default(), None);
            background.push(drain(stream));
            // Only the pods of the operator's Jobs (they carry their Task's label). A pod's change
            // wakes its Task too: a forged pod must be seen without waiting for a resync.
            // Trainer Jobs and their pods are left out: a Task follows a training through its
            // MinerSubmission, never reads them, and they are most of the objects (issue 13: at
            // 100 Tasks x 16 miners the stores held 3,800 pods and Jobs). A forged object that
            // calls itself a trainer's stays unseen here but gains nothing: a Job the store lacks
            // is fetched by name, and results come only from the pods a Job owns.
            let not_trainer = format!("{}!={}", labels::ROLE, labels::ROLE_TRAINER);
            let pods_selector = format!("{},{not_trainer}", labels::TASK);
            let (pods_by_task, jobs_by_task, submissions_by_task) = Default::default();
            let pods_config = watcher::Config::default().labels(&pods_selector);
            let (pods, pod_stream) = cached(scoped(client, ns), pods_config, Some(ByTask::clone(&pods_by_task)));
            let managed = format!("{}={},{not_trainer}", labels::MANAGED_BY, labels::MANAGER);
            let jobs_config = watcher::Config::default().labels(&managed);
            let (jobs, job_stream) = cached(scoped(client, ns), jobs_config, Some(ByTask::clone(&jobs_by_task)));
            // Archived submissions (an ended Task's, its Jobs gone) are read by no one here: an
            // archived one leaves the store as if deleted (`retention::archive`).
            let unarchived = watcher::Config::default().labels(&format!("!{}", labels::ARCHIVED));
            let (submissions, submission_stream) =
                cached_shared(scoped(client, ns), unarchived, Some(ByTask::clone(&submissions_by_task)));
            let (evaluations, evaluation_stream) = cached_shared(scoped(client, ns), watcher::Config::default(), None);
            let (changed, evaluations_changed) = tokio::sync::watch::channel(());
            // Downstream of the store: a Leaderboard woken here reads the change it was woken for.
            let evaluation_stream = evaluation_stream.inspect(move |_| changed.send_replace(())).boxed();
            out.push(Scope {
                namespace: namespace.clone(),
                miners,
                jobs: (jobs, jobs_by_task).into(),
                pods: (pods, pods_by_task).into(),
                submissions: (submissions.store.clone(), submissions_by_task).into(),
                evaluations: evaluations.store.clone(),
            });
            let task_triggers = Triggers {
                jobs: job_stream,
                pods: pod_stream,
                submissions: submission_stream,
                evaluations: evaluation_stream,
            };
            triggers.push((task_triggers, SharedStores { submissions, evaluations, evaluations_changed }));
        }
        (Caches { scopes: out }, background, triggers)
    }

    /// Waits until the stores of Miners hold their first complete list.
    pub async fn wait_until_ready(&self) -> Result<(), reflector::store::WriterDropped> {
        for scope in &self.scopes {
            scope.miners.wait_until_ready().await?;
        }
        Ok(())
    }

    /// Whether the stores of the children in `namespace` hold their first complete list, waiting
    /// up to `within` (their watches run inside the Task controller, which starts them).
    pub async fn children_ready(&self, namespace: &str, within: std::time::Duration) -> bool {
        let Some(scope) = self.scope(namespace) else { return false };
        let ready = async {
            scope.jobs.store.wait_until_ready().await.is_ok()
                && scope.pods.store.wait_until_ready().await.is_ok()
                && scope.submissions.store.wait_until_ready().await.is_ok()
                && scope.evaluations.wait_until_ready().await.is_ok()
        };
        tokio::time::timeout(within, ready).await.unwrap_or(false)
    }

    fn scope(&self, namespace: &str) -> Option<&Scope> {
        self.scopes.iter().find(|s| s.namespace.as_deref().is_none_or(|n| n == namespace))
    }

    /// The enabled Miners of `namespace` whose labels hold every pair of `selector`, by name. A
    /// Miner that does not deserialize is skipped, not fatal.
    pub fn miners(&self, namespace: &str, selector: &BTreeMap<String, String>) -> BTreeMap<String, Miner> {
        let Some(scope) = self.scope(namespace) else { return BTreeMap::new() };
        let selected = |m: &Miner| m.spec.enabled && selector.iter().all(|(k, v)| m.labels().get(k) == Some(v));
        readable(&scope.miners, namespace, selected).into_iter().map(|m| (m.name_any(), m)).collect()
    }

    /// The Jobs of the operator's Task `task`, condensed.
    pub fn jobs(&self, namespace: &str, task: &str) -> Vec<Job> {
        let Some(scope) = self.scope(namespace) else { return Vec::new() };
        scope.jobs.of_task(namespace, task).map(|job| job.to_job()).collect()
    }

    /// The pods of the Task's Jobs, condensed.
    pub fn pods(&self, namespace: &str, task: &str) -> Vec<Pod> {
        let Some(scope) = self.scope(namespace) else { return Vec::new() };
        scope.pods.of_task(namespace, task).map(|pod| pod.to_pod()).collect()
    }

    /// The readable MinerSubmissions of the Task.
    pub fn submissions(&self, namespace: &str, task: &str) -> Vec<MinerSubmission> {
        let Some(scope) = self.scope(namespace) else { return Vec::new() };
        scope.submissions.of_task(namespace, task).filter_map(|guarded| guarded.0.as_ref().ok().cloned()).collect()
    }

    /// The readable Evaluation of `name` in `namespace`.
    pub fn evaluation(&self, namespace: &str, name: &str) -> Option<Evaluation> {
        let scope = self.scope(namespace)?;
        scope
            .evaluations
            .get(&reflector::ObjectRef::new(name).within(namespace))
            .and_then(|guarded| guarded.0.as_ref().ok().cloned())
    }

    /// The Evaluations of `namespace` as the store holds them (for the Leaderboard), unless its
    /// first complete list is not in within `within`.
    pub async fn all_evaluations(
        &self,
        namespace: &str,
        within: std::time::Duration,
    ) -> Option<Vec<std::sync::Arc<DeserializeGuard<Evaluation>>>> {
        let scope = self.scope(namespace)?;
        tokio::time::timeout(within, scope.evaluations.wait_until_ready()).await.ok()?.ok()?;
        Some(scope.evaluations.state().into_iter().filter(|e| e.namespace().as_deref() == Some(namespace)).collect())
    }

    /// The readable Miners of `namespace` (for the Leaderboard).
    pub fn all_miners(&self, namespace: &str) -> Vec<Miner> {
        self.scope(namespace).map(|s| readable(&s.miners, namespace, |_| true)).unwrap_or_default()
    }
}

/// The readable objects of `namespace` in a tolerant store that `keep` selects. Only those are
/// cloned.
fn readable<K>(store: &Store<DeserializeGuard<K>>, namespace: &str, keep: impl Fn(&K) -> bool) -> Vec<K>
where
    K: Resource<DynamicType = ()> + Clone,
    DeserializeGuard<K>: Resource<DynamicType = ()>,
{
    store
        .state()
        .iter()
        .filter_map(|guarded| guarded.0.as_ref().ok())
        .filter(|object| object.namespace().as_deref() == Some(namespace) && keep(object))
        .cloned()
        .collect()
}

/// The Task whose label value (`workloads::label_value` of its name) the pod carries. A name
/// of up to 63 characters is its own label value, found directly; a longer one is hashed into
/// its label, and only for a label that may be such a hash are the Tasks searched.
pub fn task_of_pod(
    tasks: &Store<DeserializeGuard<Task>>,
    pod: &CachedPod,
) -> Option<reflector::ObjectRef<DeserializeGuard<Task>>> {
    let value = pod.task_label()?;
    let value = value.as_ref();
    let namespace = pod.namespace()?;
    let direct = reflector::ObjectRef::new(value).within(&namespace);
    if tasks.get(&direct).is_some() {
        return Some(direct);
    }
    if !crate::workloads::may_be_hashed(value) {
        return None;
    }
    tasks
        .state()
        .iter()
        .find(|task| {
            task.namespace().as_deref() == Some(&namespace) && crate::workloads::label_value(&task.name_any()) == *value
        })
        .map(|task| reflector::ObjectRef::from_obj(task.as_ref()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::operator::ownership::CREATION_TOKEN;
    use kube::runtime::watcher::Event;

    fn store_of<K>(objects: Vec<K>) -> Store<K>
    where
        K: Resource<DynamicType = ()> + Clone + 'static,
    {
        let (reader, mut writer) = reflector::store();
        for object in objects {
            writer.apply_watcher_event(&Event::Apply(object));
        }
        reader
    }

    /// A store and its index by Task, filled by the same events.
    fn indexed_store_of<K>(objects: Vec<K>) -> (Store<K>, ByTask)
    where
        K: Kept + Resource<DynamicType = ()> + Clone + 'static,
    {
        let (reader, mut writer) = reflector::store();
        let by_task = ByTask::default();
        for object in objects {
            let event = Event::Apply(object);
            by_task.observe(&event);
            writer.apply_watcher_event(&event);
        }
        (reader, by_task)
    }

    fn object<K: serde::de::DeserializeOwned>(value: serde_json::Value) -> K {
        serde_json::from_value(value).unwrap()
    }

    fn miner(namespace: &str, name: &str, pool: &str, enabled: bool) -> DeserializeGuard<Miner> {
        object(serde_json::json!({
            "apiVersion": "gradients.io/v1alpha1", "kind": "Miner",
            "metadata": {"name": name, "namespace": namespace, "labels": {"pool": pool}},
            "spec": {"strategy": "lora-fast", "enabled": enabled},
        }))
    }

    fn job(namespace: &str, name: &str, task: &str) -> Job {
        object(serde_json::json!({
            "metadata": {"name": name, "namespace": namespace, "labels": {labels::TASK: task}},
        }))
    }

    fn caches(namespace: Option<&str>, miners: Vec<DeserializeGuard<Miner>>, jobs: Vec<Job>) -> Caches {
        let jobs = indexed_store_of(jobs.into_iter().map(CachedJob::from).collect());
        Caches {
            scopes: vec![Scope {
                namespace: namespace.map(str::to_string),
                miners: store_of(miners),
                jobs: jobs.into(),
                pods: indexed_store_of(Vec::new()).into(),
                submissions: indexed_store_of(Vec::new()).into(),
                evaluations: store_of(Vec::new()),
            }],
        }
    }

    /// Weights pay out: the Leaderboard reads nothing before the cache's first complete list,
    /// and then only the Evaluations of its own namespace.
    #[tokio::test]
    async fn a_leaderboard_reads_its_namespaces_evaluations_only_once_the_first_list_is_complete() {
        let evaluation = |namespace: &str, name: &str| -> DeserializeGuard<Evaluation> {
            object(serde_json::json!({
                "apiVersion": "gradients.io/v1alpha1", "kind": "Evaluation",
                "metadata": {"name": name, "namespace": namespace},
            }))
        };
        let (reader, mut writer) = reflector::store();
        let mut caches = caches(None, Vec::new(), Vec::new());
        caches.scopes[0].evaluations = reader;
        writer.apply_watcher_event(&Event::Init);
        for listed in [evaluation("a", "e1"), evaluation("b", "e2"), evaluation("a", "e3")] {
            writer.apply_watcher_event(&Event::InitApply(listed));
        }
        let wait = std::time::Duration::from_millis(20);
        assert!(caches.all_evaluations("a", wait).await.is_none(), "a partial list must not be scored");
        writer.apply_watcher_event(&Event::InitDone);
        let read = caches.all_evaluations("a", wait).await.expect("the first list is complete");
        let mut names: Vec<String> = read.iter().map(|e| e.name_any()).collect();
        names.sort();
        assert_eq!(names, ["e1", "e3"]);
    }

    #[test]
    fn a_tasks_pool_is_the_enabled_miners_its_selector_matches_in_its_namespace() {
        let caches = caches(
            None,
            vec![
                miner("a", "m1", "bench", true),
                miner("a", "m2", "other", true),
                miner("a", "m3", "bench", false),
                miner("b", "m4", "bench", true),
            ],
            Vec::new(),
        );
        let selector = BTreeMap::from([("pool".to_string(), "bench".to_string())]);
        assert_eq!(caches.miners("a", &selector).into_keys().collect::<Vec<_>>(), ["m1"]);
        assert_eq!(caches.miners("a", &BTreeMap::new()).into_keys().collect::<Vec<_>>(), ["m1", "m2"]);
        assert_eq!(caches.all_miners("b").len(), 1);
    }

    #[test]
    fn a_tasks_children_are_those_labelled_with_it_in_its_namespace() {
        let caches = caches(
            None,
            Vec::new(),
            vec![job("a", "t1-prepare", "t1"), job("a", "t2-prepare", "t2"), job("b", "x", "t1")],
        );
        let names: Vec<String> = caches.jobs("a", "t1").iter().map(|j| j.name_any()).collect();
        assert_eq!(names, ["t1-prepare"]);
        assert!(caches.jobs("c", "t1").is_empty());
    }

    /// The index names candidates; the store's copy decides. A relabel the index has seen and the
    /// store not yet (or the other way round) never makes another Task's object a child.
    #[test]
    fn a_child_is_read_as_the_store_holds_it() {
        let caches = caches(None, Vec::new(), vec![job("a", "j", "t1")]);
        caches.scopes[0].jobs.by_task.observe(&Event::Apply(CachedJob::from(job("a", "j", "t2"))));
        assert!(caches.jobs("a", "t1").is_empty(), "the index no longer names it for t1");
        assert!(caches.jobs("a", "t2").is_empty(), "the store still holds it labelled t1");
    }

    #[test]
    fn a_namespace_outside_the_scopes_served_has_nothing() {
        let caches = caches(Some("a"), vec![miner("a", "m1", "bench", true)], vec![job("a", "j", "t1")]);
        assert_eq!(caches.all_miners("a").len(), 1);
        assert!(caches.all_miners("b").is_empty());
        assert!(caches.jobs("b", "t1").is_empty());
    }

    /// The Task and the metrics read a cached submission's miner, GPUs, metadata and status; the
    /// trainer's inputs are read fresh by the only reconcile that builds a trainer. Its labels go
    /// (it is indexed by its spec's Task) and of its annotations only the creation token stays.
    #[test]
    fn a_cached_submission_keeps_what_tasks_and_metrics_read_and_drops_the_trainers_inputs() {
        let mut guarded: DeserializeGuard<MinerSubmission> = object(serde_json::json!({
            "apiVersion": "gradients.io/v1alpha1", "kind": "MinerSubmission",
            "metadata": {"name": "t-m1-1", "namespace": "a", "uid": "u1",
                         "labels": {labels::TASK: "t", labels::MINER: "m1"},
                         "annotations": {CREATION_TOKEN: "0123", "other": "dropped"},
                         "managedFields": [{"manager": "kubectl"}]},
            "spec": {"task": "t", "miner": "m1", "taskType": "Dpo", "baseModelUri": "file:///models/base",
                     "baseModelParamsB": 0.5, "dataUri": "file:///data/a/t", "columns": {"prompt": "q"},
                     "artifactUri": "file:///artifacts/a/t/m1", "hours": 1.5, "gpus": 2, "gpuClass": "h100",
                     "image": "trainer:1", "command": ["python"], "strategy": "lora-fast",
                     "args": ["--strategy-overrides", "{}"], "seed": 7, "resumeUri": "file:///artifacts/a/t/m0"},
            "status": {"phase": "Training", "job": "t-m1-1-train", "jobUid": "j1"},
        }));
        guarded.condense();
        assert_eq!(guarded.task_label().as_deref(), Some("t"));
        let kept = guarded.0.expect("readable");
        assert!(kept.metadata.managed_fields.as_ref().is_none_or(|fields| fields.is_empty()));
        assert_eq!(kept.metadata.uid.as_deref(), Some("u1"));
        assert_eq!(kept.metadata.labels, None, "no label is read of a cached submission");
        assert_eq!(kept.metadata.annotations, Some([(CREATION_TOKEN.to_string(), "0123".to_string())].into()));
        let spec = &kept.spec;
        assert_eq!((spec.task.as_str(), spec.miner.as_str(), spec.gpus, spec.hours, spec.seed), ("t", "m1", 2, 1.5, 7));
        let status = kept.status.as_ref().expect("status kept");
        assert_eq!((status.job.as_deref(), status.job_uid.as_deref()), (Some("t-m1-1-train"), Some("j1")));
        assert!(spec.base_model_uri.is_empty() && spec.data_uri.is_empty() && spec.artifact_uri.is_empty());
        assert!(spec.columns.is_empty() && spec.command.is_empty() && spec.args.is_empty());
        assert_eq!((&spec.image, &spec.strategy, &spec.resume_uri), (&None, &None, &None));
    }

    /// Without its labels, a cached submission is still found by its Task, one whose name is too
    /// long for a label value (hashed into it) too.
    #[test]
    fn a_condensed_submission_is_found_by_the_task_its_spec_names() {
        let long = "a-task-whose-name-is-longer-than-the-sixty-three-characters-of-a-label";
        let submission = |name: &str, task: &str| -> DeserializeGuard<MinerSubmission> {
            let mut guarded: DeserializeGuard<MinerSubmission> = object(serde_json::json!({
                "apiVersion": "gradients.io/v1alpha1", "kind": "MinerSubmission",
                "metadata": {"name": name, "namespace": "a", "labels": {labels::TASK: crate::workloads::label_value(task)}},
                "spec": {"task": task, "miner": "m1", "taskType": "Dpo", "baseModelUri": "file:///m",
                         "baseModelParamsB": 0.5, "dataUri": "file:///d", "artifactUri": "file:///a", "hours": 1.0, "gpus": 1,
                         "gpuClass": "h100", "seed": 1},
            }));
            guarded.condense();
            assert!(guarded.0.is_ok(), "{:?}", guarded.0.as_ref().err());
            guarded
        };
        let mut caches = caches(Some("a"), Vec::new(), Vec::new());
        caches.scopes[0].submissions = indexed_store_of(vec![submission("s1", long), submission("s2", "t")]).into();
        let names = |task: &str| caches.submissions("a", task).iter().map(|s| s.name_any()).collect::<Vec<_>>();
        assert_eq!(names(long), ["s1"]);
        assert_eq!(names("t"), ["s2"]);
        assert!(names("other").is_empty());
    }

    fn task(namespace: &str, name: &str) -> DeserializeGuard<Task> {
        object(serde_json::json!({
            "apiVersion": "gradients.io/v1alpha1", "kind": "Task",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"taskType": "InstructText", "hours": 0.1,
                     "baseModel": {"uri": "file:///m"}, "dataset": {"uri": "file:///d"}},
        }))
    }

    fn pod_of(namespace: &str, task: &str) -> CachedPod {
        object(serde_json::json!({
            "metadata": {"name": "p", "namespace": namespace,
                         "labels": {labels::TASK: crate::workloads::label_value(task)}},
        }))
    }

    #[test]
    fn a_pods_change_wakes_the_task_its_label_names_even_when_the_name_was_hashed_into_it() {
        let long = format!("a-task-whose-name-is-longer-than-a-label-value-may-be-{}", "x".repeat(20));
        let tasks = store_of(vec![task("a", "short"), task("a", &long), task("b", "other")]);
        let woken = |pod: CachedPod| task_of_pod(&tasks, &pod).map(|r| (r.namespace.unwrap_or_default(), r.name));
        assert_eq!(woken(pod_of("a", "short")), Some(("a".to_string(), "short".to_string())));
        assert_eq!(woken(pod_of("a", &long)), Some(("a".to_string(), long.clone())));
        // Another namespace's Task of that name, or none at all, is not woken.
        assert_eq!(woken(pod_of("b", "short")), None);
        assert_eq!(woken(pod_of("a", "gone")), None);
        assert_eq!(woken(object(serde_json::json!({"metadata": {"name": "p", "namespace": "a"}}))), None);
    }
}
