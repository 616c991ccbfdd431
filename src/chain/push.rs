//! `gradients weights push`: from the leaderboard's weights, the miners' hotkeys and a snapshot
//! of the subnet (its `Uids` and weight parameters) to the exact call a validator submits.
//! Pure: reading the files and printing are the CLI's (`cli.rs`).

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::{Map, Value};

use super::ss58;
use super::weights::{self, SubnetLimits, WeightsError};

/// The pallet and call the reference SDK (bittensor 10) uses when commit-reveal is off.
pub const PALLET: &str = "SubtensorModule";
pub const CALL: &str = "set_mechanism_weights";

/// Why the inputs cannot give a call; `file` is the flag or file, `field` the entry in it.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PushError {
    #[error("{file}: field {field:?}: {message}")]
    Field { file: String, field: String, message: String },
    /// A file that cannot be read, or records `gradients score` would refuse.
    #[error("{file}: {message}")]
    File { file: String, message: String },
    #[error("{0}")]
    Weights(#[from] WeightsError),
    /// The chain would refuse a plain set; the timelocked commit needs the chain's epoch
    /// schedule, so only a push with `--endpoint` sends it.
    #[error(
        "CommitRevealWeightsEnabled is true on netuid {netuid}: the chain refuses {CALL} there \
         (CommitRevealEnabled) and takes a timelocked commit, which needs its epoch schedule: push with --endpoint"
    )]
    CommitReveal { netuid: u16 },
}

fn field_error(file: &str, field: &str, message: impl Into<String>) -> PushError {
    PushError::Field { file: file.to_string(), field: field.to_string(), message: message.into() }
}

/// The chain's weight parameters for a netuid, by their storage names; `None` when not given.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ChainParams {
    #[serde(rename = "SubnetworkN")]
    pub subnetwork_n: Option<u16>,
    pub min_allowed_weights: Option<u16>,
    pub max_weights_limit: Option<u16>,
    pub weights_version_key: Option<u64>,
    pub commit_reveal_weights_enabled: Option<bool>,
}

impl ChainParams {
    /// Parses `{"SubnetworkN": 256, "MinAllowedWeights": 8, ...}`; an unknown key is an error
    /// (a misspelt limit must not fall back to nothing).
    pub fn parse(file: &str, text: &str) -> Result<Self, PushError> {
        let value: Value = serde_json::from_str(text).map_err(|e| field_error(file, "(document)", e.to_string()))?;
        let object = value.as_object().ok_or_else(|| field_error(file, "(document)", "must be a JSON object"))?;
        let mut params = ChainParams::default();
        for (key, value) in object {
            let int = |max: u64| {
                value
                    .as_u64()
                    .filter(|&v| v <= max)
                    .ok_or_else(|| field_error(file, key, format!("must be an integer from 0 to {max}, not {value}")))
            };
            match key.as_str() {
                "SubnetworkN" => params.subnetwork_n = Some(int(u64::from(u16::MAX))? as u16),
                "MinAllowedWeights" => params.min_allowed_weights = Some(int(u64::from(u16::MAX))? as u16),
                "MaxWeightsLimit" => params.max_weights_limit = Some(int(u64::from(u16::MAX))? as u16),
                "WeightsVersionKey" => params.weights_version_key = Some(int(u64::MAX)?),
                "CommitRevealWeightsEnabled" => {
                    params.commit_reveal_weights_enabled = Some(
                        value
                            .as_bool()
                            .ok_or_else(|| field_error(file, key, format!("must be true or false, not {value}")))?,
                    )
                }
                _ => {
                    return Err(field_error(
                        file,
                        key,
                        "unknown chain parameter (known: SubnetworkN, MinAllowedWeights, MaxWeightsLimit, \
                         WeightsVersionKey, CommitRevealWeightsEnabled)",
                    ));
                }
            }
        }
        Ok(params)
    }

    /// `self`, with every parameter `over` gives replaced (flags override the file).
    pub fn overridden_by(self, over: ChainParams) -> ChainParams {
        ChainParams {
            subnetwork_n: over.subnetwork_n.or(self.subnetwork_n),
            min_allowed_weights: over.min_allowed_weights.or(self.min_allowed_weights),
            max_weights_limit: over.max_weights_limit.or(self.max_weights_limit),
            weights_version_key: over.weights_version_key.or(self.weights_version_key),
            commit_reveal_weights_enabled: over.commit_reveal_weights_enabled.or(self.commit_reveal_weights_enabled),
        }
    }
}

