//! Helpers for the tests that run against the e2e cluster: connecting (only to an e2e
//! cluster), helm, the operator as a child process, playing the kubelet, polling.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use gradients::api::Evaluation;
use gradients::api::evaluation::ResultState;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::api::{DeleteParams, ListParams, ObjectMeta, PostParams};
use kube::{Api, Client, ResourceExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub const RELEASE_NAMESPACE: &str = "gradients-system";
pub const SERVICE_ACCOUNT: &str = "system:serviceaccount:gradients-system:gradients-operator";
/// Where the e2e Tasks' datasets and base models may be (`workloads.allowedSources`).
pub const ALLOWED_SOURCES: &str = r#"["kwok://gradients-e2e/datasets/","kwok://gradients-e2e/models/"]"#;

/// The checkout under test. Cargo sets `CARGO_MANIFEST_DIR` when it runs a test as well as when
/// it compiles one, and only the first is current: clones sharing a target directory share test
/// binaries (cargo does not rebuild one for a checkout at another path), and the compiled-in
/// path is that of whichever clone built it.
pub fn root() -> PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")))
}

pub struct Cluster {
    pub client: Client,
    pub kubeconfig: String,
}

impl Cluster {
    /// Connects to the e2e cluster named by KUBECONFIG, and to nothing else.
    pub async fn connect() -> Cluster {
        let kubeconfig = std::env::var("KUBECONFIG").unwrap_or_default();
        assert!(
            kubeconfig.contains("/kwok/clusters/"),
            "KUBECONFIG={kubeconfig:?} is not an e2e cluster's; run through `e2e/test -- cargo test --test ... -- --ignored`"
        );
        let client = Client::try_default().await.expect("client for the e2e cluster");
        Cluster { client, kubeconfig }
    }

    pub fn kubectl(&self, args: &[&str]) -> String {
        let output = Command::new("kubectl").args(args).output().expect("kubectl on PATH (e2e/cluster env)");
        assert!(output.status.success(), "kubectl {args:?}: {}", String::from_utf8_lossy(&output.stderr));
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    fn kubectl_apply(&self, yaml: &str) -> std::process::Output {
        let mut child = Command::new("kubectl")
            .args(["apply", "-f", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("kubectl");
        child.stdin.take().unwrap().write_all(yaml.as_bytes()).unwrap();
        child.wait_with_output().unwrap()
    }

    pub async fn apply_yaml(&self, yaml: &str) {
        let output = self.kubectl_apply(yaml);
        assert!(output.status.success(), "apply failed: {}\n{yaml}", String::from_utf8_lossy(&output.stderr));
    }

    /// Applies what must be rejected; returns the API server's message.
    pub async fn apply_yaml_expect_error(&self, yaml: &str) -> String {
        let output = self.kubectl_apply(yaml);
        assert!(!output.status.success(), "expected a rejection of:\n{yaml}");
        String::from_utf8_lossy(&output.stderr).into_owned()
    }

    /// `helm upgrade --install` of charts/gradients serving every namespace (`clusterWide`).
    pub fn helm_install_chart(&self) {
        self.helm_install(&["--set", "clusterWide=true"]);
    }

    /// `helm upgrade --install` of charts/gradients serving only `namespaces` (namespaced Roles
    /// there, the default mode); they must exist.
    pub fn helm_install_chart_for(&self, namespaces: &[&str]) {
        self.helm_install_chart_for_with(namespaces, &[]);
    }

    /// As [`Cluster::helm_install_chart_for`], with more `--set`/`--set-json` arguments.
    pub fn helm_install_chart_for_with(&self, namespaces: &[&str], values: &[&str]) {
        let list = serde_json::to_string(namespaces).unwrap();
        let watch = format!("watchNamespaces={list}");
        let mut all = vec!["--set", "clusterWide=false", "--set-json", &watch];
        all.extend(values);
        self.helm_install(&all);
    }

    /// With no in-cluster replica (the test runs the operator itself) and values for the fake
    /// cluster: nothing is really stored or pulled, so the artifacts are a `kwok://` prefix the
    /// operator passes through as it is (S3 is tested against a real server in `tests/s3/`, the
    /// claim on the real node in `real_node_e2e`).
    fn helm_install(&self, values: &[&str]) {
        let tolerations = r#"[{"key":"nvidia.com/gpu","operator":"Exists","effect":"NoSchedule"}]"#;
        let status = Command::new("helm")
            .args(["upgrade", "--install", "gradients"])
            .arg(root().join("charts/gradients"))
            .args(["--namespace", RELEASE_NAMESPACE, "--create-namespace", "--wait", "--timeout", "60s"])
            .args(["--set", "replicaCount=0", "--set", "workloads.artifacts=kwok://gradients-e2e/artifacts"])
            .args(["--set-json", &format!("workloads.prepare.tolerations={tolerations}")])
            .args(["--set-json", &format!("workloads.allowedSources={ALLOWED_SOURCES}")])
            .args(values)
            .status()
            .expect("helm on PATH (e2e/cluster env)");
        assert!(status.success(), "helm install failed");
    }

    pub async fn fresh_namespace(&self, prefix: &str) -> String {
        let suffix = format!("{:x}", std::process::id() ^ (Utc::now().timestamp_subsec_nanos()));
        let name = format!("{prefix}-{suffix}");
        let namespace = Namespace {
            metadata: ObjectMeta { name: Some(name.clone()), ..ObjectMeta::default() },
            ..Namespace::default()
        };
        Api::<Namespace>::all(self.client.clone()).create(&PostParams::default(), &namespace).await.unwrap();
        name
    }

    pub async fn delete_namespace(&self, name: &str) {
        let _ = Api::<Namespace>::all(self.client.clone()).delete(name, &DeleteParams::default()).await;
    }

    /// The (first) pod of a Job, once the Job controller has created it.
    pub async fn wait_for_job_pod(&self, ns: &str, job: &str) -> String {
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), ns);
        let selector = ListParams::default().labels(&format!("batch.kubernetes.io/job-name={job}"));
        let mut found = None;
        let deadline = Instant::now() + Duration::from_secs(90);
        while found.is_none() {
            assert!(Instant::now() < deadline, "no pod for Job {ns}/{job} after 90 s");
            found = pods.list(&selector).await.ok().and_then(|l| l.items.first().map(|p| p.name_any()));
            if found.is_none() {
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
        }
        found.unwrap()
    }

    /// The pod once the scheduler bound it and the (fake) kubelet runs it.
    pub async fn wait_for_scheduled_pod(&self, ns: &str, name: &str) -> Pod {
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), ns);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let pod = pods.get(name).await.unwrap();
            let bound = pod.spec.as_ref().and_then(|s| s.node_name.clone()).is_some();
            let running = pod.status.as_ref().and_then(|s| s.phase.clone()).as_deref() == Some("Running");
            if bound && running {
                return pod;
            }
            let conditions = pod.status.as_ref().and_then(|s| s.conditions.clone()).unwrap_or_default();
            assert!(Instant::now() < deadline, "pod {ns}/{name} not running after 60 s: {conditions:?}");
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }

