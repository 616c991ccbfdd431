//! The trainer Job of one submission: the miner's code on the task's GPUs, under a deadline.

use k8s_openapi::api::batch::v1::{Job, JobSpec};
use k8s_openapi::api::core::v1::{Container, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::contract::{PreparedData, TRAINER_PROGRAM, TrainInvocation, TrainerOutput, TrainingInputs};
use super::{BuildError, WorkloadConfig, labels, mounts};
use crate::api::MinerSubmission;

pub fn job_name(submission: &str) -> String {
    super::child_name(&[submission, "train"])
}

/// The Job for a submission. The miner's code is not trusted: it gets no service-account token,
/// the restricted security profile, bounded resources, only its own locations, and
/// `activeDeadlineSeconds` of the allocated hours plus the lifecycle's grace, so it cannot
/// outlive its slot.
pub fn trainer_job(
    submission: &MinerSubmission,
    config: &WorkloadConfig,
    access: Option<&crate::storage::ObjectAccess>,
) -> Result<Job, BuildError> {
    let (namespace, name, owner) = super::owner(submission)?;
    let spec = &submission.spec;
    let class = config.gpu_classes.get(&spec.gpu_class).ok_or_else(|| {
        BuildError::UnknownGpuClass(
            spec.gpu_class.clone(),
            config.gpu_classes.keys().cloned().collect::<Vec<_>>().join(", "),
        )
    })?;
    own_area(&namespace, &name, spec, config)?;
    crate::api::miner::check_miner_arguments(&spec.args, &spec.command)
        .map_err(|why| BuildError::MinerArguments { object: format!("MinerSubmission {namespace}/{name}"), why })?;
    // Exactly its inputs, read-only, and one writable output of its own.
    let grace = i64::try_from(config.lifecycle.clone().unwrap_or_default().deadline_grace_s).unwrap_or(0);
    let deadline = super::deadline_seconds(spec.hours) + grace;
    let mut view = super::ArtifactView::new(config, access, super::view::lifetime(config, deadline as u64));
    let base_model = view.mount(&spec.base_model_uri, mounts::BASE_MODEL, true)?;
    let inputs = view.mount(PreparedData::under(&spec.data_uri).training.dir(), mounts::INPUTS, true)?;
    let output = view.mount(&spec.artifact_uri, mounts::OUTPUT, false)?;
    // Successive halving: the miner's previous slice, read-only (own_area checked it is its task's).
    let resume_from = spec.resume_uri.as_deref().map(|uri| view.mount(uri, mounts::RESUME, true)).transpose()?;
    let invocation = TrainInvocation {
        task_type: spec.task_type,
        base_model,
        inputs: TrainingInputs(inputs),
        columns: super::columns_arg(&spec.columns),
        hours: spec.hours,
        output: TrainerOutput(output),
        strategy: spec.strategy.clone(),
        seed: spec.seed,
        resume_from,
    };
    let mut args = invocation.argv();
    args.extend(spec.args.iter().cloned());
    // The reference trainer, or the miner's image with its own command or entry point; either
    // way the arguments start with the `train` subcommand.
    let (image, command) = match &spec.image {
        Some(image) => (image.clone(), (!spec.command.is_empty()).then(|| spec.command.clone())),
        None => (config.trainer_image.clone(), Some(TRAINER_PROGRAM.map(String::from).to_vec())),
    };

    let mut pod_labels = super::base_labels(labels::ROLE_TRAINER, &spec.task);
    pod_labels.insert(labels::MINER.to_string(), super::label_value(&spec.miner));
    let (job_labels, suspend) = super::queued(config, pod_labels.clone());
    let mut staged = view.finish(super::scratch_volume("200Gi"));
    super::add_shared_memory(&mut staged, spec.gpus);
    // The miner's code is the one that must not start before the pod's policy is in force.
    let init: Vec<Container> = config
        .await_isolation
        .then(|| super::await_isolation_container(config))
        .into_iter()
        .chain(staged.init)
        .collect();
    Ok(Job {
        metadata: super::metadata(job_name(&name), namespace, owner, job_labels),
        spec: Some(JobSpec {
            // A trainer that fails has used its slot: no retries, or it would get extra time.
            backoff_limit: Some(0),
            // The trainer counts its hours from its own start, later than the Job's (scheduling,
            // image pull): the grace lets it save at its deadline before the Job ends it.
            active_deadline_seconds: Some(deadline),
            suspend,
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta { labels: Some(pod_labels), ..ObjectMeta::default() }),
                spec: Some(super::gpu_class_pod(
                    class,
                    Container {
                        name: "trainer".to_string(),
                        image: Some(image),
                        image_pull_policy: config.image_pull_policy.clone(),
                        command,
                        args: Some(args),
                        env: Some(super::env(invocation.env().into_iter().chain(staged.env).collect())),
                        working_dir: staged.working_dir,
                        resources: Some(super::gpu_resources(class, spec.gpus)),
                        // Training code writes caches in unpredictable places; the root stays
                        // writable, everything else of the restricted profile applies.
                        security_context: Some(super::restricted_container_security(false)),
                        volume_mounts: Some(staged.mounts),
                        ..Container::default()
                    },
                    (staged.volumes, init),
                )),
            },
            ..JobSpec::default()
        }),
        status: None,
    })
}

/// Whether `training` (`train-MINER-ATTEMPT`, `train-MINER-ATTEMPT-rRUNG`) is one of `miner`'s
/// own trainings: a slice resumes from its miner's previous output, never a rival's.
fn earlier_training_of(miner: &str, training: &str) -> bool {
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let Some(rest) = training.strip_prefix(&format!("train-{miner}-")) else { return false };
    match rest.split_once("-r") {
        Some((attempt, rung)) => digits(attempt) && digits(rung),
        None => digits(rest),
    }
}

/// A submission's locations must be its task's own: its data area, an output below the task's
/// models, a base model the configuration allows. The Task controller builds them so; this
/// refuses a MinerSubmission written by anyone else to point a trainer at held-out data.
fn own_area(
    namespace: &str,
    name: &str,
    spec: &crate::api::submission::MinerSubmissionSpec,
    config: &WorkloadConfig,
) -> Result<(), BuildError> {
    let outputs = config.model_uri(namespace, &spec.task, "");
    let problem =
        if spec.data_uri != config.data_uri(namespace, &spec.task) {
            Some(("spec.dataUri", &spec.data_uri))
        } else if !spec.artifact_uri.starts_with(&outputs)
            || spec.artifact_uri[outputs.len()..].contains('/')
            || spec.artifact_uri.len() == outputs.len()
        {
            Some(("spec.artifactUri", &spec.artifact_uri))
        } else if let Some(resume) = spec.resume_uri.as_ref().filter(|uri| {
            !uri.strip_prefix(&outputs).is_some_and(|training| earlier_training_of(&spec.miner, training))
        }) {
            Some(("spec.resumeUri", resume))
        } else if !config.source_allowed(&spec.base_model_uri) {
            Some(("spec.baseModelUri", &spec.base_model_uri))
        } else {
            None
        };
    match problem {
        Some((field, uri)) => Err(BuildError::OutsideTask {
            object: format!("MinerSubmission {namespace}/{name}"),
            field,
            uri: uri.clone(),
        }),
        None => Ok(()),
    }
}
