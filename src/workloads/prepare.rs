//! The dataset-preparation Job: splits a task's data into train, test and synthetic sets.

use k8s_openapi::api::batch::v1::{Job, JobSpec};
use k8s_openapi::api::core::v1::{Container, PodTemplateSpec, ResourceRequirements};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::{BuildError, WorkloadConfig, labels};
use crate::api::Task;

pub fn job_name(task: &str, attempt: u32) -> String {
    super::child_name(&[task, "prepare", &attempt.to_string()])
}

/// Runs `gradients prepare` from the operator's own image: the same split code as a local run.
/// It reports the split sizes as its termination message (`{"rows","train","test","synthetic"}`).
pub fn prepare_job(task: &Task, attempt: u32, seed: u64, config: &WorkloadConfig) -> Result<Job, BuildError> {
    let (namespace, name, owner) = super::owner(task)?;
    let spec = &task.spec;
    let mut args = vec![
        "prepare".to_string(),
        "--task-type".to_string(),
        super::cli_task_type(spec.task_type).to_string(),
        "--dataset".to_string(),
        spec.dataset.uri.clone(),
        "--output".to_string(),
        config.data_uri(&namespace, &name),
        "--seed".to_string(),
        seed.to_string(),
        "--termination-message-path".to_string(),
        super::evaluator::TERMINATION_MESSAGE_PATH.to_string(),
    ];
    if !spec.dataset.columns.is_empty() {
        args.push("--columns".to_string());
        args.push(serde_json::to_string(&spec.dataset.columns).unwrap_or_default());
    }
    if !spec.reward_functions.is_empty() {
        // Written next to the splits as `reward_functions.json` for trainers and evaluators.
        args.push("--reward-functions".to_string());
        args.push(serde_json::to_string(&spec.reward_functions).unwrap_or_default());
    }
    if let Some(synthetic) = &spec.dataset.synthetic_uri {
        args.push("--synthetic".to_string());
        args.push(synthetic.clone());
    }
    let (scratch, scratch_mount) = super::scratch_volume("20Gi");
    let mut volumes = vec![scratch];
    let mut mounts = vec![scratch_mount];
    if let Some((volume, mount)) = super::artifact_volume(config, false) {
        volumes.push(volume);
        mounts.push(mount);
    }
    let amounts = std::collections::BTreeMap::from([
        ("cpu".to_string(), Quantity(config.prepare.cpu.clone())),
        ("memory".to_string(), Quantity(config.prepare.memory.clone())),
    ]);
    let mut pod_labels = super::base_labels(labels::ROLE_PREPARE, &name);
    pod_labels.insert(labels::ATTEMPT.to_string(), attempt.to_string());
    Ok(Job {
        metadata: super::metadata(job_name(&name, attempt), namespace, owner, pod_labels.clone()),
        spec: Some(JobSpec {
            backoff_limit: Some(2),
            active_deadline_seconds: Some(2 * 3600),
            ttl_seconds_after_finished: None,
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta { labels: Some(pod_labels), ..ObjectMeta::default() }),
                spec: Some(super::locked_down_pod(
                    non_empty(config.prepare.node_selector.clone()),
                    (!config.prepare.tolerations.is_empty()).then(|| config.prepare.tolerations.clone()),
                    Container {
                        name: "prepare".to_string(),
                        image: Some(config.operator_image.clone()),
                        image_pull_policy: config.image_pull_policy.clone(),
                        args: Some(args),
                        env: Some(super::env(&[("HOME", "/tmp".to_string())])),
                        resources: Some(ResourceRequirements {
                            requests: Some(amounts.clone()),
                            limits: Some(amounts),
                            ..ResourceRequirements::default()
                        }),
                        security_context: Some(super::restricted_container_security(true)),
                        termination_message_path: Some(super::evaluator::TERMINATION_MESSAGE_PATH.to_string()),
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

fn non_empty<K: Ord, V>(map: std::collections::BTreeMap<K, V>) -> Option<std::collections::BTreeMap<K, V>> {
    (!map.is_empty()).then_some(map)
}
