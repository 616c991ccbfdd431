//! The GPUs of `gradients run`: found with NVML (or a recorded stand-in), handed out so that
//! parallel workloads never share one (`CUDA_VISIBLE_DEVICES` by UUID, [`crate::gpu::assign`]),
//! sampled while held, and what each workload used written beside its outputs (`gpus.json`)
//! for the report. Without a driver every workload runs on the CPU and nothing is recorded.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::api::task::TaskSpec;
use crate::gpu::assign::{self, Assignment, Request};
use crate::gpu::recorded::RecordedNvml;
use crate::gpu::{self, Discovery, GpuDevice, GpuError, GpuInventory};
use crate::tournament::WorkKind;
use crate::workloads::gpus::{evaluation_gpus, training_gpus};

/// What one workload had and did with its GPUs (`work/<id>/gpus.json`, and the report).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GpuUse {
    pub workload: String,
    /// `NAME (UUID)` of each device, in the order `CUDA_VISIBLE_DEVICES` listed them.
    pub devices: Vec<String>,
    /// Devices × seconds held.
    pub gpu_seconds: f64,
    /// Mean NVML utilisation over the samples of its devices, 0..=1.
    pub mean_utilization: Option<f64>,
    /// The highest memory use seen on any one of its devices.
    pub peak_memory_bytes: Option<u64>,
}

struct Held {
    uuids: Vec<String>,
    since: Instant,
    samples: u32,
    utilization_sum: f64,
    peak_memory: u64,
}

/// The run's devices and who holds which.
pub struct LocalGpus {
    inventory: Option<Box<dyn GpuInventory>>,
    devices: Vec<GpuDevice>,
    held: BTreeMap<String, Held>,
}

impl LocalGpus {
    /// NVML's devices limited to the run's own `CUDA_VISIBLE_DEVICES`, or the devices of a
    /// recorded NVML file (the stand-in tests use); none, with a one-line notice, without a driver.
    pub fn discover(recorded: Option<&Path>, cuda_visible_devices: Option<&str>) -> Result<Self, GpuError> {
        let inventory: Option<Box<dyn GpuInventory>> = match recorded {
            Some(path) => Some(Box::new(RecordedNvml::load(path)?)),
            None => match gpu::discover() {
                Discovery::Nvml(nvml) => Some(nvml),
                Discovery::Cpu { .. } => None,
            },
        };
        let devices = match &inventory {
            Some(inventory) => assign::visible(&inventory.devices()?, cuda_visible_devices),
            None => Vec::new(),
        };
        Ok(Self { inventory, devices, held: BTreeMap::new() })
    }

    pub fn devices(&self) -> &[GpuDevice] {
        &self.devices
    }

    /// The GPUs a workload asks for: what the operator would give it, at most what this machine
    /// has (a workstation runs a 70B task slower, not never); none for in-process steps.
    pub fn asks(&self, kind: WorkKind, spec: &TaskSpec) -> u32 {
        let wanted = match kind {
            WorkKind::Train => training_gpus(spec.task_type, spec.base_model.params_b),
            WorkKind::Evaluate | WorkKind::Synthesize => evaluation_gpus(spec.task_type, spec.base_model.params_b),
            WorkKind::Prepare | WorkKind::Seal => 0,
        };
        wanted.min(u32::try_from(self.devices.len()).unwrap_or(u32::MAX))
    }

    /// Hands `asked` free devices to `workload`: the `CUDA_VISIBLE_DEVICES` value to start it
    /// with (empty: no GPU), or `None` while too few are free.
    pub fn take(&mut self, workload: &str, asked: u32) -> Option<String> {
        let in_use: BTreeSet<String> = self.held.values().flat_map(|h| h.uuids.iter().cloned()).collect();
        let request = [Request { workload: workload.to_string(), gpus: asked }];
        let (_, answer) = assign::assign(&self.devices, &in_use, &request).pop()?;
        let Assignment::Devices(uuids) = answer else { return None };
        let visible = uuids.join(",");
        if !uuids.is_empty() {
            let held = Held { uuids, since: Instant::now(), samples: 0, utilization_sum: 0.0, peak_memory: 0 };
            self.held.insert(workload.to_string(), held);
        }
        Some(visible)
    }

