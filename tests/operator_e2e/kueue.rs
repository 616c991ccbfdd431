//! Kueue for real (issue 13): Kueue's own controller, built from its Go module
//! (`e2e/versions.env`), admits the trainer and evaluation Jobs by a GPU quota smaller than the
//! demand. Queued trainers wait without timing out, and their hours start at admission.
//!
//! Kueue runs as a process beside the control plane (like the operator here) without its
//! admission webhooks: the operator creates queued Jobs suspended itself, so nothing depends on
//! Kueue's Job defaulting.

use std::process::{Child, Command};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use gradients::api::submission::SubmissionPhase;
use gradients::api::task::TaskPhase;
use gradients::api::{Evaluation, MinerSubmission, Task};
use gradients::tournament::{WorkKind, WorkloadId};
use gradients::workloads::{prepare, trainer, workload_name};
use k8s_openapi::api::batch::v1::Job;
use kube::Api;

use crate::support::*;
use crate::{SPLIT_SIZES, apply_miner_pool, seal_and_evaluate, task_yaml};

const TASK: &str = "queued";
const MINERS: [&str; 4] = ["miner-a", "miner-b", "miner-c", "miner-d"];
/// Each miner's hours (54 s) and the lifecycle's grace: the latest a training may end, counted
/// from its start.
const HOURS: f64 = 0.015;
const GRACE_S: i64 = 5;
/// Far shorter than the queued trainers wait.
const PENDING_TIMEOUT_S: i64 = 25;

