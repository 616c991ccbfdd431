//! What the operator measures about tournaments, as pure functions of its objects: the gauges
//! recomputed from the caches at every scrape ([`snapshot`]), the durations observed when a
//! Task's status moves ([`phase_left`], [`finished_work`]), and a training's summary
//! ([`trainer_report`]).
//!
//! Cardinality: no label holds a task or a submission. Per namespace, the series are bounded by
//! its Leaderboards × miners, and miners are capped at [`MAX_MINERS`] (the most recently active
//! ones); everything is recomputed from what exists, so a deleted Leaderboard, or a miner no
//! object mentions any more, has no series at the next scrape.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use crate::api::evaluation::EvaluationPhase;
use crate::api::submission::TrainerReport;
use crate::api::{Evaluation, Leaderboard, MinerSubmission, TaskStatus};
use crate::tournament::{Phase, TaskState, TrainingSummary, Work, WorkKind};

/// The most miners per namespace that get series of their own.
pub const MAX_MINERS: usize = 512;

/// A gauge the scrape computes: its name (without the `gradients_` prefix), help and labels.
pub struct Gauge {
    pub name: &'static str,
    pub help: &'static str,
    pub labels: &'static [&'static str],
}

const BOARD_MINER: &[&str] = &["namespace", "leaderboard", "miner"];
const BOARD: &[&str] = &["namespace", "leaderboard"];
const MINER: &[&str] = &["namespace", "miner"];

const fn gauge(name: &'static str, help: &'static str, labels: &'static [&'static str]) -> Gauge {
    Gauge { name, help, labels }
}

/// Every gauge [`snapshot`] fills.
pub const GAUGES: &[Gauge] = &[
    gauge("leaderboard_miner_quality", "A miner's quality on a Leaderboard (windowed adjusted scores)", BOARD_MINER),
    gauge("leaderboard_miner_weight_ratio", "A miner's weight on a Leaderboard (the weights sum to 1)", BOARD_MINER),
    gauge("leaderboard_miner_tasks", "Tasks of a miner inside the Leaderboard's longest window", BOARD_MINER),
    gauge("leaderboard_miner_score_today", "A miner's mean task score over the last day", BOARD_MINER),
    gauge("leaderboard_tasks", "Evaluated tasks inside the Leaderboard's longest window", BOARD),
    gauge("leaderboard_miners", "Miners with a standing on the Leaderboard", BOARD),
    gauge("leaderboard_weights_pushed_timestamp_seconds", "When the Leaderboard's weights were last pushed", BOARD),
    gauge("leaderboard_weights_in_sync", "1 when the pushed weights are the Leaderboard's current ones", BOARD),
    gauge(
        "leaderboard_newest_record_timestamp_seconds",
        "When the newest complete Evaluation of the Leaderboard's namespace finished",
        BOARD,
    ),
    gauge(
        "miner_submissions",
        "MinerSubmissions not archived (an ended Task's are, once its Jobs go), by miner and phase",
        &["namespace", "miner", "phase"],
    ),
    gauge("trainer_steps", "Optimiser steps of the miner's latest recorded training (its own report)", MINER),
    gauge("trainer_tokens", "Input tokens of the miner's latest recorded training (its own report)", MINER),
    gauge("trainer_tokens_per_second", "Tokens per second of the miner's latest recorded training", MINER),
    gauge("trainer_final_train_loss", "Final train loss of the miner's latest recorded training", MINER),
    gauge("trainer_wall_seconds", "Wall time of the miner's latest recorded trainer Job", MINER),
    gauge("trainer_gpu_seconds", "GPU-seconds of the miner's latest recorded trainer Job", MINER),
    gauge(
        "evaluation_loss",
        "The miner's losses in its latest complete Evaluation, by kind (test, synth, weighted)",
        &["namespace", "miner", "loss"],
    ),
    gauge("evaluation_rank", "The miner's rank in its latest complete Evaluation (1 is first)", MINER),
    gauge(
        "evaluation_results",
        "Results in the kept Evaluations by scoring status (ranked, failed, duplicate, flagged)",
        &["namespace", "status"],
    ),
];

