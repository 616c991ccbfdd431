//! `gradients operator`: the controllers that run tournaments on Kubernetes.
//!
//! One controller per custom resource ([`task`], [`submission`], [`evaluation`],
//! [`leaderboard`], [`task_source`]), each a thin reconciler over a pure core ([`lifecycle`], [`results`],
//! the workload builders). Only the replica holding the leader Lease runs them.

pub mod by_task;
pub mod caches;
pub mod chain_sink;
pub mod condense;
pub mod context;
pub mod error;
pub mod evaluation;
pub mod events;
pub mod http;
pub mod leader;
pub mod leaderboard;
pub mod lifecycle;
pub mod line;
pub mod metrics;
pub mod ownership;
pub mod results;
pub mod retention;
pub mod sink;
pub mod submission;
pub mod task;
pub mod task_source;
pub mod telemetry;
pub mod turns;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures::FutureExt;
use futures::future::{BoxFuture, Shared};
use kube::Client;
use kube::api::ListParams;
use kube::core::DeserializeGuard;
use kube::runtime::reflector::Store;

use crate::api::{Evaluation, Leaderboard, MinerSubmission, Task};
use crate::workloads::WorkloadConfig;

/// Resolves when the operator is asked to stop; every controller drains on it.
pub type Stop = Shared<BoxFuture<'static, ()>>;

/// The settings of one operator process.
#[derive(Debug, Clone, clap::Args)]
pub struct Settings {
    /// Workload configuration: images, GPU classes, artifact storage (YAML, see `charts/gradients` values).
    #[arg(long, env = "GRADIENTS_CONFIG", default_value = "/etc/gradients/config.yaml")]
    pub config: PathBuf,
    /// Address of /live, /ready and /metrics.
    #[arg(long, env = "GRADIENTS_HTTP_ADDRESS", default_value = "0.0.0.0:8080")]
    pub http_address: SocketAddr,
    /// This replica's identity in the leader Lease (the pod name in a cluster).
    #[arg(long, env = "POD_NAME", default_value_t = default_identity())]
    pub identity: String,
    /// Namespace of the leader Lease (the operator's own namespace in a cluster).
    #[arg(long, env = "POD_NAMESPACE", default_value = "gradients-system")]
    pub lease_namespace: String,
    #[arg(long, env = "GRADIENTS_LEASE_NAME", default_value = "gradients-operator")]
    pub lease_name: String,
    /// Seconds a leader's claim lasts unrenewed before a standby takes over (client-go's 15 s;
    /// renewals come every 2 s, so at least 4).
    #[arg(long, env = "GRADIENTS_LEASE_DURATION_SECONDS", default_value_t = 15, value_parser = clap::value_parser!(u64).range(4..))]
    pub lease_duration_seconds: u64,
    /// Also write the weights to this file.
    #[arg(long, env = "GRADIENTS_WEIGHTS_FILE")]
    pub weights_file: Option<PathBuf>,
    /// Act as this user, e.g. system:serviceaccount:gradients-system:gradients (tests RBAC).
    #[arg(long = "as", env = "GRADIENTS_IMPERSONATE")]
    pub impersonate: Option<String>,
    /// Namespaces whose tournaments this operator runs (comma-separated), each watched on its
    /// own; none: every namespace, which needs the chart's cluster-wide RBAC (`clusterWide`).
    #[arg(long, env = "GRADIENTS_WATCH_NAMESPACES", value_delimiter = ',')]
    pub namespaces: Vec<String>,
    /// Reconciles that may run at once, per controller (across the namespaces served); the
    /// others wait their turn in the order they were triggered.
    #[arg(long, env = "GRADIENTS_CONCURRENCY", default_value_t = 4)]
    pub concurrency: u16,
    /// Seconds an ended Task's Jobs and their pods are kept (for `kubectl logs`) before they are
    /// deleted; its records (MinerSubmissions, Evaluation) stay, its MinerSubmissions then
    /// labelled `gradients.io/archived` and no longer cached.
    #[arg(long, env = "GRADIENTS_KEEP_FINISHED_JOBS_SECONDS", default_value_t = 600)]
    pub keep_finished_jobs_seconds: u64,
}

/// Outside a cluster (no POD_NAME): the host name and process id, unique per replica.
fn default_identity() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_else(|_| "gradients".into());
    format!("{}-{}", host.trim(), std::process::id())
}

