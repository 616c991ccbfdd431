//! What is left of a Task once it has ended: its Jobs (and so their pods) are deleted a while
//! after the end (`--keep-finished-jobs-seconds`), its records stay (its MinerSubmissions and
//! its Evaluation, which the Leaderboard reads). Once the Jobs are gone the Task reads its
//! MinerSubmissions no more: they are labelled archived, and the operator's caches, which
//! watch only the others, forget them (issue 13: at 1,000 Tasks of 16 miners, 16,000 cached
//! submissions made the operator's memory grow with the history).
//!
//! Issue 13: the operator's caches and the cluster kept every pod and Job of every Task ever
//! run, about 70 objects per Task of 16 miners, so the operator's memory grew with the history
//! (277 MB at 300 Tasks), not with the tournaments in flight. Kubernetes' own
//! `ttlSecondsAfterFinished` is not used: it deletes a Job once the Job ends, whether or not the
//! operator has read its result yet (an operator down for longer would lose the result).

use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::ResourceExt;
use kube::api::{DeleteParams, Patch, PatchParams, Preconditions, PropagationPolicy};
use kube::{Api, Client};

use super::context::FIELD_MANAGER;
use super::error::Result;
use super::ownership;
use crate::api::conditions::{self, Observed};
use crate::api::{MinerSubmission, TaskStatus};
use crate::workloads::labels;

/// The condition a Task's status carries once its Jobs were deleted (it stays).
pub const JOBS_REMOVED: &str = "JobsRemoved";
/// Deletes or archiving patches in flight at once.
const CONCURRENT_WRITES: usize = 8;

/// A child the operator created for a Task (a Job, a MinerSubmission), by name and uid.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Recorded {
    pub name: String,
    pub uid: String,
}

/// What becomes of an ended Task's Jobs.
#[derive(Debug, PartialEq)]
pub enum FinishedJobs {
    /// The Task has not ended: its Jobs are its work.
    InUse,
    /// Kept until then, for `kubectl logs` and `describe`.
    KeepUntil(DateTime<Utc>),
    /// Due for deletion: the Jobs the operator recorded as the Task's.
    Remove(Vec<Recorded>),
    /// Deleted already (the status says so).
    Removed,
}

/// Decides on the Jobs of a Task whose new status is `status` (`previous` before this
/// reconcile): kept for `keep` after the Task ended, then deleted. Only Jobs the operator
/// recorded as its own are named: the Task's (by uid in `status.children`) and its
/// MinerSubmissions' trainer Jobs (by uid in their status).
pub fn finished_jobs(
    status: &TaskStatus,
    previous: &TaskStatus,
    submissions: &[MinerSubmission],
    keep: Duration,
    now: DateTime<Utc>,
) -> FinishedJobs {
    if !status.phase.is_terminal() {
        return FinishedJobs::InUse;
    }
    if removed(previous) {
        return FinishedJobs::Removed;
    }
    let ended = status.phase_started_at.unwrap_or(now);
    let due = ended + chrono::Duration::from_std(keep).unwrap_or(chrono::Duration::MAX);
    if now < due {
        return FinishedJobs::KeepUntil(due);
    }
    let prefix = ownership::key::<Job>("");
    let own = status.children.iter().filter_map(|(key, uid)| {
        key.strip_prefix(&prefix).map(|name| Recorded { name: name.into(), uid: uid.clone() })
    });
    let trainers = submissions.iter().filter_map(|s| {
        let status = s.status.as_ref()?;
        Some(Recorded { name: status.job.clone()?, uid: status.job_uid.clone()? })
    });
    let mut jobs: Vec<Recorded> = own.chain(trainers).collect();
    jobs.sort();
    jobs.dedup();
    FinishedJobs::Remove(jobs)
}

fn removed(status: &TaskStatus) -> bool {
    status.conditions.iter().any(|c| c.type_ == JOBS_REMOVED && c.status == "True")
}

/// The MinerSubmissions to archive once the Task's new `status` says its Jobs are gone: of
/// `cached` (the caches hold only those not archived yet), the ones it recorded as its own.
/// None before: retention reads them to find the trainer Jobs.
pub fn to_archive(status: &TaskStatus, cached: &[MinerSubmission]) -> Vec<Recorded> {
    if !status.phase.is_terminal() || !removed(status) {
        return Vec::new();
    }
    cached
        .iter()
        .filter_map(|s| {
            let (name, uid) = (s.name_any(), s.uid()?);
            let recorded = status.children.get(&ownership::key::<MinerSubmission>(&name))?;
            (*recorded == uid).then_some(Recorded { name, uid })
        })
        .collect()
}

