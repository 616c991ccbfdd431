//! End-to-end test of the operator against the real control plane of `e2e/` (issue 6).
//!
//! Run it only inside that cluster: `e2e/test --no-proof -- cargo test --test operator_e2e --
//! --ignored --test-threads=1` (scripts/test does). It refuses any KUBECONFIG that is not an
//! e2e cluster's, so it never touches a user's current context by accident.
//!
//! The story: `helm install` the chart; run the operator out of cluster as the chart's
//! ServiceAccount (so the chart's RBAC is what is tested); apply Miners, a Leaderboard and a
//! Task; play the kubelet for the preparation, trainer and evaluator pods with
//! `e2e/finish-pod`; restart the operator mid-tournament; check the result, the weights against
//! `gradients score`, the rejection of an invalid Task and a malformed evaluator message.

#[path = "operator_e2e/bench.rs"]
mod bench;
#[path = "operator_e2e/chain_sink.rs"]
mod chain_sink;
#[path = "operator_e2e/chart.rs"]
mod chart;
mod common;
#[path = "operator_e2e/events.rs"]
mod events;
#[path = "operator_e2e/fault_proxy.rs"]
mod fault_proxy;
#[path = "operator_e2e/faults.rs"]
mod faults;
#[path = "operator_e2e/gpu_agent.rs"]
mod gpu_agent;
mod gpu_support;
#[path = "operator_e2e/halving.rs"]
mod halving;
#[path = "operator_e2e/prometheus.rs"]
mod prometheus;
#[path = "operator_e2e/retention.rs"]
mod retention;
mod support;
#[path = "operator_e2e/task_source.rs"]
mod task_source;

#[path = "operator_e2e/hostile.rs"]
mod hostile;
#[path = "operator_e2e/kubelet.rs"]
mod kubelet;
#[path = "operator_e2e/kueue.rs"]
mod kueue;
#[path = "operator_e2e/lease.rs"]
mod lease;

use std::collections::BTreeMap;
use std::time::Duration;

use gradients::api::evaluation::ResultState;
use gradients::api::task::TaskPhase;
use gradients::api::{Evaluation, Leaderboard, MinerSubmission, Task};
use gradients::tournament::{WorkKind, WorkloadId};
use gradients::workloads::{evaluator, prepare, trainer, workload_name};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use kube::api::ListParams;
use kube::{Api, ResourceExt};
use support::*;

const TASK: &str = "alpaca-dpo";
/// What the preparation container reports (`tournament::DatasetFacts`).
pub(crate) const SPLIT_SIZES: &str = r#"{"rows":2400,"train":1960,"test":240,"synthetic":200}"#;

/// The Job of `entrant`'s first attempt at `kind` in task `task`.
fn job_of(task: &str, kind: WorkKind, entrant: &str) -> String {
    let id = WorkloadId::new(kind, entrant, 1);
    match kind {
        WorkKind::Prepare => prepare::job_name(task, 1),
        WorkKind::Train => trainer::job_name(&workload_name(task, &id)),
        WorkKind::Seal | WorkKind::Synthesize => workload_name(task, &id),
        WorkKind::Evaluate => evaluator::job_name(task, entrant, 1),
    }
}

