//! The isolated evaluation of one task's submissions, and the record the leaderboard reads.

use chrono::{DateTime, Utc};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::api::task::Origin;
use crate::mechanism::TaskType;

/// Created by the Task controller once every trainer has finished. One evaluation Job runs per
/// submission; the results are read only from each evaluator container's termination message.
/// A complete Evaluation is the task's record for the leaderboard, kept for the longest window.
#[derive(CustomResource, Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "gradients.io",
    version = "v1alpha1",
    kind = "Evaluation",
    namespaced,
    status = "EvaluationStatus",
    shortname = "geval",
    category = "gradients",
    doc = "Isolated evaluation of a task's submissions, their statuses and scores.",
    printcolumn(name = "Task", type_ = "string", json_path = ".spec.task"),
    printcolumn(name = "Type", type_ = "string", json_path = ".spec.taskType"),
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(name = "Evaluated", type_ = "integer", json_path = ".status.evaluated"),
    printcolumn(name = "Ranked", type_ = "integer", json_path = ".status.ranked"),
    printcolumn(name = "Winner", type_ = "string", json_path = ".status.winner"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    validation = Rule::new("self.spec == oldSelf.spec").message("spec is immutable: the Task controller owns it").field_path(".spec"),
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EvaluationSpec {
    /// Name of the Task evaluated.
    pub task: String,
    /// The task type, which selects the losses measured.
    pub task_type: TaskType,
    /// `Organic` (a user's task) or `Synthetic` (a TaskSource's).
    pub origin: Origin,
    /// The base model every submission was fine-tuned from.
    pub base_model_uri: String,
    /// The base model's size in billions of parameters (the task weight depends on it).
    pub base_model_params_b: f64,
    /// Hours the miners were given (the task weight depends on it).
    pub hours: f64,
    /// Where the prepared test and synthetic sets are.
    pub data_uri: String,
    /// GPU class the evaluation Jobs run on.
    pub gpu_class: String,
    /// The submissions whose trainer succeeded, in miner order.
    #[schemars(length(max = 64))]
    pub submissions: Vec<EvaluatedSubmission>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EvaluatedSubmission {
    /// The miner who trained it.
    pub miner: String,
    /// Name of the `MinerSubmission`.
    pub submission: String,
    /// Where its trainer wrote the model (the evaluator reads the sealed copy).
    pub artifact_uri: String,
    /// When the trainer finished; the earlier of two duplicates keeps its score.
    pub submitted_at: DateTime<Utc>,
    /// Successive halving (`spec.halving`): the last rung the miner trained in; a later rung
    /// ranks above an earlier one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rung: Option<u32>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum EvaluationPhase {
    #[default]
    Pending,
    /// Evaluation Jobs are running.
    Running,
    /// Every submission has a result and the task is scored.
    Complete,
}

/// Where one submission's evaluation is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum ResultState {
    #[default]
    Running,
    /// The evaluator exited 0 with a well-formed message.
    Evaluated,
    /// The evaluator failed, or its message was missing or malformed.
    Failed,
}

/// The results as they come in, and the task's scores once complete.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EvaluationStatus {
    /// `Pending`, `Running` (evaluation Jobs run) or `Complete` (every result in, the task scored).
    #[serde(default)]
    pub phase: EvaluationPhase,
    /// The `metadata.generation` this status was computed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Evaluated`, one entry per type.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// One entry per submission, keyed by miner.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64), extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["miner"]))]
    pub results: Vec<SubmissionResult>,
    /// Results that are in (evaluated or failed).
    #[serde(default)]
    pub evaluated: u32,
    /// Results that were ranked (valid, not duplicates, not flagged).
    #[serde(default)]
    pub ranked: u32,
    /// The miner ranked first; absent when no result was valid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub winner: Option<String>,
    /// `max(1, 2·√(hours·B))`, fixed when scored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_weight: Option<f64>,
    /// When the last result came in: the record's `finished_at`, and the start of its expiry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<DateTime<Utc>>,
}

/// What the evaluator reported for one submission and how the mechanism scored it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SubmissionResult {
    /// The miner whose submission this is.
    pub miner: String,
    pub state: ResultState,
    /// The evaluator's loss on the held-out test split (text tasks); lower is better.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test_loss: Option<f64>,
    /// The evaluator's loss on the synthetic split (text tasks); lower is better.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub synth_loss: Option<f64>,
    /// Image tasks: the denoising loss with the caption as guidance; lower is better.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text_guided_loss: Option<f64>,
    /// Image tasks: the denoising loss without the caption; lower is better.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub no_text_loss: Option<f64>,
    /// SHA-256 over the model's weights as the evaluator read them; equal digests are duplicates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weights_sha256: Option<String>,
    /// The tree digest of the sealed model the evaluator read (and verified).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_digest: Option<String>,
    /// Names of the checks the evaluator ran that failed, or why the result was rejected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<String>,
    /// `ranked`, `failed`, `duplicate` or `flagged`, once the task is scored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// The earlier submission (miner) whose weights this one copies; a duplicate is not ranked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duplicate_of: Option<String>,
    /// The loss the ranking uses: test and synthetic (or the two image) losses weighted by the mechanism.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weighted_loss: Option<f64>,
    /// Its place among the ranked results (1 is the best, lowest weighted loss).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rank: Option<u32>,
    /// The score of its rank (the paper's rank scores; failures get the penalty).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub score: Option<f64>,
    /// `score` times the task weight: what the leaderboard windows sum.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adjusted_score: Option<f64>,
}
