//! What [`super::decide`] asks the executor to do.

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::observe::WorkloadId;
use super::state::TaskState;
use crate::mechanism::records::TaskRecord;

/// An instruction to the executor. Every action is idempotent for an executor that keys
/// workloads by id: it may be repeated on the next call until the observation reflects it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "action", rename_all = "camelCase")]
pub enum Action {
    /// Split the dataset into train/test/synthetic with the mechanism's seeded split.
    PrepareDataset { id: WorkloadId, seed: u64 },
    /// Write `rows` rows of the synthetic evaluation set with the task's generator model.
    GenerateSyntheticSet { id: WorkloadId, seed: u64, rows: u64 },
    /// Train `entrant` with `strategy` for `hours` from the moment it starts, never past `deadline`.
    StartTraining {
        id: WorkloadId,
        entrant: String,
        strategy: Option<String>,
        hours: f64,
        deadline: Option<DateTime<Utc>>,
        /// Successive halving: continue from the output of this earlier training of the entrant.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        resume_from: Option<WorkloadId>,
    },
    /// Seal the model that training `training` produced (its trainer is gone).
    StartSeal { id: WorkloadId, entrant: String, training: WorkloadId },
    /// Evaluate the sealed model of `submission`; `None`: the untrained base model.
    StartEvaluation { id: WorkloadId, entrant: String, submission: Option<SealedModel> },
    /// Stop a workload (kill its process group / delete its Job).
    StopWorkload { id: WorkloadId, reason: String },
    /// Store this record in the leaderboard store (replacing any record with the same task id).
    RecordResults { record: TaskRecord },
    /// Recompute the leaderboard from the store and publish the weights.
    EmitWeights,
    /// Tell the user (a Kubernetes Event, a line on stderr).
    Notify { reason: String, message: String },
}

/// A sealed model to evaluate: the training that produced it, the seal that copied it, and
/// the digest the evaluator must find; and the trainer's summary the seal found, to record.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SealedModel {
    pub training: WorkloadId,
    pub seal: WorkloadId,
    pub digest: String,
    pub summary: Option<super::observe::TrainingSummary>,
}

/// The next state, what to do, and when to look again at the latest.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    pub state: TaskState,
    pub actions: Vec<Action>,
    /// The earliest instant a deadline, timeout or delay in this state falls due; call
    /// `decide` again then even if nothing else changed.
    pub wake_at: Option<DateTime<Utc>>,
}
