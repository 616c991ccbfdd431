//! Decoding a signed v4 extrinsic and checking it the way the node's transaction pool does,
//! written from the extrinsic layout (not with subxt's encoder, which the sink signs with):
//! `compact(len) ‖ 0x84 ‖ 0x00 ‖ signer ‖ 0x01 ‖ sr25519 signature ‖ era ‖ compact(nonce) ‖
//! compact(tip) ‖ metadata-hash mode ‖ call`; the signature covers `call ‖ explicit extensions ‖
//! spec version ‖ transaction version ‖ genesis hash ‖ era birth block hash ‖ None` (its
//! blake2-256 when longer than 256 bytes).

use sp_crypto_hashing::blake2_256;
use subxt::ext::codec::{Compact, Decode};
use subxt_signer::sr25519;

/// The extensions the bundled metadata lists, in order; all but these four explicit ones
/// (era, nonce, tip, metadata-hash mode) and four implicit ones are zero-sized.
pub const EXTENSIONS: [&str; 13] = [
    "CheckNonZeroSender",
    "CheckSpecVersion",
    "CheckTxVersion",
    "CheckGenesis",
    "CheckMortality",
    "CheckNonce",
    "CheckWeight",
    "ChargeTransactionPayment",
    "SudoTransactionExtension",
    "CheckShieldedTxValidity",
    "SubtensorTransactionExtension",
    "DrandPriority",
    "CheckMetadataHash",
];

#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Era {
    Immortal,
    Mortal { period: u64, phase: u64 },
}

impl Era {
    /// The block the transaction was signed at, seen from block `now` (Substrate's `birth`).
    pub fn birth(self, now: u64) -> u64 {
        match self {
            Era::Immortal => 0,
            Era::Mortal { period, phase } => (now.max(phase) - phase) / period * period + phase,
        }
    }
}

/// A decoded signed extrinsic.
#[derive(Debug, Clone)]
pub struct Signed {
    pub signer: [u8; 32],
    pub signature: [u8; 64],
    pub era: Era,
    pub nonce: u32,
    pub tip: u128,
    pub metadata_hash_mode: u8,
    /// The explicit extension bytes, as signed.
    pub explicit: Vec<u8>,
    pub call: Vec<u8>,
}

/// Why the pool refuses an extrinsic: what a real node answers (`author_submit*` errors).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Invalid {
    /// 1001: the bytes are not an extrinsic.
    #[error("Extrinsic has invalid format: {0}")]
    Format(String),
    #[error("Transaction has a bad signature")]
    BadProof,
    #[error("Transaction is outdated")]
    Stale,
    #[error("Transaction will be valid in the future")]
    Future,
    #[error("Transaction has an ancient birth block")]
    AncientBirthBlock,
    #[error("Custom error: {0}")]
    Custom(u8),
    /// A call the double does not model (it only runs the weight calls).
    #[error("Transaction call is not expected (the chain double runs only SubtensorModule weight calls)")]
    Call,
}

impl Invalid {
    pub fn code(&self) -> i32 {
        match self {
            Invalid::Format(_) => 1001,
            _ => 1010,
        }
    }
}

pub fn decode(bytes: &[u8]) -> Result<Signed, Invalid> {
    let bad = |what: &str| Invalid::Format(what.to_string());
    let input = &mut &bytes[..];
    let len = Compact::<u32>::decode(input).map_err(|_| bad("no length prefix"))?.0 as usize;
    if input.len() != len {
        return Err(bad("length prefix does not match"));
    }
    if take(input, 1, "version")?[0] != 0x84 {
        return Err(bad("not a signed v4 extrinsic"));
    }
    if take(input, 1, "address")?[0] != 0 {
        return Err(bad("address is not MultiAddress::Id"));
    }
    let signer: [u8; 32] = take(input, 32, "signer")?.try_into().unwrap();
    if take(input, 1, "signature")?[0] != 1 {
        return Err(bad("signature is not sr25519"));
    }
    let signature: [u8; 64] = take(input, 64, "signature")?.try_into().unwrap();
    let start = input.len();
    let first = take(input, 1, "era")?[0];
    let era = if first == 0 {
        Era::Immortal
    } else {
        let encoded = u16::from_le_bytes([first, take(input, 1, "era")?[0]]) as u64;
        let period = 2u64 << (encoded % 16);
        let quantize = (period >> 12).max(1);
        let phase = (encoded >> 4) * quantize;
        if period < 4 || phase >= period {
            return Err(bad("invalid era"));
        }
        Era::Mortal { period, phase }
    };
    let nonce = Compact::<u32>::decode(input).map_err(|_| bad("nonce"))?.0;
    let tip = Compact::<u128>::decode(input).map_err(|_| bad("tip"))?.0;
    let metadata_hash_mode = u8::decode(input).map_err(|_| bad("metadata hash mode"))?;
    let explicit_len = start - input.len();
    let explicit = bytes[bytes.len() - start..][..explicit_len].to_vec();
    Ok(Signed { signer, signature, era, nonce, tip, metadata_hash_mode, explicit, call: input.to_vec() })
}

