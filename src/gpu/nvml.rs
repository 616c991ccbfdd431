//! The real [`GpuInventory`] over `nvml-wrapper` (loads `libnvidia-ml.so` at run time, so this
//! builds and its callers' CPU path runs on machines without a driver).

use nvml_wrapper::Nvml;
use nvml_wrapper::enum_wrappers::device::TemperatureSensor;
use nvml_wrapper::error::NvmlError;

use super::{GpuDevice, GpuError, GpuInventory, GpuReading};

pub struct NvmlInventory {
    nvml: Nvml,
}

fn error(call: &'static str, index: Option<u32>) -> impl FnOnce(NvmlError) -> GpuError {
    move |e| GpuError::Nvml { call, index, message: e.to_string() }
}

impl NvmlInventory {
    pub fn init() -> Result<Self, GpuError> {
        Nvml::init().map(|nvml| NvmlInventory { nvml }).map_err(error("init", None))
    }
}

impl GpuInventory for NvmlInventory {
    fn devices(&self) -> Result<Vec<GpuDevice>, GpuError> {
        let count = self.nvml.device_count().map_err(error("device_count", None))?;
        (0..count)
            .map(|index| {
                let at = Some(index);
                let device = self.nvml.device_by_index(index).map_err(error("device_by_index", at))?;
                Ok(GpuDevice {
                    index,
                    uuid: device.uuid().map_err(error("uuid", at))?,
                    name: device.name().map_err(error("name", at))?,
                    memory_total_bytes: device.memory_info().map_err(error("memory_info", at))?.total,
                })
            })
            .collect()
    }

    fn reading(&self, index: u32) -> Result<GpuReading, GpuError> {
        let at = Some(index);
        let device = self.nvml.device_by_index(index).map_err(error("device_by_index", at))?;
        let mut pids: Vec<u32> = device
            .running_compute_processes()
            .map_err(error("running_compute_processes", at))?
            .into_iter()
            .chain(device.running_graphics_processes().unwrap_or_default())
            .map(|process| process.pid)
            .collect();
        pids.sort_unstable();
        pids.dedup();
        Ok(GpuReading {
            utilization_ratio: f64::from(device.utilization_rates().map_err(error("utilization_rates", at))?.gpu)
                / 100.0,
            memory_used_bytes: device.memory_info().map_err(error("memory_info", at))?.used,
            // NVML reports milliwatts.
            power_watts: f64::from(device.power_usage().map_err(error("power_usage", at))?) / 1000.0,
            temperature_celsius: f64::from(
                device.temperature(TemperatureSensor::Gpu).map_err(error("temperature", at))?,
            ),
            pids,
        })
    }
}
