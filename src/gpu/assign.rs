//! Which GPUs each parallel workload of `gradients run` gets: disjoint sets, lowest NVML index
//! first, named by UUID in `CUDA_VISIBLE_DEVICES` (CUDA's own device order may differ from
//! NVML's; a UUID means the same GPU to both). Pure: devices, the ones in use and the requests
//! in, one answer per request out.

use std::collections::BTreeSet;
use std::fmt;

use super::GpuDevice;

/// A workload asking for a number of GPUs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub workload: String,
    pub gpus: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Assignment {
    /// These GPUs (UUIDs), none of them given to another workload.
    Devices(Vec<String>),
    /// Fits this machine, but not next to the workloads already holding GPUs: wait for one to end.
    Wait { asked: u32, free: u32 },
    /// Asks for more GPUs than this machine has: it never fits.
    Never { asked: u32, total: u32 },
}

impl Assignment {
    /// The `CUDA_VISIBLE_DEVICES` value (empty for a CPU-only workload: CUDA sees no GPU).
    pub fn cuda_visible_devices(&self) -> Option<String> {
        match self {
            Assignment::Devices(uuids) => Some(uuids.join(",")),
            _ => None,
        }
    }
}

impl fmt::Display for Assignment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Assignment::Devices(uuids) if uuids.is_empty() => write!(f, "no GPU"),
            Assignment::Devices(uuids) => write!(f, "GPUs {}", uuids.join(",")),
            Assignment::Wait { asked, free } => {
                write!(f, "asks for {asked} GPU(s), {free} free: waits for a running workload to end")
            }
            Assignment::Never { asked, total } => {
                write!(f, "asks for {asked} GPU(s), this machine has {total}: cannot run here")
            }
        }
    }
}

/// The devices a run may hand out: all of them, or those its own `CUDA_VISIBLE_DEVICES` lists
/// (by NVML index or UUID, as the user wrote them; `-1` or empty: none).
pub fn visible(devices: &[GpuDevice], cuda_visible_devices: Option<&str>) -> Vec<GpuDevice> {
    let Some(list) = cuda_visible_devices.map(str::trim) else {
        let mut all = devices.to_vec();
        all.sort_by_key(|d| d.index);
        return all;
    };
    list.split(',')
        .map(str::trim)
        .take_while(|entry| !entry.is_empty() && *entry != "-1")
        .filter_map(|entry| devices.iter().find(|d| d.uuid == entry || d.index.to_string() == entry))
        .cloned()
        .collect()
}

/// Gives each request, in order, its own GPUs from those not `in_use` (UUIDs) nor given to an
/// earlier request.
pub fn assign(devices: &[GpuDevice], in_use: &BTreeSet<String>, requests: &[Request]) -> Vec<(String, Assignment)> {
    let mut ordered: Vec<&GpuDevice> = devices.iter().collect();
    ordered.sort_by_key(|d| d.index);
    let mut free: Vec<&str> = ordered.iter().map(|d| d.uuid.as_str()).filter(|u| !in_use.contains(*u)).collect();
    let total = u32::try_from(devices.len()).unwrap_or(u32::MAX);
    requests
        .iter()
        .map(|request| {
            let asked = request.gpus;
            let answer = if asked > total {
                Assignment::Never { asked, total }
            } else if asked as usize > free.len() {
                Assignment::Wait { asked, free: free.len() as u32 }
            } else {
                Assignment::Devices(free.drain(..asked as usize).map(str::to_string).collect())
            };
            (request.workload.clone(), answer)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn machine(count: u32) -> Vec<GpuDevice> {
        // Listed out of order on purpose: assignment goes by index.
        (0..count)
            .rev()
            .map(|i| GpuDevice { index: i, uuid: format!("GPU-{i}"), name: "H100".into(), memory_total_bytes: 1 })
            .collect()
    }

    fn requests(asks: &[(&str, u32)]) -> Vec<Request> {
        asks.iter().map(|(w, n)| Request { workload: w.to_string(), gpus: *n }).collect()
    }

    #[test]
    fn assignments_by_hand() {
        // (case, GPUs on the machine, GPUs in use, requests, CUDA_VISIBLE_DEVICES or None)
        type Case<'a> = (&'a str, u32, Vec<&'a str>, Vec<(&'a str, u32)>, Vec<Option<&'a str>>);
        let cases: Vec<Case> = vec![
            ("one each", 4, vec![], vec![("a", 1), ("b", 1)], vec![Some("GPU-0"), Some("GPU-1")]),
            (
                "disjoint blocks",
                8,
                vec![],
                vec![("a", 2), ("b", 4), ("c", 2)],
                vec![Some("GPU-0,GPU-1"), Some("GPU-2,GPU-3,GPU-4,GPU-5"), Some("GPU-6,GPU-7")],
            ),
            ("busy GPUs are skipped", 4, vec!["GPU-0", "GPU-2"], vec![("a", 2)], vec![Some("GPU-1,GPU-3")]),
            (
                "the third waits",
                2,
                vec![],
                vec![("a", 1), ("b", 1), ("c", 1)],
                vec![Some("GPU-0"), Some("GPU-1"), None],
            ),
            (
                "a later small one still fits",
                3,
                vec![],
                vec![("a", 2), ("b", 2), ("c", 1)],
                vec![Some("GPU-0,GPU-1"), None, Some("GPU-2")],
            ),
            ("CPU-only workload sees no GPU", 2, vec![], vec![("cpu", 0)], vec![Some("")]),
            ("no GPU on this machine", 0, vec![], vec![("a", 1), ("cpu", 0)], vec![None, Some("")]),
        ];
        for (name, count, busy, asks, expected) in cases {
            let in_use = busy.iter().map(|s| s.to_string()).collect();
            let got: Vec<Option<String>> = assign(&machine(count), &in_use, &requests(&asks))
                .iter()
                .map(|(_, a)| a.cuda_visible_devices())
                .collect();
            let expected: Vec<Option<String>> = expected.into_iter().map(|e| e.map(str::to_string)).collect();
            assert_eq!(got, expected, "{name}");
        }
    }

    #[test]
    fn the_runs_own_cuda_visible_devices_limits_what_it_hands_out() {
        let cases = [
            (None, vec![0, 1, 2, 3]),
            (Some("2,0"), vec![2, 0]),
            (Some("GPU-3"), vec![3]),
            (Some(" 1 , GPU-2 "), vec![1, 2]),
            (Some(""), vec![]),
            (Some("-1"), vec![]),
            // CUDA stops at the first invalid entry; so does this.
            (Some("0,-1,2"), vec![0]),
            (Some("7"), vec![]),
        ];
        for (list, expected) in cases {
            let got: Vec<u32> = visible(&machine(4), list).iter().map(|d| d.index).collect();
            assert_eq!(got, expected, "{list:?}");
        }
    }

    #[test]
    fn a_workload_that_cannot_fit_says_why() {
        let answers = assign(&machine(2), &["GPU-1".to_string()].into(), &requests(&[("big", 4), ("pair", 2)]));
        assert_eq!(answers[0], ("big".into(), Assignment::Never { asked: 4, total: 2 }));
        assert_eq!(answers[0].1.to_string(), "asks for 4 GPU(s), this machine has 2: cannot run here");
        assert_eq!(answers[1].1, Assignment::Wait { asked: 2, free: 1 });
        assert_eq!(answers[1].1.to_string(), "asks for 2 GPU(s), 1 free: waits for a running workload to end");
    }
}