fn take<'a>(input: &mut &'a [u8], n: usize, what: &str) -> Result<&'a [u8], Invalid> {
    if input.len() < n {
        return Err(Invalid::Format(what.to_string()));
    }
    let (head, rest) = input.split_at(n);
    *input = rest;
    Ok(head)
}

/// What the node signs against: its runtime and its chain.
pub struct Implicit {
    pub spec_version: u32,
    pub transaction_version: u32,
    pub genesis: [u8; 32],
    pub birth_hash: [u8; 32],
}

/// The sr25519 signature over the signed payload, with the node's implicit data.
pub fn verify(tx: &Signed, implicit: &Implicit) -> Result<(), Invalid> {
    if tx.metadata_hash_mode != 0 {
        // The double has no metadata hash to add: a real node with the feature would check one.
        return Err(Invalid::BadProof);
    }
    let mut payload = [&tx.call[..], &tx.explicit].concat();
    payload.extend(implicit.spec_version.to_le_bytes());
    payload.extend(implicit.transaction_version.to_le_bytes());
    payload.extend(implicit.genesis);
    payload.extend(implicit.birth_hash);
    payload.push(0); // CheckMetadataHash: None
    if payload.len() > 256 {
        payload = blake2_256(&payload).to_vec();
    }
    let ok = sr25519::verify(&sr25519::Signature(tx.signature), &payload, &sr25519::PublicKey(tx.signer));
    if ok { Ok(()) } else { Err(Invalid::BadProof) }
}

/// `SubtensorModule.set_mechanism_weights` (or `set_weights`, mecid 0) arguments, or those of
/// `commit_timelocked_mechanism_weights` (`commit`, `reveal_round`, `commit_reveal_version`;
/// no dests, weights or version key).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct WeightsCall {
    pub call: &'static str,
    pub netuid: u16,
    pub mecid: u8,
    pub dests: Vec<u16>,
    pub weights: Vec<u16>,
    pub version_key: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub commit: Option<Commit>,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Commit {
    #[serde(serialize_with = "as_hex")]
    pub commit: Vec<u8>,
    pub reveal_round: u64,
    pub commit_reveal_version: u16,
}

fn as_hex<S: serde::Serializer>(bytes: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&crate::chain::hex(bytes))
}

/// The call indices the metadata gives the calls the double takes.
pub struct CallIndices {
    pub pallet: u8,
    pub set_weights: u8,
    pub set_mechanism_weights: u8,
    pub commit_timelocked_mechanism_weights: u8,
}

/// Decodes the call by the indices the metadata gives these calls.
pub fn weights_call(call: &[u8], index: &CallIndices) -> Result<WeightsCall, Invalid> {
    let input = &mut &call[..];
    let [p, c] = <[u8; 2]>::decode(input).map_err(|_| Invalid::Call)?;
    let known = [index.set_weights, index.set_mechanism_weights, index.commit_timelocked_mechanism_weights];
    if p != index.pallet || !known.contains(&c) {
        return Err(Invalid::Call);
    }
    let bad = |e: subxt::ext::codec::Error| Invalid::Format(format!("call arguments: {e}"));
    let netuid = u16::decode(input).map_err(bad)?;
    let mecid = if c == index.set_weights { 0 } else { u8::decode(input).map_err(bad)? };
    let parsed = if c == index.commit_timelocked_mechanism_weights {
        let commit = Commit {
            commit: Vec::<u8>::decode(input).map_err(bad)?,
            reveal_round: u64::decode(input).map_err(bad)?,
            commit_reveal_version: u16::decode(input).map_err(bad)?,
        };
        let call = "commit_timelocked_mechanism_weights";
        WeightsCall {
            call,
            netuid,
            mecid,
            dests: Vec::new(),
            weights: Vec::new(),
            version_key: 0,
            commit: Some(commit),
        }
    } else {
        let dests = Vec::<u16>::decode(input).map_err(bad)?;
        let weights = Vec::<u16>::decode(input).map_err(bad)?;
        let version_key = u64::decode(input).map_err(bad)?;
        let call = if c == index.set_weights { "set_weights" } else { "set_mechanism_weights" };
        WeightsCall { call, netuid, mecid, dests, weights, version_key, commit: None }
    };
    if !input.is_empty() {
        return Err(Invalid::Format("call has trailing bytes".into()));
    }
    Ok(parsed)
}
