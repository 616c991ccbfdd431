//! A validator's source of synthetic tasks (white paper §3.2): a catalogue of base models and
//! datasets, the task-type mix, and how many synthetic Tasks to keep in flight. The same
//! document is read by `gradients synthesize`, so a local draw is the operator's draw.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::task::{InlineMiner, RewardFunction};
use crate::mechanism::TaskType;

/// Keeps `inFlight` synthetic Tasks running, drawn from the catalogue by the mix, and pauses
/// while organic Tasks wait for miners or GPUs (organic work has priority).
#[derive(CustomResource, Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "gradients.io",
    version = "v1alpha1",
    kind = "TaskSource",
    namespaced,
    status = "TaskSourceStatus",
    shortname = "tsrc",
    category = "gradients",
    doc = "A source of synthetic tasks: a catalogue of models and datasets, a type mix, a number to keep in flight.",
    printcolumn(name = "Wanted", type_ = "integer", json_path = ".spec.inFlight"),
    printcolumn(name = "InFlight", type_ = "integer", json_path = ".status.inFlight"),
    printcolumn(name = "Created", type_ = "integer", json_path = ".status.created"),
    printcolumn(name = "Paused", type_ = "boolean", json_path = ".status.paused"),
    printcolumn(name = "Last", type_ = "string", json_path = ".status.lastCreated.name"),
    printcolumn(name = "Message", type_ = "string", json_path = ".status.message", priority = 1),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    validation = Rule::new("self.metadata.name.size() <= 50")
        .message("metadata.name must be at most 50 characters: it names the synthetic Tasks (NAME-INDEX)"),
    validation = Rule::new("self.spec.catalog.models.all(m, m.paramsB > 0.0)")
        .message("spec.catalog.models[].paramsB must be greater than 0")
        .field_path(".spec.catalog.models"),
    validation = Rule::new("self.spec.catalog.datasets.all(d, d.taskType != 'Grpo' || (has(d.rewardFunctions) && size(d.rewardFunctions) > 0))")
        .message("spec.catalog.datasets[].rewardFunctions must list at least one reward function for a Grpo dataset")
        .field_path(".spec.catalog.datasets"),
    validation = Rule::new("self.spec.catalog.datasets.all(d, d.taskType == 'Grpo' || !has(d.rewardFunctions) || size(d.rewardFunctions) == 0)")
        .message("spec.catalog.datasets[].rewardFunctions is only allowed for a Grpo dataset")
        .field_path(".spec.catalog.datasets"),
    validation = Rule::new("!has(self.spec.mix) || self.spec.mix.instruct + self.spec.mix.dpo + self.spec.mix.grpo + self.spec.mix.image > 0.0")
        .message("spec.mix must give at least one task type a weight above 0")
        .field_path(".spec.mix"),
    validation = Rule::new("!has(self.spec.taskTemplate) || !has(self.spec.taskTemplate.miners) || self.spec.taskTemplate.miners.all(m, !has(m.command))")
        .message("spec.taskTemplate.miners[].command runs a program on the local machine and is for `gradients run` only")
        .field_path(".spec.taskTemplate.miners"),
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TaskSourceSpec {
    /// Synthetic Tasks of this source to keep running (not Succeeded or Failed). 0 stops creating.
    #[schemars(range(max = 100))]
    pub in_flight: u32,
    /// Seed of every draw: draw `i` of a source depends only on (seed, i) and the catalogue, so
    /// `gradients synthesize FILE --seed S --index i` prints the Task the operator creates.
    pub seed: u64,
    /// Relative frequency of each task type; defaults to the mechanism's (instruct 0.25,
    /// image 0.25, DPO 0.15, GRPO 0.35). Types the catalogue cannot serve are left out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mix: Option<TypeMix>,
    pub catalog: Catalog,
    /// Fields copied into every synthetic Task: who competes and where.
    #[serde(default)]
    pub task_template: TaskTemplate,
    /// Create nothing while an organic Task in this namespace waits for miners (phase Delayed)
    /// or for GPUs (training with a trainer not yet running). Default true.
    #[serde(default = "default_true")]
    pub pause_while_organic_waiting: bool,
}

fn default_true() -> bool {
    true
}

/// What a synthetic task may be made of.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Catalog {
    /// The base models drawn from: each serves the task types it lists.
    #[schemars(length(min = 1, max = 64))]
    pub models: Vec<CatalogModel>,
    /// The datasets drawn from: each of exactly one task type.
    #[schemars(length(min = 1, max = 256))]
    pub datasets: Vec<CatalogDataset>,
}

