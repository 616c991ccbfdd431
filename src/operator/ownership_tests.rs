//! Attacks on the trusted path, each as the object an attacker with create rights in the
//! namespace can make, and the decision that ignores it.

use k8s_openapi::api::core::v1::{PersistentVolumeClaimVolumeSource, Volume};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;

use super::super::condense::{CachedJob, CachedPod};
use super::*;
use crate::api::Task;
use crate::workloads::{WorkloadConfig, evaluator};

const JOB_UID: &str = "11111111-2222-4333-8444-555555555555";

fn config() -> WorkloadConfig {
    serde_norway::from_str(include_str!("../../tests/fixtures/workloads/config.yaml")).unwrap()
}

fn gradients_id(entrant: &str) -> crate::tournament::WorkloadId {
    crate::tournament::WorkloadId::new(crate::tournament::WorkKind::Evaluate, entrant, 1)
}

/// The evaluation Job as the API server returns it after the operator created it.
fn job() -> Job {
    let task: Task = serde_norway::from_str(include_str!("../../tests/fixtures/workloads/task.yaml")).unwrap();
    let mut job = evaluator::evaluation_job(
        &task,
        &gradients_id("miner-a"),
        evaluator::Evaluated::Sealed { uri: "/artifacts/m/a".into(), digest: format!("sha256:{:0>64}", "a") },
        &config(),
        None,
    )
    .unwrap();
    job.metadata.uid = Some(JOB_UID.to_string());
    job
}

/// A pod as the Job controller makes it: the template, controlled by the Job.
fn real_pod(job: &Job) -> Pod {
    let template = job.spec.clone().unwrap().template;
    Pod {
        metadata: ObjectMeta {
            name: Some(format!("{}-x7k2p", job.name_any())),
            labels: template.metadata.and_then(|m| m.labels),
            owner_references: Some(vec![OwnerReference {
                api_version: "batch/v1".into(),
                kind: "Job".into(),
                name: job.name_any(),
                uid: JOB_UID.into(),
                controller: Some(true),
                block_owner_deletion: Some(true),
            }]),
            ..ObjectMeta::default()
        },
        spec: template.spec,
        status: None,
    }
}

fn verdict(pod: &Pod) -> Option<String> {
    untrusted_pod(pod, &job(), evaluator::EVALUATOR_CONTAINER, &config().evaluator_image)
}

#[test]
fn the_jobs_own_pod_is_trusted() {
    assert_eq!(verdict(&real_pod(&job())), None);
}

#[test]
fn a_pod_with_the_jobs_labels_but_no_controller_is_ignored() {
    let mut forged = real_pod(&job());
    forged.metadata.owner_references = None;
    forged.metadata.name = Some("forged".into());
    let why = verdict(&forged).expect("ignored");
    assert!(why.contains("forged") && why.contains("no controller"), "{why}");
}

#[test]
fn a_pod_controlled_by_another_job_of_the_same_name_is_ignored() {
    let mut forged = real_pod(&job());
    forged.metadata.owner_references.as_mut().unwrap()[0].uid = "99999999-0000-4000-8000-000000000000".into();
    let why = verdict(&forged).expect("ignored");
    assert!(why.contains("99999999") && why.contains(JOB_UID), "{why}");
}

#[test]
fn a_pod_claiming_the_job_but_running_another_image_is_ignored() {
    let mut forged = real_pod(&job());
    forged.spec.as_mut().unwrap().containers[0].image = Some("attacker/evaluator:latest".into());
    let why = verdict(&forged).expect("ignored");
    assert!(why.contains("attacker/evaluator:latest") && why.contains("ghcr.io/gradients/evaluator:0.1.0"), "{why}");
}

#[test]
fn a_pod_claiming_the_job_with_other_arguments_is_ignored() {
    // The trusted evaluator, pointed at the attacker's own best model for a rival's slot.
    let mut forged = real_pod(&job());
    let args = forged.spec.as_mut().unwrap().containers[0].args.as_mut().unwrap();
    let at = args.iter().position(|a| a == "--submission").unwrap();
    args[at + 1] = "/artifacts/m/attacker".into();
    assert!(verdict(&forged).expect("ignored").contains("containers and volumes"));
}

