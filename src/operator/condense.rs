//! What the operator keeps in memory of its pods, Jobs, MinerSubmissions and Evaluations: only
//! what its reconciles read of them (issue 13: at 100 Tasks x 16 miners the caches held 3,300 of each, most of its memory).
//! The containers and volumes, which only the trust check reads, become their workload digest
//! (`ownership::WORKLOAD_DIGEST`), computed from the object as the API server returned it: each
//! object is condensed once, where it comes in (a second pass would digest the condensed spec).
//!
//! The caches hold them as [`CachedJob`] and [`CachedPod`]: a `Job` or `Pod` keeps room for every
//! field it lacks (2.6 kB a Job, 2.2 kB a pod, 2.1 kB a container), which made most of the
//! operator's memory at 1,000 Tasks. A reader gets the condensed `Job` or `Pod` back.

use std::borrow::Cow;
use std::collections::BTreeMap;

use k8s_openapi::api::batch::v1::{Job, JobCondition, JobSpec, JobStatus};
use k8s_openapi::api::core::v1::{
    Container, ContainerState, ContainerStatus, Pod, PodSpec, PodStatus, PodTemplateSpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::core::DeserializeGuard;
use kube::{Resource, ResourceExt};
use serde::Deserialize;

use super::ownership::{CREATION_TOKEN, WORKLOAD_DIGEST, workload_digest};
use crate::api::{Evaluation, MinerSubmission, Task};
use crate::workloads::labels;

/// A pod as the caches keep it: its metadata, its containers' names and images, and the status
/// a Task reads (its phase and reason, each container's name and state).
pub fn pod(pod: &mut Pod) {
    condense_metadata(&mut pod.metadata, pod.spec.as_ref().map(workload_digest));
    pod.spec = pod.spec.take().map(|spec| PodSpec {
        containers: images(spec.containers),
        node_name: spec.node_name,
        ..PodSpec::default()
    });
    pod.status = pod.status.take().map(|status| KeptPodStatus::from(status).to_status());
}

/// A Job as the caches keep it: its metadata, the status a Task reads, and whether it is
/// suspended. Its template is only its digest (an empty pod spec stays to say there was one): a
/// pod is judged against the digest, never the Job's containers, and each kept container cost
/// 2 kB (issue 13).
pub fn job(job: &mut Job) {
    job.status = job.status.take().map(|status| KeptJobStatus::from(status).to_status());
    let template = job.spec.as_ref().and_then(|s| s.template.spec.as_ref());
    condense_metadata(&mut job.metadata, template.map(workload_digest));
    job.spec = job.spec.take().map(|spec| JobSpec {
        suspend: spec.suspend,
        template: PodTemplateSpec { metadata: None, spec: spec.template.spec.map(|_| PodSpec::default()) },
        ..JobSpec::default()
    });
}

/// The labels a reconcile reads of a pod or Job: which Task (the caches' selection), which Job a
/// pod is of, and whether a Job was queued (`workloads::awaiting_admission`: a Job Kueue has
/// resumed but the Job controller not yet started still waits, with no pending timeout). A Job's
/// pod carries a dozen more (about 1 kB), which nothing reads; labels prove nothing about an
/// object anyway (`ownership::untrusted_pod`).
const KEPT_LABELS: [&str; 3] = [labels::TASK, labels::JOB_NAME, labels::KUEUE_QUEUE];
/// The annotations a reconcile reads: the creation token (is the Job ours) and the digest.
const KEPT_ANNOTATIONS: [&str; 2] = [CREATION_TOKEN, WORKLOAD_DIGEST];

/// Keeps only the labels and annotations read, and replaces whatever the object claimed as its
/// digest: only the operator's own computation counts.
fn condense_metadata(meta: &mut ObjectMeta, digest: Option<String>) {
    retain_only(&mut meta.labels, &KEPT_LABELS);
    let annotations = meta.annotations.get_or_insert_with(Default::default);
    annotations.retain(|key, _| KEPT_ANNOTATIONS.contains(&key.as_str()));
    match digest {
        Some(digest) => annotations.insert(WORKLOAD_DIGEST.to_string(), digest),
        None => annotations.remove(WORKLOAD_DIGEST),
    };
}

/// Keeps only the entries of `keys`. No entry and no map read the same, and no map costs no node
/// (a cached object gives back no map).
fn retain_only(map: &mut Option<BTreeMap<String, String>>, keys: &[&str]) {
    if let Some(entries) = map.as_mut() {
        entries.retain(|key, _| keys.contains(&key.as_str()));
    }
    *map = map.take().filter(|entries| !entries.is_empty());
}

/// Which container ran is never read; its id is a fifth of a completed container's state.
fn without_container_id(mut state: ContainerState) -> ContainerState {
    if let Some(terminated) = state.terminated.as_mut() {
        terminated.container_id = None;
    }
    state
}

fn images(containers: Vec<Container>) -> Vec<Container> {
    containers.into_iter().map(|c| Container { name: c.name, image: c.image, ..Container::default() }).collect()
}

/// A MinerSubmission as the caches keep it: its labels, and the spec's locations and the trainer's
/// command, which only its trainer Job is built from, are dropped (the submission controller reads the
/// submission fresh before it builds one). What the Tasks and the metrics read stays: the task,
/// the miner, the GPUs and the other numbers, the metadata (the creation token its one annotation,
/// for adoption after a crash: `ownership::ownership`) and the status.
pub fn submission(submission: &mut MinerSubmission) {
    // Its labels and the annotations other than the creation token are never read of a cached
    // submission (the caches index it by its spec's Task): a non-empty map costs a 544-byte node.
    creation_token_only(&mut submission.metadata);
    let spec = &mut submission.spec;
    for location in [&mut spec.base_model_uri, &mut spec.data_uri, &mut spec.artifact_uri, &mut spec.gpu_class] {
        *location = String::new();
    }
    spec.columns = BTreeMap::new();
    (spec.image, spec.strategy, spec.resume_uri) = (None, None, None);
    (spec.command, spec.args) = (Vec::new(), Vec::new());
}

/// An Evaluation as the caches keep it, for the 7 days it stays in the Leaderboard's window:
/// what the Leaderboard's record (`results::task_record`), the Task's summary, the metrics and the
/// expiry read. Where the models and data were, the MinerSubmission each entry names, and the
/// evaluator's digests and failure texts are read only from the API (`kubectl get evaluation`).
/// Its labels go too, as a submission's do; the creation token stays for adoption after a crash.
pub fn evaluation(evaluation: &mut Evaluation) {
    creation_token_only(&mut evaluation.metadata);
    let spec = &mut evaluation.spec;
    for location in [&mut spec.base_model_uri, &mut spec.data_uri, &mut spec.gpu_class] {
        *location = String::new();
    }
    for entry in &mut spec.submissions {
        (entry.submission, entry.artifact_uri) = (String::new(), String::new());
    }
    if let Some(status) = evaluation.status.as_mut() {
        status.conditions = Vec::new();
        for result in &mut status.results {
            (result.model_digest, result.failure, result.duplicate_of) = (None, None, None);
        }
    }
}

/// No labels, and of the annotations only the creation token (adoption after a crash reads it).
fn creation_token_only(meta: &mut ObjectMeta) {
    meta.labels = None;
    retain_only(&mut meta.annotations, &[CREATION_TOKEN]);
}

/// A Task as the Task controller's store keeps it: without its lifecycle state (15 of a finished
/// Task's 21 kB), which only the Task's own reconcile reads, from the Task it gets fresh; and
/// without who wrote which field. What the other readers need stays: the name, the phase, the
/// recorded children (the submission controller's trust), the labels.
pub fn task(guarded: &mut DeserializeGuard<Task>) {
    guarded.managed_fields_mut().clear();
    if let Ok(task) = &mut guarded.0
        && let Some(status) = task.status.as_mut()
    {
        status.lifecycle = None;
    }
}

/// A condensed Job ([`job`]) as the caches hold it.
#[derive(Clone, Debug, Deserialize)]
#[serde(from = "Job")]
pub struct CachedJob {
    metadata: ObjectMeta,
    maps: KeptMaps,
    spec: Option<CachedJobSpec>,
    status: Option<KeptJobStatus>,
}

#[derive(Clone, Debug)]
struct CachedJobSpec {
    suspend: Option<bool>,
    templated: bool,
}

impl From<Job> for CachedJob {
    fn from(mut full: Job) -> CachedJob {
        // The status is kept as it is held, not rebuilt as a `JobStatus` by `job` first.
        let status = full.status.take().map(KeptJobStatus::from);
        job(&mut full);
        let spec =
            full.spec.map(|spec| CachedJobSpec { suspend: spec.suspend, templated: spec.template.spec.is_some() });
        let maps = KeptMaps::take(&mut full.metadata);
        CachedJob { metadata: full.metadata, maps, spec, status }
    }
}

impl CachedJob {
    /// The value of one of its kept labels.
    pub fn label(&self, key: &str) -> Option<&str> {
        self.maps.label(key)
    }

    /// The condensed Job.
    pub fn to_job(&self) -> Job {
        Job {
            metadata: self.maps.restored(&self.metadata),
            spec: self.spec.as_ref().map(|spec| JobSpec {
                suspend: spec.suspend,
                template: PodTemplateSpec { metadata: None, spec: spec.templated.then(PodSpec::default) },
                ..JobSpec::default()
            }),
            status: self.status.as_ref().map(KeptJobStatus::to_status),
        }
    }
}

/// The status a Task reads of a Job: when it started (and completed), how many pods are ready,
/// and its conditions that hold (`Complete`, `Failed`: when, why). A `JobStatus` keeps room for
/// 11 fields and a `JobCondition` for 6; a completed Job holds two conditions, with their texts.
#[derive(Clone, Debug)]
struct KeptJobStatus {
    start_time: Option<Time>,
    completion_time: Option<Time>,
    ready: Option<i32>,
    holding: Vec<KeptJobCondition>,
}

/// A condition whose status is `True`.
#[derive(Clone, Debug)]
struct KeptJobCondition {
    type_: String,
    reason: Option<String>,
    message: Option<String>,
    last_transition_time: Option<Time>,
}

/// The conditions a reconcile reads (`lifecycle::job_state`); a Job's others (`SuccessCriteriaMet`,
/// `FailureTarget`, `Suspended`) only precede them.
const READ_JOB_CONDITIONS: [&str; 2] = ["Complete", "Failed"];

impl From<JobStatus> for KeptJobStatus {
    fn from(status: JobStatus) -> Self {
        let holding = status
            .conditions
            .into_iter()
            .flatten()
            .filter(|c| c.status == "True" && READ_JOB_CONDITIONS.contains(&c.type_.as_str()));
        KeptJobStatus {
            start_time: status.start_time,
            completion_time: status.completion_time,
            ready: status.ready,
            holding: holding
                .map(|c| KeptJobCondition {
                    type_: c.type_,
                    reason: c.reason,
                    message: c.message,
                    last_transition_time: c.last_transition_time,
                })
                .collect(),
        }
    }
}

impl KeptJobStatus {
    fn to_status(&self) -> JobStatus {
        let condition = |c: &KeptJobCondition| JobCondition {
            type_: c.type_.clone(),
            status: "True".to_string(),
            reason: c.reason.clone(),
            message: c.message.clone(),
            last_transition_time: c.last_transition_time.clone(),
            last_probe_time: None,
        };
        JobStatus {
            start_time: self.start_time.clone(),
            completion_time: self.completion_time.clone(),
            ready: self.ready,
            conditions: Some(self.holding.iter().map(condition).collect()).filter(|c: &Vec<_>| !c.is_empty()),
            ..JobStatus::default()
        }
    }
}

/// A condensed pod ([`pod`]) as the caches hold it.
#[derive(Clone, Debug, Deserialize)]
#[serde(from = "Pod")]
pub struct CachedPod {
    metadata: ObjectMeta,
    maps: KeptMaps,
    spec: Option<CachedPodSpec>,
    status: Option<KeptPodStatus>,
}

#[derive(Clone, Debug)]
struct CachedPodSpec {
    node_name: Option<String>,
    /// Each container's name and image.
    containers: Vec<(String, Option<String>)>,
}

impl From<Pod> for CachedPod {
    fn from(mut full: Pod) -> CachedPod {
        // The status is kept as it is held, not rebuilt as a `PodStatus` by `pod` first.
        let status = full.status.take().map(KeptPodStatus::from);
        pod(&mut full);
        let spec = full.spec.map(|spec| CachedPodSpec {
            node_name: spec.node_name,
            containers: spec.containers.into_iter().map(|c| (c.name, c.image)).collect(),
        });
        let maps = KeptMaps::take(&mut full.metadata);
        CachedPod { metadata: full.metadata, maps, spec, status }
    }
}

impl CachedPod {
    /// The value of one of its kept labels.
    pub fn label(&self, key: &str) -> Option<&str> {
        self.maps.label(key)
    }

    /// The condensed pod.
    pub fn to_pod(&self) -> Pod {
        Pod {
            metadata: self.maps.restored(&self.metadata),
            spec: self.spec.as_ref().map(|spec| PodSpec {
                containers: spec
                    .containers
                    .iter()
                    .map(|(name, image)| Container { name: name.clone(), image: image.clone(), ..Container::default() })
                    .collect(),
                node_name: spec.node_name.clone(),
                ..PodSpec::default()
            }),
            status: self.status.as_ref().map(KeptPodStatus::to_status),
        }
    }
}

/// The status a Task reads of a pod: its phase and reason, and each container's name and state
/// (its restarts and readiness too). A `PodStatus` keeps room for its 16 fields and a
/// `ContainerStatus` for its 15: 0.8 kB of a cached pod's 2.6 (`benches/cache_footprint.rs`).
#[derive(Clone, Debug)]
struct KeptPodStatus {
    phase: Option<String>,
    reason: Option<String>,
    message: Option<String>,
    start_time: Option<Time>,
    containers: Option<Vec<KeptContainerStatus>>,
}

#[derive(Clone, Debug)]
struct KeptContainerStatus {
    name: String,
    state: Option<ContainerState>,
    ready: bool,
    restart_count: i32,
}

impl From<PodStatus> for KeptPodStatus {
    fn from(status: PodStatus) -> Self {
        let container = |c: ContainerStatus| KeptContainerStatus {
            name: c.name,
            state: c.state.map(without_container_id),
            ready: c.ready,
            restart_count: c.restart_count,
        };
        KeptPodStatus {
            phase: status.phase,
            reason: status.reason,
            message: status.message,
            start_time: status.start_time,
            containers: status.container_statuses.map(|statuses| statuses.into_iter().map(container).collect()),
        }
    }
}

impl KeptPodStatus {
    fn to_status(&self) -> PodStatus {
        let container = |c: &KeptContainerStatus| ContainerStatus {
            name: c.name.clone(),
            state: c.state.clone(),
            ready: c.ready,
            restart_count: c.restart_count,
            ..ContainerStatus::default()
        };
        PodStatus {
            phase: self.phase.clone(),
            reason: self.reason.clone(),
            message: self.message.clone(),
            start_time: self.start_time.clone(),
            container_statuses: self.containers.as_ref().map(|statuses| statuses.iter().map(container).collect()),
            ..PodStatus::default()
        }
    }
}

/// The kept labels and annotations of a cached Job or pod, held beside its metadata (which keeps
/// neither map): a map with any entry takes a whole B-tree node (544 bytes) besides its entries,
/// two of them 40 % of a cached Job (`benches/cache_footprint.rs`). Each value sits at its key's
/// place in `KEPT_LABELS` or `KEPT_ANNOTATIONS`.
#[derive(Clone, Debug, Default)]
struct KeptMaps {
    labels: [Option<String>; KEPT_LABELS.len()],
    annotations: [Option<String>; KEPT_ANNOTATIONS.len()],
}

impl KeptMaps {
    /// Takes the (condensed) labels and annotations out of `meta`.
    fn take(meta: &mut ObjectMeta) -> KeptMaps {
        let mut labels = meta.labels.take().unwrap_or_default();
        let mut annotations = meta.annotations.take().unwrap_or_default();
        KeptMaps {
            labels: KEPT_LABELS.map(|key| labels.remove(key)),
            annotations: KEPT_ANNOTATIONS.map(|key| annotations.remove(key)),
        }
    }

    fn label(&self, key: &str) -> Option<&str> {
        let at = KEPT_LABELS.iter().position(|kept| *kept == key)?;
        self.labels[at].as_deref()
    }

    /// `meta` with these labels and annotations, as condensing left them.
    fn restored(&self, meta: &ObjectMeta) -> ObjectMeta {
        fn map(keys: &[&str], values: &[Option<String>]) -> BTreeMap<String, String> {
            keys.iter().zip(values).filter_map(|(key, value)| Some((key.to_string(), value.clone()?))).collect()
        }
        let labels = map(&KEPT_LABELS, &self.labels);
        ObjectMeta {
            labels: (!labels.is_empty()).then_some(labels),
            annotations: Some(map(&KEPT_ANNOTATIONS, &self.annotations)),
            ..meta.clone()
        }
    }
}

/// A cached kind is read and watched as the kind it condenses.
macro_rules! watched_as {
    ($cached:ty, $kind:ty) => {
        impl Resource for $cached {
            type DynamicType = ();
            type Scope = <$kind as Resource>::Scope;

            fn kind(dt: &()) -> Cow<'_, str> {
                <$kind as Resource>::kind(dt)
            }
            fn group(dt: &()) -> Cow<'_, str> {
                <$kind as Resource>::group(dt)
            }
            fn version(dt: &()) -> Cow<'_, str> {
                <$kind as Resource>::version(dt)
            }
            fn plural(dt: &()) -> Cow<'_, str> {
                <$kind as Resource>::plural(dt)
            }
            fn meta(&self) -> &ObjectMeta {
                &self.metadata
            }
            fn meta_mut(&mut self) -> &mut ObjectMeta {
                &mut self.metadata
            }
        }
    };
}