/// A base model and the task types it can be fine-tuned for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CatalogModel {
    /// Where the checkpoint is (as `spec.baseModel.uri` of a Task).
    #[schemars(length(min = 1, max = 2048))]
    pub uri: String,
    /// Size in billions of parameters.
    pub params_b: f64,
    /// The task types it serves: a model is drawn only for these.
    #[schemars(length(min = 1, max = 4))]
    pub task_types: Vec<TaskType>,
}

/// A dataset of one task type, with its size (which sets the hours).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CatalogDataset {
    /// Where the data is (as `spec.dataset.uri` of a Task).
    #[schemars(length(min = 1, max = 2048))]
    pub uri: String,
    /// The only task type this dataset is drawn for.
    pub task_type: TaskType,
    /// Column mapping, as `spec.dataset.columns` of a Task.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = 32))]
    pub columns: BTreeMap<String, String>,
    /// Number of rows (image-caption pairs for Image): the hours are allocated by it.
    #[schemars(range(min = 2))]
    pub rows: u64,
    /// An optional synthetic evaluation set, as `spec.dataset.syntheticUri` of a Task.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 2048))]
    pub synthetic_uri: Option<String>,
    /// Grpo datasets only (and required for them): the reward functions of its tasks.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    pub reward_functions: Vec<RewardFunction>,
}

/// Relative weights of the task types (they need not sum to 1).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TypeMix {
    /// Weight of InstructText tasks.
    #[schemars(range(min = 0.0))]
    pub instruct: f64,
    /// Weight of Dpo tasks.
    #[schemars(range(min = 0.0))]
    pub dpo: f64,
    /// Weight of Grpo tasks.
    #[schemars(range(min = 0.0))]
    pub grpo: f64,
    /// Weight of Image tasks.
    #[schemars(range(min = 0.0))]
    pub image: f64,
}

/// The competition fields of a Task, the same for every synthetic Task of a source.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TaskTemplate {
    /// As `spec.minersPerTask` of a Task (default: the paper's range for the type).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub miners_per_task: Option<u32>,
    /// As `spec.minerSelector` of a Task: which `Miner` objects compete.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("maxProperties" = 16))]
    pub miner_selector: Option<BTreeMap<String, String>>,
    /// As `spec.miners` of a Task: inline miners (what `gradients run` uses).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub miners: Vec<InlineMiner>,
    /// As `spec.gpuClass` of a Task.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 63))]
    pub gpu_class: Option<String>,
    /// As `spec.baseline` of a Task.
    #[serde(default = "default_true")]
    pub baseline: bool,
    /// As `spec.evaluateBase` of a Task.
    #[serde(default = "default_true")]
    pub evaluate_base: bool,
}

impl Default for TaskTemplate {
    fn default() -> Self {
        TaskTemplate {
            miners_per_task: None,
            miner_selector: None,
            miners: Vec::new(),
            gpu_class: None,
            baseline: true,
            evaluate_base: true,
        }
    }
}

/// What the controller observed and did. Counts are over this source's Tasks that still exist.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TaskSourceStatus {
    /// The `metadata.generation` this status was computed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `CatalogValid` and `Paused`, one entry per type.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// Synthetic Tasks of this source that are neither Succeeded nor Failed.
    #[serde(default)]
    pub in_flight: u32,
    /// Synthetic Tasks of this source that exist.
    #[serde(default)]
    pub created: u32,
    /// The draw index of the next Task (its name is `NAME-INDEX`); it only grows.
    #[serde(default)]
    pub next_index: u64,
    /// True while nothing is created because organic Tasks wait; `message` says which.
    #[serde(default)]
    pub paused: bool,
    /// One line for humans: why paused, or what is wrong with the catalogue.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    /// Per task type: the configured share of the mix and what this source's Tasks hold.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 4))]
    pub types: Vec<TypeCount>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_created: Option<LastCreated>,
}

/// One task type's count against the mix.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TypeCount {
    /// The task type.
    pub task_type: String,
    /// Its share of draws: the mix weight over the weights of the types the catalogue serves
    /// (0 when the catalogue has no model or no dataset for it).
    pub share: f64,
    /// This source's Tasks of the type that exist, and the share of them it is.
    pub created: u32,
    /// The share of this source's existing Tasks that are of the type.
    pub created_share: f64,
    /// This source's Tasks of the type that are neither Succeeded nor Failed.
    pub in_flight: u32,
}

/// The Task created last.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LastCreated {
    /// The Task's name (`SOURCE-INDEX`).
    pub name: String,
    /// Its draw index.
    pub index: u64,
    /// Its task type.
    pub task_type: String,
    /// When it was created.
    pub at: DateTime<Utc>,
}