/// Kueue's controller manager, a child process of the test; killed when dropped.
pub(crate) struct Kueue {
    child: Child,
    log: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Kueue {
    /// Applies Kueue's CRDs (built beside the `kueue` binary on PATH by e2e/build-tools) and
    /// starts its controller for Jobs, ready when its readiness probe answers.
    pub(crate) async fn start(cluster: &Cluster) -> Kueue {
        let binary = which("kueue");
        let crds = binary.parent().unwrap().join("kueue-crds");
        cluster.kubectl(&["apply", "--server-side", "--force-conflicts", "-f", crds.to_str().unwrap()]);
        cluster.kubectl(&["wait", "--for=condition=Established", "crd", "--all", "--timeout=60s"]);
        if !cluster.kubectl(&["get", "namespaces", "-o", "name"]).contains("namespace/kueue-system") {
            cluster.kubectl(&["create", "namespace", "kueue-system"]);
        }
        let dir = tempfile::tempdir().unwrap();
        // Without its internal certificate management Kueue reads a serving certificate for its
        // webhook server (from `certDir`) and one for metrics from the fixed path its Deployment
        // mounts; neither is used here (no webhook is registered, metrics are off).
        self_signed(dir.path());
        self_signed(std::path::Path::new("/etc/kueue/metrics/certs"));
        let probe = free_port();
        // Its client's default limit (20 requests/s) admitted about one Job a second at 1,000
        // Tasks; the e2e cluster's controller-manager gets 200/s too (e2e/cluster). Its workers
        // per kind are those of Kueue's shipped configuration
        // (config/components/manager/controller_manager_config.yaml): without them each kind gets
        // controller-runtime's one, and at 1,000 Tasks finished Jobs held their quota for minutes.
        let config = format!(
            "apiVersion: config.kueue.x-k8s.io/v1beta2\nkind: Configuration\nnamespace: kueue-system\n\
             health: {{healthProbeBindAddress: \"127.0.0.1:{probe}\"}}\nmetrics: {{bindAddress: \"0\"}}\n\
             webhook: {{host: 127.0.0.1, port: {}, certDir: {}}}\nleaderElection: {{leaderElect: false}}\n\
             internalCertManagement: {{enable: false}}\nintegrations: {{frameworks: [batch/job]}}\n\
             clientConnection: {{qps: 200, burst: 400}}\n\
             controller: {{groupKindConcurrency: {{Job.batch: 5, Workload.kueue.x-k8s.io: 5, \
             LocalQueue.kueue.x-k8s.io: 1, ClusterQueue.kueue.x-k8s.io: 1, ResourceFlavor.kueue.x-k8s.io: 1}}}}\n",
            free_port(),
            dir.path().display()
        );
        std::fs::write(dir.path().join("config.yaml"), config).unwrap();
        let log = std::env::temp_dir().join(format!("gradients-e2e-kueue-{}.log", std::process::id()));
        let out = std::fs::File::create(&log).unwrap();
        let child = Command::new(&binary)
            .arg("--config")
            .arg(dir.path().join("config.yaml"))
            // Its on-demand visibility API server needs certificates of its own; not used here.
            .arg("--feature-gates=VisibilityOnDemand=false")
            .env("KUBECONFIG", &cluster.kubeconfig)
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .expect("start kueue");
        eprintln!("kueue: pid {}, log {}", child.id(), log.display());
        let mut kueue = Kueue { child, log, _dir: dir };
        let deadline = Instant::now() + Duration::from_secs(90);
        while http_get_ok(&format!("127.0.0.1:{probe}"), "/readyz").await.is_none() {
            if let Ok(Some(status)) = kueue.child.try_wait() {
                panic!("kueue exited with {status}: {}", std::fs::read_to_string(&kueue.log).unwrap_or_default());
            }
            assert!(Instant::now() < deadline, "kueue not ready after 90 s; log {}", kueue.log.display());
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        kueue
    }
}

impl Kueue {
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Kueue {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn which(program: &str) -> std::path::PathBuf {
    std::env::var_os("PATH")
        .and_then(|path| std::env::split_paths(&path).map(|d| d.join(program)).find(|p| p.is_file()))
        .unwrap_or_else(|| panic!("{program} not on PATH (e2e/cluster env puts e2e/build-tools' bin there)"))
}

/// A self-signed key pair for 127.0.0.1 in `dir` (tls.crt, tls.key), unless one is there.
fn self_signed(dir: &std::path::Path) {
    if dir.join("tls.crt").is_file() && dir.join("tls.key").is_file() {
        return;
    }
    std::fs::create_dir_all(dir).unwrap();
    let status = Command::new("openssl")
        .args(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "3650", "-subj", "/CN=127.0.0.1"])
        .args(["-addext", "subjectAltName=IP:127.0.0.1", "-keyout"])
        .arg(dir.join("tls.key"))
        .arg("-out")
        .arg(dir.join("tls.crt"))
        .stderr(std::process::Stdio::null())
        .status()
        .expect("openssl");
    assert!(status.success(), "openssl could not write a certificate into {}", dir.display());
}

/// A flavor, a ClusterQueue of `gpus` GPUs serving only `ns`, and its LocalQueue `gpu-queue`. Its
/// CPU and memory quotas never bind: at 4,000 GPUs a quota of 10,000 CPUs had let 1,250 trainers
/// (8 CPUs each) run, not 4,000.
pub(crate) fn queues(ns: &str, gpus: u64) -> String {
    format!(
        "apiVersion: kueue.x-k8s.io/v1beta2
kind: ResourceFlavor
metadata: {{name: e2e-gpu}}
---
apiVersion: kueue.x-k8s.io/v1beta2
kind: ClusterQueue
metadata: {{name: {ns}}}
spec:
  namespaceSelector: {{matchLabels: {{kubernetes.io/metadata.name: {ns}}}}}
  queueingStrategy: StrictFIFO
  resourceGroups:
  - coveredResources: [cpu, memory, nvidia.com/gpu]
    flavors:
    - name: e2e-gpu
      resources:
      - {{name: cpu, nominalQuota: 1000000}}
      - {{name: memory, nominalQuota: 100000Ti}}
      - {{name: nvidia.com/gpu, nominalQuota: {gpus}}}
---
apiVersion: kueue.x-k8s.io/v1beta2
kind: LocalQueue
metadata: {{name: gpu-queue, namespace: {ns}}}
spec: {{clusterQueue: {ns}}}
"
    )
}

fn trainer_job(miner: &str) -> String {
    trainer::job_name(&workload_name(TASK, &WorkloadId::new(WorkKind::Train, miner, 1)))
}

fn suspended(job: &Job) -> bool {
    job.spec.as_ref().and_then(|s| s.suspend) == Some(true)
}

fn time(t: &Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::Time>) -> Option<DateTime<Utc>> {
    t.as_ref().and_then(gradients::api::conditions::from_time)
}

fn gpus_of(job: &Job) -> u64 {
    let pod = job.spec.as_ref().unwrap().template.spec.as_ref().unwrap();
    let limits = pod.containers[0].resources.as_ref().unwrap().limits.as_ref().unwrap();
    limits["nvidia.com/gpu"].0.parse().unwrap()
}

#[tokio::test]
#[ignore = "needs the e2e cluster: e2e/test -- cargo test --test operator_e2e -- --ignored"]
async fn kueue_admits_trainers_by_quota_and_their_hours_start_at_admission() {
    let cluster = Cluster::connect().await;
    let ns = cluster.fresh_namespace("e2e-kueue").await;
    let _kueue = Kueue::start(&cluster).await;
    cluster.helm_install_chart_for_with(&[&ns], &["--set", "workloads.kueueQueue=gpu-queue"]);
    let lifecycle = format!("lifecycle: {{pendingTimeoutS: {PENDING_TIMEOUT_S}, deadlineGraceS: {GRACE_S}}}\n");
    let mut operator = Operator::start_with(&cluster, "kueue", &lifecycle);
    operator.wait_ready().await;
    apply_miner_pool(&cluster, &ns, "queued", &MINERS).await;
    let timing = format!(
        "hours: {HOURS}\n  minersPerTask: 4\n  minerSelector: {{pool: queued}}\n  baseline: false\n  evaluateBase: false"
    );
    cluster.apply_yaml(&task_yaml(&ns, TASK, &timing)).await;
    let pod = cluster.wait_for_job_pod(&ns, &prepare::job_name(TASK, 1)).await;
    cluster.finish_pod(&ns, &pod, 0, Some(SPLIT_SIZES));

    // Four trainers, GPUs for two: Kueue admits two, the other two wait suspended.
    let jobs: Api<Job> = Api::namespaced(cluster.client.clone(), &ns);
    let first = {
        let name = trainer_job(MINERS[0]);
        wait_until("the first trainer Job", Duration::from_secs(60), || async {
            jobs.get_opt(&name).await.ok().flatten().is_some()
        })
        .await;
        jobs.get(&name).await.unwrap()
    };
    cluster.apply_yaml(&queues(&ns, 2 * gpus_of(&first))).await;
    let split = || async {
        let mut admitted = Vec::new();
        let mut queued = Vec::new();
        for miner in MINERS {
            match jobs.get_opt(&trainer_job(miner)).await.ok().flatten() {
                Some(job) if suspended(&job) => queued.push(miner),
                Some(_) => admitted.push(miner),
                None => {}
            }
        }
        (admitted, queued)
    };
    wait_until("Kueue to admit two trainers and hold two", Duration::from_secs(60), || async {
        let (admitted, queued) = split().await;
        admitted.len() == 2 && queued.len() == 2
    })
    .await;
    let (admitted, queued) = split().await;
    for miner in &admitted {
        let pod = cluster.wait_for_job_pod(&ns, &trainer_job(miner)).await;
        cluster.wait_for_scheduled_pod(&ns, &pod).await;
    }
    let submissions: Api<MinerSubmission> = Api::namespaced(cluster.client.clone(), &ns);
    let phase_of = |miner: &'static str| {
        let submissions = submissions.clone();
        async move {
            let name = workload_name(TASK, &WorkloadId::new(WorkKind::Train, miner, 1));
            submissions.get(&name).await.unwrap().status.unwrap_or_default().phase
        }
    };
    wait_until("the held trainers' submissions to say Queued", Duration::from_secs(30), || async {
        let mut all = true;
        for miner in &queued {
            all &= phase_of(miner).await == SubmissionPhase::Queued;
        }
        all
    })
    .await;

    // The admitted two train for 35 s (within their 54 s); the held two wait far beyond the
    // pending timeout, and keep waiting: no pod, no failure.
    tokio::time::sleep(Duration::from_secs(35)).await;
    for miner in &queued {
        assert_eq!(phase_of(miner).await, SubmissionPhase::Queued, "{miner} waits in the queue");
        let pods = cluster.kubectl(&[
            "get",
            "pods",
            "-n",
            &ns,
            "-l",
            &format!("job-name={}", trainer_job(miner)),
            "-o",
            "name",
        ]);
        assert!(pods.trim().is_empty(), "no pod before admission: {pods}");
    }
    let released = Utc::now();
    for miner in &admitted {
        let pod = cluster.wait_for_job_pod(&ns, &trainer_job(miner)).await;
        cluster.finish_pod(&ns, &pod, 0, None);
    }

    // Their GPUs go to the held trainers (created before the finished ones' evaluations).
    wait_until("Kueue to admit the held trainers", Duration::from_secs(60), || async { split().await.1.is_empty() })
        .await;
    for miner in &queued {
        let job = jobs.get(&trainer_job(miner)).await.unwrap();
        let created = time(&job.metadata.creation_timestamp).unwrap();
        let started = time(&job.status.as_ref().unwrap().start_time).unwrap();
        assert!(started >= released - chrono::Duration::seconds(2), "{miner}'s Job started {started}, at admission");
        assert!((started - created).num_seconds() >= 30, "{miner} waited {} s", (started - created).num_seconds());
        let pod = cluster.wait_for_job_pod(&ns, &trainer_job(miner)).await;
        cluster.wait_for_scheduled_pod(&ns, &pod).await;
    }
    // Past the moment a clock started at creation would have stopped them (hours + grace), and
    // well within the hours counted from admission: they still train.
    let created = time(&jobs.get(&trainer_job(queued[0])).await.unwrap().metadata.creation_timestamp).unwrap();
    let kill_if_counted_from_creation = created + chrono::Duration::seconds((HOURS * 3600.0) as i64 + GRACE_S);
    let wait = (kill_if_counted_from_creation - Utc::now()).num_milliseconds().max(0) as u64 + 5_000;
    tokio::time::sleep(Duration::from_millis(wait)).await;
    for miner in &queued {
        assert_eq!(phase_of(miner).await, SubmissionPhase::Training, "{miner} trains on its own hours");
        let pod = cluster.wait_for_job_pod(&ns, &trainer_job(miner)).await;
        cluster.finish_pod(&ns, &pod, 0, None);
    }
    let losses = [("miner-a", 1.0), ("miner-b", 2.0), ("miner-c", 0.5), ("miner-d", 3.0)];
    seal_and_evaluate(&cluster, &ns, TASK, &losses, 0).await;

    let tasks: Api<Task> = Api::namespaced(cluster.client.clone(), &ns);
    wait_until("the task to succeed", Duration::from_secs(90), || async {
        tasks.get(TASK).await.map(|t| t.phase() == TaskPhase::Succeeded).unwrap_or(false)
    })
    .await;
    let evaluation = Api::<Evaluation>::namespaced(cluster.client.clone(), &ns).get(TASK).await.unwrap();
    let scored = evaluation.status.unwrap().results.iter().filter(|r| r.rank.is_some()).count();
    assert_eq!(scored, 4, "every miner evaluated and ranked, the queued ones too");
    // Kueue managed every trainer and evaluation Job: one admitted Workload each.
    let workloads = cluster.kubectl(&["get", "workloads.kueue.x-k8s.io", "-n", &ns, "-o", "name"]);
    assert_eq!(workloads.lines().count(), 8, "{workloads}");
    operator.stop().await;
    cluster.delete_namespace(&ns).await;
    cluster.kubectl(&["delete", "clusterqueue", &ns, "--wait=false"]);
}
