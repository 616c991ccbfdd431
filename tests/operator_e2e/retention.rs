//! An ended Task's Jobs and their pods go once kept `--keep-finished-jobs-seconds` (issue 13:
//! the operator's caches and the cluster held every Job and pod of every Task ever run); its
//! records stay, and the Leaderboard still counts them. Its MinerSubmissions are then archived:
//! the operator's caches forget them, the API keeps them.

use std::time::Duration;

use gradients::api::evaluation::EvaluationPhase;
use gradients::api::{Evaluation, MinerSubmission, Task};
use gradients::workloads::{label_value, labels};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::api::ListParams;
use kube::{Api, ResourceExt};

use crate::faults::{apply_pool, assert_clean, audit, check_weights, finish_all, restart_rewrites_nothing, task_yaml};
use crate::support::*;

#[tokio::test]
#[ignore = "needs the e2e cluster: e2e/test -- cargo test --test operator_e2e -- --ignored"]
async fn an_ended_tasks_jobs_go_after_the_retention_and_its_records_stay() {
    let cluster = Cluster::connect().await;
    let ns = cluster.fresh_namespace("e2e-retention").await;
    cluster.helm_install_chart_for(&[&ns]);
    apply_pool(&cluster, &ns).await;
    let keep = [("GRADIENTS_KEEP_FINISHED_JOBS_SECONDS", "30")];
    let mut operator = Operator::start_as(&cluster, "retention", "e2e-retention", &keep, "");
    operator.wait_ready().await;
    cluster.apply_yaml(&task_yaml(&ns, "kept")).await;
    finish_all(&cluster, &ns, Duration::from_secs(120)).await;

    // Kept at first, each Job and pod once (for `kubectl logs`).
    let before = audit(&cluster, &ns).await;
    assert_clean(&before);
    assert!(before.jobs >= 5 && before.pods >= 5, "the ended Task's Jobs and pods are kept for a while: {before:#?}");
    let of_task = ListParams::default().labels(&format!("{}={}", labels::TASK, label_value("kept")));
    let (jobs, pods) =
        (Api::<Job>::namespaced(cluster.client.clone(), &ns), Api::<Pod>::namespaced(cluster.client.clone(), &ns));
    wait_until("the ended Task's Jobs and pods to go", Duration::from_secs(120), || async {
        jobs.list(&of_task).await.unwrap().items.is_empty() && pods.list(&of_task).await.unwrap().items.is_empty()
    })
    .await;

    let task = Api::<Task>::namespaced(cluster.client.clone(), &ns).get("kept").await.unwrap();
    let status = task.status.unwrap();
    let removed = status.conditions.iter().find(|c| c.type_ == "JobsRemoved").expect("a JobsRemoved condition");
    assert_eq!((removed.status.as_str(), removed.observed_generation), ("True", task.metadata.generation));
    // The records stay: every MinerSubmission, the complete Evaluation, and the weights.
    let submissions =
        Api::<MinerSubmission>::namespaced(cluster.client.clone(), &ns).list(&ListParams::default()).await.unwrap();
    assert_eq!(submissions.items.len(), before.submissions, "no MinerSubmission went with the Jobs");
    let evaluations =
        Api::<Evaluation>::namespaced(cluster.client.clone(), &ns).list(&ListParams::default()).await.unwrap().items;
    assert_eq!(evaluations.len(), 1);
    assert!(
        evaluations[0].status.as_ref().is_some_and(|s| s.phase == EvaluationPhase::Complete),
        "the record stays complete"
    );
    check_weights(&cluster, &ns, &evaluations).await;
    // Its Jobs gone, the Task reads its MinerSubmissions no more: each is labelled archived and
    // leaves the operator's caches (the submissions gauge counts what they hold).
    let archived = |s: &MinerSubmission| s.labels().get(labels::ARCHIVED).map(String::as_str) == Some("true");
    let api = Api::<MinerSubmission>::namespaced(cluster.client.clone(), &ns);
    wait_until("the ended Task's MinerSubmissions to be archived", Duration::from_secs(60), || async {
        api.list(&ListParams::default()).await.unwrap().items.iter().all(archived)
    })
    .await;
    wait_until("the operator's caches to forget the archived submissions", Duration::from_secs(30), || async {
        cached_submissions(&operator).await == 0
    })
    .await;
    assert_eq!(
        api.list(&ListParams::default()).await.unwrap().items.len(),
        before.submissions,
        "archived, not deleted"
    );
    // A new leader finds nothing to do: no Job comes back, nothing is rewritten.
    let mut operator = restart_rewrites_nothing(&cluster, &ns, &mut operator, "retention-noop").await;
    assert!(jobs.list(&of_task).await.unwrap().items.is_empty(), "a Job of the ended Task came back");
    operator.stop().await;
    cluster.delete_namespace(&ns).await;
}

/// The MinerSubmissions in the operator's caches: the sum of `gradients_submissions` over phases.
pub(crate) async fn cached_submissions(operator: &Operator) -> u64 {
    let metrics = operator.get("/metrics").await;
    metrics
        .lines()
        .filter(|l| l.starts_with("gradients_submissions{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}
