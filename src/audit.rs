//! `gradients score`: recompute task scores and weights from exported evaluation records.
//!
//! Parsing is strict about everything the result depends on (types, timestamps, sizes, hours,
//! repeated miners) and names the task and field of any problem. A missing or non-finite loss
//! is not an input error: that submission is scored as failed.

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{Map, Value};

use crate::mechanism::leaderboard::{self, Leaderboard};
use crate::mechanism::records::{ScoreInput, SubmissionRecord, TaskRecord};
use crate::mechanism::{MechanismConfig, TaskType};

/// Why an input file cannot be scored.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum InputError {
    #[error("malformed JSON at line {line}, column {column}: {message}")]
    Json { line: usize, column: usize, message: String },
    #[error("field {field:?}: {message}")]
    Top { field: String, message: String },
    #[error("task {task} ({path}): field {field:?}: {message}")]
    Task { task: String, path: String, field: String, message: String },
}

/// The output of `gradients score`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ScoreReport {
    pub now: DateTime<Utc>,
    #[serde(flatten)]
    pub leaderboard: Leaderboard,
}

/// Parses and scores an input document.
pub fn score_document(config: &MechanismConfig, text: &str) -> Result<ScoreReport, InputError> {
    let input = parse_input(text)?;
    Ok(ScoreReport { now: input.now, leaderboard: leaderboard::compute(config, input.now, &input.tasks) })
}

/// Parses the input of `gradients score`, accepting the bare `NaN`/`Infinity` tokens that
/// Python's `json.dumps` writes for non-finite losses.
pub fn parse_input(text: &str) -> Result<ScoreInput, InputError> {
    let value: Value = serde_json::from_str(&non_finite_to_strings(text)).map_err(|e| InputError::Json {
        line: e.line(),
        column: e.column(),
        message: e.to_string(),
    })?;
    let top = value.as_object().ok_or_else(|| top_error("(document)", "must be a JSON object"))?;
    let now = timestamp(top.get("now")).map_err(|m| top_error("now", &m))?;
    let tasks =
        top.get("tasks").and_then(Value::as_array).ok_or_else(|| top_error("tasks", "must be an array of tasks"))?;
    let tasks = tasks.iter().enumerate().map(|(i, task)| parse_task(i, task)).collect::<Result<_, _>>()?;
    Ok(ScoreInput { now, tasks })
}

fn top_error(field: &str, message: &str) -> InputError {
    InputError::Top { field: field.to_string(), message: message.to_string() }
}

fn parse_task(index: usize, value: &Value) -> Result<TaskRecord, InputError> {
    let path = format!("tasks[{index}]");
    let obj = value.as_object().ok_or_else(|| InputError::Task {
        task: "?".into(),
        path: path.clone(),
        field: "(task)".into(),
        message: "must be a JSON object".into(),
    })?;
    let task_name = obj.get("id").and_then(Value::as_str).map_or_else(|| "?".to_string(), |id| format!("{id:?}"));
    let fail = |field: &str, message: String| InputError::Task {
        task: task_name.clone(),
        path: path.clone(),
        field: field.to_string(),
        message,
    };
    let id = obj.get("id").and_then(Value::as_str).ok_or_else(|| fail("id", "must be a string".into()))?;
    let task_type = obj
        .get("type")
        .and_then(Value::as_str)
        .ok_or_else(|| fail("type", "must be one of InstructText, Dpo, Grpo, Image".into()))?
        .parse::<TaskType>()
        .map_err(|e| fail("type", e.to_string()))?;
    let model_params_b = non_negative(obj, "model_params_b").map_err(|m| fail("model_params_b", m))?;
    let hours = non_negative(obj, "hours").map_err(|m| fail("hours", m))?;
    let finished_at = timestamp(obj.get("finished_at")).map_err(|m| fail("finished_at", m))?;
    let subs = obj
        .get("submissions")
        .and_then(Value::as_array)
        .ok_or_else(|| fail("submissions", "must be an array".into()))?;
    let mut seen = HashSet::new();
    let mut submissions = Vec::with_capacity(subs.len());
    for (j, sub) in subs.iter().enumerate() {
        let at = |field: &str| format!("submissions[{j}].{field}");
        let sub = sub.as_object().ok_or_else(|| fail(&format!("submissions[{j}]"), "must be a JSON object".into()))?;
        let miner =
            sub.get("miner").and_then(Value::as_str).ok_or_else(|| fail(&at("miner"), "must be a string".into()))?;
        if !seen.insert(miner) {
            return Err(fail(&at("miner"), format!("miner {miner:?} appears more than once in this task")));
        }
        let submitted_at = timestamp(sub.get("submitted_at")).map_err(|m| fail(&at("submitted_at"), m))?;
        let loss = |field: &str| optional_loss(sub.get(field)).map_err(|m| fail(&at(field), m));
        let weights_sha256 = match sub.get("weights_sha256") {
            None | Some(Value::Null) => None,
            Some(Value::String(hash)) => Some(hash.clone()),
            Some(_) => return Err(fail(&at("weights_sha256"), "must be a string".into())),
        };
        submissions.push(SubmissionRecord {
            miner: miner.to_string(),
            submitted_at,
            test_loss: loss("test_loss")?,
            synth_loss: loss("synth_loss")?,
            text_guided_loss: loss("text_guided_loss")?,
            no_text_loss: loss("no_text_loss")?,
            weights_sha256,
        });
    }
    Ok(TaskRecord { id: id.to_string(), task_type, model_params_b, hours, finished_at, submissions })
}

