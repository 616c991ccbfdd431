//! Differential tests against the reference Python SDK: our chain weight vectors, and the
//! weight call's bytes subxt encodes from the bundled metadata.
//!
//! `tests/chain/sdk-vectors` installs the pinned `bittensor` from PyPI into its own cached venv,
//! has it compute thousands of vectors and prints the file; `scripts/test` passes that path in
//! `GRADIENTS_SDK_VECTORS`. Ignored by default (it needs the SDK); never skips when run.

mod common;

use gradients::chain::call_data::{self, FINNEY_METADATA};
use gradients::chain::push::SetMechanismWeights;
use gradients::chain::weights::sdk_u16;
use serde::Deserialize;

#[derive(Deserialize)]
struct Case {
    min_allowed_weights: u16,
    max_weights_limit: u16,
    weights: Vec<f64>,
    dests: Vec<u16>,
    values: Vec<u16>,
}

#[test]
#[ignore = "needs the SDK's vectors: GRADIENTS_SDK_VECTORS=$(tests/chain/sdk-vectors | tail -n 1)"]
fn u16_vectors_equal_the_reference_sdk() {
    let path = std::env::var("GRADIENTS_SDK_VECTORS")
        .expect("GRADIENTS_SDK_VECTORS must name the file tests/chain/sdk-vectors prints");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let mut lines = text.lines();
    let header: serde_json::Value = serde_json::from_str(lines.next().expect("a provenance line")).unwrap();
    let cases: Vec<Case> =
        lines.enumerate().map(|(i, l)| serde_json::from_str(l).unwrap_or_else(|e| panic!("case {i}: {e}"))).collect();
    assert_eq!(cases.len() as u64, header["cases"].as_u64().unwrap(), "{path}: truncated");
    assert!(cases.len() >= 1000, "too few cases to mean anything");
    let mut mismatches = Vec::new();
    for (i, case) in cases.iter().enumerate() {
        let dense: Vec<f32> = case.weights.iter().map(|&w| w as f32).collect();
        let ours = sdk_u16(&dense, case.min_allowed_weights, case.max_weights_limit);
        if ours != (case.dests.clone(), case.values.clone()) {
            mismatches.push(format!(
                "case {i} (n {}, min {}, max {}): ours {:?}, sdk {:?}",
                dense.len(),
                case.min_allowed_weights,
                case.max_weights_limit,
                ours,
                (&case.dests, &case.values)
            ));
        }
    }
    // Every padding and limit path must have been exercised, or equality proves little.
    let padded = cases.iter().filter(|c| c.dests.len() == c.weights.len() && c.weights.contains(&0.0)).count();
    let empty = cases.iter().filter(|c| c.weights.iter().all(|&w| w == 0.0)).count();
    let clipped = cases.iter().filter(|c| c.max_weights_limit < u16::MAX && c.weights.len() > 1).count();
    assert!(padded > 100 && empty > 100 && clipped > 500, "padded {padded}, all-zero {empty}, limited {clipped}");
    assert!(
        mismatches.is_empty(),
        "{} of {} vectors differ from {}:\n{}",
        mismatches.len(),
        cases.len(),
        header["sdk"],
        mismatches.iter().take(10).cloned().collect::<Vec<_>>().join("\n")
    );
    eprintln!("{} vectors equal to {} (numpy {})", cases.len(), header["sdk"], header["numpy"]);
}

