//! Pure builders of the Kubernetes objects a tournament runs as: the dataset-preparation Job,
//! one trainer Job per submission, one evaluation Job per evaluated submission, and the
//! NetworkPolicy that isolates evaluation pods. No I/O: each takes a custom resource and the
//! installation's [`WorkloadConfig`] and returns the object to server-side apply.

pub mod config;
pub mod contract;
pub mod evaluator;
pub mod gpus;
pub mod network_policy;
pub mod prepare;
pub mod seal;
pub mod synthesize;
pub mod trainer;
mod view;

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Capabilities, PodSecurityContext, ResourceRequirements, SeccompProfile, SecurityContext, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::Resource;
use sha2::{Digest, Sha256};

pub use config::{ArtifactStore, GpuClass, SourceNotAllowed, WorkloadConfig};
pub use contract::{TERMINATION_MESSAGE_PATH, cli_task_type, columns_arg};
pub(crate) use view::ArtifactView;

/// Labels every workload carries; selectors and the NetworkPolicy rely on them.
pub mod labels {
    pub const MANAGED_BY: &str = "app.kubernetes.io/managed-by";
    pub const MANAGER: &str = "gradients-operator";
    pub const ROLE: &str = "gradients.io/role";
    pub const TASK: &str = "gradients.io/task";
    pub const MINER: &str = "gradients.io/miner";
    pub const EVALUATION: &str = "gradients.io/evaluation";
    /// The attempt of a workload (retries are new workloads, see `tournament::WorkloadId`).
    pub const ATTEMPT: &str = "gradients.io/attempt";
    /// The rung of successive halving a training belongs to (`spec.halving`; absent: rung 0).
    pub const RUNG: &str = "gradients.io/rung";
    pub const KUEUE_QUEUE: &str = "kueue.x-k8s.io/queue-name";
    /// Put by the Job controller on a Job's pods.
    pub const JOB_NAME: &str = "batch.kubernetes.io/job-name";
    /// On a MinerSubmission of an ended Task whose Jobs are gone: the operator reads it no
    /// more, and its caches watch only submissions without this label (`operator::retention`).
    pub const ARCHIVED: &str = "gradients.io/archived";

    pub const ROLE_PREPARE: &str = "prepare";
    pub const ROLE_TRAINER: &str = "trainer";
    pub const ROLE_SEAL: &str = "seal";
    pub const ROLE_EVALUATOR: &str = "evaluator";
}

/// Why a workload cannot be built from an object. These are problems of the object or of the
/// configuration, not of the cluster: retrying does not help until one of them changes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BuildError {
    #[error("{kind} has no {field} yet (not created by the API server?)")]
    MissingMetadata { kind: &'static str, field: &'static str },
    #[error("GPU class {0:?} is not configured (known: {1})")]
    UnknownGpuClass(String, String),
    #[error(transparent)]
    SourceNotAllowed(#[from] SourceNotAllowed),
    #[error("{object}: {field} {uri:?} is not inside its task's own area")]
    OutsideTask { object: String, field: &'static str, uri: String },
    #[error("{object}: spec.args: {why}")]
    MinerArguments { object: String, why: String },
    /// The object store cannot be used as configured (no `objectStore`, no credentials, a
    /// source the operator could not list): fixed by the configuration, not by the object.
    #[error("object store: {0}")]
    ObjectStore(String),
}

impl BuildError {
    /// A problem of the object itself, which no retry fixes: its workload fails instead.
    pub fn is_refusal(&self) -> bool {
        matches!(
            self,
            BuildError::OutsideTask { .. } | BuildError::MinerArguments { .. } | BuildError::SourceNotAllowed(_)
        )
    }

    pub fn category(&self) -> &'static str {
        match self {
            BuildError::MissingMetadata { .. } => "MissingMetadata",
            BuildError::UnknownGpuClass(..) => "UnknownGpuClass",
            BuildError::SourceNotAllowed(..) => "SourceNotAllowed",
            BuildError::OutsideTask { .. } => "OutsideTask",
            BuildError::MinerArguments { .. } => "MinerArguments",
            BuildError::ObjectStore(..) => "ObjectStore",
        }
    }
}

