//! `gradients score`: recompute task scores and weights from exported evaluation records.
//!
//! Parsing is strict about everything the result depends on (types, timestamps, sizes, hours,
//! repeated miners) and names the task and field of any problem. A missing or non-finite loss
//! is not an input error: that submission is scored as failed.

use chrono::{DateTime, Utc};
use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize};

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
/// Python's `json.dumps` writes for non-finite losses. The document is read straight into
/// typed records (no intermediate value tree); only when it is refused is it read again to
/// say where.
pub fn parse_input(text: &str) -> Result<ScoreInput, InputError> {
    let text = non_finite_to_strings(text);
    let raw: RawInput = match serde_json::from_str(&text) {
        Ok(raw) => raw,
        Err(e) => return Err(locate(&text, e)),
    };
    let now = raw.now.ok_or_else(|| top_error("now", "must be an RFC3339 timestamp string"))?;
    let tasks = raw.tasks.ok_or_else(|| top_error("tasks", "must be an array of tasks"))?;
    let tasks = tasks.into_iter().enumerate().map(|(i, task)| task.check(i)).collect::<Result<_, _>>()?;
    Ok(ScoreInput { now, tasks })
}

fn top_error(field: &str, message: &str) -> InputError {
    InputError::Top { field: field.to_string(), message: message.to_string() }
}

/// The error of a document serde refused, with the task and field it is about.
fn locate(text: &str, error: serde_json::Error) -> InputError {
    if matches!(error.classify(), serde_json::error::Category::Syntax | serde_json::error::Category::Eof) {
        return InputError::Json { line: error.line(), column: error.column(), message: error.to_string() };
    }
    let mut deserializer = serde_json::Deserializer::from_str(text);
    let (path, error) = match serde_path_to_error::deserialize::<_, RawInput>(&mut deserializer) {
        Err(e) => (e.path().to_string(), e.into_inner()),
        Ok(_) => (String::new(), error),
    };
    let message = bare_message(&error);
    let Some(rest) = path.strip_prefix("tasks[") else {
        return match path.as_str() {
            "" | "." => top_error("(document)", "must be a JSON object"),
            field => top_error(field, &message),
        };
    };
    let (index, field) = rest.split_once(']').unwrap_or((rest, ""));
    let field = field.trim_start_matches('.');
    let index: usize = index.parse().unwrap_or(0);
    let value: Option<serde_json::Value> = serde_json::from_str(text).ok();
    let id = value.as_ref().and_then(|v| v["tasks"][index]["id"].as_str().map(|id| format!("{id:?}")));
    let (field, message) = if field.is_empty() { ("(task)", "must be a JSON object".into()) } else { (field, message) };
    InputError::Task {
        task: id.unwrap_or_else(|| "?".into()),
        path: format!("tasks[{index}]"),
        field: field.to_string(),
        message,
    }
}

/// serde_json's message without its " at line L column C" suffix (the field says where).
fn bare_message(error: &serde_json::Error) -> String {
    let message = error.to_string();
    let suffix = format!(" at line {} column {}", error.line(), error.column());
    message.strip_suffix(&suffix).unwrap_or(&message).to_string()
}

/// The document as read; every field optional so that a missing one gets its own message.
#[derive(Deserialize)]
struct RawInput {
    #[serde(default, deserialize_with = "timestamp")]
    now: Option<DateTime<Utc>>,
    #[serde(default)]
    tasks: Option<Vec<RawTask>>,
}

#[derive(Deserialize)]
struct RawTask {
    #[serde(default)]
    id: Option<String>,
    #[serde(rename = "type", default, deserialize_with = "task_type")]
    task_type: Option<TaskType>,
    #[serde(default, deserialize_with = "non_negative")]
    model_params_b: Option<f64>,
    #[serde(default, deserialize_with = "non_negative")]
    hours: Option<f64>,
    #[serde(default, deserialize_with = "timestamp")]
    finished_at: Option<DateTime<Utc>>,
    #[serde(default)]
    submissions: Option<Vec<RawSubmission>>,
}

