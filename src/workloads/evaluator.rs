//! The evaluation Job of one entrant: the project's evaluator, isolated from the network and
//! the API, reporting only through its container's termination message.

use k8s_openapi::api::batch::v1::{Job, JobSpec};
use k8s_openapi::api::core::v1::{Container, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::contract::{
    EvalInvocation, HeldOut, PreparedData, SealedSubmission, Subject, TERMINATION_MESSAGE_PATH, TRAINER_PROGRAM,
    TrainingInputs,
};
use super::{BuildError, WorkloadConfig, labels, mounts};
use crate::api::Task;
use crate::mechanism::TaskType;
use crate::tournament::{WorkKind, WorkloadId};

pub const EVALUATOR_CONTAINER: &str = "evaluator";

pub fn job_name(task: &str, entrant: &str, attempt: u32) -> String {
    super::workload_name(task, &WorkloadId::new(WorkKind::Evaluate, entrant, attempt))
}

/// What an evaluation Job reads: a sealed submission (its location and the digest it must
/// have), or the untrained base model as a reference row.
#[derive(Debug, Clone, PartialEq)]
pub enum Evaluated {
    Sealed { uri: String, digest: String },
    BaseModel,
}

/// The Job that evaluates `entrant`'s sealed model (or the base model). Its pods carry the evaluator role label, which the deny-all NetworkPolicy
/// selects; the root filesystem is read-only with an emptyDir for scratch; the termination
/// message policy is `File`, never the logs, which the model under test could influence.
pub fn evaluation_job(
    task: &Task,
    id: &WorkloadId,
    evaluated: Evaluated,
    config: &WorkloadConfig,
    access: Option<&crate::storage::ObjectAccess>,
) -> Result<Job, BuildError> {
    let (namespace, name, owner) = super::owner(task)?;
    let spec = &task.spec;
    let class = config.gpu_class(spec.gpu_class.as_deref())?;
    config.check_sources(spec)?;
    // The base model, the held-out data, the reward code (GRPO) and the one sealed model, all
    // read-only; nothing else of the claim.
    let deadline = super::deadline_seconds(config.evaluation_hours);
    let mut view = super::ArtifactView::new(config, access, super::view::lifetime(config, deadline as u64));
    let base_model = view.mount(&spec.base_model.uri, mounts::BASE_MODEL, true)?;
    let data = PreparedData::under(&config.data_uri(&namespace, &name));
    let inputs = match spec.task_type {
        TaskType::Grpo => TrainingInputs(view.mount(data.training.dir(), mounts::INPUTS, true)?),
        _ => data.training,
    };
    let heldout = HeldOut(view.mount(data.heldout.dir(), mounts::HELDOUT, true)?);
    let subject = match evaluated {
        Evaluated::Sealed { uri, digest } => {
            let sealed = SealedSubmission(view.mount(&uri, mounts::SEALED, true)?);
            Subject::Model { dir: sealed.model(), digest: Some(digest) }
        }
        Evaluated::BaseModel => Subject::BaseModel,
    };
    let invocation = EvalInvocation {
        task_type: spec.task_type,
        base_model,
        subject,
        inputs,
        heldout,
        columns: super::columns_arg(&spec.dataset.columns),
        profile: None,
        seed: task.seed(),
        termination_message_path: Some(TERMINATION_MESSAGE_PATH.to_string()),
        generated_synthetic: spec.dataset.generator.is_some(),
    };
    let mut pod_labels = super::base_labels(labels::ROLE_EVALUATOR, &name);
    pod_labels.insert(labels::MINER.to_string(), super::label_value(&id.entrant));
    pod_labels.insert(labels::ATTEMPT.to_string(), id.attempt.to_string());
    let run = TrustedRun {
        container: EVALUATOR_CONTAINER,
        args: invocation.argv(),
        // Nothing names the entrant: the reward code it runs must not learn whom it scores.
        env: invocation.env(),
        gpus: super::gpus::evaluation_gpus(spec.task_type, spec.base_model.params_b),
        // Never the logs, which the model under test could influence.
        message_policy: "File",
    };
    Ok(trusted_job(super::workload_name(&name, id), (namespace, owner), pod_labels, class, run, view, config))
}

/// What runs in a Job of the evaluator's (trusted) image.
pub(crate) struct TrustedRun {
    pub container: &'static str,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    pub gpus: u32,
    pub message_policy: &'static str,
}

/// A Job of the evaluator's image on `gpus` GPUs of `class`: one attempt (`backoffLimit: 0`),
/// the evaluation time limit, queued by Kueue when configured, its result in the termination
/// message. Evaluations and the synthetic set's generation share it.
pub(crate) fn trusted_job(
    name: String,
    (namespace, owner): (String, k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference),
    pod_labels: std::collections::BTreeMap<String, String>,
    class: &super::GpuClass,
    run: TrustedRun,
    view: super::ArtifactView<'_>,
    config: &WorkloadConfig,
) -> Job {
    let (job_labels, suspend) = super::queued(config, pod_labels.clone());
    let mut staged = view.finish(super::scratch_volume("100Gi"));
    super::add_shared_memory(&mut staged, run.gpus);
    Job {
        metadata: super::metadata(name, namespace, owner, job_labels),
        spec: Some(JobSpec {
            backoff_limit: Some(0),
            active_deadline_seconds: Some(super::deadline_seconds(config.evaluation_hours)),
            suspend,
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta { labels: Some(pod_labels), ..ObjectMeta::default() }),
                spec: Some(super::gpu_class_pod(
                    class,
                    Container {
                        name: run.container.to_string(),
                        image: Some(config.evaluator_image.clone()),
                        image_pull_policy: config.image_pull_policy.clone(),
                        command: Some(TRAINER_PROGRAM.map(String::from).to_vec()),
                        args: Some(run.args),
                        env: Some(super::env(run.env.into_iter().chain(staged.env).collect())),
                        working_dir: staged.working_dir,
                        resources: Some(super::gpu_resources(class, run.gpus)),
                        security_context: Some(super::restricted_container_security(true)),
                        termination_message_path: Some(TERMINATION_MESSAGE_PATH.to_string()),
                        termination_message_policy: Some(run.message_policy.to_string()),
                        volume_mounts: Some(staged.mounts),
                        ..Container::default()
                    },
                    (staged.volumes, staged.init.into_iter().collect()),
                )),
            },
            ..JobSpec::default()
        }),
        status: None,
    }
}