    /// Terminates the pod's containers like a kubelet, with an optional termination message.
    pub fn finish_pod(&self, ns: &str, pod: &str, exit_code: i32, message: Option<&str>) {
        let mut command = Command::new(root().join("e2e/finish-pod"));
        command.args([ns, pod, "--exit-code", &exit_code.to_string()]);
        if let Some(message) = message {
            command.args(["--message", message]);
        }
        let status = command.status().expect("e2e/finish-pod");
        assert!(status.success(), "finish-pod {ns}/{pod} failed");
    }

    pub async fn network_policies(&self, ns: &str) -> Vec<String> {
        let api: Api<NetworkPolicy> = Api::namespaced(self.client.clone(), ns);
        api.list(&ListParams::default()).await.unwrap().items.iter().map(|p| p.name_any()).collect()
    }
}

/// An Evaluation as the Task controller writes it, complete, finished at `finished_at`, with
/// one evaluated submission per (miner, test and synthetic loss).
pub async fn complete_evaluation(
    cluster: &Cluster,
    ns: &str,
    name: &str,
    finished_at: DateTime<Utc>,
    losses: &[(&str, f64)],
) {
    use gradients::api::evaluation::{EvaluationPhase, EvaluationStatus, SubmissionResult};
    use kube::api::{Patch, PatchParams};
    let submitted = finished_at.to_rfc3339();
    let submissions: String = losses
        .iter()
        .map(|(m, _)| {
            format!("  - {{miner: {m}, submission: {name}-{m}-1, artifactUri: /a, submittedAt: \"{submitted}\"}}\n")
        })
        .collect();
    cluster
        .apply_yaml(&format!(
            "apiVersion: gradients.io/v1alpha1
kind: Evaluation
metadata: {{name: {name}, namespace: {ns}}}
spec:
  task: {name}
  taskType: InstructText
  origin: Organic
  baseModelUri: /m
  baseModelParamsB: 3
  hours: 1
  dataUri: /d
  gpuClass: h100
  submissions:
{submissions}"
        ))
        .await;
    let results = losses
        .iter()
        .map(|(miner, loss)| SubmissionResult {
            miner: miner.to_string(),
            state: ResultState::Evaluated,
            test_loss: Some(*loss),
            synth_loss: Some(*loss),
            weights_sha256: Some(format!("{name}-{miner}")),
            ..SubmissionResult::default()
        })
        .collect();
    let status = EvaluationStatus {
        phase: EvaluationPhase::Complete,
        finished_at: Some(finished_at),
        results,
        ..EvaluationStatus::default()
    };
    let patch = serde_json::json!({"apiVersion": "gradients.io/v1alpha1", "kind": "Evaluation", "status": status});
    let api: Api<Evaluation> = Api::namespaced(cluster.client.clone(), ns);
    api.patch_status(name, &PatchParams::apply("e2e-test"), &Patch::Apply(&patch)).await.unwrap();
}

