//! The kubelet's last word for the fake nodes' pods, played in process: what `e2e/finish-pod`
//! writes for a container that exits 0 (terminated state with its message, Ready and
//! ContainersReady False, phase Succeeded), as one status patch through the client. The scale
//! benchmark finishes thousands of pods: a `kubectl` process per pod cost more than the
//! operator it measures.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use futures::StreamExt;
use gradients::workloads::labels;
use gradients::workloads::network_policy::ROLES;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{ListParams, Patch, PatchParams};
use kube::{Api, ResourceExt};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::support::*;
use crate::task_source::{SEALED, SPLIT_SIZES};

/// Status patches in flight at once.
const CONCURRENT: usize = 16;

/// Plays the kubelet for one pass: every running workload pod of the namespace ends as its
/// role's container would (split sizes, a trained model, its seal, an evaluation result).
/// Returns the name and role of each pod it ended (one status patch each, and one LIST of pods
/// besides): a trainer named here was bound and running.
pub async fn finish_running_pods(cluster: &Cluster, ns: &str) -> Vec<(String, Option<String>)> {
    finish_due_pods(cluster, ns, &mut RunTimes::none()).await.ended
}

/// How long the played kubelet lets each workload pod run before it ends it: a time drawn
/// from the pod's name, uniform in [0, max), so that pods end spread out as real containers
/// do. With no maximum each pod ends at the first pass that sees it running.
pub struct RunTimes {
    max: Duration,
    first_seen: HashMap<String, Instant>,
}

impl RunTimes {
    pub fn none() -> Self {
        Self::up_to(Duration::ZERO)
    }

    pub fn up_to(max: Duration) -> Self {
        Self { max, first_seen: HashMap::new() }
    }

    /// Whether `pod`, running now, has run its time (its clock then goes, as it is about to
    /// end); a pod seen for the first time starts its clock now.
    fn due(&mut self, pod: &str, now: Instant) -> bool {
        let seen = *self.first_seen.entry(pod.to_string()).or_insert(now);
        let due = now.duration_since(seen) >= self.max.mul_f64(unit_draw(pod));
        if due {
            self.first_seen.remove(pod);
        }
        due
    }

    /// Forgets the clocks of pods no longer running (ended or gone by other hands).
    fn keep(&mut self, running: &HashSet<String>) {
        self.first_seen.retain(|pod, _| running.contains(pod));
    }
}

/// What one pass saw and did.
pub struct Pass {
    /// Name and role of every workload pod seen running (a trainer here was bound).
    pub running: Vec<(String, Option<String>)>,
    /// Those of them ended in this pass, one status patch each.
    pub ended: Vec<(String, Option<String>)>,
}

/// One pass of the played kubelet: ends each running workload pod whose run time is over. The
/// API server filters the list to the running pods: at scale the ended ones are thousands, and
/// serializing them every pass would make this harness, not the operator, the API server's
/// heaviest client.
pub async fn finish_due_pods(cluster: &Cluster, ns: &str, run_times: &mut RunTimes) -> Pass {
    let pods: Api<Pod> = Api::namespaced(cluster.client.clone(), ns);
    let running: Vec<Pod> = pods
        .list(&ListParams::default().fields("status.phase=Running"))
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|pod| pod.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
        .filter(|pod| role(pod).is_some_and(|role| ROLES.contains(&role)))
        .collect();
    run_times.keep(&running.iter().map(ResourceExt::name_any).collect());
    let named = |pod: &Pod| (pod.name_any(), role(pod).map(str::to_string));
    let now = Instant::now();
    let due: Vec<Pod> = running.iter().filter(|pod| run_times.due(&pod.name_any(), now)).cloned().collect();
    let pass = Pass { running: running.iter().map(named).collect(), ended: due.iter().map(named).collect() };
    futures::stream::iter(due)
        .for_each_concurrent(CONCURRENT, |pod| {
            let pods = pods.clone();
            async move {
                // A pod can end or go away between the list and the write (a conflict or 404):
                // the next pass sees it.
                let patch = exit_zero(&pod, report(&pod).as_deref(), &now_rfc3339());
                let _ = pods.patch_status(&pod.name_any(), &PatchParams::default(), &Patch::Merge(&patch)).await;
            }
        })
        .await;
    pass
}

fn role(pod: &Pod) -> Option<&str> {
    pod.labels().get(labels::ROLE).map(String::as_str)
}

