//! The chain double's world: the subnet state a test writes as JSON, and the storage the real
//! node would serve for it, keyed with the hashers the bundled metadata names.

use std::collections::BTreeMap;

use gradients::chain::ss58;
use serde::Deserialize;
use sp_crypto_hashing::{blake2_128, blake2_256, twox_64, twox_128, twox_256};
use subxt::ext::codec::Encode;
use subxt::ext::scale_encode::EncodeAsType;
use subxt::ext::scale_value::Value;
use subxt::metadata::{Metadata, StorageHasher};

/// The JSON state file: what the chain holds when the double starts.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct World {
    /// The best (and finalized) block number at start.
    pub block: u64,
    /// The runtime's spec version; default: the bundled metadata's (`System::Version`).
    #[serde(default)]
    pub spec_version: Option<u32>,
    /// Account → next nonce (SS58); accounts not listed start at 0.
    #[serde(default)]
    pub nonces: BTreeMap<String, u32>,
    /// The version timelocked commits must carry.
    #[serde(rename = "CommitRevealWeightsVersion", default = "four")]
    pub commit_reveal_version: u16,
    pub subnets: Vec<Subnet>,
}

/// One subnet, by the storage names the sink reads.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Subnet {
    pub netuid: u16,
    /// Registered hotkeys by uid (`Keys`; `Uids` is its inverse; `SubnetworkN` its length).
    pub hotkeys: Vec<String>,
    /// `LastUpdate` per uid (missing entries are 0).
    #[serde(rename = "LastUpdate", default)]
    pub last_update: Vec<u64>,
    #[serde(rename = "WeightsSetRateLimit", default = "rate_limit")]
    pub weights_set_rate_limit: u64,
    #[serde(rename = "MinAllowedWeights", default = "one")]
    pub min_allowed_weights: u16,
    #[serde(rename = "MaxWeightsLimit", default = "u16_max")]
    pub max_weights_limit: u16,
    #[serde(rename = "WeightsVersionKey", default)]
    pub weights_version_key: u64,
    #[serde(rename = "CommitRevealWeightsEnabled", default)]
    pub commit_reveal_weights_enabled: bool,
    /// `ValidatorPermit` per uid (missing entries are true).
    #[serde(rename = "ValidatorPermit", default)]
    pub validator_permit: Vec<bool>,
    /// Weights held: uid → (dest, value) (`Weights`); those in the file, then every set.
    #[serde(rename = "Weights", default)]
    pub weights: BTreeMap<u16, Vec<(u16, u16)>>,
    #[serde(rename = "Tempo", default = "tempo")]
    pub tempo: u16,
    #[serde(rename = "RevealPeriodEpochs", default = "one_epoch")]
    pub reveal_period_epochs: u64,
    /// Timelocked commits held: (uid, commit, reveal round), oldest first (never opened here).
    #[serde(skip)]
    pub commits: Vec<(u16, Vec<u8>, u64)>,
}

fn rate_limit() -> u64 {
    100
}
fn four() -> u16 {
    4
}
fn tempo() -> u16 {
    360
}
fn one_epoch() -> u64 {
    1
}
fn one() -> u16 {
    1
}
fn u16_max() -> u16 {
    u16::MAX
}

impl Subnet {
    pub fn uid_of(&self, account: &[u8; 32]) -> Option<u16> {
        self.hotkeys.iter().position(|h| ss58::check(h).ok().as_ref() == Some(account)).map(|u| u as u16)
    }
    pub fn last_update(&self, uid: u16) -> u64 {
        self.last_update.get(uid as usize).copied().unwrap_or(0)
    }
    pub fn permit(&self, uid: u16) -> bool {
        self.validator_permit.get(uid as usize).copied().unwrap_or(true)
    }
}

impl World {
    pub fn parse(text: &str) -> Result<World, String> {
        let world: World = serde_json::from_str(text).map_err(|e| e.to_string())?;
        for subnet in &world.subnets {
            for (uid, hotkey) in subnet.hotkeys.iter().enumerate() {
                ss58::check(hotkey).map_err(|e| format!("subnet {} hotkeys[{uid}]: {e}", subnet.netuid))?;
            }
        }
        for account in world.nonces.keys() {
            ss58::check(account).map_err(|e| format!("nonces {account:?}: {e}"))?;
        }
        Ok(world)
    }

    pub fn subnet(&self, netuid: u16) -> Option<&Subnet> {
        self.subnets.iter().find(|s| s.netuid == netuid)
    }
    pub fn subnet_mut(&mut self, netuid: u16) -> Option<&mut Subnet> {
        self.subnets.iter_mut().find(|s| s.netuid == netuid)
    }
    pub fn nonce(&self, account: &[u8; 32]) -> u32 {
        self.nonces.get(&ss58::encode(account)).copied().unwrap_or(0)
    }
    pub fn bump_nonce(&mut self, account: &[u8; 32]) {
        *self.nonces.entry(ss58::encode(account)).or_insert(0) += 1;
    }

