//! End-to-end runs of `gradients run` with the real trainer and evaluator (slow: minutes on
//! two cores). Ignored by a plain `cargo test`; `scripts/test` runs them with the Python
//! environment, the examples' base models and Chromium (each run's report page is opened in it):
//!
//! ```sh
//! GRADIENTS_PYTHON=$(trainer-image/setup-env | tail -1) GRADIENTS_BASE_MODELS=$(scripts/prepare-examples | tail -1) \
//!   GRADIENTS_CHROMIUM=$(scripts/ensure-chromium | tail -1) cargo test --test run_e2e -- --ignored --test-threads 1
//! ```

mod common;
mod s3;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

fn require_env() {
    for var in ["GRADIENTS_PYTHON", "GRADIENTS_BASE_MODELS"] {
        assert!(
            std::env::var_os(var).is_some(),
            "{var} is not set: run these tests through scripts/test (it sets up the Python environment and base models)"
        );
    }
}

fn run_dir(report: &serde_json::Value) -> PathBuf {
    PathBuf::from(report["run_dir"].as_str().unwrap())
}

fn weighted(report: &serde_json::Value, entrant: &str) -> f64 {
    row(report, entrant)["weighted_loss"].as_f64().unwrap_or_else(|| panic!("{entrant} has no loss: {report:#}"))
}

/// An instruct task on the example data, with our own miners.
fn instruct_task(dir: &Path, miners: &str, extra: &str) -> PathBuf {
    let data = repo().join("examples/instruct/data.jsonl");
    let text = format!(
        "apiVersion: gradients.io/v1alpha1\nkind: Task\nmetadata:\n  name: e2e\nspec:\n  taskType: InstructText\n  \
         baseModel: {{uri: \"${{GRADIENTS_BASE_MODELS}}/instruct\", paramsB: 0.0001}}\n  dataset:\n    uri: {}\n    \
         columns: {{instruction: question, output: answer}}\n  seed: 42\n{extra}  miners:\n{miners}",
        data.display()
    );
    write(dir, "task.yaml", &text)
}

