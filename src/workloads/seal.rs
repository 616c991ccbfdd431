//! The seal Job of one trained model: after its trainer's pod is gone, the operator's own
//! image copies the output where only the evaluator reads it and reports the tree digest.

use k8s_openapi::api::batch::v1::{Job, JobSpec};
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::contract::{SealInvocation, SealedSubmission, TERMINATION_MESSAGE_PATH, TrainerOutput};
use super::{BuildError, WorkloadConfig, labels, mounts};
use crate::api::Task;

pub const SEAL_CONTAINER: &str = "seal";

/// Reads the trainer's output read-only, writes only the sealed location; no network, no GPU.
/// `output` and `sealed` are the store locations (`WorkloadConfig::model_uri`, `sealed_uri`).
pub fn seal_job(
    task: &Task,
    name: String,
    entrant: &str,
    attempt: u32,
    (output, sealed): (&str, &str),
    config: &WorkloadConfig,
    access: Option<&crate::storage::ObjectAccess>,
) -> Result<Job, BuildError> {
    let (namespace, task_name, owner) = super::owner(task)?;
    let timeout = config.lifecycle.clone().unwrap_or_default().seal_timeout_s;
    let mut view = super::ArtifactView::new(config, access, super::view::lifetime(config, timeout));
    let input = TrainerOutput(view.mount(output, mounts::OUTPUT, true)?);
    let target = SealedSubmission(view.mount(sealed, mounts::SEALED, false)?);
    let args = SealInvocation {
        input,
        output: target,
        limits: config.seal,
        termination_message_path: Some(TERMINATION_MESSAGE_PATH.to_string()),
    }
    .argv();
    let staged = view.finish(super::scratch_volume("1Gi"));
    let amounts = std::collections::BTreeMap::from([
        ("cpu".to_string(), Quantity("1".to_string())),
        ("memory".to_string(), Quantity("1Gi".to_string())),
    ]);
    let mut pod_labels = super::base_labels(labels::ROLE_SEAL, &task_name);
    pod_labels.insert(labels::MINER.to_string(), super::label_value(entrant));
    pod_labels.insert(labels::ATTEMPT.to_string(), attempt.to_string());
    Ok(Job {
        metadata: super::metadata(name, namespace, owner, pod_labels.clone()),
        spec: Some(JobSpec {
            // Retries are new attempts of the state machine, each a Job of its own.
            backoff_limit: Some(0),
            active_deadline_seconds: Some(i64::try_from(timeout).unwrap_or(i64::MAX)),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta { labels: Some(pod_labels), ..ObjectMeta::default() }),
                spec: Some(super::locked_down_pod(
                    (!config.prepare.node_selector.is_empty()).then(|| config.prepare.node_selector.clone()),
                    (!config.prepare.tolerations.is_empty()).then(|| config.prepare.tolerations.clone()),
                    super::operator_container(
                        SEAL_CONTAINER,
                        args,
                        amounts,
                        (staged.mounts, staged.env, staged.working_dir),
                        config,
                    ),
                    (staged.volumes, staged.init.into_iter().collect()),
                )),
            },
            ..JobSpec::default()
        }),
        status: None,
    })
}