    /// Every storage entry the double serves, by its raw key.
    pub fn storage(&self, md: &Metadata, events: &[u8]) -> Result<BTreeMap<Vec<u8>, Vec<u8>>, String> {
        let mut kv = BTreeMap::new();
        let mut put = |pallet: &str, entry: &str, keys: Vec<Vec<u8>>, value: Value| -> Result<(), String> {
            let (key, ty) = storage_key(md, pallet, entry, &keys)?;
            let bytes = value.encode_as_type(ty, md.types()).map_err(|e| format!("{pallet}.{entry}: {e}"))?;
            kv.insert(key, bytes);
            Ok(())
        };
        for s in &self.subnets {
            let net = s.netuid.encode();
            let n = s.hotkeys.len();
            put("SubtensorModule", "SubnetworkN", vec![net.clone()], Value::u128(n as u128))?;
            for (uid, hotkey) in s.hotkeys.iter().enumerate() {
                let account = ss58::check(hotkey)?;
                put("SubtensorModule", "Uids", vec![net.clone(), account.to_vec()], Value::u128(uid as u128))?;
                let account_value = Value::unnamed_composite(account.iter().map(|&b| Value::u128(b.into())));
                put("SubtensorModule", "Keys", vec![net.clone(), (uid as u16).encode()], account_value)?;
            }
            let last: Vec<Value> = (0..n).map(|u| Value::u128(s.last_update(u as u16).into())).collect();
            put("SubtensorModule", "LastUpdate", vec![net.clone()], Value::unnamed_composite(last))?;
            let permits: Vec<Value> = (0..n).map(|u| Value::bool(s.permit(u as u16))).collect();
            put("SubtensorModule", "ValidatorPermit", vec![net.clone()], Value::unnamed_composite(permits))?;
            let u = |x: u64| Value::u128(x.into());
            put("SubtensorModule", "WeightsSetRateLimit", vec![net.clone()], u(s.weights_set_rate_limit))?;
            put("SubtensorModule", "MinAllowedWeights", vec![net.clone()], u(s.min_allowed_weights.into()))?;
            put("SubtensorModule", "MaxWeightsLimit", vec![net.clone()], u(s.max_weights_limit.into()))?;
            put("SubtensorModule", "WeightsVersionKey", vec![net.clone()], u(s.weights_version_key))?;
            for (uid, row) in &s.weights {
                let pairs = row.iter().map(|&(d, w)| Value::unnamed_composite([u(d.into()), u(w.into())]));
                put("SubtensorModule", "Weights", vec![net.clone(), uid.encode()], Value::unnamed_composite(pairs))?;
            }
            put("SubtensorModule", "Tempo", vec![net.clone()], u(s.tempo.into()))?;
            put("SubtensorModule", "RevealPeriodEpochs", vec![net.clone()], u(s.reveal_period_epochs))?;
            let cr = Value::bool(s.commit_reveal_weights_enabled);
            put("SubtensorModule", "CommitRevealWeightsEnabled", vec![net.clone()], cr)?;
        }
        let version = Value::u128(self.commit_reveal_version.into());
        put("SubtensorModule", "CommitRevealWeightsVersion", Vec::new(), version)?;
        let (key, _) = storage_key(md, "System", "Events", &[])?;
        kv.insert(key, events.to_vec());
        Ok(kv)
    }
}

/// `twox128(pallet) ‖ twox128(entry) ‖ hasher(key)…` with the hashers the metadata gives the
/// entry, and the entry's value type.
pub fn storage_key(md: &Metadata, pallet: &str, entry: &str, keys: &[Vec<u8>]) -> Result<(Vec<u8>, u32), String> {
    let storage = md.pallet_by_name(pallet).and_then(|p| p.storage()).ok_or(format!("no storage in {pallet}"))?;
    let info = storage.entry_by_name(entry).ok_or(format!("no storage {pallet}.{entry}"))?;
    let hashers: Vec<StorageHasher> = info.keys().map(|k| k.hasher).collect();
    if hashers.len() != keys.len() {
        return Err(format!("{pallet}.{entry} has {} keys, {} given", hashers.len(), keys.len()));
    }
    let mut out = [twox_128(storage.prefix().as_bytes()), twox_128(entry.as_bytes())].concat();
    for (hasher, key) in hashers.iter().zip(keys) {
        match hasher {
            StorageHasher::Blake2_128 => out.extend(blake2_128(key)),
            StorageHasher::Blake2_256 => out.extend(blake2_256(key)),
            StorageHasher::Blake2_128Concat => out.extend([&blake2_128(key)[..], key].concat()),
            StorageHasher::Twox128 => out.extend(twox_128(key)),
            StorageHasher::Twox256 => out.extend(twox_256(key)),
            StorageHasher::Twox64Concat => out.extend([&twox_64(key)[..], key].concat()),
            StorageHasher::Identity => out.extend(key),
        }
    }
    Ok((out, info.value_ty()))
}