#[derive(Deserialize)]
struct RawSubmission {
    #[serde(default)]
    miner: Option<String>,
    #[serde(default, deserialize_with = "timestamp")]
    submitted_at: Option<DateTime<Utc>>,
    #[serde(default, deserialize_with = "loss")]
    test_loss: Option<f64>,
    #[serde(default, deserialize_with = "loss")]
    synth_loss: Option<f64>,
    #[serde(default, deserialize_with = "loss")]
    text_guided_loss: Option<f64>,
    #[serde(default, deserialize_with = "loss")]
    no_text_loss: Option<f64>,
    #[serde(default)]
    weights_sha256: Option<String>,
    #[serde(default)]
    rung: Option<u32>,
}

impl RawTask {
    /// Required fields and repeated miners, named with the task.
    fn check(self, index: usize) -> Result<TaskRecord, InputError> {
        let task = self.id.as_ref().map_or_else(|| "?".to_string(), |id| format!("{id:?}"));
        let fail = |field: &str, message: String| InputError::Task {
            task: task.clone(),
            path: format!("tasks[{index}]"),
            field: field.to_string(),
            message,
        };
        let id = self.id.clone().ok_or_else(|| fail("id", "must be a string".into()))?;
        let task_type =
            self.task_type.ok_or_else(|| fail("type", "must be one of InstructText, Dpo, Grpo, Image".into()))?;
        let missing = "is missing (a finite number >= 0)".to_string();
        let model_params_b = self.model_params_b.ok_or_else(|| fail("model_params_b", missing.clone()))?;
        let hours = self.hours.ok_or_else(|| fail("hours", missing))?;
        let finished_at =
            self.finished_at.ok_or_else(|| fail("finished_at", "must be an RFC3339 timestamp string".into()))?;
        let raw = self.submissions.ok_or_else(|| fail("submissions", "must be an array".into()))?;
        let mut submissions: Vec<SubmissionRecord> = Vec::with_capacity(raw.len());
        for (j, sub) in raw.into_iter().enumerate() {
            let at = |field: &str| format!("submissions[{j}].{field}");
            let miner = sub.miner.ok_or_else(|| fail(&at("miner"), "must be a string".into()))?;
            // Tasks have a handful of submissions: a scan beats hashing.
            if submissions.iter().any(|s| s.miner == miner) {
                return Err(fail(&at("miner"), format!("miner {miner:?} appears more than once in this task")));
            }
            let submitted_at = sub
                .submitted_at
                .ok_or_else(|| fail(&at("submitted_at"), "must be an RFC3339 timestamp string".into()))?;
            submissions.push(SubmissionRecord {
                miner,
                submitted_at,
                test_loss: sub.test_loss,
                synth_loss: sub.synth_loss,
                text_guided_loss: sub.text_guided_loss,
                no_text_loss: sub.no_text_loss,
                weights_sha256: sub.weights_sha256,
                rung: sub.rung,
            });
        }
        Ok(TaskRecord { id, task_type, model_params_b, hours, finished_at, submissions })
    }
}

/// An RFC3339 timestamp string.
fn timestamp<'de, D: Deserializer<'de>>(d: D) -> Result<Option<DateTime<Utc>>, D::Error> {
    struct V;
    impl Visitor<'_> for V {
        type Value = Option<DateTime<Utc>>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("an RFC3339 timestamp string")
        }
        fn visit_str<E: de::Error>(self, text: &str) -> Result<Self::Value, E> {
            DateTime::parse_from_rfc3339(text)
                .map(|t| Some(t.with_timezone(&Utc)))
                .map_err(|e| E::custom(format!("{text:?} is not an RFC3339 timestamp ({e})")))
        }
    }
    d.deserialize_str(V)
}

fn task_type<'de, D: Deserializer<'de>>(d: D) -> Result<Option<TaskType>, D::Error> {
    struct V;
    impl Visitor<'_> for V {
        type Value = Option<TaskType>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("one of InstructText, Dpo, Grpo, Image")
        }
        fn visit_str<E: de::Error>(self, text: &str) -> Result<Self::Value, E> {
            text.parse::<TaskType>().map(Some).map_err(E::custom)
        }
    }
    d.deserialize_str(V)
}

