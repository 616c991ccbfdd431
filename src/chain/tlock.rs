//! The timelocked commit of a commit-reveal subnet (`commit_timelocked_mechanism_weights`):
//! subtensor's `WeightsTlockPayload` (hotkey, uids, values, version key; SCALE) encrypted to a
//! future drand quicknet round with tlock (Boneh-Franklin IBE over BLS12-381, AES-GCM:
//! ideal-lab5's `timelock`), serialized in the layout `bittensor-drand` and the chain read. The
//! chain decrypts it itself once that round's pulse is on chain and sets the weights.
//!
//! Pure apart from the randomness of the encryption.

use ark_serialize::{CanonicalDeserialize, CanonicalSerialize};
use rand_core::{OsRng, RngCore};
use sha2::{Digest, Sha256};
use subxt::ext::codec::Encode;
use timelock::block_ciphers::AESGCMBlockCipherProvider;
use timelock::engines::EngineBLS;
use timelock::engines::drand::TinyBLS381;
use timelock::ibe::fullident::Identity;
use timelock::tlock::{TLECiphertext, tld, tle};

use super::node::Snapshot;
use super::push::SetMechanismWeights;

/// drand quicknet's public key (G2, compressed; hex `83cf0f28…ece45a`), chain hash
/// `52db9ba70e0cc0f6eaf7803dd07447a1f5477735fd3f661792ba94600c84e971`.
pub const QUICKNET_PUBLIC_KEY: [u8; 96] = [
    0x83, 0xcf, 0x0f, 0x28, 0x96, 0xad, 0xee, 0x7e, 0xb8, 0xb5, 0xf0, 0x1f, 0xca, 0xd3, 0x91, 0x22, 0x12, 0xc4, 0x37,
    0xe0, 0x07, 0x3e, 0x91, 0x1f, 0xb9, 0x00, 0x22, 0xd3, 0xe7, 0x60, 0x18, 0x3c, 0x8c, 0x4b, 0x45, 0x0b, 0x6a, 0x0a,
    0x6c, 0x3a, 0xc6, 0xa5, 0x77, 0x6a, 0x2d, 0x10, 0x64, 0x51, 0x0d, 0x1f, 0xec, 0x75, 0x8c, 0x92, 0x1c, 0xc2, 0x2b,
    0x0e, 0x17, 0xe6, 0x3a, 0xaf, 0x4b, 0xcb, 0x5e, 0xd6, 0x63, 0x04, 0xde, 0x9c, 0xf8, 0x09, 0xbd, 0x27, 0x4c, 0xa7,
    0x3b, 0xab, 0x4a, 0xf5, 0xa6, 0xe9, 0xc7, 0x6a, 0x4b, 0xc0, 0x9e, 0x76, 0xea, 0xe8, 0x99, 0x1e, 0xf5, 0xec, 0xe4,
    0x5a,
];
/// Quicknet's genesis (Unix seconds) and period: round r is emitted at genesis + (r − 1)·3 s.
pub const QUICKNET_GENESIS_SECS: u64 = 1_692_803_367;
pub const QUICKNET_PERIOD_SECS: u64 = 3;
/// Blocks into the reveal epoch the pulse is aimed at, so that the chain has it by then (the
/// SDK's `SECURITY_BLOCK_OFFSET`).
pub const REVEAL_OFFSET_BLOCKS: u64 = 3;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TlockError {
    #[error("the timelock encryption failed: {0}")]
    Encrypt(String),
    #[error("not a timelocked commit: {0}")]
    Format(String),
    #[error("the commit does not decrypt with this signature: {0}")]
    Decrypt(String),
}

/// SCALE of subtensor's `WeightsTlockPayload { hotkey: Vec<u8>, uids: Vec<u16>, values:
/// Vec<u16>, version_key: u64 }` (a struct encodes as its fields in order).
pub fn payload(hotkey: &[u8; 32], uids: &[u16], values: &[u16], version_key: u64) -> Vec<u8> {
    (hotkey.to_vec(), uids.to_vec(), values.to_vec(), version_key).encode()
}

/// The identity of a round: drand signs SHA-256 of its big-endian number.
fn identity(round: u64) -> Identity {
    Identity::new(b"", &Sha256::digest(round.to_be_bytes()))
}

/// `payload` encrypted so that it opens with the quicknet pulse of `round`.
pub fn encrypt(payload: &[u8], round: u64) -> Result<Vec<u8>, TlockError> {
    let encrypt_error = |e: &dyn std::fmt::Debug| TlockError::Encrypt(format!("{e:?}"));
    let key = <TinyBLS381 as EngineBLS>::PublicKeyGroup::deserialize_compressed(&QUICKNET_PUBLIC_KEY[..])
        .map_err(|e| encrypt_error(&e))?;
    let mut secret = [0u8; 32];
    OsRng.fill_bytes(&mut secret);
    let sealed = tle::<TinyBLS381, AESGCMBlockCipherProvider, _>(key, secret, payload, identity(round), OsRng)
        .map_err(|e| encrypt_error(&e))?;
    serialize(&sealed).map_err(|e| encrypt_error(&e))
}

/// The commit's bytes as the chain and `bittensor-drand` read them: U (G2, compressed), then V,
/// W, the AES-GCM body and the cipher suite, each an arkworks `Vec<u8>` (u64 LE length, bytes).
/// (`timelock` 0.3 writes V and W as bare 32-byte arrays; the chain's copy of the library
/// writes them as vectors.)
fn serialize(sealed: &TLECiphertext<TinyBLS381>) -> Result<Vec<u8>, ark_serialize::SerializationError> {
    let mut out = Vec::new();
    sealed.header.u.serialize_compressed(&mut out)?;
    for part in [&sealed.header.v[..], &sealed.header.w[..], &sealed.body[..], &sealed.cipher_suite[..]] {
        out.extend((part.len() as u64).to_le_bytes());
        out.extend(part);
    }
    Ok(out)
}

