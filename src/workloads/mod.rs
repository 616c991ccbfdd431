//! Pure builders of the Kubernetes objects a tournament runs as: the dataset-preparation Job,
//! one trainer Job per submission, one evaluation Job per evaluated submission, and the
//! NetworkPolicy that isolates evaluation pods. No I/O: each takes a custom resource and the
//! installation's [`WorkloadConfig`] and returns the object to server-side apply.

pub mod config;
pub mod evaluator;
pub mod gpus;
pub mod network_policy;
pub mod prepare;
pub mod trainer;

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Capabilities, PodSecurityContext, ResourceRequirements, SeccompProfile, SecurityContext, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::Resource;
use sha2::{Digest, Sha256};

pub use config::{ArtifactStore, GpuClass, WorkloadConfig};

/// File of a prepared GRPO dataset that holds the reward functions.
pub const REWARD_FUNCTIONS_FILE: &str = "reward_functions.json";

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
    pub const KUEUE_QUEUE: &str = "kueue.x-k8s.io/queue-name";

    pub const ROLE_PREPARE: &str = "prepare";
    pub const ROLE_TRAINER: &str = "trainer";
    pub const ROLE_EVALUATOR: &str = "evaluator";
    pub const ROLE_SEAL: &str = "seal";
}

/// Why a workload cannot be built from an object. These are problems of the object or of the
/// configuration, not of the cluster: retrying does not help until one of them changes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BuildError {
    #[error("{kind} has no {field} yet (not created by the API server?)")]
    MissingMetadata { kind: &'static str, field: &'static str },
    #[error("GPU class {0:?} is not configured (known: {1})")]
    UnknownGpuClass(String, String),
}

impl BuildError {
    pub fn category(&self) -> &'static str {
        match self {
            BuildError::MissingMetadata { .. } => "MissingMetadata",
            BuildError::UnknownGpuClass(..) => "UnknownGpuClass",
        }
    }
}

/// A DNS-1123 name of at most 63 characters from parts: joined with `-`, and when too long,
/// cut and suffixed with a hash of the whole so that different inputs stay different.
pub fn child_name(parts: &[&str]) -> String {
    let joined = parts.join("-").to_lowercase();
    if joined.len() <= 63 {
        return joined;
    }
    let digest = Sha256::digest(joined.as_bytes());
    let suffix: String = digest.iter().take(4).map(|b| format!("{b:02x}")).collect();
    let head = joined[..54].trim_end_matches('-');
    format!("{head}-{suffix}")
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

/// Label values are at most 63 characters; names of our objects already are.
pub fn label_value(value: &str) -> String {
    if value.len() <= 63 { value.to_string() } else { child_name(&[value]) }
}

/// The restricted Pod Security Standard: non-root, RuntimeDefault seccomp.
/// The pod every workload runs in: never restarted in place, no service-account token, no
/// service links, the restricted security profile. Defined once so no builder can drop one.
pub(crate) fn locked_down_pod(
    node_selector: Option<BTreeMap<String, String>>,
    tolerations: Option<Vec<k8s_openapi::api::core::v1::Toleration>>,
    container: k8s_openapi::api::core::v1::Container,
    volumes: Vec<Volume>,
) -> k8s_openapi::api::core::v1::PodSpec {
    k8s_openapi::api::core::v1::PodSpec {
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

/// The artifact volume and its mount when artifacts live on a claim.
pub(crate) fn artifact_volume(config: &WorkloadConfig, read_only: bool) -> Option<(Volume, VolumeMount)> {
    match config.artifact_store() {
        ArtifactStore::Claim(claim) => Some((
            Volume {
                name: "artifacts".to_string(),
                persistent_volume_claim: Some(k8s_openapi::api::core::v1::PersistentVolumeClaimVolumeSource {
                    claim_name: claim,
                    read_only: Some(read_only),
                }),
                ..Volume::default()
            },
            VolumeMount {
                name: "artifacts".to_string(),
                mount_path: config::ARTIFACTS_MOUNT.to_string(),
                read_only: Some(read_only),
                ..VolumeMount::default()
            },
        )),
        ArtifactStore::Prefix(_) => None,
    }
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

pub(crate) fn env(pairs: &[(&str, String)]) -> Vec<k8s_openapi::api::core::v1::EnvVar> {
    pairs
        .iter()
        .map(|(name, value)| k8s_openapi::api::core::v1::EnvVar {
            name: name.to_string(),
            value: Some(value.clone()),
            ..Default::default()
        })
        .collect()
}

/// The task type as the trainer image's CLI spells it (`trainer-image/.../contract.py`).
pub fn cli_task_type(task_type: crate::mechanism::TaskType) -> &'static str {
    use crate::mechanism::TaskType;
    match task_type {
        TaskType::InstructText => "instruct",
        TaskType::Dpo => "dpo",
        TaskType::Grpo => "grpo",
        TaskType::Image => "image",
    }
}

/// One split of a prepared dataset: `train`, `test` or `synth`; JSONL for text, a folder of
/// images with captions for image tasks, whose synthetic set is the test set (as
/// `local::dataset::SplitPaths` lays them out).
pub fn split_path(data: &str, split: &str, task_type: crate::mechanism::TaskType) -> String {
    match (task_type.is_text(), split) {
        (true, _) => format!("{data}/{split}.jsonl"),
        (false, "synth") => format!("{data}/test"),
        (false, _) => format!("{data}/{split}"),
    }
}

/// The column mapping as the trainer CLI takes it (`noInputFormat` becomes `no_input_format`).
pub fn columns_arg(columns: &BTreeMap<String, String>) -> Option<String> {
    if columns.is_empty() {
        return None;
    }
    let map: serde_json::Map<String, serde_json::Value> = columns
        .iter()
        .map(|(k, v)| {
            let key = if k == "noInputFormat" { "no_input_format".to_string() } else { k.clone() };
            (key, serde_json::Value::String(v.clone()))
        })
        .collect();
    Some(serde_json::Value::Object(map).to_string())
}

/// Hours as whole seconds for `activeDeadlineSeconds`, at least one.
pub(crate) fn deadline_seconds(hours: f64) -> i64 {
    ((hours * 3600.0).ceil() as i64).max(1)
}

/// Numbers in arguments without a trailing `.0` noise and without exponent forms.
pub(crate) fn number_arg(value: f64) -> String {
    let text = format!("{value}");
    text.strip_suffix(".0").map(str::to_string).unwrap_or(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn child_names_fit_and_stay_distinct() {
        assert_eq!(child_name(&["task", "miner-a"]), "task-miner-a");
        let long_a = child_name(&[&"t".repeat(50), "miner-aaaaaaaaaaaaaaa"]);
        let long_b = child_name(&[&"t".repeat(50), "miner-aaaaaaaaaaaaaab"]);
        assert!(long_a.len() <= 63 && long_b.len() <= 63);
        assert_ne!(long_a, long_b);
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
