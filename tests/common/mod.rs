//! Helpers for the tests of `gradients run`: task files, datasets and running the binary.
#![allow(dead_code)]

pub mod browser;
pub mod double;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_gradients")
}

/// The checkout under test. Cargo sets `CARGO_MANIFEST_DIR` when it runs a test as well as when
/// it compiles one, and only the first is current: clones sharing a target directory share test
/// binaries (cargo does not rebuild one for a checkout at another path), and the compiled-in
/// path is that of whichever clone built it.
pub fn repo() -> PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")))
}

/// A folder with a JSONL dataset (`q`/`a` columns) and an empty "base model" directory.
pub fn workspace(rows: usize) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let lines: String = (0..rows).map(|i| format!("{{\"q\": \"What is {i} + 1?\", \"a\": \"{}\"}}\n", i + 1)).collect();
    std::fs::write(dir.path().join("data.jsonl"), lines).unwrap();
    std::fs::create_dir_all(dir.path().join("base")).unwrap();
    dir
}

/// A task manifest with `miners` (YAML lines) and extra spec lines.
pub fn task_yaml(miners: &str, extra: &str) -> String {
    format!(
        "apiVersion: gradients.io/v1alpha1\nkind: Task\nmetadata:\n  name: t\nspec:\n  taskType: InstructText\n  \
         baseModel: {{uri: base, paramsB: 0.1}}\n  dataset:\n    uri: data.jsonl\n    columns: {{instruction: q, output: a}}\n  \
         hours: 0.001\n  seed: 1\n{extra}  miners:\n{miners}"
    )
}

/// `gradients ARGS` with `stdin` written to its standard input (closed when `None`).
pub fn gradients(args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(bin())
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start gradients");
    if let Some(text) = stdin {
        child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    }
    drop(child.stdin.take());
    child.wait_with_output().unwrap()
}

pub fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// `gradients run TASK --output json --data-dir DIR/data` plus `args`.
pub fn run(task: &Path, data: &Path, args: &[&str]) -> Output {
    Command::new(bin())
        .arg("run")
        .arg(task)
        .args(["--output", "json", "--quiet", "--data-dir"])
        .arg(data)
        .args(args)
        .output()
        .unwrap()
}

pub fn report(output: &Output) -> serde_json::Value {
    serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("no JSON report ({e}); stderr:\n{}", String::from_utf8_lossy(&output.stderr)))
}

/// `gradients score --input RUN/records.json` gives exactly the weights the run wrote.
pub fn assert_weights_reproduce(run_dir: &Path) {
    let out = Command::new(bin()).args(["score", "--input"]).arg(run_dir.join("records.json")).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let scored: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let written: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run_dir.join("weights.json")).unwrap()).unwrap();
    let pick = |v: &serde_json::Value| -> Vec<(String, f64, u64)> {
        v["miners"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| {
                (
                    m["miner"].as_str().unwrap().to_string(),
                    m["weight"].as_f64().unwrap(),
                    m["weight_u16"].as_u64().unwrap(),
                )
            })
            .collect()
    };
    assert_eq!(pick(&scored), pick(&written), "gradients score disagrees with the run's weights");
    let expect = Command::new(bin())
        .args(["score", "--input"])
        .arg(run_dir.join("records.json"))
        .arg("--expect")
        .arg(run_dir.join("weights-u16.json"))
        .output()
        .unwrap();
    assert!(expect.status.success(), "--expect weights-u16.json: {}", String::from_utf8_lossy(&expect.stderr));
}

pub fn row<'a>(report: &'a serde_json::Value, entrant: &str) -> &'a serde_json::Value {
    report["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["entrant"] == entrant)
        .unwrap_or_else(|| panic!("no row {entrant}"))
}