/// Labels `submissions` archived ([`labels::ARCHIVED`]); one gone or replaced since is left alone.
pub async fn archive(client: &Client, namespace: &str, submissions: &[Recorded]) -> Result<()> {
    if submissions.is_empty() {
        return Ok(());
    }
    let api = Api::<MinerSubmission>::namespaced(client.clone(), namespace);
    // Each patch owns what it sends: the stream's futures borrow nothing.
    let patches = submissions.iter().cloned().map(|Recorded { name, uid }| {
        let api = api.clone();
        async move {
            match label_archived(&api, &name, &uid, true).await {
                Err(kube::Error::Api(status)) if status.code == 404 || status.code == 409 => Ok(()),
                other => other,
            }
        }
    });
    futures::stream::iter(patches).buffer_unordered(CONCURRENT_WRITES).try_collect::<()>().await?;
    tracing::debug!(namespace, submissions = submissions.len(), "archived the MinerSubmissions of an ended Task");
    Ok(())
}

/// Whether `submission` carries the archived label (a cached one never does: the caches hold
/// only unarchived ones, and keep no labels).
pub fn is_archived(submission: &MinerSubmission) -> bool {
    submission.labels().contains_key(labels::ARCHIVED)
}

/// Takes the archived label off `submission` (put there by someone else while it is in flight).
pub async fn unarchive(client: &Client, namespace: &str, submission: &MinerSubmission) -> Result<()> {
    let api = Api::<MinerSubmission>::namespaced(client.clone(), namespace);
    Ok(label_archived(&api, &submission.name_any(), &submission.uid().unwrap_or_default(), false).await?)
}

/// Puts the archived label on the MinerSubmission `name`, or takes it off. The uid in the patch
/// is a precondition (409 for an object someone else created under the name since). A merge
/// patch, not an apply: the label stays whatever the operator applies later.
async fn label_archived(api: &Api<MinerSubmission>, name: &str, uid: &str, archived: bool) -> kube::Result<()> {
    let value = archived.then_some("true");
    let patch = serde_json::json!({"metadata": {"uid": uid, "labels": {labels::ARCHIVED: value}}});
    let params = PatchParams { field_manager: Some(FIELD_MANAGER.to_string()), ..PatchParams::default() };
    api.patch(name, &params, &Patch::Merge(&patch)).await.map(|_| ())
}

/// `JobsRemoved=True` once the Task's Jobs were deleted (`now`, or by an earlier reconcile).
pub fn condition(
    previous: &TaskStatus,
    removed_now: bool,
    generation: Option<i64>,
    now: DateTime<Utc>,
) -> Vec<Condition> {
    if !removed_now && !removed(previous) {
        return Vec::new();
    }
    let note = "the Task's Jobs and their pods were deleted after --keep-finished-jobs-seconds; its records stay in its MinerSubmissions and Evaluation";
    conditions::merge(
        &previous.conditions,
        &[Observed::new(JOBS_REMOVED, Some(true), "Retention", note)],
        generation,
        now,
    )
}

/// Deletes `jobs` and, in the background, their pods. The uid is a precondition: an object
/// someone else created under the same name since is never touched.
pub async fn remove(client: &Client, namespace: &str, jobs: &[Recorded]) -> Result<()> {
    let api = Api::<Job>::namespaced(client.clone(), namespace);
    // Each delete owns what it sends: the stream's futures borrow nothing.
    let deletes = jobs.iter().cloned().map(|Recorded { name, uid }| {
        let api = api.clone();
        let params = DeleteParams {
            propagation_policy: Some(PropagationPolicy::Background),
            preconditions: Some(Preconditions { uid: Some(uid), resource_version: None }),
            ..DeleteParams::default()
        };
        async move {
            match api.delete(&name, &params).await {
                // Gone already, or replaced by someone else's object (the uid precondition).
                Err(kube::Error::Api(status)) if status.code == 404 || status.code == 409 => Ok(()),
                other => other.map(|_| ()),
            }
        }
    });
    futures::stream::iter(deletes).buffer_unordered(CONCURRENT_WRITES).try_collect::<()>().await?;
    tracing::debug!(namespace, jobs = jobs.len(), "deleted the Jobs of an ended Task");
    Ok(())
}

#[cfg(test)]
#[path = "retention_tests.rs"]
mod tests;
