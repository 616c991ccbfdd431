//! Tournaments in real containers (issue 9): the operator installed as a user installs it
//! (`helm install` of charts/gradients with the locally built operator image, in-cluster,
//! leader election on, the chart's ServiceAccount and RBAC, pod security `restricted` enforced)
//! runs on the e2e cluster's real node (kubelet + containerd), and so do the preparation,
//! trainer and evaluator pods it creates, with the real trainer and evaluator on tiny models.
//! Then `helm upgrade` rolls the operator, and deleting its pod mid-tournament loses and
//! duplicates nothing. Beside the first tournament (the control) runs the same one with three
//! hostile miners added (`hostile`): they escape nothing, and the honest miners score the same.
//! A second test keeps a tournament's artifacts on an S3-compatible server instead of the claim
//! (`s3`). The node enforces NetworkPolicies (kube-router's firewall, e2e/node).
//!
//! Run it through e2e/test, which builds and imports the images (E2E_IMAGE_*):
//! `e2e/test -- cargo test --test real_node_e2e -- --ignored --test-threads=1` with
//! GRADIENTS_BASE_MODELS set (`scripts/prepare-examples | tail -1`); scripts/test does.

#[path = "real_node_e2e/hostile.rs"]
mod hostile;
#[path = "real_node_e2e/s3.rs"]
mod s3;
#[path = "s3/server.rs"]
mod s3_server;
mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use gradients::api::task::TaskPhase;
use gradients::api::{Evaluation, Leaderboard, MinerSubmission, Task};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::api::ListParams;
use kube::{Api, ResourceExt};
use support::*;

const NODE: &str = "real-node-0";
const RESTRICTED: &str = "pod-security.kubernetes.io/enforce=restricted";
const OPERATOR_SELECTOR: &str = "app.kubernetes.io/name=gradients-operator";

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: run through e2e/test (images) and scripts/test (GRADIENTS_BASE_MODELS)")
    })
}

