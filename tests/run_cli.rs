//! `gradients run` without the Python trainer: invalid task files are refused before any
//! process starts, and miners that crash or hang fail the task with their reasons while the
//! scores are still recorded. (The end-to-end runs with the real trainer are in run_e2e.rs.)

mod common;

use std::time::Instant;

use common::*;

#[test]
fn invalid_task_files_name_the_file_and_the_field_and_start_nothing() {
    let ws = workspace(20);
    let miner = "    - {name: a, strategy: lora-fast}\n";
    let cases = [
        (task_yaml(miner, "  colour: red\n"), "spec.colour", "unknown field `colour`"),
        (task_yaml(miner, "").replace("hours: 0.001", "hours: soon"), "spec.hours", "invalid type"),
        (task_yaml(miner, "").replace("uri: data.jsonl", "uri: missing.jsonl"), "spec.dataset.uri", "missing.jsonl"),
        (
            task_yaml(miner, "").replace("output: a", "output: answer"),
            "spec.dataset.columns.output",
            "\"answer\" is not in the dataset",
        ),
        (task_yaml("    []\n", "").replace("  miners:\n    []", "  miners: []"), "spec.miners", "at least one miner"),
        (task_yaml(miner, "  minersPerTask: 0\n"), "spec.minersPerTask", "at least 1"),
        (task_yaml("    - {name: baseline, strategy: x}\n", ""), "spec.miners", "reserved"),
        (task_yaml(miner, "  halving: {eta: 4, rungs: 3}\n"), "spec.halving.eta", "must be 2 or 3, found 4"),
        (task_yaml(miner, "  halving: {eta: 2, rungs: 1}\n"), "spec.halving.rungs", "between 2 and 5, found 1"),
        (task_yaml(miner, "").replace("uri: base,", "uri: nowhere,"), "spec.baseModel.uri", "no model directory"),
        (
            task_yaml(miner, "").replace("output: a}", "output: a}\n    generator: {modelUri: nowhere}"),
            "spec.dataset.generator.modelUri",
            "no model directory",
        ),
        (
            task_yaml(miner, "")
                .replace("output: a}", "output: a}\n    generator: {modelUri: base, weakerModelUri: base}"),
            "spec.dataset.generator.weakerModelUri",
            "only Dpo rows",
        ),
        (
            task_yaml(miner, "")
                .replace("output: a}", "output: a}\n    syntheticUri: data.jsonl\n    generator: {modelUri: base}"),
            "spec.dataset.generator",
            "set one",
        ),
    ];
    for (text, field, message) in cases {
        let task = write(ws.path(), "task.yaml", &text);
        let data = ws.path().join("data-dir");
        let out = run(&task, &data, &["--python", "/bin/false"]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{field}: {stderr}");
        assert!(out.stdout.is_empty(), "nothing on stdout");
        assert!(stderr.contains(&format!("task.yaml: {field}: ")), "expected field {field}: {stderr}");
        assert!(stderr.contains(message), "expected {message:?}: {stderr}");
        assert!(!data.exists(), "no run directory before validation passes");
    }
}

#[test]
fn when_every_miner_crashes_or_hangs_the_task_fails_with_reasons_and_scores_are_recorded() {
    let ws = workspace(20);
    let miners = "    - {name: crash, strategy: x, command: [sh, -c, 'echo boom: out of luck >&2; exit 3']}\n    \
                  - {name: hang, strategy: x, command: [sh, -c, 'sleep 300']}\n    \
                  - {name: lazy, strategy: x, command: [sh, -c, 'exit 0']}\n";
    let task = write(ws.path(), "task.yaml", &task_yaml(miners, "  baseline: false\n  evaluateBase: false\n"));
    let data = ws.path().join("data-dir");
    let started = Instant::now();
    // hours 0.001 = 3.6 s; the hanging miner is killed 2 s after its deadline.
    let python = fake_python(ws.path());
    let out =
        run(&task, &data, &["--python", &python, "--grace-seconds", "2", "--parallel", "3", "--trust-local-commands"]);
    assert!(started.elapsed().as_secs() < 30, "the hang was not cut short");
    assert_eq!(out.status.code(), Some(1), "a failed task exits 1");
    let report = report(&out);
    assert_eq!(report["phase"], "Failed");
    let message = report["message"].as_str().unwrap();
    assert!(message.contains("every miner failed"), "{message}");
    let reason = |m: &str| row(&report, m)["reason"].as_str().unwrap_or_default().to_string();
    assert_eq!(reason("crash"), "trainer exited with code 3");
    assert!(reason("hang").contains("after its deadline"), "{}", reason("hang"));
    assert!(reason("lazy").contains("wrote no model"), "{}", reason("lazy"));

    let run_dir = std::path::PathBuf::from(report["run_dir"].as_str().unwrap());
    let state = std::fs::read_to_string(run_dir.join("state.json")).unwrap();
    assert!(state.contains("boom: out of luck"), "the crash's log tail is kept: {state}");
    let records: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run_dir.join("records.json")).unwrap()).unwrap();
    let subs = records["tasks"][0]["submissions"].as_array().unwrap();
    assert_eq!(subs.len(), 3, "every miner is recorded");
    assert!(subs.iter().all(|s| s.get("test_loss").is_none()));
    assert_weights_reproduce(&run_dir);

    // The store holds the record; a second run of the same file is a new task next to it.
    let store: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(data.join("leaderboard.json")).unwrap()).unwrap();
    assert_eq!(store["tasks"].as_array().unwrap().len(), 1);
}

