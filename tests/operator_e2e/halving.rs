//! Successive halving across miners (`spec.halving`) in the operator, on the real control plane
//! with fake pods: every miner's first slice, evaluations, the cut, the survivors' second slice
//! continuing from their own first output, and the cut miners ranked below the survivors.

use std::collections::BTreeMap;
use std::time::Duration;

use gradients::api::task::TaskPhase;
use gradients::api::{Evaluation, MinerSubmission, Task};
use gradients::tournament::{WorkKind, WorkloadId};
use gradients::workloads::{prepare, trainer, workload_name};
use kube::Api;

use crate::support::*;
use crate::{SPLIT_SIZES, apply_miner_pool, seal_and_evaluate, task_yaml};

const TASK: &str = "halved";
const MINERS: [&str; 4] = ["miner-a", "miner-b", "miner-c", "miner-d"];

fn id(kind: WorkKind, miner: &str, rung: u32) -> WorkloadId {
    WorkloadId::new(kind, miner, 1).at_rung(rung)
}

fn job(kind: WorkKind, miner: &str, rung: u32) -> String {
    let name = workload_name(TASK, &id(kind, miner, rung));
    if kind == WorkKind::Train { trainer::job_name(&name) } else { name }
}

/// Finishes `miner`'s training, seal and evaluation of `rung` (the evaluation with `loss`).
async fn finish_rung(cluster: &Cluster, ns: &str, miners: &[(&str, f64)], rung: u32) {
    for (miner, _) in miners {
        let pod = cluster.wait_for_job_pod(ns, &job(WorkKind::Train, miner, rung)).await;
        cluster.finish_pod(ns, &pod, 0, None);
    }
    seal_and_evaluate(cluster, ns, TASK, miners, rung).await;
}

#[tokio::test]
#[ignore = "needs the e2e cluster: e2e/test -- cargo test --test operator_e2e -- --ignored"]
async fn successive_halving_runs_its_rungs_in_the_operator() {
    let cluster = Cluster::connect().await;
    let ns = cluster.fresh_namespace("e2e-halving").await;
    cluster.helm_install_chart_for(&[&ns]);
    let mut operator = Operator::start(&cluster, "halving");
    operator.wait_ready().await;
    apply_miner_pool(&cluster, &ns, "halving", &MINERS).await;
    let timing = "hours: 3\n  minersPerTask: 4\n  minerSelector: {pool: halving}\n  baseline: false\n  \
                  evaluateBase: false\n  halving: {eta: 2, rungs: 2}";
    cluster.apply_yaml(&task_yaml(&ns, TASK, timing)).await;
    let pod = cluster.wait_for_job_pod(&ns, &prepare::job_name(TASK, 1)).await;
    cluster.finish_pod(&ns, &pod, 0, Some(SPLIT_SIZES));

    // Rung 1: every miner trains a third of the allotment (1 h of 3), from the base model.
    let submissions: Api<MinerSubmission> = Api::namespaced(cluster.client.clone(), &ns);
    for miner in MINERS {
        let name = workload_name(TASK, &id(WorkKind::Train, miner, 0));
        wait_until("a first-slice MinerSubmission", Duration::from_secs(60), || async {
            submissions.get_opt(&name).await.ok().flatten().is_some()
        })
        .await;
        let spec = submissions.get(&name).await.unwrap().spec;
        assert!((spec.hours - 1.0).abs() < 1e-9 && spec.resume_uri.is_none(), "{spec:?}");
    }
    // c and d have the lower losses here: they continue; a and b are cut.
    let losses = [("miner-a", 2.0), ("miner-b", 3.0), ("miner-c", 0.5), ("miner-d", 1.0)];
    finish_rung(&cluster, &ns, &losses, 0).await;

    // Rung 2: the survivors' second slice (2 h) continues from their own first output.
    for miner in ["miner-c", "miner-d"] {
        let pod_name = cluster.wait_for_job_pod(&ns, &job(WorkKind::Train, miner, 1)).await;
        let pod = cluster.wait_for_scheduled_pod(&ns, &pod_name).await;
        let container = &pod.spec.unwrap().containers[0];
        let args = container.args.clone().unwrap();
        let value = |flag: &str| args.iter().position(|a| a == flag).map(|i| args[i + 1].clone());
        assert_eq!(value("--hours").as_deref(), Some("2"), "{args:?}");
        // The e2e store is a URI the fake pods never read (a claim would be mounted read-only
        // at /resume, S3 fetched): the argument names the miner's own first output.
        let spec = submissions.get(&workload_name(TASK, &id(WorkKind::Train, miner, 1))).await.unwrap().spec;
        let first = format!("/models/{}", id(WorkKind::Train, miner, 0));
        assert!(spec.resume_uri.as_deref().is_some_and(|u| u.ends_with(&first)), "{spec:?}");
        assert_eq!(value("--resume-from"), spec.resume_uri, "{args:?}");
        assert_ne!(value("--output"), spec.resume_uri, "a slice writes an output of its own");
    }
    for miner in ["miner-a", "miner-b"] {
        let name = workload_name(TASK, &id(WorkKind::Train, miner, 1));
        assert!(submissions.get_opt(&name).await.unwrap().is_none(), "{miner} was cut");
    }
    let tasks: Api<Task> = Api::namespaced(cluster.client.clone(), &ns);
    let lifecycle = tasks.get(TASK).await.unwrap().status.unwrap().lifecycle.unwrap();
    let cut: BTreeMap<&str, Option<u32>> =
        lifecycle.entrants.iter().map(|e| (e.name.as_str(), e.eliminated_after)).collect();
    assert_eq!(cut["miner-a"], Some(0), "the status records the cut: {cut:?}");
    assert_eq!((cut["miner-b"], cut["miner-c"], cut["miner-d"]), (Some(0), None, None));

    // d ends worse than a's first slice, and still ranks above both cut miners.
    finish_rung(&cluster, &ns, &[("miner-c", 0.4), ("miner-d", 2.5)], 1).await;
    wait_until("the task to succeed", Duration::from_secs(90), || async {
        tasks.get(TASK).await.map(|t| t.phase() == TaskPhase::Succeeded).unwrap_or(false)
    })
    .await;
    let evaluation = Api::<Evaluation>::namespaced(cluster.client.clone(), &ns).get(TASK).await.unwrap();
    let ranks: BTreeMap<String, Option<u32>> =
        evaluation.status.unwrap().results.into_iter().map(|r| (r.miner, r.rank)).collect();
    let expected: BTreeMap<String, Option<u32>> =
        [("miner-a", 3), ("miner-b", 4), ("miner-c", 1), ("miner-d", 2)].map(|(m, r)| (m.to_string(), Some(r))).into();
    assert_eq!(ranks, expected);
    let rungs: BTreeMap<String, Option<u32>> =
        evaluation.spec.submissions.into_iter().map(|s| (s.miner, s.rung)).collect();
    assert_eq!(rungs["miner-c"], Some(1));
    assert_eq!(rungs["miner-a"], Some(0));
    operator.stop().await;
    cluster.delete_namespace(&ns).await;
}
