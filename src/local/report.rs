//! The end of a run: the leaderboard table, "winner beats baseline by X %", the weights and
//! the run directory, as text or as JSON (`--output json`).

use std::fmt::Write as _;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::devices::GpuUse;

use crate::api::task::TaskSpec;
use crate::mechanism::scoring::{SubmissionStatus, score_task, weighted_loss};
use crate::tournament::{Phase, Role, TaskState, TournamentConfig, outcome, task_record};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunReport {
    pub task: String,
    pub task_type: String,
    pub phase: Phase,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    pub hours: Option<f64>,
    pub run_dir: String,
    /// Miners by rank, then the baseline and the untrained base model.
    pub rows: Vec<Row>,
    pub winner: Option<String>,
    /// `(baseline − winner) / |baseline| · 100`, on weighted loss: positive when the winner is better.
    pub winner_beats_baseline_pct: Option<f64>,
    pub winner_beats_base_model_pct: Option<f64>,
    /// Leaderboard weights of this task's miners, over every run in the data directory.
    pub weights: Vec<Weight>,
    /// The GPUs each workload was given and what it used (none on a machine without a GPU).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gpus: Vec<GpuUse>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Row {
    pub entrant: String,
    pub role: Role,
    pub strategy: Option<String>,
    pub test_loss: Option<f64>,
    pub synth_loss: Option<f64>,
    pub text_guided_loss: Option<f64>,
    pub no_text_loss: Option<f64>,
    pub weighted_loss: Option<f64>,
    pub train_loss: Option<f64>,
    /// The trainer stopped because its time ran out (not after its planned epochs).
    pub stopped_by_deadline: Option<bool>,
    /// ranked, failed, duplicate, flagged; `reference` for the baseline and the base model.
    pub status: String,
    pub reason: Option<String>,
    pub rank: Option<usize>,
    /// Task score (miners only).
    pub score: Option<f64>,
    /// Successive halving (`spec.halving`): the last rung (0-based) the miner trained in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rung: Option<u32>,
    /// Successive halving: cut after this rung; its losses are that rung's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eliminated_after: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Weight {
    pub miner: String,
    pub weight: f64,
    pub weight_u16: u16,
}

#[derive(Deserialize)]
struct WeightsFile {
    miners: Vec<Weight>,
}

pub fn build(
    id: &str,
    spec: &TaskSpec,
    state: &TaskState,
    weights: Option<&serde_json::Value>,
    run_dir: &Path,
    config: &TournamentConfig,
    gpus: Vec<GpuUse>,
) -> RunReport {
    let scored = task_record(id, spec, state).map(|r| score_task(&config.mechanism, &r));
    let mut rows: Vec<Row> = state
        .entrants
        .iter()
        .map(|e| {
            let outcome = outcome(e);
            let usable = outcome.scores.as_ref();
            let losses = usable.map(|r| {
                if spec.task_type.is_text() {
                    (r.test_loss, r.synth_loss)
                } else {
                    (r.text_guided_loss, r.no_text_loss)
                }
            });
            let reason = outcome.failure.clone();
            let sub = scored.as_ref().and_then(|s| s.submissions.iter().find(|x| x.miner == e.name));
            let status = match (e.role, sub) {
                (Role::Miner, Some(s)) => s.status.label().to_string(),
                (Role::Miner, None) => "pending".to_string(),
                _ if reason.is_some() => "failed".to_string(),
                _ => "reference".to_string(),
            };
            let reason = match sub {
                Some(s) if s.status == SubmissionStatus::Duplicate => {
                    s.duplicate_of.as_ref().map(|d| format!("same as {d}"))
                }
                Some(s) if s.status == SubmissionStatus::Flagged => {
                    Some("synthetic loss far above its test loss".into())
                }
                _ => reason
                    .or_else(|| e.eliminated_after.map(|r| format!("cut after rung {} of successive halving", r + 1))),
            };
            Row {
                entrant: e.name.clone(),
                role: e.role,
                strategy: e.strategy.clone(),
                test_loss: usable.and_then(|r| r.test_loss),
                synth_loss: usable.and_then(|r| r.synth_loss),
                text_guided_loss: usable.and_then(|r| r.text_guided_loss),
                no_text_loss: usable.and_then(|r| r.no_text_loss),
                weighted_loss: losses.and_then(|l| weighted_loss(&config.mechanism, spec.task_type, l)),
                train_loss: outcome.training.and_then(|t| t.final_train_loss),
                stopped_by_deadline: outcome.training.and_then(|t| t.stopped_by_deadline),
                status,
                reason,
                rank: sub.and_then(|s| s.rank),
                score: sub.map(|s| s.score),
                rung: (spec.halving.is_some() && e.role == Role::Miner).then_some(e.rung),
                eliminated_after: e.eliminated_after,
            }
        })
        .collect();
    let role_order = |r: Role| match r {
        Role::Miner => 0,
        Role::Baseline => 1,
        Role::BaseModel => 2,
    };
    rows.sort_by(|a, b| {
        role_order(a.role)
            .cmp(&role_order(b.role))
            .then_with(|| a.rank.unwrap_or(usize::MAX).cmp(&b.rank.unwrap_or(usize::MAX)))
            .then_with(|| a.entrant.cmp(&b.entrant))
    });
    let winner = rows.iter().find(|r| r.rank == Some(1));
    let loss_of = |role: Role| rows.iter().find(|r| r.role == role).and_then(|r| r.weighted_loss);
    let beats = |reference: Option<f64>| match (winner.and_then(|w| w.weighted_loss), reference) {
        // Relative to |reference|: GRPO losses are negated rewards, so they can be negative.
        (Some(w), Some(r)) if r != 0.0 => Some((r - w) / r.abs() * 100.0),
        _ => None,
    };
    let miners: Vec<&str> = spec.miners.iter().map(|m| m.name.as_str()).collect();
    let weights = weights
        .and_then(|w| serde_json::from_value::<WeightsFile>(w.clone()).ok())
        .map(|w| w.miners.into_iter().filter(|m| miners.contains(&m.miner.as_str())).collect())
        .unwrap_or_default();
    RunReport {
        task: id.to_string(),
        task_type: spec.task_type.to_string(),
        phase: state.phase,
        message: state.message.clone(),
        hours: state.hours,
        run_dir: run_dir.display().to_string(),
        winner: winner.map(|w| w.entrant.clone()),
        winner_beats_baseline_pct: beats(loss_of(Role::Baseline)),
        winner_beats_base_model_pct: beats(loss_of(Role::BaseModel)),
        rows,
        weights,
        gpus,
    }
}

