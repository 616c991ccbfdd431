//! The dataset-preparation Job: splits a task's data into the training inputs and the held-out
//! data ([`super::contract::PreparedData`]).

use k8s_openapi::api::batch::v1::{Job, JobSpec};
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::contract::{self, PrepareInvocation, TERMINATION_MESSAGE_PATH, columns_arg};
use super::{BuildError, WorkloadConfig, labels, mounts};
use crate::api::Task;

/// How long a preparation may run.
const DEADLINE_S: i64 = 2 * 3600;

pub fn job_name(task: &str, attempt: u32) -> String {
    super::workload_name(task, &crate::tournament::WorkloadId::new(crate::tournament::WorkKind::Prepare, "", attempt))
}

/// Runs `gradients prepare` from the operator's own image: the same split code as a local run.
/// It reports the split sizes as its termination message (`{"rows","train","test","synthetic"}`).
pub fn prepare_job(
    task: &Task,
    attempt: u32,
    seed: u64,
    config: &WorkloadConfig,
    access: Option<&crate::storage::ObjectAccess>,
) -> Result<Job, BuildError> {
    let (namespace, name, owner) = super::owner(task)?;
    let spec = &task.spec;
    config.check_sources(spec)?;
    // The raw data read-only, and the task's own data area writable: nothing else of the claim.
    let mut view = super::ArtifactView::new(config, access, super::view::lifetime(config, DEADLINE_S as u64));
    let dataset = match spec.task_type.is_text() {
        true => view.mount_file(&spec.dataset.uri, mounts::DATASET)?,
        false => view.mount(&spec.dataset.uri, mounts::DATASET, true)?,
    };
    let synthetic = match &spec.dataset.synthetic_uri {
        Some(uri) => Some(view.mount_file(uri, mounts::SYNTHETIC)?),
        None => None,
    };
    // On a claim, one writable directory; on S3 its two halves are separate archives (trainers
    // fetch only the training inputs), so they are stored separately.
    let data = contract::PreparedData::under(&config.data_uri(&namespace, &name));
    let output = match config.artifact_store() {
        super::ArtifactStore::S3 { .. } => {
            view.mount(data.training.dir(), &format!("{}/{}", mounts::PREPARED, contract::TRAINING_DIR), false)?;
            view.mount(data.heldout.dir(), &format!("{}/{}", mounts::PREPARED, contract::HELDOUT_DIR), false)?;
            format!("{}{}", crate::storage::transfers::STAGING_DIR, mounts::PREPARED)
        }
        _ => view.mount(&config.data_uri(&namespace, &name), mounts::PREPARED, false)?,
    };
    let args = PrepareInvocation {
        task_type: spec.task_type,
        dataset,
        synthetic,
        output,
        seed,
        columns: columns_arg(&spec.dataset.columns),
        reward_functions: (!spec.reward_functions.is_empty())
            .then(|| contract::reward_functions_json(&spec.reward_functions)),
        termination_message_path: Some(TERMINATION_MESSAGE_PATH.to_string()),
    }
    .argv();
    let staged = view.finish(super::scratch_volume("20Gi"));
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
            active_deadline_seconds: Some(DEADLINE_S),
            ttl_seconds_after_finished: None,
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta { labels: Some(pod_labels), ..ObjectMeta::default() }),
                spec: Some(super::locked_down_pod(
                    non_empty(config.prepare.node_selector.clone()),
                    (!config.prepare.tolerations.is_empty()).then(|| config.prepare.tolerations.clone()),
                    super::operator_container(
                        "prepare",
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

fn non_empty<K: Ord, V>(map: std::collections::BTreeMap<K, V>) -> Option<std::collections::BTreeMap<K, V>> {
    (!map.is_empty()).then_some(map)
}