/// A DNS-1123 name of at most 63 characters for the object identified by `parts` (task,
/// kind, entrant, attempt…): the parts joined with `-` for people, cut to fit, then a hash of
/// the parts themselves. Joined names are ambiguous (`t-a` + `1` and `t` + `a-1` both read
/// `t-a-1`); the hash is over the parts separated by NUL, which no name contains, so
/// different objects always get different names.
pub fn child_name(parts: &[&str]) -> String {
    let digest = Sha256::digest(parts.join("\0").as_bytes());
    let suffix: String = digest.iter().take(4).map(|b| format!("{b:02x}")).collect();
    let readable: Vec<&str> = parts.iter().copied().filter(|p| !p.is_empty()).collect();
    let joined = readable.join("-").to_lowercase();
    let mut end = joined.len().min(54);
    while !joined.is_char_boundary(end) {
        end -= 1;
    }
    let head = joined[..end].trim_end_matches(['-', '.']);
    format!("{head}-{suffix}")
}

/// The name of the object that runs one workload of a task: the MinerSubmission of a training,
/// the Job of a seal or an evaluation.
pub fn workload_name(task: &str, id: &crate::tournament::WorkloadId) -> String {
    if id.rung > 0 {
        // Successive halving: each rung's workloads are objects of their own.
        return child_name(&[task, id.kind.as_str(), &id.entrant, &id.attempt.to_string(), &format!("r{}", id.rung)]);
    }
    child_name(&[task, id.kind.as_str(), &id.entrant, &id.attempt.to_string()])
}

/// The object's namespace, name and a controller owner reference to it.
pub fn owner<K: Resource<DynamicType = ()>>(object: &K) -> Result<(String, String, OwnerReference), BuildError> {
    let kind = match K::kind(&()) {
        std::borrow::Cow::Borrowed(kind) => kind,
        std::borrow::Cow::Owned(_) => "object",
    };
    let namespace = object.meta().namespace.clone().ok_or(BuildError::MissingMetadata { kind, field: "namespace" })?;
    let name = object.meta().name.clone().ok_or(BuildError::MissingMetadata { kind, field: "name" })?;
    let reference = object.controller_owner_ref(&()).ok_or(BuildError::MissingMetadata { kind, field: "uid" })?;
    Ok((namespace, name, reference))
}

pub(crate) fn metadata(
    name: String,
    namespace: String,
    owner: OwnerReference,
    labels: BTreeMap<String, String>,
) -> ObjectMeta {
    ObjectMeta {
        name: Some(name),
        namespace: Some(namespace),
        labels: Some(labels),
        owner_references: Some(vec![owner]),
        ..ObjectMeta::default()
    }
}

pub(crate) fn base_labels(role: &str, task: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (labels::MANAGED_BY.to_string(), labels::MANAGER.to_string()),
        (labels::ROLE.to_string(), role.to_string()),
        (labels::TASK.to_string(), label_value(task)),
    ])
}

/// The Job's labels, with its Kueue LocalQueue when one is configured, and whether it is created
/// suspended: a queued Job starts suspended so that no pod exists before Kueue admits it (with or
/// without Kueue's defaulting webhook); admission resumes it, and resuming resets the Job's
/// `startTime` and `activeDeadlineSeconds`, so a trainer's hours count from its admission.
pub(crate) fn queued(
    config: &WorkloadConfig,
    mut job_labels: BTreeMap<String, String>,
) -> (BTreeMap<String, String>, Option<bool>) {
    match &config.kueue_queue {
        Some(queue) => {
            job_labels.insert(labels::KUEUE_QUEUE.to_string(), queue.clone());
            (job_labels, Some(true))
        }
        None => (job_labels, None),
    }
}

/// Whether a Job still waits for its queue: suspended, or resumed by Kueue's admission but not
/// yet started by the Job controller (no `startTime`). In that gap a Job looks merely pending,
/// and a pending timeout counted from its request would stop a trainer the moment it is admitted.
pub fn awaiting_admission(job: &k8s_openapi::api::batch::v1::Job) -> bool {
    let suspended = job.spec.as_ref().and_then(|s| s.suspend) == Some(true);
    let queued = job.metadata.labels.as_ref().is_some_and(|l| l.contains_key(labels::KUEUE_QUEUE));
    let started = job.status.as_ref().is_some_and(|s| s.start_time.is_some());
    suspended || (queued && !started)
}

