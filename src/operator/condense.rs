//! What the operator keeps in memory of its pods and Jobs: only what a Task reconcile reads of
//! them (issue 13: at 100 Tasks x 16 miners the caches held 3,300 of each, most of its memory).
//! The containers and volumes, which only the trust check reads, become their workload digest
//! (`ownership::WORKLOAD_DIGEST`), computed from the object as the API server returned it: each
//! object is condensed once, where it comes in (a second pass would digest the condensed spec).

use k8s_openapi::api::batch::v1::{Job, JobSpec};
use k8s_openapi::api::core::v1::{Container, ContainerStatus, Pod, PodSpec, PodStatus, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::ownership::{WORKLOAD_DIGEST, workload_digest};

/// A pod as the caches keep it: its metadata, its containers' names and images, and the status
/// a Task reads (its phase and reason, each container's name and state).
pub fn pod(pod: &mut Pod) {
    record_digest(&mut pod.metadata, pod.spec.as_ref().map(workload_digest));
    pod.spec = pod.spec.take().map(|spec| PodSpec {
        containers: images(spec.containers),
        node_name: spec.node_name,
        ..PodSpec::default()
    });
    pod.status = pod.status.take().map(|status| PodStatus {
        phase: status.phase,
        reason: status.reason,
        message: status.message,
        start_time: status.start_time,
        container_statuses: status.container_statuses.map(|statuses| {
            statuses
                .into_iter()
                .map(|c| ContainerStatus {
                    name: c.name,
                    state: c.state,
                    ready: c.ready,
                    restart_count: c.restart_count,
                    ..ContainerStatus::default()
                })
                .collect()
        }),
        ..PodStatus::default()
    });
}

/// A Job as the caches keep it: its metadata and status, and whether it is suspended. Its
/// template is only its digest (an empty pod spec stays to say there was one): a pod is judged
/// against the digest, never the Job's containers, and each kept container cost 2 kB (issue 13).
pub fn job(job: &mut Job) {
    let template = job.spec.as_ref().and_then(|s| s.template.spec.as_ref());
    record_digest(&mut job.metadata, template.map(workload_digest));
    job.spec = job.spec.take().map(|spec| JobSpec {
        suspend: spec.suspend,
        template: PodTemplateSpec { metadata: None, spec: spec.template.spec.map(|_| PodSpec::default()) },
        ..JobSpec::default()
    });
}

/// Replaces whatever the object claimed as its digest: only the operator's own computation counts.
fn record_digest(meta: &mut ObjectMeta, digest: Option<String>) {
    let annotations = meta.annotations.get_or_insert_with(Default::default);
    match digest {
        Some(digest) => annotations.insert(WORKLOAD_DIGEST.to_string(), digest),
        None => annotations.remove(WORKLOAD_DIGEST),
    };
}

fn images(containers: Vec<Container>) -> Vec<Container> {
    containers.into_iter().map(|c| Container { name: c.name, image: c.image, ..Container::default() }).collect()
}
