//! GPUs through NVML: a small device trait ([`GpuInventory`]) with the real implementation over
//! `nvml-wrapper` ([`nvml::NvmlInventory`]) and one over recorded readings
//! ([`recorded::RecordedNvml`], for tests on machines without a GPU). The checks, the
//! process → pod attribution and the device assignment are pure functions over its values.

pub mod agent;
pub mod assign;
pub mod cgroup;
pub mod class;
pub mod metrics;
pub mod node;
pub mod nvml;
pub mod recorded;

use serde::{Deserialize, Serialize};

/// What a machine without an NVIDIA driver prints once, before it carries on on the CPU.
pub const NO_DRIVER: &str = "no NVIDIA driver (NVML): running on CPU";

/// One GPU as NVML enumerates it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GpuDevice {
    /// NVML's index (not necessarily CUDA's order: assignments use the UUID).
    pub index: u32,
    /// `GPU-xxxxxxxx-…`, what `CUDA_VISIBLE_DEVICES` accepts.
    pub uuid: String,
    /// The product name, e.g. `NVIDIA H100 80GB HBM3`.
    pub name: String,
    pub memory_total_bytes: u64,
}

/// One sample of one GPU.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GpuReading {
    /// Share of the last sample period a kernel ran, 0..=1.
    pub utilization_ratio: f64,
    pub memory_used_bytes: u64,
    pub power_watts: f64,
    pub temperature_celsius: f64,
    /// Host PIDs of the processes using the GPU (compute and graphics).
    #[serde(default)]
    pub pids: Vec<u32>,
}

/// What the agent and the local runner ask of the GPUs.
pub trait GpuInventory: Send + Sync {
    fn devices(&self) -> Result<Vec<GpuDevice>, GpuError>;
    fn reading(&self, index: u32) -> Result<GpuReading, GpuError>;
}

#[derive(Debug, thiserror::Error)]
pub enum GpuError {
    #[error("NVML {call} (GPU {index:?}): {message}")]
    Nvml { call: &'static str, index: Option<u32>, message: String },
    #[error("recorded readings {path}: {message}")]
    Recorded { path: String, message: String },
    #[error("no GPU with index {0}")]
    NoSuchDevice(u32),
}

impl GpuError {
    /// Stable category for metrics and logs.
    pub fn category(&self) -> &'static str {
        match self {
            GpuError::Nvml { .. } => "nvml",
            GpuError::Recorded { .. } => "recorded",
            GpuError::NoSuchDevice(_) => "no_such_device",
        }
    }
}

/// The GPUs of this machine, or why there are none to use.
pub enum Discovery {
    /// Boxed: NVML's table of loaded functions is 11 KB.
    Nvml(Box<nvml::NvmlInventory>),
    /// NVML could not start (no driver, no library): the CPU path.
    Cpu { reason: String },
}

/// Starts NVML; without it prints [`NO_DRIVER`] once (the detail goes to the debug log).
pub fn discover() -> Discovery {
    match nvml::NvmlInventory::init() {
        Ok(inventory) => Discovery::Nvml(Box::new(inventory)),
        Err(reason) => {
            eprintln!("{NO_DRIVER}");
            tracing::debug!(%reason, "NVML did not start");
            Discovery::Cpu { reason: reason.to_string() }
        }
    }
}
