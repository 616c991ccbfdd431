//! The TaskSource controller on the real control plane (issue 17): synthetic Tasks kept in
//! flight through whole tournaments, a pause while organic Tasks wait, no duplicate after a
//! restart, and the same draw as `gradients synthesize`.

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

use gradients::api::task::{Origin, TaskPhase};
use gradients::api::{Task, TaskSource, TaskSourceStatus};
use kube::api::{DeleteParams, ListParams};
use kube::{Api, ResourceExt};

use crate::kubelet::finish_running_pods;
use crate::support::*;

const SOURCE: &str = "synthetic";
/// What the preparation container reports (`tournament::DatasetFacts`).
pub(crate) const SPLIT_SIZES: &str = r#"{"rows":2400,"train":1960,"test":240,"synthetic":200}"#;
/// A seal's report: the model copied and its tree digest.
pub(crate) const SEALED: &str = r#"{"ok":true,"digest":"sha256:5eed0000000000000000000000000000000000000000000000000000000000aa","files":3,"bytes":4096}"#;

fn source_yaml(ns: &str, in_flight: u32) -> String {
    format!(
        r#"apiVersion: gradients.io/v1alpha1
kind: TaskSource
metadata: {{name: {SOURCE}, namespace: {ns}}}
spec:
  inFlight: {in_flight}
  seed: 17
  catalog:
    models:
    - {{uri: kwok://gradients-e2e/models/qwen2.5-3b, paramsB: 3, taskTypes: [InstructText, Dpo, Grpo]}}
    - {{uri: kwok://gradients-e2e/models/llama-8b, paramsB: 8, taskTypes: [InstructText]}}
    - {{uri: kwok://gradients-e2e/models/sdxl, paramsB: 2.6, taskTypes: [Image]}}
    datasets:
    - {{uri: kwok://gradients-e2e/datasets/alpaca.jsonl, taskType: InstructText, rows: 30000, columns: {{instruction: q, output: a}}}}
    - {{uri: kwok://gradients-e2e/datasets/prefs.jsonl, taskType: Dpo, rows: 2400, columns: {{prompt: q, chosen: good, rejected: bad}}}}
    - uri: kwok://gradients-e2e/datasets/math.jsonl
      taskType: Grpo
      rows: 120000
      rewardFunctions: [{{name: short, weight: 1.0, source: "def short(completions, **kw): return [0.0 for _ in completions]"}}]
    - {{uri: kwok://gradients-e2e/datasets/pets, taskType: Image, rows: 40}}
  taskTemplate:
    minersPerTask: 2
    minerSelector: {{pool: synthetic}}
    baseline: false
    evaluateBase: false
"#
    )
}

async fn apply_miners(cluster: &Cluster, ns: &str) {
    crate::apply_miner_pool(cluster, ns, "synthetic", &["miner-a", "miner-b"]).await;
}

/// This source's Tasks, by name.
async fn synthetic_tasks(cluster: &Cluster, ns: &str) -> BTreeMap<String, Task> {
    let tasks: Api<Task> = Api::namespaced(cluster.client.clone(), ns);
    let selector = ListParams::default().labels(&format!("gradients.io/task-source={SOURCE}"));
    tasks.list(&selector).await.unwrap().items.into_iter().map(|t| (t.name_any(), t)).collect()
}

/// The source's status once it has recorded `created` Tasks: it writes its status after it
/// creates them, so a reader that saw the Tasks may still see the status before them.
async fn recorded_status(sources: &Api<TaskSource>, created: usize) -> TaskSourceStatus {
    wait_until(&format!("the source to record {created} Tasks"), Duration::from_secs(30), || async {
        sources.get(SOURCE).await.ok().and_then(|s| s.status).is_some_and(|s| s.created as usize == created)
    })
    .await;
    sources.get(SOURCE).await.unwrap().status.unwrap()
}

fn in_flight(tasks: &BTreeMap<String, Task>) -> usize {
    tasks.values().filter(|t| !t.phase().is_terminal()).count()
}

/// Prepares the organic Task `task` (already applied), waits for it to reach `phase`, then
/// applies a TaskSource and checks that it pauses with `message` and creates nothing.
async fn expect_pause(cluster: &Cluster, ns: &str, task: &str, phase: TaskPhase, message: &str) {
    let pod = cluster.wait_for_job_pod(ns, &gradients::workloads::prepare::job_name(task, 1)).await;
    cluster.finish_pod(ns, &pod, 0, Some(SPLIT_SIZES));
    let tasks: Api<Task> = Api::namespaced(cluster.client.clone(), ns);
    wait_until(&format!("{task} to be {phase:?}"), Duration::from_secs(60), || async {
        tasks.get(task).await.map(|t| t.phase() == phase).unwrap_or(false)
    })
    .await;
    apply_miners(cluster, ns).await;
    cluster.apply_yaml(&source_yaml(ns, 2)).await;
    let sources: Api<TaskSource> = Api::namespaced(cluster.client.clone(), ns);
    wait_until("the source to pause", Duration::from_secs(60), || async {
        sources.get(SOURCE).await.ok().and_then(|s| s.status).is_some_and(|s| s.paused)
    })
    .await;
    let status = sources.get(SOURCE).await.unwrap().status.unwrap();
    assert_eq!(status.message, message);
    let paused = status.conditions.iter().find(|c| c.type_ == "Paused").unwrap();
    assert_eq!((paused.status.as_str(), paused.reason.as_str()), ("True", "OrganicTasksWaiting"));
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(synthetic_tasks(cluster, ns).await.is_empty(), "nothing created while paused");
}

/// `gradients synthesize FILE --index I`: the Task the local runner would run.
fn local_draw(file: &std::path::Path, index: u64) -> Task {
    let output = Command::new(env!("CARGO_BIN_EXE_gradients"))
        .arg("synthesize")
        .arg(file)
        .args(["--index", &index.to_string()])
        .output()
        .unwrap();
    assert!(output.status.success(), "synthesize: {}", String::from_utf8_lossy(&output.stderr));
    serde_norway::from_slice(&output.stdout).unwrap()
}

#[tokio::test]
#[ignore = "needs the e2e cluster: e2e/test -- cargo test --test operator_e2e -- --ignored"]
async fn a_task_source_keeps_synthetic_tasks_in_flight_through_whole_tournaments() {
    let cluster = Cluster::connect().await;
    cluster.helm_install_chart();
    let ns = cluster.fresh_namespace("e2e-source").await;
    let mut operator = Operator::start(&cluster, "source-first");
    operator.wait_ready().await;
    apply_miners(&cluster, &ns).await;
    let manifest = source_yaml(&ns, 2);
    cluster.apply_yaml(&manifest).await;

    wait_until("two synthetic tasks", Duration::from_secs(60), || async {
        synthetic_tasks(&cluster, &ns).await.len() == 2
    })
    .await;
    let first = synthetic_tasks(&cluster, &ns).await;
    assert_eq!(first.keys().cloned().collect::<Vec<_>>(), [format!("{SOURCE}-0"), format!("{SOURCE}-1")]);

    // The local draw is the operator's draw: same name, labels and spec for the same seed.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("source.yaml");
    std::fs::write(&file, &manifest).unwrap();
    for (index, (name, task)) in first.iter().enumerate() {
        let local = local_draw(&file, index as u64);
        assert_eq!(local.name_any(), *name);
        assert_eq!(local.spec, task.spec, "draw {index}");
        assert_eq!(task.spec.origin, Origin::Synthetic);
        assert_eq!(local.labels(), task.labels());
        let owner = &task.owner_references()[0];
        assert_eq!((owner.kind.as_str(), owner.name.as_str(), owner.controller), ("TaskSource", SOURCE, Some(true)));
    }

    // A restart never duplicates: the same Tasks, the same next index.
    let sources: Api<TaskSource> = Api::namespaced(cluster.client.clone(), &ns);
    wait_until("the status to count two in flight", Duration::from_secs(30), || async {
        sources.get(SOURCE).await.ok().and_then(|s| s.status).is_some_and(|s| s.in_flight == 2 && s.next_index == 2)
    })
    .await;
    operator.stop().await;
    let mut operator = Operator::start(&cluster, "source-second");
    operator.wait_ready().await;
    wait_until("the new leader to reconcile the source", Duration::from_secs(30), || async {
        operator.get("/metrics").await.contains("gradients_reconcile_total{controller=\"tasksource\"}")
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(synthetic_tasks(&cluster, &ns).await.keys().collect::<Vec<_>>(), first.keys().collect::<Vec<_>>());
    assert_eq!(sources.get(SOURCE).await.unwrap().status.unwrap().next_index, 2);

    // Whole tournaments: as Tasks succeed, new ones keep two in flight, never more.
    wait_until("four tournaments to succeed", Duration::from_secs(240), || async {
        finish_running_pods(&cluster, &ns).await;
        let tasks = synthetic_tasks(&cluster, &ns).await;
        assert!(in_flight(&tasks) <= 2, "more than inFlight running: {:?}", tasks.keys());
        tasks.values().filter(|t| t.phase() == TaskPhase::Succeeded).count() >= 4
    })
    .await;
    wait_until("two in flight again", Duration::from_secs(30), || async {
        in_flight(&synthetic_tasks(&cluster, &ns).await) == 2
    })
    .await;
    let tasks = synthetic_tasks(&cluster, &ns).await;
    // The source creates its Tasks before it records them in its status.
    let status = recorded_status(&sources, tasks.len()).await;
    assert_eq!(status.created as usize, tasks.len());
    assert_eq!(status.next_index as usize, tasks.len(), "indices 0..n, none skipped or reused");
    assert_eq!(status.types.iter().map(|t| t.created).sum::<u32>() as usize, tasks.len());
    let shares: f64 = status.types.iter().map(|t| t.share).sum();
    assert!((shares - 1.0).abs() < 1e-3, "{:?}", status.types);
    assert!(status.conditions.iter().all(|c| c.observed_generation == Some(1)));
    assert!(!status.paused);
    let table = cluster.kubectl(&["get", "tasksources", "-n", &ns]);
    assert!(table.contains("INFLIGHT") && table.contains(SOURCE), "{table}");
    println!("{table}");
    let events =
        cluster.kubectl(&["get", "events", "-n", &ns, "--field-selector", &format!("involvedObject.name={SOURCE}")]);
    assert!(events.contains("Created"), "{events}");

    // Deleting the source deletes its Tasks (they are owned).
    sources.delete(SOURCE, &DeleteParams::foreground()).await.unwrap();
    wait_until("the synthetic tasks to be garbage-collected", Duration::from_secs(60), || async {
        synthetic_tasks(&cluster, &ns).await.is_empty()
    })
    .await;
    operator.stop().await;
    cluster.delete_namespace(&ns).await;
}

#[tokio::test]
#[ignore = "needs the e2e cluster: e2e/test -- cargo test --test operator_e2e -- --ignored"]
async fn organic_tasks_waiting_for_miners_pause_a_task_source() {
    let cluster = Cluster::connect().await;
    cluster.helm_install_chart();
    let ns = cluster.fresh_namespace("e2e-pause").await;
    let mut operator = Operator::start(&cluster, "pause");
    operator.wait_ready().await;
    // An organic task no miner matches: it waits for miners (Delayed).
    cluster
        .apply_yaml(&format!(
            "apiVersion: gradients.io/v1alpha1
kind: Task
metadata: {{name: lonely, namespace: {ns}}}
spec:
  taskType: Dpo
  baseModel: {{uri: kwok://gradients-e2e/models/qwen2.5-3b, paramsB: 3}}
  dataset: {{uri: kwok://gradients-e2e/datasets/prefs.jsonl, columns: {{prompt: q, chosen: good, rejected: bad}}}}
  hours: 2
  minerSelector: {{pool: nobody}}
"
        ))
        .await;
    expect_pause(&cluster, &ns, "lonely", TaskPhase::Delayed, "1 organic Task waits: lonely (for miners)").await;

    // The organic task goes away: the source resumes and fills its slots.
    let tasks: Api<Task> = Api::namespaced(cluster.client.clone(), &ns);
    let sources: Api<TaskSource> = Api::namespaced(cluster.client.clone(), &ns);
    tasks.delete("lonely", &DeleteParams::default()).await.unwrap();
    wait_until("two synthetic tasks after the pause", Duration::from_secs(60), || async {
        synthetic_tasks(&cluster, &ns).await.len() == 2
    })
    .await;
    let status = recorded_status(&sources, 2).await;
    assert!(!status.paused && status.message.is_empty(), "{status:?}");
    let events =
        cluster.kubectl(&["get", "events", "-n", &ns, "--field-selector", &format!("involvedObject.name={SOURCE}")]);
    assert!(events.contains("Paused") && events.contains("Resumed"), "{events}");
    operator.stop().await;
    cluster.delete_namespace(&ns).await;
}

#[tokio::test]
#[ignore = "needs the e2e cluster: e2e/test -- cargo test --test operator_e2e -- --ignored"]
async fn organic_tasks_waiting_for_gpus_pause_a_task_source() {
    let cluster = Cluster::connect().await;
    cluster.helm_install_chart();
    let ns = cluster.fresh_namespace("e2e-gpus").await;
    let mut operator = Operator::start(&cluster, "gpus");
    operator.wait_ready().await;
    // Five 70B trainers of 8 GPUs each on 4 fake nodes of 8: one cannot be scheduled.
    crate::apply_miner_pool(&cluster, &ns, "big", &["big-a", "big-b", "big-c", "big-d", "big-e"]).await;
    cluster
        .apply_yaml(&format!(
            "apiVersion: gradients.io/v1alpha1
kind: Task
metadata: {{name: huge, namespace: {ns}}}
spec:
  taskType: InstructText
  baseModel: {{uri: kwok://gradients-e2e/models/llama-70b, paramsB: 70}}
  dataset: {{uri: kwok://gradients-e2e/datasets/alpaca.jsonl, columns: {{instruction: q, output: a}}}}
  hours: 2
  minersPerTask: 5
  minerSelector: {{pool: big}}
  baseline: false
"
        ))
        .await;
    expect_pause(&cluster, &ns, "huge", TaskPhase::Training, "1 organic Task waits: huge (for GPUs)").await;
    operator.stop().await;
    cluster.delete_namespace(&ns).await;
}