/// The inverse of [`serialize`], into `timelock`'s own layout.
fn deserialize(commit: &[u8]) -> Result<TLECiphertext<TinyBLS381>, TlockError> {
    const U: usize = 96;
    let format = |what: &str| TlockError::Format(format!("{what} ({} bytes)", commit.len()));
    let hash = |at: usize| -> Result<&[u8], TlockError> {
        let length = commit.get(at..at + 8).ok_or_else(|| format("cut short"))?;
        if u64::from_le_bytes(length.try_into().unwrap_or_default()) != 32 {
            return Err(format("V and W must be 32 bytes"));
        }
        commit.get(at + 8..at + 40).ok_or_else(|| format("cut short"))
    };
    let mut own = commit.get(..U).ok_or_else(|| format("cut short"))?.to_vec();
    own.extend(hash(U)?);
    own.extend(hash(U + 40)?);
    own.extend(&commit[U + 80..]);
    TLECiphertext::<TinyBLS381>::deserialize_compressed(&*own).map_err(|e| TlockError::Format(e.to_string()))
}

/// Opens a commit with a round's pulse (the BLS signature, G1 compressed): what the chain does
/// at the reveal; here for tests and the chain double.
pub fn decrypt(commit: &[u8], signature: &[u8]) -> Result<Vec<u8>, TlockError> {
    let sealed = deserialize(commit)?;
    let signature = <TinyBLS381 as EngineBLS>::SignatureGroup::deserialize_compressed(signature)
        .map_err(|e| TlockError::Decrypt(e.to_string()))?;
    tld::<TinyBLS381, AESGCMBlockCipherProvider>(sealed, signature).map_err(|e| TlockError::Decrypt(format!("{e:?}")))
}

/// What the reveal round depends on, read from the chain at `head`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Schedule {
    pub netuid: u16,
    /// `Tempo`: an epoch is `tempo + 1` blocks.
    pub tempo: u16,
    /// `RevealPeriodEpochs`: the commit opens this many epochs after the one it lands in.
    pub reveal_period_epochs: u64,
    pub head: u64,
}

/// The block whose pulse the commit is aimed at: `REVEAL_OFFSET_BLOCKS` into the reveal epoch.
/// Epochs as the bundled runtime counts them: block b is in epoch (b + netuid + 1) / (tempo + 1).
pub fn reveal_block(schedule: &Schedule) -> u64 {
    let length = u64::from(schedule.tempo) + 1;
    let shift = u64::from(schedule.netuid) + 1;
    let epoch = (schedule.head + shift) / length;
    let first = (epoch + schedule.reveal_period_epochs).saturating_mul(length).saturating_sub(shift);
    first + REVEAL_OFFSET_BLOCKS
}

/// The quicknet round emitted when the reveal block is due, `now_ms` (Unix milliseconds) being
/// the head's time and blocks `block_ms` apart; rounded down, so the pulse exists by then.
pub fn reveal_round(schedule: &Schedule, now_ms: u64, block_ms: u64) -> u64 {
    let due_ms = now_ms + reveal_block(schedule).saturating_sub(schedule.head) * block_ms;
    (due_ms.saturating_sub(QUICKNET_GENESIS_SECS * 1000) / (QUICKNET_PERIOD_SECS * 1000)).max(1)
}

/// `commit_timelocked_mechanism_weights(netuid, mecid, commit, reveal_round,
/// commit_reveal_version)`.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct TimelockedCommit {
    pub netuid: u16,
    pub mecid: u8,
    #[serde(serialize_with = "as_hex")]
    pub commit: Vec<u8>,
    pub reveal_round: u64,
    pub commit_reveal_version: u16,
}

fn as_hex<S: serde::Serializer>(bytes: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    serializer.serialize_str(&format!("0x{hex}"))
}

/// The commit of the weights `args` for the validator `hotkey` (its public key), to open at the
/// pulse due `REVEAL_OFFSET_BLOCKS` into the reveal epoch (`reveal_round`).
pub fn commit(
    args: &SetMechanismWeights,
    hotkey: &[u8; 32],
    schedule: &Schedule,
    commit_reveal_version: u16,
    now_ms: u64,
    block_ms: u64,
) -> Result<TimelockedCommit, TlockError> {
    let reveal_round = reveal_round(schedule, now_ms, block_ms);
    let sealed = encrypt(&payload(hotkey, &args.dests, &args.weights, args.version_key), reveal_round)?;
    Ok(TimelockedCommit { netuid: args.netuid, mecid: args.mecid, commit: sealed, reveal_round, commit_reveal_version })
}

/// The subtensor target block time the reveal round is computed with, as the SDK does.
pub const BLOCK_MS: u64 = 12_000;

/// [`commit`] for the subnet as read from the chain at `now_ms`.
pub fn for_chain(
    args: &SetMechanismWeights,
    hotkey: &[u8; 32],
    chain: &Snapshot,
    now_ms: u64,
) -> Result<TimelockedCommit, TlockError> {
    let schedule = Schedule {
        netuid: args.netuid,
        tempo: chain.tempo,
        reveal_period_epochs: chain.reveal_period_epochs,
        head: chain.block,
    };
    commit(args, hotkey, &schedule, chain.commit_reveal_version, now_ms, BLOCK_MS)
}

#[cfg(test)]
#[path = "tlock_tests.rs"]
mod tests;