/// The operator binary as a child process, run as the chart's ServiceAccount.
pub struct Operator {
    child: Option<Child>,
    pub address: String,
    pub weights_file: PathBuf,
    pub log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Operator {
    /// Starts `gradients operator` with the configuration the chart rendered into its ConfigMap
    /// and the namespaces its Deployment serves.
    pub fn start(cluster: &Cluster, name: &str) -> Operator {
        Operator::start_with(cluster, name, "")
    }

    /// As [`Operator::start`], with `extra` appended to the configuration (e.g. a `lifecycle:`).
    pub fn start_with(cluster: &Cluster, name: &str, extra: &str) -> Operator {
        Operator::start_as(cluster, name, &format!("e2e-{name}"), &[], extra)
    }

    /// As [`Operator::start`], as replica `identity` (a restarted pod keeps its name, a new
    /// replica has its own) with `env` added (e.g. the lease's name and duration).
    pub fn start_as(cluster: &Cluster, name: &str, identity: &str, env: &[(&str, &str)], extra: &str) -> Operator {
        let dir = tempfile::tempdir().unwrap();
        let config = cluster.kubectl(&[
            "get",
            "configmap",
            "gradients-operator-config",
            "-n",
            RELEASE_NAMESPACE,
            "-o",
            "jsonpath={.data.config\\.yaml}",
        ]);
        let config_path = dir.path().join("config.yaml");
        std::fs::write(&config_path, format!("{config}\n{extra}")).unwrap();
        let namespaces = cluster.kubectl(&[
            "get",
            "deployment",
            "gradients-operator",
            "-n",
            RELEASE_NAMESPACE,
            "-o",
            r#"jsonpath={.spec.template.spec.containers[0].env[?(@.name=="GRADIENTS_WATCH_NAMESPACES")].value}"#,
        ]);
        let address = format!("127.0.0.1:{}", free_port());
        let weights_file =
            std::env::temp_dir().join(format!("gradients-e2e-weights-{}-{name}.json", std::process::id()));
        let log = std::env::temp_dir().join(format!("gradients-e2e-operator-{}-{name}.log", std::process::id()));
        let log_file = std::fs::File::create(&log).unwrap();
        // The scale benchmark measures a release build (e2e/bench-scale sets it).
        let binary = std::env::var("GRADIENTS_E2E_OPERATOR_BIN").unwrap_or(env!("CARGO_BIN_EXE_gradients").to_string());
        let child = Command::new(binary)
            .arg("operator")
            .arg("--config")
            .arg(&config_path)
            .args(["--http-address", &address, "--identity", identity])
            .args(["--lease-namespace", RELEASE_NAMESPACE, "--as", SERVICE_ACCOUNT])
            .arg("--weights-file")
            .arg(&weights_file)
            .env("GRADIENTS_WATCH_NAMESPACES", namespaces.trim())
            .env("RUST_LOG", "info,kube=warn,gradients=debug")
            .envs(env.iter().copied())
            .stdout(log_file.try_clone().unwrap())
            .stderr(log_file)
            .spawn()
            .expect("start the operator");
        eprintln!("operator {name}: pid {}, log {}", child.id(), log.display());
        Operator { child: Some(child), address, weights_file, log, _dir: dir }
    }

    /// Until this replica is ready and holds the lease (a standby is ready too).
    pub async fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if self.get("/ready").await.starts_with("ready") && self.leads().await {
                return;
            }
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                panic!("operator exited with {status}: {}", std::fs::read_to_string(&self.log).unwrap_or_default());
            }
            assert!(
                Instant::now() < deadline,
                "operator not ready: {}",
                std::fs::read_to_string(&self.log).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }

