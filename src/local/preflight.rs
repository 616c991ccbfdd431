//! Checks made before any workload starts, so that a broken environment stops the run at
//! once with its cause (exit 2) instead of failing every miner, retrying the evaluator and
//! recording a failed task in the leaderboard store: the Python interpreter imports the
//! trainer package at the contract version this binary speaks, the base model's configuration
//! loads, and the GPUs asked for (`CUDA_VISIBLE_DEVICES`) are visible.

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::Deserialize;

use crate::api::task::TaskSpec;
use crate::mechanism::TaskType;

/// The workload contract this binary speaks; `CONTRACT_VERSION` in
/// `trainer-image/src/gradients_trainer/__init__.py` must match.
pub const TRAINER_CONTRACT_VERSION: u32 = 1;

/// How long the check may take (importing torch on a cold disk is slow).
const TIMEOUT: Duration = Duration::from_secs(300);

/// The environment cannot run this task; nothing was started or recorded.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("environment: {what}\n{cause}")]
pub struct EnvironmentError {
    pub what: String,
    /// The interpreter's own words (the end of its stderr) or what to do.
    pub cause: String,
}

fn env_error(what: impl Into<String>, cause: impl Into<String>) -> EnvironmentError {
    EnvironmentError { what: what.into(), cause: cause.into() }
}

/// A program given as a relative path with a directory part (`./venv/bin/python`) is made
/// absolute against the current directory: workloads run in their own directories. A bare
/// name (`python3`) is left to the `PATH` lookup.
pub fn resolve_program(program: &str) -> String {
    let path = Path::new(program);
    if path.is_absolute() || path.components().count() < 2 {
        return program.to_string();
    }
    std::env::current_dir().map_or_else(|_| program.to_string(), |cwd| cwd.join(path).to_string_lossy().into_owned())
}

/// GPUs the run is given: the devices listed in `CUDA_VISIBLE_DEVICES`, none when unset.
pub fn requested_gpus() -> usize {
    match std::env::var("CUDA_VISIBLE_DEVICES") {
        Ok(list) if !list.trim().is_empty() && list.trim() != "-1" => list.split(',').count(),
        _ => 0,
    }
}

/// What the check found.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Facts {
    pub contract_version: u32,
    #[serde(default)]
    pub base_model: Option<String>,
    #[serde(default)]
    pub gpus: Option<usize>,
}

/// Runs `python -m gradients_trainer.preflight` for `spec`.
pub fn check(python: &str, spec: &TaskSpec, gpus: usize) -> Result<Facts, EnvironmentError> {
    let task_type = match spec.task_type {
        TaskType::InstructText => "instruct",
        TaskType::Dpo => "dpo",
        TaskType::Grpo => "grpo",
        TaskType::Image => "image",
    };
    let mut child = Command::new(python)
        .args(["-m", "gradients_trainer.preflight", "--task-type", task_type, "--base-model"])
        .arg(&spec.base_model.uri)
        .args(["--gpus", &gpus.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| {
            env_error(
                format!("cannot start the Python interpreter {python:?}: {e}"),
                "pass --python (or GRADIENTS_PYTHON) with the interpreter `trainer-image/setup-env` prints",
            )
        })?;
    let (mut out, mut err) = (child.stdout.take(), child.stderr.take());
    let stderr = std::thread::spawn(move || read_all(err.as_mut()));
    let stdout = std::thread::spawn(move || read_all(out.as_mut()));
    let started = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if started.elapsed() > TIMEOUT => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(env_error(
                    format!("{python} -m gradients_trainer.preflight took longer than {} s", TIMEOUT.as_secs()),
                    "",
                ));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(50)),
            Err(e) => return Err(env_error(format!("waiting for {python}"), e.to_string())),
        }
    };
    let stdout = stdout.join().unwrap_or_default();
    let stderr = stderr.join().unwrap_or_default();
    let tail = tail(&stderr, 6);
    let facts = stdout.lines().rev().find_map(|l| serde_json::from_str::<Facts>(l).ok());
    match facts {
        None if stderr.contains("No module named 'gradients_trainer.preflight'")
            || stderr.contains("No module named gradients_trainer.preflight") =>
        {
            Err(env_error(
                format!(
                    "{python} has a gradients_trainer package older than this gradients (contract version \
                     {TRAINER_CONTRACT_VERSION})"
                ),
                format!("{tail}\nreinstall it from this checkout: trainer-image/setup-env"),
            ))
        }
        None => Err(env_error(format!("{python} cannot run the trainer package (gradients_trainer)"), tail)),
        Some(f) if f.contract_version != TRAINER_CONTRACT_VERSION => Err(env_error(
            format!(
                "{python} has gradients_trainer at contract version {}, this gradients needs {TRAINER_CONTRACT_VERSION}",
                f.contract_version
            ),
            "install the trainer package from the same checkout as this binary: trainer-image/setup-env",
        )),
        Some(_) if !status.success() => {
            Err(env_error(format!("the base model {} or the GPUs cannot be used", spec.base_model.uri), tail))
        }
        Some(f) => Ok(f),
    }
}

fn read_all(pipe: Option<&mut impl Read>) -> String {
    let mut bytes = Vec::new();
    if let Some(pipe) = pipe {
        let _ = pipe.read_to_end(&mut bytes);
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// A workload run with the validator's interpreter that failed because the trainer package
/// itself is missing: the environment broke after the check (a venv removed mid-run). Only
/// the package's own absence counts: anything a miner's submission can provoke stays the
/// miner's failure.
pub fn package_missing(stderr_tail: &str) -> bool {
    stderr_tail.lines().any(|l| {
        l.starts_with("ModuleNotFoundError: No module named 'gradients_trainer")
            || l.contains("(ModuleNotFoundError: No module named 'gradients_trainer")
            || l.contains(": No module named gradients_trainer")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cwd() -> std::path::PathBuf {
        std::env::current_dir().unwrap()
    }

    #[test]
    fn relative_programs_are_resolved_against_the_current_directory() {
        assert_eq!(resolve_program("python3"), "python3");
        assert_eq!(resolve_program("/usr/bin/python3"), "/usr/bin/python3");
        assert_eq!(resolve_program("./venv/bin/python"), cwd().join("./venv/bin/python").to_string_lossy());
        assert_eq!(resolve_program("venv/bin/python"), cwd().join("venv/bin/python").to_string_lossy());
    }

    #[test]
    fn only_the_missing_package_itself_is_an_environment_failure() {
        assert!(package_missing("Traceback\nModuleNotFoundError: No module named 'gradients_trainer'"));
        assert!(package_missing("/usr/bin/python3: No module named gradients_trainer"));
        assert!(package_missing(
            "/usr/bin/python3: Error while finding module specification for 'gradients_trainer.x' \
             (ModuleNotFoundError: No module named 'gradients_trainer')"
        ));
        assert!(!package_missing("ModuleNotFoundError: No module named 'bitsandbytes'"));
        assert!(!package_missing("trainer printed: No module named 'gradients_trainer' on purpose"));
    }
}