    /// One NVML reading of every held device, added to its holder's figures.
    pub fn sample(&mut self) {
        let Some(inventory) = &self.inventory else { return };
        for held in self.held.values_mut() {
            for uuid in &held.uuids {
                let Some(device) = self.devices.iter().find(|d| &d.uuid == uuid) else { continue };
                match inventory.reading(device.index) {
                    Ok(reading) => {
                        held.samples += 1;
                        held.utilization_sum += reading.utilization_ratio;
                        held.peak_memory = held.peak_memory.max(reading.memory_used_bytes);
                    }
                    Err(e) => tracing::debug!(error = %e, category = e.category(), "GPU reading failed"),
                }
            }
        }
    }

    /// Frees `workload`'s devices; what it used, if it held any.
    pub fn release(&mut self, workload: &str) -> Option<GpuUse> {
        let held = self.held.remove(workload)?;
        let describe = |uuid: &String| match self.devices.iter().find(|d| &d.uuid == uuid) {
            Some(device) => format!("{} ({uuid})", device.name),
            None => uuid.clone(),
        };
        let sampled = held.samples > 0;
        Some(GpuUse {
            workload: workload.to_string(),
            devices: held.uuids.iter().map(describe).collect(),
            gpu_seconds: held.since.elapsed().as_secs_f64() * held.uuids.len() as f64,
            mean_utilization: sampled.then(|| held.utilization_sum / f64::from(held.samples)),
            peak_memory_bytes: sampled.then_some(held.peak_memory),
        })
    }
}

/// Every `gpus.json` under the run's work directory, by workload.
pub fn collect(work_root: &Path) -> Vec<GpuUse> {
    let Ok(entries) = std::fs::read_dir(work_root) else { return Vec::new() };
    let mut uses: Vec<GpuUse> = entries
        .filter_map(Result::ok)
        .filter_map(|entry| std::fs::read(entry.path().join("gpus.json")).ok())
        .filter_map(|bytes| serde_json::from_slice(&bytes).ok())
        .collect();
    uses.sort_by(|a, b| a.workload.cmp(&b.workload));
    uses
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recorded() -> LocalGpus {
        let path = crate::checkout().join("tests/fixtures/gpu/h100x2.json");
        LocalGpus::discover(Some(&path), None).unwrap()
    }

    #[test]
    fn parallel_workloads_never_share_a_device_and_a_freed_one_is_handed_out_again() {
        let mut gpus = recorded();
        let first = gpus.take("train-a", 1).unwrap();
        let second = gpus.take("train-b", 1).unwrap();
        assert_ne!(first, second);
        assert_eq!(gpus.take("train-c", 1), None, "both devices are held");
        assert_eq!(gpus.take("prepare", 0).as_deref(), Some(""), "a CPU step never waits and sees no GPU");
        gpus.sample();
        let used = gpus.release("train-a").unwrap();
        assert_eq!(used.devices, vec![format!("NVIDIA H100 80GB HBM3 ({first})")]);
        // The recorded readings: GPU 0 at 87 % and 61,203,283,968 bytes.
        assert_eq!(used.mean_utilization, Some(0.87));
        assert_eq!(used.peak_memory_bytes, Some(61_203_283_968));
        assert_eq!(gpus.take("train-c", 1), Some(first));
        assert_eq!(gpus.release("prepare"), None, "nothing was held");
    }

    #[test]
    fn the_runs_own_cuda_visible_devices_bounds_what_it_hands_out() {
        let path = crate::checkout().join("tests/fixtures/gpu/h100x2.json");
        let mut gpus = LocalGpus::discover(Some(&path), Some("1")).unwrap();
        assert_eq!(gpus.devices().len(), 1);
        assert_eq!(gpus.take("a", 1).as_deref(), Some("GPU-9c0d2e4f-1a3b-4c5d-8e6f-7a8b9c0d1e22"));
        assert_eq!(gpus.take("b", 1), None);
    }
}