watched_as!(CachedJob, Job);
watched_as!(CachedPod, Pod);

#[cfg(test)]
mod tests {
    use super::*;

    /// The Task label, token and digest a reconcile reads come back from a cached Job; nothing else does, and
    /// the Job's own claim of a digest is replaced by the operator's.
    #[test]
    fn a_cached_job_gives_back_its_task_its_token_and_the_computed_digest_only() {
        let job: Job = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "t-train-m1", "namespace": "a", "uid": "u",
                "labels": {labels::TASK: "t", "gradients.io/unread": "dropped"}, "annotations": {
                CREATION_TOKEN: "0123", WORKLOAD_DIGEST: "claimed", "other": "dropped"}},
            "spec": {"template": {"spec": {"containers": [{"name": "trainer", "image": "trainer:1"}]}}},
        }))
        .unwrap();
        let digest = workload_digest(job.spec.as_ref().unwrap().template.spec.as_ref().unwrap());
        let cached = CachedJob::from(job);
        assert!(cached.metadata.annotations.is_none(), "the annotations are held outside the metadata");
        assert!(cached.metadata.labels.is_none(), "so are the labels");
        assert_eq!(cached.label(labels::TASK), Some("t"));
        let back = cached.to_job().metadata;
        assert_eq!(
            back.annotations.unwrap(),
            [(CREATION_TOKEN.into(), "0123".into()), (WORKLOAD_DIGEST.into(), digest)].into()
        );
        assert_eq!(back.labels.unwrap(), [(labels::TASK.into(), "t".into())].into());
    }

    /// The submission controller trusts a submission by its Task's recorded children, read from
    /// the store; the lifecycle, read only by the Task's own reconcile from a fresh copy, goes.
    #[test]
    fn a_cached_task_keeps_its_phase_and_children_and_drops_its_lifecycle() {
        let mut guarded: DeserializeGuard<Task> = serde_json::from_value(serde_json::json!({
            "apiVersion": "gradients.io/v1alpha1", "kind": "Task",
            "metadata": {"name": "t", "namespace": "a", "uid": "u", "managedFields": [{"manager": "kubectl"}]},
            "spec": {"taskType": "InstructText", "hours": 0.1,
                     "baseModel": {"uri": "file:///m", "paramsB": 0.5}, "dataset": {"uri": "file:///d"}},
            "status": {"phase": "Training", "children": {"MinerSubmission/t-m1": "s1"}},
        }))
        .unwrap();
        let status = guarded.0.as_mut().unwrap().status.as_mut().unwrap();
        status.lifecycle = Some(crate::tournament::TaskState::default());
        task(&mut guarded);
        let kept = guarded.0.unwrap();
        let status = kept.status.unwrap();
        assert_eq!(status.phase.as_str(), "Training");
        assert_eq!(status.children.get("MinerSubmission/t-m1").map(String::as_str), Some("s1"));
        assert!(status.lifecycle.is_none());
        assert!(kept.metadata.managed_fields.is_none_or(|fields| fields.is_empty()));
    }

    /// A cached Evaluation gives every reader the answer the full one does: the Leaderboard's
    /// record, the Task's summary, the metrics, the expiry and adoption by its creation token.
    #[test]
    fn a_cached_evaluation_reads_as_the_full_one_to_every_reader() {
        use super::super::{lifecycle, ownership, results, telemetry};
        let result = |miner: &str, state: &str, extra: serde_json::Value| {
            let mut result = serde_json::json!({"miner": miner, "state": state, "modelDigest": "sha256:00"});
            result.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
            result
        };
        let full: Evaluation = serde_json::from_value(serde_json::json!({
            "apiVersion": "gradients.io/v1alpha1", "kind": "Evaluation",
            "metadata": {"name": "t", "namespace": "a", "uid": "u",
                "labels": {labels::TASK: "t"}, "annotations": {CREATION_TOKEN: "0123", "other": "x"}},
            "spec": {"task": "t", "taskType": "Dpo", "origin": "Organic", "baseModelUri": "/m",
                "baseModelParamsB": 0.5, "hours": 2.0, "dataUri": "/d", "gpuClass": "h100",
                "submissions": [
                    {"miner": "m1", "submission": "t-m1", "artifactUri": "/a/m1", "submittedAt": "2026-12-03T22:05:02Z"},
                    {"miner": "m2", "submission": "t-m2", "artifactUri": "/a/m2", "submittedAt": "2026-12-03T22:06:02Z", "rung": 1},
                    {"miner": "m3", "submission": "t-m3", "artifactUri": "/a/m3", "submittedAt": "2026-12-03T22:07:02Z"}]},
            "status": {"phase": "Complete", "observedGeneration": 1, "evaluated": 3, "ranked": 1, "winner": "m1",
                "taskWeight": 2.0, "finishedAt": "2026-12-03T22:10:00Z",
                "conditions": [{"type": "Evaluated", "status": "True", "reason": "Scored", "message": "",
                    "lastTransitionTime": "2026-12-03T22:10:00Z"}],
                "results": [
                    result("m1", "Evaluated", serde_json::json!({"testLoss": 1.0, "synthLoss": 1.2,
                        "weightsSha256": "aa", "status": "ranked", "weightedLoss": 1.1, "rank": 1,
                        "score": 3.0, "adjustedScore": 6.0})),
                    result("m2", "Evaluated", serde_json::json!({"testLoss": 1.0, "synthLoss": 1.2,
                        "weightsSha256": "aa", "status": "duplicate", "duplicateOf": "m1"})),
                    result("m3", "Failed", serde_json::json!({"failure": "evaluator exited 1", "status": "failed"}))]},
        }))
        .unwrap();
        let mut cached = DeserializeGuard(Ok(full.clone()));
        crate::operator::caches::Kept::condense(&mut cached);
        let cached = cached.0.unwrap();
        assert!(cached.spec.submissions.iter().all(|s| s.artifact_uri.is_empty() && s.submission.is_empty()));
        assert!(
            cached.status.as_ref().unwrap().results.iter().all(|r| r.failure.is_none() && r.model_digest.is_none())
        );

        assert_eq!(results::complete_record(&cached), results::complete_record(&full));
        assert!(results::complete_record(&cached).is_some());
        let (status, cached_status) = (full.status.as_ref().unwrap(), cached.status.as_ref().unwrap());
        assert_eq!(lifecycle::summarize(cached_status, "t"), lifecycle::summarize(status, "t"));
        assert_eq!(cached_status.finished_at, status.finished_at, "the expiry");
        assert_eq!(telemetry::snapshot(&[], &[], &[&cached]), telemetry::snapshot(&[], &[], &[&full]));
        let adoption = |meta| {
            let commitment = ownership::commitment("0123");
            ownership::ownership(Some(meta), ownership::Record { uid: None, commitment: Some(&commitment) })
        };
        assert_eq!(adoption(&cached.metadata), ownership::Ownership::Unrecorded);
    }
}
