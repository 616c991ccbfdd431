//! Is this node the hardware its labels promise? The GPU class a task asks for lands on nodes
//! by their labels (NVIDIA GPU feature discovery's, which `gpuClasses.*.nodeSelector` uses);
//! a node whose GPUs are another model, have less memory, or fewer GPUs than labelled would run
//! a tournament slot on non-standard hardware. Pure: labels and NVML's devices in, reasons out.

use std::collections::BTreeMap;

use super::GpuDevice;

pub const PRODUCT_LABEL: &str = "nvidia.com/gpu.product";
/// Memory per GPU in MiB.
pub const MEMORY_LABEL: &str = "nvidia.com/gpu.memory";
pub const COUNT_LABEL: &str = "nvidia.com/gpu.count";

const MIB: u64 = 1024 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum MismatchKind {
    Product,
    Memory,
    Count,
    /// A label the check cannot read (not a number).
    Label,
}

impl MismatchKind {
    /// The metric label value.
    pub fn as_str(self) -> &'static str {
        match self {
            MismatchKind::Product => "product",
            MismatchKind::Memory => "memory",
            MismatchKind::Count => "count",
            MismatchKind::Label => "label",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mismatch {
    /// The GPU at fault, or `None` for the node as a whole (count, labels).
    pub gpu: Option<u32>,
    pub kind: MismatchKind,
    /// For a person: what the label says and what the GPU is.
    pub reason: String,
}

/// Every way the GPUs differ from the node's GPU labels; labels that are absent are not checked.
pub fn check(labels: &BTreeMap<String, String>, devices: &[GpuDevice]) -> Vec<Mismatch> {
    let mut found = Vec::new();
    let mut node = |kind, reason| found.push(Mismatch { gpu: None, kind, reason });
    let memory_mib = number(labels, MEMORY_LABEL).unwrap_or_else(|reason| {
        node(MismatchKind::Label, reason);
        None
    });
    match number(labels, COUNT_LABEL) {
        Ok(Some(count)) if (devices.len() as u64) < count => {
            node(MismatchKind::Count, format!("{COUNT_LABEL}={count} but NVML sees {} GPU(s)", devices.len()))
        }
        Ok(_) => {}
        Err(reason) => node(MismatchKind::Label, reason),
    }
    let product = labels.get(PRODUCT_LABEL).map(|p| p.strip_suffix("-SHARED").unwrap_or(p));
    for device in devices {
        let gpu = Some(device.index);
        let name = device.name.replace(' ', "-");
        if let Some(product) = product
            && name != product
        {
            let reason = format!("GPU {} is {:?}, {PRODUCT_LABEL}={product}", device.index, device.name);
            found.push(Mismatch { gpu, kind: MismatchKind::Product, reason });
        }
        let mib = device.memory_total_bytes / MIB;
        if let Some(expected) = memory_mib
            && mib < expected
        {
            let reason = format!("GPU {} has {mib} MiB, {MEMORY_LABEL}={expected}", device.index);
            found.push(Mismatch { gpu, kind: MismatchKind::Memory, reason });
        }
    }
    found
}

/// The Node condition type the agent owns (server-side applied, one entry of the conditions).
pub const CONDITION: &str = "GpuClassMismatch";

/// The condition's status, reason and message for these mismatches.
pub fn condition(mismatches: &[Mismatch]) -> (&'static str, &'static str, String) {
    if mismatches.is_empty() {
        ("False", "GpusMatchLabels", "every GPU matches the node's nvidia.com/gpu.* labels".to_string())
    } else {
        let reasons: Vec<&str> = mismatches.iter().map(|m| m.reason.as_str()).collect();
        ("True", CONDITION, reasons.join("; "))
    }
}

fn number(labels: &BTreeMap<String, String>, key: &str) -> Result<Option<u64>, String> {
    labels
        .get(key)
        .map(|v| v.parse::<u64>().map_err(|_| format!("label {key}={v:?} is not a whole number")))
        .transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gpu(index: u32, name: &str, gib: u64) -> GpuDevice {
        GpuDevice { index, uuid: format!("GPU-{index}"), name: name.into(), memory_total_bytes: gib * 1024 * MIB }
    }

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn mismatches_by_hand() {
        let h100 = |i| gpu(i, "NVIDIA H100 80GB HBM3", 80);
        let h100_labels = [(PRODUCT_LABEL, "NVIDIA-H100-80GB-HBM3"), (MEMORY_LABEL, "81920"), (COUNT_LABEL, "2")];
        // (case, node labels, GPUs, mismatches as (GPU, kind))
        type Case<'a> = (&'a str, Vec<(&'a str, &'a str)>, Vec<GpuDevice>, Vec<(Option<u32>, MismatchKind)>);
        let cases: Vec<Case> = vec![
            ("as labelled", h100_labels.to_vec(), vec![h100(0), h100(1)], vec![]),
            ("time-sliced product label", vec![(PRODUCT_LABEL, "NVIDIA-H100-80GB-HBM3-SHARED")], vec![h100(0)], vec![]),
            ("no labels: nothing to check", vec![], vec![gpu(0, "Tesla T4", 16)], vec![]),
            (
                "an A100 in an H100 node",
                h100_labels.to_vec(),
                vec![h100(0), gpu(1, "NVIDIA A100-SXM4-40GB", 40)],
                vec![(Some(1), MismatchKind::Product), (Some(1), MismatchKind::Memory)],
            ),
            ("a GPU fell off the bus", h100_labels.to_vec(), vec![h100(0)], vec![(None, MismatchKind::Count)]),
            ("more memory than labelled is fine", vec![(MEMORY_LABEL, "40960")], vec![h100(0)], vec![]),
            ("unreadable label", vec![(MEMORY_LABEL, "80GB")], vec![h100(0)], vec![(None, MismatchKind::Label)]),
        ];
        for (name, pairs, devices, expected) in cases {
            let got: Vec<_> = check(&labels(&pairs), &devices).into_iter().map(|m| (m.gpu, m.kind)).collect();
            assert_eq!(got, expected, "{name}");
        }
    }

    #[test]
    fn the_condition_lists_every_reason_or_says_all_is_well() {
        assert_eq!(condition(&[]).0, "False");
        let found = check(&labels(&[(COUNT_LABEL, "8")]), &[gpu(0, "H100", 80)]);
        assert_eq!(condition(&found), ("True", CONDITION, "nvidia.com/gpu.count=8 but NVML sees 1 GPU(s)".to_string()));
    }

    #[test]
    fn the_reason_says_what_the_label_promised_and_what_the_gpu_is() {
        let found = check(&labels(&[(PRODUCT_LABEL, "NVIDIA-H100-80GB-HBM3")]), &[gpu(3, "NVIDIA A100-SXM4-40GB", 40)]);
        assert_eq!(found[0].reason, "GPU 3 is \"NVIDIA A100-SXM4-40GB\", nvidia.com/gpu.product=NVIDIA-H100-80GB-HBM3");
    }
}
