//! The spec of a tournament task. The same fields are read from a local task file by
//! `gradients run` and from the `Task` custom resource by the operator, so one file works in both.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::mechanism::TaskType;

/// What to fine-tune, on what, for how long, and who competes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
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
    pub miners: Vec<InlineMiner>,
    /// Label selector over `Miner` objects (operator only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub miner_selector: Option<BTreeMap<String, String>>,
    /// GPU class to run on, a key of the operator's configured GPU classes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu_class: Option<String>,
    /// Organic (a user's task) or Synthetic (a benchmark). Synthetic tasks never wait for miners.
    #[serde(default)]
    pub origin: Origin,
    /// GRPO only: reward functions as Python source with weights.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reward_functions: Vec<RewardFunction>,
    /// Also train the `baseline` strategy (AutoTrain's defaults) as an unscored reference.
    #[serde(default = "default_true")]
    pub baseline: bool,
    /// Seed of the split, the time allocation and the miner draw.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
}

fn default_true() -> bool {
    true
}

/// The model every miner starts from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BaseModel {
    /// Where the checkpoint is: a local path (relative to the task file) or `file://`, `pvc://`, `s3://` URI.
    pub uri: String,
    /// Size in billions of parameters; it sets the task weight and the GPU count.
    pub params_b: f64,
}

/// The data to fine-tune on and how its columns map onto the task type's fields.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DatasetSpec {
    /// JSONL file (text types) or folder/zip of images with `.txt` captions (Image).
    pub uri: String,
    /// Column mapping: instruct `instruction`, `input`, `output`, `system`, `format`,
    /// `noInputFormat`; DPO `prompt`, `chosen`, `rejected`, `system`; GRPO `prompt`, `extra`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub columns: BTreeMap<String, String>,
    /// An optional synthetic evaluation set (same format). Without it the split holds out
    /// rows that are in neither train nor test.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub synthetic_uri: Option<String>,
}

/// A competitor defined in the task itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct InlineMiner {
    /// Miner id, as it appears on the leaderboard.
    pub name: String,
    /// Strategy of the reference trainer (`python -m gradients_trainer strategies` lists them).
    pub strategy: String,
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
    pub name: String,
    pub source: String,
    pub weight: f64,
}
