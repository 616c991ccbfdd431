//! The Leaderboard controller: recomputes the standings from the complete Evaluations of its
//! namespace whenever one changes (and hourly, as windows roll), pushes changed weights to
//! the sinks, and copies each miner's standing into its `Miner` status for selection.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt};
use kube::core::DeserializeGuard;
use kube::runtime::controller::{self, Action, Controller};
use kube::runtime::reflector::Store;
use kube::runtime::watcher;
use kube::{Api, ResourceExt};

use super::caches::FIRST_LIST_WAIT;
use super::chain_sink;
use super::context::{Context, DEBOUNCE, apply_status, log_stream_errors, object_key, scoped};
use super::error::Result;
use super::results;
use super::sink::{self, Weights};
use crate::api::conditions::{self, Observed};
use crate::api::leaderboard::{LeaderboardStatus, Standing, WeightPush};
use crate::api::{Leaderboard, MinerStatus};
use crate::mechanism::records::TaskRecord;
use crate::mechanism::{MechanismConfig, leaderboard, scoring};

const NAME: &str = "leaderboard";
/// Windows roll with the clock: recompute at least this often.
const RESYNC: Duration = Duration::from_secs(3600);

pub fn controller(
    ctx: Arc<Context>,
    namespace: Option<&str>,
    evaluations_changed: tokio::sync::watch::Receiver<()>,
    shutdown: super::Stop,
) -> (Store<DeserializeGuard<Leaderboard>>, BoxFuture<'static, ()>) {
    let client = ctx.client.clone();
    // Any change to any Evaluation re-runs every leaderboard: there are few, and each reads
    // its own namespace only. Changes that come while one runs make one more run, not one each.
    let evaluations_changed = futures::stream::unfold(evaluations_changed, |mut changed| async move {
        changed.changed().await.ok().map(|()| ((), changed))
    });
    let controller =
        Controller::new(scoped::<DeserializeGuard<Leaderboard>>(&client, namespace), watcher::Config::default())
            .reconcile_all_on(evaluations_changed)
            // Leaderboards at once (kube-rs never runs one object twice at once): one waiting on a
            // slow chain node (up to its sink's timeouts) must not hold up the others.
            .with_config(controller::Config::default().debounce(DEBOUNCE))
            .graceful_shutdown_on(shutdown);
    let store = controller.store();
    let run = controller
        .run(reconcile, |object, error, ctx| ctx.error_policy(NAME, object, error), ctx.clone())
        .for_each(log_stream_errors(NAME, ctx))
        .boxed();
    (store, run)
}

pub(super) async fn reconcile(guarded: Arc<DeserializeGuard<Leaderboard>>, ctx: Arc<Context>) -> Result<Action> {
    let key = object_key(guarded.as_ref());
    let run_ctx = ctx.clone();
    ctx.instrumented(NAME, key, move || reconcile_leaderboard(guarded, run_ctx)).await
}

