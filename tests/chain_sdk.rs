//! Differential test: our chain weight vectors against the reference Python SDK's.
//!
//! `tests/chain/sdk-vectors` installs the pinned `bittensor` from PyPI into its own cached venv,
//! has it compute thousands of vectors and prints the file; `scripts/test` passes that path in
//! `GRADIENTS_SDK_VECTORS`. Ignored by default (it needs the SDK); never skips when run.

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
