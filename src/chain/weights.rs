//! The u16 weight vector a validator sets on its subnet, computed exactly as the reference
//! Python SDK does (`bittensor` 10.5.0, `utils/weight_utils.py`): `process_weights` with
//! `exclude_quantile = 0` (minimum-weights padding, max-weight clipping), then
//! `convert_weights_and_uids_for_emit` (max-upscale to 65535, round half to even, drop zeros).
//!
//! The SDK computes in numpy float32 (float64 on its padding path) and sums with numpy's
//! pairwise summation; both are reproduced here so the vectors are bit-identical, which
//! `tests/chain_sdk.rs` checks against the real SDK over thousands of inputs.

use std::collections::BTreeMap;
use std::ops::{Add, Div, Mul, Sub};

use serde::Serialize;

const U16_MAX: f64 = 65535.0;

/// The subnet's weight parameters, as the chain stores them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct SubnetLimits {
    /// `SubnetworkN`: the number of uids on the subnet.
    pub subnetwork_n: u16,
    /// `MinAllowedWeights`.
    pub min_allowed_weights: u16,
    /// `MaxWeightsLimit` (65535 means no limit).
    pub max_weights_limit: u16,
}

/// A leaderboard miner whose hotkey has no uid on the subnet: it gets no weight.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Unregistered {
    pub hotkey: String,
    /// The weight it would have had.
    pub weight: f64,
}

/// The weights to set: `dests[i]` gets `weights[i]`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ChainWeights {
    pub dests: Vec<u16>,
    pub weights: Vec<u16>,
    pub unregistered: Vec<Unregistered>,
}

/// Why no weight vector can be computed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum WeightsError {
    #[error("SubnetworkN is 0: the subnet has no uids to weight")]
    EmptySubnet,
    #[error("miner {hotkey:?}: field \"weight\" is {value}, must be finite and not negative")]
    BadWeight { hotkey: String, value: f64 },
    #[error("hotkey {hotkey:?}: uid {uid} is not below SubnetworkN {subnetwork_n}")]
    UidOutOfRange { hotkey: String, uid: u16, subnetwork_n: u16 },
    #[error("uid {uid} is mapped from two hotkeys, {first:?} and {second:?}")]
    DuplicateUid { uid: u16, first: String, second: String },
}

/// The chain's weights for `miners` (hotkey, leaderboard weight): every uid below
/// `SubnetworkN` is a candidate, a uid no leaderboard miner holds has weight 0, and miners
/// without a uid are reported in `unregistered`.
pub fn for_chain(
    miners: &[(String, f64)],
    uids: &BTreeMap<String, u16>,
    limits: SubnetLimits,
) -> Result<ChainWeights, WeightsError> {
    if limits.subnetwork_n == 0 {
        return Err(WeightsError::EmptySubnet);
    }
    let mut holder: BTreeMap<u16, &str> = BTreeMap::new();
    for (hotkey, &uid) in uids {
        if uid >= limits.subnetwork_n {
            return Err(WeightsError::UidOutOfRange { hotkey: hotkey.clone(), uid, subnetwork_n: limits.subnetwork_n });
        }
        if let Some(first) = holder.insert(uid, hotkey) {
            return Err(WeightsError::DuplicateUid { uid, first: first.to_string(), second: hotkey.clone() });
        }
    }
    let mut dense = vec![0f32; usize::from(limits.subnetwork_n)];
    let mut unregistered = Vec::new();
    for (hotkey, weight) in miners {
        if !weight.is_finite() || *weight < 0.0 {
            return Err(WeightsError::BadWeight { hotkey: hotkey.clone(), value: *weight });
        }
        match uids.get(hotkey) {
            // numpy's `astype(np.float32)`: round to nearest.
            Some(&uid) => dense[usize::from(uid)] = *weight as f32,
            None => unregistered.push(Unregistered { hotkey: hotkey.clone(), weight: *weight }),
        }
    }
    let (dests, weights) = sdk_u16(&dense, limits.min_allowed_weights, limits.max_weights_limit);
    Ok(ChainWeights { dests, weights, unregistered })
}

/// The SDK's pipeline over a dense vector (`dense[uid]`, one entry per uid):
/// `convert_weights_and_uids_for_emit(*process_weights(arange(n), dense, n, min, max/65535))`.
pub fn sdk_u16(dense: &[f32], min_allowed_weights: u16, max_weights_limit: u16) -> (Vec<u16>, Vec<u16>) {
    let (uids, weights) =
        process_weights(dense, usize::from(min_allowed_weights), f64::from(max_weights_limit) / U16_MAX);
    emit(&uids, &weights)
}

