//! A competitor: who it is on the chain, and how its trainer runs.

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A miner competes in the tasks whose `minerSelector` matches its labels while it is enabled.
#[derive(CustomResource, Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "gradients.io",
    version = "v1alpha1",
    kind = "Miner",
    namespaced,
    status = "MinerStatus",
    shortname = "miner",
    category = "gradients",
    doc = "A competitor in fine-tuning tournaments: its identity and its trainer.",
    printcolumn(name = "Enabled", type_ = "boolean", json_path = ".spec.enabled"),
    printcolumn(name = "Strategy", type_ = "string", json_path = ".spec.strategy"),
    printcolumn(name = "Tasks", type_ = "integer", json_path = ".status.tasksInWindow"),
    printcolumn(name = "Quality", type_ = "number", json_path = ".status.quality"),
    printcolumn(name = "Weight", type_ = "number", json_path = ".status.weight"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    validation = Rule::new("has(self.spec.image) || has(self.spec.strategy)")
        .message("spec.image or spec.strategy must be set (a custom trainer image, or a strategy of the reference trainer)")
        .field_path(".spec"),
    validation = Rule::new("self.metadata.name.size() <= 40")
        .message("metadata.name must be at most 40 characters: it names the miner's workloads"),
    validation = Rule::new("!has(self.spec.args) || self.spec.args.all(a, !a.contains('$('))")
        .message("spec.args may not contain '$(': the kubelet would expand it into the operator's values")
        .field_path(".spec.args"),
    validation = Rule::new("!has(self.spec.command) || self.spec.command.all(a, !a.contains('$('))")
        .message("spec.command may not contain '$(': the kubelet would expand it into the operator's values")
        .field_path(".spec.command"),
    validation = Rule::new("!has(self.spec.args) || size(self.spec.args) == 0 || (size(self.spec.args) == 2 && self.spec.args[0] == '--strategy-overrides')")
        .message("spec.args may only be [--strategy-overrides, JSON]: the operator's arguments (data, output, time) cannot be overridden")
        .field_path(".spec.args"),
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MinerSpec {
    /// The miner's hotkey (SS58) on the chain, when weights go to a chain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hotkey: Option<String>,
    /// The miner's uid in the subnet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<u16>,
    /// Trainer image; defaults to the project's reference trainer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// Command of the trainer container; defaults to the reference trainer's `train` entry point.
    /// Bounded so the API server can price the CRD's rules (CEL cost budget).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32), inner(length(max = 4096)))]
    pub command: Vec<String>,
    /// Strategy of the reference trainer (`python -m gradients_trainer strategies` lists them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strategy: Option<String>,
    /// Extra arguments appended to the trainer's: only `[--strategy-overrides, JSON]` (typed
    /// strategy fields of the reference trainer). The operator's own arguments cannot be
    /// overridden, and `$(` (the kubelet's variable expansion) is refused.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 2), inner(length(max = 16384)))]
    pub args: Vec<String>,
    /// A disabled miner keeps its history but is not selected.
    #[serde(default = "enabled_by_default")]
    pub enabled: bool,
}

fn enabled_by_default() -> bool {
    true
}

/// Participation and quality, as the leaderboard computed them; selection reads them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MinerStatus {
    /// Evaluated tasks of this miner inside the longest leaderboard window.
    #[serde(default)]
    pub tasks_in_window: u32,
    /// Mean task score over the last day; absent when the miner has not competed today.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub average_score_today: Option<f64>,
    /// The miner's quality on the namespace's Leaderboard (windowed adjusted scores; `gradients score` recomputes it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quality: Option<f64>,
    /// The miner's share of the weights on the Leaderboard (all miners sum to 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight: Option<f64>,
}

/// The only option a Miner's `args` may carry: typed strategy fields, as JSON.
pub const STRATEGY_OVERRIDES: &str = "--strategy-overrides";

/// Why a Miner's `args` or `command` are refused (the CRD's rules, checked again by the builder).
pub fn check_miner_arguments(args: &[String], command: &[String]) -> Result<(), String> {
    if let Some(bad) = args.iter().chain(command).find(|a| a.contains("$(")) {
        return Err(format!("{bad:?} contains '$(': the kubelet would expand it into the operator's values"));
    }
    match args {
        [] => Ok(()),
        [option, _] if option == STRATEGY_OVERRIDES => Ok(()),
        _ => Err(format!(
            "{args:?}: only [{STRATEGY_OVERRIDES}, JSON] is allowed; the operator's arguments cannot be overridden"
        )),
    }
}