fn run(program: &str, args: &[&str]) -> String {
    let output = Command::new(program).args(args).output().unwrap_or_else(|e| panic!("{program}: {e}"));
    assert!(
        output.status.success(),
        "{program} {args:?}: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The artifacts claim: a hostPath PersistentVolume on the real node, bound to the claim the
/// workloads mount at /artifacts, holding the base models and the datasets.
fn artifacts(ns: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("gradients-real-node-{ns}"));
    let models = PathBuf::from(env("GRADIENTS_BASE_MODELS"));
    std::fs::create_dir_all(dir.join("datasets")).unwrap();
    std::fs::create_dir_all(dir.join("models")).unwrap();
    for kind in ["instruct", "grpo"] {
        run("cp", &["-r", models.join(kind).to_str().unwrap(), dir.join(format!("models/{kind}")).to_str().unwrap()]);
        std::fs::copy(root().join(format!("examples/{kind}/data.jsonl")), dir.join(format!("datasets/{kind}.jsonl")))
            .unwrap();
    }
    // The workloads run as uid/gid 1000 (fsGroup does not apply to hostPath volumes).
    run("chown", &["-R", "1000:1000", dir.to_str().unwrap()]);
    dir
}

fn artifacts_yaml(ns: &str, dir: &Path) -> String {
    format!(
        "apiVersion: v1\nkind: PersistentVolume\nmetadata: {{name: artifacts-{ns}}}\nspec:\n  capacity: {{storage: 10Gi}}\n  \
         accessModes: [ReadWriteMany]\n  persistentVolumeReclaimPolicy: Retain\n  storageClassName: \"\"\n  \
         hostPath: {{path: {dir}, type: Directory}}\n  claimRef: {{namespace: {ns}, name: gradients-artifacts}}\n---\n\
         apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata: {{name: gradients-artifacts, namespace: {ns}}}\nspec:\n  \
         accessModes: [ReadWriteMany]\n  storageClassName: \"\"\n  volumeName: artifacts-{ns}\n  \
         resources: {{requests: {{storage: 10Gi}}}}\n",
        dir = dir.display()
    )
}

/// `helm upgrade --install` of the chart with the local images, everything on the real node.
fn helm_install(ns: &str, extra: &[&str]) {
    let operator = env("E2E_IMAGE_OPERATOR");
    let trainer = env("E2E_IMAGE_TRAINER_CPU");
    let (repository, tag) = operator.rsplit_once(':').unwrap();
    let real_node = r#"{"gradients.io/e2e-real-node":"true"}"#;
    let toleration = r#"[{"key":"gradients.io/e2e-real-node","operator":"Exists","effect":"NoSchedule"}]"#;
    // The CPU "GPU" class: one slot of the node's gradients.io/e2e-cpu-slot per GPU. Its 4 slots
    // (3 miners and the baseline) fit the node's 2 CPUs beside two operator pods (100m each, during
    // a restart). At 500m one trainer waited for CPU with its clock running, and a CI run once found
    // a GRPO trainer pod that had never started its container.
    let cpu_class = format!(
        r#"{{"nodeSelector":{real_node},"tolerations":{toleration},"resource":"gradients.io/e2e-cpu-slot","cpuPerGpu":"450m","memoryPerGpu":"2Gi"}}"#
    );
    let mut args: Vec<String> = [
        "upgrade",
        "--install",
        "gradients",
        root().join("charts/gradients").to_str().unwrap(),
        "--namespace",
        RELEASE_NAMESPACE,
        "--wait",
        "--timeout",
        "180s",
        "--set",
        &format!("image.repository={repository}"),
        "--set",
        &format!("image.tag={tag}"),
        "--set",
        "image.pullPolicy=Never",
        "--set",
        "replicaCount=1",
        "--set",
        &format!("workloads.trainerImage={trainer}"),
        "--set",
        &format!("workloads.evaluatorImage={trainer}"),
        "--set",
        "workloads.imagePullPolicy=Never",
        "--set",
        "workloads.artifacts=pvc://gradients-artifacts",
        "--set",
        "workloads.defaultGpuClass=cpu",
        // The node's firewall (kube-router) programs a pod's rules a moment after it starts:
        // trainers wait for them.
        "--set",
        "workloads.awaitIsolation=true",
        // Small caps, so the hostile miner's sparse 3 GiB file is refused without a copy.
        "--set",
        "workloads.seal.maxFileBytes=1073741824",
        "--set-json",
        &format!("workloads.gpuClasses.cpu={cpu_class}"),
        "--set-json",
        &format!(
            r#"workloads.prepare={{"nodeSelector":{real_node},"tolerations":{toleration},"cpu":"500m","memory":"2Gi"}}"#
        ),
        "--set-json",
        &format!(r#"watchNamespaces=["{ns}"]"#),
        "--set-json",
        &format!("nodeSelector={real_node}"),
        "--set-json",
        &format!("tolerations={toleration}"),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.extend(extra.iter().map(|s| s.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    run("helm", &args);
}

fn operator_pods(cluster: &Cluster) -> Vec<String> {
    let out = cluster.kubectl(&[
        "get",
        "pods",
        "-n",
        RELEASE_NAMESPACE,
        "-l",
        OPERATOR_SELECTOR,
        "-o",
        "jsonpath={range .items[?(@.metadata.deletionTimestamp)]}-{.metadata.name} {end}{range .items[*]}{.metadata.name} {end}",
    ]);
    // Terminating pods are listed twice (once with a leading '-'): keep only live ones.
    let terminating: BTreeSet<&str> = out.split_whitespace().filter_map(|n| n.strip_prefix('-')).collect();
    out.split_whitespace().filter(|n| !n.starts_with('-') && !terminating.contains(n)).map(String::from).collect()
}

fn rollout_status(cluster: &Cluster) {
    cluster.kubectl(&["rollout", "status", "deployment/gradients-operator", "-n", RELEASE_NAMESPACE, "--timeout=180s"]);
}

/// What a failure needs: the pods, the operator's log, the Task.
fn diagnostics(cluster: &Cluster, ns: &str) -> String {
    let get = |args: &[&str]| {
        Command::new("kubectl")
            .args(args)
            .output()
            .map(|o| format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr)))
            .unwrap_or_default()
    };
    let _ = cluster;
    [
        get(&["get", "pods,jobs,tasks,minersubmissions,evaluations", "-n", ns, "-o", "wide"]),
        get(&["get", "tasks", "-n", ns, "-o", "yaml"]),
        get(&["get", "events", "-n", ns, "--sort-by=.lastTimestamp"]),
        get(&["logs", "-n", RELEASE_NAMESPACE, "-l", OPERATOR_SELECTOR, "--tail=60", "--all-containers"]),
    ]
    .join("\n")
}

async fn wait_for_phase(cluster: &Cluster, ns: &str, task: &str, phase: TaskPhase, limit: Duration) {
    let tasks: Api<Task> = Api::namespaced(cluster.client.clone(), ns);
    let deadline = Instant::now() + limit;
    loop {
        let now = tasks.get(task).await.ok().map(|t| t.phase());
        if now == Some(phase) {
            return;
        }
        if now == Some(TaskPhase::Failed) || Instant::now() > deadline {
            panic!("task {ns}/{task} is {now:?}, waited for {phase:?}:\n{}", diagnostics(cluster, ns));
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

fn task_yaml(ns: &str, name: &str, body: &str) -> String {
    task_yaml_from(ns, name, body, "{pool: real}", 3)
}

fn task_yaml_from(ns: &str, name: &str, body: &str, selector: &str, miners: usize) -> String {
    format!(
        "apiVersion: gradients.io/v1alpha1\nkind: Task\nmetadata: {{name: {name}, namespace: {ns}}}\nspec:\n{body}  \
         seed: 42\n  minersPerTask: {miners}\n  minerSelector: {selector}\n  gpuClass: cpu\n"
    )
}

/// The untrained base model's test loss: a reference row kept in the Task's lifecycle state,
/// never among the miners' results.
fn base_model_loss(task: &Task) -> f64 {
    let status = task.status.as_ref();
    status
        .and_then(|s| s.lifecycle.as_ref())
        .and_then(|l| l.entrant(gradients::tournament::BASE_MODEL))
        .and_then(|e| match e.evaluation.output() {
            Some(gradients::tournament::WorkOutput::Evaluated(report)) => report.test_loss,
            _ => None,
        })
        .unwrap_or_else(|| panic!("the base model's evaluation: {:?}", status.map(|s| &s.lifecycle)))
}

/// Every pod of the namespace ran in a container on the real node, one pod per Job.
async fn assert_real_pods_one_per_job(cluster: &Cluster, ns: &str) -> Vec<Pod> {
    let pods = Api::<Pod>::namespaced(cluster.client.clone(), ns).list(&ListParams::default()).await.unwrap().items;
    let mut per_job: BTreeMap<String, usize> = BTreeMap::new();
    for pod in &pods {
        let spec = pod.spec.as_ref().unwrap();
        assert_eq!(spec.node_name.as_deref(), Some(NODE), "{} ran on the real node", pod.name_any());
        let id =
            pod.status.as_ref().and_then(|s| s.container_statuses.as_ref()).and_then(|c| c[0].container_id.clone());
        assert!(
            id.unwrap_or_default().starts_with("containerd://"),
            "{} ran in containerd; its status: {}",
            pod.name_any(),
            serde_json::to_string_pretty(&pod.status).unwrap_or_default()
        );
        let job = pod.labels().get("batch.kubernetes.io/job-name").cloned().unwrap_or_default();
        *per_job.entry(job).or_default() += 1;
    }
    assert!(per_job.values().all(|&n| n == 1), "one pod per Job: {per_job:?}");
    pods
}

async fn assert_weights_are_audited(cluster: &Cluster, ns: &str, evaluations: &[Evaluation]) {
    let boards: Api<Leaderboard> = Api::namespaced(cluster.client.clone(), ns);
    // The board catches up with the last Evaluation on its own reconcile.
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let board = boards.get("main").await.unwrap().status.unwrap_or_default();
        if let Some(push) = board.last_weight_push.clone() {
            let audited = gradients_score(&records_export(evaluations, push.at));
            let published: BTreeMap<String, u64> =
                board.standings.iter().map(|s| (s.miner.clone(), u64::from(s.weight_u16))).collect();
            if published == audited || Instant::now() > deadline {
                assert_eq!(published, audited, "leaderboard weights equal `gradients score` of the exported records");
                return;
            }
        }
        assert!(Instant::now() < deadline, "no weights pushed within 90 s");
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

/// The release namespace (made if missing) and a fresh tournament namespace, both enforcing
/// the `restricted` pod security standard; returns the tournament namespace.
async fn restricted_namespaces(cluster: &Cluster, prefix: &str) -> String {
    let _ = Command::new("kubectl").args(["create", "namespace", RELEASE_NAMESPACE]).output();
    cluster.kubectl(&["label", "namespace", RELEASE_NAMESPACE, RESTRICTED, "--overwrite"]);
    let ns = cluster.fresh_namespace(prefix).await;
    cluster.kubectl(&["label", "namespace", &ns, RESTRICTED, "--overwrite"]);
    ns
}

#[tokio::test]
#[ignore = "needs the e2e cluster's real node and images: e2e/test -- cargo test --test real_node_e2e -- --ignored"]
async fn tournaments_run_in_real_containers_and_survive_upgrade_and_restart() {
    let cluster = Cluster::connect().await;
    let started = Instant::now();
    let ns = restricted_namespaces(&cluster, "real").await;
    let dir = artifacts(&ns);
    cluster.apply_yaml(&artifacts_yaml(&ns, &dir)).await;

    // Install as a user does; the operator runs in-cluster on the real node.
    helm_install(&ns, &[]);
    rollout_status(&cluster);
    let first = operator_pods(&cluster);
    assert_eq!(first.len(), 1, "{first:?}");
    let pod: Pod = Api::namespaced(cluster.client.clone(), RELEASE_NAMESPACE).get(&first[0]).await.unwrap();
    assert_eq!(pod.spec.unwrap().node_name.as_deref(), Some(NODE));
    eprintln!("operator {} running on {NODE} after {:.0} s", first[0], started.elapsed().as_secs_f64());

    for (miner, strategy) in [("miner-a", "lora-fast"), ("miner-b", "lora-wide"), ("miner-c", "full-ft")] {
        cluster
            .apply_yaml(&format!(
                "apiVersion: gradients.io/v1alpha1\nkind: Miner\nmetadata: {{name: {miner}, namespace: {ns}, labels: {{pool: real, {}: \"yes\"}}}}\nspec: {{strategy: {strategy}, hotkey: 5F{miner}}}\n",
                hostile::POOL_LABEL
            ))
            .await;
    }
    cluster.apply_yaml(&hostile::miners_yaml(&ns, &env("E2E_IMAGE_HOSTILE_MINER"))).await;
    cluster
        .apply_yaml(&format!(
            "apiVersion: gradients.io/v1alpha1\nkind: Leaderboard\nmetadata: {{name: main, namespace: {ns}}}\nspec: {{}}\n"
        ))
        .await;

    // An instruct tournament: three miners plus the baseline, trained and evaluated for real;
    // at the same time the same tournament with the three hostile miners added.
    let instruct_spec = "  taskType: InstructText\n  baseModel: {uri: /artifacts/models/instruct, paramsB: 0.0001}\n  \
             dataset: {uri: /artifacts/datasets/instruct.jsonl, columns: {instruction: question, output: answer}}\n  \
             hours: 0.1\n";
    cluster.apply_yaml(&task_yaml(&ns, "instruct", instruct_spec)).await;
    let with_attackers = format!("{{{}: \"yes\"}}", hostile::POOL_LABEL);
    let all = 3 + hostile::ATTACKERS.len();
    cluster.apply_yaml(&task_yaml_from(&ns, hostile::TASK, instruct_spec, &with_attackers, all)).await;
    wait_for_phase(&cluster, &ns, "instruct", TaskPhase::Succeeded, Duration::from_secs(900)).await;
    eprintln!("instruct task succeeded after {:.0} s", started.elapsed().as_secs_f64());
    wait_for_phase(&cluster, &ns, hostile::TASK, TaskPhase::Succeeded, Duration::from_secs(600)).await;
    eprintln!("instruct task with the attackers succeeded after {:.0} s", started.elapsed().as_secs_f64());
    let evaluations: Api<Evaluation> = Api::namespaced(cluster.client.clone(), &ns);
    let instruct = evaluations.get("instruct").await.unwrap();
    let attacked = evaluations.get(hostile::TASK).await.unwrap();
    hostile::assert_attackers_contained(&cluster, &ns, &dir).await;
    hostile::assert_scores(&cluster, &ns, &instruct, &attacked).await;
    let results = instruct.status.clone().unwrap().results;
    let task = Api::<Task>::namespaced(cluster.client.clone(), &ns).get("instruct").await.unwrap();
    let base = base_model_loss(&task);
    let status = task.status.unwrap();
    let winner = status.result.clone().unwrap().winner.expect("a winner");
    let loss = |miner: &str| {
        results
            .iter()
            .find(|r| r.miner == miner)
            .and_then(|r| r.test_loss)
            .unwrap_or_else(|| panic!("{miner}: {results:?}"))
    };
    assert!(loss(&winner) < base, "the winner beats the untrained base model ({base}): {results:#?}");
    let pods = assert_real_pods_one_per_job(&cluster, &ns).await;
    let label = |p: &Pod, key: &str| p.labels().get(key).cloned().unwrap_or_default();
    let trainers: Vec<&Pod> = pods
        .iter()
        .filter(|p| label(p, "gradients.io/role") == "trainer" && label(p, "gradients.io/task") == "instruct")
        .collect();
    assert_eq!(trainers.len(), 4, "three miners and the baseline");
    for pod in trainers {
        let logs = cluster.kubectl(&["logs", "-n", &ns, &pod.name_any()]);
        assert!(logs.contains(r#""event":"progress""#), "kubectl logs shows the trainer's progress: {logs}");
    }
    assert_weights_are_audited(&cluster, &ns, &[instruct.clone(), attacked.clone()]).await;

    // helm upgrade with a changed value rolls the operator and the rollout completes: a new
    // replica is ready while the old one still holds the lease.
    helm_install(&ns, &["--set", "concurrency=3"]);
    rollout_status(&cluster);
    let second = operator_pods(&cluster);
    assert_eq!(second.len(), 1, "{second:?}");
    assert_ne!(first, second, "the upgrade replaced the operator pod");
    eprintln!("upgraded after {:.0} s", started.elapsed().as_secs_f64());

    // A GRPO tournament (reward functions travel the cluster path); the operator pod is deleted
    // while the trainers run. Nothing is lost or duplicated.
    cluster
        .apply_yaml(&task_yaml(
            &ns,
            "grpo",
            "  taskType: Grpo\n  baseModel: {uri: /artifacts/models/grpo, paramsB: 0.0001}\n  \
             dataset: {uri: /artifacts/datasets/grpo.jsonl, columns: {prompt: prompt}}\n  \
             rewardFunctions:\n  - {name: short, weight: 1.0, source: \"def short(completions, **kwargs):\\n    return [1.0 - min(len(c.strip()), 24) / 24 for c in completions]\\n\"}\n  \
             hours: 0.1\n",
        ))
        .await;
    let jobs: Api<Job> = Api::namespaced(cluster.client.clone(), &ns);
    let trainer_jobs = ListParams::default().labels("gradients.io/role=trainer,gradients.io/task=grpo");
    wait_until("the GRPO trainer Jobs", Duration::from_secs(180), || async {
        jobs.list(&trainer_jobs).await.map(|l| l.items.len() == 4).unwrap_or(false)
    })
    .await;
    let submissions: Api<MinerSubmission> = Api::namespaced(cluster.client.clone(), &ns);
    let before: Vec<String> =
        submissions.list(&ListParams::default()).await.unwrap().items.iter().map(|s| s.name_any()).collect();
    cluster.kubectl(&["delete", "pod", "-n", RELEASE_NAMESPACE, &second[0], "--wait=false"]);
    rollout_status(&cluster);
    wait_for_phase(&cluster, &ns, "grpo", TaskPhase::Succeeded, Duration::from_secs(480)).await;
    eprintln!("GRPO task succeeded after {:.0} s", started.elapsed().as_secs_f64());
    let after: Vec<String> =
        submissions.list(&ListParams::default()).await.unwrap().items.iter().map(|s| s.name_any()).collect();
    assert_eq!(before, after, "deleting the operator pod created or lost no submission");
    assert_eq!(jobs.list(&trainer_jobs).await.unwrap().items.len(), 4, "no trainer Job twice");
    assert_real_pods_one_per_job(&cluster, &ns).await;
    let grpo = evaluations.get("grpo").await.unwrap();
    assert!(grpo.status.clone().unwrap().results.iter().any(|r| r.rank == Some(1)), "a GRPO winner");
    assert_weights_are_audited(&cluster, &ns, &[instruct, attacked, grpo]).await;

    run("helm", &["uninstall", "gradients", "-n", RELEASE_NAMESPACE, "--wait"]);
    cluster.delete_namespace(&ns).await;
    let _ = Command::new("kubectl").args(["delete", "pv", &format!("artifacts-{ns}"), "--wait=false"]).output();
    let _ = std::fs::remove_dir_all(&dir);
    eprintln!("real-node tournaments: {:.0} s", started.elapsed().as_secs_f64());
}

/// The real node's address (`e2e/node env`), where the S3 server listens.
fn node_ip() -> String {
    let out = run(root().join("e2e/node").to_str().unwrap(), &["env"]);
    out.lines().find_map(|l| l.strip_prefix("NODE_IP=")).expect("NODE_IP from e2e/node env").to_string()
}

#[tokio::test]
#[ignore = "needs the e2e cluster's real node and images: e2e/test -- cargo test --test real_node_e2e -- --ignored"]
async fn a_tournament_on_s3_runs_through_the_operator_with_presigned_urls_only() {
    let cluster = Cluster::connect().await;
    let started = Instant::now();
    let ns = restricted_namespaces(&cluster, "s3").await;

    let server = s3::NodeS3::start(&node_ip()).await;
    let models = PathBuf::from(env("GRADIENTS_BASE_MODELS"));
    server.s3.put_tree("models/instruct", &models.join("instruct")).await;
    server.s3.put("datasets/instruct.jsonl", &root().join("examples/instruct/data.jsonl")).await;
    cluster.apply_yaml(&s3::NodeS3::secret_yaml(RELEASE_NAMESPACE)).await;
    let object_store = format!("workloads.objectStore={}", server.chart_value());
    let artifacts = format!("workloads.artifacts={}", s3::ARTIFACTS);
    let secret = format!("objectStoreCredentialsSecret={}", s3::SECRET);
    let sources = format!(r#"workloads.allowedSources=["s3://{0}/datasets/","s3://{0}/models/"]"#, s3::BUCKET);
    helm_install(&ns, &["--set", &artifacts, "--set-json", &object_store, "--set", &secret, "--set-json", &sources]);
    rollout_status(&cluster);

    for (miner, strategy) in [("miner-a", "lora-fast"), ("miner-c", "full-ft")] {
        cluster
            .apply_yaml(&format!(
                "apiVersion: gradients.io/v1alpha1\nkind: Miner\nmetadata: {{name: {miner}, namespace: {ns}, labels: {{pool: s3}}}}\nspec: {{strategy: {strategy}, hotkey: 5F{miner}}}\n"
            ))
            .await;
    }
    let spec = format!(
        "  taskType: InstructText\n  baseModel: {{uri: s3://{0}/models/instruct, paramsB: 0.0001}}\n  \
         dataset: {{uri: s3://{0}/datasets/instruct.jsonl, columns: {{instruction: question, output: answer}}}}\n  \
         hours: 0.1\n",
        s3::BUCKET
    );
    cluster.apply_yaml(&task_yaml_from(&ns, "on-s3", &spec, "{pool: s3}", 2)).await;
    wait_for_phase(&cluster, &ns, "on-s3", TaskPhase::Succeeded, Duration::from_secs(900)).await;
    eprintln!("the tournament on S3 succeeded after {:.0} s", started.elapsed().as_secs_f64());

    // Scored for real: both miners evaluated, the winner beats the untrained base model.
    let evaluation = Api::<Evaluation>::namespaced(cluster.client.clone(), &ns).get("on-s3").await.unwrap();
    let results = evaluation.status.clone().unwrap().results;
    assert_eq!(results.len(), 2, "{results:#?}");
    let task = Api::<Task>::namespaced(cluster.client.clone(), &ns).get("on-s3").await.unwrap();
    let base = base_model_loss(&task);
    let best = results.iter().filter_map(|r| r.test_loss).fold(f64::INFINITY, f64::min);
    assert!(best < base, "the winner ({best}) beats the untrained base model ({base}): {results:#?}");

    // Every sealed model is an object on the server, at the URI its submission records.
    let keys = server.keys("tournaments/").await;
    let submissions = Api::<MinerSubmission>::namespaced(cluster.client.clone(), &ns)
        .list(&ListParams::default())
        .await
        .unwrap()
        .items;
    let sealed_uris: Vec<String> =
        submissions.iter().filter_map(|s| s.status.as_ref().and_then(|s| s.sealed_uri.clone())).collect();
    assert!(sealed_uris.len() >= 2, "both miners' models were sealed: {submissions:#?}");
    for sealed in &sealed_uris {
        let key = sealed.strip_prefix(&format!("s3://{}/", s3::BUCKET)).unwrap_or_else(|| panic!("{sealed}"));
        assert!(keys.iter().any(|k| k.starts_with(key)), "{sealed} is on the server: {keys:#?}");
    }
    assert!(keys.iter().any(|k| k.ends_with("data/heldout.tar")), "{keys:#?}");

    // The workloads got URLs, never the key, and mounted no claim.
    let pods = assert_real_pods_one_per_job(&cluster, &ns).await;
    let roles: BTreeSet<String> = pods.iter().filter_map(|p| p.labels().get("gradients.io/role").cloned()).collect();
    assert_eq!(roles, ["evaluator", "prepare", "seal", "trainer"].map(String::from).into(), "{roles:?}");
    for pod in &pods {
        let spec = serde_json::to_string(&pod.spec).unwrap();
        assert!(!spec.contains(&s3::credentials().secret_access_key), "{} carries the operator's key", pod.name_any());
        assert!(!spec.contains("persistentVolumeClaim"), "{} mounts a claim: {spec}", pod.name_any());
        assert!(spec.contains("GRADIENTS_TRANSFERS"), "{} got its presigned URLs", pod.name_any());
    }

    run("helm", &["uninstall", "gradients", "-n", RELEASE_NAMESPACE, "--wait"]);
    cluster.delete_namespace(&ns).await;
    eprintln!("the tournament on S3: {:.0} s", started.elapsed().as_secs_f64());
}