/// `process_weights` with `exclude_quantile = 0` (its default; a zero quantile keeps every
/// non-zero weight). Returns uids and float weights summing to about one.
fn process_weights(dense: &[f32], min_allowed: usize, limit: f64) -> (Vec<u16>, Vec<f64>) {
    let n = dense.len();
    let all = || (0..n).map(|i| i as u16).collect::<Vec<_>>();
    let non_zero: Vec<usize> = (0..n).filter(|&i| dense[i] > 0.0).collect();
    if non_zero.is_empty() || n < min_allowed {
        // Uniform over every uid.
        return (all(), vec![1.0 / n as f64; n]);
    }
    if non_zero.len() < min_allowed {
        // Every uid gets 1e-5 (numpy promotes to float64 here), the non-zero ones on top.
        let mut padded = vec![1e-5f64; n];
        for &i in &non_zero {
            padded[i] += f64::from(dense[i]);
        }
        return (all(), normalize_max_weight(&padded, limit));
    }
    let values: Vec<f32> = non_zero.iter().map(|&i| dense[i]).collect();
    let normalized = normalize_max_weight(&values, limit);
    (non_zero.iter().map(|&i| i as u16).collect(), normalized.into_iter().map(f64::from).collect())
}

/// `normalize_max_weight`: sum to one with no value above `limit`, in the element type the
/// SDK computes in (numpy 2 casts Python floats to it).
fn normalize_max_weight<T: Real>(x: &[T], limit: f64) -> Vec<T> {
    let n = x.len();
    if numpy_sum(x) == T::ZERO || n as f64 * limit <= 1.0 {
        return vec![T::ONE / T::from_f64(n as f64); n];
    }
    let mut values = x.to_vec();
    values.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    let values_sum = numpy_sum(&values);
    let estimation: Vec<T> = values.iter().map(|&v| v / values_sum).collect();
    let limit_t = T::from_f64(limit);
    if estimation.iter().all(|&e| e <= limit_t) {
        let sum = numpy_sum(x);
        return x.iter().map(|&w| w / sum).collect();
    }
    let epsilon = T::from_f64(1e-7);
    let cumsum: Vec<T> = estimation
        .iter()
        .scan(T::ZERO, |acc, &e| {
            *acc = *acc + e;
            Some(*acc)
        })
        .collect();
    let n_values = (0..n)
        .filter(|&i| {
            let estimation_sum = T::from_f64((n - i - 1) as f64) * estimation[i];
            estimation[i] / (estimation_sum + cumsum[i] + epsilon) < limit_t
        })
        .count();
    // `cumsum[n_values - 1]` with Python's negative index.
    let at = if n_values == 0 { n - 1 } else { n_values - 1 };
    let denominator = 1.0 - limit * (n - n_values) as f64;
    let cutoff_scale = (limit_t * cumsum[at] - epsilon) / T::from_f64(denominator);
    let cutoff = cutoff_scale * values_sum;
    let clipped: Vec<T> = x.iter().map(|&w| if w > cutoff { cutoff } else { w }).collect();
    let sum = numpy_sum(&clipped);
    clipped.iter().map(|&w| w / sum).collect()
}

/// `convert_weights_and_uids_for_emit`: max-upscale to 65535 in float64, Python's `round`
/// (half to even), drop the zeros; all-zero weights give nothing to set.
fn emit(uids: &[u16], weights: &[f64]) -> (Vec<u16>, Vec<u16>) {
    let max = weights.iter().copied().fold(0.0, f64::max);
    if max == 0.0 {
        return (Vec::new(), Vec::new());
    }
    uids.iter()
        .zip(weights)
        .filter_map(|(&uid, &w)| {
            let value = (w / max * U16_MAX).round_ties_even();
            (value != 0.0).then_some((uid, value as u16))
        })
        .unzip()
}

/// `ndarray.sum()` of a contiguous 1-D array: pairwise summation over blocks of the
/// iterator's 8192-element buffer, added in order to the identity.
fn numpy_sum<T: Real>(x: &[T]) -> T {
    x.chunks(8192).fold(T::ZERO, |acc, chunk| acc + pairwise_sum(chunk))
}

/// numpy's `pairwise_sum` (`loops_utils.h.src`): eight accumulators up to 128 elements,
/// halves (a multiple of eight) above.
fn pairwise_sum<T: Real>(a: &[T]) -> T {
    let n = a.len();
    if n < 8 {
        a.iter().fold(T::ZERO, |acc, &v| acc + v)
    } else if n <= 128 {
        let mut r: [T; 8] = std::array::from_fn(|j| a[j]);
        let whole = n - n % 8;
        for block in a[8..whole].chunks_exact(8) {
            for (acc, &v) in r.iter_mut().zip(block) {
                *acc = *acc + v;
            }
        }
        let res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
        a[whole..].iter().fold(res, |acc, &v| acc + v)
    } else {
        let half = n / 2;
        let half = half - half % 8;
        pairwise_sum(&a[..half]) + pairwise_sum(&a[half..])
    }
}

/// The float types numpy computes in here.
trait Real: Copy + PartialOrd + Add<Output = Self> + Sub<Output = Self> + Mul<Output = Self> + Div<Output = Self> {
    const ZERO: Self;
    const ONE: Self;
    fn from_f64(x: f64) -> Self;
}

impl Real for f32 {
    const ZERO: Self = 0.0;
    const ONE: Self = 1.0;
    fn from_f64(x: f64) -> Self {
        x as f32
    }
}

impl Real for f64 {
    const ZERO: Self = 0.0;
    const ONE: Self = 1.0;
    fn from_f64(x: f64) -> Self {
        x
    }
}

#[cfg(test)]
#[path = "weights_tests.rs"]
mod tests;