/// A finite number >= 0.
fn non_negative<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
    struct V;
    fn check<E: de::Error>(x: f64, shown: &dyn std::fmt::Display) -> Result<Option<f64>, E> {
        if x.is_finite() && x >= 0.0 {
            Ok(Some(x))
        } else {
            Err(E::custom(format!("must be a finite number >= 0, got {shown}")))
        }
    }
    impl Visitor<'_> for V {
        type Value = Option<f64>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a finite number >= 0")
        }
        fn visit_u64<E: de::Error>(self, n: u64) -> Result<Self::Value, E> {
            Ok(Some(n as f64))
        }
        fn visit_i64<E: de::Error>(self, n: i64) -> Result<Self::Value, E> {
            check(n as f64, &n)
        }
        fn visit_f64<E: de::Error>(self, x: f64) -> Result<Self::Value, E> {
            check(x, &x)
        }
        fn visit_str<E: de::Error>(self, text: &str) -> Result<Self::Value, E> {
            Err(E::custom(match parse_non_finite(text) {
                Some(_) => format!("must be a finite number >= 0, got {text}"),
                None => format!("must be a finite number >= 0, got {text:?}"),
            }))
        }
    }
    d.deserialize_any(V)
}

/// A loss: a number, `null`, absent, or a non-finite marker; anything else is an error.
fn loss<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
    struct V;
    impl Visitor<'_> for V {
        type Value = Option<f64>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a number or null")
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_u64<E: de::Error>(self, n: u64) -> Result<Self::Value, E> {
            Ok(Some(n as f64))
        }
        fn visit_i64<E: de::Error>(self, n: i64) -> Result<Self::Value, E> {
            Ok(Some(n as f64))
        }
        fn visit_f64<E: de::Error>(self, x: f64) -> Result<Self::Value, E> {
            Ok(Some(x))
        }
        fn visit_str<E: de::Error>(self, text: &str) -> Result<Self::Value, E> {
            parse_non_finite(text).map(Some).ok_or_else(|| E::custom(format!("must be a number or null, got {text:?}")))
        }
        fn visit_bool<E: de::Error>(self, b: bool) -> Result<Self::Value, E> {
            Err(E::custom(format!("must be a number or null, got {b}")))
        }
    }
    d.deserialize_any(V)
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
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len() + 64);
    let mut in_string = false;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if in_string {
            match b {
                b'\\' => {
                    out.extend_from_slice(&bytes[i..(i + 2).min(bytes.len())]);
                    i += 2;
                    continue;
                }
                b'"' => in_string = false,
                _ => {}
            }
        } else if b == b'"' {
            in_string = true;
        } else if let Some(token) =
            [&b"-Infinity"[..], b"Infinity", b"NaN"].into_iter().find(|t| bytes[i..].starts_with(t))
        {
            out.push(b'"');
            out.extend_from_slice(token);
            out.push(b'"');
            i += token.len();
            continue;
        }
        out.push(b);
        i += 1;
    }
    // Only ASCII quotes were added around ASCII tokens, outside strings: still UTF-8.
    std::borrow::Cow::Owned(
        String::from_utf8(out).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned()),
    )
}

/// The standings for people: one row per miner by weight, then the task count.
pub fn standings_table(report: &ScoreReport) -> String {
    use std::fmt::Write as _;
    let board = &report.leaderboard;
    let mut miners: Vec<_> = board.miners.iter().collect();
    miners.sort_by(|a, b| b.weight.total_cmp(&a.weight).then_with(|| a.miner.cmp(&b.miner)));
    let mut out = String::new();
    let _ = writeln!(out, "leaderboard at {} over {} task(s)\n", report.now.to_rfc3339(), board.tasks.len());
    let _ = writeln!(
        out,
        "{:<4} {:<24} {:>9} {:>10} {:>6} {:>6}  window sums",
        "#", "miner", "quality", "weight", "u16", "tasks"
    );
    for (i, m) in miners.iter().enumerate() {
        let sums: Vec<String> = m.window_sums.iter().map(|s| format!("{s:.1}")).collect();
        let _ = writeln!(
            out,
            "{:<4} {:<24} {:>9.4} {:>10.6} {:>6} {:>6}  {}",
            i + 1,
            m.miner,
            m.quality,
            m.weight,
            m.weight_u16,
            m.tasks,
            sums.join(" / ")
        );
    }
    if miners.is_empty() {
        let _ = writeln!(out, "(no miner has a task in the window)");
    }
    out.truncate(out.trim_end().len());
    out
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
