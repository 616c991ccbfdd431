//! Talking to a subtensor node (I/O): the runtime check, the subnet's state, signing and
//! submitting the weight call, and what the chain answered, decoded by name.

use std::collections::BTreeMap;

use serde::Serialize;
use subxt::dynamic::Value;
use subxt::metadata::ArcMetadata;
use subxt::rpcs::RpcClient;
use subxt::{OnlineClient, SubstrateConfig};

use super::call_data::{self, RuntimeVersion};
use super::keyfile::Hotkey;
use super::push::{ChainParams, SetMechanismWeights};
use super::ss58;
use super::tlock::TimelockedCommit;

/// Mortality of the signed extrinsic in blocks, as the reference SDK signs (`period=128`).
pub const MORTALITY: u64 = 128;

/// What went wrong talking to the chain. `Refused` and `Failed` are the chain's answers.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum NodeError {
    #[error("cannot reach the node at {endpoint}: {message}")]
    Connect { endpoint: String, message: String },
    #[error(
        "the node runs {spec_name} spec version {node}, the bundled metadata describes {bundled}: \
         refusing to sign calls the metadata may no longer describe (update src/chain/finney-metadata.scale)"
    )]
    Runtime { spec_name: String, node: u32, bundled: u32 },
    #[error("the node's answer to {what}: {message}")]
    Answer { what: String, message: String },
    /// The transaction pool refused the extrinsic (nothing was included).
    #[error("the node refused the extrinsic: {name} ({detail})")]
    Refused { code: i32, name: String, detail: String },
    /// Included, but the call failed: `System.ExtrinsicFailed` with this error.
    #[error("the extrinsic was included in block {block} but failed: {error}")]
    Failed { block: u64, error: String },
}

fn answer(what: &str) -> impl Fn(&dyn std::fmt::Display) -> NodeError + '_ {
    move |e| NodeError::Answer { what: what.to_string(), message: e.to_string() }
}

/// A connection to a node whose runtime matches the bundled metadata.
pub struct Node {
    client: OnlineClient<SubstrateConfig>,
    rpc: RpcClient,
    pub runtime: RuntimeVersion,
}

/// The subnet as the chain holds it, read at one block.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Snapshot {
    pub block: u64,
    pub params: ChainParams,
    pub weights_set_rate_limit: u64,
    /// The validator's uid, `None` when its hotkey is not registered.
    pub validator_uid: Option<u16>,
    /// `LastUpdate` of the validator's uid (0 when never set).
    pub last_update: u64,
    /// Hotkey → uid for the hotkeys asked about that are registered (`Uids`).
    pub uids: BTreeMap<String, u16>,
    /// What a timelocked commit needs: `Tempo`, `RevealPeriodEpochs`, `CommitRevealWeightsVersion`.
    pub tempo: u16,
    pub reveal_period_epochs: u64,
    pub commit_reveal_version: u16,
    /// The validator's row of `Weights`, (uid, u16 weight) as the chain stored them (empty when
    /// it never set any, or is not registered).
    pub weights: Vec<(u16, u16)>,
}

/// What the chain did with a submitted extrinsic.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Receipt {
    pub extrinsic_hash: String,
    pub block: u64,
    pub block_hash: String,
    /// The events of the extrinsic, `Pallet.Event` (e.g. `SubtensorModule.WeightsSet`).
    pub events: Vec<String>,
}

