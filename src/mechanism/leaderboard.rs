//! The leaderboard (WP §2.6): adjusted scores summed over 1/3/7-day windows, normalised per
//! window, weighted into a quality, then transformed into weights that sum to one.

use chrono::{DateTime, Duration, Utc};
use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};

use super::MechanismConfig;
use super::config::Transform;
use super::records::TaskRecord;
use super::scoring::{TaskScore, score_task};

/// One miner's standing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MinerStanding {
    pub miner: String,
    pub quality: f64,
    pub weight: f64,
    /// The weight as the chain takes it: the largest weight maps to 65535.
    pub weight_u16: u16,
    /// Sum of adjusted scores in each window, in the order of the configured windows.
    pub window_sums: Vec<f64>,
    /// Tasks of the miner inside the longest window.
    pub tasks: usize,
}

/// The whole leaderboard: miners sorted by id, tasks sorted by id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Leaderboard {
    pub miners: Vec<MinerStanding>,
    pub tasks: Vec<TaskScore>,
}

/// Scores every task and computes the standings at `now` from those that finished at most
/// the longest window ago (and not in the future).
pub fn compute(config: &MechanismConfig, now: DateTime<Utc>, tasks: &[TaskRecord]) -> Leaderboard {
    let horizon = Duration::days(i64::from(config.horizon_days()));
    let windows: Vec<Duration> = config.windows.iter().map(|w| Duration::days(i64::from(w.days))).collect();
    // A fast unkeyed hash: miner ids are short, and a crafted collision only slows this offline sum.
    let mut index: FxHashMap<String, usize> = FxHashMap::default();
    let mut names: Vec<String> = Vec::new();
    let mut sums: Vec<f64> = Vec::new();
    let mut counts: Vec<usize> = Vec::new();
    let mut scored: Vec<TaskScore> = Vec::with_capacity(tasks.len());

    // Floating-point sums depend on order: visit tasks in a canonical order so that the same
    // records in any order give bit-identical weights.
    let mut order: Vec<&TaskRecord> = tasks.iter().collect();
    order.sort_by(|a, b| {
        (a.id.as_str(), a.finished_at, a.task_type, a.submissions.len())
            .cmp(&(b.id.as_str(), b.finished_at, b.task_type, b.submissions.len()))
            .then_with(|| a.hours.total_cmp(&b.hours))
            .then_with(|| a.model_params_b.total_cmp(&b.model_params_b))
    });
    for task in order {
        let score = score_task(config, task);
        let age = now - task.finished_at;
        if age >= Duration::zero() && age <= horizon {
            for sub in &score.submissions {
                let slot = match index.get(sub.miner.as_str()) {
                    Some(&slot) => slot,
                    None => {
                        names.push(sub.miner.clone());
                        sums.extend(std::iter::repeat_n(0.0, windows.len()));
                        counts.push(0);
                        index.insert(sub.miner.clone(), names.len() - 1);
                        names.len() - 1
                    }
                };
                counts[slot] += 1;
                for (w, window) in windows.iter().enumerate() {
                    if age <= *window {
                        sums[slot * windows.len() + w] += sub.adjusted_score;
                    }
                }
            }
        }
        scored.push(score);
    }

    // Miners in id order, for the same reason.
    let mut by_id: Vec<usize> = (0..names.len()).collect();
    by_id.sort_by(|&a, &b| names[a].cmp(&names[b]));
    let names: Vec<String> = by_id.iter().map(|&m| std::mem::take(&mut names[m])).collect();
    let sums: Vec<f64> =
        by_id.iter().flat_map(|&m| sums[m * windows.len()..(m + 1) * windows.len()].to_vec()).collect();
    let counts: Vec<usize> = by_id.iter().map(|&m| counts[m]).collect();

    let qualities = qualities(config, &sums, names.len());
    let weights = transform_weights(&config.transform, &qualities);
    let weights_u16 = to_u16(&weights);
    let miners: Vec<MinerStanding> = names
        .into_iter()
        .enumerate()
        .map(|(m, miner)| MinerStanding {
            miner,
            quality: qualities[m],
            weight: weights[m],
            weight_u16: weights_u16[m],
            window_sums: sums[m * windows.len()..(m + 1) * windows.len()].to_vec(),
            tasks: counts[m],
        })
        .collect();
    Leaderboard { miners, tasks: scored }
}

/// `Q(m) = Σ_w weight_w · max(0, P_w(m)) / max_m P_w`, with a window whose best sum is not
/// positive contributing nothing. `sums` is miner-major: `sums[m · windows + w]`.
fn qualities(config: &MechanismConfig, sums: &[f64], miners: usize) -> Vec<f64> {
    let n_windows = config.windows.len();
    let mut quality = vec![0.0; miners];
    for (w, window) in config.windows.iter().enumerate() {
        let best = (0..miners).map(|m| sums[m * n_windows + w]).fold(f64::NEG_INFINITY, f64::max);
        if best > 0.0 {
            for (m, q) in quality.iter_mut().enumerate() {
                *q += window.weight * sums[m * n_windows + w].max(0.0) / best;
            }
        }
    }
    quality
}

/// `f = 0.7·σ(9(x−0.5))^0.75 + 0.05·x` with `x = Q / max Q` (and `f = 0` when `Q = 0`),
/// normalised to sum to one. All zero when every quality is zero.
pub fn transform_weights(transform: &Transform, qualities: &[f64]) -> Vec<f64> {
    let best = qualities.iter().copied().fold(0.0, f64::max);
    if best <= 0.0 {
        return vec![0.0; qualities.len()];
    }
    let f: Vec<f64> = qualities
        .iter()
        .map(|&q| {
            if q <= 0.0 {
                return 0.0;
            }
            let x = q / best;
            let sigmoid = 1.0 / (1.0 + (-transform.steepness * (x - transform.shift)).exp());
            transform.sigmoid_weight * sigmoid.powf(transform.power) + transform.linear_weight * x
        })
        .collect();
    let total: f64 = f.iter().sum();
    if total <= 0.0 {
        return vec![0.0; qualities.len()];
    }
    f.into_iter().map(|v| v / total).collect()
}

/// `floor(65535 · weight / max weight + 0.5)`; all zero when every weight is zero.
pub fn to_u16(weights: &[f64]) -> Vec<u16> {
    let best = weights.iter().copied().fold(0.0, f64::max);
    weights.iter().map(|&w| if best > 0.0 { (65535.0 * w / best + 0.5).floor() as u16 } else { 0 }).collect()
}

#[cfg(test)]
#[path = "leaderboard_tests.rs"]
mod tests;