    /// The body of a GET, or an empty string when the server does not answer.
    pub async fn get(&self, path: &str) -> String {
        http_get_ok(&self.address, path).await.unwrap_or_default()
    }

    /// SIGKILL, as a crash or an OOM kill would: no release of anything; waits for the exit.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Whether the process still runs (it exits by itself when it loses the lease).
    pub fn running(&mut self) -> bool {
        self.child.as_mut().is_some_and(|c| c.try_wait().ok().flatten().is_none())
    }

    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Whether this replica holds the lease and runs the controllers (its /metrics says so).
    /// (The sample's own line: the gauge's HELP text begins "1 while this replica ...".)
    pub async fn leads(&self) -> bool {
        self.get("/metrics").await.lines().any(|line| line == "gradients_leader 1")
    }

    /// SIGTERM, then wait for a graceful exit (it releases the Lease).
    pub async fn stop(&mut self) {
        let Some(mut child) = self.child.take() else { return };
        let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                assert!(
                    status.success(),
                    "operator exit status {status}: {}",
                    std::fs::read_to_string(&self.log).unwrap_or_default()
                );
                return;
            }
            if Instant::now() > deadline {
                // Where each thread is, for the report (a hung exit was found this way); skipped
                // where gdb is not installed.
                let pid = child.id().to_string();
                let _ = Command::new("gdb").args(["-p", &pid, "-batch", "-ex", "thread apply all bt"]).status();
                let _ = child.kill();
                panic!("operator did not stop within 30 s after SIGTERM");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The body of a plain-HTTP GET of `path` at `address` (`HOST:PORT`) when it answers 200.
pub async fn http_get_ok(address: &str, path: &str) -> Option<String> {
    let mut stream = tokio::net::TcpStream::connect(address).await.ok()?;
    let request = format!("GET {path} HTTP/1.1\r\nhost: {address}\r\nconnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.ok()?;
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response).await;
    match response.split_once("\r\n\r\n") {
        Some((head, body)) if head.starts_with("HTTP/1.1 200") => Some(body.to_string()),
        _ => None,
    }
}

/// A local TCP port free at the time of the call.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Polls `check` until it holds; fails with `what` after `limit`.
pub async fn wait_until<F, Fut>(what: &str, limit: Duration, check: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    while !check().await {
        assert!(Instant::now() < deadline, "timed out after {limit:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// The records of complete Evaluations in the input format of `gradients score` (README),
/// written from the objects' fields independently of the operator's own conversion.
pub fn records_export(evaluations: &[Evaluation], now: DateTime<Utc>) -> serde_json::Value {
    let tasks: Vec<serde_json::Value> = evaluations
        .iter()
        .map(|evaluation| {
            let status = evaluation.status.clone().unwrap();
            let submissions: Vec<serde_json::Value> = evaluation
                .spec
                .submissions
                .iter()
                .map(|entry| {
                    let result = status.results.iter().find(|r| r.miner == entry.miner).unwrap();
                    let mut record = serde_json::json!({"miner": entry.miner, "submitted_at": entry.submitted_at});
                    if result.state == ResultState::Evaluated {
                        record["test_loss"] = serde_json::json!(result.test_loss);
                        record["synth_loss"] = serde_json::json!(result.synth_loss);
                        record["weights_sha256"] = serde_json::json!(result.weights_sha256);
                    }
                    record
                })
                .collect();
            serde_json::json!({
                "id": evaluation.name_any(),
                "type": evaluation.spec.task_type,
                "model_params_b": evaluation.spec.base_model_params_b,
                "hours": evaluation.spec.hours,
                "finished_at": status.finished_at.unwrap(),
                "submissions": submissions,
            })
        })
        .collect();
    serde_json::json!({"now": now, "tasks": tasks})
}

/// `gradients score --input -`: the audited `{"miner": weight_u16}`.
pub fn gradients_score(input: &serde_json::Value) -> BTreeMap<String, u64> {
    let mut child = Command::new(env!("CARGO_BIN_EXE_gradients"))
        .args(["score", "--input", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input.to_string().as_bytes()).unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "gradients score failed on {input}");
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    report["miners"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["miner"].as_str().unwrap().to_string(), m["weight_u16"].as_u64().unwrap()))
        .collect()
}
