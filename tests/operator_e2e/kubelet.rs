//! The kubelet's last word for the fake nodes' pods, played in process: what `e2e/finish-pod`
//! writes for a container that exits 0 (terminated state with its message, Ready and
//! ContainersReady False, phase Succeeded), as one status patch through the client. The scale
//! benchmark finishes thousands of pods: a `kubectl` process per pod cost more than the
//! operator it measures.

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{ListParams, Patch, PatchParams};
use kube::{Api, ResourceExt};
use serde_json::{Value, json};

use crate::support::*;
use crate::task_source::{EVALUATED, SEALED, SPLIT_SIZES};

/// Status patches in flight at once.
const CONCURRENT: usize = 16;

/// Plays the kubelet for one pass: every running workload pod of the namespace ends as its
/// role's container would (split sizes, a trained model, its seal, an evaluation result).
/// Returns the name and role of each pod it ended (one status patch each, and one LIST of pods
/// besides): a trainer named here was bound and running. The API server filters the list
/// to the running pods: at scale the ended ones are thousands, and serializing them every pass
/// would make this harness, not the operator, the API server's heaviest client.
pub async fn finish_running_pods(cluster: &Cluster, ns: &str) -> Vec<(String, Option<String>)> {
    let pods: Api<Pod> = Api::namespaced(cluster.client.clone(), ns);
    let running: Vec<(Pod, Option<&str>)> = pods
        .list(&ListParams::default().fields("status.phase=Running"))
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|pod| pod.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
        .filter_map(|pod| {
            let message = match pod.labels().get("gradients.io/role").map(String::as_str) {
                Some("prepare") => Some(SPLIT_SIZES),
                Some("trainer") => None,
                Some("seal") => Some(SEALED),
                Some("evaluator") => Some(EVALUATED),
                _ => return None,
            };
            Some((pod, message))
        })
        .collect();
    let ended =
        running.iter().map(|(pod, _)| (pod.name_any(), pod.labels().get("gradients.io/role").cloned())).collect();
    futures::stream::iter(running)
        .for_each_concurrent(CONCURRENT, |(pod, message)| {
            let pods = pods.clone();
            async move {
                // A pod can end or go away between the list and the write (a conflict or 404):
                // the next pass sees it.
                let patch = exit_zero(&pod, message, &now());
                let _ = pods.patch_status(&pod.name_any(), &PatchParams::default(), &Patch::Merge(&patch)).await;
            }
        })
        .await;
    ended
}

fn now() -> String {
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
