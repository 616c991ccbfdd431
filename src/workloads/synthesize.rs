//! The synthetic-set Job of a task with `spec.dataset.generator`: the project's own (trusted)
//! evaluator image runs the generator model once, after the split, on one GPU of the task's
//! class. It reads the training and test splits and writes only the generated set, below the
//! held-out data where no trainer ever looks; its `done` record is the termination message.

use k8s_openapi::api::batch::v1::Job;
use serde::Deserialize;

use super::contract::{HeldOut, PreparedData, SynthesizeInvocation, TERMINATION_MESSAGE_PATH, TrainingInputs};
use super::evaluator::{TrustedRun, trusted_job};
use super::{BuildError, WorkloadConfig, labels, mounts};
use crate::api::Task;
use crate::tournament::{SyntheticSummary, WorkKind, WorkloadId};

pub const CONTAINER: &str = "synthesize";

pub fn job_name(task: &str, attempt: u32) -> String {
    super::workload_name(task, &WorkloadId::new(WorkKind::Synthesize, "", attempt))
}

/// The Job that writes `rows` rows of the task's synthetic set, or `None` when the task has no
/// generator. Its pods carry the evaluator's role: the same deny-all NetworkPolicy, the same
/// trusted image.
pub fn synthesize_job(
    task: &Task,
    attempt: u32,
    seed: u64,
    rows: u64,
    config: &WorkloadConfig,
    access: Option<&crate::storage::ObjectAccess>,
) -> Result<Option<Job>, BuildError> {
    let spec = &task.spec;
    let Some(generator) = &spec.dataset.generator else { return Ok(None) };
    let (namespace, name, owner) = super::owner(task)?;
    let class = config.gpu_class(spec.gpu_class.as_deref())?;
    config.check_sources(spec)?;
    let deadline = super::deadline_seconds(config.evaluation_hours);
    let mut view = super::ArtifactView::new(config, access, super::view::lifetime(config, deadline as u64));
    let model = view.mount(&generator.model_uri, mounts::GENERATOR, true)?;
    let weaker = match &generator.weaker_model_uri {
        Some(uri) => Some(view.mount(uri, mounts::WEAKER_MODEL, true)?),
        None => None,
    };
    let data = PreparedData::under(&config.data_uri(&namespace, &name));
    let output = view.mount(&data.heldout.generated_dir(), mounts::GENERATED, false)?;
    let mounted = PreparedData {
        training: TrainingInputs(view.mount(data.training.dir(), mounts::INPUTS, true)?),
        heldout: HeldOut(view.mount(data.heldout.dir(), mounts::HELDOUT, true)?),
    };
    let invocation = SynthesizeInvocation {
        task_type: spec.task_type,
        generator: model,
        weaker_model: weaker,
        data: mounted,
        output,
        columns: super::columns_arg(&spec.dataset.columns),
        rows,
        temperature: generator.temperature,
        max_new_tokens: generator.max_new_tokens,
        seed,
        termination_message_path: Some(TERMINATION_MESSAGE_PATH.to_string()),
    };
    let mut pod_labels = super::base_labels(labels::ROLE_EVALUATOR, &name);
    pod_labels.insert(labels::ATTEMPT.to_string(), attempt.to_string());
    let run = TrustedRun {
        container: CONTAINER,
        args: invocation.argv(),
        env: invocation.env(),
        gpus: 1,
        // Trusted code on task inputs only: its log tail explains a failure.
        message_policy: "FallbackToLogsOnError",
    };
    Ok(Some(trusted_job(job_name(&name, attempt), (namespace, owner), pod_labels, class, run, view, config)))
}

/// The generator's `done` record (`{"event":"done","written":N,...}`) as the lifecycle keeps it.
pub fn summary(message: &str) -> Result<SyntheticSummary, String> {
    #[derive(Deserialize)]
    struct Done {
        event: String,
        written: u64,
    }
    let done: Done = serde_json::from_str(message.trim())
        .map_err(|e| format!("the generator's record in the termination message is unreadable: {e}"))?;
    match (done.event.as_str(), done.written) {
        ("done", 0) => Err("the generator wrote no row".into()),
        ("done", rows) => Ok(SyntheticSummary { rows }),
        (other, _) => Err(format!("the generator reported {other:?}, not \"done\"")),
    }
}

#[cfg(test)]
mod tests {
    use super::summary;

    #[test]
    fn the_done_record_gives_the_rows_and_anything_else_is_a_failure() {
        let record = r#"{"event":"done","version":1,"task_type":"dpo","written":17,"requested":20}"#;
        assert_eq!(summary(record).map(|s| s.rows), Ok(17));
        assert_eq!(summary(r#"{"event":"done","written":0}"#), Err("the generator wrote no row".into()));
        assert!(summary("Traceback (most recent call last)").unwrap_err().contains("unreadable"));
    }
}
