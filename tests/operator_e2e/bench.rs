//! The scale benchmark (issue 13), run by `e2e/bench-scale TASKS MINERS`: TASKS Tasks of MINERS
//! miners applied at once to the KWOK fake GPU nodes, the kubelet played for every pod (each
//! running a time drawn below `GRADIENTS_BENCH_POD_SECONDS`, 0 by default, and each evaluation
//! reporting losses of its own), and the figures printed: time from apply to every trainer pod
//! bound and to every Task Succeeded, the operator's peak RSS and CPU time, the API requests
//! per Task by verb and resource (the API server's own `apiserver_request_total`: the operator,
//! the Job controller, the scheduler and KWOK; this harness's own requests are counted and
//! taken off), the reconcile and Leaderboard recompute latency p50/p99 from the operator's
//! histogram, and the CPU time each control-plane process used meanwhile (on a small machine
//! they, not the operator, are the limit). In CI it runs tiny (2 Tasks of 2 miners) so that it
//! keeps working; its figures are measured, never asserted.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use gradients::api::task::TaskPhase;
use gradients::workloads::labels;
use kube::api::ListParams;
use kube::{Api, ResourceExt};

use crate::kubelet::{RunTimes, finish_due_pods};
use crate::support::*;

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// `apiserver_request_total` summed by (verb, resource/subresource) for the operator's kinds.
fn api_requests(cluster: &Cluster) -> BTreeMap<String, f64> {
    let metrics = cluster.kubectl(&["get", "--raw", "/metrics"]);
    let mut counts = BTreeMap::new();
    for line in metrics.lines().filter(|l| l.starts_with("apiserver_request_total{")) {
        let Some((labels, value)) = line.rsplit_once(' ') else { continue };
        let label = |name: &str| {
            labels.split(&format!("{name}=\"")).nth(1).and_then(|rest| rest.split('"').next()).unwrap_or_default()
        };
        let resource = label("resource");
        let kinds = ["tasks", "minersubmissions", "evaluations", "leaderboards", "miners", "jobs", "pods", "leases"];
        if !kinds.contains(&resource) {
            continue;
        }
        let subresource = label("subresource");
        let key = match subresource {
            "" => format!("{} {resource}", label("verb")),
            sub => format!("{} {resource}/{sub}", label("verb")),
        };
        *counts.entry(key).or_default() += value.parse::<f64>().unwrap_or(0.0);
    }
    counts
}

/// The `q` quantile of a Prometheus histogram's cumulative buckets, interpolated linearly
/// within the bucket as `histogram_quantile` does.
fn quantile(buckets: &[(f64, f64)], q: f64) -> f64 {
    let Some(&(_, total)) = buckets.last() else { return f64::NAN };
    let rank = q * total;
    let mut previous = (0.0, 0.0);
    for &(le, count) in buckets {
        if count >= rank {
            if le.is_infinite() {
                return previous.0;
            }
            let within = if count > previous.1 { (rank - previous.1) / (count - previous.1) } else { 0.0 };
            return previous.0 + (le - previous.0) * within;
        }
        previous = (le, count);
    }
    previous.0
}

/// A controller's reconcile-duration buckets from the operator's /metrics.
fn reconcile_buckets(metrics: &str, controller: &str) -> Vec<(f64, f64)> {
    let prefix = format!("gradients_reconcile_duration_seconds_bucket{{controller=\"{controller}\",le=\"");
    metrics
        .lines()
        .filter_map(|l| l.strip_prefix(prefix.as_str()))
        .filter_map(|rest| {
            let (le, value) = rest.split_once("\"} ")?;
            let le = if le == "+Inf" { f64::INFINITY } else { le.parse().ok()? };
            Some((le, value.trim().parse().ok()?))
        })
        .collect()
}

/// Peak resident set (kB) and CPU seconds of a process, from /proc.
fn process_figures(pid: u32) -> (u64, f64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let peak = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0);
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command's closing parenthesis: utime and stime are the 12th and 13th.
    let fields: Vec<&str> =
        stat.rsplit_once(')').map(|(_, rest)| rest.split_whitespace().collect()).unwrap_or_default();
    let ticks: u64 = fields.get(11).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0)
        + fields.get(12).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    (peak, ticks as f64 / 100.0)
}

/// CPU seconds used so far by each control-plane process of the machine (the API server, etcd,
/// the scheduler, the controller manager, KWOK), by command name: who the cores went to.
fn control_plane_cpu() -> BTreeMap<String, f64> {
    let names = ["kube-apiserver", "etcd", "kube-scheduler", "kube-controller", "kwok"];
    let mut cpu = BTreeMap::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else { continue };
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        if let Some(name) = names.iter().find(|n| comm.trim() == **n) {
            *cpu.entry(name.to_string()).or_default() += process_figures(pid).1;
        }
    }
    cpu
}