/// One value of one gauge of [`GAUGES`]: labels in the gauge's order.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub gauge: &'static str,
    pub labels: Vec<String>,
    pub value: f64,
}

fn sample(gauge: &'static str, labels: &[&str], value: f64) -> Sample {
    Sample { gauge, labels: labels.iter().map(|l| l.to_string()).collect(), value }
}

fn seconds(at: DateTime<Utc>) -> f64 {
    at.timestamp_millis() as f64 / 1000.0
}

/// Every gauge's values from the objects in the caches.
/// They are read where the caches hold them, never cloned: a scrape at 1,000 Tasks would have
/// copied 16,000 MinerSubmissions and 1,000 Evaluations, tens of MB, each time.
pub fn snapshot(
    leaderboards: &[&Leaderboard],
    submissions: &[&MinerSubmission],
    evaluations: &[&Evaluation],
) -> Vec<Sample> {
    let mut samples = Vec::new();
    let mut newest: BTreeMap<String, DateTime<Utc>> = BTreeMap::new();
    for &evaluation in evaluations {
        if let Some(at) =
            evaluation.status.as_ref().filter(|s| s.phase == EvaluationPhase::Complete).and_then(|s| s.finished_at)
        {
            let entry = newest.entry(namespace(evaluation)).or_insert(at);
            *entry = (*entry).max(at);
        }
    }
    for &board in leaderboards {
        let ns = namespace(board);
        let name = board.metadata.name.clone().unwrap_or_default();
        let status = board.status.clone().unwrap_or_default();
        let labels = [ns.as_str(), name.as_str()];
        let mut standings: Vec<_> = status.standings.iter().collect();
        standings.sort_by(|a, b| b.weight.total_cmp(&a.weight).then_with(|| a.miner.cmp(&b.miner)));
        for s in standings.iter().take(MAX_MINERS) {
            let labels = [ns.as_str(), name.as_str(), s.miner.as_str()];
            samples.push(sample("leaderboard_miner_quality", &labels, s.quality));
            samples.push(sample("leaderboard_miner_weight_ratio", &labels, s.weight));
            samples.push(sample("leaderboard_miner_tasks", &labels, f64::from(s.tasks)));
            if let Some(score) = s.average_score_today {
                samples.push(sample("leaderboard_miner_score_today", &labels, score));
            }
        }
        samples.push(sample("leaderboard_tasks", &labels, f64::from(status.tasks)));
        samples.push(sample("leaderboard_miners", &labels, status.standings.len() as f64));
        if let Some(push) = &status.last_weight_push {
            samples.push(sample("leaderboard_weights_pushed_timestamp_seconds", &labels, seconds(push.at)));
        }
        let current = super::sink::Weights {
            at: DateTime::<Utc>::UNIX_EPOCH,
            weights: status.standings.iter().map(|s| (s.miner.clone(), s.weight_u16)).collect(),
        };
        let in_sync = current.weights.is_empty()
            || status.last_weight_push.as_ref().is_some_and(|push| push.digest == current.digest());
        samples.push(sample("leaderboard_weights_in_sync", &labels, f64::from(u8::from(in_sync))));
        if let Some(at) = newest.get(&ns) {
            samples.push(sample("leaderboard_newest_record_timestamp_seconds", &labels, seconds(*at)));
        }
    }
    samples.extend(submission_samples(submissions));
    samples.extend(evaluation_samples(evaluations));
    samples
}

fn namespace<K: kube::Resource>(object: &K) -> String {
    object.meta().namespace.clone().unwrap_or_default()
}

