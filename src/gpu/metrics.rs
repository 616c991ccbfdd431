//! The agent's gauges. One series per GPU and metric on a node (8 GPUs: 40 series), labelled
//! with the pod using the GPU; every sample replaces the whole set, so a finished pod's series
//! leave the exposition with the pod.

use prometheus::{Encoder, GaugeVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder};

use super::class::Mismatch;
use super::{GpuDevice, GpuReading};

/// Labels of the per-GPU gauges, in this order.
pub const GPU_LABELS: [&str; 8] = ["node", "gpu", "uuid", "model", "namespace", "pod", "task", "miner"];

/// The pod a GPU's processes belong to (empty strings: none found).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodRef {
    pub namespace: String,
    pub pod: String,
    /// The pod's `gradients.io/task` and `gradients.io/miner` labels, when it has them.
    pub task: String,
    pub miner: String,
}

/// One GPU's sample and who uses it.
#[derive(Debug, Clone)]
pub struct GpuSample {
    pub device: GpuDevice,
    pub reading: GpuReading,
    pub pod: PodRef,
}

#[derive(Clone)]
pub struct GpuMetrics {
    registry: Registry,
    utilization: GaugeVec,
    memory_used: GaugeVec,
    memory_total: GaugeVec,
    power: GaugeVec,
    temperature: GaugeVec,
    pub nvml_available: IntGauge,
    mismatches: IntGaugeVec,
    pub errors: IntCounterVec,
}

impl Default for GpuMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl GpuMetrics {
    pub fn new() -> Self {
        let registry = Registry::new_custom(Some("gradients".to_string()), None).expect("static prefix");
        let gauge = |name: &str, help: &str| GaugeVec::new(Opts::new(name, help), &GPU_LABELS).expect("static metric");
        let metrics = GpuMetrics {
            utilization: gauge("gpu_utilization_ratio", "Share of the last sample period a kernel ran on the GPU"),
            memory_used: gauge("gpu_memory_used_bytes", "GPU memory allocated"),
            memory_total: gauge("gpu_memory_total_bytes", "GPU memory installed"),
            power: gauge("gpu_power_watts", "GPU power draw"),
            temperature: gauge("gpu_temperature_celsius", "GPU die temperature"),
            nvml_available: IntGauge::new("gpu_agent_nvml_available", "1 when NVML answers, 0 in CPU mode")
                .expect("static metric"),
            mismatches: IntGaugeVec::new(
                Opts::new("gpu_class_mismatch", "1 per way this node's GPUs differ from its GPU labels"),
                &["node", "gpu", "kind"],
            )
            .expect("static metric"),
            errors: IntCounterVec::new(
                Opts::new("gpu_agent_errors_total", "Samples that failed, by category"),
                &["category"],
            )
            .expect("static metric"),
            registry,
        };
        for collector in [
            Box::new(metrics.utilization.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(metrics.memory_used.clone()),
            Box::new(metrics.memory_total.clone()),
            Box::new(metrics.power.clone()),
            Box::new(metrics.temperature.clone()),
            Box::new(metrics.nvml_available.clone()),
            Box::new(metrics.mismatches.clone()),
            Box::new(metrics.errors.clone()),
        ] {
            metrics.registry.register(collector).expect("unique metric names");
        }
        metrics
    }

    /// Replaces every per-GPU series with this sample's.
    pub fn update(&self, node: &str, samples: &[GpuSample], mismatches: &[Mismatch]) {
        let gauges = [&self.utilization, &self.memory_used, &self.memory_total, &self.power, &self.temperature];
        for gauge in gauges {
            gauge.reset();
        }
        for sample in samples {
            let (d, r, p) = (&sample.device, &sample.reading, &sample.pod);
            let index = d.index.to_string();
            let labels = [node, &index, &d.uuid, &d.name, &p.namespace, &p.pod, &p.task, &p.miner];
            let values = [
                r.utilization_ratio,
                r.memory_used_bytes as f64,
                d.memory_total_bytes as f64,
                r.power_watts,
                r.temperature_celsius,
            ];
            for (gauge, value) in gauges.iter().zip(values) {
                gauge.with_label_values(&labels).set(value);
            }
        }
        self.mismatches.reset();
        for mismatch in mismatches {
            let gpu = mismatch.gpu.map(|g| g.to_string()).unwrap_or_default();
            self.mismatches.with_label_values(&[node, &gpu, mismatch.kind.as_str()]).inc();
        }
    }

    pub fn render(&self) -> String {
        let mut buffer = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buffer);
        String::from_utf8(buffer).unwrap_or_default()
    }
}