#[tokio::test]
#[ignore = "needs the e2e cluster: e2e/bench-scale, or e2e/test -- cargo test --test operator_e2e -- --ignored"]
async fn bench_scale() {
    let count = env_or("GRADIENTS_BENCH_TASKS", 2);
    let miners = env_or("GRADIENTS_BENCH_MINERS", 2);
    // With a GPU quota: Kueue's controller admits the trainer and evaluation Jobs within it.
    let kueue_gpus = env_or("GRADIENTS_BENCH_KUEUE_GPUS", 0);
    let cluster = Cluster::connect().await;
    let ns = cluster.fresh_namespace("e2e-bench").await;
    let kueue = if kueue_gpus > 0 {
        let kueue = crate::kueue::Kueue::start(&cluster).await;
        cluster.apply_yaml(&crate::kueue::queues(&ns, kueue_gpus)).await;
        cluster.helm_install_chart_for_with(&[&ns], &["--set", "workloads.kueueQueue=gpu-queue"]);
        Some(kueue)
    } else {
        cluster.helm_install_chart_for(&[&ns]);
        None
    };
    let pool: String = (0..miners)
        .map(|m| {
            format!(
                "apiVersion: gradients.io/v1alpha1\nkind: Miner\nmetadata: {{name: m{m}, namespace: {ns}, labels: {{pool: bench}}}}\nspec: {{strategy: lora-fast}}\n---\n"
            )
        })
        .collect();
    cluster.apply_yaml(&pool).await;
    cluster
        .apply_yaml(&format!(
            "apiVersion: gradients.io/v1alpha1\nkind: Leaderboard\nmetadata: {{name: main, namespace: {ns}}}\nspec: {{}}\n"
        ))
        .await;
    // Each workload pod runs a time drawn uniformly below this before it ends; 0 (the default, as
    // in every figure before it existed) ends each at the first pass that sees it running.
    let pod_seconds = env_or("GRADIENTS_BENCH_POD_SECONDS", 0);
    // Four workloads in a row per Task (prepare, trainer, seal, evaluation) run their time.
    let limit = Duration::from_secs(120 + 2 * count * miners + 4 * pod_seconds);
    // A trainer waits for its GPUs as long as the benchmark may run: a 2-core control plane can
    // take over an hour to bind 16,000 pods, and the default pending timeout (1 h) then failed
    // the Tasks whose trainers were bound last, which measures the machine, not the operator.
    let pending = format!("lifecycle: {{pendingTimeoutS: {}}}\n", limit.as_secs());
    let mut operator = Operator::start_with(&cluster, "bench", &pending);
    operator.wait_ready().await;
    let before = api_requests(&cluster);
    let cpu_before = control_plane_cpu();

    // Small models (1 GPU per trainer), so that the fake nodes' GPUs bound how many run at once.
    let timing = format!(
        "hours: 1\n  minersPerTask: {miners}\n  minerSelector: {{pool: bench}}\n  baseline: false\n  evaluateBase: false"
    );
    let tasks: String = (0..count)
        .map(|i| format!("{}---\n", crate::task_yaml(&ns, &format!("b{i}"), &timing)))
        .collect::<String>()
        .replace("qwen2.5-3b, paramsB: 3", "qwen2.5-0.5b, paramsB: 0.5");
    let applied = Instant::now();
    cluster.apply_yaml(&tasks).await;

    let task_api: Api<gradients::api::Task> = Api::namespaced(cluster.client.clone(), &ns);
    let (mut bound_at, mut succeeded_at) = (None, None);
    let mut last_progress = 0;
    // Every trainer pod seen running, so bound: the pod garbage collector deletes ended pods
    // past its threshold (12,500), so at scale they never all exist at once.
    let mut trainers_bound = std::collections::HashSet::new();
    // The Tasks are listed every pass until there are a hundred, then less often: at a thousand,
    // each list is tens of MB that the API server serializes and this debug build reads.
    let list_every = count.div_ceil(100).max(1);
    // This harness's own requests, taken off the API server's counts.
    let mut own: BTreeMap<String, f64> = BTreeMap::new();
    let mut count_own = |key: &str, n: usize| *own.entry(key.to_string()).or_default() += n as f64;
    let mut run_times = RunTimes::up_to(Duration::from_secs(pod_seconds));
    let mut pass = 0u64;
    while succeeded_at.is_none() {
        pass += 1;
        assert!(applied.elapsed() < limit, "the benchmark did not finish within {limit:?}");
        let played = finish_due_pods(&cluster, &ns, &mut run_times).await;
        count_own("PATCH pods/status", played.ended.len());
        count_own("LIST pods", 1);
        let trainers = played.running.into_iter().filter(|(_, role)| role.as_deref() == Some(labels::ROLE_TRAINER));
        trainers_bound.extend(trainers.map(|(name, _)| name));
        if bound_at.is_none() && kueue.is_none() && trainers_bound.len() as u64 >= count * miners {
            bound_at = Some(applied.elapsed());
            println!("  (progress) all trainer pods bound after {:?}", applied.elapsed());
        }
        if pass % list_every == 1 % list_every {
            count_own("LIST tasks", 1);
            let all = task_api.list(&ListParams::default()).await.unwrap().items;
            let failed: Vec<String> =
                all.iter().filter(|t| t.phase() == TaskPhase::Failed).map(|t| t.name_any()).collect();
            assert!(failed.is_empty(), "Tasks failed: {failed:?}");
            let done = all.iter().filter(|t| t.phase() == TaskPhase::Succeeded).count();
            if applied.elapsed().as_secs() >= last_progress + 60 {
                last_progress = applied.elapsed().as_secs();
                let (peak_kb, cpu) = operator.pid().map(process_figures).unwrap_or_default();
                let cached = crate::retention::cached_submissions(&operator).await;
                println!(
                    "  (progress) {last_progress} s: {done} of {count} Tasks Succeeded, {} trainer pods bound, operator peak RSS {} MB, CPU {cpu:.0} s, {cached} MinerSubmissions cached",
                    trainers_bound.len(),
                    peak_kb / 1024
                );
            }
            if all.len() as u64 == count && done as u64 == count {
                succeeded_at = Some(applied.elapsed());
            }
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let cpu_after = control_plane_cpu();
    let mut after = api_requests(&cluster);
    for (key, n) in &own {
        if let Some(value) = after.get_mut(key) {
            *value -= n;
        }
    }
    let metrics = operator.get("/metrics").await;

    let (peak_kb, cpu) = operator.pid().map(process_figures).unwrap_or_default();

    println!(
        "bench-scale: {count} Tasks x {miners} miners ({} trainer pods), each pod running up to {pod_seconds} s",
        count * miners
    );
    match &kueue {
        Some(kueue) => {
            let (peak_kb, cpu) = process_figures(kueue.pid());
            println!("  queued by Kueue within {kueue_gpus} GPUs: its peak RSS {} MB, CPU {cpu:.1} s", peak_kb / 1024);
        }
        None => match bound_at {
            Some(bound) => println!("  all trainer pods bound after {bound:?}"),
            None => println!("  all trainer pods bound: not observed"),
        },
    }
    println!("  all Tasks Succeeded after  {:?}", succeeded_at.unwrap());
    println!("  operator peak RSS {} MB, CPU {cpu:.1} s", peak_kb / 1024);
    // Those of Tasks ended more than --keep-finished-jobs-seconds ago are archived, not cached.
    println!("  MinerSubmissions cached at the end: {}", crate::retention::cached_submissions(&operator).await);
    for controller in ["task", "submission", "leaderboard"] {
        let buckets = reconcile_buckets(&metrics, controller);
        println!(
            "  {controller} reconciles {}: p50 {:.1} ms, p99 {:.1} ms",
            buckets.last().map(|b| b.1).unwrap_or(0.0),
            quantile(&buckets, 0.5) * 1000.0,
            quantile(&buckets, 0.99) * 1000.0
        );
    }
    let skipped: Vec<String> = metrics
        .lines()
        .filter_map(|l| l.strip_prefix("gradients_reconcile_triggers_skipped_total{controller=\""))
        .filter_map(|rest| rest.split_once("\"} "))
        .map(|(controller, n)| format!("{controller} {}", n.trim()))
        .collect();
    println!("  children's changes dropped while their owner waited for its turn: {}", skipped.join(", "));
    let per_task: Vec<String> = after
        .iter()
        .map(|(key, value)| (key, (value - before.get(key).copied().unwrap_or(0.0)) / count as f64))
        .filter(|(_, per)| *per > 0.0)
        .map(|(key, per)| format!("{key} {per:.1}"))
        .collect();
    let total: f64 =
        after.iter().map(|(key, value)| value - before.get(key).copied().unwrap_or(0.0)).sum::<f64>() / count as f64;
    println!("  API requests per Task (every client but this harness) {total:.0}: {}", per_task.join(", "));
    let cluster_cpu: Vec<String> = cpu_after
        .iter()
        .map(|(name, after)| format!("{name} {:.0} s", after - cpu_before.get(name).copied().unwrap_or(0.0)))
        .collect();
    println!("  control plane CPU during the run: {}", cluster_cpu.join(", "));
    operator.stop().await;
    cluster.delete_namespace(&ns).await;
    if kueue.is_some() {
        cluster.kubectl(&["delete", "clusterqueue", &ns, "--wait=false"]);
    }
}

#[test]
fn quantiles_interpolate_within_buckets_as_prometheus_does() {
    let buckets = [(0.01, 50.0), (0.1, 90.0), (1.0, 100.0), (f64::INFINITY, 100.0)];
    assert!((quantile(&buckets, 0.5) - 0.01).abs() < 1e-9);
    assert!((quantile(&buckets, 0.7) - 0.055).abs() < 1e-9);
    assert!((quantile(&buckets, 0.99) - 0.91).abs() < 1e-9);
}
