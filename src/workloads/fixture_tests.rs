//! The builders against reviewed YAML fixtures in `tests/fixtures/workloads/`.
//! After an intended change: `GRADIENTS_BLESS=1 cargo test workloads` and review the diff.

use std::path::PathBuf;

use serde::Serialize;

use super::*;
use crate::api::{MinerSubmission, Task};

fn fixture_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/workloads")
}

fn load<T: serde::de::DeserializeOwned>(name: &str) -> T {
    let path = fixture_dir().join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_norway::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn assert_matches_fixture<T: Serialize>(object: &T, name: &str) {
    let rendered = serde_norway::to_string(object).expect("serialize");
    let path = fixture_dir().join(name);
    if std::env::var_os("GRADIENTS_BLESS").is_some() {
        std::fs::write(&path, &rendered).expect("write fixture");
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_default();
    assert_eq!(rendered, expected, "{} differs; GRADIENTS_BLESS=1 rewrites it", path.display());
}

fn config() -> WorkloadConfig {
    load("config.yaml")
}

#[test]
fn prepare_job_matches_fixture() {
    let task: Task = load("task.yaml");
    assert_matches_fixture(&prepare::prepare_job(&task, 1, 42, &config()).unwrap(), "prepare-job.yaml");
}

#[test]
fn trainer_job_matches_fixture() {
    let submission: MinerSubmission = load("submission.yaml");
    let job = trainer::trainer_job(&submission, &config()).unwrap();
    assert_matches_fixture(&job, "trainer-job.yaml");
}

#[test]
fn trainer_job_is_locked_down() {
    let submission: MinerSubmission = load("submission.yaml");
    let job = trainer::trainer_job(&submission, &config()).unwrap();
    let job_spec = job.spec.unwrap();
    assert_eq!(job_spec.active_deadline_seconds, Some(2 * 3600 + 1800));
    let pod = job_spec.template.spec.unwrap();
    assert_eq!(pod.automount_service_account_token, Some(false));
    assert_eq!(pod.security_context.as_ref().unwrap().run_as_non_root, Some(true));
    let container = &pod.containers[0];
    let security = container.security_context.as_ref().unwrap();
    assert_eq!(security.allow_privilege_escalation, Some(false));
    assert_eq!(security.capabilities.as_ref().unwrap().drop.as_deref(), Some(&["ALL".to_string()][..]));
    assert_eq!(security.seccomp_profile.as_ref().unwrap().type_, "RuntimeDefault");
    let limits = container.resources.as_ref().unwrap().limits.as_ref().unwrap();
    assert_eq!(limits["nvidia.com/gpu"].0, "4", "DPO 8B is 24B effective: 4 GPUs");
    assert_eq!(job.metadata.labels.unwrap()[labels::KUEUE_QUEUE], "gpu-queue");
    assert_eq!(job.metadata.owner_references.unwrap()[0].kind, "MinerSubmission");
}

#[test]
fn trainer_job_rejects_an_unknown_gpu_class() {
    let mut submission: MinerSubmission = load("submission.yaml");
    submission.spec.gpu_class = "tpu".to_string();
    assert!(matches!(trainer::trainer_job(&submission, &config()), Err(BuildError::UnknownGpuClass(..))));
}

#[test]
fn evaluation_job_and_policy_match_fixtures() {
    let task: Task = load("task.yaml");
    let model = "/artifacts/tournaments/alpaca-dpo/models/train-miner-a-1";
    let job = evaluator::evaluation_job(&task, "miner-a", 1, Some(model), &config()).unwrap();
    assert_matches_fixture(&job, "evaluation-job.yaml");
    let base = evaluator::evaluation_job(&task, "base-model", 1, None, &config()).unwrap();
    let base_args = base.spec.unwrap().template.spec.unwrap().containers[0].args.clone().unwrap();
    assert!(base_args.contains(&"--score-base".to_string()) && !base_args.contains(&"--submission".to_string()));
    let policy = network_policy::evaluation_network_policy(&task).unwrap();
    assert_matches_fixture(&policy, "evaluation-networkpolicy.yaml");
    // The policy selects exactly the evaluation's pods.
    let pod_labels = job.spec.unwrap().template.metadata.unwrap().labels.unwrap();
    let selector = policy.spec.unwrap().pod_selector.unwrap().match_labels.unwrap();
    assert!(selector.iter().all(|(k, v)| pod_labels.get(k) == Some(v)));
}

#[test]
fn builders_refuse_objects_without_a_uid() {
    let mut task: Task = load("task.yaml");
    task.metadata.uid = None;
    assert!(matches!(
        prepare::prepare_job(&task, 1, 42, &config()),
        Err(BuildError::MissingMetadata { field: "uid", .. })
    ));
}