/// A stand-in for the Python package, for tests of the executor alone: `train` writes a
/// model file, `evaluate` prints a result whose loss is derived from the submission's path.
const FAKE_PYTHON: &str = r#"#!/bin/sh
if [ "$2" = gradients_trainer.preflight ]; then echo '{"contract_version": 1}'; exit 0; fi
cmd="$3"; shift 3
out=""; sub=""
while [ $# -gt 0 ]; do
  case "$1" in --output) out="$2";; --submission) sub="$2";; --train-data) data="$2";; esac
  shift
done
if [ "$cmd" = train ]; then
  [ -f "$data" ] || { echo "error: --train-data: file not found: $data" >&2; exit 2; }
  mkdir -p "$out/model" && echo weights > "$out/model/model.safetensors"
  echo '{"steps": 3, "final_train_loss": 0.5, "stopped_by_deadline": false}' > "$out/training.json"
  echo '{"event":"progress","step":3,"total_steps":3,"loss":0.5}'
  exit 0
fi
n=$(printf '%s' "${sub:-base}" | cksum | cut -c1-4)
echo "{\"ok\": true, \"test_loss\": 1.$n, \"synth_loss\": 1.$n, \"weights_sha256\": \"$n\", \"checks\": []}"
"#;

fn fake_python(dir: &std::path::Path) -> String {
    write_executable(dir, "fake-python", FAKE_PYTHON)
}

/// Written by a child process: a write descriptor held in this process could be inherited by
/// another test thread's fork for a moment, and exec would then fail with "Text file busy".
fn write_executable(dir: &std::path::Path, name: &str, text: &str) -> String {
    use std::io::Write;
    let path = dir.join(name);
    let mut child = std::process::Command::new("sh")
        .args(["-c", "cat > \"$0\" && chmod 755 \"$0\""])
        .arg(&path)
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    assert!(child.wait().unwrap().success());
    path.to_string_lossy().into_owned()
}

#[test]
fn runs_share_the_leaderboard_store_and_a_changed_task_does_not_resume_an_old_run() {
    let ws = workspace(20);
    let python = fake_python(ws.path());
    let miners = "    - {name: a, strategy: s1}\n    - {name: b, strategy: s2}\n";
    let task = write(ws.path(), "task.yaml", &task_yaml(miners, ""));
    let data = ws.path().join("data-dir");

    let first = report(&run(&task, &data, &["--python", &python]));
    let second = report(&run(&task, &data, &["--python", &python]));
    assert_eq!(first["phase"], "Succeeded", "{first:#}");
    assert!(first["run_dir"].as_str().unwrap().ends_with("runs/t"));
    assert!(second["run_dir"].as_str().unwrap().ends_with("runs/t-2"), "a finished run starts the next one");
    let second_dir = std::path::PathBuf::from(second["run_dir"].as_str().unwrap());
    let records: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(second_dir.join("records.json")).unwrap()).unwrap();
    assert_eq!(records["tasks"].as_array().unwrap().len(), 2, "the second run's weights count both runs");
    assert_weights_reproduce(&second_dir);
    assert_eq!(row(&second, "baseline")["status"], "reference");
    assert!(row(&second, "base-model")["score"].is_null(), "references are never scored");

    // The same run directory with a different task is refused, not resumed.
    let changed = write(ws.path(), "task.yaml", &task_yaml(miners, "").replace("seed: 1", "seed: 2"));
    let out = run(&changed, &data, &["--python", &python, "--run-dir", second_dir.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("holds a run of a different task"));
}

