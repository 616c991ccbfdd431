//! The synthetic-set Job of a task with `spec.dataset.generator`: the project's own (trusted)
//! evaluator image runs the generator model once, after the split, on one GPU of the task's
//! class. It reads the training and test splits and writes only the generated set, below the
//! held-out data where no trainer ever looks; its `done` record is the termination message.

use k8s_openapi::api::batch::v1::{Job, JobSpec};
use k8s_openapi::api::core::v1::{Container, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::Deserialize;

use super::contract::{
    HeldOut, PreparedData, SynthesizeInvocation, TERMINATION_MESSAGE_PATH, TRAINER_PROGRAM, TrainingInputs,
};
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
) -> Result<Option<Job>, BuildError> {
    let spec = &task.spec;
    let Some(generator) = &spec.dataset.generator else { return Ok(None) };
    let (namespace, name, owner) = super::owner(task)?;
    let class = config.gpu_class(spec.gpu_class.as_deref())?;
    config.check_sources(spec)?;
    let mut view = super::ArtifactView::new(config);
    let model = view.mount(&generator.model_uri, mounts::GENERATOR, true);
    let weaker = generator.weaker_model_uri.as_ref().map(|uri| view.mount(uri, mounts::WEAKER_MODEL, true));
    let data = PreparedData::under(&config.data_uri(&namespace, &name));
    let output = view.mount(&data.heldout.generated_dir(), mounts::GENERATED, false);
    let mounted = PreparedData {
        training: TrainingInputs(view.mount(data.training.dir(), mounts::INPUTS, true)),
        heldout: HeldOut(view.mount(data.heldout.dir(), mounts::HELDOUT, true)),
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
    let mut job_labels = pod_labels.clone();
    if let Some(queue) = &config.kueue_queue {
        job_labels.insert(labels::KUEUE_QUEUE.to_string(), queue.clone());
    }
    let (volumes, volume_mounts) = view.into_parts(super::scratch_volume("100Gi"));
    Ok(Some(Job {
        metadata: super::metadata(job_name(&name, attempt), namespace, owner, job_labels),
        spec: Some(JobSpec {
            backoff_limit: Some(0),
            active_deadline_seconds: Some(super::deadline_seconds(config.evaluation_hours)),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta { labels: Some(pod_labels), ..ObjectMeta::default() }),
                spec: Some(super::locked_down_pod(
                    (!class.node_selector.is_empty()).then(|| class.node_selector.clone()),
                    (!class.tolerations.is_empty()).then(|| class.tolerations.clone()),
                    Container {
                        name: CONTAINER.to_string(),
                        image: Some(config.evaluator_image.clone()),
                        image_pull_policy: config.image_pull_policy.clone(),
                        command: Some(TRAINER_PROGRAM.map(String::from).to_vec()),
                        args: Some(invocation.argv()),
                        env: Some(super::env(invocation.env())),
                        resources: Some(super::gpu_resources(class, 1)),
                        security_context: Some(super::restricted_container_security(true)),
                        termination_message_path: Some(TERMINATION_MESSAGE_PATH.to_string()),
                        // Trusted code on task inputs only: its log tail explains a failure.
                        termination_message_policy: Some("FallbackToLogsOnError".to_string()),
                        volume_mounts: Some(volume_mounts),
                        ..Container::default()
                    },
                    volumes,
                )),
            },
            ..JobSpec::default()
        }),
        status: None,
    }))
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
