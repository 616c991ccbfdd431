//! Everything checked before any process starts. Errors name the task file and the field.

use std::collections::BTreeSet;
use std::path::Path;

use super::manifest::{TaskFile, TaskFileError};
use crate::api::task::TaskSpec;
use crate::dataset::{self, Dataset};
use crate::mechanism::TaskType;
use crate::tournament::{BASE_MODEL, BASELINE};

/// A task file that passed every check, with its dataset read.
#[derive(Debug, Clone)]
pub struct ValidTask {
    pub file: TaskFile,
    pub dataset: Dataset,
    pub synthetic: Option<Dataset>,
}

pub fn validate(file: TaskFile) -> Result<ValidTask, TaskFileError> {
    let path = file.path.clone();
    let bad = |field: &str, message: String| TaskFileError::invalid(&path, field, message);
    let spec = &file.spec;
    if !is_dns_label(&file.name) {
        return Err(bad(
            "metadata.name",
            format!("{:?} is not a DNS label (lower-case letters, digits, '-')", file.name),
        ));
    }
    check_budget(spec).map_err(|(field, message)| bad(field, message))?;
    if !(spec.base_model.params_b.is_finite() && spec.base_model.params_b > 0.0) {
        return Err(bad("spec.baseModel.paramsB", "must be a number greater than 0".into()));
    }
    if !Path::new(&spec.base_model.uri).is_dir() {
        return Err(bad("spec.baseModel.uri", format!("no model directory at {}", spec.base_model.uri)));
    }
    check_miners(spec).map_err(|(field, message)| bad(field, message))?;
    check_rewards(spec).map_err(|(field, message)| bad(field, message))?;
    check_generator(spec).map_err(|(field, message)| bad(field, message))?;
    check_halving(spec).map_err(|(field, message)| bad(field, message))?;

    let read = |uri: &str| dataset::read(spec.task_type, Path::new(uri));
    let dataset = read(&spec.dataset.uri).map_err(|m| bad("spec.dataset.uri", m))?;
    if dataset.len() < 2 {
        return Err(bad(
            "spec.dataset.uri",
            format!("{} has {} rows; a split needs at least 2", spec.dataset.uri, dataset.len()),
        ));
    }
    check_columns(spec, &dataset, "spec.dataset.uri").map_err(|(field, message)| bad(&field, message))?;
    let synthetic = match &spec.dataset.synthetic_uri {
        Some(uri) if spec.task_type.is_text() => {
            let synthetic = read(uri).map_err(|m| bad("spec.dataset.syntheticUri", m))?;
            if synthetic.is_empty() {
                return Err(bad("spec.dataset.syntheticUri", format!("{uri} has no rows")));
            }
            check_columns(spec, &synthetic, "spec.dataset.syntheticUri")
                .map_err(|(field, message)| bad(&field, message))?;
            Some(synthetic)
        }
        Some(_) => return Err(bad("spec.dataset.syntheticUri", "image tasks have no synthetic set".into())),
        None => None,
    };
    Ok(ValidTask { file, dataset, synthetic })
}

