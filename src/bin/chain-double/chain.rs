//! The double's chain: blocks (a synthetic history up to the state file's block, then one block
//! per accepted extrinsic, final at once), storage per block, events, and the log of what it
//! accepted and refused.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use gradients::chain::{call_data, ss58};
use serde_json::{Value as Json, json};
use sp_crypto_hashing::blake2_256;
use subxt::ext::codec::{Compact, Encode};
use subxt::ext::scale_encode::EncodeAsType;
use subxt::ext::scale_value::Value;
use subxt::metadata::ArcMetadata;

use crate::extrinsic::{self, EXTENSIONS, Implicit, Invalid};
use crate::pallet;
use crate::state::{World, storage_key};

pub struct Block {
    pub number: u64,
    pub hash: [u8; 32],
    pub parent: [u8; 32],
    pub extrinsics: Vec<Vec<u8>>,
    pub storage: Arc<BTreeMap<Vec<u8>, Vec<u8>>>,
}

pub struct Chain {
    pub md: ArcMetadata,
    pub spec_version: u32,
    pub transaction_version: u32,
    pub world: World,
    pub blocks: Vec<Block>,
    by_hash: HashMap<[u8; 32], u64>,
    log: PathBuf,
}

/// An accepted extrinsic: where it went.
pub struct Included {
    pub block_hash: [u8; 32],
    pub extrinsic_hash: [u8; 32],
}

pub fn hex(bytes: &[u8]) -> String {
    format!("0x{}", bytes.iter().map(|b| format!("{b:02x}")).collect::<String>())
}

impl Chain {
    pub fn new(world: World, log: PathBuf) -> Result<Chain, String> {
        let md = call_data::metadata(call_data::FINNEY_METADATA).map_err(|e| e.to_string())?;
        let listed: Vec<&str> = md
            .extrinsic()
            .transaction_extensions_by_version(0)
            .ok_or("the metadata has no v4 transaction extensions")?
            .map(|e| e.identifier())
            .collect();
        if listed != EXTENSIONS {
            return Err(format!("the metadata's transaction extensions changed: {listed:?}"));
        }
        let version = call_data::runtime_version(&md).map_err(|e| e.to_string())?;
        let mut chain = Chain {
            spec_version: world.spec_version.unwrap_or(version.spec_version),
            transaction_version: version.transaction_version,
            md,
            world,
            blocks: Vec::new(),
            by_hash: HashMap::new(),
            log,
        };
        let storage = Arc::new(chain.world.storage(&chain.md, &[0])?);
        for _ in 0..=chain.world.block {
            chain.push_block(Vec::new(), storage.clone());
        }
        Ok(chain)
    }

    fn push_block(&mut self, extrinsics: Vec<Vec<u8>>, storage: Arc<BTreeMap<Vec<u8>, Vec<u8>>>) {
        let number = self.blocks.len() as u64;
        let parent = self.blocks.last().map_or([0; 32], |b| b.hash);
        let extrinsics_root = blake2_256(&extrinsics.encode());
        let mut header = parent.to_vec();
        Compact(number as u32).encode_to(&mut header);
        header.extend([0u8; 32]);
        header.extend(extrinsics_root);
        header.push(0); // no digest items
        let hash = blake2_256(&header);
        self.by_hash.insert(hash, number);
        self.blocks.push(Block { number, hash, parent, extrinsics, storage });
    }

    pub fn best(&self) -> &Block {
        self.blocks.last().expect("genesis exists")
    }
    pub fn genesis(&self) -> [u8; 32] {
        self.blocks[0].hash
    }
    pub fn block(&self, hash: Option<[u8; 32]>) -> Option<&Block> {
        match hash {
            None => Some(self.best()),
            Some(h) => self.by_hash.get(&h).map(|&n| &self.blocks[n as usize]),
        }
    }

    pub fn header_json(&self, block: &Block) -> Json {
        let extrinsics_root = blake2_256(&block.extrinsics.encode());
        json!({
            "parentHash": hex(&block.parent),
            "number": format!("0x{:x}", block.number),
            "stateRoot": hex(&[0; 32]),
            "extrinsicsRoot": hex(&extrinsics_root),
            "digest": {"logs": []},
        })
    }

    /// `Core_version`'s SCALE answer: the metadata's `System::Version` with this runtime's spec.
    pub fn core_version(&self) -> Vec<u8> {
        call_data::runtime_version(&self.md).map(|v| v.encode_with_spec(self.spec_version)).unwrap_or_default()
    }

    /// Validates like the pool, then includes the extrinsic in a new final block.
    pub fn submit(&mut self, bytes: &[u8]) -> Result<Included, Invalid> {
        let result = self.try_submit(bytes);
        if let Err(e) = &result {
            self.record(json!({"rejected": e.to_string(), "code": e.code(), "extrinsic": hex(bytes)}));
        }
        result
    }

