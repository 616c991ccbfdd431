//! What the report page shows, computed from what a run directory and the leaderboard store
//! hold: a pure function ([`extract`]) of the files' contents, so every figure is testable
//! without a browser. Trainer logs are the miners' own output: every number read from them is
//! checked to be finite and every curve is thinned to a bounded size.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::Deserialize;

use crate::local::report::{Row, RunReport};
use crate::mechanism::records::TaskRecord;
use crate::mechanism::{MechanismConfig, leaderboard};
use crate::tournament::{Role, TaskState, Work, WorkOutput};

/// Points kept per training-loss curve (a long training logs a line per step).
pub const MAX_CURVE_POINTS: usize = 400;
/// Store snapshots kept for the history (the most recent ones).
pub const MAX_SNAPSHOTS: usize = 200;

/// What the page is made from, as read from the run directory and the store.
#[derive(Debug, Clone)]
pub struct RunContents {
    /// `RUN/report.json` (or the same report rebuilt from the state).
    pub report: RunReport,
    /// `RUN/state.json`.
    pub state: TaskState,
    /// The stdout of each entrant's latest training attempt (its progress events), by entrant.
    pub train_logs: BTreeMap<String, String>,
    /// When each entrant's latest training attempt started and ended (its `result.json`).
    pub train_spans: BTreeMap<String, (DateTime<Utc>, DateTime<Utc>)>,
    /// Every task record in the leaderboard store.
    pub store: Vec<TaskRecord>,
}

