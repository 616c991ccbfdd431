//! Scoring one task (WP §2.5–2.6): failed, duplicate and suspicious submissions, ranks, scores
//! and the task weight.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::records::{SubmissionRecord, TaskRecord};
use super::{MechanismConfig, TaskType};

/// What became of one submission.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SubmissionStatus {
    /// Ranked among the valid submissions.
    Ranked,
    /// Its two losses were not both finite numbers.
    Failed,
    /// Same weights or same losses as an earlier submission.
    Duplicate,
    /// Its synthetic−test gap is far above the task's typical gap.
    Flagged,
}

impl SubmissionStatus {
    pub fn label(&self) -> &'static str {
        match self {
            SubmissionStatus::Ranked => "ranked",
            SubmissionStatus::Failed => "failed",
            SubmissionStatus::Duplicate => "duplicate",
            SubmissionStatus::Flagged => "flagged",
        }
    }
}

/// The verdict on one submission of a task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SubmissionScore {
    pub miner: String,
    pub status: SubmissionStatus,
    /// The miner whose identical submission was kept, when this one is a duplicate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duplicate_of: Option<String>,
    /// `0.7·test + 0.3·synth` (text) or `0.25·text_guided + 0.75·no_text` (image); absent when failed.
    pub weighted_loss: Option<f64>,
    /// 1-based place among the ranked submissions.
    pub rank: Option<usize>,
    pub score: f64,
    /// `score · task_weight`: what the leaderboard sums.
    pub adjusted_score: f64,
}

/// The verdict on a whole task. `submissions` are sorted by miner id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskScore {
    pub id: String,
    pub task_weight: f64,
    pub ranked: usize,
    #[serde(rename = "scores")]
    pub submissions: Vec<SubmissionScore>,
}

/// Task weight `W = max(1, 2·√(hours·B))` with `B = min(40, max(1, ⌊params_b⌋))`.
pub fn task_weight(config: &MechanismConfig, model_params_b: f64, hours: f64) -> f64 {
    let size = model_params_b.floor().max(1.0).min(config.model_size_cap_b);
    (2.0 * (hours * size).sqrt()).max(1.0)
}

/// The weighted loss of a pair of losses, or `None` unless both are finite.
pub fn weighted_loss(config: &MechanismConfig, task_type: TaskType, pair: (Option<f64>, Option<f64>)) -> Option<f64> {
    let (Some(first), Some(second)) = pair else { return None };
    if !first.is_finite() || !second.is_finite() {
        return None;
    }
    let w = if task_type.is_text() { config.text_test_weight } else { config.image_text_guided_weight };
    Some(w * first + (1.0 - w) * second)
}

/// Scores one task exactly as the specification of `gradients score` says.
pub fn score_task(config: &MechanismConfig, task: &TaskRecord) -> TaskScore {
    let subs = &task.submissions;
    let losses: Vec<Option<f64>> =
        subs.iter().map(|s| weighted_loss(config, task.task_type, s.loss_pair(task.task_type))).collect();
    let mut status: Vec<SubmissionStatus> =
        losses.iter().map(|l| if l.is_some() { SubmissionStatus::Ranked } else { SubmissionStatus::Failed }).collect();

    let duplicate_of = mark_duplicates(task.task_type, subs, &mut status);
    if task.task_type.is_text() {
        mark_suspicious(config, subs, &mut status);
    }

    let mut ranked: Vec<usize> = (0..subs.len()).filter(|&i| status[i] == SubmissionStatus::Ranked).collect();
    // Successive halving: the survivors of a later rung come first, then losses decide.
    ranked.sort_by(|&a, &b| {
        let (la, lb) = (losses[a].unwrap_or(f64::INFINITY), losses[b].unwrap_or(f64::INFINITY));
        let rung = |i: usize| subs[i].rung.unwrap_or(0);
        rung(b).cmp(&rung(a)).then_with(|| la.total_cmp(&lb)).then_with(|| earlier(&subs[a], &subs[b]))
    });
    let n = ranked.len();
    let penalised =
        if n > config.penalty_min_ranked { ((config.penalty_share * n as f64).floor() as usize).max(1) } else { 0 };
    let mut rank = vec![None; subs.len()];
    let mut score = vec![0.0; subs.len()];
    for (place, &i) in ranked.iter().enumerate() {
        rank[i] = Some(place + 1);
        score[i] = if place == 0 {
            config.first_place_score
        } else if place >= n - penalised {
            config.penalty_score
        } else {
            0.0
        };
    }
    for (i, st) in status.iter().enumerate() {
        if matches!(st, SubmissionStatus::Failed | SubmissionStatus::Duplicate) && n >= 1 {
            score[i] = config.penalty_score;
        }
    }

    let weight = task_weight(config, task.model_params_b, task.hours);
    let mut submissions: Vec<SubmissionScore> = subs
        .iter()
        .enumerate()
        .map(|(i, s)| SubmissionScore {
            miner: s.miner.clone(),
            status: status[i],
            duplicate_of: duplicate_of[i].map(|kept| subs[kept].miner.clone()),
            weighted_loss: losses[i],
            rank: rank[i],
            score: score[i],
            adjusted_score: score[i] * weight,
        })
        .collect();
    submissions.sort_by(|a, b| a.miner.cmp(&b.miner));
    TaskScore { id: task.id.clone(), task_weight: weight, ranked: n, submissions }
}

