//! What an executor observes and feeds to [`super::decide`]: the clock, the miner pool, the
//! state of each workload it runs, and whether the task's results are stored.

use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::eval_report::EvalReport;

/// The kinds of workload a task runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WorkKind {
    Prepare,
    /// Write the synthetic evaluation set with a generator model (`spec.dataset.generator`).
    Synthesize,
    Train,
    /// Copy a finished trainer's model where nobody can write, with a digest manifest.
    Seal,
    Evaluate,
}

impl WorkKind {
    pub fn as_str(self) -> &'static str {
        match self {
            WorkKind::Prepare => "prepare",
            WorkKind::Synthesize => "synthesize",
            WorkKind::Train => "train",
            WorkKind::Seal => "seal",
            WorkKind::Evaluate => "evaluate",
        }
    }
}

/// One attempt of one workload. A retry is a new attempt, hence a new id, so the failed
/// attempt's Job or directory never shadows the new one.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct WorkloadId {
    pub kind: WorkKind,
    /// The entrant (miner, `baseline`, `base-model`); empty for dataset preparation.
    pub entrant: String,
    /// 1 for the first attempt.
    pub attempt: u32,
    /// The rung of successive halving (`spec.halving`) this workload belongs to; 0 otherwise.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub rung: u32,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

impl WorkloadId {
    pub fn new(kind: WorkKind, entrant: &str, attempt: u32) -> Self {
        Self { kind, entrant: entrant.to_string(), attempt, rung: 0 }
    }

    /// The same workload in rung `rung` of successive halving.
    pub fn at_rung(self, rung: u32) -> Self {
        Self { rung, ..self }
    }
}

impl fmt::Display for WorkloadId {
    /// `prepare-1`, `train-alice-1`, `evaluate-alice-2`, `train-alice-1-r1` (rung 1 of
    /// successive halving): usable as a file or object name suffix. The rung comes last, where
    /// no rung-0 id has letters, so miner `a` in rung 1 never reads like a miner named `a-r1`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.rung > 0 {
            write!(f, "{}-{}-{}-r{}", self.kind.as_str(), self.entrant, self.attempt, self.rung)
        } else if self.entrant.is_empty() {
            write!(f, "{}-{}", self.kind.as_str(), self.attempt)
        } else {
            write!(f, "{}-{}-{}", self.kind.as_str(), self.entrant, self.attempt)
        }
    }
}

/// A miner that could be selected, as the executor knows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PoolMiner {
    pub name: String,
    /// The reference trainer's strategy, for miners that use it.
    pub strategy: Option<String>,
    /// Mean task score over the last day, `None` when it has not competed today.
    pub average_quality_today: Option<f64>,
}

/// What the executor sees now.
#[derive(Debug, Clone, PartialEq)]
pub struct Observation {
    pub now: DateTime<Utc>,
    /// Miners available for selection (enabled, matching the selector).
    pub pool: Vec<PoolMiner>,
    /// Workloads the executor knows of. A workload not in the map is absent: never created,
    /// or gone (deleted, or its process died with the executor).
    pub workloads: BTreeMap<WorkloadId, WorkloadState>,
    /// The task's record is in the leaderboard store.
    pub recorded: bool,
}

impl Observation {
    pub fn new(now: DateTime<Utc>) -> Self {
        Self { now, pool: Vec::new(), workloads: BTreeMap::new(), recorded: false }
    }
}

/// The state of one workload, executor-neutral.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "camelCase")]
pub enum WorkloadState {
    /// Waiting in a queue that admits work by quota (a Kueue-suspended Job): no pending timeout
    /// runs while it waits, however long.
    Queued,
    /// Admitted but not started (pod unscheduled, image pulling). `since`: when it was let run
    /// (a Job's `startTime`: its creation, or its admission by the queue); the pending timeout
    /// counts from then.
    Pending {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        since: Option<DateTime<Utc>>,
    },
    Running {
        started_at: DateTime<Utc>,
    },
    Succeeded {
        started_at: DateTime<Utc>,
        finished_at: DateTime<Utc>,
        output: WorkOutput,
    },
    Failed {
        started_at: Option<DateTime<Utc>>,
        finished_at: DateTime<Utc>,
        reason: String,
        /// The last lines of the workload's log, for the user.
        log_tail: String,
        /// Not the workload's own fault (lost node, evicted, interrupted): worth another attempt.
        retryable: bool,
    },
}

/// What a successful workload produced.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum WorkOutput {
    Prepared(DatasetFacts),
    Synthesized(SyntheticSummary),
    Trained(TrainingSummary),
    Sealed(SealSummary),
    Evaluated(EvalReport),
}

/// A sealed model: the tree digest the evaluator verifies, and its size; and the trainer's
/// `training.json` as the seal found it next to the model, for telemetry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SealSummary {
    pub digest: String,
    pub files: u64,
    pub bytes: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub training: Option<TrainingSummary>,
}

/// What the generator wrote: the synthetic set's rows (after validation and de-duplication).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SyntheticSummary {
    pub rows: u64,
}

/// Row counts of the prepared splits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DatasetFacts {
    pub rows: u64,
    pub train: u64,
    pub test: u64,
    pub synthetic: u64,
}

/// The part of the trainer's `training.json` the lifecycle keeps.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TrainingSummary {
    #[serde(default)]
    pub steps: Option<u64>,
    #[serde(default)]
    pub final_train_loss: Option<f64>,
    #[serde(default)]
    pub stopped_by_deadline: Option<bool>,
    /// Input tokens seen (images, for image tasks).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens: Option<u64>,
    /// The trainer's own wall time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wall_seconds: Option<f64>,
}
