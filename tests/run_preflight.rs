//! `gradients run` checks the Python environment before any workload starts: a broken one
//! stops the run with exit 2 and its cause, and nothing is written to the data directory (no
//! run directory, no leaderboard record). Uses the machine's own `python3`, which has no
//! trainer package (the cached venv's tests are in `trainer-image/tests/test_preflight.py`).

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::*;

fn run_with(task: &Path, data: &Path, python: &str, pythonpath: Option<&Path>) -> Output {
    let mut command = Command::new(bin());
    command.arg("run").arg(task).args(["--output", "json", "--quiet", "--python", python, "--data-dir"]).arg(data);
    command.env_remove("PYTHONPATH").env_remove("GRADIENTS_PYTHON");
    if let Some(path) = pythonpath {
        command.env("PYTHONPATH", path);
    }
    command.output().unwrap()
}

fn assert_refused(out: &Output, data: &Path, expected: &[&str]) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(out.stdout.is_empty(), "no report: {}", String::from_utf8_lossy(&out.stdout));
    for text in expected {
        assert!(stderr.contains(text), "expected {text:?} in:\n{stderr}");
    }
    assert!(!data.join("leaderboard.json").exists(), "nothing is recorded");
    assert!(!data.join("runs").exists(), "no run directory is made");
}

fn task(ws: &Path) -> std::path::PathBuf {
    write(ws, "task.yaml", &task_yaml("    - {name: a, strategy: lora-fast}\n", ""))
}

#[test]
fn a_python_without_the_trainer_package_stops_the_run_with_its_own_words() {
    let ws = workspace(20);
    let data = ws.path().join("data-dir");
    let out = run_with(&task(ws.path()), &data, "python3", None);
    assert_refused(&out, &data, &["cannot run the trainer package", "No module named 'gradients_trainer'"]);
}

#[test]
fn a_python_that_does_not_exist_is_named() {
    let ws = workspace(20);
    let data = ws.path().join("data-dir");
    let out = run_with(&task(ws.path()), &data, "./no-such-python", None);
    assert_refused(&out, &data, &["cannot start the Python interpreter", "no-such-python", "setup-env"]);
}

#[test]
fn an_older_trainer_package_is_refused() {
    let ws = workspace(20);
    let package = ws.path().join("old/gradients_trainer");
    std::fs::create_dir_all(&package).unwrap();
    std::fs::write(package.join("__init__.py"), "__version__ = \"0.0.1\"\n").unwrap();
    let data = ws.path().join("data-dir");
    let out = run_with(&task(ws.path()), &data, "python3", Some(&ws.path().join("old")));
    assert_refused(&out, &data, &["older than this gradients", "trainer-image/setup-env"]);
}

#[test]
fn a_trainer_package_of_another_contract_version_is_refused() {
    // This checkout's package with only its version changed.
    let ws = workspace(20);
    let source = repo().join("trainer-image/src/gradients_trainer");
    let package = ws.path().join("other/gradients_trainer");
    std::fs::create_dir_all(&package).unwrap();
    for file in ["contract.py", "preflight.py"] {
        std::fs::copy(source.join(file), package.join(file)).unwrap();
    }
    let init = std::fs::read_to_string(source.join("__init__.py")).unwrap();
    assert!(init.contains("CONTRACT_VERSION = 1"), "{init}");
    std::fs::write(package.join("__init__.py"), init.replace("CONTRACT_VERSION = 1", "CONTRACT_VERSION = 99")).unwrap();
    let data = ws.path().join("data-dir");
    let out = run_with(&task(ws.path()), &data, "python3", Some(&ws.path().join("other")));
    assert_refused(&out, &data, &["contract version 99", "needs 1"]);
}
