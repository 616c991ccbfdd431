//! What the workload builders need from the installation: images, GPU classes, artifact
//! storage, queues. Read from the operator's config file (the chart renders it from values).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Toleration;
use k8s_openapi::api::networking::v1::NetworkPolicyEgressRule;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WorkloadConfig {
    /// Image of this operator: it runs the dataset-preparation command.
    pub operator_image: String,
    /// The project's reference trainer, for miners that bring no image.
    pub trainer_image: String,
    /// The project's evaluator: the only code whose output is trusted.
    pub evaluator_image: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_pull_policy: Option<String>,
    /// GPU classes by name; a task picks one with `spec.gpuClass`.
    pub gpu_classes: BTreeMap<String, GpuClass>,
    /// The class used when a task names none.
    pub default_gpu_class: String,
    /// Where data and models live: `pvc://CLAIM` (mounted at /artifacts) or `s3://bucket/prefix`
    /// (each workload gets presigned URLs for exactly its objects: `crate::storage`).
    pub artifacts: String,
    /// How to reach `s3://` artifacts (endpoint, region); required with them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object_store: Option<crate::storage::ObjectStore>,
    /// Kueue LocalQueue for trainer and evaluation Jobs (created suspended until admitted);
    /// without it Jobs are not queued.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kueue_queue: Option<String>,
    /// Scheduling of the CPU-only preparation Job.
    #[serde(default)]
    pub prepare: CpuPlacement,
    /// Limit for one evaluation Job.
    #[serde(default = "default_evaluation_hours")]
    pub evaluation_hours: f64,
    /// Where a Task's `dataset` and `baseModel` may be: URI or path prefixes (`/artifacts/datasets/`,
    /// `s3://corp-data/`). Nothing inside the tournaments' own area is ever allowed.
    #[serde(default = "default_allowed_sources")]
    pub allowed_sources: Vec<String>,
    /// Size caps of a sealed submission.
    #[serde(default)]
    pub seal: crate::seal::Limits,
    /// Start a trainer's code only once its pod's NetworkPolicy is in force: a first init
    /// container of the operator's image (`gradients await-isolation`) waits until the API
    /// server no longer answers the pod. For network plugins that program a new pod's rules a
    /// moment after it starts (kube-router); it fails the trainer where policies are not enforced.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub await_isolation: bool,
    /// Timeouts and retries of the shared lifecycle (`tournament::LifecycleConfig`). A Job
    /// waiting in its Kueue queue has no pending timeout; it counts from admission.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lifecycle: Option<crate::tournament::LifecycleConfig>,
}

fn default_evaluation_hours() -> f64 {
    4.0
}

fn default_allowed_sources() -> Vec<String> {
    vec![format!("{ARTIFACTS_MOUNT}/datasets/"), format!("{ARTIFACTS_MOUNT}/models/")]
}

/// A kind of GPU node: how to land on it and what a pod may use per GPU.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GpuClass {
    #[serde(default)]
    pub node_selector: BTreeMap<String, String>,
    #[serde(default)]
    pub tolerations: Vec<Toleration>,
    /// Extended resource name of the GPU.
    #[serde(default = "default_gpu_resource")]
    pub resource: String,
    /// CPU and memory per GPU, as Kubernetes quantities.
    #[serde(default = "default_cpu_per_gpu")]
    pub cpu_per_gpu: String,
    #[serde(default = "default_memory_per_gpu")]
    pub memory_per_gpu: String,
    /// Where trainers on this class may connect (NetworkPolicy egress rules). None by default:
    /// a trainer reads its inputs from its volumes and needs no network.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub egress: Vec<NetworkPolicyEgressRule>,
    /// The RuntimeClass of this class's pods (trainers, evaluators, the synthetic-set
    /// generator), e.g. one whose handler is gVisor (`runsc`) or Kata: miners' code and files
    /// behind a kernel of their own. Preparation and seal run on `prepare`'s nodes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime_class_name: Option<String>,
}

