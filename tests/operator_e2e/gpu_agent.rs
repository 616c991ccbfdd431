//! `gradients gpu-agent` on the real control plane: the chart's DaemonSet lands on exactly the
//! GPU nodes, and the agent, run as the chart's ServiceAccount for one node, reads that Node's
//! labels and names the pod behind a GPU process from the pods bound to the node. NVML is the
//! recorded stand-in (no GPU here); the pod, its UID, the Node and the RBAC are real.

use std::process::Command;
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::api::events::v1::Event;
use kube::api::{ListParams, Patch, PatchParams};
use kube::{Api, ResourceExt};

use crate::gpu_support::{Agent, get, recording};
use crate::support::*;

const AGENT_ACCOUNT: &str = "system:serviceaccount:gradients-system:gradients-operator-gpu-agent";
const NODE: &str = "gpu-node-0";

fn helm_set(value: &str) {
    let status = Command::new("helm")
        .args(["upgrade", "gradients"])
        .arg(root().join("charts/gradients"))
        .args(["--namespace", RELEASE_NAMESPACE, "--reuse-values", "--set", value])
        .status()
        .expect("helm on PATH (e2e/cluster env)");
    assert!(status.success(), "helm upgrade --set {value} failed");
}

#[tokio::test]
#[ignore = "needs the e2e cluster: e2e/test -- cargo test --test operator_e2e -- --ignored"]
async fn the_gpu_agent_runs_on_gpu_nodes_and_names_the_pod_using_a_gpu() {
    let cluster = Cluster::connect().await;
    cluster.helm_install_chart();
    // What the NVIDIA GPU operator installs; the DaemonSet's pods name it.
    cluster
        .apply_yaml("apiVersion: node.k8s.io/v1\nkind: RuntimeClass\nmetadata: {name: nvidia}\nhandler: nvidia\n")
        .await;
    // The agent mounts the host's /proc (hostPath), which only `privileged` pod security allows;
    // the real-node suite leaves the release namespace `restricted`.
    cluster.kubectl(&[
        "label",
        "--overwrite",
        "namespace",
        RELEASE_NAMESPACE,
        "pod-security.kubernetes.io/enforce=privileged",
    ]);
    helm_set("gpuAgent.enabled=true");

    let gpu_nodes = Api::<Node>::all(cluster.client.clone())
        .list(&ListParams::default().labels("nvidia.com/gpu.present=true"))
        .await
        .unwrap();
    let mut expected: Vec<String> = gpu_nodes.items.iter().map(|n| n.name_any()).collect();
    expected.sort();
    assert!(!expected.is_empty(), "the e2e cluster has GPU nodes");
    let pods: Api<Pod> = Api::namespaced(cluster.client.clone(), RELEASE_NAMESPACE);
    let daemonsets: Api<DaemonSet> = Api::namespaced(cluster.client.clone(), RELEASE_NAMESPACE);
    let deadline = Instant::now() + Duration::from_secs(60);
    let on_nodes = loop {
        let listed =
            pods.list(&ListParams::default().labels("app.kubernetes.io/name=gradients-gpu-agent")).await.unwrap();
        let running =
            listed.items.iter().filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"));
        let mut nodes: Vec<String> = running.filter_map(|p| p.spec.as_ref()?.node_name.clone()).collect();
        nodes.sort();
        if nodes == expected || Instant::now() > deadline {
            break nodes;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let status = daemonsets.get("gradients-operator-gpu-agent").await.unwrap().status.unwrap_or_default();
    assert_eq!(on_nodes, expected, "one agent per GPU node, none elsewhere; DaemonSet status {status:?}");

    // A trainer pod on gpu-node-0, and its process (PID 4242, on GPU 0 in the recording) in a
    // stand-in /proc whose cgroup file is the one the kubelet's systemd driver writes.
    let ns = cluster.fresh_namespace("e2e-gpu-agent").await;
    let pod: Pod = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "train-t1-m1", "labels": {"gradients.io/task": "t1", "gradients.io/miner": "m1"}},
        "spec": {
            "nodeName": NODE,
            "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
            "containers": [{"name": "trainer", "image": "trainer"}]
        }
    }))
    .unwrap();
    Api::<Pod>::namespaced(cluster.client.clone(), &ns).create(&Default::default(), &pod).await.unwrap();
    let uid = cluster.wait_for_scheduled_pod(&ns, "train-t1-m1").await.uid().unwrap();
    let proc_root = tempfile::tempdir().unwrap();
    std::fs::create_dir(proc_root.path().join("4242")).unwrap();
    let slice = format!("kubepods-burstable-pod{}.slice", uid.replace('-', "_"));
    let cgroup = format!("0::/kubepods.slice/kubepods-burstable.slice/{slice}/cri-containerd-3f1c.scope\n");
    std::fs::write(proc_root.path().join("4242/cgroup"), cgroup).unwrap();

    let recording = recording();
    let agent = Agent::start(&[
        "--from-api",
        "--node-name",
        NODE,
        "--as",
        AGENT_ACCOUNT,
        "--recorded",
        recording.to_str().unwrap(),
        "--proc-root",
        proc_root.path().to_str().unwrap(),
    ]);
    let body = agent.metrics_with(r#"pod="train-t1-m1""#);
    let gpu0 = body.lines().find(|l| l.starts_with("gradients_gpu_utilization_ratio{") && l.contains(r#"gpu="0""#));
    for label in [
        format!(r#"namespace="{ns}""#),
        r#"pod="train-t1-m1""#.into(),
        r#"task="t1""#.into(),
        r#"miner="m1""#.into(),
        format!(r#"node="{NODE}""#),
    ] {
        assert!(gpu0.is_some_and(|l| l.contains(&label)), "GPU 0 lacks {label}:\n{body}");
    }
    // The node's labels (read from the API server) say 8 H100s with 81559 MiB; the recording
    // holds 2 such GPUs: only the count differs.
    let mismatches: Vec<&str> = body.lines().filter(|l| l.starts_with("gradients_gpu_class_mismatch{")).collect();
    assert_eq!(mismatches, [r#"gradients_gpu_class_mismatch{gpu="",kind="count",node="gpu-node-0"} 1"#], "{body}");

    // The verdict on the Node: its GpuClassMismatch condition (the agent's own entry of the
    // conditions, server-side applied) and a Warning Event.
    let nodes: Api<Node> = Api::all(cluster.client.clone());
    let deadline = Instant::now() + Duration::from_secs(30);
    let condition = loop {
        let node = nodes.get(NODE).await.unwrap();
        let conditions = node.status.and_then(|s| s.conditions).unwrap_or_default();
        let ours = conditions.into_iter().find(|c| c.type_ == "GpuClassMismatch");
        if ours.is_some() || Instant::now() > deadline {
            break ours;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    let condition = condition.expect("the GpuClassMismatch condition on the node");
    assert_eq!(condition.status, "True");
    assert_eq!(condition.message.as_deref(), Some("nvidia.com/gpu.count=8 but NVML sees 2 GPU(s)"));
    let events: Api<Event> = Api::all(cluster.client.clone());
    let on_node = format!("regarding.kind=Node,regarding.name={NODE},reason=GpuClassMismatch");
    let found = events.list(&ListParams::default().fields(&on_node)).await.unwrap();
    assert!(
        found.items.iter().any(|e| e.note.as_deref() == condition.message.as_deref()),
        "a Warning Event on the node: {:?}",
        found.items
    );
    let ready = nodes.get(NODE).await.unwrap().status.and_then(|s| s.conditions).unwrap_or_default();
    assert!(ready.iter().any(|c| c.type_ == "Ready"), "the other conditions are left alone: {ready:?}");

    let body = get(agent.address, "/metrics");
    assert!(!body.contains("gradients_gpu_agent_errors_total{"), "no failed call (the chart's RBAC suffices):\n{body}");
    drop(agent);
    // Give up the condition: applying nothing as its field manager removes the agent's entry.
    let empty = serde_json::json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": NODE}, "status": {}});
    let params = PatchParams::apply("gradients-gpu-agent").force();
    let node = nodes.patch_status(NODE, &params, &Patch::Apply(&empty)).await.unwrap();
    let left = node.status.and_then(|s| s.conditions).unwrap_or_default();
    assert!(left.iter().all(|c| c.type_ != "GpuClassMismatch") && left.iter().any(|c| c.type_ == "Ready"), "{left:?}");
    cluster.delete_namespace(&ns).await;
    helm_set("gpuAgent.enabled=false");
}