#[test]
fn a_pod_claiming_the_job_with_a_sidecar_or_swapped_volume_is_ignored() {
    let mut sidecar = real_pod(&job());
    let mut extra = sidecar.spec.as_ref().unwrap().containers[0].clone();
    extra.name = "writer".into();
    sidecar.spec.as_mut().unwrap().containers.push(extra);
    assert!(verdict(&sidecar).is_some(), "a second container may write the shared volumes");

    let mut swapped = real_pod(&job());
    let volumes = swapped.spec.as_mut().unwrap().volumes.as_mut().unwrap();
    let artifacts = volumes.iter_mut().find(|v| v.name == "artifacts").unwrap();
    *artifacts = Volume {
        name: "artifacts".into(),
        persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
            claim_name: "attacker-claim".into(),
            read_only: Some(true),
        }),
        ..Volume::default()
    };
    assert!(verdict(&swapped).is_some(), "another claim holds another model");
}

#[test]
fn trusted_pods_keeps_only_the_real_one_and_says_why_for_the_rest() {
    let job = job();
    let mut forged = real_pod(&job);
    forged.metadata.owner_references = None;
    let pods = [forged, real_pod(&job)];
    let (trusted, ignored) = trusted_pods(&pods, &job, evaluator::EVALUATOR_CONTAINER, &config().evaluator_image);
    assert_eq!(trusted.len(), 1);
    assert_eq!(trusted[0].owner_references()[0].uid, JOB_UID);
    assert_eq!(ignored.len(), 1);
    assert!(ignored[0].0.owner_references().is_empty(), "the forged one, named for its Event");
}

#[test]
fn only_the_recorded_uid_is_ours() {
    let meta = |uid: Option<&str>| ObjectMeta { uid: uid.map(str::to_string), ..ObjectMeta::default() };
    let uid = |uid| Record { uid: Some(uid), commitment: None };
    assert_eq!(ownership(None, uid("u1")), Ownership::Absent);
    assert_eq!(ownership(Some(&meta(Some("u1"))), uid("u1")), Ownership::Ours);
    // A squatter created before we recorded anything, or after ours was deleted.
    assert_eq!(ownership(Some(&meta(Some("u2"))), Record::default()), Ownership::Foreign);
    assert_eq!(ownership(Some(&meta(Some("u2"))), uid("u1")), Ownership::Foreign);
    assert_eq!(ownership(Some(&meta(None)), Record::default()), Ownership::Foreign);
}

/// An object as the API server returns it, carrying `token` (if any).
fn created(uid: &str, token: Option<&str>) -> ObjectMeta {
    ObjectMeta {
        uid: Some(uid.to_string()),
        annotations: token.map(|t| [(CREATION_TOKEN.to_string(), t.to_string())].into()),
        ..ObjectMeta::default()
    }
}

#[test]
fn an_object_created_before_a_crash_is_adopted_by_its_token() {
    let token = new_token();
    let committed = commitment(&token);
    assert!(committed.starts_with("sha256:") && !committed.contains(&token), "only the hash is recorded: {committed}");
    let pending = Record { uid: None, commitment: Some(&committed) };
    // Created, then the operator died before recording the uid: the restart adopts it.
    assert_eq!(ownership(Some(&created("u1", Some(&token))), pending), Ownership::Unrecorded);
    // Once the uid is recorded, the commitment no longer matters.
    let recorded = Record { uid: Some("u1"), commitment: Some(&committed) };
    assert_eq!(ownership(Some(&created("u1", Some(&token))), recorded), Ownership::Ours);
    assert_eq!(ownership(Some(&created("u2", Some(&token))), recorded), Ownership::Foreign);
}

#[test]
fn a_squatter_cannot_pass_for_an_unrecorded_object() {
    let token = new_token();
    let committed = commitment(&token);
    let pending = Record { uid: None, commitment: Some(&committed) };
    // What a squatter can read is the commitment, not the token; guesses and copies fail.
    for forged in [None, Some(committed.as_str()), Some(committed.trim_start_matches("sha256:")), Some("")] {
        assert_eq!(ownership(Some(&created("u9", forged)), pending), Ownership::Foreign, "{forged:?}");
    }
    assert_eq!(ownership(Some(&created("u9", Some(&new_token()))), pending), Ownership::Foreign);
    // A token with nothing committed (an older attempt's, or one copied from elsewhere).
    assert_eq!(ownership(Some(&created("u9", Some(&token))), Record::default()), Ownership::Foreign);
    // Tokens are fresh each time.
    assert_ne!(new_token(), new_token());
    assert_eq!(new_token().len(), 32);
}