fn default_gpu_resource() -> String {
    "nvidia.com/gpu".to_string()
}
fn default_cpu_per_gpu() -> String {
    "8".to_string()
}
fn default_memory_per_gpu() -> String {
    "64Gi".to_string()
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CpuPlacement {
    #[serde(default)]
    pub node_selector: BTreeMap<String, String>,
    #[serde(default)]
    pub tolerations: Vec<Toleration>,
    /// Where the preparation pods may connect (NetworkPolicy egress rules): the data source and
    /// DNS when datasets are remote. None by default.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub egress: Vec<NetworkPolicyEgressRule>,
    /// CPU and memory of the pod (requests equal limits), as Kubernetes quantities.
    #[serde(default = "default_prepare_cpu")]
    pub cpu: String,
    #[serde(default = "default_prepare_memory")]
    pub memory: String,
}

impl Default for CpuPlacement {
    fn default() -> Self {
        CpuPlacement {
            node_selector: BTreeMap::new(),
            tolerations: Vec::new(),
            egress: Vec::new(),
            cpu: default_prepare_cpu(),
            memory: default_prepare_memory(),
        }
    }
}

fn default_prepare_cpu() -> String {
    "2".to_string()
}
fn default_prepare_memory() -> String {
    "8Gi".to_string()
}

/// Where artifacts live, parsed from [`WorkloadConfig::artifacts`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ArtifactStore {
    /// A PersistentVolumeClaim mounted at [`ARTIFACTS_MOUNT`] in every workload.
    Claim(String),
    /// S3-compatible object storage: `s3://bucket/prefix` (the prefix may be empty).
    S3 { bucket: String, prefix: String },
    /// Any other URI prefix, passed through to the workloads.
    Prefix(String),
}

pub const ARTIFACTS_MOUNT: &str = "/artifacts";
/// Below the store: everything the tournaments write (`tournaments/NS/TASK/...`).
pub const TOURNAMENTS_DIR: &str = "tournaments";

impl ArtifactStore {
    pub fn parse(text: &str) -> ArtifactStore {
        if let Some(claim) = text.strip_prefix("pvc://") {
            return ArtifactStore::Claim(claim.trim_end_matches('/').to_string());
        }
        match crate::storage::S3Uri::parse(text) {
            Ok(at) => ArtifactStore::S3 { bucket: at.bucket, prefix: at.key },
            Err(_) => ArtifactStore::Prefix(text.trim_end_matches('/').to_string()),
        }
    }

    /// Where a path below the store is, as the operator names it: a file path on the claim
    /// (`/artifacts/...`), or a URI below the prefix.
    pub fn uri(&self, path: &str) -> String {
        match self {
            ArtifactStore::Claim(_) => format!("{ARTIFACTS_MOUNT}/{path}"),
            ArtifactStore::S3 { bucket, prefix } if prefix.is_empty() => format!("s3://{bucket}/{path}"),
            ArtifactStore::S3 { bucket, prefix } => format!("s3://{bucket}/{prefix}/{path}"),
            ArtifactStore::Prefix(prefix) => format!("{prefix}/{path}"),
        }
    }

    /// The path inside the claim of a location on it (`/artifacts/a/b` or `pvc://CLAIM/a/b`
    /// → `a/b`), for a `subPath` mount. `None` for a location elsewhere, and for one with empty,
    /// `.` or `..` segments (which could step out of the place it names).
    pub fn claim_path(&self, uri: &str) -> Option<String> {
        let ArtifactStore::Claim(claim) = self else { return None };
        let rest = uri
            .strip_prefix(&format!("{ARTIFACTS_MOUNT}/"))
            .or_else(|| uri.strip_prefix(&format!("pvc://{claim}/")))?
            .trim_end_matches('/');
        let clean = !rest.is_empty() && rest.split('/').all(|s| !s.is_empty() && s != "." && s != "..");
        clean.then(|| rest.to_string())
    }
}

