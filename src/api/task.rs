//! The spec of a tournament task. The same fields are read from a local task file by
//! `gradients run` and from the `Task` custom resource by the operator, so one file works in both.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::mechanism::TaskType;
use crate::mechanism::halving::Halving;

/// What to fine-tune, on what, for how long, and who competes.
///
/// As a custom resource (`kubectl get tasks`) the API server enforces the rules below; the
/// messages name the field so `kubectl apply` says what to fix.
#[derive(CustomResource, Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "gradients.io",
    version = "v1alpha1",
    kind = "Task",
    namespaced,
    status = "TaskStatus",
    shortname = "gtask",
    category = "gradients",
    doc = "A fine-tuning tournament: one trainer per selected miner, isolated evaluation, scores.",
    printcolumn(name = "Type", type_ = "string", json_path = ".spec.taskType"),
    printcolumn(name = "Model", type_ = "string", json_path = ".spec.baseModel.uri", priority = 1),
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(name = "Miners", type_ = "integer", json_path = ".status.minersSelected"),
    printcolumn(name = "Trained", type_ = "integer", json_path = ".status.submissionsFinished"),
    printcolumn(name = "Winner", type_ = "string", json_path = ".status.result.winner"),
    printcolumn(name = "Message", type_ = "string", json_path = ".status.message", priority = 1),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    selectable = ".status.phase",
    validation = Rule::new("has(self.spec.hours) != has(self.spec.deadline)")
        .message("exactly one of spec.hours and spec.deadline must be set")
        .field_path(".spec"),
    validation = Rule::new("!has(self.spec.hours) || self.spec.hours > 0.0")
        .message("spec.hours must be greater than 0")
        .field_path(".spec.hours"),
    validation = Rule::new("self.spec.baseModel.paramsB > 0.0")
        .message("spec.baseModel.paramsB must be greater than 0")
        .field_path(".spec.baseModel.paramsB"),
    validation = Rule::new("!has(self.spec.minersPerTask) || self.spec.minersPerTask >= 1")
        .message("spec.minersPerTask must be at least 1")
        .field_path(".spec.minersPerTask"),
    validation = Rule::new("self.spec.taskType == 'Grpo' || !has(self.spec.rewardFunctions) || size(self.spec.rewardFunctions) == 0")
        .message("spec.rewardFunctions is only allowed when spec.taskType is Grpo")
        .field_path(".spec.rewardFunctions"),
    validation = Rule::new("self.spec.taskType != 'Grpo' || (has(self.spec.rewardFunctions) && size(self.spec.rewardFunctions) > 0)")
        .message("spec.rewardFunctions must list at least one reward function when spec.taskType is Grpo")
        .field_path(".spec.rewardFunctions"),
    validation = Rule::new("!has(self.spec.dataset.generator) || self.spec.taskType != 'Image'")
        .message("spec.dataset.generator writes text rows; image tasks keep held-out rows as their synthetic set")
        .field_path(".spec.dataset.generator"),
    validation = Rule::new("!has(self.spec.dataset.generator) || !has(self.spec.dataset.syntheticUri)")
        .message("spec.dataset.generator and spec.dataset.syntheticUri both give the synthetic set; set one")
        .field_path(".spec.dataset.generator"),
    validation = Rule::new("!has(self.spec.dataset.generator) || !has(self.spec.dataset.generator.weakerModelUri) || self.spec.taskType == 'Dpo'")
        .message("spec.dataset.generator.weakerModelUri writes rejected answers, which only Dpo rows have")
        .field_path(".spec.dataset.generator.weakerModelUri"),
    validation = Rule::new("!has(self.spec.halving) || self.spec.taskType != 'Image'")
        .message("spec.halving continues a miner from its own checkpoint, which image trainers cannot do yet; remove spec.halving")
        .field_path(".spec.halving"),
    validation = Rule::new("!has(self.spec.miners) || self.spec.miners.all(m, !has(m.command))")
        .message("spec.miners[].command runs a program on the local machine and is for `gradients run` only; in a cluster, give the miner its own image with a Miner object")
        .field_path(".spec.miners"),
    validation = Rule::new("!has(oldSelf.status) || !has(oldSelf.status.phase) || oldSelf.status.phase == 'Pending' || self.spec == oldSelf.spec")
        .message("spec is immutable once the task has started (status.phase is past Pending); create a new Task instead")
        .field_path(".spec"),
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TaskSpec {
    /// InstructText, Dpo, Grpo or Image.
    pub task_type: TaskType,
    pub base_model: BaseModel,
    pub dataset: DatasetSpec,
    /// Hours each miner may train. Exactly one of `hours` and `deadline` is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hours: Option<f64>,
    /// Wall-clock instant by which training must end (RFC3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadline: Option<DateTime<Utc>>,
    /// How many miners to draw from the pool. Defaults to the paper's range for the task type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub miners_per_task: Option<u32>,
    /// Miners defined inline: each runs the project's reference trainer with a named strategy.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub miners: Vec<InlineMiner>,
    /// Label selector over `Miner` objects (operator only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("maxProperties" = 16))]
    pub miner_selector: Option<BTreeMap<String, String>>,
    /// GPU class to run on, a key of the operator's configured GPU classes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 63))]
    pub gpu_class: Option<String>,
    /// Organic (a user's task) or Synthetic (a benchmark). Synthetic tasks never wait for miners.
    #[serde(default)]
    pub origin: Origin,
    /// GRPO only: reward functions as Python source with weights.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    pub reward_functions: Vec<RewardFunction>,
    /// Also train the `baseline` strategy (AutoTrain's defaults) as an unscored reference.
    #[serde(default = "default_true")]
    pub baseline: bool,
    /// Also evaluate the untrained base model as an unscored reference row.
    #[serde(default = "default_true")]
    pub evaluate_base: bool,
    /// Seed of the split, the time allocation and the miner draw.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    /// Successive halving across miners, an extension of the paper (off when absent): every
    /// miner trains a first slice of the allotment, the best 1/eta continue from their own
    /// checkpoint for the next, longer slice; the eliminated rank below the survivors.
    /// Text task types only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub halving: Option<Halving>,
}