fn timestamp(value: Option<&Value>) -> Result<DateTime<Utc>, String> {
    let text = value.and_then(Value::as_str).ok_or("must be an RFC3339 timestamp string")?;
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| format!("{text:?} is not an RFC3339 timestamp ({e})"))
}

fn non_negative(obj: &Map<String, Value>, field: &str) -> Result<f64, String> {
    match obj.get(field) {
        Some(Value::Number(n)) => match n.as_f64() {
            Some(x) if x.is_finite() && x >= 0.0 => Ok(x),
            _ => Err(format!("must be a finite number >= 0, got {n}")),
        },
        Some(Value::String(s)) if parse_non_finite(s).is_some() => {
            Err(format!("must be a finite number >= 0, got {s}"))
        }
        Some(other) => Err(format!("must be a finite number >= 0, got {other}")),
        None => Err("is missing (a finite number >= 0)".into()),
    }
}

/// A loss: a number, `null`, absent, or a non-finite marker; anything else is an error.
fn optional_loss(value: Option<&Value>) -> Result<Option<f64>, String> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => Ok(n.as_f64()),
        Some(Value::String(s)) => {
            parse_non_finite(s).map(Some).ok_or_else(|| format!("must be a number or null, got {s:?}"))
        }
        Some(other) => Err(format!("must be a number or null, got {other}")),
    }
}

fn parse_non_finite(text: &str) -> Option<f64> {
    match text.to_ascii_lowercase().as_str() {
        "nan" => Some(f64::NAN),
        "infinity" | "inf" | "+infinity" | "+inf" => Some(f64::INFINITY),
        "-infinity" | "-inf" => Some(f64::NEG_INFINITY),
        _ => None,
    }
}

/// Rewrites bare `NaN`, `Infinity` and `-Infinity` tokens (outside strings) as strings, so
/// serde_json can read documents written by Python's `json`.
fn non_finite_to_strings(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.contains("NaN") && !text.contains("Infinity") {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    let mut in_string = false;
    let mut escaped = false;
    let mut rest = text;
    while let Some(c) = rest.chars().next() {
        if in_string {
            in_string = c != '"' || escaped;
            escaped = c == '\\' && !escaped;
        } else if c == '"' {
            in_string = true;
        } else if let Some(token) = ["-Infinity", "Infinity", "NaN"].into_iter().find(|t| rest.starts_with(t)) {
            out.push('"');
            out.push_str(token);
            out.push('"');
            rest = &rest[token.len()..];
            continue;
        }
        out.push(c);
        rest = &rest[c.len_utf8()..];
    }
    std::borrow::Cow::Owned(out)
}

/// Differences between the weights a validator published and the recomputed ones:
/// `expected` maps miner to `weight_u16`. Empty when they agree.
pub fn check_weights(report: &ScoreReport, expected: &std::collections::BTreeMap<String, u16>) -> Vec<String> {
    let mut problems = Vec::new();
    for miner in &report.leaderboard.miners {
        match expected.get(&miner.miner) {
            Some(&w) if w == miner.weight_u16 => {}
            Some(&w) => problems.push(format!("{}: published {w}, recomputed {}", miner.miner, miner.weight_u16)),
            None if miner.weight_u16 == 0 => {}
            None => problems.push(format!("{}: missing, recomputed {}", miner.miner, miner.weight_u16)),
        }
    }
    for (miner, w) in expected {
        if *w != 0 && !report.leaderboard.miners.iter().any(|m| &m.miner == miner) {
            problems.push(format!("{miner}: published {w}, but it has no task in the window"));
        }
    }
    problems
}

#[cfg(test)]
#[path = "audit_tests.rs"]
mod tests;