/// A Task names a dataset or base model the operator's configuration does not allow.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field} {uri:?} is not an allowed location (allowed: {allowed}; the tournaments' own area never is)")]
pub struct SourceNotAllowed {
    pub field: &'static str,
    pub uri: String,
    pub allowed: String,
}

impl WorkloadConfig {
    /// The GPU class a task names, or the default one.
    pub fn gpu_class(&self, name: Option<&str>) -> Result<&GpuClass, super::BuildError> {
        let name = name.unwrap_or(&self.default_gpu_class);
        self.gpu_classes.get(name).ok_or_else(|| {
            super::BuildError::UnknownGpuClass(
                name.to_string(),
                self.gpu_classes.keys().cloned().collect::<Vec<_>>().join(", "),
            )
        })
    }

    pub fn artifact_store(&self) -> ArtifactStore {
        ArtifactStore::parse(&self.artifacts)
    }

    /// Where a task's prepared data goes (`training/` and `heldout/` below it).
    pub fn data_uri(&self, namespace: &str, task: &str) -> String {
        self.artifact_store().uri(&format!("{TOURNAMENTS_DIR}/{namespace}/{task}/data"))
    }

    /// Where one training attempt writes its output (the model in `model/` below it).
    pub fn model_uri(&self, namespace: &str, task: &str, training: &str) -> String {
        self.artifact_store().uri(&format!("{TOURNAMENTS_DIR}/{namespace}/{task}/models/{training}"))
    }

    /// Where the sealed copy of one training attempt's model goes.
    pub fn sealed_uri(&self, namespace: &str, task: &str, training: &str) -> String {
        self.artifact_store().uri(&format!("{TOURNAMENTS_DIR}/{namespace}/{task}/sealed/{training}"))
    }

    /// Checks that a Task's dataset and base model are where the configuration allows.
    pub fn check_sources(&self, spec: &crate::api::task::TaskSpec) -> Result<(), SourceNotAllowed> {
        let mut sources = vec![("spec.dataset.uri", &spec.dataset.uri), ("spec.baseModel.uri", &spec.base_model.uri)];
        if let Some(synthetic) = &spec.dataset.synthetic_uri {
            sources.push(("spec.dataset.syntheticUri", synthetic));
        }
        if let Some(generator) = &spec.dataset.generator {
            sources.push(("spec.dataset.generator.modelUri", &generator.model_uri));
            if let Some(weaker) = &generator.weaker_model_uri {
                sources.push(("spec.dataset.generator.weakerModelUri", weaker));
            }
        }
        for (field, uri) in sources {
            if !self.source_allowed(uri) {
                let allowed =
                    if self.allowed_sources.is_empty() { "none".into() } else { self.allowed_sources.join(", ") };
                return Err(SourceNotAllowed { field, uri: uri.clone(), allowed });
            }
        }
        Ok(())
    }

    pub(crate) fn source_allowed(&self, uri: &str) -> bool {
        let store = self.artifact_store();
        let on_claim = store.claim_path(uri);
        // Anything the tournaments write (held-out splits, rivals' models) is off limits, and a
        // path on the claim must be one `claim_path` accepts (no `..` stepping out of a prefix).
        let inside_tournaments =
            |path: &str| path == TOURNAMENTS_DIR || path.starts_with(&format!("{TOURNAMENTS_DIR}/"));
        let tournaments_uri = store.uri(TOURNAMENTS_DIR);
        if on_claim.as_deref().is_some_and(inside_tournaments)
            || uri.starts_with(&tournaments_uri)
            || uri.split('/').any(|s| s == "..")
            || (uri.starts_with(&format!("{ARTIFACTS_MOUNT}/"))
                && on_claim.is_none()
                && matches!(store, ArtifactStore::Claim(_)))
        {
            return false;
        }
        self.allowed_sources.iter().any(|prefix| !prefix.is_empty() && uri.starts_with(prefix.as_str()))
    }
}