fn num(x: Option<f64>) -> String {
    x.map_or_else(|| "-".into(), |v| format!("{v:.4}"))
}

/// The human-readable report.
pub fn table(report: &RunReport, text_type: bool) -> String {
    let mut out = String::new();
    let (a, b) = if text_type { ("test loss", "synth loss") } else { ("text-guided", "no-text") };
    let _ = writeln!(out, "\ntask {} ({}): {:?}", report.task, report.task_type, report.phase);
    if let Some(message) = &report.message {
        let _ = writeln!(out, "  {message}");
    }
    let _ = writeln!(
        out,
        "\n{:<4} {:<14} {:<18} {:>11} {:>11} {:>13} {:>7}  status",
        "rank", "miner", "strategy", a, b, "weighted loss", "score"
    );
    for r in &report.rows {
        let (x, y) = if text_type { (r.test_loss, r.synth_loss) } else { (r.text_guided_loss, r.no_text_loss) };
        let rank = r.rank.map_or_else(|| "-".into(), |n| n.to_string());
        let score = r.score.map_or_else(|| "-".into(), |s| format!("{s:+.1}"));
        let status = match (&r.reason, r.role) {
            (Some(why), _) => format!("{}: {}", r.status, one_line(why)),
            (None, Role::Baseline) => "reference (baseline, unscored)".into(),
            (None, Role::BaseModel) => "reference (untrained base, unscored)".into(),
            (None, Role::Miner) => r.status.clone(),
        };
        let _ = writeln!(
            out,
            "{:<4} {:<14} {:<18} {:>11} {:>11} {:>13} {:>7}  {}",
            rank,
            r.entrant,
            r.strategy.as_deref().unwrap_or("-"),
            num(x),
            num(y),
            num(r.weighted_loss),
            score,
            status
        );
    }
    match (&report.winner, report.winner_beats_baseline_pct) {
        (Some(w), Some(pct)) if pct >= 0.0 => {
            let _ = writeln!(out, "\nwinner {w} beats baseline by {pct:.1} % weighted loss");
        }
        (Some(w), Some(pct)) => {
            let _ = writeln!(out, "\nwinner {w} is worse than the baseline by {:.1} % weighted loss", -pct);
        }
        (Some(w), None) => {
            let _ = writeln!(out, "\nwinner {w} (no baseline result to compare with)");
        }
        (None, _) => {
            let _ = writeln!(out, "\nno winner: no miner has a valid result");
        }
    }
    match report.winner_beats_base_model_pct {
        Some(pct) if pct >= 0.0 => {
            let _ = writeln!(out, "winner beats the untrained base model by {pct:.1} % weighted loss");
        }
        Some(pct) => {
            let _ = writeln!(out, "winner is worse than the untrained base model by {:.1} % weighted loss", -pct);
        }
        None => {}
    }
    let _ = writeln!(out, "\nweights (leaderboard over every run in the data directory):");
    for w in &report.weights {
        let _ = writeln!(out, "  {:<14} {:.6}  ({})", w.miner, w.weight, w.weight_u16);
    }
    if !report.gpus.is_empty() {
        let _ = writeln!(out, "\nGPUs (per workload: GPU-seconds, mean utilisation, peak memory):");
        for used in &report.gpus {
            let utilization = used.mean_utilization.map_or_else(|| "-".into(), |u| format!("{:.0} %", u * 100.0));
            let memory =
                used.peak_memory_bytes.map_or_else(|| "-".into(), |b| format!("{:.1} GiB", b as f64 / 1024f64.powi(3)));
            let _ = writeln!(
                out,
                "  {:<24} {:>8.1} s {:>6} {:>10}  {}",
                used.workload,
                used.gpu_seconds,
                utilization,
                memory,
                used.devices.join(", ")
            );
        }
    }
    let _ = writeln!(out, "\nrun directory: {}", report.run_dir);
    let _ = writeln!(out, "audit: gradients score --input {}/records.json", report.run_dir);
    out
}

fn one_line(text: &str) -> String {
    let line = text.lines().next().unwrap_or_default();
    if line.chars().count() > 100 {
        format!("{}…", line.chars().take(100).collect::<String>())
    } else {
        line.to_string()
    }
}