type Problem = (&'static str, String);

/// `spec.halving`: the ranges the CRD enforces, and text tasks only (image trainers cannot
/// continue from a checkpoint yet).
fn check_halving(spec: &TaskSpec) -> Result<(), Problem> {
    let Some(halving) = spec.halving else { return Ok(()) };
    if !spec.task_type.is_text() {
        return Err((
            "spec.halving",
            "image trainers cannot continue from a checkpoint yet; remove spec.halving".into(),
        ));
    }
    halving.check()
}

/// The rules the Task CRD enforces on `spec.dataset.generator`, and that its models exist here.
fn check_generator(spec: &TaskSpec) -> Result<(), Problem> {
    let Some(generator) = &spec.dataset.generator else { return Ok(()) };
    if !spec.task_type.is_text() {
        return Err(("spec.dataset.generator", "image tasks keep held-out rows as their synthetic set".into()));
    }
    if spec.dataset.synthetic_uri.is_some() {
        return Err((
            "spec.dataset.generator",
            "spec.dataset.syntheticUri already gives the synthetic set; set one".into(),
        ));
    }
    if generator.weaker_model_uri.is_some() && spec.task_type != TaskType::Dpo {
        return Err(("spec.dataset.generator.weakerModelUri", "only Dpo rows have rejected answers".into()));
    }
    if !(generator.temperature > 0.0 && generator.temperature <= 2.0) {
        return Err((
            "spec.dataset.generator.temperature",
            format!("must be in (0, 2], found {}", generator.temperature),
        ));
    }
    let models = [
        ("spec.dataset.generator.modelUri", Some(&generator.model_uri)),
        ("spec.dataset.generator.weakerModelUri", generator.weaker_model_uri.as_ref()),
    ];
    for (field, uri) in models {
        if let Some(uri) = uri.filter(|uri| !Path::new(uri).join("config.json").is_file()) {
            return Err((field, format!("no model directory with a config.json at {uri}")));
        }
    }
    Ok(())
}

/// Inline miner `command`s run as the user with the user's access (the held-out split, the
/// other workloads' files), so they run only when the user says they trust them.
pub fn check_inline_commands(file: &TaskFile, trusted: bool) -> Result<(), TaskFileError> {
    if trusted {
        return Ok(());
    }
    match file.spec.miners.iter().enumerate().find(|(_, m)| m.command.is_some()) {
        Some((i, miner)) => Err(TaskFileError::invalid(
            &file.path,
            &format!("spec.miners[{i}].command"),
            format!(
                "miner {:?} has an inline command; inline commands are trusted code: they run \
                 unsandboxed as you, and can read the held-out data and other miners' files. \
                 Pass --trust-local-commands to run them",
                miner.name
            ),
        )),
        None => Ok(()),
    }
}

fn check_budget(spec: &TaskSpec) -> Result<(), Problem> {
    match (spec.hours, spec.deadline) {
        (Some(_), Some(_)) | (None, None) => {
            Err(("spec.hours", "exactly one of spec.hours and spec.deadline must be set".into()))
        }
        (Some(h), None) if !(h.is_finite() && h > 0.0) => {
            Err(("spec.hours", format!("must be greater than 0, found {h}")))
        }
        _ => Ok(()),
    }
}

fn check_miners(spec: &TaskSpec) -> Result<(), Problem> {
    if spec.miners.is_empty() {
        return Err(("spec.miners", "at least one miner is needed (name and strategy)".into()));
    }
    if spec.miners_per_task == Some(0) {
        return Err(("spec.minersPerTask", "must be at least 1".into()));
    }
    let mut seen = BTreeSet::new();
    for miner in &spec.miners {
        if !is_dns_label(&miner.name) || miner.name.len() > 40 {
            return Err(("spec.miners", format!("name {:?} is not a DNS label of at most 40 characters", miner.name)));
        }
        if miner.name == BASELINE || miner.name == BASE_MODEL {
            return Err(("spec.miners", format!("name {:?} is reserved for a reference row", miner.name)));
        }
        if !seen.insert(miner.name.as_str()) {
            return Err(("spec.miners", format!("miner {:?} is listed twice", miner.name)));
        }
        if miner.strategy.trim().is_empty() {
            return Err(("spec.miners", format!("miner {:?} has an empty strategy", miner.name)));
        }
        if miner.command.as_ref().is_some_and(|c| c.is_empty()) {
            return Err(("spec.miners", format!("miner {:?} has an empty command", miner.name)));
        }
    }
    Ok(())
}

fn check_rewards(spec: &TaskSpec) -> Result<(), Problem> {
    let grpo = spec.task_type == TaskType::Grpo;
    if grpo && spec.reward_functions.is_empty() {
        return Err(("spec.rewardFunctions", "a Grpo task needs at least one reward function".into()));
    }
    if !grpo && !spec.reward_functions.is_empty() {
        return Err(("spec.rewardFunctions", "only Grpo tasks have reward functions".into()));
    }
    for f in &spec.reward_functions {
        if f.name.is_empty() || f.source.trim().is_empty() || !f.weight.is_finite() {
            return Err(("spec.rewardFunctions", format!("{:?} needs a name, source and a finite weight", f.name)));
        }
    }
    Ok(())
}

fn check_columns(spec: &TaskSpec, dataset: &Dataset, where_: &str) -> Result<(), (String, String)> {
    dataset::columns::check(spec.task_type, &spec.dataset.columns, dataset, where_)
        .map_err(|(key, message)| (format!("spec.dataset.columns.{key}"), message))
}

pub(crate) fn is_dns_label(name: &str) -> bool {
    let bytes = name.as_bytes();
    !name.is_empty()
        && name.len() <= 63
        && bytes.iter().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
        && bytes.first() != Some(&b'-')
        && bytes.last() != Some(&b'-')
}
