//! The evaluation Job of one entrant: the project's evaluator, isolated from the network and
//! the API, reporting only through its container's termination message.

use k8s_openapi::api::batch::v1::{Job, JobSpec};
use k8s_openapi::api::core::v1::{Container, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::{BuildError, WorkloadConfig, labels};
use crate::api::Task;

pub const EVALUATOR_CONTAINER: &str = "evaluator";
/// Where the evaluator writes its JSON; the kubelet copies it into the pod status.
pub const TERMINATION_MESSAGE_PATH: &str = "/dev/termination-log";
pub const EVALUATE_COMMAND: [&str; 4] = ["python", "-m", "gradients_trainer", "evaluate"];

pub fn job_name(task: &str, entrant: &str, attempt: u32) -> String {
    super::child_name(&[task, "eval", entrant, &attempt.to_string()])
}

/// The Job that evaluates `entrant`'s model at `model` (`None`: the untrained base model, as a
/// reference row). Its pods carry the evaluator role label, which the deny-all NetworkPolicy
/// selects; the root filesystem is read-only with an emptyDir for scratch; the termination
/// message policy is `File`, never the logs, which the model under test could influence.
pub fn evaluation_job(
    task: &Task,
    entrant: &str,
    attempt: u32,
    model: Option<&str>,
    config: &WorkloadConfig,
) -> Result<Job, BuildError> {
    let (namespace, name, owner) = super::owner(task)?;
    let spec = &task.spec;
    let gpu_class = spec.gpu_class.clone().unwrap_or_else(|| config.default_gpu_class.clone());
    let class = config.gpu_classes.get(&gpu_class).ok_or_else(|| {
        BuildError::UnknownGpuClass(
            gpu_class.clone(),
            config.gpu_classes.keys().cloned().collect::<Vec<_>>().join(", "),
        )
    })?;
    let data = config.data_uri(&namespace, &name);
    let mut args = vec![
        "--task-type".to_string(),
        super::cli_task_type(spec.task_type).to_string(),
        "--base-model".to_string(),
        spec.base_model.uri.clone(),
        "--test-data".to_string(),
        super::split_path(&data, "test", spec.task_type),
        "--synth-data".to_string(),
        super::split_path(&data, "synth", spec.task_type),
        "--seed".to_string(),
        task.seed().to_string(),
        "--termination-message-path".to_string(),
        TERMINATION_MESSAGE_PATH.to_string(),
    ];
    if let Some(columns) = super::columns_arg(&spec.dataset.columns) {
        args.extend(["--columns".to_string(), columns]);
    }
    match model {
        Some(model) => args.extend(["--submission".to_string(), model.to_string()]),
        None => args.push("--score-base".to_string()),
    }
    if spec.task_type == crate::mechanism::TaskType::Grpo {
        args.push("--reward-functions".to_string());
        args.push(format!("{data}/{}", super::REWARD_FUNCTIONS_FILE));
    }
    let mut pod_labels = super::base_labels(labels::ROLE_EVALUATOR, &name);
    pod_labels.insert(labels::MINER.to_string(), super::label_value(entrant));
    pod_labels.insert(labels::ATTEMPT.to_string(), attempt.to_string());
    let mut job_labels = pod_labels.clone();
    if let Some(queue) = &config.kueue_queue {
        job_labels.insert(labels::KUEUE_QUEUE.to_string(), queue.clone());
    }
    let (scratch, scratch_mount) = super::scratch_volume("100Gi");
    let mut volumes = vec![scratch];
    let mut mounts = vec![scratch_mount];
    if let Some((volume, mount)) = super::artifact_volume(config, true) {
        volumes.push(volume);
        mounts.push(mount);
    }
    let gpus = super::gpus::evaluation_gpus(spec.task_type, spec.base_model.params_b);
    Ok(Job {
        metadata: super::metadata(job_name(&name, entrant, attempt), namespace, owner, job_labels),
        spec: Some(JobSpec {
            backoff_limit: Some(0),
            active_deadline_seconds: Some(super::deadline_seconds(config.evaluation_hours)),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta { labels: Some(pod_labels), ..ObjectMeta::default() }),
                spec: Some(super::locked_down_pod(
                    (!class.node_selector.is_empty()).then(|| class.node_selector.clone()),
                    (!class.tolerations.is_empty()).then(|| class.tolerations.clone()),
                    Container {
                        name: EVALUATOR_CONTAINER.to_string(),
                        image: Some(config.evaluator_image.clone()),
                        image_pull_policy: config.image_pull_policy.clone(),
                        command: Some(EVALUATE_COMMAND.map(String::from).to_vec()),
                        args: Some(args),
                        env: Some(super::env(&[
                            ("HOME", "/tmp".to_string()),
                            ("HF_HUB_OFFLINE", "1".to_string()),
                            ("GRADIENTS_TASK", name.clone()),
                            ("GRADIENTS_MINER", entrant.to_string()),
                        ])),
                        resources: Some(super::gpu_resources(class, gpus)),
                        security_context: Some(super::restricted_container_security(true)),
                        termination_message_path: Some(TERMINATION_MESSAGE_PATH.to_string()),
                        termination_message_policy: Some("File".to_string()),
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
