//! The evaluation record of a finished task: what the leaderboard and `gradients score` read.

use super::outcome::outcome;
use super::state::{Role, TaskState, Work};
use crate::api::task::TaskSpec;
use crate::mechanism::records::{SubmissionRecord, TaskRecord};

/// The task's record once it has reached scoring (`state.finished_at` is set): one submission
/// per miner, scored or failed. Reference rows (baseline, base model) are never in it.
pub fn task_record(id: &str, spec: &TaskSpec, state: &TaskState) -> Option<TaskRecord> {
    let finished_at = state.finished_at?;
    let submissions = state
        .entrants
        .iter()
        .filter(|e| e.role == Role::Miner)
        .map(|e| {
            // A miner submits when its training ends; one that never trained "submits" nothing
            // at the end (it is failed and its time only orders duplicates, which it cannot be).
            let submitted_at = match &e.training {
                Work::Succeeded { finished_at, .. } | Work::Failed { finished_at, .. } => *finished_at,
                _ => finished_at,
            };
            let scores = outcome(e).scores.unwrap_or_default();
            SubmissionRecord {
                miner: e.name.clone(),
                submitted_at,
                test_loss: scores.test_loss,
                synth_loss: scores.synth_loss,
                text_guided_loss: scores.text_guided_loss,
                no_text_loss: scores.no_text_loss,
                weights_sha256: scores.weights_sha256,
                rung: spec.halving.map(|_| e.rung),
            }
        })
        .collect();
    Some(TaskRecord {
        id: id.to_string(),
        task_type: spec.task_type,
        model_params_b: spec.base_model.params_b,
        hours: state.hours.unwrap_or(0.0),
        finished_at,
        submissions,
    })
}
