//! The weight call's SCALE bytes (`pallet index ‖ call index ‖ arguments`), encoded by subxt
//! from the mainnet metadata bundled here, offline: what a signer signs inside the extrinsic.
//! `finney-metadata.scale` is `shared/reference/bittensor/finney-metadata.scale` (V16,
//! committed by a public Rust client on 2026-04-22); it goes stale when the runtime upgrades.

use subxt::dynamic::Value;
use subxt::ext::codec::Decode;
use subxt::metadata::{ArcMetadata, Metadata};

use super::push::SetMechanismWeights;

/// Bittensor mainnet ("finney") runtime metadata.
pub const FINNEY_METADATA: &[u8] = include_bytes!("finney-metadata.scale");

/// The runtime version the metadata describes (its `System::Version` constant): the node must
/// report the same spec version, or the bundled metadata may no longer describe its calls.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuntimeVersion {
    pub spec_name: String,
    pub spec_version: u32,
    pub transaction_version: u32,
    /// The constant's SCALE bytes (`Core_version` answers the same encoding).
    pub encoded: Vec<u8>,
}

impl RuntimeVersion {
    /// The same encoding with another spec version (the chain double's stale-runtime case).
    pub fn encode_with_spec(&self, spec_version: u32) -> Vec<u8> {
        let mut bytes = self.encoded.clone();
        let at = self.spec_version_offset();
        bytes[at..at + 4].copy_from_slice(&spec_version.to_le_bytes());
        bytes
    }

    fn spec_version_offset(&self) -> usize {
        // spec_name (compact-prefixed string), impl_name, authoring_version u32, then spec_version.
        let input = &mut &self.encoded[..];
        let _ = <(String, String, u32)>::decode(input);
        self.encoded.len() - input.len()
    }
}

/// Reads `System::Version` from the metadata.
pub fn runtime_version(metadata: &Metadata) -> Result<RuntimeVersion, CallDataError> {
    let bytes = metadata
        .pallet_by_name("System")
        .and_then(|p| p.constant_by_name("Version"))
        .map(|c| c.value().to_vec())
        .ok_or_else(|| CallDataError::Metadata("no System::Version constant".into()))?;
    type Head = (String, String, u32, u32, u32, Vec<([u8; 8], u32)>, u32);
    let (spec_name, _, _, spec_version, _, _, transaction_version) = Head::decode(&mut &bytes[..])
        .map_err(|e| CallDataError::Metadata(format!("System::Version does not decode: {e}")))?;
    Ok(RuntimeVersion { spec_name, spec_version, transaction_version, encoded: bytes })
}

/// Why subxt could not encode the call.
#[derive(Debug, thiserror::Error)]
pub enum CallDataError {
    #[error("the bundled metadata does not decode: {0}")]
    Metadata(String),
    #[error("the metadata refuses SubtensorModule.{call}: {message}")]
    Encode { call: String, message: String },
}

/// Decodes runtime metadata (`meta` prefix, V14 to V16).
pub fn metadata(bytes: &[u8]) -> Result<ArcMetadata, CallDataError> {
    Metadata::decode_from(bytes).map(Metadata::arc).map_err(|e| CallDataError::Metadata(e.to_string()))
}

/// `SubtensorModule.set_mechanism_weights(netuid, mecid, dests, weights, version_key)` as
/// call data: the argument types come from `metadata`, not from this code.
pub fn set_mechanism_weights(metadata: &ArcMetadata, args: &SetMechanismWeights) -> Result<Vec<u8>, CallDataError> {
    let list = |xs: &[u16]| Value::unnamed_composite(xs.iter().map(|&x| Value::u128(u128::from(x))));
    let fields = vec![
        Value::u128(u128::from(args.netuid)),
        Value::u128(u128::from(args.mecid)),
        list(&args.dests),
        list(&args.weights),
        Value::u128(u128::from(args.version_key)),
    ];
    encode(metadata, "set_mechanism_weights", fields)
}

fn encode(metadata: &ArcMetadata, call: &str, fields: Vec<Value>) -> Result<Vec<u8>, CallDataError> {
    let payload = subxt::dynamic::tx("SubtensorModule", call, fields);
    let failed = |e: &dyn std::fmt::Display| CallDataError::Encode { call: call.to_string(), message: e.to_string() };
    // Offline: any spec version will do, the metadata is the only input that matters here.
    let config = subxt::SubstrateConfig::builder()
        .set_metadata_for_spec_versions([(0, metadata.clone())])
        .set_spec_version_for_block_ranges([subxt::config::substrate::SpecVersionForRange {
            block_range: 0..1,
            spec_version: 0,
            transaction_version: 0,
        }])
        .build();
    let client = subxt::OfflineClient::new_with_config(config);
    let at = client.at_block(0u64).map_err(|e| failed(&e))?;
    at.tx().call_data(&payload).map_err(|e| failed(&e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(dests: Vec<u16>, weights: Vec<u16>) -> SetMechanismWeights {
        SetMechanismWeights { netuid: 56, mecid: 0, dests, weights, version_key: 10_005_000 }
    }

    #[test]
    fn encodes_pallet_and_call_index_then_the_arguments() {
        let md = metadata(FINNEY_METADATA).unwrap();
        let bytes = set_mechanism_weights(&md, &args(vec![1, 2, 4], vec![65535, 58973, 6167])).unwrap();
        // SubtensorModule is pallet 7, set_mechanism_weights call 119; netuid u16, mecid u8,
        // two Vec<u16> (compact length 3 = 0x0c), version_key u64, all little-endian.
        let expected = [
            &[7u8, 119][..],
            &56u16.to_le_bytes(),
            &[0],
            &[0x0c],
            &[1, 0, 2, 0, 4, 0],
            &[0x0c],
            &[0xff, 0xff, 0x5d, 0xe6, 0x17, 0x18],
            &10_005_000u64.to_le_bytes(),
        ]
        .concat();
        assert_eq!(bytes, expected);
    }

    #[test]
    fn runtime_version_comes_from_the_metadata() {
        let md = metadata(FINNEY_METADATA).unwrap();
        let version = runtime_version(&md).unwrap();
        assert_eq!(version.spec_name, "node-subtensor");
        assert!(version.spec_version > 200, "{version:?}");
        let bumped = version.encode_with_spec(version.spec_version + 1);
        assert_eq!(&bumped[..version.spec_version_offset()], &version.encoded[..version.spec_version_offset()]);
        assert_ne!(bumped, version.encoded);
    }

    #[test]
    fn arguments_the_metadata_refuses_are_errors() {
        let md = metadata(FINNEY_METADATA).unwrap();
        let empty = SetMechanismWeights { netuid: 56, mecid: 0, dests: vec![], weights: vec![], version_key: 0 };
        assert!(set_mechanism_weights(&md, &empty).is_ok());
        let err = encode(&md, "set_mechanism_weights", vec![Value::u128(1 << 20)]).unwrap_err().to_string();
        assert!(err.contains("SubtensorModule.set_mechanism_weights"), "{err}");
        assert!(encode(&md, "no_such_call", vec![]).is_err());
        assert!(metadata(&FINNEY_METADATA[..1000]).is_err());
    }
}