impl Node {
    /// Connects and refuses a node whose spec version differs from the bundled metadata's.
    pub async fn connect(endpoint: &str) -> Result<Node, NodeError> {
        let connect =
            |e: &dyn std::fmt::Display| NodeError::Connect { endpoint: endpoint.to_string(), message: e.to_string() };
        let metadata = call_data::metadata(call_data::FINNEY_METADATA).map_err(|e| connect(&e))?;
        let runtime = call_data::runtime_version(&metadata).map_err(|e| connect(&e))?;
        let rpc = RpcClient::from_insecure_url(endpoint).await.map_err(|e| connect(&e))?;
        #[derive(serde::Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Version {
            spec_name: String,
            spec_version: u32,
        }
        let node: Version = rpc
            .request("state_getRuntimeVersion", subxt::rpcs::rpc_params![])
            .await
            .map_err(|e| answer("state_getRuntimeVersion")(&e))?;
        if node.spec_version != runtime.spec_version || node.spec_name != runtime.spec_name {
            return Err(NodeError::Runtime {
                spec_name: node.spec_name,
                node: node.spec_version,
                bundled: runtime.spec_version,
            });
        }
        let config = SubstrateConfig::builder()
            .set_metadata_for_spec_versions([(runtime.spec_version, ArcMetadata::clone(&metadata))])
            .build();
        let client = OnlineClient::from_rpc_client_with_config(config, rpc.clone()).await.map_err(|e| connect(&e))?;
        Ok(Node { client, rpc, runtime })
    }

    /// Reads the subnet's weight parameters, the validator's `LastUpdate` and `Weights`, and the uids of `hotkeys`
    /// at the latest finalized block (`validator` empty: no validator).
    pub async fn snapshot(
        &self,
        netuid: u16,
        mecid: u8,
        validator: &str,
        hotkeys: &[String],
    ) -> Result<Snapshot, NodeError> {
        let at = self.client.at_current_block().await.map_err(|e| answer("the current block")(&e))?;
        let net = || vec![Value::u128(netuid.into())];
        let params = ChainParams {
            subnetwork_n: Some(read(&at, "SubnetworkN", net()).await?),
            min_allowed_weights: Some(read(&at, "MinAllowedWeights", net()).await?),
            max_weights_limit: Some(read(&at, "MaxWeightsLimit", net()).await?),
            weights_version_key: Some(read(&at, "WeightsVersionKey", net()).await?),
            commit_reveal_weights_enabled: Some(read(&at, "CommitRevealWeightsEnabled", net()).await?),
        };
        let weights_set_rate_limit: u64 = read(&at, "WeightsSetRateLimit", net()).await?;
        let tempo = read(&at, "Tempo", net()).await?;
        let reveal_period_epochs = read(&at, "RevealPeriodEpochs", net()).await?;
        let commit_reveal_version = read(&at, "CommitRevealWeightsVersion", Vec::new()).await?;
        let storage = at.storage();
        let mut uids = BTreeMap::new();
        let mut validator_uid = None;
        let validator_key = (!validator.is_empty()).then(|| validator.to_string());
        for hotkey in hotkeys.iter().chain(validator_key.iter()) {
            let account = ss58::check(hotkey).map_err(|e| answer("Uids")(&format!("{hotkey}: {e}")))?;
            let found = storage
                .try_fetch(("SubtensorModule", "Uids"), vec![Value::u128(netuid.into()), Value::from_bytes(account)])
                .await
                .map_err(|e| answer("Uids")(&e))?;
            if let Some(value) = found {
                let uid = value.decode_as::<u16>().map_err(|e| answer("Uids")(&e))?;
                if hotkey == validator {
                    validator_uid = Some(uid);
                }
                uids.insert(hotkey.clone(), uid);
            }
        }
        let index = u16::from(mecid) * 4096 + netuid;
        let last_updates: Vec<u64> = match storage
            .try_fetch(("SubtensorModule", "LastUpdate"), vec![Value::u128(index.into())])
            .await
            .map_err(|e| answer("LastUpdate")(&e))?
        {
            Some(v) => v.decode_as().map_err(|e| answer("LastUpdate")(&e))?,
            None => Vec::new(),
        };
        let last_update = validator_uid.and_then(|u| last_updates.get(usize::from(u))).copied().unwrap_or(0);
        let weights = match validator_uid {
            Some(uid) => read(&at, "Weights", vec![Value::u128(index.into()), Value::u128(uid.into())]).await?,
            None => Vec::new(),
        };
        if !hotkeys.contains(&validator.to_string()) {
            uids.remove(validator);
        }
        Ok(Snapshot {
            block: at.block_number(),
            params,
            weights_set_rate_limit,
            validator_uid,
            last_update,
            uids,
            tempo,
            reveal_period_epochs,
            commit_reveal_version,
            weights,
        })
    }

    /// Signs `SubtensorModule.set_mechanism_weights` with the hotkey (mortal, nonce from the
    /// chain), submits it and waits until its block is final.
    pub async fn set_mechanism_weights(&self, key: &Hotkey, args: &SetMechanismWeights) -> Result<Receipt, NodeError> {
        let list = |xs: &[u16]| Value::unnamed_composite(xs.iter().map(|&x| Value::u128(u128::from(x))));
        let call = subxt::dynamic::tx(
            "SubtensorModule",
            "set_mechanism_weights",
            vec![
                Value::u128(u128::from(args.netuid)),
                Value::u128(u128::from(args.mecid)),
                list(&args.dests),
                list(&args.weights),
                Value::u128(u128::from(args.version_key)),
            ],
        );
        self.submit(key, &call).await
    }

    /// Signs `SubtensorModule.commit_timelocked_mechanism_weights` like a set, submits it and
    /// waits until its block is final; the chain opens it at its reveal round.
    pub async fn commit_timelocked(&self, key: &Hotkey, commit: &TimelockedCommit) -> Result<Receipt, NodeError> {
        let call = subxt::dynamic::tx(
            "SubtensorModule",
            "commit_timelocked_mechanism_weights",
            vec![
                Value::u128(u128::from(commit.netuid)),
                Value::u128(u128::from(commit.mecid)),
                Value::from_bytes(&commit.commit),
                Value::u128(u128::from(commit.reveal_round)),
                Value::u128(u128::from(commit.commit_reveal_version)),
            ],
        );
        self.submit(key, &call).await
    }

    async fn submit<Call: subxt::transactions::Payload>(
        &self,
        key: &Hotkey,
        call: &Call,
    ) -> Result<Receipt, NodeError> {
        let at = self.client.at_current_block().await.map_err(|e| answer("the current block")(&e))?;
        let params = subxt::config::SubstrateExtrinsicParamsBuilder::new().mortal(MORTALITY).build();
        let signed = at.tx().create_signed(call, &key.keypair, params).await.map_err(|e| answer("signing")(&e))?;
        let extrinsic_hash = format!("{:?}", signed.hash());
        let progress = signed.submit_and_watch().await.map_err(|e| refused(&e))?;
        let in_block = progress.wait_for_finalized().await.map_err(|e| answer("the extrinsic's progress")(&e))?;
        let block_hash = in_block.block_hash();
        let block =
            self.client.at_block(block_hash).await.map_err(|e| answer("the extrinsic's block")(&e))?.block_number();
        let events = in_block.wait_for_success().await.map_err(|e| match e {
            subxt::error::TransactionEventsError::ExtrinsicFailed(error) => {
                NodeError::Failed { block, error: dispatch_error_name(&error) }
            }
            other => answer("the extrinsic's events")(&other),
        })?;
        let events =
            events.iter().filter_map(Result::ok).map(|e| format!("{}.{}", e.pallet_name(), e.event_name())).collect();
        Ok(Receipt { extrinsic_hash, block, block_hash: format!("{block_hash:?}"), events })
    }

    /// The raw RPC connection (the tests submit hand-made extrinsics through it).
    pub fn rpc(&self) -> &RpcClient {
        &self.rpc
    }
}

