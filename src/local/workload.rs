//! The workload contract on the local side: the local executor renders the same invocations
//! as the cluster builders ([`crate::workloads::contract`]) with run-directory paths, and
//! turns a finished process into a [`WorkloadState`].

use std::path::Path;
use std::process::ExitStatus;

use chrono::{DateTime, Utc};
use serde::Deserialize;

use super::fsio;
use super::process::{Spec, describe};
use crate::api::task::TaskSpec;
use crate::tournament::{EvalReport, WorkOutput, WorkloadState};
use crate::workloads::contract::{
    EvalInvocation, PreparedData, Subject, SynthesizeInvocation, TRAINER_PROGRAM, TrainInvocation, TrainerOutput,
    budget_hours, columns_arg,
};

/// Lines of a failed workload's stderr kept for the user.
const TAIL_LINES: usize = 15;

/// What every workload of one run shares.
#[derive(Debug, Clone)]
pub struct Contract {
    pub python: String,
    pub spec: TaskSpec,
    /// `RUN/data`, laid out as the contract says.
    pub data: PreparedData,
    pub seed: u64,
    /// `fast` or `paper`: the evaluator's protocol.
    pub profile: String,
    /// CPU threads each process may use (the machine's cores shared by the parallel slots).
    pub threads: usize,
}

fn path(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

impl Contract {
    /// The local executor's own variables (the cluster's are its resource limits and HOME).
    fn env(&self, contract: Vec<(String, String)>) -> Vec<(String, String)> {
        let threads = self.threads.to_string();
        let mut env = contract;
        env.extend([
            ("OMP_NUM_THREADS".into(), threads.clone()),
            ("MKL_NUM_THREADS".into(), threads),
            ("TOKENIZERS_PARALLELISM".into(), "false".into()),
        ]);
        env
    }

    /// The reference package's program with this run's interpreter.
    fn trainer_program(&self, args: Vec<String>) -> Spec {
        let module = TRAINER_PROGRAM[1..].iter().map(|s| s.to_string());
        Spec { program: self.python.clone(), args: module.chain(args).collect(), env: Vec::new() }
    }

    /// `train` for `hours` from `now`, capped by `deadline`, continuing from `resume` (an
    /// earlier training's output) when given. A miner with its own `command` runs it instead
    /// of the reference trainer, with the same arguments and environment.
    pub fn training(
        &self,
        strategy: &str,
        command: Option<&[String]>,
        (hours, deadline, now): (f64, Option<DateTime<Utc>>, DateTime<Utc>),
        resume: Option<TrainerOutput>,
        output: &Path,
    ) -> Spec {
        let invocation = TrainInvocation {
            task_type: self.spec.task_type,
            base_model: self.spec.base_model.uri.clone(),
            inputs: self.data.training.clone(),
            columns: columns_arg(&self.spec.dataset.columns),
            hours: budget_hours(hours, deadline, now),
            output: TrainerOutput(path(output)),
            strategy: Some(strategy.to_string()),
            seed: self.seed,
            resume_from: resume.map(|r| r.dir().to_string()),
        };
        let args = invocation.argv();
        let env = self.env(invocation.env());
        match command {
            Some([program, first @ ..]) => {
                Spec { program: program.clone(), args: [first.to_vec(), args].concat(), env }
            }
            _ => Spec { env, ..self.trainer_program(args) },
        }
    }

    /// `evaluate` of a trained model, or of the base model itself.
    pub fn evaluation(&self, subject: Subject) -> Spec {
        let invocation = EvalInvocation {
            task_type: self.spec.task_type,
            base_model: self.spec.base_model.uri.clone(),
            subject,
            inputs: self.data.training.clone(),
            heldout: self.data.heldout.clone(),
            columns: columns_arg(&self.spec.dataset.columns),
            profile: Some(self.profile.clone()),
            seed: self.seed,
            termination_message_path: None,
            generated_synthetic: self.spec.dataset.generator.is_some(),
        };
        Spec { env: self.env(invocation.env()), ..self.trainer_program(invocation.argv()) }
    }

    /// `synthesize-eval`: the task's generator writes `rows` rows into `RUN/data/heldout/generated`.
    /// `None` when the task has no generator.
    pub fn synthesis(&self, seed: u64, rows: u64) -> Option<Spec> {
        let generator = self.spec.dataset.generator.as_ref()?;
        let invocation = SynthesizeInvocation {
            task_type: self.spec.task_type,
            generator: generator.model_uri.clone(),
            weaker_model: generator.weaker_model_uri.clone(),
            data: self.data.clone(),
            output: self.data.heldout.generated_dir(),
            columns: columns_arg(&self.spec.dataset.columns),
            rows,
            temperature: generator.temperature,
            max_new_tokens: generator.max_new_tokens,
            seed,
            termination_message_path: None,
        };
        Some(Spec { env: self.env(invocation.env()), ..self.trainer_program(invocation.argv()) })
    }
}

/// The generator's process: exit 0 and a `done` record as the last stdout line. A failure is
/// the task's (its generator or data): final, with the log's tail for the user.
pub fn synthesized(
    dir: &Path,
    status: ExitStatus,
    started_at: DateTime<Utc>,
    finished_at: DateTime<Utc>,
) -> WorkloadState {
    let log_tail = fsio::tail(&dir.join("stderr.log"), TAIL_LINES, 8192);
    let stdout = std::fs::read_to_string(dir.join("stdout.log")).unwrap_or_default();
    let last = stdout.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("");
    let result = if status.success() {
        crate::workloads::synthesize::summary(last)
    } else {
        Err(format!("the generator {}", describe(status)))
    };
    match result {
        Ok(summary) => WorkloadState::Succeeded { started_at, finished_at, output: WorkOutput::Synthesized(summary) },
        Err(reason) => {
            WorkloadState::Failed { started_at: Some(started_at), finished_at, reason, log_tail, retryable: false }
        }
    }
}

/// A trainer's output directory inside its workload directory.
pub fn trainer_output(dir: &Path) -> TrainerOutput {
    TrainerOutput(path(&dir.join("out")))
}

/// Where a seal workload puts its copy (`model/`, `manifest.json`).
pub fn sealed_dir(dir: &Path) -> std::path::PathBuf {
    dir.join("sealed")
}

/// The sealed model the evaluator reads.
pub fn sealed_model(dir: &Path) -> String {
    path(&sealed_dir(dir).join(crate::workloads::contract::MODEL_DIR))
}

/// A trainer succeeded when it exited 0 and left a non-empty `OUTPUT/model/`.
pub fn trained(dir: &Path, status: ExitStatus, started_at: DateTime<Utc>, finished_at: DateTime<Utc>) -> WorkloadState {
    let log = dir.join("stderr.log");
    let output = trainer_output(dir);
    let has_model = std::fs::read_dir(output.model()).is_ok_and(|mut d| d.next().is_some());
    let reason = match (status.success(), has_model) {
        (true, true) => {
            let summary = crate::seal::trainer_summary(Path::new(output.dir())).unwrap_or_default();
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