#[test]
fn a_foreign_object_is_named_with_its_writers() {
    let mut squatter = job();
    squatter.metadata.managed_fields = Some(vec![k8s_openapi::apimachinery::pkg::apis::meta::v1::ManagedFieldsEntry {
        manager: Some("kubectl-client-side-apply".into()),
        ..Default::default()
    }]);
    let text = describe(&squatter);
    assert!(text.starts_with("Job tournaments/alpaca-dpo-evaluate-miner-a-1-"), "{text}");
    assert!(text.contains(JOB_UID) && text.contains("kubectl-client-side-apply"), "{text}");
    assert_eq!(key::<Job>("t-prepare-1"), "Job/t-prepare-1");
}

/// What the operator keeps of a pod or Job it caches or reads ([`super::super::condense`]): a
/// cache reads the object's JSON into its [`CachedPod`] or [`CachedJob`], and gives back what a
/// pod or Job read fresh becomes; both ways must agree.
fn condensed_pod(mut pod: Pod) -> Pod {
    let cached: CachedPod = serde_json::from_value(serde_json::to_value(&pod).unwrap()).unwrap();
    super::super::condense::pod(&mut pod);
    assert_eq!(cached.to_pod(), pod);
    pod
}

fn condensed_job(mut job: Job) -> Job {
    let cached: CachedJob = serde_json::from_value(serde_json::to_value(&job).unwrap()).unwrap();
    super::super::condense::job(&mut job);
    assert_eq!(cached.to_job(), job);
    job
}

#[test]
fn condensed_pods_and_jobs_are_judged_as_the_full_ones() {
    let full = job();
    let mut forged = real_pod(&full);
    forged.spec.as_mut().unwrap().volumes.as_mut().unwrap().push(Volume {
        name: "other-claim".into(),
        persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource { claim_name: "x".into(), read_only: None }),
        ..Volume::default()
    });
    let (container, image) = (evaluator::EVALUATOR_CONTAINER, config().evaluator_image);
    for (pod_condensed, job_condensed) in [(true, true), (true, false), (false, true)] {
        let job = if job_condensed { condensed_job(full.clone()) } else { full.clone() };
        let pod = |pod: Pod| if pod_condensed { condensed_pod(pod) } else { pod };
        assert_eq!(untrusted_pod(&pod(real_pod(&full)), &job, container, &image), None);
        let why = untrusted_pod(&pod(forged.clone()), &job, container, &image).expect("ignored");
        assert!(why.contains("containers and volumes"), "{why}");
    }
    // Condensing drops the specs: the volumes and the containers' env are gone from memory.
    let kept = condensed_pod(real_pod(&full));
    assert!(kept.spec.as_ref().unwrap().volumes.is_none());
    assert!(kept.spec.as_ref().unwrap().containers.iter().all(|c| c.env.is_none() && c.image.is_some()));
}

#[test]
fn a_forged_pod_cannot_bring_its_own_workload_digest() {
    let job = job();
    let mut forged = real_pod(&job);
    forged.spec.as_mut().unwrap().volumes = None;
    // The real template's digest (an attacker cannot compute it: it is keyed with the
    // operator's secret), and what they can compute: the unkeyed SHA-256 of the template.
    let template = job.spec.as_ref().unwrap().template.spec.as_ref().unwrap();
    let unkeyed = hex(&Sha256::digest(serde_json::to_vec(template).unwrap()));
    assert_ne!(workload_digest(template), unkeyed);
    let (container, image) = (evaluator::EVALUATOR_CONTAINER, config().evaluator_image);
    for claimed in [workload_digest(template), unkeyed] {
        forged.metadata.annotations.get_or_insert_with(Default::default).insert(WORKLOAD_DIGEST.into(), claimed);
        // Condensing replaces the claim with the digest of what the pod really runs.
        assert!(untrusted_pod(&condensed_pod(forged.clone()), &job, container, &image).is_some());
        assert!(
            untrusted_pod(&condensed_pod(forged.clone()), &condensed_job(job.clone()), container, &image).is_some()
        );
    }
    // Read as the API server returned it, a claim matches nothing the attacker could compute.
    assert!(untrusted_pod(&forged, &job, container, &image).is_some());
}