/// Miner name → SS58 hotkey: `{"alice": "5F..."}` (a Miner's `spec.hotkey`).
pub fn parse_hotkeys(file: &str, text: &str) -> Result<BTreeMap<String, String>, PushError> {
    let object = json_object(file, text)?;
    let mut hotkeys = BTreeMap::new();
    let mut owner: BTreeMap<&str, &str> = BTreeMap::new();
    for (miner, value) in &object {
        let hotkey = value.as_str().ok_or_else(|| {
            field_error(file, miner, format!("must be the miner's SS58 hotkey (a string), not {value}"))
        })?;
        ss58::check(hotkey).map_err(|e| field_error(file, miner, format!("{hotkey:?} is not an SS58 address: {e}")))?;
        // Two miners on one hotkey would split or steal one uid's weight.
        if let Some(first) = owner.insert(hotkey, miner) {
            return Err(field_error(file, miner, format!("hotkey {hotkey:?} is also miner {first:?}'s")));
        }
        hotkeys.insert(miner.clone(), hotkey.to_string());
    }
    Ok(hotkeys)
}

/// The subnet's registrations (the chain's `Uids`): either the metagraph's hotkey list, where
/// the index is the uid (`["5F...", "5G..."]`, its length is `SubnetworkN`), or `{"5F...": 0}`.
/// Returns hotkey → uid and, for a list, its length.
pub fn parse_uids(file: &str, text: &str) -> Result<(BTreeMap<String, u16>, Option<u16>), PushError> {
    let value: Value = serde_json::from_str(text).map_err(|e| field_error(file, "(document)", e.to_string()))?;
    let mut uids = BTreeMap::new();
    let mut insert = |field: &str, hotkey: &str, uid: u16| -> Result<(), PushError> {
        ss58::check(hotkey).map_err(|e| field_error(file, field, format!("{hotkey:?} is not an SS58 address: {e}")))?;
        match uids.insert(hotkey.to_string(), uid) {
            Some(other) => Err(field_error(file, field, format!("hotkey {hotkey:?} is also uid {other}"))),
            None => Ok(()),
        }
    };
    match &value {
        Value::Array(list) => {
            let n = u16::try_from(list.len()).map_err(|_| {
                field_error(file, "(document)", format!("{} uids, more than a subnet holds", list.len()))
            })?;
            for (uid, hotkey) in list.iter().enumerate() {
                let field = format!("[{uid}]");
                let hotkey = hotkey
                    .as_str()
                    .ok_or_else(|| field_error(file, &field, format!("must be an SS58 hotkey, not {hotkey}")))?;
                insert(&field, hotkey, uid as u16)?;
            }
            Ok((uids, Some(n)))
        }
        Value::Object(object) => {
            for (hotkey, uid) in object {
                let uid = uid
                    .as_u64()
                    .and_then(|u| u16::try_from(u).ok())
                    .ok_or_else(|| field_error(file, hotkey, format!("must be a uid from 0 to 65535, not {uid}")))?;
                insert(hotkey, hotkey, uid)?;
            }
            Ok((uids, None))
        }
        _ => Err(field_error(file, "(document)", "must be a list of hotkeys (index = uid) or an object hotkey → uid")),
    }
}

fn json_object(file: &str, text: &str) -> Result<Map<String, Value>, PushError> {
    match serde_json::from_str(text).map_err(|e| field_error(file, "(document)", e.to_string()))? {
        Value::Object(object) => Ok(object),
        _ => Err(field_error(file, "(document)", "must be a JSON object")),
    }
}

/// The extrinsic's call, as the pallet names it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Call {
    pub pallet: &'static str,
    pub call: &'static str,
    pub args: SetMechanismWeights,
}

/// `set_mechanism_weights(netuid, mecid, dests, weights, version_key)`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SetMechanismWeights {
    pub netuid: u16,
    pub mecid: u8,
    pub dests: Vec<u16>,
    pub weights: Vec<u16>,
    pub version_key: u64,
}

/// A leaderboard miner and what it gets on the chain.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MinerOnChain {
    pub miner: String,
    /// Absent when the miner has no hotkey in the hotkeys file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hotkey: Option<String>,
    /// Absent when its hotkey is not registered on the subnet: it gets no weight.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uid: Option<u16>,
    /// The leaderboard's weight.
    pub weight: f64,
    /// What the call gives its uid (0 when it has none).
    pub weight_u16: u16,
}

