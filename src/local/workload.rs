//! The workload contract on the local side: the command lines of the reference trainer and
//! the evaluator (`trainer-image/README.md`), and how a finished process becomes a
//! [`WorkloadState`].

use std::path::{Path, PathBuf};
use std::process::ExitStatus;

use chrono::{DateTime, Duration, Utc};
use serde::Deserialize;

use super::dataset::SplitPaths;
use super::fsio;
use super::process::{Spec, describe};
use crate::api::task::TaskSpec;
use crate::mechanism::TaskType;
use crate::tournament::{EvalReport, TrainingSummary, WorkOutput, WorkloadState};

/// Lines of a failed workload's stderr kept for the user.
const TAIL_LINES: usize = 15;

/// What every workload of one run shares.
#[derive(Debug, Clone)]
pub struct Contract {
    pub python: String,
    pub spec: TaskSpec,
    pub splits: SplitPaths,
    pub rewards: PathBuf,
    pub seed: u64,
    /// `fast` or `paper`: the evaluator's protocol.
    pub profile: String,
    /// CPU threads each process may use (the machine's cores shared by the parallel slots).
    pub threads: usize,
}

fn task_type_arg(t: TaskType) -> &'static str {
    match t {
        TaskType::InstructText => "instruct",
        TaskType::Dpo => "dpo",
        TaskType::Grpo => "grpo",
        TaskType::Image => "image",
    }
}

/// The column mapping as the trainer takes it: camelCase template keys become snake_case.
fn columns_json(spec: &TaskSpec) -> Option<String> {
    if spec.dataset.columns.is_empty() {
        return None;
    }
    let map: serde_json::Map<String, serde_json::Value> = spec
        .dataset
        .columns
        .iter()
        .map(|(k, v)| {
            let key = if k == "noInputFormat" { "no_input_format".to_string() } else { k.clone() };
            (key, serde_json::Value::String(v.clone()))
        })
        .collect();
    Some(serde_json::Value::Object(map).to_string())
}

impl Contract {
    fn common(&self) -> Vec<String> {
        let mut args = vec!["--task-type".into(), task_type_arg(self.spec.task_type).into()];
        args.extend(["--base-model".into(), self.spec.base_model.uri.clone()]);
        if let Some(columns) = columns_json(&self.spec) {
            args.extend(["--columns".into(), columns]);
        }
        if self.spec.task_type == TaskType::Grpo {
            args.extend(["--reward-functions".into(), self.rewards.to_string_lossy().into_owned()]);
        }
        args
    }

    fn env(&self) -> Vec<(String, String)> {
        let threads = self.threads.to_string();
        vec![
            ("PYTHONUNBUFFERED".into(), "1".into()),
            ("OMP_NUM_THREADS".into(), threads.clone()),
            ("MKL_NUM_THREADS".into(), threads),
            ("TOKENIZERS_PARALLELISM".into(), "false".into()),
        ]
    }

    /// `train`: `hours` from now, or until `deadline` when that comes first. A miner with its
    /// own `command` runs it instead of `python -m gradients_trainer`, with the same arguments.
    pub fn training(
        &self,
        strategy: &str,
        command: Option<&[String]>,
        hours: f64,
        deadline: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
        output: &Path,
    ) -> Spec {
        let ends = now + Duration::milliseconds((hours * 3_600_000.0) as i64);
        let ends = deadline.map_or(ends, |d| d.min(ends));
        let mut args = vec!["train".to_string()];
        args.extend(self.common());
        args.extend(["--train-data".into(), self.splits.train.to_string_lossy().into_owned()]);
        args.extend(["--deadline".into(), ends.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)]);
        args.extend(["--output".into(), output.to_string_lossy().into_owned()]);
        args.extend(["--strategy".into(), strategy.to_string(), "--seed".into(), self.seed.to_string()]);
        let mut env = self.env();
        env.extend([
            ("GRADIENTS_OUTPUT".to_string(), output.to_string_lossy().into_owned()),
            ("GRADIENTS_TRAIN_DATA".to_string(), self.splits.train.to_string_lossy().into_owned()),
            ("GRADIENTS_BASE_MODEL".to_string(), self.spec.base_model.uri.clone()),
            ("GRADIENTS_DEADLINE".to_string(), ends.to_rfc3339()),
        ]);
        match command {
            Some([program, first @ ..]) => {
                let mut all = first.to_vec();
                all.extend(args);
                Spec { program: program.clone(), args: all, env }
            }
            _ => Spec {
                program: self.python.clone(),
                args: [vec!["-m".into(), "gradients_trainer".into()], args].concat(),
                env,
            },
        }
    }

    /// `evaluate` of a trained model, or of the base model itself when `submission` is `None`.
    pub fn evaluation(&self, submission: Option<&Path>) -> Spec {
        let mut args: Vec<String> = vec!["-m".into(), "gradients_trainer".into(), "evaluate".into()];
        args.extend(self.common());
        match submission {
            Some(model) => args.extend(["--submission".into(), model.to_string_lossy().into_owned()]),
            None => args.push("--score-base".into()),
        }
        args.extend(["--test-data".into(), self.splits.test.to_string_lossy().into_owned()]);
        args.extend(["--synth-data".into(), self.splits.synthetic.to_string_lossy().into_owned()]);
        args.extend(["--profile".into(), self.profile.clone(), "--seed".into(), self.seed.to_string()]);
        Spec { program: self.python.clone(), args, env: self.env() }
    }
}

