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
    printcolumn(name = "Chain", type_ = "string", json_path = ".status.conditions[?(@.type==\"ChainSynced\")].reason"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LeaderboardSpec {
    /// Name of the ConfigMap (in this namespace) the weights are written to.
    #[serde(default = "default_weights_config_map")]
    pub weights_config_map: String,
    /// Where else the weights go (the ConfigMap always gets them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sinks: Option<Sinks>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Sinks {
    /// The Bittensor chain: the validator's `set_mechanism_weights`, signed with its hotkey.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chain: Option<ChainSink>,
}

/// Weights to a subnet, as `gradients weights push --endpoint` sends them: at most once per
/// rate-limit window (the chain's `LastUpdate` and `WeightsSetRateLimit` decide), and only
/// when the weights, the miners' hotkeys or this spec changed since the last accepted push.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ChainSink {
    /// A subtensor node's WebSocket endpoint, `ws://` or `wss://`.
    #[schemars(regex(pattern = r"^wss?://.+"), length(max = 2048))]
    pub endpoint: String,
    /// The subnet (not 0, the root network).
    #[schemars(range(min = 1))]
    pub netuid: u16,
    /// The subnet's mechanism (0 is the main one).
    #[serde(default)]
    pub mechanism_id: u8,
    /// The Secret (in this namespace) holding the validator's hotkey file, as a Bittensor
    /// wallet writes it (`wallets/<wallet>/hotkeys/<name>`, unencrypted).
    pub hotkey_secret_ref: SecretKeyRef,
    /// The call's version key; default: the chain's `WeightsVersionKey`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version_key: Option<u64>,
    #[serde(default)]
    pub mode: ChainMode,
    /// Set the same weights again once this many blocks have passed since the chain last took
    /// the validator's weights (its `LastUpdate`), for subnets that expect weights every epoch
    /// (e.g. the subnet's tempo + 1, 361 on most). Unset: unchanged weights are sent once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub repush_every_blocks: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SecretKeyRef {
    /// The Secret's name (the chart's `chainSink.hotkeySecrets` must list it).
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// The entry of the Secret's data holding the hotkey file.
    #[serde(default = "default_hotkey_key")]
    #[schemars(length(min = 1, max = 253))]
    pub key: String,
}

fn default_hotkey_key() -> String {
    "hotkey".to_string()
}

/// How weights reach the chain.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum ChainMode {
    /// `set` while the subnet's `CommitRevealWeightsEnabled` is false, `commit-reveal` otherwise.
    #[default]
    Auto,
    /// A plain `set_mechanism_weights` (refused where `CommitRevealWeightsEnabled` is true).
    Set,
    /// A drand-timelocked commit (`commit_timelocked_mechanism_weights`), which the chain
    /// reveals itself; refused where `CommitRevealWeightsEnabled` is false.
    CommitReveal,
    /// Read the chain and record the call in status; sign and send nothing.
    DryRun,
}

impl ChainMode {
    pub fn as_str(self) -> &'static str {
        match self {
            ChainMode::Auto => "auto",
            ChainMode::Set => "set",
            ChainMode::CommitReveal => "commit-reveal",
            ChainMode::DryRun => "dry-run",
        }
    }
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
    /// The chain sink (`spec.sinks.chain`): what it sent and who got no weight.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chain: Option<ChainSinkStatus>,
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

/// What the chain sink did. Written only when something changed: no clock in it but the
/// instants of pushes.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ChainSinkStatus {
    /// Digest of what the chain last accepted (weights, hotkeys, netuid, mechanism, version
    /// key, mode); a push is due while the Leaderboard's differs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub synced_digest: Option<String>,
    /// The validator's hotkey (SS58), from the key Secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validator: Option<String>,
    /// Leaderboard miners that get no weight on the chain, and why (as of the last plan).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 1024))]
    pub unpaid: Vec<UnpaidMiner>,
    /// The latest pushes, newest first (at most 5): every extrinsic sent, and dry runs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 5))]
    pub pushes: Vec<ChainPush>,
}

/// A miner the chain pays nothing.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct UnpaidMiner {
    /// The miner's name.
    pub miner: String,
    /// Its `spec.hotkey`, when it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hotkey: Option<String>,
    /// `NotRegistered` (the hotkey has no uid on the subnet: never registered, or
    /// deregistered), `NoHotkey` (the Miner has no `spec.hotkey`, or no Miner exists),
    /// `InvalidHotkey` (not an SS58 address), `SharedHotkey` (another miner has it too).
    pub reason: String,
}

/// One extrinsic sent (or, in dry-run mode, computed) and what the chain did with it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ChainPush {
    /// When it was sent (or computed).
    pub at: DateTime<Utc>,
    /// The digest of what was pushed (see `syncedDigest`).
    pub digest: String,
    /// `ExtrinsicSuccess`, `DryRun`, `OnChain` (nothing sent: the chain's `Weights` already
    /// held this vector, set at `block`), `Refused: <pool reason>` (not included, e.g.
    /// `Refused: RateLimitExceeded`) or `Failed: <Pallet::Error>` (included, failed).
    pub outcome: String,
    /// What the node said, for a refusal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The signed extrinsic's hash (the chain's, 0x hex).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extrinsic_hash: Option<String>,
    /// The block that included it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub block: Option<u64>,
    /// That block's hash.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub block_hash: Option<String>,
    /// The call's netuid.
    pub netuid: u16,
    /// The call's mechanism.
    pub mechanism_id: u8,
    /// The call's version key.
    pub version_key: u64,
    /// The call's uids, as sent.
    #[schemars(length(max = 4096))]
    pub dests: Vec<u16>,
    /// The u16 weight of each uid in `dests`, as sent.
    #[schemars(length(max = 4096))]
    pub weights: Vec<u16>,
    /// A timelocked commit (commit-reveal subnets): the drand quicknet round whose pulse opens
    /// it; the chain reveals the weights then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reveal_round: Option<u64>,
}
