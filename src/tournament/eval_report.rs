//! The evaluator's result: one JSON object, the last line of its stdout (local) or its
//! container's termination message (operator), under 4096 bytes.

use serde::{Deserialize, Serialize};

/// The termination-message limit the evaluator's result must fit.
pub const RESULT_LIMIT: usize = 4096;

/// One evaluated submission, as the evaluator reports it (field names are the contract's).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EvalReport {
    pub ok: bool,
    #[serde(default)]
    pub test_loss: Option<f64>,
    #[serde(default)]
    pub synth_loss: Option<f64>,
    #[serde(default)]
    pub text_guided_loss: Option<f64>,
    #[serde(default)]
    pub no_text_loss: Option<f64>,
    #[serde(default)]
    pub weights_sha256: Option<String>,
    #[serde(default)]
    pub checks: Vec<EvalCheck>,
    #[serde(default)]
    pub failure: Option<String>,
    /// Whose fault a failure is; only an evaluator-side failure is worth another attempt.
    #[serde(default)]
    pub category: Option<FailureCategory>,
    /// The tree digest (`sha256:<hex>`) of the submission the evaluator read.
    #[serde(default)]
    pub model_digest: Option<String>,
    /// GRPO: KL(base‖submission) per prompt token on each split, beside the reward means.
    #[serde(default)]
    pub test_kl: Option<f64>,
    #[serde(default)]
    pub synth_kl: Option<f64>,
}

/// The evaluator's classification of a failed evaluation (`category` in its result).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FailureCategory {
    /// The miner's model or files: final.
    Submission,
    /// The task's own inputs (e.g. reward code failing on the task's prompts): final, and
    /// not the miner's doing.
    Task,
    /// The evaluation's resources (out of memory at the smallest batch): worth a retry.
    Evaluator,
    /// A category this operator does not know: treated as final.
    #[serde(other)]
    Unknown,
}

/// A check the evaluator ran before measuring (architecture, safetensors, size…).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EvalCheck {
    pub name: String,
    pub ok: bool,
    #[serde(default)]
    pub reason: String,
}

/// Why an evaluator's output is not a result.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EvalReportError {
    #[error("the evaluator printed no result")]
    Empty,
    #[error("the evaluator's result is {0} bytes, over the {RESULT_LIMIT}-byte limit")]
    TooLong(usize),
    #[error("the evaluator's result is not a JSON result object: {0}")]
    Malformed(String),
}

impl EvalReport {
    /// Parses the last non-empty line of `output`.
    pub fn parse(output: &str) -> Result<Self, EvalReportError> {
        let line = output.lines().map(str::trim).rfind(|l| !l.is_empty()).ok_or(EvalReportError::Empty)?;
        if line.len() > RESULT_LIMIT {
            return Err(EvalReportError::TooLong(line.len()));
        }
        serde_json::from_str(line).map_err(|e| EvalReportError::Malformed(e.to_string()))
    }

    /// A failed evaluation the evaluator blames on itself (not the submission, not the task).
    pub fn worth_retry(&self) -> bool {
        !self.ok && self.category == Some(FailureCategory::Evaluator)
    }

    /// Why this submission has no usable losses: the evaluator's failure, else the failed checks.
    pub fn failure_reason(&self) -> Option<String> {
        if self.ok {
            return None;
        }
        let reason = match self.failure.as_deref().filter(|f| !f.is_empty()) {
            Some(failure) => failure.to_string(),
            None => {
                let failed: Vec<String> =
                    self.checks.iter().filter(|c| !c.ok).map(|c| format!("{}: {}", c.name, c.reason)).collect();
                if failed.is_empty() { "evaluation not ok".to_string() } else { failed.join("; ") }
            }
        };
        // Say so when the miner is not the one at fault.
        Some(match self.category {
            Some(FailureCategory::Task) => format!("{reason} (the task's inputs, not the miner)"),
            Some(FailureCategory::Evaluator) => format!("{reason} (the evaluator, not the miner)"),
            _ => reason,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_last_line() {
        let out = "loading…\n{\"ok\":true,\"test_loss\":1.5,\"synth_loss\":2.0,\"weights_sha256\":\"ab\",\
                   \"checks\":[{\"name\":\"arch\",\"ok\":true,\"reason\":\"\"}],\"failure\":null,\"timings\":{\"x\":1}}\n\n";
        let report = EvalReport::parse(out).unwrap();
        assert!(report.ok);
        assert_eq!((report.test_loss, report.synth_loss), (Some(1.5), Some(2.0)));
        assert_eq!(report.failure_reason(), None);
    }

    #[test]
    fn rejects_garbage_and_explains_failures() {
        assert_eq!(EvalReport::parse("  \n"), Err(EvalReportError::Empty));
        assert!(matches!(EvalReport::parse("not json"), Err(EvalReportError::Malformed(_))));
        assert!(matches!(EvalReport::parse("[1,2]"), Err(EvalReportError::Malformed(_))));
        let long = format!("{{\"ok\":false,\"failure\":\"{}\"}}", "x".repeat(5000));
        assert!(matches!(EvalReport::parse(&long), Err(EvalReportError::TooLong(_))));
        let report = EvalReport::parse(
            r#"{"ok":false,"checks":[{"name":"safetensors","ok":false,"reason":"pickle file"}],"failure":null}"#,
        )
        .unwrap();
        assert_eq!(report.failure_reason().as_deref(), Some("safetensors: pickle file"));
        assert!(!report.worth_retry());
    }

    #[test]
    fn only_an_evaluator_failure_is_worth_a_retry() {
        let parse = |category: &str| {
            EvalReport::parse(&format!(r#"{{"ok":false,"failure":"x","category":"{category}"}}"#)).unwrap()
        };
        assert!(parse("evaluator").worth_retry());
        for category in ["submission", "task", "something-new"] {
            assert!(!parse(category).worth_retry(), "{category}");
        }
        let hostile = parse("submission");
        assert_eq!(hostile.category, Some(FailureCategory::Submission));
        assert_eq!(hostile.failure_reason().as_deref(), Some("x"));
        assert_eq!(parse("task").failure_reason().as_deref(), Some("x (the task's inputs, not the miner)"));
        let digest = EvalReport::parse(r#"{"ok":true,"model_digest":"sha256:ab","test_kl":0.5}"#).unwrap();
        assert_eq!((digest.model_digest.as_deref(), digest.test_kl), (Some("sha256:ab"), Some(0.5)));
    }
}