/// `training.json` as the trainer writes it.
#[derive(Deserialize)]
struct TrainingJson {
    #[serde(default)]
    steps: Option<u64>,
    #[serde(default)]
    final_train_loss: Option<f64>,
    #[serde(default)]
    stopped_by_deadline: Option<bool>,
}

/// A trainer succeeded when it exited 0 and left a non-empty `OUTPUT/model/`.
pub fn trained(dir: &Path, status: ExitStatus, started_at: DateTime<Utc>, finished_at: DateTime<Utc>) -> WorkloadState {
    let log = dir.join("stderr.log");
    let model = dir.join("out").join("model");
    let has_model = std::fs::read_dir(&model).is_ok_and(|mut d| d.next().is_some());
    let reason = match (status.success(), has_model) {
        (true, true) => {
            let summary = fsio::read_json::<TrainingJson>(&dir.join("out").join("training.json")).ok().flatten();
            let summary = summary.map_or_else(TrainingSummary::default, |s| TrainingSummary {
                steps: s.steps,
                final_train_loss: s.final_train_loss,
                stopped_by_deadline: s.stopped_by_deadline,
            });
            return WorkloadState::Succeeded { started_at, finished_at, output: WorkOutput::Trained(summary) };
        }
        (true, false) => "trainer exited 0 but wrote no model (out/model/ is missing or empty)".to_string(),
        (false, _) => format!("trainer {}", describe(status)),
    };
    WorkloadState::Failed {
        started_at: Some(started_at),
        finished_at,
        reason,
        log_tail: fsio::tail(&log, TAIL_LINES, 8192),
        retryable: false,
    }
}

/// An evaluator succeeded when it exited 0 with a result object as its last stdout line. A
/// crash is worth a retry (it is the validator's tool, not the miner's); a missing or
/// malformed result is not.
pub fn evaluated(
    dir: &Path,
    status: ExitStatus,
    started_at: DateTime<Utc>,
    finished_at: DateTime<Utc>,
) -> WorkloadState {
    let log_tail = fsio::tail(&dir.join("stderr.log"), TAIL_LINES, 8192);
    if !status.success() {
        let reason = format!("evaluator {}", describe(status));
        return WorkloadState::Failed { started_at: Some(started_at), finished_at, reason, log_tail, retryable: true };
    }
    let stdout = std::fs::read_to_string(dir.join("stdout.log")).unwrap_or_default();
    match EvalReport::parse(&stdout) {
        Ok(report) if report.worth_retry() => WorkloadState::Failed {
            started_at: Some(started_at),
            finished_at,
            reason: report.failure_reason().unwrap_or_default(),
            log_tail,
            retryable: true,
        },
        Ok(report) => WorkloadState::Succeeded { started_at, finished_at, output: WorkOutput::Evaluated(report) },
        Err(e) => WorkloadState::Failed {
            started_at: Some(started_at),
            finished_at,
            reason: e.to_string(),
            log_tail,
            retryable: false,
        },
    }
}

/// The latest `{"event":"progress",…}` line of a trainer's stdout: (step, total, loss).
pub fn latest_progress(stdout: &str) -> Option<super::progress::StepLoss> {
    #[derive(Deserialize)]
    struct Progress {
        event: String,
        #[serde(default)]
        step: Option<u64>,
        #[serde(default)]
        total_steps: Option<u64>,
        #[serde(default)]
        loss: Option<f64>,
    }
    stdout
        .lines()
        .rev()
        .filter_map(|l| serde_json::from_str::<Progress>(l).ok())
        .find(|p| p.event == "progress")
        .map(|p| (p.step.unwrap_or(0), p.total_steps.unwrap_or(0), p.loss))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_lines_are_read_from_the_end() {
        let out = "{\"event\":\"progress\",\"step\":1,\"total_steps\":9,\"loss\":2.5}\nnoise\n\
                   {\"event\":\"progress\",\"step\":2,\"total_steps\":9,\"loss\":2.0}\n{\"event\":\"done\"}\n";
        assert_eq!(latest_progress(out), Some((2, 9, Some(2.0))));
        assert_eq!(latest_progress("nothing"), None);
    }
}