pub async fn run(settings: Settings) -> anyhow::Result<()> {
    let text =
        std::fs::read_to_string(&settings.config).map_err(|e| anyhow::anyhow!("{}: {e}", settings.config.display()))?;
    let workloads: WorkloadConfig =
        serde_norway::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", settings.config.display()))?;
    let client = client(settings.impersonate.as_deref()).await?;

    let (stop_sender, stop_receiver) = tokio::sync::watch::channel(false);
    let stop: Stop = {
        let mut receiver = stop_receiver.clone();
        async move {
            let _ = receiver.wait_for(|stopped| *stopped).await;
        }
        .boxed()
        .shared()
    };
    let health = Arc::new(http::Health::default());
    let metrics = metrics::Metrics::new();
    let stores: Arc<std::sync::OnceLock<Stores>> = Arc::new(std::sync::OnceLock::new());
    {
        let signal_sender = stop_sender.clone();
        let health = health.clone();
        tokio::spawn(async move {
            shutdown_signal().await;
            tracing::info!("shutting down");
            health.stopping.store(true, Ordering::SeqCst);
            let _ = signal_sender.send(true);
        });
    }
    {
        let metrics = metrics.clone();
        let stores = stores.clone();
        let address = settings.http_address;
        let health = health.clone();
        tokio::spawn(async move {
            let render = move || {
                if let Some(stores) = stores.get() {
                    stores.refresh(&metrics);
                }
                metrics.render()
            };
            if let Err(e) = http::serve(address, health, render).await {
                tracing::error!(error = %e, "HTTP server failed");
            }
        });
    }

    let scopes: Vec<Option<String>> = match settings.namespaces.iter().filter(|n| !n.is_empty()).collect::<Vec<_>>() {
        namespaces if namespaces.is_empty() => vec![None],
        namespaces => namespaces.into_iter().map(|n| Some(n.clone())).collect(),
    };
    // Fail early, with a hint, when the CRDs are not installed or the RBAC does not fit.
    for scope in &scopes {
        let tasks = context::scoped::<DeserializeGuard<Task>>(&client, scope.as_deref());
        if let Err(e) = tasks.list(&ListParams::default().limit(1)).await {
            let place = scope.as_deref().map_or("in any namespace".to_string(), |n| format!("in namespace {n}"));
            anyhow::bail!(
                "cannot list Tasks {place} ({e}); are the CRDs installed (`kubectl apply -f crds/`) and the namespace in the chart's watchNamespaces?"
            );
        }
    }
    // Ready = serving and reaching the API server, leader or standby: a rolling update needs
    // the new replica ready while the old one still holds the lease.
    health.reachable.store(true, Ordering::SeqCst);

    let lease = leader::LeaseLock::new(
        client.clone(),
        &settings.lease_namespace,
        &settings.lease_name,
        &settings.identity,
        Duration::from_secs(settings.lease_duration_seconds),
    );
    tracing::info!(identity = %settings.identity, lease = %settings.lease_name, "waiting for the leader lease");
    loop {
        if *stop_receiver.borrow() {
            return Ok(());
        }
        let attempt = lease.try_acquire_or_renew().await;
        health.reachable.store(attempt.is_ok(), Ordering::SeqCst);
        match attempt {
            Ok(true) => break,
            Ok(false) => {}
            Err(e) => tracing::warn!(error = %e, "cannot take the lease"),
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(2)) => {}
            _ = stop.clone() => return Ok(()),
        }
    }
    tracing::info!("leading");
    metrics.leader.set(1);
    let lease = Arc::new(lease);
    let lost = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let renewer = {
        let lease = lease.clone();
        let lost = lost.clone();
        let health = health.clone();
        let metrics = metrics.clone();
        let sender = stop_sender.clone();
        let mut stop = stop.clone();
        tokio::spawn(async move {
            let mut last_renewal = tokio::time::Instant::now();
            loop {
                // client-go's retry period: renewals every 2 s, so one lost renewal is no loss.
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(2)) => {}
                    _ = &mut stop => return,
                }
                // A renewal that hangs is one that failed once the deadline has passed.
                let left = lease.renew_deadline().saturating_sub(last_renewal.elapsed()).max(Duration::from_secs(1));
                let renewal = match tokio::time::timeout(left, lease.try_acquire_or_renew()).await {
                    Ok(renewal) => renewal.map_err(|e| e.to_string()),
                    Err(_) => Err(format!("no answer within {left:?}")),
                };
                health.reachable.store(renewal.is_ok(), Ordering::SeqCst);
                match renewal {
                    Ok(true) => {
                        last_renewal = tokio::time::Instant::now();
                        continue;
                    }
                    Ok(false) => tracing::error!("another replica took the lease: stopping"),
                    Err(e) if last_renewal.elapsed() > lease.renew_deadline() => {
                        tracing::error!(error = %e, "cannot renew the lease in time: stopping")
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot renew the lease yet");
                        continue;
                    }
                }
                // No longer the leader, whatever the controllers still finish.
                lost.store(true, Ordering::SeqCst);
                metrics.leader.set(0);
                health.stopping.store(true, Ordering::SeqCst);
                // The controllers stop within LOST_LEASE_GRACE (below), and the process exits.
                let _ = sender.send(true);
                return;
            }
        })
    };

    let (caches, watches, triggers) = caches::Caches::new(&client, &scopes);
    for watch in watches {
        tokio::spawn(watch);
    }
    // Every reconcile reads them: no controller starts on an empty cache.
    tokio::select! {
        ready = caches.wait_until_ready() => ready?,
        _ = stop.clone() => return Ok(()),
    }
    let options = context::Options {
        identity: settings.identity.clone(),
        weights_file: settings.weights_file,
        keep_finished_jobs: Duration::from_secs(settings.keep_finished_jobs_seconds),
        concurrency: settings.concurrency,
        stop: stop.clone(),
    };
    let ctx = context::Context::new(client, workloads, metrics.clone(), caches, options);
    // One set of controllers per namespace served (or one for the whole cluster).
    let mut controllers = Vec::new();
    let mut all = Stores::default();
    for (scope, (triggers, shared)) in scopes.iter().map(Option::as_deref).zip(triggers) {
        let (task_store, tasks) = task::controller(ctx.clone(), scope, triggers, stop.clone());
        let (submission_store, submissions) =
            submission::controller(ctx.clone(), scope, shared.submissions, task_store.clone(), stop.clone());
        let (evaluation_store, evaluations) = evaluation::controller(ctx.clone(), shared.evaluations, stop.clone());
        let (leaderboard_store, leaderboards) =
            leaderboard::controller(ctx.clone(), scope, shared.evaluations_changed, stop.clone());
        controllers.extend([
            tasks,
            submissions,
            evaluations,
            leaderboards,
            task_source::controller(ctx.clone(), scope, stop.clone()),
        ]);
        all.tasks.push(task_store);
        all.submissions.push(submission_store);
        all.evaluations.push(evaluation_store);
        all.leaderboards.push(leaderboard_store);
    }
    let (task_stores, submission_stores) = (all.tasks.clone(), all.submissions.clone());
    let _ = stores.set(all);
    {
        tokio::spawn(async move {
            // The readiness signal wakes only its latest waiter (the controller's own runner),
            // so ask again every second instead of waiting once.
            loop {
                let synced = async {
                    for store in &task_stores {
                        store.wait_until_ready().await?;
                    }
                    for store in &submission_stores {
                        store.wait_until_ready().await?;
                    }
                    Ok::<(), kube::runtime::reflector::store::WriterDropped>(())
                };
                match tokio::time::timeout(Duration::from_secs(1), synced).await {
                    Ok(Ok(())) => return tracing::info!("caches synced"),
                    // The controllers stopped before their first lists were complete (a stop
                    // just after taking the lease). Asking again would be answered at once, for
                    // ever: this loop never yielded and kept a runtime thread spinning, and the
                    // process never exited.
                    Ok(Err(_)) => return,
                    Err(_) => {}
                }
            }
        });
    }
    // After a stop the controllers get a grace period to finish what they run, no more: a
    // reconcile stuck in a call must not keep a replica that lost the lease alive (its pod
    // restarts as a standby), and kube-rs holds a controller's reconciles until its first list
    // is complete but no longer polls that list after a stop, so a stop in the first moments
    // after taking the lease would otherwise wait for ever.
    let stopped_long_ago = {
        let (stop, lost) = (stop.clone(), lost.clone());
        async move {
            stop.await;
            let grace = if lost.load(Ordering::SeqCst) { LOST_LEASE_GRACE } else { SHUTDOWN_GRACE };
            tokio::time::sleep(grace).await;
            grace
        }
    };
    tokio::select! {
        _ = futures::future::join_all(controllers) => {}
        grace = stopped_long_ago => tracing::warn!(?grace, "the controllers did not stop in time: stopping anyway"),
    }
    health.stopping.store(true, Ordering::SeqCst);
    renewer.abort();
    metrics.leader.set(0);
    if lost.load(Ordering::SeqCst) {
        anyhow::bail!("lost the leader lease");
    }
    // A slow API server must not hold up the exit: without the release the next leader waits
    // for the lease to expire, no more.
    match tokio::time::timeout(RELEASE_TIMEOUT, lease.release()).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::warn!(error = %e, "cannot release the lease; the next leader waits for it to expire"),
        Err(_) => {
            tracing::warn!(timeout = ?RELEASE_TIMEOUT, "the lease release did not finish in time; the next leader waits for it to expire")
        }
    }
    tracing::info!("stopped");
    Ok(())
}