fn default_true() -> bool {
    true
}

/// The model every miner starts from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BaseModel {
    /// Where the checkpoint is: a local path (relative to the task file) or `file://`, `pvc://`, `s3://` URI.
    #[schemars(length(min = 1, max = 2048))]
    pub uri: String,
    /// Size in billions of parameters; it sets the task weight and the GPU count.
    pub params_b: f64,
}

/// The data to fine-tune on and how its columns map onto the task type's fields.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DatasetSpec {
    /// JSONL file (text types) or folder/zip of images with `.txt` captions (Image).
    #[schemars(length(min = 1, max = 2048))]
    pub uri: String,
    /// Column mapping: instruct `instruction`, `input`, `output`, `system`, `format`,
    /// `noInputFormat`; DPO `prompt`, `chosen`, `rejected`, `system`; GRPO `prompt`, `extra`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = 32))]
    pub columns: BTreeMap<String, String>,
    /// An optional synthetic evaluation set (same format). Without it the split holds out
    /// rows that are in neither train nor test.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 2048))]
    pub synthetic_uri: Option<String>,
    /// Write the synthetic evaluation set with a generator model (white paper §3.3) instead of
    /// holding out rows. Text task types only; not together with `syntheticUri`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generator: Option<SyntheticGenerator>,
}

/// A generator model that writes new rows of the dataset's schema for the synthetic set. It
/// runs once per task, after the split, in the evaluator's (trusted) image: instruct rows get a
/// new instruction and the generator's answer, DPO rows the generator's answer as `chosen` and
/// the weaker model's (or a corrupted decode) as `rejected`, GRPO rows a new prompt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SyntheticGenerator {
    /// The generator checkpoint (Hugging Face layout, safetensors), where `baseModel.uri` may be.
    #[schemars(length(min = 1, max = 2048))]
    pub model_uri: String,
    /// DPO: the weaker model that writes the rejected answers; without it, a corrupted decode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 2048))]
    pub weaker_model_uri: Option<String>,
    /// Rows to write; default: the mechanism's synthetic share of the dataset (5 %, at most 500).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 100000))]
    pub rows: Option<u32>,
    /// Sampling temperature of the generator (the paper's "controlled temperature").
    #[serde(default = "default_generator_temperature")]
    #[schemars(range(min = 0.0, max = 2.0))]
    pub temperature: f64,
    /// Longest generated text per field, in tokens.
    #[serde(default = "default_generator_tokens")]
    #[schemars(range(min = 1, max = 4096))]
    pub max_new_tokens: u32,
}

fn default_generator_temperature() -> f64 {
    0.7
}

fn default_generator_tokens() -> u32 {
    256
}

/// A competitor defined in the task itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct InlineMiner {
    /// Miner id, as it appears on the leaderboard (a DNS label: it names Kubernetes objects).
    #[schemars(regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"), length(min = 1, max = 40))]
    pub name: String,
    /// Strategy of the reference trainer (`python -m gradients_trainer strategies` lists them).
    #[schemars(length(min = 1, max = 128))]
    pub strategy: String,
    /// Local runs only: a program (and its first arguments) to run instead of the reference
    /// trainer, for a miner that brings its own. It gets the trainer's arguments (`train …`)
    /// appended and `GRADIENTS_OUTPUT`, `GRADIENTS_TRAIN_DATA`, `GRADIENTS_BASE_MODEL` and
    /// `GRADIENTS_HOURS` in its environment, and must write `$GRADIENTS_OUTPUT/model/`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    pub command: Option<Vec<String>>,
}

/// Organic tasks come from users; synthetic ones are generated benchmarks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum Origin {
    #[default]
    Organic,
    Synthetic,
}