/// What `gradients weights push --dry-run` prints.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Plan {
    pub call: Call,
    /// The call's SCALE bytes as hex, encoded from the bundled mainnet metadata
    /// (`call_data.rs`); the CLI fills it in.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub call_data: Option<String>,
    /// Every leaderboard miner, by name.
    pub miners: Vec<MinerOnChain>,
    /// Miners whose hotkey has no uid on the subnet (never or no longer registered): no weight.
    pub unregistered: Vec<String>,
    /// Miners the hotkeys file does not name: no weight.
    pub without_hotkey: Vec<String>,
    /// The parameters the call was computed with.
    pub chain: ChainParams,
}

/// The call for `standings` (miner name, leaderboard weight) on `netuid`.
pub fn plan(
    standings: &[(String, f64)],
    hotkeys: &BTreeMap<String, String>,
    uids: &BTreeMap<String, u16>,
    netuid: u16,
    mecid: u8,
    params: ChainParams,
) -> Result<Plan, PushError> {
    const FLAGS: &str = "chain parameters";
    if netuid == 0 {
        return Err(field_error("--netuid", "netuid", "0 is the root network: the chain refuses weights there"));
    }
    let need = |value: Option<u16>, name: &str, flag: &str| {
        value.ok_or_else(|| field_error(FLAGS, name, format!("not given: pass {flag} or put {name} in --chain-params")))
    };
    let limits = SubnetLimits {
        subnetwork_n: need(params.subnetwork_n, "SubnetworkN", "--subnetwork-n")?,
        min_allowed_weights: need(params.min_allowed_weights, "MinAllowedWeights", "--min-allowed-weights")?,
        max_weights_limit: need(params.max_weights_limit, "MaxWeightsLimit", "--max-weights-limit")?,
    };
    let version_key = params.weights_version_key.ok_or_else(|| {
        field_error(FLAGS, "WeightsVersionKey", "not given: pass --weights-version-key or put it in --chain-params")
    })?;
    if params.commit_reveal_weights_enabled == Some(true) {
        return Err(PushError::CommitReveal { netuid });
    }
    let by_hotkey: Vec<(String, f64)> = standings
        .iter()
        .filter_map(|(miner, weight)| hotkeys.get(miner).map(|hotkey| (hotkey.clone(), *weight)))
        .collect();
    let out = weights::for_chain(&by_hotkey, uids, limits)?;
    let sent: BTreeMap<u16, u16> = out.dests.iter().copied().zip(out.weights.iter().copied()).collect();
    let miners: Vec<MinerOnChain> = standings
        .iter()
        .map(|(miner, weight)| {
            let hotkey = hotkeys.get(miner).cloned();
            let uid = hotkey.as_ref().and_then(|h| uids.get(h)).copied();
            let weight_u16 = uid.and_then(|u| sent.get(&u)).copied().unwrap_or(0);
            MinerOnChain { miner: miner.clone(), hotkey, uid, weight: *weight, weight_u16 }
        })
        .collect();
    let unregistered =
        miners.iter().filter(|m| m.hotkey.is_some() && m.uid.is_none()).map(|m| m.miner.clone()).collect();
    let without_hotkey = miners.iter().filter(|m| m.hotkey.is_none()).map(|m| m.miner.clone()).collect();
    let args = SetMechanismWeights { netuid, mecid, dests: out.dests, weights: out.weights, version_key };
    Ok(Plan {
        call: Call { pallet: PALLET, call: CALL, args },
        call_data: None,
        miners,
        unregistered,
        without_hotkey,
        chain: ChainParams { weights_version_key: Some(version_key), ..params },
    })
}

/// Blocks after the next one before the chain takes weights from a uid that last set them at
/// `last_update` (0: never), seen at block `now`; 0 means the next block. The pallet accepts
/// when `block − LastUpdate >= WeightsSetRateLimit` in the block that includes the call, and no
/// call is included before `now + 1`.
pub fn blocks_until_allowed(last_update: u64, rate_limit: u64, now: u64) -> u64 {
    if last_update == 0 {
        return 0;
    }
    (last_update.saturating_add(rate_limit)).saturating_sub(now + 1)
}

#[cfg(test)]
#[path = "push_tests.rs"]
mod tests;