/// Per namespace, the [`MAX_MINERS`] miners most recently active (latest first, then by name).
fn recent_miners<'a>(
    activity: impl Iterator<Item = (String, &'a str, DateTime<Utc>)>,
) -> BTreeMap<String, Vec<String>> {
    let mut latest: BTreeMap<(String, String), DateTime<Utc>> = BTreeMap::new();
    for (ns, miner, at) in activity {
        let entry = latest.entry((ns, miner.to_string())).or_insert(at);
        *entry = (*entry).max(at);
    }
    let mut by_namespace: BTreeMap<String, Vec<(DateTime<Utc>, String)>> = BTreeMap::new();
    for ((ns, miner), at) in latest {
        by_namespace.entry(ns).or_default().push((at, miner));
    }
    by_namespace
        .into_iter()
        .map(|(ns, mut miners)| {
            miners.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
            (ns, miners.into_iter().take(MAX_MINERS).map(|(_, m)| m).collect())
        })
        .collect()
}

fn submission_samples(submissions: &[&MinerSubmission]) -> Vec<Sample> {
    let when = |s: &MinerSubmission| {
        let status = s.status.as_ref();
        status
            .and_then(|st| st.finished_at.or(st.started_at))
            .or_else(|| s.metadata.creation_timestamp.as_ref().and_then(crate::api::conditions::from_time))
    };
    let kept = recent_miners(
        submissions.iter().copied().filter_map(|s| when(s).map(|at| (namespace(s), s.spec.miner.as_str(), at))),
    );
    let mut samples = Vec::new();
    for (ns, miners) in &kept {
        for miner in miners {
            let theirs: Vec<&MinerSubmission> =
                submissions.iter().copied().filter(|s| &namespace(*s) == ns && &s.spec.miner == miner).collect();
            for phase in crate::api::submission::SubmissionPhase::ALL {
                let count = theirs.iter().filter(|s| s.status.as_ref().map(|st| st.phase).unwrap_or_default() == phase);
                samples.push(sample("miner_submissions", &[ns, miner, phase.as_str()], count.count() as f64));
            }
            let latest = theirs
                .iter()
                .filter_map(|s| Some((s.status.as_ref()?.training.as_ref()?, when(s)?)))
                .max_by_key(|(_, at)| *at)
                .map(|(report, _)| report);
            let Some(report) = latest else { continue };
            let labels = [ns.as_str(), miner.as_str()];
            let figures = [
                ("trainer_steps", report.steps.map(|v| v as f64)),
                ("trainer_tokens", report.tokens.map(|v| v as f64)),
                ("trainer_tokens_per_second", report.tokens_per_second),
                ("trainer_final_train_loss", report.final_train_loss),
                ("trainer_wall_seconds", report.wall_seconds),
                ("trainer_gpu_seconds", report.gpu_seconds),
            ];
            samples.extend(figures.into_iter().filter_map(|(g, v)| v.map(|v| sample(g, &labels, v))));
        }
    }
    samples
}

fn results(evaluation: &Evaluation) -> Vec<&crate::api::evaluation::SubmissionResult> {
    evaluation.status.iter().flat_map(|s| s.results.iter()).collect()
}

fn evaluation_samples(evaluations: &[&Evaluation]) -> Vec<Sample> {
    let complete: Vec<(&Evaluation, DateTime<Utc>)> = evaluations
        .iter()
        .copied()
        .filter_map(|e| {
            let status = e.status.as_ref().filter(|s| s.phase == EvaluationPhase::Complete)?;
            Some((e, status.finished_at?))
        })
        .collect();
    let kept = recent_miners(
        complete.iter().flat_map(|(e, at)| results(e).into_iter().map(move |r| (namespace(*e), r.miner.as_str(), *at))),
    );
    let mut samples = Vec::new();
    let mut by_status: BTreeMap<(String, String), u32> = BTreeMap::new();
    for (evaluation, _) in &complete {
        for result in results(evaluation) {
            let status = result.status.clone().unwrap_or_else(|| "unscored".to_string());
            *by_status.entry((namespace(*evaluation), status)).or_default() += 1;
        }
    }
    for ((ns, status), count) in by_status {
        samples.push(sample("evaluation_results", &[&ns, &status], f64::from(count)));
    }
    for (ns, miners) in &kept {
        for miner in miners {
            let latest = complete
                .iter()
                .filter(|(e, _)| &namespace(*e) == ns)
                .filter_map(|(e, at)| results(e).into_iter().find(|r| &r.miner == miner).map(|r| (r, *at)))
                .max_by_key(|(_, at)| *at)
                .map(|(r, _)| r);
            let Some(result) = latest else { continue };
            let losses = [("test", result.test_loss), ("synth", result.synth_loss), ("weighted", result.weighted_loss)];
            for (kind, loss) in losses {
                if let Some(loss) = loss.filter(|l| l.is_finite()) {
                    samples.push(sample("evaluation_loss", &[ns, miner, kind], loss));
                }
            }
            if let Some(rank) = result.rank {
                samples.push(sample("evaluation_rank", &[ns, miner], f64::from(rank)));
            }
        }
    }
    samples
}

