//! Evaluation records: what one evaluated submission leaves behind. The leaderboard is computed
//! from these, and `gradients score` recomputes weights from an export of them.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::TaskType;

/// One finished task and its evaluated submissions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskRecord {
    pub id: String,
    #[serde(rename = "type")]
    pub task_type: TaskType,
    /// Size of the base model in billions of parameters.
    pub model_params_b: f64,
    /// Hours the miners were given.
    pub hours: f64,
    pub finished_at: DateTime<Utc>,
    pub submissions: Vec<SubmissionRecord>,
}

/// One miner's evaluated submission. Text tasks fill `test_loss`/`synth_loss`, image tasks
/// `text_guided_loss`/`no_text_loss`; `None` (or a non-finite value) means no usable loss.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SubmissionRecord {
    pub miner: String,
    pub submitted_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test_loss: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub synth_loss: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text_guided_loss: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub no_text_loss: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weights_sha256: Option<String>,
    /// Successive halving (`spec.halving`): the last rung this miner trained in (0-based). A
    /// submission of a later rung ranks above every one of an earlier rung, whatever the losses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rung: Option<u32>,
}

impl SubmissionRecord {
    /// The two losses the task type is scored on: (test, synthetic) or (text-guided, no-text).
    pub fn loss_pair(&self, task_type: TaskType) -> (Option<f64>, Option<f64>) {
        if task_type.is_text() { (self.test_loss, self.synth_loss) } else { (self.text_guided_loss, self.no_text_loss) }
    }
}

/// The input of `gradients score`: records and the instant to compute the leaderboard at.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScoreInput {
    pub now: DateTime<Utc>,
    pub tasks: Vec<TaskRecord>,
}