/// Earlier `submitted_at` first, then the smaller miner id.
fn earlier(a: &SubmissionRecord, b: &SubmissionRecord) -> std::cmp::Ordering {
    a.submitted_at.cmp(&b.submitted_at).then_with(|| a.miner.cmp(&b.miner))
}

/// Groups non-failed submissions that share a weights hash or both exact losses (transitively),
/// and keeps only the earliest of each group. Returns, for each duplicate, the index kept.
///
/// Tasks have tens of submissions, so comparing every pair is cheaper than hashing them.
fn mark_duplicates(
    task_type: TaskType,
    subs: &[SubmissionRecord],
    status: &mut [SubmissionStatus],
) -> Vec<Option<usize>> {
    let alive: Vec<usize> = (0..subs.len()).filter(|&i| status[i] != SubmissionStatus::Failed).collect();
    let keys: Vec<(u64, u64)> = alive
        .iter()
        .map(|&i| {
            let (a, b) = subs[i].loss_pair(task_type);
            (exact_bits(a.unwrap_or(f64::NAN)), exact_bits(b.unwrap_or(f64::NAN)))
        })
        .collect();
    let mut parent: Vec<usize> = (0..subs.len()).collect();
    for (x, &i) in alive.iter().enumerate() {
        for (y, &j) in alive.iter().enumerate().skip(x + 1) {
            let same_hash = matches!((&subs[i].weights_sha256, &subs[j].weights_sha256), (Some(a), Some(b)) if a == b);
            if same_hash || keys[x] == keys[y] {
                union(&mut parent, i, j);
            }
        }
    }
    // The keeper of each group, stored at the group's root.
    let mut keeper: Vec<Option<usize>> = vec![None; subs.len()];
    for &i in &alive {
        let root = find(&mut parent, i);
        match keeper[root] {
            Some(kept) if !earlier(&subs[i], &subs[kept]).is_lt() => {}
            _ => keeper[root] = Some(i),
        }
    }
    let mut duplicate_of = vec![None; subs.len()];
    for &i in &alive {
        let kept = keeper[find(&mut parent, i)].unwrap_or(i);
        if kept != i {
            status[i] = SubmissionStatus::Duplicate;
            duplicate_of[i] = Some(kept);
        }
    }
    duplicate_of
}

/// Bits for exact equality, with −0.0 and 0.0 treated as the same number.
fn exact_bits(x: f64) -> u64 {
    if x == 0.0 { 0 } else { x.to_bits() }
}

fn find(parent: &mut [usize], mut i: usize) -> usize {
    while parent[i] != i {
        parent[i] = parent[parent[i]];
        i = parent[i];
    }
    i
}

fn union(parent: &mut [usize], a: usize, b: usize) {
    let (ra, rb) = (find(parent, a), find(parent, b));
    if ra != rb {
        parent[rb] = ra;
    }
}

/// Flags text submissions whose synthetic−test gap exceeds the median gap by more than
/// `0.5·σ(test losses)`, when at least three remain and σ > 0.
fn mark_suspicious(config: &MechanismConfig, subs: &[SubmissionRecord], status: &mut [SubmissionStatus]) {
    let remaining: Vec<usize> = (0..subs.len()).filter(|&i| status[i] == SubmissionStatus::Ranked).collect();
    if remaining.len() < config.suspicious_min_submissions.max(1) {
        return;
    }
    // Every remaining submission has two finite losses (it is not failed).
    let test = |i: usize| subs[i].test_loss.unwrap_or(0.0);
    let gap = |i: usize| subs[i].synth_loss.unwrap_or(0.0) - test(i);
    let n = remaining.len() as f64;
    let mean = remaining.iter().map(|&i| test(i)).sum::<f64>() / n;
    let sigma = (remaining.iter().map(|&i| (test(i) - mean).powi(2)).sum::<f64>() / n).sqrt();
    if sigma <= 0.0 {
        return;
    }
    let mut gaps: Vec<f64> = remaining.iter().map(|&i| gap(i)).collect();
    gaps.sort_by(f64::total_cmp);
    let mid = gaps.len() / 2;
    let median = if gaps.len() % 2 == 1 { gaps[mid] } else { (gaps[mid - 1] + gaps[mid]) / 2.0 };
    for &i in &remaining {
        if gap(i) - median > config.suspicious_sigma * sigma {
            status[i] = SubmissionStatus::Flagged;
        }
    }
}

/// Mean of each miner's scores over tasks finished in the 24 hours before `now`: the
/// "average quality today" that miner selection weighs (WP §2.2).
pub fn average_score_today(config: &MechanismConfig, tasks: &[TaskRecord], now: DateTime<Utc>) -> HashMap<String, f64> {
    let mut sums: HashMap<String, (f64, usize)> = HashMap::new();
    for task in tasks {
        let age = now - task.finished_at;
        if age < chrono::Duration::zero() || age > chrono::Duration::days(1) {
            continue;
        }
        for sub in score_task(config, task).submissions {
            let entry = sums.entry(sub.miner).or_default();
            entry.0 += sub.score;
            entry.1 += 1;
        }
    }
    sums.into_iter().map(|(miner, (sum, count))| (miner, sum / count as f64)).collect()
}

#[cfg(test)]
#[path = "scoring_tests.rs"]
mod tests;