/// A GRPO reward function: Python source defining a function `(completions, **kwargs) -> list[float]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RewardFunction {
    /// The function's name in `source` (a Python identifier).
    #[schemars(length(min = 1, max = 128))]
    pub name: String,
    /// Python source defining the function; it runs sandboxed, never in the trainer's or evaluator's interpreter.
    #[schemars(length(max = 65536))]
    pub source: String,
    /// Its weight in the summed reward.
    pub weight: f64,
}

/// Where a task is in its lifecycle: the phases of the shared state machine, as the printer
/// column shows them.
pub use crate::tournament::Phase as TaskPhase;

/// What the operator has observed and decided about a task. Every field is derived from the
/// lifecycle state, which changes only when something happened, so re-reconciling writes the
/// same status.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TaskStatus {
    #[serde(default)]
    pub phase: TaskPhase,
    /// When the task entered its current phase (moves only with the phase).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase_started_at: Option<DateTime<Utc>>,
    /// One line for humans: what the task is doing or why it stopped.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    /// The `metadata.generation` this status was computed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Prepared`, `Staffed`, `Trained`, `Evaluated`, `Succeeded`, one entry per type.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// Miners drawn for this task, in the order they were drawn. Fixed once drawn.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub selected_miners: Vec<String>,
    /// How many miners were drawn (the length of `selectedMiners`).
    #[serde(default)]
    pub miners_selected: u32,
    /// Trainings that have ended (succeeded or failed), references included.
    #[serde(default)]
    pub submissions_finished: u32,
    /// Hours each training gets, after any extension for delays.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allocated_hours: Option<f64>,
    /// How many times the task waited for miners.
    #[serde(default)]
    pub delays: u32,
    /// When a task that waits for miners tries again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<TaskResult>,
    /// The shared lifecycle state machine's state (`src/tournament`): every entrant's training
    /// and evaluation with attempts and outcomes. Bounded by the number of entrants.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::api::preserved_object")]
    pub lifecycle: Option<crate::tournament::TaskState>,
    /// The uid of every object the operator created for this task, by `Kind/name`. Only these
    /// are the task's: an object of the same name that someone else made is never adopted.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub children: BTreeMap<String, String>,
    /// What is recorded before each create, by `Kind/name`, until the uid is in `children`:
    /// `sha256:` of a random token that the created object carries. After a crash between the
    /// create and the record, the object with that token is adopted, not redone.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub creating: BTreeMap<String, String>,
}

/// The outcome in a few numbers; the per-submission detail lives in the `Evaluation`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TaskResult {
    /// The first-ranked miner; absent when no submission was valid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub winner: Option<String>,
    /// The winner's weighted loss (test and synthetic losses weighted by the mechanism); lower is better.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub best_weighted_loss: Option<f64>,
    /// The winner's loss on the held-out test split.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub best_test_loss: Option<f64>,
    /// The winner's loss on the synthetic split.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub best_synth_loss: Option<f64>,
    /// Submissions that were ranked (valid, not duplicates, not flagged).
    pub ranked: u32,
    /// Submissions that failed (no model, refused seal, evaluator failure or malformed result).
    pub failed: u32,
    /// Name of the `Evaluation` that holds every result.
    pub evaluation: String,
}

impl Task {
    /// The seed of the split, the miner draw and the trainers: `spec.seed`, or one derived
    /// from the object's uid so that a re-created task draws afresh. A derived seed has 53
    /// bits: it is written into MinerSubmissions, and the API server refuses an integer
    /// above int64 (JSON readers round above 2^53).
    pub fn seed(&self) -> u64 {
        use sha2::{Digest, Sha256};
        self.spec.seed.unwrap_or_else(|| {
            let uid = self.metadata.uid.as_deref().unwrap_or_default();
            let digest = Sha256::digest(uid.as_bytes());
            u64::from_le_bytes(digest[..8].try_into().unwrap_or([0; 8])) >> 11
        })
    }

    pub fn phase(&self) -> TaskPhase {
        self.status.as_ref().map(|s| s.phase).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An organic Task without `spec.seed` once made a MinerSubmission the API server refused
    /// (`spec.seed` above int64) for about half of all uids.
    #[test]
    fn a_seed_derived_from_the_uid_fits_the_api_servers_integers() {
        let yaml = "taskType: Dpo\nbaseModel: {uri: /m, paramsB: 3}\ndataset: {uri: /d}\nhours: 1\n";
        let mut task = Task::new("t", serde_norway::from_str(yaml).unwrap());
        let seeds: Vec<u64> = (0..200)
            .map(|i| {
                task.metadata.uid = Some(format!("4a0c2f6e-{i:04}-4c1e-9d6b-0a7e5b2c9f11"));
                task.seed()
            })
            .collect();
        assert!(seeds.iter().all(|s| *s < 1 << 53), "{seeds:?}");
        assert!(seeds.iter().any(|s| *s >= 1 << 52), "still 53 bits of the digest");
        task.spec.seed = Some(7);
        assert_eq!(task.seed(), 7);
    }
}