/// How long the controllers may take to finish their reconciles after a stop (SIGTERM).
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// How long releasing the lease may take at a stop.
const RELEASE_TIMEOUT: Duration = Duration::from_secs(5);

/// How long the controllers may take to stop once the lease is lost, before the process exits.
const LOST_LEASE_GRACE: Duration = Duration::from_secs(5);

/// The longest wait for the API server's next bytes on a request. kube leaves it unset (no
/// limit): a call to an API server that went away mid-request could hang a reconcile for
/// ever. Watches are not cut by it: the API server sends them a bookmark every minute.
const API_READ_TIMEOUT: Duration = Duration::from_secs(120);

/// A client from the environment (in-cluster, or KUBECONFIG), optionally impersonating.
pub async fn client(impersonate: Option<&str>) -> anyhow::Result<Client> {
    let mut config = kube::Config::infer().await?;
    config.read_timeout = Some(API_READ_TIMEOUT);
    // Counted from when the request was sent, not from when its pooled connection went idle.
    config.reset_reader_on_write = true;
    if let Some(user) = impersonate {
        config.auth_info.impersonate = Some(user.to_string());
        // A service account's RBAC may be bound through its groups too.
        if let Some(rest) = user.strip_prefix("system:serviceaccount:") {
            let namespace = rest.split(':').next().unwrap_or_default();
            config.auth_info.impersonate_groups = Some(vec![
                "system:serviceaccounts".to_string(),
                format!("system:serviceaccounts:{namespace}"),
                "system:authenticated".to_string(),
            ]);
        }
    }
    Ok(Client::try_from(config)?)
}