async fn reconcile_leaderboard(guarded: Arc<DeserializeGuard<Leaderboard>>, ctx: Arc<Context>) -> Result<Action> {
    let Some(cached) = ctx.readable(guarded.as_ref()).await else { return Ok(Action::await_change()) };
    let namespace = cached.namespace().unwrap_or_default();
    let api = Api::<Leaderboard>::namespaced(ctx.client.clone(), &namespace);
    let Some(board) = api.get_opt(&cached.name_any()).await? else { return Ok(Action::await_change()) };
    // From the cache, not a list: at 1,000 Tasks each recompute listed every Evaluation (tens of
    // MB the API server serialized and the operator held at once). The cache has every change
    // that woke this reconcile, and until its first complete list it is not read at all.
    let Some(evaluations) = ctx.caches.all_evaluations(&namespace, FIRST_LIST_WAIT).await else {
        tracing::warn!(leaderboard = %board.name_any(), "the cache of Evaluations is not synced yet");
        return Ok(Action::requeue(FIRST_LIST_WAIT));
    };
    let records: Vec<TaskRecord> =
        evaluations.iter().filter_map(|e| e.0.as_ref().ok()).filter_map(results::complete_record).collect();
    let now = Utc::now();
    let previous = board.status.clone().unwrap_or_default();
    let mut status = standings(ctx.mechanism(), &records, now, &previous, board.metadata.generation);

    let weights =
        Weights { at: now, weights: status.standings.iter().map(|s| (s.miner.clone(), s.weight_u16)).collect() };
    let digest = weights.digest();
    let unchanged = previous.last_weight_push.as_ref().is_some_and(|p| p.digest == digest);
    if !weights.weights.is_empty() && !unchanged {
        let counted = |sink: &'static str, result: &std::result::Result<String, super::error::Error>| {
            let outcome = if result.is_ok() { "pushed" } else { "failed" };
            ctx.metrics.weight_pushes.with_label_values(&[sink, outcome]).inc();
        };
        let pushed = sink::to_config_map(&ctx.client, &board, &weights).await;
        counted("configmap", &pushed);
        let mut sinks = vec![pushed?];
        if let Some(path) = &ctx.weights_file {
            let pushed = sink::to_file(path, &weights);
            counted("file", &pushed);
            sinks.push(pushed?);
        }
        status.last_weight_push = Some(WeightPush { at: now, digest, sinks });
        ctx.event(&board, false, "WeightsPushed", format!("weights of {} miners pushed", weights.weights.len())).await;
    }
    let pushed = Observed::new("WeightsPushed", Some(status.last_weight_push.is_some()), "Pushed", "");
    let computed = Observed::new("Computed", Some(true), "Computed", format!("{} tasks in the window", status.tasks));
    let mut observed = vec![computed, pushed];
    let mut requeue = RESYNC;
    let mut chain_error = None;
    match board.spec.sinks.as_ref().and_then(|s| s.chain.as_ref()) {
        Some(sink) => {
            let before = previous.chain.clone().unwrap_or_default();
            let outcome = chain_sink::push(&ctx, &board, sink, &status.standings, &before, now).await;
            if let Some(label) = outcome.metric {
                ctx.metrics.chain_pushes.with_label_values(&[label]).inc();
            }
            if let Some(at) = chain_sink::last_success(&outcome.status) {
                let name = board.name_any();
                ctx.metrics.chain_last_push.with_label_values(&[&namespace, &name]).set(at.timestamp() as f64);
            }
            // An Event per push, and per change of the sink's state (not per look while it waits).
            let was = previous.conditions.iter().find(|c| c.type_ == chain_sink::CONDITION).map(|c| c.reason.as_str());
            let pushed = outcome.status.pushes.first() != before.pushes.first();
            if let Some((warning, reason, note)) =
                outcome.event.filter(|_| pushed || was != Some(outcome.condition.reason))
            {
                ctx.event(&board, warning, reason, note).await;
            }
            requeue = outcome.requeue.map_or(requeue, |r| r.min(requeue));
            chain_error = outcome.error;
            observed.push(outcome.condition);
            status.chain = Some(outcome.status);
        }
        None => status.chain = None,
    }
    status.conditions = conditions::merge(&previous.conditions, &observed, board.metadata.generation, now);
    if status != previous {
        apply_status(&ctx.client, &board, &status).await?;
    }
    update_miners(&ctx, &namespace, &status.standings).await?;
    // A transient chain error is retried with the controller's backoff, after the status
    // (with the condition saying so) is written.
    if let Some(error) = chain_error {
        return Err(error);
    }
    Ok(Action::requeue(requeue))
}

/// Pure: the standings at `now` from the records, keeping the last push.
pub fn standings(
    mechanism: &MechanismConfig,
    records: &[TaskRecord],
    now: DateTime<Utc>,
    previous: &LeaderboardStatus,
    generation: Option<i64>,
) -> LeaderboardStatus {
    let board = leaderboard::compute(mechanism, now, records);
    let today = scoring::average_score_today(mechanism, records, now);
    let horizon = chrono::Duration::days(i64::from(mechanism.horizon_days()));
    let in_window = records.iter().filter(|r| r.finished_at <= now && now - r.finished_at <= horizon).count();
    let standings: Vec<Standing> = board
        .miners
        .iter()
        .map(|m| Standing {
            miner: m.miner.clone(),
            quality: m.quality,
            weight: m.weight,
            weight_u16: m.weight_u16,
            window_sums: m.window_sums.clone(),
            tasks: m.tasks as u32,
            average_score_today: today.get(&m.miner).copied(),
        })
        .collect();
    let leader = standings
        .iter()
        .filter(|s| s.weight > 0.0)
        .max_by(|a, b| a.weight.total_cmp(&b.weight).then_with(|| b.miner.cmp(&a.miner)))
        .map(|s| s.miner.clone());
    LeaderboardStatus {
        observed_generation: generation,
        conditions: previous.conditions.clone(),
        tasks: in_window as u32,
        miner_count: standings.len() as u32,
        leader,
        standings,
        last_weight_push: previous.last_weight_push.clone(),
        chain: previous.chain.clone(),
    }
}

/// Copies each miner's standing into its `Miner` status (what selection reads).
async fn update_miners(ctx: &Context, namespace: &str, standings: &[Standing]) -> Result<()> {
    let by_miner: BTreeMap<&str, &Standing> = standings.iter().map(|s| (s.miner.as_str(), s)).collect();
    for miner in ctx.caches.all_miners(namespace) {
        let standing = by_miner.get(miner.name_any().as_str());
        let status = MinerStatus {
            tasks_in_window: standing.map(|s| s.tasks).unwrap_or(0),
            average_score_today: standing.and_then(|s| s.average_score_today),
            quality: standing.map(|s| s.quality),
            weight: standing.map(|s| s.weight),
        };
        if miner.status.as_ref() != Some(&status) {
            apply_status(&ctx.client, &miner, &status).await?;
        }
    }
    Ok(())
}
