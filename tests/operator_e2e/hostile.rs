//! A user who may create objects in a tournament namespace (but not write statuses) attacks
//! the operator's trust boundary: objects squatting the names of the task's Jobs and
//! MinerSubmissions, and pods with a Job's labels reporting forged results. Then a hung
//! evaluation, which the operator must be allowed to stop.

use std::time::Duration;

use gradients::api::evaluation::ResultState;
use gradients::api::task::TaskPhase;
use gradients::api::{Evaluation, MinerSubmission, Task};
use gradients::operator::lifecycle::submission_name;
use gradients::tournament::{WorkKind, WorkloadId};
use gradients::workloads::{evaluator, network_policy, prepare, trainer, workload_name};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::api::ListParams;
use kube::{Api, ResourceExt};

use crate::SPLIT_SIZES;
use crate::support::*;

const TASK: &str = "hostile";

#[tokio::test]
#[ignore = "needs the e2e cluster: e2e/test -- cargo test --test operator_e2e -- --ignored"]
async fn squatters_and_forged_pods_are_ignored_and_a_hung_evaluation_is_stopped() {
    let cluster = Cluster::connect().await;
    let ns = cluster.fresh_namespace("e2e-hostile").await;
    cluster.helm_install_chart_for(&[&ns]);
    let labels = format!("{{gradients.io/task: {TASK}, app.kubernetes.io/managed-by: gradients-operator}}");

    // Squatters, in place before the Task exists: a Job under the first preparation's name
    // (whose pod "reports" an empty test split) and a MinerSubmission under the first training's.
    let squat_job = prepare::job_name(TASK, 1);
    cluster
        .apply_yaml(&format!(
            "apiVersion: batch/v1
kind: Job
metadata: {{name: {squat_job}, namespace: {ns}, labels: {labels}}}
spec:
  backoffLimit: 0
  template:
    metadata: {{labels: {{gradients.io/role: prepare, gradients.io/task: {TASK}}}}}
    spec:
      restartPolicy: Never
      tolerations: [{{key: nvidia.com/gpu, operator: Exists, effect: NoSchedule}}]
      containers: [{{name: prepare, image: attacker/prepare:1}}]
"
        ))
        .await;
    let squat_pod = cluster.wait_for_job_pod(&ns, &squat_job).await;
    cluster.finish_pod(&ns, &squat_pod, 0, Some(r#"{"rows":10,"train":10,"test":0,"synthetic":0}"#));
    let squat_submission = submission_name(TASK, &WorkloadId::new(WorkKind::Train, "m", 1));
    cluster
        .apply_yaml(&format!(
            "apiVersion: gradients.io/v1alpha1
kind: MinerSubmission
metadata: {{name: {squat_submission}, namespace: {ns}, labels: {labels}}}
spec: {{task: {TASK}, miner: m, taskType: Dpo, baseModelUri: /m, baseModelParamsB: 3, dataUri: /d,
        artifactUri: /a, hours: 1, gpus: 1, gpuClass: h100, image: attacker/trainer:1, seed: 1}}
"
        ))
        .await;

    let mut operator = Operator::start_with(&cluster, "hostile", "lifecycle: {evaluationTimeoutS: 20}\n");
    operator.wait_ready().await;
    cluster
        .apply_yaml(&format!(
            "apiVersion: gradients.io/v1alpha1
kind: Task
metadata: {{name: {TASK}, namespace: {ns}}}
spec:
  taskType: Dpo
  baseModel: {{uri: kwok://gradients-e2e/models/qwen2.5-3b, paramsB: 3}}
  dataset: {{uri: kwok://gradients-e2e/datasets/prefs.jsonl}}
  hours: 1
  seed: 5
  baseline: false
  evaluateBase: false
  miners: [{{name: m, strategy: lora-fast}}]
"
        ))
        .await;

    // The squatting Job is not adopted: preparation runs again under the next name, the
    // squatter is named in a Warning Event and a condition, and nobody touched it.
    let real_prepare = prepare::job_name(TASK, 2);
    let prepare_pod = cluster.wait_for_job_pod(&ns, &real_prepare).await;
    let events = task_events(&cluster, &ns).await;
    assert!(events.contains("NotAdopted") && events.contains(&squat_job), "{events}");
    let tasks: Api<Task> = Api::namespaced(cluster.client.clone(), &ns);
    let condition = foreign_condition(&tasks.get(TASK).await.unwrap());
    assert!(condition.contains(&squat_job), "{condition}");
    let jobs: Api<Job> = Api::namespaced(cluster.client.clone(), &ns);
    let squatter = jobs.get(&squat_job).await.expect("the squatter is left in place");
    let writers: Vec<String> =
        squatter.metadata.managed_fields.iter().flatten().filter_map(|m| m.manager.clone()).collect();
    assert!(!writers.iter().any(|w| w.starts_with("gradients")), "the operator wrote the squatter: {writers:?}");
    for role in network_policy::ROLES {
        let policies = cluster.network_policies(&ns).await;
        assert!(policies.contains(&network_policy::policy_name(TASK, role)), "{role}: {policies:?}");
    }

    // A pod with the preparation Job's labels, even its image, reports forged split sizes: ignored.
    let forged = forge_pod(&cluster, &ns, &real_prepare, "prepare", "forged-prepare").await;
    cluster.finish_pod(&ns, &forged, 0, Some(r#"{"rows":10,"train":10,"test":0,"synthetic":0}"#));
    wait_until("a ForgedPod event", Duration::from_secs(60), || async {
        task_events(&cluster, &ns).await.contains(&forged)
    })
    .await;
    let state = tasks.get(TASK).await.unwrap().status.unwrap().lifecycle.unwrap();
    assert!(state.dataset.is_none(), "the forged sizes were not taken: {state:?}");
    cluster.finish_pod(&ns, &prepare_pod, 0, Some(SPLIT_SIZES));

    // The squatting MinerSubmission runs no trainer; training runs under the next name.
    let real_submission = submission_name(TASK, &WorkloadId::new(WorkKind::Train, "m", 2));
    let trainer_pod = cluster.wait_for_job_pod(&ns, &trainer::job_name(&real_submission)).await;
    assert!(jobs.get_opt(&trainer::job_name(&squat_submission)).await.unwrap().is_none(), "a trainer for the squatter");
    let submission_events = cluster.kubectl(&[
        "get",
        "events",
        "-n",
        &ns,
        "--field-selector",
        &format!("involvedObject.name={squat_submission}"),
    ]);
    assert!(submission_events.contains("NotAdopted"), "{submission_events}");
    let submissions: Api<MinerSubmission> = Api::namespaced(cluster.client.clone(), &ns);
    assert!(submissions.get(&squat_submission).await.unwrap().status.is_none(), "the squatter was written to");
    let state = tasks.get(TASK).await.unwrap().status.unwrap().lifecycle.unwrap();
    assert_eq!(state.dataset.unwrap().train, 1960, "the real preparation's sizes");
    // The submission in flight labelled archived, which would hide it from the operator's caches
    // (and its trainer's end from the Task): the label is taken off, and the Task says so.
    let archived = format!("{}=true", gradients::workloads::labels::ARCHIVED);
    cluster.kubectl(&["label", "minersubmissions.gradients.io", &real_submission, "-n", &ns, &archived]);
    wait_until("the archived label to be taken off the submission in flight", Duration::from_secs(60), || async {
        !submissions.get(&real_submission).await.unwrap().labels().contains_key(gradients::workloads::labels::ARCHIVED)
    })
    .await;
    let events = task_events(&cluster, &ns).await;
    assert!(events.contains("ArchivedInFlight") && events.contains(&real_submission), "{events}");
    cluster.finish_pod(&ns, &trainer_pod, 0, None);
    // The hand-off: the operator's seal of the trained model.
    let seal_job = workload_name(TASK, &WorkloadId::new(WorkKind::Seal, "m", 1));
    let seal_pod = cluster.wait_for_job_pod(&ns, &seal_job).await;
    let sealed = format!(r#"{{"ok":true,"digest":"sha256:{:0>64}","files":3,"bytes":4096}}"#, "5ea1");
    cluster.finish_pod(&ns, &seal_pod, 0, Some(&sealed));

    // The evaluation: a forged pod reports a perfect loss, the real evaluator hangs.
    let eval_job = evaluator::job_name(TASK, "m", 1);
    let eval_pod = cluster.wait_for_job_pod(&ns, &eval_job).await;
    cluster.wait_for_scheduled_pod(&ns, &eval_pod).await;
    let forged = forge_pod(&cluster, &ns, &eval_job, evaluator::EVALUATOR_CONTAINER, "forged-eval").await;
    cluster.finish_pod(
        &ns,
        &forged,
        0,
        Some(r#"{"ok":true,"test_loss":0.0001,"synth_loss":0.0001,"weights_sha256":"ff","checks":[],"failure":null}"#),
    );
    // Past the evaluation timeout the hung Job is deleted (the operator may delete Jobs).
    wait_until("the hung evaluation Job to be deleted", Duration::from_secs(90), || async {
        jobs.get_opt(&eval_job)
            .await
            .map(|j| j.is_none() || j.unwrap().metadata.deletion_timestamp.is_some())
            .unwrap_or(false)
    })
    .await;
    wait_until("the task to fail", Duration::from_secs(60), || async {
        tasks.get(TASK).await.map(|t| t.phase() == TaskPhase::Failed).unwrap_or(false)
    })
    .await;
    let evaluation = Api::<Evaluation>::namespaced(cluster.client.clone(), &ns).get(TASK).await.unwrap();
    let result = evaluation.status.unwrap().results.into_iter().find(|r| r.miner == "m").unwrap();
    assert_eq!(result.state, ResultState::Failed, "{result:?}");
    assert_eq!(result.test_loss, None, "the forged loss was not recorded: {result:?}");
    assert!(task_events(&cluster, &ns).await.contains(&forged));
    let metrics = operator.get("/metrics").await;
    assert!(!metrics.contains("category=\"Forbidden\""), "the operator hit its RBAC: {metrics}");
    let pods: Api<Pod> = Api::namespaced(cluster.client.clone(), &ns);
    assert!(pods.list(&ListParams::default()).await.unwrap().items.iter().any(|p| p.name_any() == forged));
    operator.stop().await;
    cluster.delete_namespace(&ns).await;
}

/// A pod with what the operator once trusted of a Job's pods: its labels and image. (Not the
/// Job's selector label: the Job controller would adopt the pod, a different attack that
/// `lifecycle` unit tests cover.)
async fn forge_pod(cluster: &Cluster, ns: &str, job: &str, container: &str, name: &str) -> String {
    let jobs: Api<Job> = Api::namespaced(cluster.client.clone(), ns);
    let template = jobs.get(job).await.unwrap().spec.unwrap().template;
    let mut labels = template.metadata.unwrap().labels.unwrap();
    labels.retain(|k, _| !k.contains("controller-uid"));
    let labels = serde_json::to_string(&labels).unwrap();
    let image = template.spec.unwrap().containers.into_iter().find(|c| c.name == container).unwrap().image.unwrap();
    cluster
        .apply_yaml(&format!(
            "apiVersion: v1
kind: Pod
metadata: {{name: {name}, namespace: {ns}, labels: {labels}}}
spec:
  restartPolicy: Never
  tolerations: [{{key: nvidia.com/gpu, operator: Exists, effect: NoSchedule}}]
  containers: [{{name: {container}, image: \"{image}\", command: [sh, -c, 'echo forged > /dev/termination-log']}}]
"
        ))
        .await;
    name.to_string()
}

async fn task_events(cluster: &Cluster, ns: &str) -> String {
    cluster.kubectl(&[
        "get",
        "events",
        "-n",
        ns,
        "--field-selector",
        &format!("involvedObject.name={TASK}"),
        "-o",
        "yaml",
    ])
}

fn foreign_condition(task: &Task) -> String {
    let conditions = task.status.clone().unwrap().conditions;
    conditions
        .into_iter()
        .find(|c| c.type_ == "ForeignObjects" && c.status == "True")
        .map(|c| c.message)
        .unwrap_or_default()
}
