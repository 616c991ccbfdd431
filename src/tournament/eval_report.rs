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

    /// Why this submission has no usable losses: the evaluator's failure, else the failed checks.
    pub fn failure_reason(&self) -> Option<String> {
        if self.ok {
            return None;
        }
        if let Some(failure) = self.failure.as_deref().filter(|f| !f.is_empty()) {
            return Some(failure.to_string());
        }
        let failed: Vec<String> =
            self.checks.iter().filter(|c| !c.ok).map(|c| format!("{}: {}", c.name, c.reason)).collect();
        Some(if failed.is_empty() { "evaluation not ok".to_string() } else { failed.join("; ") })
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
    }
}
