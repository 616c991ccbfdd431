//! The builders against reviewed YAML fixtures in `tests/fixtures/workloads/`.
//! After an intended change: `GRADIENTS_BLESS=1 cargo test workloads` and review the diff.

use std::path::PathBuf;

use serde::Serialize;

use super::*;
use crate::api::{MinerSubmission, Task};

fn fixture_dir() -> PathBuf {
    crate::checkout().join("tests/fixtures/workloads")
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
    assert_matches_fixture(&prepare::prepare_job(&task, 1, 42, &config(), None).unwrap(), "prepare-job.yaml");
}

#[test]
fn trainer_job_matches_fixture() {
    let submission: MinerSubmission = load("submission.yaml");
    let job = trainer::trainer_job(&submission, &config(), None).unwrap();
    assert_matches_fixture(&job, "trainer-job.yaml");
}

#[test]
fn trainer_job_is_locked_down() {
    let submission: MinerSubmission = load("submission.yaml");
    let job = trainer::trainer_job(&submission, &config(), None).unwrap();
    let job_spec = job.spec.unwrap();
    assert_eq!(job_spec.active_deadline_seconds, Some(2 * 3600 + 1800 + 120), "the hours and the grace");
    assert_eq!(job_spec.suspend, Some(true), "queued by Kueue: created suspended, resumed on admission");
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
fn a_trainer_awaits_its_network_policy_before_the_miners_code_when_configured() {
    let submission: MinerSubmission = load("submission.yaml");
    let names = |config: &WorkloadConfig| -> Vec<String> {
        let job = trainer::trainer_job(&submission, config, None).unwrap();
        let init = job.spec.unwrap().template.spec.unwrap().init_containers.unwrap_or_default();
        init.iter().map(|c| c.name.clone()).collect()
    };
    assert!(!names(&config()).contains(&"await-isolation".to_string()), "off by default");
    let mut awaiting = config();
    awaiting.await_isolation = true;
    assert_eq!(names(&awaiting).first().map(String::as_str), Some("await-isolation"), "first, before anything else");
    let job = trainer::trainer_job(&submission, &awaiting, None).unwrap();
    let gate = job.spec.unwrap().template.spec.unwrap().init_containers.unwrap().remove(0);
    assert_eq!(
        gate.image.as_deref(),
        Some(awaiting.operator_image.as_str()),
        "the operator's image, never the miner's"
    );
    assert_eq!(gate.args, Some(vec!["await-isolation".to_string()]));
    assert_eq!(gate.security_context.unwrap().read_only_root_filesystem, Some(true));
}

#[test]
fn trainer_job_rejects_an_unknown_gpu_class() {
    let mut submission: MinerSubmission = load("submission.yaml");
    submission.spec.gpu_class = "tpu".to_string();
    assert!(matches!(trainer::trainer_job(&submission, &config(), None), Err(BuildError::UnknownGpuClass(..))));
}

fn sealed_evaluation() -> evaluator::Evaluated {
    evaluator::Evaluated::Sealed {
        uri: "/artifacts/tournaments/tournaments/alpaca-dpo/sealed/train-miner-a-1".into(),
        digest: format!("sha256:{}", "ab".repeat(32)),
    }
}

fn evaluate_id(entrant: &str) -> crate::tournament::WorkloadId {
    crate::tournament::WorkloadId::new(crate::tournament::WorkKind::Evaluate, entrant, 1)
}

fn seal_job() -> k8s_openapi::api::batch::v1::Job {
    let task: Task = load("task.yaml");
    let config = config();
    let output = config.model_uri("tournaments", "alpaca-dpo", "train-miner-a-1");
    let sealed = config.sealed_uri("tournaments", "alpaca-dpo", "train-miner-a-1");
    seal::seal_job(&task, "alpaca-dpo-seal-miner-a-1".into(), "miner-a", 1, (&output, &sealed), &config, None).unwrap()
}

#[test]
fn evaluation_job_and_policy_match_fixtures() {
    let task: Task = load("task.yaml");
    let job = evaluator::evaluation_job(&task, &evaluate_id("miner-a"), sealed_evaluation(), &config(), None).unwrap();
    assert_matches_fixture(&job, "evaluation-job.yaml");
    let base =
        evaluator::evaluation_job(&task, &evaluate_id("base-model"), evaluator::Evaluated::BaseModel, &config(), None)
            .unwrap();
    let base_args = base.spec.unwrap().template.spec.unwrap().containers[0].args.clone().unwrap();
    assert!(base_args.contains(&"--score-base".to_string()) && !base_args.contains(&"--submission".to_string()));
    let policy = network_policy::evaluation_network_policy(&task).unwrap();
    // The policy selects exactly the evaluation's pods.
    let pod_labels = job.spec.unwrap().template.metadata.unwrap().labels.unwrap();
    let selector = policy.spec.unwrap().pod_selector.unwrap().match_labels.unwrap();
    assert!(selector.iter().all(|(k, v)| pod_labels.get(k) == Some(v)));
}

#[test]
fn seal_job_matches_fixture() {
    assert_matches_fixture(&seal_job(), "seal-job.yaml");
}

/// The container of a built Job.
fn container(job: &k8s_openapi::api::batch::v1::Job) -> k8s_openapi::api::core::v1::Container {
    job.spec.clone().unwrap().template.spec.unwrap().containers[0].clone()
}

/// (mount path, claim subPath, read-only) of every mount of the artifacts claim.
fn claim_mounts(job: &k8s_openapi::api::batch::v1::Job) -> Vec<(String, String, bool)> {
    let pod = job.spec.clone().unwrap().template.spec.unwrap();
    let claim = pod.volumes.unwrap().into_iter().find(|v| v.name == "artifacts").unwrap();
    assert!(claim.persistent_volume_claim.is_some());
    container(job)
        .volume_mounts
        .unwrap()
        .into_iter()
        .filter(|m| m.name == "artifacts")
        .map(|m| (m.mount_path, m.sub_path.expect("only subPath mounts of the claim"), m.read_only == Some(true)))
        .collect()
}

/// The value after `option` in a container's arguments.
fn arg(job: &k8s_openapi::api::batch::v1::Job, option: &str) -> String {
    let args = container(job).args.unwrap();
    let at = args.iter().position(|a| a == option).unwrap_or_else(|| panic!("{option} missing: {args:?}"));
    args[at + 1].clone()
}

/// The trust boundaries of `/work/shared/DESIGN.md`, as mounts of the artifacts claim.
/// A GPU class with a sandboxed runtime (gVisor, Kata) puts the pods that run or read miners'
/// work in it; the operator's own preparation and seal stay on their nodes' default runtime.
#[test]
fn a_gpu_class_runtime_class_sandboxes_trainers_and_evaluators() {
    let runtime = |job: &k8s_openapi::api::batch::v1::Job| job.spec.clone()?.template.spec?.runtime_class_name;
    let task: Task = load("task.yaml");
    let submission: MinerSubmission = load("submission.yaml");
    let evaluation =
        || evaluator::evaluation_job(&task, &evaluate_id("miner-a"), sealed_evaluation(), &config(), None).unwrap();
    assert_eq!(runtime(&trainer::trainer_job(&submission, &config(), None).unwrap()), None, "runc unless configured");
    assert_eq!(runtime(&evaluation()), None);

    let mut sandboxed = config();
    sandboxed.gpu_classes.get_mut("h100").unwrap().runtime_class_name = Some("gvisor".into());
    let trainer = trainer::trainer_job(&submission, &sandboxed, None).unwrap();
    let evaluation =
        evaluator::evaluation_job(&task, &evaluate_id("miner-a"), sealed_evaluation(), &sandboxed, None).unwrap();
    assert_eq!(runtime(&trainer).as_deref(), Some("gvisor"));
    assert_eq!(runtime(&evaluation).as_deref(), Some("gvisor"));
    assert_eq!(runtime(&prepare::prepare_job(&task, 1, 42, &sandboxed, None).unwrap()), None);
    let seal = seal::seal_job(&task, "s".into(), "miner-a", 1, ("/artifacts/a", "/artifacts/b"), &sandboxed, None);
    assert_eq!(runtime(&seal.unwrap()), None);
}

#[test]
fn each_workload_sees_only_its_own_locations_on_the_claim() {
    let task: Task = load("task.yaml");
    let area = "tournaments/tournaments/alpaca-dpo";
    let own = |path: &str, sub: &str, ro: bool| (path.to_string(), format!("{area}/{sub}"), ro);
    let base = || ("/base-model".to_string(), "models/qwen2.5-8b".to_string(), true);

    let prepare = prepare::prepare_job(&task, 1, 42, &config(), None).unwrap();
    assert_eq!(
        claim_mounts(&prepare),
        [("/source/dataset".to_string(), "datasets/prefs.jsonl".to_string(), true), own("/prepared", "data", false)]
    );

    let submission: MinerSubmission = load("submission.yaml");
    let trainer = trainer::trainer_job(&submission, &config(), None).unwrap();
    assert_eq!(
        claim_mounts(&trainer),
        [base(), own("/inputs", "data/training", true), own("/output", "models/train-miner-a-1", false)],
        "a trainer gets its inputs read-only and one output of its own: no held-out data, no rival"
    );
    assert_eq!(arg(&trainer, "--train-data"), "/inputs/train.jsonl");
    assert_eq!(arg(&trainer, "--output"), "/output");

    assert_eq!(
        claim_mounts(&seal_job()),
        [own("/output", "models/train-miner-a-1", true), own("/sealed", "sealed/train-miner-a-1", false)]
    );

    let evaluation =
        evaluator::evaluation_job(&task, &evaluate_id("miner-a"), sealed_evaluation(), &config(), None).unwrap();
    assert_eq!(
        claim_mounts(&evaluation),
        [base(), own("/heldout", "data/heldout", true), own("/sealed", "sealed/train-miner-a-1", true)],
        "the evaluator reads the sealed copy, never the trainer's writable output"
    );
    assert_eq!(arg(&evaluation, "--submission"), "/sealed/model");
    assert_eq!(arg(&evaluation, "--test-data"), "/heldout/test.jsonl");
    assert_eq!(arg(&evaluation, "--submission-digest"), format!("sha256:{}", "ab".repeat(32)));
    let env = container(&evaluation).env.unwrap();
    assert!(env.iter().all(|e| !e.name.contains("MINER") && !e.name.contains("TASK")), "{env:?}");
}

#[test]
fn every_rendered_command_line_follows_the_contract() {
    let task: Task = load("task.yaml");
    let submission: MinerSubmission = load("submission.yaml");
    let args = |job: &k8s_openapi::api::batch::v1::Job| container(job).args.unwrap();
    let check = contract::check_argv;
    check(&contract::PREPARE, &args(&prepare::prepare_job(&task, 1, 42, &config(), None).unwrap())).unwrap();
    check(&contract::TRAIN, &args(&trainer::trainer_job(&submission, &config(), None).unwrap())).unwrap();
    check(&contract::SEAL, &args(&seal_job())).unwrap();
    for evaluated in [sealed_evaluation(), evaluator::Evaluated::BaseModel] {
        let job = evaluator::evaluation_job(&task, &evaluate_id("miner-a"), evaluated, &config(), None).unwrap();
        check(&contract::EVALUATE, &args(&job)).unwrap();
    }
}

/// Issue 10: argparse keeps the last value and the kubelet expands `$(VAR)`, so these args
/// trained the reference trainer on the test split.
#[test]
fn miner_arguments_cannot_override_the_operators() {
    let mut submission: MinerSubmission = load("submission.yaml");
    let attack = "/artifacts/tournaments/tournaments/$(GRADIENTS_TASK)/data/heldout/test.jsonl";
    for args in [
        vec!["--train-data".to_string(), attack.to_string()],
        vec!["--output".to_string(), "/artifacts/tournaments/tournaments/alpaca-dpo/models/rival".to_string()],
        vec!["--strategy-overrides".to_string(), "$(HOME)".to_string()],
        vec!["--out".to_string(), "/tmp".to_string()],
    ] {
        submission.spec.args = args.clone();
        match trainer::trainer_job(&submission, &config(), None) {
            Err(BuildError::MinerArguments { object, why }) => {
                assert_eq!(object, "MinerSubmission tournaments/alpaca-dpo-miner-a");
                assert!(why.contains("'$('") || why.contains("cannot be overridden"), "{why}");
            }
            other => panic!("{args:?} was accepted: {other:?}"),
        }
    }
    submission.spec.args = vec!["--strategy-overrides".into(), r#"{"learning_rate": 0.0001}"#.into()];
    let job = trainer::trainer_job(&submission, &config(), None).unwrap();
    assert_eq!(arg(&job, "--strategy-overrides"), r#"{"learning_rate": 0.0001}"#);
}

/// Issue 10: a Task could name another task's held-out split as its dataset.
#[test]
fn tasks_may_only_read_allowed_sources() {
    let mut task: Task = load("task.yaml");
    for uri in [
        "/artifacts/tournaments/other/task/data/heldout/test.jsonl",
        "/artifacts/datasets/../tournaments/other/task/data/heldout/test.jsonl",
        "pvc://gradients-artifacts/tournaments/other/task/data/heldout/test.jsonl",
        "/etc/passwd",
        "s3://elsewhere/data.jsonl",
    ] {
        task.spec.dataset.uri = uri.to_string();
        match prepare::prepare_job(&task, 1, 42, &config(), None) {
            Err(BuildError::SourceNotAllowed(refused)) => {
                assert_eq!(refused.field, "spec.dataset.uri");
                assert!(refused.to_string().contains("/artifacts/datasets/"), "{refused}");
            }
            other => panic!("{uri} was accepted: {other:?}"),
        }
    }
    let mut submission: MinerSubmission = load("submission.yaml");
    submission.spec.data_uri = "/artifacts/tournaments/tournaments/other/data".into();
    assert!(matches!(
        trainer::trainer_job(&submission, &config(), None),
        Err(BuildError::OutsideTask { field: "spec.dataUri", .. })
    ));
    let mut submission: MinerSubmission = load("submission.yaml");
    submission.spec.artifact_uri = "/artifacts/tournaments/tournaments/alpaca-dpo/models/a/../../data".into();
    assert!(matches!(
        trainer::trainer_job(&submission, &config(), None),
        Err(BuildError::OutsideTask { field: "spec.artifactUri", .. })
    ));
}

#[test]
fn builders_refuse_objects_without_a_uid() {
    let mut task: Task = load("task.yaml");
    task.metadata.uid = None;
    assert!(matches!(
        prepare::prepare_job(&task, 1, 42, &config(), None),
        Err(BuildError::MissingMetadata { field: "uid", .. })
    ));
}

#[test]
fn every_role_gets_a_deny_all_policy_with_only_its_configured_egress() {
    let task: Task = load("task.yaml");
    let policies = network_policy::task_network_policies(&task, &config()).unwrap();
    assert_matches_fixture(&policies, "network-policies.yaml");
    let by_role = |role: &str| {
        policies
            .iter()
            .find(|p| p.metadata.labels.as_ref().unwrap()[labels::ROLE] == role)
            .unwrap()
            .spec
            .clone()
            .unwrap()
    };
    for role in network_policy::ROLES {
        let spec = by_role(role);
        assert_eq!(spec.policy_types.as_deref(), Some(&["Ingress".to_string(), "Egress".to_string()][..]), "{role}");
        assert!(spec.ingress.is_none(), "{role}: nothing may connect in");
    }
    assert!(by_role(labels::ROLE_SEAL).egress.is_none() && by_role(labels::ROLE_EVALUATOR).egress.is_none());
    assert_eq!(by_role(labels::ROLE_PREPARE).egress.unwrap().len(), 2, "DNS and the data source");
    assert_eq!(by_role(labels::ROLE_TRAINER).egress, Some(config().gpu_classes["h100"].egress.clone()));
    // Without an allow-list a trainer gets no egress at all.
    let mut closed = config();
    closed.gpu_classes.get_mut("h100").unwrap().egress.clear();
    let trainer = network_policy::task_network_policies(&task, &closed).unwrap().remove(1);
    assert!(trainer.spec.unwrap().egress.is_none());
    // Each policy selects exactly its role's pods of this task: the trainer Job's pods here.
    let submission: MinerSubmission = load("submission.yaml");
    let job = trainer::trainer_job(&submission, &config(), None).unwrap();
    let pod_labels = job.spec.unwrap().template.metadata.unwrap().labels.unwrap();
    let selector = by_role(labels::ROLE_TRAINER).pod_selector.unwrap().match_labels.unwrap();
    assert!(selector.iter().all(|(k, v)| pod_labels.get(k) == Some(v)), "{selector:?} vs {pod_labels:?}");
}

#[test]
fn a_task_on_an_unknown_gpu_class_gets_no_policies_but_an_error_naming_it() {
    let mut task: Task = load("task.yaml");
    task.spec.gpu_class = Some("tpu".into());
    let error = network_policy::task_network_policies(&task, &config()).unwrap_err();
    assert!(error.to_string().contains("\"tpu\"") && error.to_string().contains("h100"), "{error}");
}

fn generating_task() -> Task {
    let mut task: Task = load("task.yaml");
    task.spec.dataset.generator = Some(crate::api::task::SyntheticGenerator {
        model_uri: "/artifacts/models/qwen2.5-72b-instruct".into(),
        weaker_model_uri: Some("/artifacts/models/qwen2.5-0.5b".into()),
        rows: Some(200),
        temperature: 0.7,
        max_new_tokens: 256,
    });
    task
}

#[test]
fn synthesize_job_matches_fixture() {
    let job =
        synthesize::synthesize_job(&generating_task(), 1, 42, 200, &config(), None).unwrap().expect("a generator");
    assert_matches_fixture(&job, "synthesize-job.yaml");
    assert!(synthesize::synthesize_job(&load::<Task>("task.yaml"), 1, 42, 200, &config(), None).unwrap().is_none());
}

#[test]
fn synthesize_job_writes_only_the_generated_set_and_runs_the_trusted_image() {
    let job = synthesize::synthesize_job(&generating_task(), 1, 42, 200, &config(), None).unwrap().unwrap();
    let pod = job.spec.unwrap().template.spec.unwrap();
    let container = &pod.containers[0];
    assert_eq!(container.image.as_deref(), Some(config().evaluator_image.as_str()));
    let writable: Vec<&str> = container
        .volume_mounts
        .iter()
        .flatten()
        .filter(|m| m.read_only == Some(false))
        .filter_map(|m| m.sub_path.as_deref())
        .collect();
    assert_eq!(writable, vec!["tournaments/tournaments/alpaca-dpo/data/heldout/generated"]);
    let args = container.args.clone().unwrap();
    contract::check_argv(&contract::SYNTHESIZE, &args).unwrap();
    // The evaluator of the same task scores the generated file.
    let evaluation =
        evaluator::evaluation_job(&generating_task(), &evaluate_id("miner-a"), sealed_evaluation(), &config(), None)
            .unwrap();
    let eval_args = evaluation.spec.unwrap().template.spec.unwrap().containers[0].args.clone().unwrap();
    let synth = &eval_args[eval_args.iter().position(|a| a == "--synth-data").unwrap() + 1];
    assert_eq!(synth, "/heldout/generated/synthetic.jsonl");
}

#[test]
fn a_generator_outside_the_allowed_sources_is_refused_by_field() {
    let mut task = generating_task();
    task.spec.dataset.generator.as_mut().unwrap().model_uri = "/artifacts/tournaments/other/t/models/x".into();
    let err = synthesize::synthesize_job(&task, 1, 42, 200, &config(), None).unwrap_err().to_string();
    assert!(err.contains("spec.dataset.generator.modelUri"), "{err}");
}

#[test]
fn several_gpus_get_a_shared_memory_volume_and_one_gets_none() {
    let mut submission: MinerSubmission = load("submission.yaml");
    for (gpus, expected) in [(4, Some("4Gi")), (1, None)] {
        submission.spec.gpus = gpus;
        let pod = trainer::trainer_job(&submission, &config(), None).unwrap().spec.unwrap().template.spec.unwrap();
        let shm = pod.volumes.unwrap_or_default().into_iter().find(|v| v.name == "dshm");
        let size = shm.and_then(|v| v.empty_dir).and_then(|e| e.size_limit).map(|q| q.0);
        assert_eq!(size.as_deref(), expected, "{gpus} GPUs");
        let mounted = pod.containers[0].volume_mounts.iter().flatten().any(|m| m.mount_path == "/dev/shm");
        assert_eq!(mounted, expected.is_some(), "{gpus} GPUs");
    }
}

#[test]
fn a_later_slice_mounts_its_own_previous_output_read_only_and_nothing_else() {
    let mut submission: MinerSubmission = load("submission.yaml");
    let models = "/artifacts/tournaments/tournaments/alpaca-dpo/models";
    submission.spec.artifact_uri = format!("{models}/train-miner-a-1-r1");
    submission.spec.resume_uri = Some(format!("{models}/train-miner-a-1"));
    let job = trainer::trainer_job(&submission, &config(), None).unwrap();
    let container = job.spec.unwrap().template.spec.unwrap().containers.remove(0);
    let args = container.args.unwrap();
    let at = args.iter().position(|a| a == "--resume-from").expect("--resume-from");
    assert_eq!(args[at + 1], mounts::RESUME);
    let mounts = container.volume_mounts.unwrap();
    let resume = mounts.iter().find(|m| m.mount_path == mounts::RESUME).expect("the previous output is mounted");
    assert_eq!(resume.read_only, Some(true));
    assert!(resume.sub_path.as_deref().is_some_and(|p| p.ends_with("models/train-miner-a-1")), "{resume:?}");
    // Never anything but its own miner's earlier training: not the held-out data, not a rival's
    // model (miner-a-r1 would be another miner, not miner-a's rung 1).
    submission.spec.resume_uri = Some(format!("{models}/train-miner-a-1-r1"));
    assert!(trainer::trainer_job(&submission, &config(), None).is_ok(), "a rung-1 output of its own");
    let others = [
        "/artifacts/tournaments/tournaments/alpaca-dpo/data/heldout".to_string(),
        format!("{models}/train-miner-b-1"),
        format!("{models}/train-miner-a-r1-1"),
        format!("{models}/train-miner-a-1/../../data"),
    ];
    for other in others {
        submission.spec.resume_uri = Some(other.clone());
        let built = trainer::trainer_job(&submission, &config(), None);
        assert!(matches!(built, Err(BuildError::OutsideTask { field: "spec.resumeUri", .. })), "{other} was accepted");
    }
}