/// The bundled V16 metadata as V15, the newest the SDK's decoder reads: the same type registry,
/// pallets and call indices; only what V16 added (deprecation notes, associated types, view
/// functions, extension versions) is dropped. The SDK asks nodes for V15 the same way.
fn bundled_metadata_as_v15() -> Vec<u8> {
    use frame_metadata::{RuntimeMetadata, RuntimeMetadataPrefixed, v15};
    use subxt::ext::codec::{Decode, Encode};
    use subxt::ext::frame_metadata;

    let prefixed = RuntimeMetadataPrefixed::decode(&mut &FINNEY_METADATA[..]).expect("bundled metadata decodes");
    let RuntimeMetadata::V16(md) = prefixed.1 else { panic!("the bundled metadata is not V16") };
    let pallets = md
        .pallets
        .into_iter()
        .map(|p| v15::PalletMetadata {
            name: p.name,
            storage: p.storage.map(|s| v15::PalletStorageMetadata {
                prefix: s.prefix,
                entries: s
                    .entries
                    .into_iter()
                    .map(|e| v15::StorageEntryMetadata {
                        name: e.name,
                        modifier: e.modifier,
                        ty: e.ty,
                        default: e.default,
                        docs: e.docs,
                    })
                    .collect(),
            }),
            calls: p.calls.map(|c| v15::PalletCallMetadata { ty: c.ty }),
            event: p.event.map(|e| v15::PalletEventMetadata { ty: e.ty }),
            constants: p
                .constants
                .into_iter()
                .map(|c| v15::PalletConstantMetadata { name: c.name, ty: c.ty, value: c.value, docs: c.docs })
                .collect(),
            error: p.error.map(|e| v15::PalletErrorMetadata { ty: e.ty }),
            index: p.index,
            docs: p.docs,
        })
        .collect();
    let x = md.extrinsic;
    let extrinsic = v15::ExtrinsicMetadata {
        version: 4,
        address_ty: x.address_ty,
        call_ty: x.call_ty,
        signature_ty: x.signature_ty,
        // Only signed extrinsics need it; the call data does not.
        extra_ty: x.signature_ty,
        signed_extensions: x
            .transaction_extensions
            .into_iter()
            .map(|e| v15::SignedExtensionMetadata { identifier: e.identifier, ty: e.ty, additional_signed: e.implicit })
            .collect(),
    };
    let apis = md
        .apis
        .into_iter()
        .map(|a| v15::RuntimeApiMetadata {
            name: a.name,
            methods: a
                .methods
                .into_iter()
                .map(|m| v15::RuntimeApiMethodMetadata {
                    name: m.name,
                    inputs: m
                        .inputs
                        .into_iter()
                        .map(|i| v15::RuntimeApiMethodParamMetadata { name: i.name, ty: i.ty })
                        .collect(),
                    output: m.output,
                    docs: m.docs,
                })
                .collect(),
            docs: a.docs,
        })
        .collect();
    let v15 = v15::RuntimeMetadataV15 {
        types: md.types,
        pallets,
        extrinsic,
        ty: x.call_ty,
        apis,
        outer_enums: md.outer_enums,
        custom: md.custom,
    };
    RuntimeMetadataPrefixed::from(v15).encode()
}

#[test]
#[ignore = "needs the SDK: GRADIENTS_SDK_PYTHON=$(tests/chain/sdk-vectors --python | tail -n 1)"]
fn call_data_equals_the_reference_sdk() {
    use rand::{Rng, SeedableRng};

    let python = sdk_python();
    let dir = tempfile::tempdir().unwrap();
    let v15 = dir.path().join("finney-v15.scale");
    std::fs::write(&v15, bundled_metadata_as_v15()).unwrap();

    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(20261130);
    let cases: Vec<SetMechanismWeights> = (0..300)
        .map(|i| {
            let n = [0, 1, 2, 63, 64, 255, 256, 1024][i % 8].min(rng.random_range(0..=1100));
            SetMechanismWeights {
                netuid: rng.random(),
                mecid: rng.random_range(0..4),
                dests: (0..n).map(|_| rng.random()).collect(),
                weights: (0..n).map(|_| rng.random()).collect(),
                version_key: [0, 10_005_000, u64::MAX, rng.random()][i % 4],
            }
        })
        .collect();
    let lines: String = cases.iter().map(|c| serde_json::to_string(c).unwrap() + "\n").collect();
    let cases_file = dir.path().join("cases.jsonl");
    std::fs::write(&cases_file, lines).unwrap();
    let script = common::repo().join("tests/chain/sdk_call.py");
    let script = script.to_str().unwrap();
    let out = std::process::Command::new(&python)
        .args([std::ffi::OsStr::new(script), v15.as_os_str(), cases_file.as_os_str()])
        .stderr(std::process::Stdio::inherit())
        .output()
        .unwrap_or_else(|e| panic!("{python}: {e}"));
    assert!(out.status.success(), "{script} failed");
    let sdk: Vec<String> = String::from_utf8(out.stdout).unwrap().lines().map(str::to_string).collect();
    assert_eq!(sdk.len(), cases.len(), "one line per case");

    let md = call_data::metadata(FINNEY_METADATA).unwrap();
    for (i, (case, sdk)) in cases.iter().zip(&sdk).enumerate() {
        let ours = call_data::set_mechanism_weights(&md, case).unwrap();
        let ours: String = "0x".to_string() + &ours.iter().map(|b| format!("{b:02x}")).collect::<String>();
        assert_eq!(&ours, sdk, "case {i} ({} uids)", case.dests.len());
    }
    eprintln!("{} calls byte-identical to the SDK's compose_call", cases.len());
}

/// The SDK's python, from `GRADIENTS_SDK_PYTHON`.
fn sdk_python() -> String {
    std::env::var("GRADIENTS_SDK_PYTHON")
        .expect("GRADIENTS_SDK_PYTHON must name the SDK venv's python (tests/chain/sdk-vectors --python)")
}

