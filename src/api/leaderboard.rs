//! The aggregate over the 1/3/7-day windows: per-miner standings and the weights pushed to sinks.
//! Bounded by the number of miners, never by history: the history is the Evaluation objects.

use chrono::{DateTime, Utc};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

// The derive repeats `type_` across printcolumns, which clippy mistakes for duplicate attributes.
#[allow(clippy::duplicated_attributes)]
/// Recomputed from the complete Evaluations of its namespace whenever one changes.
#[derive(CustomResource, Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "gradients.io",
    version = "v1alpha1",
    kind = "Leaderboard",
    namespaced,
    status = "LeaderboardStatus",
    shortname = "glb",
    category = "gradients",
    doc = "Per-miner quality and weights over the 1/3/7-day windows of a namespace's evaluations.",
    printcolumn(name = "Miners", type_ = "integer", json_path = ".status.minerCount"),
    printcolumn(name = "Tasks", type_ = "integer", json_path = ".status.tasks"),
    printcolumn(name = "Leader", type_ = "string", json_path = ".status.leader"),
    printcolumn(name = "Pushed", type_ = "date", json_path = ".status.lastWeightPush.at"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LeaderboardSpec {
    /// Name of the ConfigMap (in this namespace) the weights are written to.
    #[serde(default = "default_weights_config_map")]
    pub weights_config_map: String,
}

fn default_weights_config_map() -> String {
    "gradients-weights".to_string()
}

/// The standings over the windows and the last weights pushed.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LeaderboardStatus {
    /// The `metadata.generation` this status was computed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Computed` and `WeightsPushed`, one entry per type.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// Evaluated tasks inside the longest window.
    #[serde(default)]
    pub tasks: u32,
    /// Miners with a standing (the length of `standings`).
    #[serde(default)]
    pub miner_count: u32,
    /// The miner with the highest weight.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leader: Option<String>,
    /// One entry per miner, sorted by miner.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 1024), extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["miner"]))]
    pub standings: Vec<Standing>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_weight_push: Option<WeightPush>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Standing {
    /// The miner's name.
    pub miner: String,
    /// The sum of the miner's adjusted scores over the 1/3/7-day windows, each window weighted (the paper's quality).
    pub quality: f64,
    /// The miner's share of the weights (0 to 1; all miners sum to 1), from quality by the mechanism's transform.
    pub weight: f64,
    /// The weight as the chain takes it: the largest weight maps to 65535.
    pub weight_u16: u16,
    /// Sum of adjusted scores in the 1, 3 and 7-day windows.
    #[schemars(length(max = 8))]
    pub window_sums: Vec<f64>,
    /// Tasks of the miner inside the longest window.
    pub tasks: u32,
    /// Mean task score over the last day, which miner selection reads.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub average_score_today: Option<f64>,
}

/// The last set of weights written to the sinks. Changes only when the weights do.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WeightPush {
    /// The instant the leaderboard was computed at (the `now` of `gradients score`).
    pub at: DateTime<Utc>,
    /// SHA-256 of the pushed `{"miner": weight_u16}` JSON.
    pub digest: String,
    /// Where they went, e.g. `configmap/gradients-weights`, `file:/var/lib/gradients/weights.json`.
    #[schemars(length(max = 8))]
    pub sinks: Vec<String>,
}
