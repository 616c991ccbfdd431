//! Evaluation results as pure functions: reading an evaluator's termination message, scoring
//! a task with the mechanism, and turning a complete Evaluation into the record the
//! leaderboard (and `gradients score`) reads.

use chrono::{DateTime, Utc};
use serde::Deserialize;

use crate::api::Evaluation;
use crate::api::evaluation::{EvaluationPhase, ResultState, SubmissionResult};
use crate::mechanism::MechanismConfig;
use crate::mechanism::records::{SubmissionRecord, TaskRecord};
use crate::mechanism::scoring;

/// The most a termination message can hold; a longer one was cut by the kubelet.
pub const TERMINATION_MESSAGE_LIMIT: usize = 4096;

/// The evaluator's JSON (`trainer-image/.../contract.py::EvalResult`). Unknown fields are
/// ignored so that the evaluator can add some without breaking the operator.
#[derive(Debug, Deserialize)]
struct EvaluatorMessage {
    #[serde(default)]
    ok: Option<bool>,
    test_loss: Option<f64>,
    synth_loss: Option<f64>,
    text_guided_loss: Option<f64>,
    no_text_loss: Option<f64>,
    weights_sha256: Option<String>,
    #[serde(default)]
    checks: Vec<Check>,
    failure: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Check {
    name: String,
    #[serde(default)]
    ok: bool,
}

/// What a terminated evaluator container said, as a result. A missing, oversized or malformed
/// message, a non-zero exit code or `ok: false` fail this submission (never the task).
pub fn read_termination(miner: &str, exit_code: i32, message: Option<&str>) -> SubmissionResult {
    let failed = |failure: String| SubmissionResult {
        miner: miner.to_string(),
        state: ResultState::Failed,
        failure: Some(truncate(&failure, 512)),
        ..SubmissionResult::default()
    };
    let text = message.unwrap_or("").trim();
    let parsed = if text.is_empty() {
        Err("the evaluator left no termination message".to_string())
    } else if text.len() >= TERMINATION_MESSAGE_LIMIT {
        Err(format!("the termination message is {} bytes, at the 4096-byte limit: cut off", text.len()))
    } else {
        serde_json::from_str::<EvaluatorMessage>(text).map_err(|e| format!("malformed evaluator message: {e}"))
    };
    let message = match parsed {
        Ok(message) => message,
        Err(reason) if exit_code != 0 => return failed(format!("evaluator exited with code {exit_code}; {reason}")),
        Err(reason) => return failed(reason),
    };
    let failed_checks: Vec<&str> = message.checks.iter().filter(|c| !c.ok).map(|c| c.name.as_str()).collect();
    if exit_code != 0 || message.ok == Some(false) {
        let mut reason = message.failure.clone().unwrap_or_else(|| format!("evaluator exited with code {exit_code}"));
        if !failed_checks.is_empty() {
            reason = format!("{reason} (failed checks: {})", failed_checks.join(", "));
        }
        let mut result = failed(reason);
        result.weights_sha256 = message.weights_sha256;
        return result;
    }
    let finite = |v: Option<f64>| v.filter(|x| x.is_finite());
    SubmissionResult {
        miner: miner.to_string(),
        state: ResultState::Evaluated,
        test_loss: finite(message.test_loss),
        synth_loss: finite(message.synth_loss),
        text_guided_loss: finite(message.text_guided_loss),
        no_text_loss: finite(message.no_text_loss),
        weights_sha256: message.weights_sha256,
        failure: (!failed_checks.is_empty()).then(|| format!("failed checks: {}", failed_checks.join(", "))),
        ..SubmissionResult::default()
    }
}

fn truncate(text: &str, limit: usize) -> String {
    if text.len() <= limit {
        return text.to_string();
    }
    let mut end = limit;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

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

/// Scores every result with the mechanism and returns them with statuses, ranks and scores,
/// plus the task weight.
pub fn score(
    mechanism: &MechanismConfig,
    evaluation: &Evaluation,
    results: &[SubmissionResult],
    finished_at: DateTime<Utc>,
) -> (Vec<SubmissionResult>, f64) {
    let record = task_record(evaluation, results, finished_at);
    let scored = scoring::score_task(mechanism, &record);
    let merged = results
        .iter()
        .map(|result| {
            let mut result = result.clone();
            if let Some(verdict) = scored.submissions.iter().find(|s| s.miner == result.miner) {
                result.status = Some(verdict.status.label().to_string());
                result.duplicate_of = verdict.duplicate_of.clone();
                result.weighted_loss = verdict.weighted_loss;
                result.rank = verdict.rank.map(|r| r as u32);
                result.score = Some(verdict.score);
                result.adjusted_score = Some(verdict.adjusted_score);
            }
            result
        })
        .collect();
    (merged, scored.task_weight)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_well_formed_message_is_a_result() {
        let message = r#"{"ok":true,"test_loss":1.25,"synth_loss":1.5,"text_guided_loss":null,"no_text_loss":null,
            "weights_sha256":"ab","checks":[{"name":"architecture","ok":true,"reason":""}],"failure":null,"timings":{"eval_s":3.2}}"#;
        let result = read_termination("m1", 0, Some(message));
        assert_eq!(result.state, ResultState::Evaluated);
        assert_eq!((result.test_loss, result.synth_loss), (Some(1.25), Some(1.5)));
        assert_eq!(result.weights_sha256.as_deref(), Some("ab"));
        assert_eq!(result.failure, None);
    }

    #[test]
    fn malformed_missing_or_failing_messages_fail_the_submission() {
        for (exit_code, message, expect) in [
            (0, Some("not json {"), "malformed evaluator message"),
            (0, None, "no termination message"),
            (0, Some(r#"{"test_loss": "low"}"#), "malformed evaluator message"),
            (1, Some("Traceback ..."), "exited with code 1"),
            (
                0,
                Some(r#"{"ok":false,"failure":"not a fine-tune","checks":[{"name":"base","ok":false}]}"#),
                "not a fine-tune (failed checks: base)",
            ),
        ] {
            let result = read_termination("m1", exit_code, message);
            assert_eq!(result.state, ResultState::Failed, "{message:?}");
            let failure = result.failure.unwrap();
            assert!(failure.contains(expect), "{failure:?} should contain {expect:?}");
            assert_eq!(result.test_loss, None);
        }
        let huge = format!(r#"{{"ok":true,"failure":"{}"}}"#, "x".repeat(5000));
        assert_eq!(read_termination("m1", 0, Some(&huge)).state, ResultState::Failed);
    }
}
