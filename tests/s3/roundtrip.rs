//! A whole submission through `s3://` artifacts with the real code: the operator's builders
//! render each Job for an S3 installation (presigned URLs for the real server), and each Job's
//! container is run here as a process, in a directory of its own standing for its scratch
//! volume, with exactly the Job's arguments and `GRADIENTS_TRANSFERS`: `gradients prepare`,
//! the reference trainer, `gradients seal`, the evaluator. Nothing is shared between them but
//! the object store. Then a hostile trainer archive is refused by the seal, with the reason.

use std::path::Path;
use std::process::Command;

use gradients::api::Task;
use gradients::storage::ObjectAccess;
use gradients::tournament::{WorkKind, WorkloadId};
use gradients::workloads::{WorkloadConfig, evaluator, prepare, seal, trainer};
use k8s_openapi::api::batch::v1::Job;

use super::scoping::{NS, access, s3_config, submission};
use super::*;

const TASK: &str = "roundtrip";

fn task(config: &WorkloadConfig) -> Task {
    let text = format!(
        "apiVersion: gradients.io/v1alpha1\nkind: Task\nmetadata: {{name: {TASK}, namespace: {NS}, uid: 6f1c2a34-0000-4000-8000-00000000000a}}\n\
         spec:\n  taskType: InstructText\n  baseModel: {{uri: 's3://{BUCKET}/models/instruct', paramsB: 0.0001}}\n  \
         dataset:\n    uri: 's3://{BUCKET}/datasets/units.jsonl'\n    columns: {{instruction: question, output: answer}}\n  \
         hours: 0.003\n  seed: 42\n"
    );
    let task: Task = serde_norway::from_str(&text).unwrap();
    config.check_sources(&task.spec).unwrap();
    task
}

/// Runs the Job's container as a process in `dir` (its working directory and HOME), with the
/// container's arguments and environment; the termination message goes to `dir/termination-log`.
fn run(job: &Job, program: &[String], dir: &Path) -> (bool, String, String) {
    let container = &job.spec.as_ref().unwrap().template.spec.as_ref().unwrap().containers[0];
    assert_eq!(container.working_dir.as_deref(), Some("/tmp"), "S3 workloads run in their scratch volume");
    std::fs::create_dir_all(dir).unwrap();
    let message = dir.join("termination-log");
    let args: Vec<String> = container
        .args
        .clone()
        .unwrap()
        .into_iter()
        .map(|a| if a == "/dev/termination-log" { message.to_str().unwrap().to_string() } else { a })
        .collect();
    let mut command = Command::new(&program[0]);
    command.args(&program[1..]).args(&args).current_dir(dir);
    for var in container.env.iter().flatten() {
        command.env(&var.name, var.value.as_deref().unwrap_or_default());
    }
    let output = command.env("HOME", dir).output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr).to_string();
    let result =
        std::fs::read_to_string(&message).unwrap_or_else(|_| String::from_utf8_lossy(&output.stdout).to_string());
    (output.status.success(), result, stderr)
}

fn python() -> Vec<String> {
    let python = std::env::var("GRADIENTS_PYTHON").expect("GRADIENTS_PYTHON: run through scripts/test");
    vec![python, "-m".into(), "gradients_trainer".into()]
}

fn operator_image() -> Vec<String> {
    vec![crate::common::bin().to_string()]
}

fn seal_job(task: &Task, config: &WorkloadConfig, training: &str, access: &ObjectAccess) -> Job {
    let output = config.model_uri(NS, TASK, training);
    let sealed = config.sealed_uri(NS, TASK, training);
    seal::seal_job(task, format!("seal-{training}"), "miner-a", 1, (&output, &sealed), config, Some(access)).unwrap()
}

