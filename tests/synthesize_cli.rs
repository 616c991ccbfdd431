//! `gradients synthesize`: the Task of one draw of a TaskSource file, which `gradients run`
//! accepts, and clear errors for a source that cannot draw.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use gradients::api::Task;
use gradients::api::task::Origin;
use gradients::local::{manifest, validate};

/// The checkout under test, as cargo says when it runs the test (see `tests/common/mod.rs`).
fn repo() -> PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")))
}

fn synthesize(source: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_gradients")).arg("synthesize").arg(source).args(args).output().unwrap()
}

/// The example source in a scratch copy of `examples/`, its base models as empty directories
/// at absolute paths (the draw copies locations as written; nothing here reads the weights).
fn example_workspace() -> (tempfile::TempDir, PathBuf) {
    let ws = tempfile::tempdir().unwrap();
    let models = ws.path().join("models");
    for kind in ["instruct", "dpo", "grpo", "image"] {
        std::fs::create_dir_all(models.join(kind)).unwrap();
        std::os::unix::fs::symlink(repo().join("examples").join(kind), ws.path().join(kind)).unwrap();
    }
    std::fs::create_dir(ws.path().join("synthetic")).unwrap();
    let text = std::fs::read_to_string(repo().join("examples/synthetic/tasksource.yaml")).unwrap();
    let source = ws.path().join("synthetic/tasksource.yaml");
    std::fs::write(&source, text.replace("${GRADIENTS_BASE_MODELS}", models.to_str().unwrap())).unwrap();
    (ws, source)
}

#[test]
fn every_drawn_task_is_a_task_file_gradients_run_accepts() {
    let (_ws, source) = example_workspace();
    let mut types = BTreeSet::new();
    for index in 0..16 {
        let out = synthesize(&source, &["--index", &index.to_string()]);
        assert!(out.status.success(), "draw {index}: {}", String::from_utf8_lossy(&out.stderr));
        let task_file = source.with_file_name(format!("task-{index}.yaml"));
        std::fs::write(&task_file, &out.stdout).unwrap();
        // What `gradients run` checks before it starts anything: files, columns, miners, rewards.
        let valid = validate::validate(manifest::load(&task_file).unwrap())
            .unwrap_or_else(|e| panic!("draw {index} is not runnable: {e}"));
        assert_eq!(valid.file.name, format!("examples-{index}"));
        assert_eq!(valid.file.spec.origin, Origin::Synthetic);
        assert_eq!(valid.file.spec.miners.len(), 2, "the template's miners");
        types.insert(valid.file.spec.task_type);
    }
    assert_eq!(types.len(), 4, "16 draws of the default mix cover the four types: {types:?}");
}

#[test]
fn the_same_seed_and_index_print_the_same_task_and_the_seed_option_overrides_the_files() {
    let (_ws, source) = example_workspace();
    let task = |args: &[&str]| -> Task { serde_norway::from_slice(&synthesize(&source, args).stdout).unwrap() };
    let same = |a: Task, b: Task| a.spec == b.spec && a.metadata == b.metadata;
    assert!(same(task(&["--index", "3"]), task(&["--index", "3", "--seed", "2025"])), "the file's seed is 2025");
    let drawn: Vec<_> = (0..8).map(|i| task(&["--index", &i.to_string(), "--seed", "1"]).spec).collect();
    let default: Vec<_> = (0..8).map(|i| task(&["--index", &i.to_string()]).spec).collect();
    assert_ne!(drawn, default);
    let labels = task(&["--index", "5"]).metadata.labels.unwrap();
    assert_eq!(labels["gradients.io/task-source"], "examples");
    assert_eq!(labels["gradients.io/draw-index"], "5");
}

#[test]
fn a_source_that_cannot_draw_names_the_file_and_the_field() {
    let (ws, source) = example_workspace();
    let text = std::fs::read_to_string(&source).unwrap();
    let cases = [
        (
            text.replacen("        rewardFunctions:", "        unused:", 1),
            "bad.yaml: spec.catalog.datasets[2].unused: ",
            "unknown field `unused`",
        ),
        (
            text.replace("paramsB: 0.0001, taskTypes: [Dpo]", "paramsB: 0, taskTypes: [Dpo]"),
            "spec.catalog.models[1].paramsB",
            "greater than 0",
        ),
        (text.replace("rows: 200", "rows: 1"), "spec.catalog.datasets[1].rows", "at least 2 rows"),
        (
            text.replace("{instruction: question, output: answer}", "{question: q}"),
            "spec.catalog.datasets[0].columns",
            "not a column role",
        ),
        (text.replace("kind: TaskSource", "kind: Task"), "kind", "expected TaskSource"),
    ];
    for (bad, field, message) in cases {
        let file = ws.path().join("synthetic/bad.yaml");
        std::fs::write(&file, &bad).unwrap();
        let out = synthesize(&file, &[]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{field}: {stderr}");
        assert!(out.stdout.is_empty());
        assert!(
            stderr.contains("bad.yaml: ") && stderr.contains(field) && stderr.contains(message),
            "{field}: {stderr}"
        );
    }
}
