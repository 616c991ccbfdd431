//! `gradients gpu-agent` over HTTP for real: the endpoint is fetched over TCP. NVML itself is
//! replaced by recorded readings (`tests/fixtures/gpu/h100x2.json`, `RecordedNvml`): this
//! machine has no GPU. The process → cgroup → pod step reads real files in a stand-in /proc.

use std::collections::{BTreeMap, HashMap};

use gpu_support::{Agent, get, recording};
use gradients::gpu::agent::{Sampler, serve};
use gradients::gpu::metrics::PodRef;
use gradients::gpu::recorded::RecordedNvml;

mod gpu_support;

const UID: &str = "6f2f8b6e-3c8a-4b8e-9c52-1f0b7e5f9a10";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_name_the_gpu_and_the_pod_that_uses_it() {
    // PID 4242 (on GPU 0 in the recording) runs in a BestEffort pod, cgroup v2 + systemd driver.
    let proc_root = tempfile::tempdir().unwrap();
    std::fs::create_dir(proc_root.path().join("4242")).unwrap();
    std::fs::write(
        proc_root.path().join("4242/cgroup"),
        "0::/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod6f2f8b6e_3c8a_4b8e_9c52_1f0b7e5f9a10.slice/cri-containerd-3f1c.scope\n",
    )
    .unwrap();
    let trainer =
        PodRef { namespace: "miners".into(), pod: "train-t1-m1".into(), task: "t1".into(), miner: "m1".into() };
    let pods: HashMap<String, PodRef> = [(UID.to_string(), trainer)].into();
    let labels: BTreeMap<String, String> =
        [("nvidia.com/gpu.product".to_string(), "NVIDIA-H100-80GB-HBM3".to_string())].into();
    let nvml = RecordedNvml::load(&recording()).unwrap();
    let mut sampler = Sampler::new("gpu-node-0".into(), proc_root.path().into(), labels, Some(Box::new(nvml)));
    assert_eq!(sampler.sample(&pods).await.unwrap(), vec![], "the GPUs are what the labels say");

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(serve(listener, sampler.metrics.clone()));
    let response = tokio::task::spawn_blocking(move || get(address, "/metrics")).await.unwrap();

    assert!(response.starts_with("HTTP/1.1 200 OK"), "{response}");
    let used = r#"gradients_gpu_utilization_ratio{gpu="0",miner="m1",model="NVIDIA H100 80GB HBM3",namespace="miners",node="gpu-node-0",pod="train-t1-m1",task="t1",uuid="GPU-5b3a1c2e-7f44-4d1a-9a0b-2f6c8e1d0a11"} 0.87"#;
    let idle = r#"gradients_gpu_power_watts{gpu="1",miner="",model="NVIDIA H100 80GB HBM3",namespace="",node="gpu-node-0",pod="",task="",uuid="GPU-9c0d2e4f-1a3b-4c5d-8e6f-7a8b9c0d1e22"} 71.25"#;
    for series in [used, idle, "gradients_gpu_agent_nvml_available 1"] {
        assert!(response.lines().any(|l| l == series), "missing {series} in\n{response}");
    }
    for (metric, gpu0) in [
        ("gradients_gpu_memory_used_bytes", "61203283968"),
        ("gradients_gpu_memory_total_bytes", "85520809984"),
        ("gradients_gpu_temperature_celsius", "64"),
    ] {
        let line = response.lines().find(|l| l.starts_with(metric) && l.contains(r#"gpu="0""#));
        assert!(line.is_some_and(|l| l.ends_with(&format!(" {gpu0}"))), "{metric} of GPU 0 in\n{response}");
    }
    assert!(!response.contains("gradients_gpu_class_mismatch{"), "{response}");
}

#[test]
fn without_nvml_the_agent_says_so_in_one_line_and_serves_cpu_mode() {
    let agent = Agent::start(&[]);
    let body = agent.metrics_with("gradients_gpu_agent_nvml_available");
    if agent.stderr.iter().any(|l| l == "no NVIDIA driver (NVML): running on CPU") {
        assert!(body.lines().any(|l| l == "gradients_gpu_agent_nvml_available 0"), "{body}");
        assert!(!body.contains("gradients_gpu_utilization_ratio{"), "{body}");
    } else {
        // A machine with a driver: the real NVML path answered.
        assert!(body.lines().any(|l| l == "gradients_gpu_agent_nvml_available 1"), "{:?}\n{body}", agent.stderr);
    }
}

#[test]
fn a_node_labelled_for_another_gpu_reports_each_mismatch() {
    let recording = recording();
    let agent = Agent::start(&[
        "--recorded",
        recording.to_str().unwrap(),
        "--node-name",
        "gpu-node-7",
        "--node-label",
        "nvidia.com/gpu.product=NVIDIA-B200",
        "--node-label",
        "nvidia.com/gpu.count=8",
    ]);
    let body = agent.metrics_with("gradients_gpu_class_mismatch{");
    for series in [
        r#"gradients_gpu_class_mismatch{gpu="0",kind="product",node="gpu-node-7"} 1"#,
        r#"gradients_gpu_class_mismatch{gpu="1",kind="product",node="gpu-node-7"} 1"#,
        r#"gradients_gpu_class_mismatch{gpu="",kind="count",node="gpu-node-7"} 1"#,
    ] {
        assert!(body.lines().any(|l| l == series), "missing {series} in\n{body}");
    }
}