/// A training's summary for its MinerSubmission: the trainer's own figures from `summary`,
/// wall time and GPU-seconds from the submission's Job timestamps and GPUs.
pub fn trainer_report(summary: Option<&TrainingSummary>, submission: &MinerSubmission) -> TrainerReport {
    let status = submission.status.clone().unwrap_or_default();
    let wall = match (status.started_at, status.finished_at) {
        (Some(start), Some(end)) if end >= start => Some((end - start).num_milliseconds() as f64 / 1000.0),
        _ => None,
    };
    let summary = summary.cloned().unwrap_or_default();
    let tokens_per_second = match (summary.tokens, summary.wall_seconds.or(wall)) {
        (Some(tokens), Some(wall)) if wall > 0.0 => Some(tokens as f64 / wall),
        _ => None,
    };
    TrainerReport {
        steps: summary.steps,
        tokens: summary.tokens,
        tokens_per_second,
        final_train_loss: summary.final_train_loss,
        stopped_by_deadline: summary.stopped_by_deadline,
        wall_seconds: wall,
        gpu_seconds: wall.map(|w| w * f64::from(submission.spec.gpus)),
    }
}

/// The phase a Task left between two statuses and how long it was in it; `created` stands in
/// for a phase start that was never recorded (the first phase, or a status from before).
pub fn phase_left(
    previous: &TaskStatus,
    next: &TaskStatus,
    created: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Option<(Phase, f64)> {
    if previous.phase == next.phase {
        return None;
    }
    let since = previous.phase_started_at.or(created)?;
    Some((previous.phase, (now - since).num_milliseconds().max(0) as f64 / 1000.0))
}

/// A workload that ended between two states: its kind, whether it succeeded, its seconds.
#[derive(Debug, Clone, PartialEq)]
pub struct Finished {
    pub kind: WorkKind,
    pub succeeded: bool,
    pub seconds: f64,
}

/// The workloads that ended between `previous` and `next` (each is counted once: only the
/// step from not-ended to ended counts).
pub fn finished_work(previous: &TaskState, next: &TaskState) -> Vec<Finished> {
    let mut pairs = vec![(WorkKind::Prepare, &previous.prepare, &next.prepare)];
    for entrant in &next.entrants {
        let Some(before) = previous.entrant(&entrant.name) else { continue };
        pairs.push((WorkKind::Train, &before.training, &entrant.training));
        pairs.push((WorkKind::Seal, &before.seal, &entrant.seal));
        pairs.push((WorkKind::Evaluate, &before.evaluation, &entrant.evaluation));
    }
    let started = |work: &Work| match work {
        Work::Active { started_at, requested_at, .. } => Some(started_at.unwrap_or(*requested_at)),
        Work::Requested { requested_at, .. } => Some(*requested_at),
        _ => None,
    };
    pairs
        .into_iter()
        .filter(|(_, before, _)| !before.is_terminal())
        .filter_map(|(kind, before, after)| {
            let (succeeded, start, end) = match after {
                Work::Succeeded { started_at, finished_at, .. } => (true, Some(*started_at), *finished_at),
                Work::Failed { finished_at, .. } => (false, started(before), *finished_at),
                _ => return None,
            };
            let seconds = start.map_or(0.0, |s| (end - s).num_milliseconds().max(0) as f64 / 1000.0);
            Some(Finished { kind, succeeded, seconds })
        })
        .collect()
}

#[cfg(test)]
#[path = "telemetry_tests.rs"]
mod tests;