/// A `SubtensorModule` storage value at `at` (its default when the chain holds none).
async fn read<T: subxt::ext::scale_decode::DecodeAsType>(
    at: &subxt::OnlineClientAtBlock<SubstrateConfig>,
    entry: &str,
    keys: Vec<Value>,
) -> Result<T, NodeError> {
    let value = at.storage().fetch(("SubtensorModule", entry), keys).await.map_err(|e| answer(entry)(&e))?;
    value.decode_as::<T>().map_err(|e| answer(entry)(&e))
}

/// `Pallet::Error` from the metadata for a module error; the error's text otherwise.
fn dispatch_error_name(error: &subxt::error::DispatchError) -> String {
    if let subxt::error::DispatchError::Module(module) = error
        && let Ok(details) = module.details()
    {
        return format!("{}::{}", details.pallet.name(), details.variant.name);
    }
    error.to_string()
}

/// The pool's refusal: JSON-RPC error 1010 ("Invalid Transaction") and its reason. Subtensor's
/// `Custom(n)` codes are not in the metadata; their names come from its
/// `CustomTransactionError` (shared/reference/bittensor-weights.md).
fn refused(error: &subxt::error::ExtrinsicError) -> NodeError {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = source {
        if let Some(subxt::rpcs::Error::User(user)) = e.downcast_ref::<subxt::rpcs::Error>() {
            let detail = user
                .data
                .as_ref()
                .map(|d| serde_json::from_str::<String>(d.get()).unwrap_or_else(|_| d.get().to_string()))
                .unwrap_or_default();
            return NodeError::Refused { code: user.code, name: pool_error_name(&detail), detail };
        }
        source = e.source();
    }
    answer("author_submitAndWatchExtrinsic")(error)
}

/// A name for the pool's reason (`Custom error: 6` → `RateLimitExceeded`).
pub fn pool_error_name(detail: &str) -> String {
    let custom = detail.strip_prefix("Custom error: ").and_then(|n| n.trim().parse::<u8>().ok());
    let name = match custom {
        Some(1) => "StakeAmountTooLow",
        Some(6) => "RateLimitExceeded",
        Some(15) => "InvalidRevealRound",
        Some(16) => "CommitNotFound",
        Some(17) => "CommitBlockNotInRevealRange",
        Some(18) => "InputLengthsUnequal",
        Some(19) => "UidNotFound",
        Some(255) => "BadRequest",
        Some(_) => "Custom",
        None => match detail {
            "Transaction has a bad signature" => "BadProof",
            "Transaction is outdated" => "Stale",
            "Transaction will be valid in the future" => "Future",
            "Transaction has an ancient birth block" => "AncientBirthBlock",
            _ => "Invalid",
        },
    };
    name.to_string()
}