fn example(kind: &str) -> serde_json::Value {
    require_env();
    let dir = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let out = run(&repo().join(format!("examples/{kind}/task.yaml")), &dir.path().join("data"), &[]);
    let report = report(&out);
    eprintln!("{kind} example: {:.0} s", started.elapsed().as_secs_f64());
    assert!(out.status.success(), "{kind}: {report:#}\n{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(report["phase"], "Succeeded");
    // Every miner has valid losses. Two miners whose losses are exactly equal (GRPO rewards
    // can saturate at this scale) are duplicates by the specification: the later one scores -1.
    let miners: Vec<&serde_json::Value> =
        report["rows"].as_array().unwrap().iter().filter(|r| r["role"] == "miner").collect();
    for r in &miners {
        assert!(r["status"] == "ranked" || r["status"] == "duplicate", "{kind}: {r:#}");
    }
    assert!(miners.iter().any(|r| r["rank"] == 1), "{kind}: a winner");
    assert_weights_reproduce(&run_dir(&report));
    assert_report_page(&report);
    report
}

/// The run's report.html, opened in headless Chromium: a drawn loss curve for every entrant
/// that trained, a leaderboard row for every entrant.
fn assert_report_page(report: &serde_json::Value) {
    let rows = report["rows"].as_array().unwrap();
    let name = |r: &serde_json::Value| r["entrant"].as_str().unwrap().to_string();
    let trained: Vec<String> =
        rows.iter().filter(|r| r["role"] != "baseModel" && r["train_loss"].is_number()).map(name).collect();
    let all: Vec<String> = rows.iter().map(name).collect();
    browser::assert_report_renders(&run_dir(report).join("report.html"), &trained, &all);
}

#[test]
#[ignore = "slow: needs the Python trainer (scripts/test runs it)"]
fn dpo_example_runs_end_to_end_and_beats_the_base_model() {
    let report = example("dpo");
    let winner = report["winner"].as_str().unwrap();
    assert!(weighted(&report, winner) < weighted(&report, "base-model"), "{report:#}");
}

#[test]
#[ignore = "slow: needs the Python trainer (scripts/test runs it)"]
fn grpo_example_runs_end_to_end() {
    example("grpo");
}

#[test]
#[ignore = "slow: needs the Python trainer (scripts/test runs it)"]
fn image_example_runs_end_to_end() {
    example("image");
}

#[test]
#[ignore = "slow: needs the Python trainer (scripts/test runs it)"]
fn failing_miners_are_marked_failed_and_the_tournament_goes_on() {
    require_env();
    let dir = tempfile::tempdir().unwrap();
    // crash: a strategy the reference trainer does not know (it exits 2 naming it);
    // hang: a miner command that never ends; garbage: random bytes as its "weights".
    let miners = "    - {name: good, strategy: lora-fast}\n    \
                  - {name: crash, strategy: no-such-strategy}\n    \
                  - {name: hang, strategy: x, command: [sh, -c, 'sleep 300']}\n    \
                  - {name: garbage, strategy: x, command: [sh, -c, 'mkdir -p \"$GRADIENTS_OUTPUT/model\" && \
                  head -c 4096 /dev/urandom > \"$GRADIENTS_OUTPUT/model/model.safetensors\" && echo {} > \"$GRADIENTS_OUTPUT/model/config.json\"']}\n";
    // 36 s and a 15 s grace: the good miner's trainer must import torch, train and save on a
    // loaded 2-core CI machine (at 14 s and 5 s it was once still running past its grace).
    let task = instruct_task(dir.path(), miners, "  hours: 0.01\n  baseline: false\n  evaluateBase: false\n");
    let started = Instant::now();
    let out = run(&task, &dir.path().join("data"), &["--grace-seconds", "15", "--trust-local-commands"]);
    let report = report(&out);
    eprintln!("failing miners: {:.0} s", started.elapsed().as_secs_f64());
    assert!(out.status.success(), "{report:#}");
    assert_eq!(report["winner"], "good");
    let reason = |m: &str| row(&report, m)["reason"].as_str().unwrap_or_default().to_string();
    assert!(reason("crash").starts_with("trainer exited with code 2"), "{}", reason("crash"));
    assert!(reason("hang").contains("after its deadline"), "{}", reason("hang"));
    assert!(!reason("garbage").is_empty() && row(&report, "garbage")["status"] == "failed", "{report:#}");
    for m in ["crash", "hang", "garbage"] {
        assert_eq!(row(&report, m)["score"], -1.0, "{m} is penalised as the specification says");
    }
    let state = std::fs::read_to_string(run_dir(&report).join("state.json")).unwrap();
    assert!(state.contains("no-such-strategy"), "the crash's log tail names the strategy");
    assert_weights_reproduce(&run_dir(&report));
}

/// Result files of finished workloads, by name.
fn finished(run: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<(String, Vec<u8>)> = std::fs::read_dir(run.join("work"))
        .map(|d| d.flatten().collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .filter_map(|e| {
            let bytes = std::fs::read(e.path().join("result.json")).ok()?;
            Some((e.file_name().to_string_lossy().into_owned(), bytes))
        })
        .collect();
    out.sort();
    out
}

#[test]
#[ignore = "slow: needs the Python trainer (scripts/test runs it)"]
fn a_run_killed_with_sigkill_resumes_without_redoing_work_and_gives_the_same_result() {
    require_env();
    let dir = tempfile::tempdir().unwrap();
    let miners = "    - {name: alice, strategy: lora-fast}\n    - {name: carol, strategy: full-ft}\n    - {name: frank, strategy: rslora-big-batch}\n";
    // Generous hours: the trainers stop after their planned epochs, not at the deadline.
    let task = instruct_task(dir.path(), miners, "  hours: 0.02\n  evaluateBase: false\n");

    let reference = report(&run(&task, &dir.path().join("uninterrupted"), &["--parallel", "2"]));
    assert_eq!(reference["phase"], "Succeeded", "{reference:#}");

    let data = dir.path().join("interrupted");
    let mut child = Command::new(bin())
        .arg("run")
        .arg(&task)
        .args(["--quiet", "--parallel", "2", "--data-dir"])
        .arg(&data)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let run_path = data.join("runs/e2e");
    // Kill once at least two workloads have finished (the split and a training) and others run.
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let done = finished(&run_path);
        if done.iter().any(|(name, _)| name.starts_with("train-")) {
            break;
        }
        assert!(Instant::now() < deadline, "no training finished in time");
        assert!(child.try_wait().unwrap().is_none(), "the run ended before it could be interrupted");
        std::thread::sleep(Duration::from_millis(100));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let before = finished(&run_path);
    std::thread::sleep(Duration::from_millis(500));
    for entry in std::fs::read_dir(run_path.join("work")).unwrap().flatten() {
        if let Ok(pid) = std::fs::read_to_string(entry.path().join("pid")) {
            let pid = pid.split_whitespace().next().unwrap().to_string();
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            assert!(stat.is_empty() || stat.contains(") Z "), "a workload outlived the killed run: {stat}");
        }
    }

    let resumed = run(&task, &data, &["--parallel", "2"]);
    let resumed = report(&resumed);
    assert_eq!(resumed["phase"], "Succeeded", "{resumed:#}");
    assert_eq!(resumed["run_dir"].as_str().unwrap(), run_path.to_string_lossy(), "resumed the same run");
    let after = finished(&run_path);
    for (name, bytes) in &before {
        let kept = after.iter().find(|(n, _)| n == name).map(|(_, b)| b);
        assert_eq!(kept, Some(bytes), "{name} was redone or lost");
        let retry = name.trim_end_matches("-1").to_string() + "-2";
        assert!(after.iter().all(|(n, _)| n != &retry), "{name} finished before the kill but ran again");
    }
    // The same tournament: a training that ends after its planned epochs is deterministic for
    // the seed, so a redone one gives the uninterrupted run's model. (One cut short by its
    // deadline depends on how fast the machine was, in any run: it is not compared.)
    let epoch_bound = |r: &serde_json::Value, e: &str| row(r, e)["stopped_by_deadline"] == false;
    let mut compared = 0;
    for entrant in ["alice", "carol", "frank", "baseline"] {
        if epoch_bound(&reference, entrant) && epoch_bound(&resumed, entrant) {
            let (a, b) = (weighted(&reference, entrant), weighted(&resumed, entrant));
            assert!((a - b).abs() <= 1e-6 * a.abs().max(1.0), "{entrant}: {a} uninterrupted, {b} resumed");
            compared += 1;
        }
    }
    assert!(compared >= 2, "too few trainings ended by their epochs to compare: {reference:#}");
    assert_weights_reproduce(&run_path);
    let store: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(data.join("leaderboard.json")).unwrap()).unwrap();
    assert_eq!(store["tasks"].as_array().unwrap().len(), 1, "recorded once");
}

#[test]
#[ignore = "slow: needs the Python trainer (scripts/test runs it)"]
fn a_generator_writes_the_synthetic_set_the_evaluator_scores() {
    require_env();
    let dir = tempfile::tempdir().unwrap();
    let data = repo().join("examples/dpo/data.jsonl");
    // The tiny DPO base model as the generator: gibberish text, the real path.
    let task = write(
        dir.path(),
        "task.yaml",
        &format!(
            "apiVersion: gradients.io/v1alpha1\nkind: Task\nmetadata:\n  name: generated\nspec:\n  taskType: Dpo\n  \
             baseModel: {{uri: \"${{GRADIENTS_BASE_MODELS}}/dpo\", paramsB: 0.0001}}\n  dataset:\n    uri: {}\n    \
             columns: {{prompt: prompt, chosen: chosen, rejected: rejected}}\n    \
             generator: {{modelUri: \"${{GRADIENTS_BASE_MODELS}}/dpo\", rows: 6, temperature: 0.9, maxNewTokens: 12}}\n  \
             hours: 0.01\n  seed: 42\n  baseline: false\n  evaluateBase: false\n  miners:\n    - {{name: alice, strategy: lora-fast}}\n",
            data.display()
        ),
    );
    let out = run(&task, &dir.path().join("data"), &[]);
    let report = report(&out);
    assert!(out.status.success(), "{report:#}\n{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(report["phase"], "Succeeded", "{report:#}");
    let run = run_dir(&report);

    let generated = run.join("data/heldout/generated/synthetic.jsonl");
    let rows: Vec<serde_json::Value> = std::fs::read_to_string(&generated)
        .unwrap_or_else(|e| panic!("{}: {e}", generated.display()))
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(!rows.is_empty() && rows.len() <= 6, "{} rows", rows.len());
    let prompts = |file: &str| -> Vec<String> {
        std::fs::read_to_string(run.join(file))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["prompt"].as_str().unwrap().to_string())
            .collect()
    };
    let (train, test) = (prompts("data/training/train.jsonl"), prompts("data/heldout/test.jsonl"));
    for row in &rows {
        // The dataset's own schema, and nothing a trainer or the test split already has.
        for key in ["prompt", "chosen", "rejected"] {
            assert!(row[key].as_str().is_some_and(|s| !s.trim().is_empty()), "{key} in {row}");
        }
        assert_ne!(row["chosen"], row["rejected"], "{row}");
        let prompt = row["prompt"].as_str().unwrap().to_string();
        assert!(!train.contains(&prompt) && !test.contains(&prompt), "{prompt:?} is not new");
    }
    let record: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("data/heldout/generated/synthetic.json")).unwrap())
            .unwrap();
    assert_eq!(record["written"].as_u64(), Some(rows.len() as u64), "{record}");
    assert_eq!(record["temperature"].as_f64(), Some(0.9));
    // The split records the generated count, and the evaluator was given exactly that file.
    let state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("state.json")).unwrap()).unwrap();
    assert_eq!(state["dataset"]["synthetic"].as_u64(), Some(rows.len() as u64), "{state:#}");
    let command = std::fs::read_to_string(run.join("work/evaluate-alice-1/command.json")).unwrap();
    assert!(command.contains(&generated.display().to_string()), "{command}");
    assert!(row(&report, "alice")["synth_loss"].as_f64().is_some_and(f64::is_finite), "{report:#}");
}