/// The page's model.
#[derive(Debug, Clone, PartialEq)]
pub struct Page {
    pub report: RunReport,
    /// Test vs synthetic loss for text tasks; text-guided vs no-text loss for image tasks.
    pub text_type: bool,
    /// One per entrant that trains (miners and the baseline), in the leaderboard's order.
    pub curves: Vec<Curve>,
    pub budgets: Vec<BudgetUse>,
    /// Entrants with both losses, for the test vs synthetic plot.
    pub losses: Vec<LossPoint>,
    pub store: StoreHistory,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Curve {
    pub entrant: String,
    pub role: Role,
    /// `(step, train loss)` in step order.
    pub points: Vec<(f64, f64)>,
    pub total_steps: Option<u64>,
}

/// How much of its training time an entrant used.
#[derive(Debug, Clone, PartialEq)]
pub struct BudgetUse {
    pub entrant: String,
    /// Seconds from the training's start to its end (while it runs: its latest progress line).
    pub used_s: Option<f64>,
    pub budget_s: Option<f64>,
    pub stopped_by_deadline: Option<bool>,
    /// `trained`, `failed`, `running`, …
    pub outcome: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct LossPoint {
    pub entrant: String,
    pub role: Role,
    /// Test loss (text) or text-guided loss (image).
    pub x: f64,
    /// Synthetic loss (text) or no-text loss (image).
    pub y: f64,
    pub status: String,
}

/// The leaderboard store over time: the standings after each recorded task.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StoreHistory {
    pub snapshots: Vec<Snapshot>,
    /// The standings after the latest task, by weight (highest first).
    pub standings: Vec<leaderboard::MinerStanding>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    pub at: DateTime<Utc>,
    /// The task whose end this snapshot follows.
    pub task: String,
    /// `(miner, weight)` of every miner on the leaderboard then.
    pub weights: Vec<(String, f64)>,
}

pub fn extract(contents: &RunContents, config: &MechanismConfig) -> Page {
    let report = &contents.report;
    let text_type = report.task_type != "Image";
    let trains = |r: &Row| r.role != Role::BaseModel;
    let curves = report
        .rows
        .iter()
        .filter(|r| trains(r))
        .map(|r| {
            let log = contents.train_logs.get(&r.entrant).map(String::as_str).unwrap_or_default();
            let events = progress_events(log);
            Curve {
                entrant: r.entrant.clone(),
                role: r.role,
                points: thin(events.iter().filter_map(|e| Some((e.step as f64, finite(e.loss?)?))).collect()),
                total_steps: events.last().and_then(|e| e.total_steps),
            }
        })
        .collect();
    let budget_s = report.hours.map(|h| h * 3600.0).filter(|s| s.is_finite() && *s > 0.0);
    let budgets = report
        .rows
        .iter()
        .filter(|r| trains(r))
        .map(|r| {
            let training = contents.state.entrant(&r.entrant).map(|e| &e.training);
            let last_progress = contents
                .train_logs
                .get(&r.entrant)
                .and_then(|log| progress_events(log).iter().rev().find_map(|e| e.elapsed_s.and_then(finite)));
            let span = contents.train_spans.get(&r.entrant).map(|(start, end)| seconds(*end - *start));
            let outcome = match training {
                Some(Work::Succeeded { .. }) => "trained",
                Some(Work::Failed { .. }) => "failed",
                Some(Work::Active { .. } | Work::Requested { .. }) => "running",
                Some(Work::NotNeeded { .. }) => "not trained",
                Some(Work::Waiting) | None => "waiting",
            };
            let used_s = span.or(last_progress).filter(|s| *s >= 0.0);
            let stopped_by_deadline = match training {
                Some(Work::Succeeded { output: WorkOutput::Trained(t), .. }) => t.stopped_by_deadline,
                _ => None,
            };
            BudgetUse { entrant: r.entrant.clone(), used_s, budget_s, stopped_by_deadline, outcome: outcome.into() }
        })
        .collect();
    let losses = report
        .rows
        .iter()
        .filter_map(|r| {
            let (x, y) = if text_type { (r.test_loss, r.synth_loss) } else { (r.text_guided_loss, r.no_text_loss) };
            Some(LossPoint {
                entrant: r.entrant.clone(),
                role: r.role,
                x: finite(x?)?,
                y: finite(y?)?,
                status: r.status.clone(),
            })
        })
        .collect();
    Page { report: report.clone(), text_type, curves, budgets, losses, store: history(config, &contents.store) }
}

/// The standings after each task in the store: the leaderboard as it was when that task ended.
pub fn history(config: &MechanismConfig, store: &[TaskRecord]) -> StoreHistory {
    let mut ends: Vec<(DateTime<Utc>, &str)> = store.iter().map(|t| (t.finished_at, t.id.as_str())).collect();
    ends.sort();
    // Tasks that ended at the same instant give one snapshot, after the last of them.
    ends.dedup_by_key(|(at, _)| *at);
    let ends = &ends[ends.len().saturating_sub(MAX_SNAPSHOTS)..];
    let mut snapshots = Vec::with_capacity(ends.len());
    let mut standings = Vec::new();
    for (at, task) in ends {
        let board = leaderboard::compute(config, *at, store);
        snapshots.push(Snapshot {
            at: *at,
            task: task.to_string(),
            weights: board.miners.iter().map(|m| (m.miner.clone(), m.weight)).collect(),
        });
        standings = board.miners;
    }
    standings.sort_by(|a, b| b.weight.total_cmp(&a.weight).then_with(|| a.miner.cmp(&b.miner)));
    StoreHistory { snapshots, standings }
}

/// A trainer's `{"event":"progress",…}` line.
#[derive(Debug, Deserialize)]
struct ProgressEvent {
    event: String,
    step: u64,
    #[serde(default)]
    total_steps: Option<u64>,
    #[serde(default)]
    loss: Option<f64>,
    #[serde(default)]
    elapsed_s: Option<f64>,
}

/// The progress events of a trainer's stdout, in step order (other lines are ignored).
fn progress_events(log: &str) -> Vec<ProgressEvent> {
    let mut events: Vec<ProgressEvent> = log
        .lines()
        .filter(|l| l.starts_with('{'))
        .filter_map(|l| serde_json::from_str::<ProgressEvent>(l).ok())
        .filter(|e| e.event == "progress")
        .collect();
    events.sort_by_key(|e| e.step);
    events
}

/// At most [`MAX_CURVE_POINTS`] points, evenly spaced, keeping the first and the last.
fn thin(points: Vec<(f64, f64)>) -> Vec<(f64, f64)> {
    if points.len() <= MAX_CURVE_POINTS {
        return points;
    }
    let last = points.len() - 1;
    (0..MAX_CURVE_POINTS).map(|i| points[i * last / (MAX_CURVE_POINTS - 1)]).collect()
}

fn finite(x: f64) -> Option<f64> {
    x.is_finite().then_some(x)
}

fn seconds(d: chrono::Duration) -> f64 {
    d.num_milliseconds() as f64 / 1000.0
}
