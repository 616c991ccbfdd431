//! One selected miner's entry in one task: its trainer workload and what became of it.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::mechanism::TaskType;

/// Created by the Task controller, one per selected miner; the spec says everything the
/// trainer Job needs, so the submission controller never reads the Task.
#[derive(CustomResource, Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "gradients.io",
    version = "v1alpha1",
    kind = "MinerSubmission",
    namespaced,
    status = "MinerSubmissionStatus",
    shortname = "msub",
    category = "gradients",
    doc = "One miner's trainer run for one task.",
    printcolumn(name = "Task", type_ = "string", json_path = ".spec.task"),
    printcolumn(name = "Miner", type_ = "string", json_path = ".spec.miner"),
    printcolumn(name = "GPUs", type_ = "integer", json_path = ".spec.gpus"),
    printcolumn(name = "Hours", type_ = "number", json_path = ".spec.hours"),
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(name = "Reason", type_ = "string", json_path = ".status.failureReason"),
    printcolumn(name = "Artifact", type_ = "string", json_path = ".spec.artifactUri", priority = 1),
    printcolumn(name = "Digest", type_ = "string", json_path = ".status.sealedDigest", priority = 1),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    selectable = ".spec.task",
    validation = Rule::new("self.spec == oldSelf.spec").message("spec is immutable: the Task controller owns it").field_path(".spec"),
    validation = Rule::new("self.spec.hours > 0.0").message("spec.hours must be greater than 0").field_path(".spec.hours"),
    validation = Rule::new("self.spec.gpus >= 1").message("spec.gpus must be at least 1").field_path(".spec.gpus"),
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MinerSubmissionSpec {
    /// Name of the owning Task.
    pub task: String,
    /// Name of the miner (a `Miner` object or an inline miner of the task).
    pub miner: String,
    pub task_type: TaskType,
    pub base_model_uri: String,
    pub base_model_params_b: f64,
    /// Where the prepared training data is.
    pub data_uri: String,
    /// The task's column mapping, passed to the trainer as it is.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = 32))]
    pub columns: BTreeMap<String, String>,
    /// Where the trainer writes the model.
    pub artifact_uri: String,
    pub hours: f64,
    pub gpus: u32,
    /// GPU class (a key of the operator's configured GPU classes).
    pub gpu_class: String,
    /// Trainer image; empty means the operator's reference trainer image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub command: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strategy: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
    /// Seed passed to the trainer.
    pub seed: u64,
}

/// Where a submission's trainer is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema)]
pub enum SubmissionPhase {
    /// The trainer Job exists but no pod runs yet (queued, or waiting for GPUs).
    #[default]
    Pending,
    Training,
    /// The trainer exited 0: the artifact is ready to evaluate.
    Succeeded,
    Failed,
}

impl SubmissionPhase {
    pub const ALL: [SubmissionPhase; 4] =
        [SubmissionPhase::Pending, SubmissionPhase::Training, SubmissionPhase::Succeeded, SubmissionPhase::Failed];

    pub fn as_str(self) -> &'static str {
        match self {
            SubmissionPhase::Pending => "Pending",
            SubmissionPhase::Training => "Training",
            SubmissionPhase::Succeeded => "Succeeded",
            SubmissionPhase::Failed => "Failed",
        }
    }

    pub fn is_terminal(self) -> bool {
        matches!(self, SubmissionPhase::Succeeded | SubmissionPhase::Failed)
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MinerSubmissionStatus {
    #[serde(default)]
    pub phase: SubmissionPhase,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Trained`, one entry per type.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// Name of the trainer Job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job: Option<String>,
    /// The uid of the trainer Job the operator created: only that Job is this submission's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_uid: Option<String>,
    /// Copied from the Job's status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<DateTime<Utc>>,
    /// Why the trainer failed (the Job's reason, e.g. DeadlineExceeded or BackoffLimitExceeded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_reason: Option<String>,
    /// The tree digest of the sealed model (`sha256:…`), which the evaluator verified against.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sealed_digest: Option<String>,
    /// Where the sealed copy is: written by the seal Job, read only by the evaluator.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sealed_uri: Option<String>,
}
