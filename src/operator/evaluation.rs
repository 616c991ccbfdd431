//! The Evaluation controller: an Evaluation is a task's scored record, written by the Task
//! controller when the lifecycle records its results. This controller keeps the history
//! bounded: it deletes a record once it has left the longest leaderboard window.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt};
use kube::api::DeleteParams;
use kube::core::DeserializeGuard;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::Store;
use kube::{Api, ResourceExt};

use super::caches::Shared;
use super::context::{Context, log_stream_errors, object_key};
use super::error::Result;
use crate::api::Evaluation;

const NAME: &str = "evaluation";

/// `evaluations`: the store the Task controller's reconciles read too, and its changes.
pub fn controller(
    ctx: Arc<Context>,
    evaluations: Shared<DeserializeGuard<Evaluation>>,
    shutdown: super::Stop,
) -> (Store<DeserializeGuard<Evaluation>>, BoxFuture<'static, ()>) {
    let controller =
        Controller::for_shared_stream(evaluations.changes, evaluations.store).graceful_shutdown_on(shutdown);
    let store = controller.store();
    let run = controller
        .run(reconcile, |object, error, ctx| ctx.error_policy(NAME, object, error), ctx.clone())
        .for_each(log_stream_errors(NAME, ctx))
        .boxed();
    (store, run)
}

pub(super) async fn reconcile(guarded: Arc<DeserializeGuard<Evaluation>>, ctx: Arc<Context>) -> Result<Action> {
    let key = object_key(guarded.as_ref());
    let run_ctx = ctx.clone();
    ctx.instrumented(NAME, key, move || reconcile_evaluation(guarded, run_ctx)).await
}

async fn reconcile_evaluation(guarded: Arc<DeserializeGuard<Evaluation>>, ctx: Arc<Context>) -> Result<Action> {
    let Some(evaluation) = ctx.readable(guarded.as_ref()).await else { return Ok(Action::await_change()) };
    let horizon = chrono::Duration::days(i64::from(ctx.mechanism().horizon_days()));
    let Some(expires) = evaluation.status.as_ref().and_then(|s| s.finished_at).map(|at| at + horizon) else {
        return Ok(Action::await_change());
    };
    let now = Utc::now();
    if expires > now {
        return Ok(Action::requeue((expires - now).to_std().unwrap_or(Duration::from_secs(3600))));
    }
    let api = Api::<Evaluation>::namespaced(ctx.client.clone(), &evaluation.namespace().unwrap_or_default());
    match api.delete(&evaluation.name_any(), &DeleteParams::default()).await {
        Ok(_) => {
            ctx.event(evaluation, false, "Expired", "left the longest leaderboard window".to_string()).await;
            Ok(Action::await_change())
        }
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(Action::await_change()),
        Err(e) => Err(e.into()),
    }
}