/// The termination message `pod`'s container writes: a trainer writes none.
fn report(pod: &Pod) -> Option<String> {
    match role(pod)? {
        labels::ROLE_PREPARE => Some(SPLIT_SIZES.to_string()),
        labels::ROLE_SEAL => Some(SEALED.to_string()),
        labels::ROLE_EVALUATOR => Some(evaluated(&pod.name_any())),
        _ => None,
    }
}

/// An evaluator's report with losses and a weights digest of its own, drawn from the pod's
/// name: one fixed report for every pod made a Task's 16 submissions equal, and the mechanism
/// scored 15 of them duplicates of the first. The synthetic-test gap is the same for all, so
/// none is flagged as suspicious.
pub fn evaluated(pod: &str) -> String {
    let test_loss = 0.8 + 0.4 * unit_draw(pod);
    json!({
        "ok": true, "test_loss": test_loss, "synth_loss": test_loss + 0.1,
        "text_guided_loss": test_loss / 2.0, "no_text_loss": test_loss / 2.0 + 0.1,
        "weights_sha256": format!("{:x}", Sha256::digest(pod.as_bytes())), "checks": [], "failure": null,
    })
    .to_string()
}

/// A number in [0, 1) drawn from `name`, the same on every pass and every run.
fn unit_draw(name: &str) -> f64 {
    let digest = Sha256::digest(format!("draw:{name}").as_bytes());
    let bits = u64::from_be_bytes(digest[..8].try_into().unwrap());
    (bits >> 11) as f64 / (1u64 << 53) as f64
}