async fn shutdown_signal() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => futures::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate => {}
    }
}

/// The caches the phase and tournament gauges are computed from at scrape time.
#[derive(Default)]
struct Stores {
    tasks: Vec<Store<DeserializeGuard<Task>>>,
    submissions: Vec<Store<DeserializeGuard<MinerSubmission>>>,
    evaluations: Vec<Store<DeserializeGuard<Evaluation>>>,
    leaderboards: Vec<Store<DeserializeGuard<Leaderboard>>>,
}

/// The objects of some stores, shared with them.
fn shared<K>(stores: &[Store<DeserializeGuard<K>>]) -> Vec<std::sync::Arc<DeserializeGuard<K>>>
where
    DeserializeGuard<K>: kube::Resource<DynamicType = ()> + Clone,
{
    stores.iter().flat_map(|store| store.state()).collect()
}

/// The readable ones among `objects`.
fn readable<K>(objects: &[std::sync::Arc<DeserializeGuard<K>>]) -> Vec<&K> {
    objects.iter().filter_map(|guarded| guarded.0.as_ref().ok()).collect()
}

impl Stores {
    fn refresh(&self, metrics: &metrics::Metrics) {
        let (leaderboards, submissions, evaluations) =
            (shared(&self.leaderboards), shared(&self.submissions), shared(&self.evaluations));
        metrics.set_tournament(&telemetry::snapshot(
            &readable(&leaderboards),
            &readable(&submissions),
            &readable(&evaluations),
        ));
        for phase in crate::api::task::TaskPhase::ALL {
            let count: usize = self
                .tasks
                .iter()
                .map(|store| store.state().iter().filter(|t| t.0.as_ref().is_ok_and(|t| t.phase() == phase)).count())
                .sum();
            metrics.tasks.with_label_values(&[phase.as_str()]).set(count as i64);
        }
        for phase in crate::api::submission::SubmissionPhase::ALL {
            let count: usize = self
                .submissions
                .iter()
                .flat_map(|store| store.state())
                .filter(|s| {
                    s.0.as_ref().is_ok_and(|s| s.status.as_ref().map(|st| st.phase).unwrap_or_default() == phase)
                })
                .count();
            metrics.submissions.with_label_values(&[phase.as_str()]).set(count as i64);
        }
    }
}
