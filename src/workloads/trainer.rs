//! The trainer Job of one submission: the miner's code on the task's GPUs, under a deadline.

use k8s_openapi::api::batch::v1::{Job, JobSpec};
use k8s_openapi::api::core::v1::{Container, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::{BuildError, WorkloadConfig, labels};
use crate::api::MinerSubmission;

/// The reference trainer's entry point: `python -m gradients_trainer train ARGS`.
pub const REFERENCE_TRAIN_COMMAND: [&str; 4] = ["python", "-m", "gradients_trainer", "train"];

pub fn job_name(submission: &str) -> String {
    super::child_name(&[submission, "train"])
}

/// The Job for a submission. The miner's code is not trusted: it gets no service-account token,
/// the restricted security profile, bounded resources, and `activeDeadlineSeconds` equal to
/// the allocated hours, so it cannot outlive its slot.
pub fn trainer_job(submission: &MinerSubmission, config: &WorkloadConfig) -> Result<Job, BuildError> {
    let (namespace, name, owner) = super::owner(submission)?;
    let spec = &submission.spec;
    let class = config.gpu_classes.get(&spec.gpu_class).ok_or_else(|| {
        BuildError::UnknownGpuClass(
            spec.gpu_class.clone(),
            config.gpu_classes.keys().cloned().collect::<Vec<_>>().join(", "),
        )
    })?;
    let mut args = vec![
        "--task-type".to_string(),
        super::cli_task_type(spec.task_type).to_string(),
        "--base-model".to_string(),
        spec.base_model_uri.clone(),
        "--train-data".to_string(),
        super::split_path(&spec.data_uri, "train", spec.task_type),
        "--output".to_string(),
        spec.artifact_uri.clone(),
        "--hours".to_string(),
        super::number_arg(spec.hours),
        "--seed".to_string(),
        spec.seed.to_string(),
    ];
    if let Some(columns) = super::columns_arg(&spec.columns) {
        args.extend(["--columns".to_string(), columns]);
    }
    if spec.task_type == crate::mechanism::TaskType::Grpo {
        args.push("--reward-functions".to_string());
        args.push(format!("{}/{}", spec.data_uri, super::REWARD_FUNCTIONS_FILE));
    }
    if let Some(strategy) = &spec.strategy {
        args.push("--strategy".to_string());
        args.push(strategy.clone());
    }
    args.extend(spec.args.iter().cloned());
    let (image, command) = match &spec.image {
        Some(image) => (image.clone(), (!spec.command.is_empty()).then(|| spec.command.clone())),
        None => (config.trainer_image.clone(), Some(REFERENCE_TRAIN_COMMAND.map(String::from).to_vec())),
    };
    let command = command.or_else(|| (!spec.command.is_empty()).then(|| spec.command.clone()));

    let mut pod_labels = super::base_labels(labels::ROLE_TRAINER, &spec.task);
    pod_labels.insert(labels::MINER.to_string(), super::label_value(&spec.miner));
    let mut job_labels = pod_labels.clone();
    if let Some(queue) = &config.kueue_queue {
        job_labels.insert(labels::KUEUE_QUEUE.to_string(), queue.clone());
    }
    let (scratch, scratch_mount) = super::scratch_volume("200Gi");
    let mut volumes = vec![scratch];
    let mut mounts = vec![scratch_mount];
    if let Some((volume, mount)) = super::artifact_volume(config, false) {
        volumes.push(volume);
        mounts.push(mount);
    }
    Ok(Job {
        metadata: super::metadata(job_name(&name), namespace, owner, job_labels),
        spec: Some(JobSpec {
            // A trainer that fails has used its slot: no retries, or it would get extra time.
            backoff_limit: Some(0),
            active_deadline_seconds: Some(super::deadline_seconds(spec.hours)),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta { labels: Some(pod_labels), ..ObjectMeta::default() }),
                spec: Some(super::locked_down_pod(
                    (!class.node_selector.is_empty()).then(|| class.node_selector.clone()),
                    (!class.tolerations.is_empty()).then(|| class.tolerations.clone()),
                    Container {
                        name: "trainer".to_string(),
                        image: Some(image),
                        image_pull_policy: config.image_pull_policy.clone(),
                        command,
                        args: Some(args),
                        env: Some(super::env(&[
                            ("HOME", "/tmp".to_string()),
                            ("GRADIENTS_TASK", spec.task.clone()),
                            ("GRADIENTS_MINER", spec.miner.clone()),
                        ])),
                        resources: Some(super::gpu_resources(class, spec.gpus)),
                        // Training code writes caches in unpredictable places; the root stays
                        // writable, everything else of the restricted profile applies.
                        security_context: Some(super::restricted_container_security(false)),
                        volume_mounts: Some(mounts),
                        ..Container::default()
                    },
                    volumes,
                )),
            },
            ..JobSpec::default()
        }),
        status: None,
    })
}