#[test]
#[ignore = "starts the S3 server and runs the real trainer and evaluator; run by scripts/test"]
fn prepare_train_seal_evaluate_through_the_object_store() {
    let models = std::env::var("GRADIENTS_BASE_MODELS").expect("GRADIENTS_BASE_MODELS: run through scripts/test");
    let server = S3Server::start();
    let config = s3_config(&server);
    server.put_tree("models/instruct", &Path::new(&models).join("instruct"));
    server.put("datasets/units.jsonl", &crate::common::repo().join("examples/instruct/data.jsonl"));
    let task = task(&config);
    let work = tempfile::tempdir().unwrap();
    let base = task.spec.base_model.uri.clone();

    let job = prepare::prepare_job(&task, 1, 42, &config, Some(&access(&server, &[&task.spec.dataset.uri]))).unwrap();
    let (ok, report, stderr) = run(&job, &operator_image(), &work.path().join("prepare"));
    assert!(ok, "prepare: {stderr}");
    let split: serde_json::Value = serde_json::from_str(report.trim()).unwrap();
    assert!(split["test"].as_u64().unwrap() > 0, "{split}");

    let mut submission = submission(&config, TASK, "train-a-1", &base);
    submission.spec.task_type = task.spec.task_type;
    submission.spec.columns = task.spec.dataset.columns.clone();
    submission.spec.hours = 0.003;
    let job = trainer::trainer_job(&submission, &config, Some(&access(&server, &[&base]))).unwrap();
    let (ok, _, stderr) = run(&job, &python(), &work.path().join("train"));
    assert!(ok, "train: {stderr}");
    assert!(!work.path().join("train/artifacts/heldout").exists(), "the trainer never got held-out data");

    let job = seal_job(&task, &config, "train-a-1", &access(&server, &[]));
    let (ok, report, stderr) = run(&job, &operator_image(), &work.path().join("seal"));
    assert!(ok, "seal: {stderr}");
    let sealed: gradients::seal::SealReport = serde_json::from_str(report.trim()).unwrap();
    assert!(sealed.ok, "{report}");
    let digest = sealed.digest.unwrap();

    let evaluated =
        evaluator::Evaluated::Sealed { uri: config.sealed_uri(NS, TASK, "train-a-1"), digest: digest.clone() };
    let job = evaluator::evaluation_job(
        &task,
        &WorkloadId::new(WorkKind::Evaluate, "miner-a", 1),
        evaluated,
        &config,
        Some(&access(&server, &[&base])),
    )
    .unwrap();
    let (ok, result, stderr) = run(&job, &python(), &work.path().join("evaluate"));
    assert!(ok, "evaluate: {stderr}");
    let result: serde_json::Value = serde_json::from_str(result.trim()).unwrap();
    assert_eq!(result["ok"], true, "{result}");
    assert_eq!(result["model_digest"], digest.as_str(), "{result}");
    assert!(result["test_loss"].as_f64().unwrap().is_finite(), "{result}");
    eprintln!("round trip through s3: {split} sealed {digest} test_loss {}", result["test_loss"]);
}

#[test]
#[ignore = "starts the S3 server; run by scripts/test"]
fn the_seal_refuses_a_hostile_trainer_archive_with_the_reason() {
    let server = S3Server::start();
    let config = s3_config(&server);
    let task = task(&config);
    let work = tempfile::tempdir().unwrap();
    let cases: [(&str, Hostile, &str); 3] = [
        (
            "symlink",
            |dir| hostile(dir, |d| std::os::unix::fs::symlink("/etc/passwd", d.join("model/config.json")).unwrap()),
            "symbolic link",
        ),
        (
            "fifo",
            |dir| {
                hostile(dir, |d| {
                    nix_mkfifo(&d.join("model/pipe"));
                })
            },
            "FIFO",
        ),
        (
            "oversize",
            |dir| hostile(dir, |d| std::fs::write(d.join("model/big.bin"), vec![0u8; 4096]).unwrap()),
            "cap per file",
        ),
    ];
    let mut config = config;
    config.seal.max_file_bytes = 1024;
    for (name, build, reason) in cases {
        let archive = build(&work.path().join(name));
        server.put(&format!("prod/tournaments/{NS}/{TASK}/models/{name}.tar"), &archive);
        let job = seal_job(&task, &config, name, &access(&server, &[]));
        let (ok, report, stderr) = run(&job, &operator_image(), &work.path().join(format!("seal-{name}")));
        assert!(ok, "a refusal is a verdict, not a crash: {stderr}");
        let report: gradients::seal::SealReport = serde_json::from_str(report.trim()).unwrap();
        assert!(!report.ok, "{name}: {report:?}");
        assert!(report.failure.as_deref().unwrap_or_default().contains(reason), "{name}: {report:?}");
    }
    // And a trainer that stored nothing.
    let job = seal_job(&task, &config, "absent", &access(&server, &[]));
    let (_, report, _) = run(&job, &operator_image(), &work.path().join("seal-absent"));
    assert!(report.contains("stored no output archive"), "{report}");
}

/// Builds a hostile trainer archive below a directory.
type Hostile = fn(&Path) -> std::path::PathBuf;

/// A trainer output `model/` with a hostile entry, packed with the system's tar (links and
/// FIFOs as they are: a hostile trainer writes whatever archive it likes).
fn hostile(dir: &Path, add: impl Fn(&Path)) -> std::path::PathBuf {
    std::fs::create_dir_all(dir.join("model")).unwrap();
    std::fs::write(dir.join("model/weights.safetensors"), b"weights").unwrap();
    add(dir);
    let archive = dir.with_extension("tar");
    let status = Command::new("tar").arg("-cf").arg(&archive).arg("-C").arg(dir).arg(".").status().unwrap();
    assert!(status.success());
    archive
}

fn nix_mkfifo(path: &Path) {
    let status = Command::new("mkfifo").arg(path).status().unwrap();
    assert!(status.success());
}
