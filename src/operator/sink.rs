//! Weight sinks: where the leaderboard's weights go. A ConfigMap in the leaderboard's namespace
//! (its keys of the namespace's shared one) and, when configured, a file.

use std::collections::BTreeMap;
use std::path::Path;

use chrono::{DateTime, Utc};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{ListParams, ObjectMeta, Patch, PatchParams};
use kube::{Api, Client, Resource, ResourceExt};
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::context::FIELD_MANAGER;
use super::error::{Error, Result};
use crate::api::Leaderboard;

/// What is pushed: `{"miner": weight_u16}` and the instant they were computed at.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Weights {
    pub at: DateTime<Utc>,
    pub weights: BTreeMap<String, u16>,
}

impl Weights {
    /// SHA-256 of the weights alone, so that re-computing the same weights later is no change.
    pub fn digest(&self) -> String {
        let json = serde_json::to_string(&self.weights).unwrap_or_default();
        Sha256::digest(json.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
    }
}

/// The keys of `board` in its namespace's weights ConfigMap: `<board>.weights.json` and
/// `<board>.computedAt`. Every Leaderboard of a namespace shares the one ConfigMap the chart
/// lets the operator write, each with keys of its own.
pub fn config_map_keys(board: &str) -> (String, String) {
    (format!("{board}{WEIGHTS_SUFFIX}"), format!("{board}{AT_SUFFIX}"))
}

const WEIGHTS_SUFFIX: &str = ".weights.json";
const AT_SUFFIX: &str = ".computedAt";
/// A ConfigMap key is at most 253 characters.
const MAX_KEY: usize = 253;

/// Pure: the keys of the ConfigMap no Leaderboard of `boards` writes any more: those of a
/// deleted Leaderboard, and the single-Leaderboard layout's `weights.json` and `computedAt`.
pub fn stale_keys<'a>(keys: impl IntoIterator<Item = &'a String>, boards: &[String]) -> Vec<String> {
    keys.into_iter()
        .filter(|key| {
            let board = key.strip_suffix(WEIGHTS_SUFFIX).or_else(|| key.strip_suffix(AT_SUFFIX));
            match board {
                Some(board) => !boards.iter().any(|b| b == board),
                None => key.as_str() == "weights.json" || key.as_str() == "computedAt",
            }
        })
        .cloned()
        .collect()
}

/// Writes `leaderboard`'s keys of the weights ConfigMap, as a field manager of its own (so
/// that one Leaderboard's apply never removes another's keys) and as one of its owners (not
/// its controller: the ConfigMap goes when the last of them goes). Keys of Leaderboards that
/// no longer exist are removed.
pub async fn to_config_map(client: &Client, leaderboard: &Leaderboard, weights: &Weights) -> Result<String> {
    let name = leaderboard.spec.weights_config_map.clone();
    let namespace = leaderboard.namespace().unwrap_or_default();
    let board = leaderboard.name_any();
    let (weights_key, at_key) = config_map_keys(&board);
    let sink_error = |message: String| Error::Sink { sink: format!("configmap/{name}"), message };
    if weights_key.len() > MAX_KEY {
        return Err(sink_error(format!(
            "Leaderboard {namespace}/{board}: the name is too long for a ConfigMap key ({weights_key:?} has more than {MAX_KEY} characters)"
        )));
    }
    let config_map = ConfigMap {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            namespace: Some(namespace.clone()),
            owner_references: leaderboard.owner_ref(&()).map(|o| vec![o]),
            labels: Some(BTreeMap::from([(
                crate::workloads::labels::MANAGED_BY.to_string(),
                crate::workloads::labels::MANAGER.to_string(),
            )])),
            ..ObjectMeta::default()
        },
        data: Some(BTreeMap::from([
            (weights_key.clone(), serde_json::to_string_pretty(&weights.weights)?),
            (at_key, weights.at.to_rfc3339()),
        ])),
        ..ConfigMap::default()
    };
    let api = Api::<ConfigMap>::namespaced(client.clone(), &namespace);
    let manager = format!("{FIELD_MANAGER}/leaderboard/{}", leaderboard.uid().unwrap_or_default());
    let written = api.patch(&name, &PatchParams::apply(&manager).force(), &Patch::Apply(&config_map)).await?;
    let boards: Vec<String> = Api::<Leaderboard>::namespaced(client.clone(), &namespace)
        .list_metadata(&ListParams::default())
        .await?
        .items
        .iter()
        .map(ResourceExt::name_any)
        .collect();
    let stale = stale_keys(written.data.iter().flat_map(|d| d.keys()), &boards);
    if !stale.is_empty() {
        let removed: serde_json::Map<String, serde_json::Value> =
            stale.into_iter().map(|k| (k, serde_json::Value::Null)).collect();
        let patch = serde_json::json!({ "data": removed });
        let params = PatchParams { field_manager: Some(FIELD_MANAGER.to_string()), ..PatchParams::default() };
        api.patch(&name, &params, &Patch::Merge(&patch)).await?;
    }
    Ok(format!("configmap/{name}/{weights_key}"))
}

/// Writes the weights atomically and durably (the run directory's helper: a synced temporary
/// file renamed over the old one, then the directory synced).
pub fn to_file(path: &Path, weights: &Weights) -> Result<String> {
    let sink_error = |e: std::io::Error| Error::Sink { sink: path.display().to_string(), message: e.to_string() };
    crate::local::fsio::write_atomic(path, &serde_json::to_vec_pretty(weights)?).map_err(sink_error)?;
    Ok(format!("file:{}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_leaderboard_has_its_own_keys_and_only_a_deleted_ones_are_stale() {
        assert_eq!(config_map_keys("main"), ("main.weights.json".to_string(), "main.computedAt".to_string()));
        let keys: Vec<String> = ["main.weights.json", "main.computedAt", "old.weights.json", "old.computedAt"]
            .into_iter()
            .chain(["weights.json", "computedAt", "notes"])
            .map(String::from)
            .collect();
        let boards = vec!["main".to_string(), "other".to_string()];
        let stale = stale_keys(&keys, &boards);
        assert_eq!(stale, ["old.weights.json", "old.computedAt", "weights.json", "computedAt"]);
        // A board whose name ends like a key suffix is still only its own keys.
        let boards = vec!["a.weights.json".to_string()];
        let keys = vec!["a.weights.json.weights.json".to_string(), "a.weights.json".to_string()];
        assert_eq!(stale_keys(&keys, &boards), ["a.weights.json"]);
    }
}