#[test]
fn relative_data_dir_and_python_mean_the_same_from_every_workload() {
    let ws = workspace(20);
    fake_python(ws.path());
    write(ws.path(), "task.yaml", &task_yaml("    - {name: a, strategy: s1}\n", ""));
    // Workloads run in their own directories; relative paths are the caller's.
    let out = std::process::Command::new(bin())
        .current_dir(ws.path())
        .args(["run", "task.yaml", "--output", "json", "--quiet", "--data-dir", "data", "--python", "./fake-python"])
        .output()
        .unwrap();
    let report = report(&out);
    assert_eq!(report["phase"], "Succeeded", "{report:#}");
    assert!(row(&report, "a")["test_loss"].as_f64().is_some(), "{report:#}");
    assert!(ws.path().join("data/runs/t/weights.json").exists(), "{report:#}");
}

#[test]
fn inline_commands_are_refused_without_trust_local_commands() {
    let ws = workspace(20);
    let miners = "    - {name: a, strategy: lora-fast}\n    - {name: sneaky, strategy: x, command: [sh, -c, 'true']}\n";
    let task = write(ws.path(), "task.yaml", &task_yaml(miners, ""));
    let data = ws.path().join("data-dir");
    let out = run(&task, &data, &["--python", "/bin/false"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(out.stdout.is_empty(), "nothing on stdout");
    assert!(stderr.contains("task.yaml: spec.miners[1].command: miner \"sneaky\""), "{stderr}");
    assert!(stderr.contains("--trust-local-commands"), "{stderr}");
    assert!(!data.exists(), "nothing ran");
}

/// An inline command that trains nothing, starts a detached daemon (double fork + setsid:
/// out of its process group and away from its parent) and exits. The daemon then rewrites
/// every workload's stdout.log with a perfect result for 15 s, to steal the weights.
const ATTACKER: &str = r#"
mkdir -p "$GRADIENTS_OUTPUT/model" && echo w > "$GRADIENTS_OUTPUT/model/model.safetensors"
( setsid sh -c '
    touch "$0/daemon-started"
    end=$(( $(date +%s) + 15 ))
    while [ "$(date +%s)" -lt "$end" ]; do
      for f in "$1"/*/stdout.log; do
        echo "{\"ok\": true, \"test_loss\": 0.0001, \"synth_loss\": 0.0001, \"weights_sha256\": \"f0\", \"checks\": []}" > "$f"
      done
      touch "$0/daemon-alive"
      sleep 0.05
    done' "$MARKS" "$GRADIENTS_OUTPUT/../.." & )
exit 0
"#;

#[test]
fn a_trusted_command_cannot_leave_a_daemon_behind_to_forge_results() {
    let ws = workspace(20);
    let python = write_executable(ws.path(), "fake-python", &FAKE_PYTHON.replace("n=$(", "sleep 1\nn=$("));
    let marks = ws.path().join("marks");
    std::fs::create_dir_all(&marks).unwrap();
    let script = ATTACKER.replace("$MARKS", &marks.display().to_string());
    let miners = format!(
        "    - {{name: honest, strategy: s1}}\n    - {{name: mallory, strategy: x, command: [sh, -c, {}]}}\n",
        serde_json::to_string(&script).unwrap()
    );
    let task = write(ws.path(), "task.yaml", &task_yaml(&miners, ""));
    let out =
        run(&task, &ws.path().join("data-dir"), &["--python", &python, "--parallel", "2", "--trust-local-commands"]);
    let report = report(&out);
    assert!(marks.join("daemon-started").exists(), "the attack did not run: {report:#}");
    // The stand-in evaluator's losses are all 1.xxxx; the forged one is 0.0001.
    for r in report["rows"].as_array().unwrap() {
        let loss = r["test_loss"].as_f64();
        assert!(loss.is_none_or(|l| l >= 1.0), "a forged result was accepted: {report:#}");
    }
    assert!(row(&report, "mallory")["test_loss"].as_f64().is_some(), "{report:#}");
    // Nothing of the attacker is alive after its training: the daemon's heartbeat has stopped.
    let beat = || std::fs::metadata(marks.join("daemon-alive")).and_then(|m| m.modified()).ok();
    let before = beat();
    std::thread::sleep(std::time::Duration::from_millis(600));
    assert_eq!(beat(), before, "the daemon outlived the run");
}

/// On a machine with GPUs (two recorded H100s standing in for NVML), parallel workloads never
/// share a GPU: each training and evaluation starts with its own `CUDA_VISIBLE_DEVICES`, a
/// third waits for a free one, and the report says what each used.
#[test]
fn parallel_workloads_get_their_own_gpus_and_the_report_says_what_each_used() {
    let ws = workspace(20);
    let log = ws.path().join("gpu.log");
    let fake = fake_python(ws.path());
    let wrapper = format!(
        "#!/bin/sh\nif [ \"$3\" = train ] || [ \"$3\" = evaluate ]; then\n  \
         echo \"$3 start $(date +%s%N) ${{CUDA_VISIBLE_DEVICES-unset}}\" >> {log}\n  sleep 1\n  \
         echo \"$3 end $(date +%s%N) ${{CUDA_VISIBLE_DEVICES-unset}}\" >> {log}\nfi\nexec {fake} \"$@\"\n",
        log = log.display()
    );
    let python = write_executable(ws.path(), "gpu-python", &wrapper);
    let miners = "    - {name: a, strategy: s1}\n    - {name: b, strategy: s2}\n    - {name: c, strategy: s3}\n";
    let task = write(ws.path(), "task.yaml", &task_yaml(miners, "  baseline: false\n  evaluateBase: false\n"));
    let fixture = common::repo().join("tests/fixtures/gpu/h100x2.json");
    let fixture = fixture.to_str().unwrap();
    let out =
        run(&task, &ws.path().join("data-dir"), &["--python", &python, "--parallel", "3", "--recorded-nvml", fixture]);
    let report = report(&out);
    assert_eq!(report["phase"], "Succeeded", "{}", String::from_utf8_lossy(&out.stderr));

    // (kind, start, end, devices) per workload, from the log the workloads wrote.
    let text = std::fs::read_to_string(&log).unwrap();
    let mut spans: Vec<(String, u128, u128, String)> = Vec::new();
    for line in text.lines() {
        let [kind, edge, at, devices] = line.split(' ').collect::<Vec<_>>()[..] else { panic!("{line}") };
        let at: u128 = at.parse().unwrap();
        match edge {
            "start" => spans.push((kind.into(), at, u128::MAX, devices.into())),
            _ => {
                let open = spans.iter_mut().find(|s| s.2 == u128::MAX && s.3 == devices).expect(line);
                open.2 = at;
            }
        }
    }
    assert_eq!(spans.len(), 6, "three trainings and three evaluations: {text}");
    for (i, a) in spans.iter().enumerate() {
        assert!(a.3.starts_with("GPU-") && !a.3.contains(','), "one recorded GPU each: {text}");
        for b in &spans[i + 1..] {
            let overlap = a.1 < b.2 && b.1 < a.2;
            assert!(!(overlap && a.3 == b.3), "two workloads shared {} at once: {text}", a.3);
        }
    }
    let most_at_once = spans.iter().map(|a| spans.iter().filter(|b| b.1 <= a.1 && a.1 < b.2).count()).max();
    assert_eq!(most_at_once, Some(2), "two GPUs: at most two GPU workloads at once, though --parallel is 3");

    let used = report["gpus"].as_array().expect("the report lists GPU use");
    assert_eq!(used.len(), 6, "{used:?}");
    for workload in used {
        let devices = workload["devices"].as_array().unwrap();
        assert_eq!(devices.len(), 1);
        assert!(devices[0].as_str().unwrap().starts_with("NVIDIA H100 80GB HBM3 (GPU-"), "{workload}");
        assert!(workload["gpu_seconds"].as_f64().unwrap() >= 1.0, "held for its 1 s sleep at least: {workload}");
        assert!(workload["peak_memory_bytes"].as_u64().is_some(), "{workload}");
    }
}