/// `tests/chain/sdk_extrinsic.py ARGS` in the SDK's venv: its JSON answer.
fn sdk_extrinsic(args: &[&std::ffi::OsStr]) -> serde_json::Value {
    let script = common::repo().join("tests/chain/sdk_extrinsic.py");
    let script = script.to_str().unwrap();
    let out = std::process::Command::new(sdk_python())
        .arg(script)
        .args(args)
        .stderr(std::process::Stdio::inherit())
        .output()
        .unwrap();
    assert!(out.status.success(), "{script} {args:?} failed");
    serde_json::from_slice(&out.stdout).unwrap()
}

/// A hotkey the SDK's wallet wrote signs our push; the double accepts it; the SDK's decoder reads
/// our signed extrinsic back: the wallet's address, the nonce, a 128-block era, the call.
#[test]
#[ignore = "needs the SDK: GRADIENTS_SDK_PYTHON=$(tests/chain/sdk-vectors --python | tail -n 1)"]
fn the_sdk_wallet_key_signs_and_the_sdk_decodes_our_extrinsic() {
    use common::double::{Double, push, state};
    use serde_json::json;

    let dir = tempfile::tempdir().unwrap();
    let wallet = sdk_extrinsic(&["wallet".as_ref(), dir.path().as_os_str()]);
    let ss58 = wallet["ss58"].as_str().unwrap();
    let mut chain = state(1000, 0);
    chain["subnets"][0]["hotkeys"][5] = json!(ss58);
    let double = Double::start(&chain);
    let (out, report) = push(&double, std::path::Path::new(wallet["path"].as_str().unwrap()), &[]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(report["validator"], ss58);
    let accepted = double.accepted();
    assert_eq!(accepted.len(), 1);

    let v15 = dir.path().join("finney-v15.scale");
    std::fs::write(&v15, bundled_metadata_as_v15()).unwrap();
    let hex = accepted[0]["extrinsic"].as_str().unwrap();
    let decoded = sdk_extrinsic(&["decode".as_ref(), v15.as_os_str(), hex.as_ref()]);
    assert_eq!(decoded["address"], ss58, "{decoded}");
    assert_eq!(
        (decoded["module"].as_str(), decoded["function"].as_str()),
        (Some("SubtensorModule"), Some("set_mechanism_weights"))
    );
    assert_eq!(decoded["nonce"], 0);
    // Mortal for 128 blocks from block 1000, the double's head when it was signed: (period, phase).
    assert_eq!(decoded["era"], json!([128, 1000 % 128]), "{decoded}");
    let args = &report["plan"]["call"]["args"];
    assert_eq!(decoded["args"]["netuid"], 56);
    assert_eq!(decoded["args"]["dests"], args["dests"]);
    assert_eq!(decoded["args"]["weights"], args["weights"]);
    assert_eq!(decoded["args"]["version_key"], args["version_key"]);
    eprintln!("the SDK decoded our extrinsic: {decoded}");
}

/// drand quicknet's pulse of round 1000 (api.drand.sh, quicknet chain hash 52db9ba7…).
const ROUND_1000: &str =
    "b44679b9a59af2ec876b1a6b1ad52ea9b1615fc3982b19576350f93447cb1125e342b73a8dd2bacbe47e4b6b63ed5e39";

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Vec<u8> {
    (0..text.len()).step_by(2).map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap()).collect()
}

/// Our timelocked commit and bittensor-drand's (the SDK's timelock library) open each other's
/// with drand's real pulse: the same ciphertext layout, identity and payload as the SDK sends.
#[test]
#[ignore = "needs the SDK: GRADIENTS_SDK_PYTHON=$(tests/chain/sdk-vectors --python | tail -n 1)"]
fn bittensor_drand_opens_our_timelocked_commit_and_we_open_its() {
    use gradients::chain::tlock;
    let payload = tlock::payload(&[7; 32], &[0, 3, 9, 1024], &[65535, 1, 32768, 7], 10_005_000);
    let commit = tlock::encrypt(&payload, 1000).unwrap();
    let script = common::repo().join("tests/chain/sdk_tlock.py");
    let script = script.to_str().unwrap();
    let out = std::process::Command::new(sdk_python())
        .args([script, &hex(&commit), &hex(&payload), ROUND_1000])
        .stderr(std::process::Stdio::inherit())
        .output()
        .unwrap();
    assert!(out.status.success(), "{script} failed");
    let answer: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(answer["opened"], hex(&payload), "bittensor-drand {} opens ours", answer["version"]);
    let theirs = unhex(answer["theirs"].as_str().unwrap());
    assert_eq!(theirs.len(), commit.len(), "the same layout");
    assert_eq!(tlock::decrypt(&theirs, &unhex(ROUND_1000)).unwrap(), payload, "we open theirs");
    eprintln!("bittensor-drand {} and ours open each other's commits for round 1000", answer["version"]);
}