/// Label values are at most 63 characters; names of our objects already are.
pub fn label_value(value: &str) -> String {
    if value.len() <= 63 { value.to_string() } else { child_name(&[value]) }
}

/// Whether `label` could be [`label_value`]'s hash of a longer value ([`child_name`]'s form: a
/// head, `-`, 8 hex digits); any other label is the value itself.
pub fn may_be_hashed(label: &str) -> bool {
    label.rsplit_once('-').is_some_and(|(_, suffix)| suffix.len() == 8 && suffix.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// The restricted Pod Security Standard: non-root, RuntimeDefault seccomp.
/// The pod every workload runs in: never restarted in place, no service-account token, no
/// service links, the restricted security profile. Defined once so no builder can drop one.
pub(crate) fn locked_down_pod(
    node_selector: Option<BTreeMap<String, String>>,
    tolerations: Option<Vec<k8s_openapi::api::core::v1::Toleration>>,
    container: k8s_openapi::api::core::v1::Container,
    (volumes, init): (Vec<Volume>, Vec<k8s_openapi::api::core::v1::Container>),
) -> k8s_openapi::api::core::v1::PodSpec {
    k8s_openapi::api::core::v1::PodSpec {
        init_containers: (!init.is_empty()).then_some(init),
        restart_policy: Some("Never".to_string()),
        automount_service_account_token: Some(false),
        enable_service_links: Some(false),
        security_context: Some(restricted_pod_security()),
        node_selector,
        tolerations,
        containers: vec![container],
        volumes: Some(volumes),
        ..Default::default()
    }
}

/// A locked-down pod on a GPU class's nodes (its selector and tolerations), under its
/// RuntimeClass (a sandboxed runtime): the pods that run or read miners' work.
pub(crate) fn gpu_class_pod(
    class: &GpuClass,
    container: k8s_openapi::api::core::v1::Container,
    volumes: (Vec<Volume>, Vec<k8s_openapi::api::core::v1::Container>),
) -> k8s_openapi::api::core::v1::PodSpec {
    let node_selector = (!class.node_selector.is_empty()).then(|| class.node_selector.clone());
    let tolerations = (!class.tolerations.is_empty()).then(|| class.tolerations.clone());
    k8s_openapi::api::core::v1::PodSpec {
        runtime_class_name: class.runtime_class_name.clone(),
        ..locked_down_pod(node_selector, tolerations, container, volumes)
    }
}

pub(crate) fn restricted_pod_security() -> PodSecurityContext {
    PodSecurityContext {
        run_as_non_root: Some(true),
        run_as_user: Some(1000),
        run_as_group: Some(1000),
        fs_group: Some(1000),
        seccomp_profile: Some(SeccompProfile { type_: "RuntimeDefault".to_string(), ..SeccompProfile::default() }),
        ..PodSecurityContext::default()
    }
}

/// The restricted profile for a container: no privilege escalation, no capabilities.
/// A container of the operator's own image (preparation, seal): requests equal limits, a
/// read-only root, its report in the termination message.
pub(crate) fn operator_container(
    name: &str,
    args: Vec<String>,
    amounts: std::collections::BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity>,
    staged: (Vec<k8s_openapi::api::core::v1::VolumeMount>, Vec<(String, String)>, Option<String>),
    config: &WorkloadConfig,
) -> k8s_openapi::api::core::v1::Container {
    let (volume_mounts, transfers, working_dir) = staged;
    k8s_openapi::api::core::v1::Container {
        name: name.to_string(),
        image: Some(config.operator_image.clone()),
        image_pull_policy: config.image_pull_policy.clone(),
        args: Some(args),
        env: Some(env(transfers)),
        working_dir,
        resources: Some(k8s_openapi::api::core::v1::ResourceRequirements {
            requests: Some(amounts.clone()),
            limits: Some(amounts),
            ..Default::default()
        }),
        security_context: Some(restricted_container_security(true)),
        termination_message_path: Some(contract::TERMINATION_MESSAGE_PATH.to_string()),
        termination_message_policy: Some("File".to_string()),
        volume_mounts: Some(volume_mounts),
        ..Default::default()
    }
}

/// `gradients await-isolation` (`workloads.awaitIsolation`): a trainer pod's first init
/// container, so the miner's code starts only once the pod's NetworkPolicy is in force.
pub(crate) fn await_isolation_container(config: &WorkloadConfig) -> k8s_openapi::api::core::v1::Container {
    let amounts = BTreeMap::from([
        ("cpu".to_string(), Quantity("100m".to_string())),
        ("memory".to_string(), Quantity("64Mi".to_string())),
    ]);
    k8s_openapi::api::core::v1::Container {
        name: "await-isolation".to_string(),
        image: Some(config.operator_image.clone()),
        image_pull_policy: config.image_pull_policy.clone(),
        args: Some(vec!["await-isolation".to_string()]),
        resources: Some(ResourceRequirements {
            requests: Some(amounts.clone()),
            limits: Some(amounts),
            ..ResourceRequirements::default()
        }),
        security_context: Some(restricted_container_security(true)),
        ..Default::default()
    }
}

pub(crate) fn restricted_container_security(read_only_root: bool) -> SecurityContext {
    SecurityContext {
        allow_privilege_escalation: Some(false),
        privileged: Some(false),
        read_only_root_filesystem: Some(read_only_root),
        run_as_non_root: Some(true),
        capabilities: Some(Capabilities { drop: Some(vec!["ALL".to_string()]), ..Capabilities::default() }),
        seccomp_profile: Some(SeccompProfile { type_: "RuntimeDefault".to_string(), ..SeccompProfile::default() }),
        ..SecurityContext::default()
    }
}

/// Requests equal to limits (Guaranteed QoS): `gpus` of the class's GPU plus CPU and memory per GPU.
pub(crate) fn gpu_resources(class: &GpuClass, gpus: u32) -> ResourceRequirements {
    let amounts = BTreeMap::from([
        (class.resource.clone(), Quantity(gpus.to_string())),
        ("cpu".to_string(), Quantity(multiply(&class.cpu_per_gpu, gpus))),
        ("memory".to_string(), Quantity(multiply(&class.memory_per_gpu, gpus))),
    ]);
    ResourceRequirements { requests: Some(amounts.clone()), limits: Some(amounts), ..ResourceRequirements::default() }
}

/// `quantity × n` for the plain forms the config uses (`8`, `500m`, `64Gi`); other forms are
/// used as they are, once per pod.
fn multiply(quantity: &str, n: u32) -> String {
    let digits_end = quantity.find(|c: char| !c.is_ascii_digit()).unwrap_or(quantity.len());
    match quantity[..digits_end].parse::<u64>() {
        Ok(value) if quantity[digits_end..].chars().all(|c| c.is_ascii_alphabetic()) => {
            format!("{}{}", value * u64::from(n), &quantity[digits_end..])
        }
        _ => quantity.to_string(),
    }
}

/// Where each location appears inside a workload's container when artifacts live on a claim.
/// Each is a `subPath` mount of exactly that location, so a pod sees nothing else of the claim.
pub mod mounts {
    pub const BASE_MODEL: &str = "/base-model";
    /// A trainer's training inputs (the training split, GRPO reward code): read-only.
    pub const INPUTS: &str = "/inputs";
    /// The test and synthetic splits: the evaluator's only.
    pub const HELDOUT: &str = "/heldout";
    /// A trainer's own output (writable by it alone); the seal's input (read-only).
    pub const OUTPUT: &str = "/output";
    /// A sealed copy: written by the seal, read by the evaluator.
    pub const SEALED: &str = "/sealed";
    /// Successive halving: the trainer's own previous output, read-only (`--resume-from`).
    pub const RESUME: &str = "/resume";
    /// The preparation's raw dataset and synthetic set (read-only) and its output.
    pub const DATASET: &str = "/source/dataset";
    pub const SYNTHETIC: &str = "/source/synthetic";
    pub const PREPARED: &str = "/prepared";
    /// The synthetic set's generator models (read-only) and where it writes the set.
    pub const GENERATOR: &str = "/generator";
    pub const WEAKER_MODEL: &str = "/weaker-model";
    pub const GENERATED: &str = "/generated";
}

/// Scratch space for tools that need a writable HOME and /tmp under a read-only root.
pub(crate) fn scratch_volume(size: &str) -> (Volume, VolumeMount) {
    (
        Volume {
            name: "scratch".to_string(),
            empty_dir: Some(k8s_openapi::api::core::v1::EmptyDirVolumeSource {
                size_limit: Some(Quantity(size.to_string())),
                ..Default::default()
            }),
            ..Volume::default()
        },
        VolumeMount { name: "scratch".to_string(), mount_path: "/tmp".to_string(), ..VolumeMount::default() },
    )
}

/// Several GPUs mean one process each talking over NCCL, whose shared-memory segments outgrow
/// the container runtime's 64 MiB `/dev/shm`: a memory-backed `emptyDir` of 1 GiB per GPU
/// (counted against the pod's memory) replaces it. One GPU: nothing to add.
pub(crate) fn add_shared_memory(staged: &mut view::Staged, gpus: u32) {
    if gpus < 2 {
        return;
    }
    staged.volumes.push(Volume {
        name: "dshm".to_string(),
        empty_dir: Some(k8s_openapi::api::core::v1::EmptyDirVolumeSource {
            medium: Some("Memory".to_string()),
            size_limit: Some(Quantity(format!("{gpus}Gi"))),
        }),
        ..Volume::default()
    });
    staged.mounts.push(VolumeMount {
        name: "dshm".to_string(),
        mount_path: "/dev/shm".to_string(),
        ..VolumeMount::default()
    });
}

/// The container environment: the contract's variables, then the executor's own (`HOME`).
pub(crate) fn env(contract: Vec<(String, String)>) -> Vec<k8s_openapi::api::core::v1::EnvVar> {
    contract
        .into_iter()
        .chain([("HOME".to_string(), "/tmp".to_string())])
        .map(|(name, value)| k8s_openapi::api::core::v1::EnvVar { name, value: Some(value), ..Default::default() })
        .collect()
}

/// Hours as whole seconds for `activeDeadlineSeconds`, at least one.
pub(crate) fn deadline_seconds(hours: f64) -> i64 {
    ((hours * 3600.0).ceil() as i64).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn child_names_fit_and_stay_distinct() {
        let name = child_name(&["task", "miner-a"]);
        assert!(name.starts_with("task-miner-a-") && name.len() == "task-miner-a-".len() + 8, "{name}");
        let long_a = child_name(&[&"t".repeat(50), "miner-aaaaaaaaaaaaaaa"]);
        let long_b = child_name(&[&"t".repeat(50), "miner-aaaaaaaaaaaaaab"]);
        assert!(long_a.len() <= 63 && long_b.len() <= 63);
        assert_ne!(long_a, long_b);
    }

    /// Issue 10: task `t-a` with miner `1` and task `t` with miner `a-1` got the same objects.
    #[test]
    fn names_of_different_tasks_and_miners_never_collide() {
        use crate::tournament::{WorkKind, WorkloadId};
        for kind in [WorkKind::Train, WorkKind::Seal, WorkKind::Evaluate] {
            let first = WorkloadId::new(kind, "1", 1);
            let second = WorkloadId::new(kind, "a-1", 1);
            assert_ne!(workload_name("t-a", &first), workload_name("t", &second), "{kind:?}");
        }
        assert_ne!(child_name(&["t-a", "1"]), child_name(&["t", "a-1"]));
        assert_ne!(prepare::job_name("t-prepare", 1), evaluator::job_name("t", "prepare", 1));
    }

    #[test]
    fn quantities_scale_per_gpu() {
        assert_eq!(multiply("8", 4), "32");
        assert_eq!(multiply("64Gi", 2), "128Gi");
        assert_eq!(multiply("500m", 3), "1500m");
        assert_eq!(multiply("1.5", 2), "1.5");
    }
}

#[cfg(test)]
mod fixture_tests;
