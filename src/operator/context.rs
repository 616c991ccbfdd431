//! What every reconciler gets: the client, the installation's configuration, metrics, the
//! Event recorder, and the per-object backoff. Also the few I/O helpers they share.

use std::collections::HashMap;
use std::fmt::Debug;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kube::api::{ListParams, Patch, PatchParams};
use kube::core::DeserializeGuard;
use kube::core::NamespaceResourceScope;
use kube::runtime::controller::Action;
use kube::{Api, Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::error::{Error, Result};
use super::metrics::Metrics;
use crate::mechanism::MechanismConfig;
use crate::tournament::TournamentConfig;
use crate::workloads::WorkloadConfig;

/// The field manager of every server-side apply this operator makes.
pub const FIELD_MANAGER: &str = "gradients-operator";

/// A burst of watch events for one object (a Task's sixteen trainers starting, our own status
/// write echoed back) becomes one reconcile once the object has been quiet this long. Every
/// reconcile re-reads what it decides on, so a later one loses nothing.
pub const DEBOUNCE: Duration = Duration::from_secs(1);

pub struct Context {
    pub client: Client,
    pub workloads: WorkloadConfig,
    /// The mechanism's constants and the lifecycle's timeouts and retries.
    pub tournament: TournamentConfig,
    pub metrics: Metrics,
    pub events: super::events::Events,
    /// File sink for weights, when configured.
    pub weights_file: Option<PathBuf>,
    /// The Miners and the Tasks' children, as watched.
    pub caches: super::caches::Caches,
    /// How long an ended Task's Jobs are kept ([`super::retention`]).
    pub keep_finished_jobs: Duration,
    turns: super::turns::Turns,
    backoff: Mutex<Backoffs>,
}

/// How this replica runs, besides its client, configuration and caches.
pub struct Options {
    pub identity: String,
    pub weights_file: Option<PathBuf>,
    pub keep_finished_jobs: Duration,
    /// Reconciles that may run at once, per controller.
    pub concurrency: u16,
    pub stop: super::Stop,
}

impl Context {
    pub fn new(
        client: Client,
        workloads: WorkloadConfig,
        metrics: Metrics,
        caches: super::caches::Caches,
        options: Options,
    ) -> Arc<Self> {
        let tournament = TournamentConfig {
            lifecycle: workloads.lifecycle.clone().unwrap_or_default(),
            ..TournamentConfig::default()
        };
        Arc::new(Context {
            events: super::events::Events::new(client.clone(), FIELD_MANAGER.to_string(), options.identity),
            client,
            workloads,
            tournament,
            metrics,
            weights_file: options.weights_file,
            caches,
            keep_finished_jobs: options.keep_finished_jobs,
            turns: super::turns::Turns::new(options.concurrency, options.stop),
            backoff: Mutex::new(Backoffs::default()),
        })
    }

    /// What the workload builders need to sign URLs for `s3://` artifacts, with `sources` (the
    /// directories a workload reads) listed now; `None` on a claim. The credentials are read
    /// from the operator's own environment, never put in a workload's.
    pub async fn object_access(&self, sources: &[&str]) -> Result<Option<crate::storage::ObjectAccess>> {
        if !matches!(self.workloads.artifact_store(), crate::workloads::ArtifactStore::S3 { .. }) {
            return Ok(None);
        }
        let store = self.workloads.object_store.as_ref().ok_or_else(|| {
            crate::workloads::BuildError::ObjectStore(
                "workloads.artifacts is s3:// but workloads.objectStore is not set".into(),
            )
        })?;
        let credentials = crate::storage::Credentials::from_env()?;
        Ok(Some(crate::storage::ObjectAccess::read(store, &credentials, sources, chrono::Utc::now()).await?))
    }

    pub fn mechanism(&self) -> &MechanismConfig {
        &self.tournament.mechanism
    }

    /// Runs one reconcile in its turn ([`super::turns`]) with its metrics, and resets the
    /// object's backoff on success. Once the operator stops, a reconcile still waiting for its
    /// turn does nothing.
    ///
    /// The reconcile is made, on the heap, only once its turn comes: kube-runtime spawns every
    /// triggered object's reconcile at once, and a waiting one that held room for a whole
    /// reconcile's state (30 to 50 kB) made most of the operator's memory at 1,000 Tasks.
    pub async fn instrumented<F>(
        &self,
        controller: &'static str,
        key: String,
        reconcile: impl FnOnce() -> F,
    ) -> Result<Action>
    where
        F: std::future::Future<Output = Result<Action>>,
    {
        let Some(_turn) = self.turns.take(controller, key.clone()).await else { return Ok(Action::await_change()) };
        let started = Instant::now();
        self.metrics.reconciles.with_label_values(&[controller]).inc();
        let result = Box::pin(reconcile()).await;
        self.metrics.durations.with_label_values(&[controller]).observe(started.elapsed().as_secs_f64());
        if result.is_ok() {
            self.backoffs(controller, |b| b.succeeded(controller, &key));
        }
        result
    }

    /// Changes the backoffs, and keeps `controller`'s count of pending retries in step.
    fn backoffs<T: Default>(&self, controller: &'static str, change: impl FnOnce(&mut Backoffs) -> T) -> T {
        let Ok(mut backoffs) = self.backoff.lock() else { return T::default() };
        let result = change(&mut backoffs);
        self.metrics.retries_pending.with_label_values(&[controller]).set(backoffs.pending(controller) as i64);
        result
    }

    /// `controller`'s line ([`super::line`]).
    pub fn line(&self, controller: &'static str) -> super::line::Line {
        self.turns.line(controller)
    }

    /// Exponential per-object backoff, 2 s doubling up to 5 min, reset by the next success.
    /// The failure is also a Warning Event on the object (`ReconcileFailed`, its category and
    /// message), so `kubectl describe` says why a Task is stuck, not only the operator's log.
    pub fn error_policy<K>(self: &Arc<Self>, controller: &'static str, object: Arc<K>, error: &Error) -> Action
    where
        K: Resource<DynamicType = ()> + Send + Sync + 'static,
    {
        let key = object_key(object.as_ref());
        self.metrics.errors.with_label_values(&[controller, error.category()]).inc();
        let failures = self.backoffs(controller, |b| b.failed(controller, &key, Instant::now())).max(1);
        let delay = backoff(failures);
        tracing::warn!(controller, object = %key, category = error.category(), %error, retry_in = ?delay, "reconcile failed");
        // An Event's note holds at most 1 kB; a storage error can carry a long response body.
        let note = format!("{}: {error}; retrying in {} s", error.category(), delay.as_secs());
        let (ctx, note) = (self.clone(), super::lifecycle::truncate(&note, 900));
        tokio::spawn(async move { ctx.event(object.as_ref(), true, "ReconcileFailed", note).await });
        Action::requeue(delay)
    }

    /// The object a tolerant watch delivered, or `None` once an Event on it has said why it
    /// cannot be read (one malformed object never stops a controller).
    pub async fn readable<'a, K>(&self, guarded: &'a DeserializeGuard<K>) -> Option<&'a K>
    where
        K: Resource<DynamicType = ()>,
        DeserializeGuard<K>: Resource<DynamicType = ()>,
    {
        match &guarded.0 {
            Ok(object) => Some(object),
            Err(invalid) => {
                self.event(guarded, true, "InvalidObject", invalid.error.clone()).await;
                None
            }
        }
    }

    /// Publishes an Event about `object` (failures to publish are logged, never fatal).
    pub async fn event<K: Resource<DynamicType = ()>>(&self, object: &K, warning: bool, reason: &str, note: String) {
        self.event_about(object, None, warning, reason, note).await;
    }

    /// An Event about `object` that names a second object (`related`): the recorder folds
    /// repeats of one reason into a series per pair, so each related object gets its own Event.
    pub async fn event_about<K: Resource<DynamicType = ()>>(
        &self,
        object: &K,
        related: Option<k8s_openapi::api::core::v1::ObjectReference>,
        warning: bool,
        reason: &str,
        note: String,
    ) {
        let note = super::events::Note {
            regarding: object.object_ref(&()),
            related,
            warning,
            reason,
            action: "Reconcile",
            note,
        };
        if let Err(e) = self.events.publish(note).await {
            tracing::warn!(error = %e, reason, "cannot publish event");
        }
    }
}

/// Failures in a row per object of each controller (a Task and a Leaderboard may share a
/// name). An object that keeps failing is retried within 5 minutes, so an entry not touched
/// for twice that belongs to an object that was deleted (no success ever comes to remove it):
/// such entries are dropped, and the map stays as large as the set of objects failing now.
#[derive(Debug, Default)]
struct Backoffs {
    failures: HashMap<&'static str, HashMap<String, (u32, Instant)>>,
}

/// Twice the longest delay.
const STALE: Duration = Duration::from_secs(600);

impl Backoffs {
    /// Counts a failure of `key` at `now`; returns its failures in a row.
    fn failed(&mut self, controller: &'static str, key: &str, now: Instant) -> u32 {
        for failing in self.failures.values_mut() {
            failing.retain(|_, (_, last)| now.saturating_duration_since(*last) < STALE);
        }
        let entry = self.failures.entry(controller).or_default().entry(key.to_string()).or_insert((0, now));
        entry.0 = entry.0.saturating_add(1);
        entry.1 = now;
        entry.0
    }

    fn succeeded(&mut self, controller: &'static str, key: &str) {
        self.failures.get_mut(controller).map(|failing| failing.remove(key));
    }

    /// The object is gone: nothing will retry it.
    fn forget(&mut self, controller: &'static str, key: &str) {
        self.succeeded(controller, key);
    }

    /// `controller`'s objects waiting for a retry.
    fn pending(&self, controller: &str) -> usize {
        self.failures.get(controller).map_or(0, HashMap::len)
    }
}

/// The delay after the `failures`-th failure in a row: 2 s, 4 s, 8 s, … up to 5 minutes.
pub fn backoff(failures: u32) -> Duration {
    Duration::from_secs(2u64.saturating_pow(failures.clamp(1, 9)).min(300))
}

/// The key the backoff is tracked under.
pub fn object_key<K: Resource>(object: &K) -> String {
    format!("{}/{}", object.namespace().unwrap_or_default(), object.name_any())
}

/// The Api of `K` in one namespace the operator serves, or in every namespace when it serves
/// the whole cluster (`namespace` is `None`).
pub fn scoped<K>(client: &Client, namespace: Option<&str>) -> Api<K>
where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope>,
{
    match namespace {
        Some(namespace) => Api::namespaced(client.clone(), namespace),
        None => Api::all(client.clone()),
    }
}

/// Objects per page of a list: an unbounded set (Evaluations, Tasks, Miners of a namespace) is
/// read a page at a time, as client-go's pager does, never in one response of any size.
pub const PAGE: u32 = 500;

/// Every object of `api` that `params` selects, [`PAGE`] at a time.
pub async fn list_all<K>(api: &Api<K>, params: &ListParams) -> Result<Vec<K>>
where
    K: Clone + DeserializeOwned + Debug,
{
    paged(|token| {
        let mut page = params.clone().limit(PAGE);
        if let Some(token) = token {
            page = page.continue_token(&token);
        }
        async move {
            let list = api.list(&page).await?;
            Ok((list.items, list.metadata.continue_))
        }
    })
    .await
}

/// Follows the continue tokens of `fetch` (called with `None` first) until a page has none.
async fn paged<T, F, Fut>(mut fetch: F) -> Result<Vec<T>>
where
    F: FnMut(Option<String>) -> Fut,
    Fut: std::future::Future<Output = Result<(Vec<T>, Option<String>)>>,
{
    let mut items = Vec::new();
    let mut token = None;
    loop {
        let (page, next) = fetch(token).await?;
        items.extend(page);
        match next {
            Some(next) if !next.is_empty() => token = Some(next),
            _ => return Ok(items),
        }
    }
}

/// Server-side applies `object` (forcing ownership of the fields it sets, as controllers should).
pub async fn apply<K>(client: &Client, object: &K) -> Result<K>
where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope> + Clone + Serialize + DeserializeOwned + Debug,
{
    let namespace =
        object.meta().namespace.clone().ok_or_else(|| Error::InvalidObject("object without namespace".into()))?;
    let name = object.meta().name.clone().ok_or_else(|| Error::InvalidObject("object without name".into()))?;
    let api: Api<K> = Api::namespaced(client.clone(), &namespace);
    Ok(api.patch(&name, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(object)).await?)
}

/// Creates `object` by server-side apply unless it exists. For children whose spec is
/// immutable once created: re-applying a spec that a newer configuration would build
/// differently must not fail the reconcile forever. (The Task controller's children go through
/// `ownership::claim` instead, which adopts only what it created.)
pub async fn ensure<K>(client: &Client, object: &K) -> Result<K>
where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope> + Clone + Serialize + DeserializeOwned + Debug,
{
    let namespace = object.meta().namespace.clone().unwrap_or_default();
    let name = object.meta().name.clone().unwrap_or_default();
    let api: Api<K> = Api::namespaced(client.clone(), &namespace);
    match api.get_opt(&name).await? {
        Some(existing) => Ok(existing),
        None => apply(client, object).await,
    }
}

/// Server-side applies the status of a custom resource.
pub async fn apply_status<K, S>(client: &Client, object: &K, status: &S) -> Result<()>
where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope> + Clone + DeserializeOwned + Debug,
    S: Serialize,
{
    let api: Api<K> = Api::namespaced(client.clone(), &object.namespace().unwrap_or_default());
    let patch = serde_json::json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "status": status,
    });
    api.patch_status(&object.name_any(), &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(&patch)).await?;
    Ok(())
}

