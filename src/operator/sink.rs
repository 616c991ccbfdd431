//! Weight sinks: where the leaderboard's weights go. A ConfigMap in the leaderboard's namespace
//! and, when configured, a file; a chain sink comes later behind the same shape.

use std::collections::BTreeMap;
use std::path::Path;

use chrono::{DateTime, Utc};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::ObjectMeta;
use kube::{Client, Resource, ResourceExt};
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::context::apply;
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

pub async fn to_config_map(client: &Client, leaderboard: &Leaderboard, weights: &Weights) -> Result<String> {
    let name = leaderboard.spec.weights_config_map.clone();
    let config_map = ConfigMap {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            namespace: leaderboard.namespace(),
            owner_references: leaderboard.controller_owner_ref(&()).map(|o| vec![o]),
            labels: Some(BTreeMap::from([(
                crate::workloads::labels::MANAGED_BY.to_string(),
                crate::workloads::labels::MANAGER.to_string(),
            )])),
            ..ObjectMeta::default()
        },
        data: Some(BTreeMap::from([
            ("weights.json".to_string(), serde_json::to_string_pretty(&weights.weights)?),
            ("computedAt".to_string(), weights.at.to_rfc3339()),
        ])),
        ..ConfigMap::default()
    };
    apply(client, &config_map).await?;
    Ok(format!("configmap/{name}"))
}

/// Writes the weights atomically and durably (the run directory's helper: a synced temporary
/// file renamed over the old one, then the directory synced).
pub fn to_file(path: &Path, weights: &Weights) -> Result<String> {
    let sink_error = |e: std::io::Error| Error::Sink { sink: path.display().to_string(), message: e.to_string() };
    crate::local::fsio::write_atomic(path, &serde_json::to_vec_pretty(weights)?).map_err(sink_error)?;
    Ok(format!("file:{}", path.display()))
}
