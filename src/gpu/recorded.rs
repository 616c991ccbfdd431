//! Recorded NVML readings (JSON), standing in for NVML where no GPU exists: the fixture
//! `tests/fixtures/gpu/*.json` holds what `NvmlInventory` returned on a real node, by hand.

use std::path::Path;

use serde::Deserialize;

use super::{GpuDevice, GpuError, GpuInventory, GpuReading};

/// A named stand-in for NVML: devices and one reading each, as recorded.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordedNvml {
    pub devices: Vec<RecordedDevice>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RecordedDevice {
    pub index: u32,
    pub uuid: String,
    pub name: String,
    pub memory_total_bytes: u64,
    pub reading: GpuReading,
}

impl RecordedNvml {
    pub fn load(path: &Path) -> Result<Self, GpuError> {
        let failed = |message: String| GpuError::Recorded { path: path.display().to_string(), message };
        let text = std::fs::read_to_string(path).map_err(|e| failed(e.to_string()))?;
        serde_json::from_str(&text).map_err(|e| failed(e.to_string()))
    }
}

impl GpuInventory for RecordedNvml {
    fn devices(&self) -> Result<Vec<GpuDevice>, GpuError> {
        let device = |d: &RecordedDevice| GpuDevice {
            index: d.index,
            uuid: d.uuid.clone(),
            name: d.name.clone(),
            memory_total_bytes: d.memory_total_bytes,
        };
        Ok(self.devices.iter().map(device).collect())
    }

    fn reading(&self, index: u32) -> Result<GpuReading, GpuError> {
        self.devices.iter().find(|d| d.index == index).map(|d| d.reading.clone()).ok_or(GpuError::NoSuchDevice(index))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_recording_loads_and_answers_like_nvml() {
        let path = crate::checkout().join("tests/fixtures/gpu/h100x2.json");
        let nvml = RecordedNvml::load(&path).unwrap();
        let devices = nvml.devices().unwrap();
        assert_eq!(devices.len(), 2);
        assert_eq!(devices[1].name, "NVIDIA H100 80GB HBM3");
        assert!(nvml.reading(0).unwrap().pids.contains(&4242));
        assert!(matches!(nvml.reading(7), Err(GpuError::NoSuchDevice(7))));
    }

    #[test]
    fn a_broken_recording_names_its_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.json");
        std::fs::write(&path, r#"{"devices":[{"index":0}]}"#).unwrap();
        let error = RecordedNvml::load(&path).unwrap_err().to_string();
        assert!(error.contains("bad.json") && error.contains("missing field"), "{error}");
    }
}