/// Logs what a controller's stream yields besides reconcile results (watch errors and the like),
/// and forgets the backoff and the handover of an object found gone: a failed object's retry is
/// scheduled, so its deletion always comes back here as `ObjectNotFound` (the reconciler never
/// sees it), as does an object the line handed over after it left the store.
/// Reconcile errors themselves are counted and reported by [`Context::error_policy`].
pub fn log_stream_errors<T, R, Q>(
    controller: &'static str,
    ctx: Arc<Context>,
) -> impl FnMut(std::result::Result<T, kube::runtime::controller::Error<R, Q>>) -> futures::future::Ready<()>
where
    R: std::error::Error + 'static,
    Q: std::error::Error + 'static,
{
    move |result| {
        if let Err(error) = result {
            match gone(&error) {
                Some(key) => {
                    ctx.backoffs(controller, |b| b.forget(controller, &key));
                    ctx.line(controller).dropped(&key);
                }
                None => tracing::warn!(controller, %error, "controller stream error"),
            }
        }
        futures::future::ready(())
    }
}

/// The key of the object a scheduled reconcile found deleted.
fn gone<R, Q>(error: &kube::runtime::controller::Error<R, Q>) -> Option<String> {
    match error {
        kube::runtime::controller::Error::ObjectNotFound(object) => {
            Some(format!("{}/{}", object.namespace.as_deref().unwrap_or_default(), object.name))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoffs_count_failures_in_a_row_and_forget_deleted_objects() {
        let start = Instant::now();
        let mut b = Backoffs::default();
        assert_eq!(b.failed("task", "ns/a", start), 1);
        assert_eq!(b.failed("task", "ns/a", start + Duration::from_secs(2)), 2);
        assert_eq!(b.failed("task", "ns/gone", start + Duration::from_secs(3)), 1);
        b.succeeded("task", "ns/a");
        assert_eq!(b.failed("task", "ns/a", start + Duration::from_secs(4)), 1, "a success resets");
        // Much later: the deleted object's entry is gone, the failing one counts on.
        assert_eq!(b.failed("task", "ns/a", start + Duration::from_secs(300)), 2);
        assert_eq!(b.failed("task", "ns/a", start + Duration::from_secs(700)), 3);
        assert!(!b.failures["task"].contains_key("ns/gone"), "{:?}", b.failures);
        assert_eq!(b.pending("task"), 1);
    }

    #[test]
    fn a_task_and_a_leaderboard_of_one_name_back_off_apart() {
        let now = Instant::now();
        let mut b = Backoffs::default();
        assert_eq!(b.failed("task", "ns/main", now), 1);
        assert_eq!(b.failed("task", "ns/main", now), 2);
        assert_eq!(b.failed("leaderboard", "ns/main", now), 1, "the Task's failures are not the Leaderboard's");
        assert_eq!((b.pending("task"), b.pending("leaderboard"), b.pending("evaluation")), (1, 1, 0));
        b.succeeded("leaderboard", "ns/main");
        assert_eq!((b.pending("task"), b.pending("leaderboard")), (1, 0), "the Task still waits for its retry");
    }

    #[test]
    fn deleted_objects_leave_no_backoff_behind() {
        use kube::runtime::controller::Error as ControllerError;
        use kube::runtime::reflector::ObjectRef;

        let now = Instant::now();
        let mut b = Backoffs::default();
        // A thousand Tasks fail once, then are deleted before their retry: each retry finds
        // its object gone (the controller's `ObjectNotFound`), and nothing else fails later.
        for i in 0..1000 {
            b.failed("task", &format!("ns/task-{i}"), now);
        }
        for i in 0..1000 {
            let object = ObjectRef::<crate::api::Task>::new(&format!("task-{i}")).within("ns").erase();
            let error = ControllerError::<std::io::Error, std::io::Error>::ObjectNotFound(Box::new(object));
            b.forget("task", &gone(&error).expect("a deleted object's key"));
        }
        assert_eq!(
            b.pending("task"),
            0,
            "entries of deleted objects stay: {:?}",
            b.failures["task"].keys().take(3).collect::<Vec<_>>()
        );
        let other = ControllerError::<std::io::Error, std::io::Error>::QueueError(std::io::Error::other("watch"));
        assert_eq!(gone(&other), None);
    }

    #[tokio::test]
    async fn lists_follow_continue_tokens_to_the_last_page() {
        let pages = [(vec![1, 2], Some("a")), (vec![3, 4], Some("b")), (vec![5], Some(""))];
        let mut asked = Vec::new();
        let items = paged(|token| {
            asked.push(token.clone());
            let index = match token.as_deref() {
                None => 0,
                Some("a") => 1,
                _ => 2,
            };
            let (items, next) = pages[index].clone();
            async move { Ok((items, next.map(str::to_string))) }
        })
        .await
        .unwrap();
        assert_eq!(items, vec![1, 2, 3, 4, 5]);
        assert_eq!(asked, vec![None, Some("a".to_string()), Some("b".to_string())]);
    }

    #[test]
    fn backoff_doubles_up_to_five_minutes() {
        let delays: Vec<u64> = [1, 2, 3, 8, 9, 50].iter().map(|n| backoff(*n).as_secs()).collect();
        assert_eq!(delays, vec![2, 4, 8, 256, 300, 300]);
    }
}