fn now_rfc3339() -> String {
    chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// The status merge patch of `pod` once every container exits 0 with `message` (restartPolicy
/// Never or OnFailure), conditional on the pod's resourceVersion, as `e2e/finish-pod` writes it.
pub fn exit_zero(pod: &Pod, message: Option<&str>, now: &str) -> Value {
    let pod = serde_json::to_value(pod).unwrap();
    let status = &pod["status"];
    let empty = Vec::new();
    let listed = status["containerStatuses"].as_array().unwrap_or(&empty);
    let statuses: Vec<Value> = pod["spec"]["containers"]
        .as_array()
        .unwrap_or(&empty)
        .iter()
        .map(|container| {
            let name = &container["name"];
            let mut cs = listed.iter().find(|c| &c["name"] == name).cloned().unwrap_or_else(
                || json!({"name": name, "image": container["image"], "imageID": "", "restartCount": 0}),
            );
            if cs["state"].get("terminated").is_none() {
                let started = cs["state"]["running"]["startedAt"]
                    .as_str()
                    .or(status["startTime"].as_str())
                    .unwrap_or(now)
                    .to_string();
                let mut terminated =
                    json!({"exitCode": 0, "reason": "Completed", "startedAt": started, "finishedAt": now});
                if let Some(message) = message {
                    // The kubelet keeps at most 4096 bytes of a termination message.
                    terminated["message"] = json!(message.chars().take(4096).collect::<String>());
                }
                if let Some(id) = cs["containerID"].as_str().filter(|id| !id.is_empty()) {
                    terminated["containerID"] = json!(id);
                }
                cs["state"] = json!({"terminated": terminated});
                cs["ready"] = json!(false);
                cs["started"] = json!(false);
            }
            cs
        })
        .collect();
    let conditions: Vec<Value> = status["conditions"]
        .as_array()
        .unwrap_or(&empty)
        .iter()
        .map(|condition| {
            let mut condition = condition.clone();
            if matches!(condition["type"].as_str(), Some("Ready" | "ContainersReady")) {
                if condition["status"] != "False" {
                    condition["lastTransitionTime"] = json!(now);
                }
                condition["status"] = json!("False");
                condition["reason"] = json!("PodCompleted");
            }
            condition
        })
        .collect();
    json!({
        "metadata": {"resourceVersion": pod["metadata"]["resourceVersion"]},
        "status": {"containerStatuses": statuses, "conditions": conditions, "phase": "Succeeded"},
    })
}

#[test]
fn a_running_pod_ends_as_finish_pod_ends_it() {
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": "p", "resourceVersion": "42"},
        "spec": {"restartPolicy": "Never", "containers": [{"name": "evaluator", "image": "e:1"}]},
        "status": {
            "phase": "Running",
            "startTime": "2026-12-01T10:00:00Z",
            "conditions": [
                {"type": "Ready", "status": "True", "lastTransitionTime": "2026-12-01T10:00:01Z"},
                {"type": "PodScheduled", "status": "True"}
            ],
            "containerStatuses": [{"name": "evaluator", "image": "e:1", "imageID": "", "restartCount": 0, "ready": true,
                "state": {"running": {"startedAt": "2026-12-01T10:00:02Z"}}}]
        }
    }))
    .unwrap();
    let patch = exit_zero(&pod, Some(r#"{"loss": 0.4}"#), "2026-12-01T11:00:00Z");
    assert_eq!(patch["metadata"]["resourceVersion"], "42");
    assert_eq!(patch["status"]["phase"], "Succeeded");
    let terminated = &patch["status"]["containerStatuses"][0]["state"]["terminated"];
    assert_eq!(
        terminated,
        &json!({"exitCode": 0, "reason": "Completed", "startedAt": "2026-12-01T10:00:02Z",
            "finishedAt": "2026-12-01T11:00:00Z", "message": "{\"loss\": 0.4}"})
    );
    assert_eq!(patch["status"]["containerStatuses"][0]["ready"], false);
    let ready = &patch["status"]["conditions"][0];
    assert_eq!((ready["status"].as_str(), ready["reason"].as_str()), (Some("False"), Some("PodCompleted")));
    assert_eq!(ready["lastTransitionTime"], "2026-12-01T11:00:00Z");
    assert_eq!(patch["status"]["conditions"][1], json!({"type": "PodScheduled", "status": "True"}));
}

/// A Task's 16 evaluation reports, scored by the mechanism as the Leaderboard scores them.
fn scored(report: impl Fn(usize) -> String) -> Vec<gradients::mechanism::scoring::SubmissionScore> {
    use gradients::mechanism::records::TaskRecord;
    let submissions: Vec<Value> = (0..16)
        .map(|m| {
            let mut record: Value = serde_json::from_str(&report(m)).unwrap();
            record["miner"] = json!(format!("m{m}"));
            record["submitted_at"] = json!(format!("2026-12-01T10:{m:02}:00Z"));
            record
        })
        .collect();
    let task: TaskRecord = serde_json::from_value(json!({"id": "b0", "type": "Dpo", "model_params_b": 0.5,
        "hours": 1.0, "finished_at": "2026-12-01T11:00:00Z", "submissions": submissions}))
    .unwrap();
    gradients::mechanism::scoring::score_task(&Default::default(), &task).submissions
}

#[test]
fn a_tasks_evaluations_rank_its_miners_apart() {
    use gradients::mechanism::scoring::SubmissionStatus;
    let scores = scored(|m| evaluated(&format!("b0-m{m}-evaluate-x7k2p")));
    let statuses: Vec<SubmissionStatus> = scores.iter().map(|s| s.status).collect();
    assert_eq!(statuses, vec![SubmissionStatus::Ranked; 16], "{scores:#?}");
    let mut ranks: Vec<usize> = scores.iter().filter_map(|s| s.rank).collect();
    ranks.sort();
    assert_eq!(ranks, (1..=16).collect::<Vec<_>>());
    // One fixed report for every pod, as this kubelet wrote before: 15 duplicates of the first.
    let fixed = evaluated("one");
    let duplicates = scored(|_| fixed.clone()).iter().filter(|s| s.status == SubmissionStatus::Duplicate).count();
    assert_eq!(duplicates, 15);
}

#[test]
fn a_pod_runs_its_drawn_time_then_ends() {
    let start = Instant::now();
    let mut none = RunTimes::none();
    assert!(none.due("p", start), "without a maximum a pod ends at the first pass that sees it");
    let mut run_times = RunTimes::up_to(Duration::from_secs(60));
    let drawn = Duration::from_secs(60).mul_f64(unit_draw("p"));
    assert!(drawn > Duration::ZERO && drawn < Duration::from_secs(60));
    assert!(!run_times.due("p", start), "its clock starts when it is first seen running");
    assert!(!run_times.due("p", start + drawn - Duration::from_millis(1)));
    assert!(run_times.due("p", start + drawn));
    assert!(!run_times.due("p", start + drawn), "a pod that ended is forgotten: seen again, its clock restarts");
    run_times.keep(&HashSet::new());
    assert!(run_times.first_seen.is_empty(), "a pod no longer running is forgotten");
    let draws: Vec<f64> = (0..1000).map(|i| unit_draw(&format!("pod-{i}"))).collect();
    let mean = draws.iter().sum::<f64>() / 1000.0;
    assert!(draws.iter().all(|d| (0.0..1.0).contains(d)) && (0.45..0.55).contains(&mean), "{mean}");
}