/// What a seal container reports for `entrant`'s model.
pub(crate) fn seal_report(entrant: &str) -> String {
    let training = r#"{"steps":40,"tokens":12000,"wallSeconds":20.0,"finalTrainLoss":1.25,"stoppedByDeadline":false}"#;
    format!(r#"{{"ok":true,"digest":"sha256:{}","files":3,"bytes":4096,"training":{training}}}"#, digest_of(entrant))
}

/// An evaluator's termination message for a model it scored.
pub(crate) fn evaluated(test: f64, synth: f64, sha: &str) -> String {
    format!(
        r#"{{"ok":true,"test_loss":{test},"synth_loss":{synth},"weights_sha256":"{sha}","checks":[],"failure":null}}"#
    )
}

/// A Miner of the reference trainer's `lora-fast` strategy for each of `miners`, labelled
/// `pool: POOL`.
pub(crate) async fn apply_miner_pool(cluster: &Cluster, ns: &str, pool: &str, miners: &[&str]) {
    for miner in miners {
        cluster
            .apply_yaml(&format!(
                "apiVersion: gradients.io/v1alpha1\nkind: Miner\nmetadata: {{name: {miner}, namespace: {ns}, labels: {{pool: {pool}}}}}\nspec: {{strategy: lora-fast}}\n"
            ))
            .await;
    }
}

/// Plays the seal and then the evaluation of each of `miners` (scored `loss`) at `rung` of `task`.
pub(crate) async fn seal_and_evaluate(cluster: &Cluster, ns: &str, task: &str, miners: &[(&str, f64)], rung: u32) {
    let name = |kind: WorkKind, miner: &str| workload_name(task, &WorkloadId::new(kind, miner, 1).at_rung(rung));
    for (miner, _) in miners {
        let pod = cluster.wait_for_job_pod(ns, &name(WorkKind::Seal, miner)).await;
        cluster.finish_pod(ns, &pod, 0, Some(seal_report(miner).as_str()));
    }
    for (miner, loss) in miners {
        let pod = cluster.wait_for_job_pod(ns, &name(WorkKind::Evaluate, miner)).await;
        cluster.finish_pod(ns, &pod, 0, Some(evaluated(*loss, *loss, &format!("{miner}{rung}")).as_str()));
    }
}

fn digest_of(entrant: &str) -> String {
    format!("{:0>64}", entrant.bytes().map(|b| format!("{b:02x}")).collect::<String>())
}

#[tokio::test]
#[ignore = "needs the e2e cluster: e2e/test -- cargo test --test operator_e2e -- --ignored"]
async fn a_tournament_runs_end_to_end_on_the_real_control_plane() {
    let cluster = Cluster::connect().await;
    let ns = cluster.fresh_namespace("e2e-tournament").await;
    cluster.helm_install_chart_for(&[&ns]);
    let mut operator = Operator::start(&cluster, "first");
    operator.wait_ready().await;
    // A real Prometheus scrapes the operator and a GPU agent (recorded NVML readings: the
    // stand-in for a GPU) throughout; the dashboard's queries are asked of it at the end.
    let recording = gpu_support::recording();
    let agent = gpu_support::Agent::start(&["--recorded", recording.to_str().unwrap(), "--node-name", "gpu-node-0"]);
    let prometheus = prometheus::Prometheus::start();
    prometheus.scrape(&[operator.address.clone(), agent.address.to_string()]);

    // An invalid Task is rejected by the API server, with the field named.
    let invalid = cluster.apply_yaml_expect_error(&task_yaml(&ns, "invalid", "hours: 0")).await;
    assert!(invalid.contains("spec.hours"), "rejection names the field: {invalid}");
    let both = cluster
        .apply_yaml_expect_error(&task_yaml(&ns, "both", "hours: 1\n  deadline: \"2030-01-01T00:00:00Z\""))
        .await;
    assert!(both.contains("spec.hours") && both.contains("spec.deadline"), "{both}");
    // A local program is no way to run a miner in a cluster.
    let local = cluster
        .apply_yaml_expect_error(&task_yaml(
            &ns,
            "local",
            "hours: 1\n  miners: [{name: m, strategy: lora-fast, command: [/bin/sh]}]",
        ))
        .await;
    assert!(local.contains("spec.miners[].command"), "{local}");
    // Issue 10: a Miner's arguments cannot override the operator's (argparse keeps the last
    // value, the kubelet expands `$(VAR)`): the API server refuses them, naming the field.
    let attack = format!("/artifacts/tournaments/{ns}/$(GRADIENTS_TASK)/data/heldout/test.jsonl");
    let injected = cluster
        .apply_yaml_expect_error(&format!(
            "apiVersion: gradients.io/v1alpha1\nkind: Miner\nmetadata: {{name: injector, namespace: {ns}}}\nspec: {{strategy: lora-fast, args: [--train-data, \"{attack}\"]}}\n"
        ))
        .await;
    assert!(injected.contains("spec.args") && injected.contains("$("), "{injected}");

    for miner in ["miner-a", "miner-b", "miner-c"] {
        cluster
            .apply_yaml(&format!(
                "apiVersion: gradients.io/v1alpha1\nkind: Miner\nmetadata: {{name: {miner}, namespace: {ns}, labels: {{pool: e2e}}}}\nspec: {{strategy: lora-fast, hotkey: 5F{miner}}}\n"
            ))
            .await;
    }
    cluster
        .apply_yaml(&format!(
            "apiVersion: gradients.io/v1alpha1\nkind: Leaderboard\nmetadata: {{name: main, namespace: {ns}}}\nspec: {{}}\n"
        ))
        .await;
    cluster.apply_yaml(&task_yaml(&ns, TASK, "hours: 1\n  minersPerTask: 3\n  minerSelector: {pool: e2e}")).await;

    // Preparation: the Job's pod lands on a node (it tolerates the GPU taint) and succeeds.
    let prepare_pod = cluster.wait_for_job_pod(&ns, &job_of(TASK, WorkKind::Prepare, "")).await;
    cluster.finish_pod(&ns, &prepare_pod, 0, Some(SPLIT_SIZES));

    // Training: one trainer Job per miner, on a fake GPU node, with the right GPUs and lockdown.
    let jobs: Api<Job> = Api::namespaced(cluster.client.clone(), &ns);
    let trainer_selector = ListParams::default().labels("gradients.io/role=trainer");
    wait_until("four trainer Jobs (three miners and the baseline)", Duration::from_secs(60), || async {
        jobs.list(&trainer_selector).await.map(|l| l.items.len() == 4).unwrap_or(false)
    })
    .await;
    let mut trainer_pods = Vec::new();
    for entrant in ["miner-a", "miner-b", "miner-c", "baseline"] {
        let pod_name = cluster.wait_for_job_pod(&ns, &job_of(TASK, WorkKind::Train, entrant)).await;
        let pod = cluster.wait_for_scheduled_pod(&ns, &pod_name).await;
        assert_trainer_pod_is_locked_down(&pod, 2);
        trainer_pods.push(pod_name);
    }

    // Restart the operator mid-tournament: it resumes, nothing is duplicated or lost.
    let submissions: Api<MinerSubmission> = Api::namespaced(cluster.client.clone(), &ns);
    let before: Vec<String> = names(&submissions.list(&ListParams::default()).await.unwrap().items);
    operator.stop().await;
    let mut operator = Operator::start(&cluster, "second");
    operator.wait_ready().await;
    prometheus.scrape(&[operator.address.clone(), agent.address.to_string()]);
    prometheus.wait_scraped(2).await;
    let tasks: Api<Task> = Api::namespaced(cluster.client.clone(), &ns);
    let selected_before = tasks.get(TASK).await.unwrap().status.unwrap().selected_miners;

    // The trainers finish while the new leader is in charge.
    for pod in &trainer_pods {
        cluster.finish_pod(&ns, pod, 0, None);
    }
    wait_until("the task to evaluate", Duration::from_secs(90), || async {
        tasks.get(TASK).await.map(|t| t.phase() == TaskPhase::Evaluating).unwrap_or(false)
    })
    .await;
    // Hand-off: each trained model is sealed by the operator's image before any evaluation of it.
    for entrant in ["miner-a", "miner-b", "miner-c", "baseline"] {
        let pod_name = cluster.wait_for_job_pod(&ns, &job_of(TASK, WorkKind::Seal, entrant)).await;
        let pod = cluster.wait_for_scheduled_pod(&ns, &pod_name).await;
        let spec = pod.spec.clone().unwrap();
        assert_eq!(spec.containers[0].args.as_ref().unwrap()[0], "seal");
        assert_eq!(spec.automount_service_account_token, Some(false));
        assert!(
            jobs.get_opt(&job_of(TASK, WorkKind::Evaluate, entrant)).await.unwrap().is_none(),
            "{entrant} is evaluated only once sealed"
        );
        cluster.finish_pod(&ns, &pod_name, 0, Some(seal_report(entrant).as_str()));
    }
    let after: Vec<String> = names(&submissions.list(&ListParams::default()).await.unwrap().items);
    assert_eq!(before, after, "the restart created or lost no submission");
    assert_eq!(jobs.list(&trainer_selector).await.unwrap().items.len(), 4, "no trainer Job twice");
    assert_eq!(tasks.get(TASK).await.unwrap().status.unwrap().selected_miners, selected_before);

    // Evaluation: good messages, one malformed; the malformed one fails only its submission.
    // The baseline and the untrained base model are evaluated as unscored reference rows.
    let messages = BTreeMap::from([
        ("miner-a", evaluated(0.91, 0.95, "aa")),
        ("miner-b", evaluated(1.20, 1.31, "bb")),
        ("miner-c", "Traceback (most recent call last): not json".to_string()),
        ("baseline", evaluated(1.10, 1.15, "cc")),
        ("base-model", evaluated(2.50, 2.60, "dd")),
    ]);
    let policies = cluster.network_policies(&ns).await;
    assert!(policies.iter().any(|p| p.contains("isolate")), "deny-all policy exists before evaluation: {policies:?}");
    for (miner, message) in &messages {
        let pod_name = cluster.wait_for_job_pod(&ns, &job_of(TASK, WorkKind::Evaluate, miner)).await;
        let pod = cluster.wait_for_scheduled_pod(&ns, &pod_name).await;
        let spec = pod.spec.clone().unwrap();
        let args = spec.containers[0].args.clone().unwrap();
        let submission = args.iter().position(|a| a == "--submission").map(|i| args[i + 1].clone());
        let expected = (*miner != "base-model").then(|| "kwok://gradients-e2e/artifacts/tournaments".to_string());
        assert_eq!(
            submission.map(|s| s.contains("/sealed/") && s.ends_with("/model")),
            expected.map(|_| true),
            "{miner}'s evaluator reads the sealed copy"
        );
        let digest = args.iter().position(|a| a == "--submission-digest").map(|i| args[i + 1].clone());
        let sealed = (*miner != "base-model").then(|| format!("sha256:{}", digest_of(miner)));
        assert_eq!(digest, sealed, "{miner}'s evaluator checks the sealed digest");
        assert_eq!(spec.automount_service_account_token, Some(false));
        let container = &spec.containers[0];
        assert_eq!(container.security_context.as_ref().unwrap().read_only_root_filesystem, Some(true));
        assert_eq!(container.termination_message_policy.as_deref(), Some("File"));
        cluster.finish_pod(&ns, &pod_name, 0, Some(message.as_str()));
    }
    wait_until("the task to succeed", Duration::from_secs(90), || async {
        tasks.get(TASK).await.map(|t| t.phase() == TaskPhase::Succeeded).unwrap_or(false)
    })
    .await;
    let task = tasks.get(TASK).await.unwrap();
    let result = task.status.clone().unwrap().result.unwrap();
    assert_eq!(result.winner.as_deref(), Some("miner-a"));
    assert_eq!(result.failed, 1);
    let evaluation = Api::<Evaluation>::namespaced(cluster.client.clone(), &ns).get(TASK).await.unwrap();
    let results = evaluation.status.clone().unwrap().results;
    let c = results.iter().find(|r| r.miner == "miner-c").unwrap();
    assert_eq!(c.state, ResultState::Failed);
    assert!(c.failure.as_deref().unwrap_or_default().contains("malformed"), "{c:?}");
    let a = results.iter().find(|r| r.miner == "miner-a").unwrap();
    assert_eq!(a.model_digest, Some(format!("sha256:{}", digest_of("miner-a"))), "the Evaluation records the digest");
    let sealed = submissions.get(&workload_name(TASK, &WorkloadId::new(WorkKind::Train, "miner-a", 1))).await.unwrap();
    let sealed = sealed.status.unwrap();
    assert_eq!(sealed.sealed_digest, a.model_digest, "and so does the MinerSubmission");
    // With the training's summary: the trainer's figures, the Job's time on its 2 GPUs.
    let training = sealed.training.expect("the training's summary on the MinerSubmission");
    assert_eq!((training.steps, training.tokens, training.final_train_loss), (Some(40), Some(12000), Some(1.25)));
    assert_eq!(training.tokens_per_second, Some(600.0));
    let wall = training.wall_seconds.expect("wall time from the Job");
    assert_eq!(training.gpu_seconds, Some(wall * 2.0));

    // The Leaderboard holds the weights `gradients score` computes from the same records.
    let boards: Api<Leaderboard> = Api::namespaced(cluster.client.clone(), &ns);
    wait_until("weights to be pushed", Duration::from_secs(60), || async {
        boards.get("main").await.map(|b| b.status.and_then(|s| s.last_weight_push).is_some()).unwrap_or(false)
    })
    .await;
    let board = boards.get("main").await.unwrap().status.unwrap();
    let at = board.last_weight_push.clone().unwrap().at;
    let audited = gradients_score(&records_export(&[evaluation], at));
    let published: BTreeMap<String, u64> =
        board.standings.iter().map(|s| (s.miner.clone(), u64::from(s.weight_u16))).collect();
    assert_eq!(published, audited, "leaderboard weights equal `gradients score` of the records");
    assert_eq!(board.leader.as_deref(), Some("miner-a"));
    let weights = Api::<ConfigMap>::namespaced(cluster.client.clone(), &ns).get("gradients-weights").await.unwrap();
    let sunk: BTreeMap<String, u64> =
        serde_json::from_str(&weights.data.unwrap()["main.weights.json"]).expect("main.weights.json");
    assert_eq!(sunk, audited, "the ConfigMap sink holds the same weights");
    let filed: serde_json::Value = serde_json::from_slice(&std::fs::read(&operator.weights_file).unwrap()).unwrap();
    assert_eq!(filed["weights"], serde_json::to_value(&audited).unwrap(), "the file sink too");

    // Printer columns tell what happened at a glance.
    let table = cluster.kubectl(&["get", "tasks,minersubmissions,leaderboards", "-n", &ns]);
    assert!(table.contains("Succeeded") && table.contains("miner-a"), "{table}");
    println!("{table}");

    // A started task's spec is frozen by the API server.
    let frozen = cluster
        .apply_yaml_expect_error(&task_yaml(&ns, TASK, "hours: 3\n  minersPerTask: 3\n  minerSelector: {pool: e2e}"))
        .await;
    assert!(frozen.contains("spec is immutable once the task has started"), "{frozen}");

    // Quiet once done: status writes do not wake the controllers up again (no reconcile storm).
    let reconciles = |metrics: String| -> Vec<String> {
        metrics.lines().filter(|l| l.starts_with("gradients_reconcile_total")).map(str::to_string).collect()
    };
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before = reconciles(operator.get("/metrics").await);
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(before, reconciles(operator.get("/metrics").await), "reconciles continued after the task finished");

    // Metrics and probes.
    let metrics = operator.get("/metrics").await;
    assert!(metrics.contains("gradients_reconcile_total{controller=\"task\"}"), "{metrics}");
    assert!(metrics.contains("gradients_tasks{phase=\"Succeeded\"} 1"), "{metrics}");
    assert!(operator.get("/live").await.contains("ok"));
    tournament_metrics(&metrics, &ns);
    // Every panel of the dashboard has data in Prometheus after the tournament.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mut empty = Vec::new();
    let queries = prometheus::dashboard_queries();
    for (title, expr) in &queries {
        if prometheus.query(expr).await.is_empty() {
            empty.push(format!("{title}: {expr}"));
        }
    }
    assert!(empty.is_empty(), "dashboard panels without data: {empty:#?}");
    println!("all {} dashboard queries answered by Prometheus", queries.len());

    // No Pod was ever created twice for a Job (restart safety at the workload level too).
    let pods: Api<Pod> = Api::namespaced(cluster.client.clone(), &ns);
    let all = pods.list(&ListParams::default()).await.unwrap().items;
    assert_eq!(
        all.len(),
        1 + 4 + 4 + 5,
        "one prepare, four trainer, four seal, five evaluator pods: {:?}",
        names(&all)
    );

    operator.stop().await;
    cluster.delete_namespace(&ns).await;
}

/// The tournament as the second operator's /metrics shows it after the task succeeded.
fn tournament_metrics(metrics: &str, ns: &str) {
    let expected = [
        format!(r#"gradients_leaderboard_miner_weight_ratio{{leaderboard="main",miner="miner-a",namespace="{ns}"}} "#),
        format!(r#"gradients_leaderboard_miner_quality{{leaderboard="main",miner="miner-b",namespace="{ns}"}} "#),
        format!(r#"gradients_leaderboard_weights_in_sync{{leaderboard="main",namespace="{ns}"}} 1"#),
        format!(r#"gradients_leaderboard_tasks{{leaderboard="main",namespace="{ns}"}} 1"#),
        format!(r#"gradients_miner_submissions{{miner="miner-a",namespace="{ns}",phase="Succeeded"}} 1"#),
        format!(r#"gradients_trainer_steps{{miner="miner-a",namespace="{ns}"}} 40"#),
        format!(r#"gradients_trainer_tokens_per_second{{miner="baseline",namespace="{ns}"}} 600"#),
        format!(r#"gradients_trainer_gpu_seconds{{miner="miner-c",namespace="{ns}"}} "#),
        format!(r#"gradients_evaluation_loss{{loss="test",miner="miner-a",namespace="{ns}"}} 0.91"#),
        format!(r#"gradients_evaluation_rank{{miner="miner-a",namespace="{ns}"}} 1"#),
        format!(r#"gradients_evaluation_results{{namespace="{ns}",status="failed"}} 1"#),
        // The second operator saw the task leave Evaluating and Recording, and end.
        r#"gradients_task_phase_duration_seconds_count{phase="Evaluating"} 1"#.to_string(),
        r#"gradients_workload_duration_seconds_count{kind="evaluate",result="succeeded"} "#.to_string(),
        r#"gradients_tasks_finished_total{result="Succeeded"} 1"#.to_string(),
        r#"gradients_weight_pushes_total{result="pushed",sink="configmap"} 1"#.to_string(),
    ];
    let missing: Vec<&String> = expected.iter().filter(|line| !metrics.contains(line.as_str())).collect();
    assert!(missing.is_empty(), "missing {missing:#?} in\n{metrics}");
    assert!(!metrics.contains(&format!("task=\"{TASK}\"")), "no series per task");
}

#[tokio::test]
#[ignore = "needs the e2e cluster: e2e/test -- cargo test --test operator_e2e -- --ignored"]
async fn too_few_miners_delay_an_organic_task() {
    let cluster = Cluster::connect().await;
    let ns = cluster.fresh_namespace("e2e-delay").await;
    cluster.helm_install_chart_for(&[&ns]);
    let mut operator = Operator::start(&cluster, "delay");
    operator.wait_ready().await;
    // No Miner matches: the organic task waits for miners with an extended allocation.
    cluster.apply_yaml(&task_yaml(&ns, "lonely", "hours: 2\n  minerSelector: {pool: nobody}")).await;
    let pod = cluster.wait_for_job_pod(&ns, &job_of("lonely", WorkKind::Prepare, "")).await;
    cluster.finish_pod(&ns, &pod, 0, Some(SPLIT_SIZES));
    let tasks: Api<Task> = Api::namespaced(cluster.client.clone(), &ns);
    wait_until("the task to wait for miners", Duration::from_secs(60), || async {
        tasks.get("lonely").await.map(|t| t.phase() == TaskPhase::Delayed).unwrap_or(false)
    })
    .await;
    let status = tasks.get("lonely").await.unwrap().status.unwrap();
    assert_eq!(status.delays, 1);
    assert!(status.retry_at.is_some());
    let events = cluster.kubectl(&["get", "events", "-n", &ns, "--field-selector", "involvedObject.name=lonely"]);
    assert!(events.contains("Delayed"), "{events}");
    // Issue 10: a Task may not read another task's held-out split (or anything the
    // configuration does not allow); it fails at once, naming the Task and the field.
    let stolen = format!("kwok://gradients-e2e/artifacts/tournaments/{ns}/lonely/data/heldout/test.jsonl");
    let forbidden = task_yaml(&ns, "thief", "hours: 1").replace("kwok://gradients-e2e/datasets/prefs.jsonl", &stolen);
    cluster.apply_yaml(&forbidden).await;
    wait_until("the thief task to fail", Duration::from_secs(60), || async {
        tasks.get("thief").await.map(|t| t.phase() == TaskPhase::Failed).unwrap_or(false)
    })
    .await;
    let message = tasks.get("thief").await.unwrap().status.unwrap().message;
    assert!(message.contains(&format!("Task {ns}/thief")) && message.contains("spec.dataset.uri"), "{message}");
    let jobs: Api<Job> = Api::namespaced(cluster.client.clone(), &ns);
    assert!(jobs.get_opt(&job_of("thief", WorkKind::Prepare, "")).await.unwrap().is_none(), "nothing ran");
    // A Task the operator cannot act on (a GPU class the installation lacks) says why on itself,
    // where `kubectl describe` shows it: a Warning Event with the error's category and message.
    cluster.apply_yaml(&task_yaml(&ns, "misclassed", "hours: 1\n  gpuClass: no-such-class")).await;
    wait_until("a ReconcileFailed Event on the misclassed task", Duration::from_secs(60), || async {
        let selector = "involvedObject.name=misclassed,reason=ReconcileFailed,type=Warning";
        let messages = cluster.kubectl(&[
            "get",
            "events",
            "-n",
            &ns,
            "--field-selector",
            selector,
            "-o",
            "jsonpath={.items[*].message}",
        ]);
        messages.contains("UnknownGpuClass") && messages.contains("\"no-such-class\" is not configured")
    })
    .await;
    operator.stop().await;
    cluster.delete_namespace(&ns).await;
}

pub fn task_yaml(ns: &str, name: &str, timing: &str) -> String {
    format!(
        "apiVersion: gradients.io/v1alpha1
kind: Task
metadata: {{name: {name}, namespace: {ns}}}
spec:
  taskType: Dpo
  baseModel: {{uri: kwok://gradients-e2e/models/qwen2.5-3b, paramsB: 3}}
  dataset: {{uri: kwok://gradients-e2e/datasets/prefs.jsonl, columns: {{prompt: q, chosen: good, rejected: bad}}}}
  seed: 11
  {timing}
"
    )
}

fn names<K: kube::Resource>(items: &[K]) -> Vec<String> {
    let mut names: Vec<String> = items.iter().map(|i| i.name_any()).collect();
    names.sort();
    names
}

/// Trainer pods: the restricted profile, no token, the GPU request, the deadline.
fn assert_trainer_pod_is_locked_down(pod: &Pod, gpus: u32) {
    let spec = pod.spec.clone().unwrap();
    assert!(spec.node_name.as_deref().unwrap_or_default().starts_with("gpu-node-"), "on a fake GPU node");
    assert_eq!(spec.automount_service_account_token, Some(false));
    let pod_security = spec.security_context.clone().unwrap();
    assert_eq!(pod_security.run_as_non_root, Some(true));
    assert_eq!(pod_security.seccomp_profile.unwrap().type_, "RuntimeDefault");
    let container = &spec.containers[0];
    let security = container.security_context.clone().unwrap();
    assert_eq!(security.allow_privilege_escalation, Some(false));
    assert_eq!(security.capabilities.unwrap().drop.unwrap(), vec!["ALL".to_string()]);
    let limits = container.resources.clone().unwrap().limits.unwrap();
    assert_eq!(limits["nvidia.com/gpu"].0, gpus.to_string(), "DPO 3B is 9B effective: {gpus} GPUs");
    assert_eq!(spec.node_selector.unwrap()["nvidia.com/gpu.product"], "NVIDIA-H100-80GB-HBM3");
}

#[tokio::test]
#[ignore = "needs the e2e cluster: e2e/test -- cargo test --test operator_e2e -- --ignored"]
async fn only_the_lease_holder_runs_controllers_and_a_standby_takes_over() {
    let cluster = Cluster::connect().await;
    let ns = cluster.fresh_namespace("e2e-lease").await;
    cluster.helm_install_chart_for(&[&ns]);
    let mut leader = Operator::start(&cluster, "leader");
    leader.wait_ready().await;
    let mut standby = Operator::start(&cluster, "standby");
    // The standby is ready (it serves and reaches the API server: a rolling update can proceed)
    // but runs no controller while the lease is held.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(standby.get("/live").await.contains("ok"));
    assert_eq!(standby.get("/ready").await, "ready\n", "a standby is ready");
    assert!(standby.get("/metrics").await.contains("gradients_leader 0"));
    cluster.apply_yaml(&task_yaml(&ns, "leased", "hours: 1")).await;
    cluster.wait_for_job_pod(&ns, &job_of("leased", WorkKind::Prepare, "")).await;
    assert!(
        !standby.get("/metrics").await.contains("gradients_reconcile_total{controller=\"task\"}"),
        "the standby reconciled nothing"
    );
    // The leader stops gracefully and releases the lease; the standby takes over at once.
    leader.stop().await;
    standby.wait_ready().await;
    assert!(standby.leads().await);
    standby.stop().await;
    cluster.delete_namespace(&ns).await;
}

#[tokio::test]
#[ignore = "needs the e2e cluster: e2e/test -- cargo test --test operator_e2e -- --ignored"]
async fn records_leave_the_leaderboard_after_the_window_and_miners_learn_their_quality() {
    let cluster = Cluster::connect().await;
    let ns = cluster.fresh_namespace("e2e-window").await;
    cluster.helm_install_chart_for(&[&ns]);
    let mut operator = Operator::start(&cluster, "window");
    operator.wait_ready().await;
    cluster
        .apply_yaml(&format!(
            "apiVersion: gradients.io/v1alpha1\nkind: Miner\nmetadata: {{name: fresh, namespace: {ns}}}\nspec: {{strategy: lora-fast}}\n"
        ))
        .await;
    cluster
        .apply_yaml(&format!(
            "apiVersion: gradients.io/v1alpha1\nkind: Leaderboard\nmetadata: {{name: main, namespace: {ns}}}\nspec: {{}}\n"
        ))
        .await;
    // Two records written as the Task controller writes them: one 8 days old, one from today.
    let evaluations: Api<Evaluation> = Api::namespaced(cluster.client.clone(), &ns);
    for (name, miner, age_days) in [("old", "gone", 8), ("recent", "fresh", 0)] {
        let finished_at = chrono::Utc::now() - chrono::Duration::days(age_days) - chrono::Duration::minutes(1);
        complete_evaluation(&cluster, &ns, name, finished_at, &[(miner, 1.0)]).await;
    }
    wait_until("the 8-day-old record to be deleted", Duration::from_secs(30), || async {
        evaluations.get_opt("old").await.map(|e| e.is_none()).unwrap_or(false)
    })
    .await;
    let boards: Api<Leaderboard> = Api::namespaced(cluster.client.clone(), &ns);
    wait_until("the leaderboard to hold only the recent record", Duration::from_secs(30), || async {
        boards
            .get("main")
            .await
            .ok()
            .and_then(|b| b.status)
            .is_some_and(|s| s.tasks == 1 && s.standings.iter().map(|m| m.miner.as_str()).eq(["fresh"]))
    })
    .await;
    let miners: Api<gradients::api::Miner> = Api::namespaced(cluster.client.clone(), &ns);
    wait_until("the miner's status to carry its quality", Duration::from_secs(30), || async {
        miners
            .get("fresh")
            .await
            .ok()
            .and_then(|m| m.status)
            .is_some_and(|s| s.tasks_in_window == 1 && s.weight.is_some())
    })
    .await;
    operator.stop().await;
    cluster.delete_namespace(&ns).await;
}