    fn try_submit(&mut self, bytes: &[u8]) -> Result<Included, Invalid> {
        let tx = extrinsic::decode(bytes)?;
        let now = self.best().number + 1;
        let birth = tx.era.birth(now);
        let birth_hash =
            self.blocks.get(birth as usize).filter(|_| birth < now).ok_or(Invalid::AncientBirthBlock)?.hash;
        let implicit = Implicit {
            spec_version: self.spec_version,
            transaction_version: self.transaction_version,
            genesis: self.genesis(),
            birth_hash,
        };
        extrinsic::verify(&tx, &implicit)?;
        let expected = self.world.nonce(&tx.signer);
        if tx.nonce < expected {
            return Err(Invalid::Stale);
        }
        if tx.nonce > expected {
            return Err(Invalid::Future);
        }
        let module = self.md.pallet_by_name("SubtensorModule").expect("bundled metadata has SubtensorModule");
        let index = |name: &str| module.call_variant_by_name(name).map(|v| v.index).unwrap_or(u8::MAX);
        let indices = extrinsic::CallIndices {
            pallet: module.call_index(),
            set_weights: index("set_weights"),
            set_mechanism_weights: index("set_mechanism_weights"),
            commit_timelocked_mechanism_weights: index("commit_timelocked_mechanism_weights"),
        };
        let call = extrinsic::weights_call(&tx.call, &indices)?;
        pallet::pool_check(&self.world, &tx.signer, &call, now).map_err(Invalid::Custom)?;

        // Included: the nonce moves whether or not the call succeeds.
        self.world.bump_nonce(&tx.signer);
        let outcome = pallet::set_weights(&mut self.world, &tx.signer, &call, now);
        let events = self.events(&outcome).map_err(Invalid::Format)?;
        let storage = Arc::new(self.world.storage(&self.md, &events).map_err(Invalid::Format)?);
        self.push_block(vec![bytes.to_vec()], storage);
        let block = self.best();
        let included = Included { block_hash: block.hash, extrinsic_hash: blake2_256(bytes) };
        self.record(json!({
            "block": block.number,
            "block_hash": hex(&block.hash),
            "extrinsic_hash": hex(&included.extrinsic_hash),
            "extrinsic": hex(bytes),
            "signer": ss58::encode(&tx.signer),
            "nonce": tx.nonce,
            "era": tx.era,
            "tip": tx.tip.to_string(),
            "call": call,
            "outcome": match outcome { Ok(_) => "ExtrinsicSuccess".to_string(), Err(e) => e.to_string() },
        }));
        Ok(included)
    }

    /// `System.Events` of the new block, encoded by the metadata's types: `WeightsSet` then
    /// `ExtrinsicSuccess`, or `ExtrinsicFailed` with the pallet error's index for its name.
    fn events(&self, outcome: &Result<pallet::Done, &'static str>) -> Result<Vec<u8>, String> {
        let u = |x: u64| Value::u128(x.into());
        let info = Value::named_composite([
            ("weight", Value::named_composite([("ref_time", u(0)), ("proof_size", u(0))])),
            ("class", Value::unnamed_variant("Normal", Vec::new())),
            ("pays_fee", Value::unnamed_variant("No", Vec::new())),
        ]);
        let system = |name: &str, fields: Vec<(&str, Value)>| {
            Value::unnamed_variant("System", [Value::named_variant(name, fields)])
        };
        let mut events = Vec::new();
        match outcome {
            Ok(done) => {
                let event = match done {
                    pallet::Done::WeightsSet { netuid_index, uid } => {
                        Value::unnamed_variant("WeightsSet", [u((*netuid_index).into()), u((*uid).into())])
                    }
                    pallet::Done::Committed { who, netuid_index, hash, reveal_round } => {
                        let bytes = |b: &[u8; 32]| Value::unnamed_composite(b.iter().map(|&x| u(x.into())));
                        let fields = [bytes(who), u((*netuid_index).into()), bytes(hash), u(*reveal_round)];
                        Value::unnamed_variant("TimelockedWeightsCommitted", fields)
                    }
                };
                events.push(Value::unnamed_variant("SubtensorModule", [event]));
                events.push(system("ExtrinsicSuccess", vec![("dispatch_info", info)]));
            }
            Err(name) => {
                let module = self.md.pallet_by_name("SubtensorModule").ok_or("no SubtensorModule")?;
                let variant = module
                    .error_variants()
                    .and_then(|vs| vs.iter().find(|v| v.name == *name))
                    .ok_or(format!("the metadata has no SubtensorModule error {name}"))?;
                let error = Value::named_composite([
                    ("index", u(module.error_index().into())),
                    ("error", Value::unnamed_composite([u(variant.index.into()), u(0), u(0), u(0)])),
                ]);
                let dispatch_error = Value::unnamed_variant("Module", [error]);
                events
                    .push(system("ExtrinsicFailed", vec![("dispatch_error", dispatch_error), ("dispatch_info", info)]));
            }
        }
        let records = events.into_iter().map(|event| {
            Value::named_composite([
                ("phase", Value::unnamed_variant("ApplyExtrinsic", [u(0)])),
                ("event", event),
                ("topics", Value::unnamed_composite(Vec::new())),
            ])
        });
        let (_, ty) = storage_key(&self.md, "System", "Events", &[])?;
        Value::unnamed_composite(records).encode_as_type(ty, self.md.types()).map_err(|e| format!("System.Events: {e}"))
    }

    fn record(&self, entry: Json) {
        let line = format!("{entry}\n");
        let written = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .and_then(|mut f| f.write_all(line.as_bytes()));
        if let Err(e) = written {
            eprintln!("chain-double: cannot write {}: {e}", self.log.display());
        }
    }
}
