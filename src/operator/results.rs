//! A complete Evaluation as the record the leaderboard (and `gradients score`) reads.

use chrono::{DateTime, Utc};

use crate::api::Evaluation;
use crate::api::evaluation::{EvaluationPhase, ResultState, SubmissionResult};
use crate::mechanism::records::{SubmissionRecord, TaskRecord};

/// The record of an evaluation whose results are in: what `gradients score` reads. A failed
/// result is a submission without losses, which the mechanism scores as failed.
pub fn task_record(evaluation: &Evaluation, results: &[SubmissionResult], finished_at: DateTime<Utc>) -> TaskRecord {
    let spec = &evaluation.spec;
    let submissions = spec
        .submissions
        .iter()
        .map(|entry| {
            let result = results.iter().find(|r| r.miner == entry.miner);
            let evaluated = result.filter(|r| r.state == ResultState::Evaluated);
            SubmissionRecord {
                miner: entry.miner.clone(),
                submitted_at: entry.submitted_at,
                test_loss: evaluated.and_then(|r| r.test_loss),
                synth_loss: evaluated.and_then(|r| r.synth_loss),
                text_guided_loss: evaluated.and_then(|r| r.text_guided_loss),
                no_text_loss: evaluated.and_then(|r| r.no_text_loss),
                weights_sha256: evaluated.and_then(|r| r.weights_sha256.clone()),
                rung: entry.rung,
            }
        })
        .collect();
    TaskRecord {
        id: evaluation.metadata.name.clone().unwrap_or_default(),
        task_type: spec.task_type,
        model_params_b: spec.base_model_params_b,
        hours: spec.hours,
        finished_at,
        submissions,
    }
}

/// The record of a complete Evaluation, for the leaderboard; `None` while it is not complete.
pub fn complete_record(evaluation: &Evaluation) -> Option<TaskRecord> {
    let status = evaluation.status.as_ref()?;
    if status.phase != EvaluationPhase::Complete {
        return None;
    }
    Some(task_record(evaluation, &status.results, status.finished_at?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::evaluation::EvaluatedSubmission;

    #[test]
    fn only_complete_evaluations_are_records_and_failed_results_have_no_losses() {
        let mut evaluation: Evaluation = serde_norway::from_str(
            "metadata: {name: t1, namespace: ns}
spec: {task: t1, taskType: Dpo, origin: Organic, baseModelUri: /m, baseModelParamsB: 3, hours: 1,
       dataUri: /d, gpuClass: h100, submissions: []}",
        )
        .unwrap();
        let at: DateTime<Utc> = "2026-11-26T12:00:00Z".parse().unwrap();
        evaluation.spec.submissions = ["a", "b"]
            .iter()
            .map(|m| EvaluatedSubmission {
                miner: m.to_string(),
                submission: format!("t1-{m}-1"),
                artifact_uri: String::new(),
                submitted_at: at,
                rung: None,
            })
            .collect();
        assert!(complete_record(&evaluation).is_none());
        let results = vec![
            SubmissionResult {
                miner: "a".into(),
                state: ResultState::Evaluated,
                test_loss: Some(1.0),
                synth_loss: Some(1.1),
                ..SubmissionResult::default()
            },
            SubmissionResult {
                miner: "b".into(),
                state: ResultState::Failed,
                test_loss: Some(0.1),
                ..Default::default()
            },
        ];
        evaluation.status = Some(crate::api::EvaluationStatus {
            phase: EvaluationPhase::Complete,
            finished_at: Some(at),
            results,
            ..Default::default()
        });
        let record = complete_record(&evaluation).unwrap();
        assert_eq!(record.submissions[0].test_loss, Some(1.0));
        assert_eq!(record.submissions[1].test_loss, None, "a failed result carries no losses");
        assert_eq!(record.finished_at, at);
    }
}
