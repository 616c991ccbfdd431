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
    /// The task type (`InstructText`, `Dpo`, `Grpo`, `Image`), which selects the trainer's method.
    pub task_type: TaskType,
    /// The base model the miner fine-tunes (mounted read-only).
    pub base_model_uri: String,
    /// The base model's size in billions of parameters (the GPU count derives from it).
    pub base_model_params_b: f64,
    /// Where the prepared training data is.
    pub data_uri: String,
    /// The task's column mapping, passed to the trainer as it is.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = 32))]
    pub columns: BTreeMap<String, String>,
    /// Where the trainer writes the model.
    pub artifact_uri: String,
    /// Hours the trainer gets from its own start (the Job's activeDeadlineSeconds).
    pub hours: f64,
    /// GPUs of the trainer pod, from the model size and task type.
    pub gpus: u32,
    /// GPU class (a key of the operator's configured GPU classes).
    pub gpu_class: String,
    /// Trainer image; empty means the operator's reference trainer image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// The Miner's trainer command (its image's entrypoint when empty).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub command: Vec<String>,
    /// The reference trainer's strategy (`python -m gradients_trainer strategies` lists them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strategy: Option<String>,
    /// The Miner's extra trainer arguments: only `[--strategy-overrides, JSON]`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
    /// Seed passed to the trainer.
    pub seed: u64,
    /// Successive halving (`spec.halving`): the output of this miner's previous slice, which the
    /// trainer continues from (`--resume-from`), read-only; below the task's models.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resume_uri: Option<String>,
}

/// Where a submission's trainer is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema)]
pub enum SubmissionPhase {
    /// The trainer Job exists but no pod runs yet (waiting for GPUs, image pull).
    #[default]
    Pending,
    /// The trainer Job waits, suspended, for its Kueue queue to admit it; its hours have not
    /// started.
    Queued,
    Training,
    /// The trainer exited 0: the artifact is ready to evaluate.
    Succeeded,
    Failed,
}

impl SubmissionPhase {
    pub const ALL: [SubmissionPhase; 5] = [
        SubmissionPhase::Pending,
        SubmissionPhase::Queued,
        SubmissionPhase::Training,
        SubmissionPhase::Succeeded,
        SubmissionPhase::Failed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            SubmissionPhase::Pending => "Pending",
            SubmissionPhase::Queued => "Queued",
            SubmissionPhase::Training => "Training",
            SubmissionPhase::Succeeded => "Succeeded",
            SubmissionPhase::Failed => "Failed",
        }
    }

    pub fn is_terminal(self) -> bool {
        matches!(self, SubmissionPhase::Succeeded | SubmissionPhase::Failed)
    }
}

/// What became of the trainer: its phase, the Job, the seal and the training's summary.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MinerSubmissionStatus {
    /// `Pending` (waiting for GPUs), `Training`, `Succeeded` (a model to evaluate) or `Failed`.
    #[serde(default)]
    pub phase: SubmissionPhase,
    /// The `metadata.generation` this status was computed from.
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
    /// Recorded before the trainer Job is created, until its uid is: `sha256:` of a random
    /// token the Job carries, so a Job created just before a crash is adopted, not redone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_commitment: Option<String>,
    /// Copied from the Job's status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<DateTime<Utc>>,
    /// When the trainer Job completed or failed.
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
    /// The training's summary, recorded when its model is sealed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub training: Option<TrainerReport>,
}

/// A finished training in a few numbers. Steps, tokens and the final loss are the trainer's
/// own report (`training.json`, written by the miner's code: telemetry, never scored); wall
/// time and GPU-seconds are measured by the operator from the trainer Job's start and finish.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TrainerReport {
    /// Optimiser steps the trainer reports it took.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub steps: Option<u64>,
    /// Input tokens the trainer reports it saw (images seen, for image tasks).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens: Option<u64>,
    /// `tokens` over the trainer's own wall time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens_per_second: Option<f64>,
    /// Mean of the trainer's last logged training losses (not the evaluation's loss).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub final_train_loss: Option<f64>,
    /// Whether the trainer stopped because its time ran out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stopped_by_deadline: Option<bool>,
    /// Seconds from the trainer Job's start to its completion.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wall_seconds: Option<f64>,
    /// `wallSeconds` times the GPUs the trainer held.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu_seconds: Option<f64>,
}