#[test]
#[ignore = "slow: needs the Python trainer (scripts/test runs it)"]
fn successive_halving_continues_the_best_half_from_their_checkpoints() {
    require_env();
    let dir = tempfile::tempdir().unwrap();
    let miners = "    - {name: alice, strategy: lora-fast}\n    - {name: bob, strategy: full-careful}\n    \
                  - {name: carol, strategy: lora-wide}\n    - {name: dave, strategy: lora-attn-small}\n";
    let extra = "  hours: 0.012\n  baseline: false\n  evaluateBase: false\n  halving: {eta: 2, rungs: 2}\n";
    let task = instruct_task(dir.path(), miners, extra);
    let started = Instant::now();
    let out = run(&task, &dir.path().join("data"), &["--grace-seconds", "30"]);
    let report = report(&out);
    eprintln!("successive halving: {:.0} s", started.elapsed().as_secs_f64());
    assert!(out.status.success(), "{report:#}\n{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(report["phase"], "Succeeded", "{report:#}");
    let run = run_dir(&report);
    let state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("state.json")).unwrap()).unwrap();
    let miners: Vec<&serde_json::Value> = state["entrants"].as_array().unwrap().iter().collect();
    let survivors: Vec<&str> = miners.iter().filter(|e| e["rung"] == 1).map(|e| e["name"].as_str().unwrap()).collect();
    let cut: Vec<&str> =
        miners.iter().filter(|e| e["eliminatedAfter"] == 0).map(|e| e["name"].as_str().unwrap()).collect();
    assert_eq!((survivors.len(), cut.len()), (2, 2), "{state:#}");
    for name in &survivors {
        // The second slice (two thirds of the allotment) continued from the first one's output.
        let args = |id: &str| -> Vec<String> {
            let text = std::fs::read_to_string(run.join(format!("work/{id}/command.json"))).unwrap();
            let command: serde_json::Value = serde_json::from_str(&text).unwrap();
            command["args"].as_array().unwrap().iter().map(|a| a.as_str().unwrap().to_string()).collect()
        };
        let value = |args: &[String], flag: &str| args.iter().position(|a| a == flag).map(|i| args[i + 1].clone());
        let (first, second) = (args(&format!("train-{name}-1")), args(&format!("train-{name}-1-r1")));
        let first_out = run.join(format!("work/train-{name}-1/out"));
        assert_eq!(value(&second, "--resume-from"), Some(first_out.display().to_string()), "{second:?}");
        assert_eq!(value(&first, "--resume-from"), None);
        let hours = |args: &[String]| value(args, "--hours").unwrap().parse::<f64>().unwrap();
        assert!((hours(&first) - 0.004).abs() < 1e-9 && (hours(&second) - 0.008).abs() < 1e-9, "{first:?} {second:?}");
    }
    for name in &cut {
        assert!(!run.join(format!("work/train-{name}-1-r1")).exists(), "{name} was cut");
        assert!(row(&report, name)["reason"].as_str().unwrap_or_default().contains("cut after rung 1"), "{report:#}");
    }
    // Ranks: both survivors above both eliminated miners, whatever the losses.
    let rank = |m: &str| row(&report, m)["rank"].as_u64().unwrap_or(u64::MAX);
    let worst_survivor = survivors.iter().map(|m| rank(m)).max().unwrap();
    let best_cut = cut.iter().map(|m| rank(m)).min().unwrap();
    assert!(worst_survivor < best_cut, "{report:#}");
    assert!(survivors.contains(&report["winner"].as_str().unwrap()));
    assert_weights_reproduce(&run);
}