#[test]
fn condensing_keeps_what_a_tasks_reconcile_reads() {
    let job: Job = {
        let mut job = job();
        job.status =
            serde_json::from_value(serde_json::json!({"active": 1, "ready": 1, "startTime": "2026-11-26T11:00:00Z"}))
                .unwrap();
        job
    };
    let mut pod = real_pod(&job);
    pod.status = serde_json::from_value(serde_json::json!({
        "phase": "Succeeded", "podIP": "10.0.0.9",
        "conditions": [{"type": "Ready", "status": "False"}],
        "containerStatuses": [{"name": evaluator::EVALUATOR_CONTAINER, "image": "i", "imageID": "sha256:x", "ready": false,
            "restartCount": 0, "containerID": "containerd://c",
            "state": {"terminated": {"exitCode": 0, "finishedAt": "2026-11-26T11:30:00Z",
                "message": r#"{"ok":true,"test_loss":1.25,"synth_loss":1.5,"weights_sha256":"ab","checks":[],"failure":null}"#}}}],
    }))
    .unwrap();
    let (container, image) = (evaluator::EVALUATOR_CONTAINER, config().evaluator_image);
    let observed = |job: &Job, pod: &Pod| {
        let (trusted, _) = trusted_pods(std::slice::from_ref(pod), job, container, &image);
        crate::operator::lifecycle::evaluation_state(job, &trusted)
    };
    let full = observed(&job, &pod);
    assert!(matches!(full, crate::tournament::WorkloadState::Succeeded { .. }), "{full:?}");
    assert_eq!(observed(&condensed_job(job.clone()), &condensed_pod(pod)), full);
    let mut suspended = job.clone();
    suspended.spec.as_mut().unwrap().suspend = Some(true);
    assert!(crate::workloads::awaiting_admission(&condensed_job(suspended)));
    // Resumed by Kueue, not yet started by the Job controller: still waiting, with no pending
    // timeout counted from its request (its queue label says it was queued).
    let mut resumed = job.clone();
    resumed.spec.as_mut().unwrap().suspend = Some(false);
    resumed.status = None;
    let labels = resumed.metadata.labels.get_or_insert_default();
    labels.insert(crate::workloads::labels::KUEUE_QUEUE.into(), "gpu-queue".into());
    assert!(crate::workloads::awaiting_admission(&condensed_job(resumed)));
    // A Job failed with no pod to show for it (its deadline passed): when and why come from the
    // condition that holds, as the Job controller wrote it beside the ones that led to it.
    let mut failed = job.clone();
    failed.status = serde_json::from_value(serde_json::json!({"failed": 1, "startTime": "2026-11-26T11:00:00Z",
        "conditions": [
            {"type": "Suspended", "status": "False", "reason": "JobResumed", "lastTransitionTime": "2026-11-26T10:59:00Z"},
            {"type": "FailureTarget", "status": "True", "reason": "DeadlineExceeded", "message": "early",
                "lastTransitionTime": "2026-11-26T11:20:00Z"},
            {"type": "Failed", "status": "True", "reason": "DeadlineExceeded",
                "message": "Job was active longer than specified deadline", "lastProbeTime": "2026-11-26T11:20:01Z",
                "lastTransitionTime": "2026-11-26T11:20:01Z"}]}))
    .unwrap();
    let full = crate::operator::lifecycle::evaluation_state(&failed, &[]);
    assert!(
        matches!(&full, crate::tournament::WorkloadState::Failed { reason, .. } if reason.contains("deadline")),
        "{full:?}"
    );
    let kept = condensed_job(failed.clone());
    assert_eq!(crate::operator::lifecycle::evaluation_state(&kept, &[]), full);
    assert_eq!(kept.status.unwrap().conditions.unwrap().len(), 1, "only the condition a reconcile reads");
}
