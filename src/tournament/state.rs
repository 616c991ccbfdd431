//! The state of one task's lifecycle: what the operator keeps in the Task's status and the
//! local executor in `RUN/state.json`. Bounded by the number of entrants.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::observe::{DatasetFacts, WorkKind, WorkOutput, WorkloadId};

/// Where a task is in its lifecycle: the shared state machine's phase, as the Task's status and printer column show it.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, schemars::JsonSchema,
)]
pub enum Phase {
    /// Accepted, nothing started yet: the spec may still change.
    #[default]
    Pending,
    /// The dataset is being split (and the synthetic set generated, when a generator is set).
    Preparing,
    /// Drawing the miners.
    Selecting,
    /// Too few miners: waiting until `retry_at` with an extended allocation.
    Delayed,
    /// One trainer per entrant is running.
    Training,
    /// Every training has ended; the isolated evaluations run.
    Evaluating,
    /// Scored; the record is being written.
    Recording,
    Succeeded,
    Failed,
}

impl Phase {
    pub const ALL: [Phase; 9] = [
        Phase::Pending,
        Phase::Preparing,
        Phase::Selecting,
        Phase::Delayed,
        Phase::Training,
        Phase::Evaluating,
        Phase::Recording,
        Phase::Succeeded,
        Phase::Failed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Pending => "Pending",
            Phase::Preparing => "Preparing",
            Phase::Selecting => "Selecting",
            Phase::Delayed => "Delayed",
            Phase::Training => "Training",
            Phase::Evaluating => "Evaluating",
            Phase::Recording => "Recording",
            Phase::Succeeded => "Succeeded",
            Phase::Failed => "Failed",
        }
    }

    pub fn is_terminal(self) -> bool {
        matches!(self, Phase::Succeeded | Phase::Failed)
    }
}

/// Who an entrant is. Only miners are scored; the others are reference rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Role {
    Miner,
    /// The `baseline` strategy (AutoTrain's defaults), trained under the same deadline.
    Baseline,
    /// The untrained base model, evaluated only.
    BaseModel,
}

/// The progress of one workload (an entrant's training or evaluation, or the preparation).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "camelCase")]
pub enum Work {
    /// Not asked for yet.
    #[default]
    Waiting,
    /// Will not run (the base model is not trained; a failed training is not evaluated).
    NotNeeded {
        reason: String,
    },
    /// Asked for; the executor has not reported it yet.
    Requested {
        attempt: u32,
        requested_at: DateTime<Utc>,
    },
    /// The executor reports it pending or running.
    Active {
        attempt: u32,
        requested_at: DateTime<Utc>,
        started_at: Option<DateTime<Utc>>,
    },
    Succeeded {
        attempt: u32,
        started_at: DateTime<Utc>,
        finished_at: DateTime<Utc>,
        output: WorkOutput,
    },
    Failed {
        attempt: u32,
        finished_at: DateTime<Utc>,
        reason: String,
        log_tail: String,
    },
}

impl Work {
    /// Finished for good, one way or another.
    pub fn is_terminal(&self) -> bool {
        matches!(self, Work::NotNeeded { .. } | Work::Succeeded { .. } | Work::Failed { .. })
    }

    pub fn is_waiting(&self) -> bool {
        matches!(self, Work::Waiting)
    }

    /// The attempt in flight or last made (0 before the first).
    pub fn attempt(&self) -> u32 {
        match self {
            Work::Waiting | Work::NotNeeded { .. } => 0,
            Work::Requested { attempt, .. }
            | Work::Active { attempt, .. }
            | Work::Succeeded { attempt, .. }
            | Work::Failed { attempt, .. } => *attempt,
        }
    }

    pub fn output(&self) -> Option<&WorkOutput> {
        match self {
            Work::Succeeded { output, .. } => Some(output),
            _ => None,
        }
    }

    pub fn failure(&self) -> Option<&str> {
        match self {
            Work::Failed { reason, .. } | Work::NotNeeded { reason } => Some(reason),
            _ => None,
        }
    }
}

/// A miner or reference that trains and/or is evaluated.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Entrant {
    pub name: String,
    pub role: Role,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strategy: Option<String>,
    pub training: Work,
    /// The hand-off: a trained model is sealed before it is evaluated.
    #[serde(default)]
    pub seal: Work,
    pub evaluation: Work,
    /// Successive halving (`spec.halving`): the rung `training`, `seal` and `evaluation` belong to.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub rung: u32,
    /// The rungs this miner finished before its current one, oldest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rungs: Vec<RungResult>,
    /// The rung after which this miner was cut; its last evaluation is its result.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eliminated_after: Option<u32>,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// One finished rung of a miner that continued: the training to resume from and its losses.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RungResult {
    pub rung: u32,
    /// The successful training of that rung; the next rung continues from its output.
    pub training: WorkloadId,
    pub hours: f64,
    /// The mechanism's weighted loss of that rung's evaluation.
    pub weighted_loss: f64,
}

impl Entrant {
    pub fn new(name: &str, role: Role, strategy: Option<String>) -> Self {
        let (training, seal) = match role {
            Role::BaseModel => (
                Work::NotNeeded { reason: "the untrained base model is a reference".into() },
                Work::NotNeeded { reason: "the base model is read where it is".into() },
            ),
            Role::Miner | Role::Baseline => (Work::Waiting, Work::Waiting),
        };
        Self {
            name: name.to_string(),
            role,
            strategy,
            training,
            seal,
            evaluation: Work::Waiting,
            rung: 0,
            rungs: Vec::new(),
            eliminated_after: None,
        }
    }

    /// The id of the current attempt of this entrant's workload of `kind`.
    pub fn workload_id(&self, kind: WorkKind) -> WorkloadId {
        let work = match kind {
            WorkKind::Train => &self.training,
            WorkKind::Seal => &self.seal,
            WorkKind::Prepare | WorkKind::Synthesize | WorkKind::Evaluate => &self.evaluation,
        };
        WorkloadId::new(kind, &self.name, work.attempt().max(1)).at_rung(self.rung)
    }
}

/// The whole lifecycle state of one task.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskState {
    pub phase: Phase,
    /// Why the task is delayed or failed, for people.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Hours each training gets, after any delay extensions. Set when preparation is done.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hours: Option<f64>,
    #[serde(default)]
    pub delays: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub prepare: Work,
    /// The generated synthetic set (`spec.dataset.generator`); `Waiting` when there is none.
    #[serde(default, skip_serializing_if = "Work::is_waiting")]
    pub synthesize: Work,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dataset: Option<DatasetFacts>,
    #[serde(default)]
    pub entrants: Vec<Entrant>,
    /// Successive halving: the rung being trained or evaluated (0 without `spec.halving`).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub rung: u32,
    /// When scoring happened: the record's `finished_at`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<DateTime<Utc>>,
}

impl TaskState {
    pub fn entrant(&self, name: &str) -> Option<&Entrant> {
        self.entrants.iter().find(|e| e.name == name)
    }

    /// Whether the miner pool can still matter: it is read only to draw the miners, so once they
    /// are drawn the operator need not list every Miner on each reconcile (a cost that grew with
    /// the number of Tasks sharing a pool).
    pub fn draws_miners(&self) -> bool {
        matches!(self.phase, Phase::Pending | Phase::Preparing | Phase::Selecting | Phase::Delayed)
    }
}
