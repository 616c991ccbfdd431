//! Which pod a process belongs to, from `/proc/PID/cgroup`: the kubelet puts every container in
//! a cgroup below its pod's, named after the pod UID (`pod<uid>` with the cgroupfs driver,
//! `…-pod<uid with _>.slice` with the systemd driver), on cgroup v1 and v2 alike.

use std::path::Path;

/// The pod UID in a `/proc/PID/cgroup` file's text, if the process runs in a pod.
pub fn pod_uid(cgroup_file: &str) -> Option<String> {
    cgroup_file.lines().find_map(|line| {
        // `hierarchy-id:controllers:path`; the path may itself hold ':' on odd systems.
        let path = line.splitn(3, ':').nth(2)?;
        path.split('/').find_map(segment_uid)
    })
}

fn segment_uid(segment: &str) -> Option<String> {
    if let Some(uid) = segment.strip_prefix("pod")
        && is_uid(uid)
    {
        return Some(uid.to_string());
    }
    let slice = segment.strip_suffix(".slice")?;
    let (_, uid) = slice.rsplit_once("-pod")?;
    let uid = uid.replace('_', "-");
    is_uid(&uid).then_some(uid)
}

/// 8-4-4-4-12 hexadecimal digits: a Kubernetes UID, and nothing a container ID could be.
fn is_uid(text: &str) -> bool {
    let groups: Vec<&str> = text.split('-').collect();
    groups.len() == 5
        && groups.iter().zip([8, 4, 4, 4, 12]).all(|(g, n)| g.len() == n && g.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// The pod UID of a host PID, reading `PROC/PID/cgroup` (`/proc`, or the host's `/proc`
/// mounted read-only into the agent). A process gone since NVML listed it is `None`.
pub fn pod_uid_of_pid(proc_root: &Path, pid: u32) -> Option<String> {
    let text = std::fs::read_to_string(proc_root.join(pid.to_string()).join("cgroup")).ok()?;
    pod_uid(&text)
}

#[cfg(test)]
mod tests {
    use super::*;

    const UID: &str = "6f2f8b6e-3c8a-4b8e-9c52-1f0b7e5f9a10";

    #[test]
    fn pod_uids_from_real_cgroup_files() {
        let cases = [
            // cgroup v1, cgroupfs driver (docker / containerd), several hierarchies.
            (
                "12:memory:/kubepods/burstable/pod6f2f8b6e-3c8a-4b8e-9c52-1f0b7e5f9a10/3f1c9a2b7d\n\
                 11:cpu,cpuacct:/kubepods/burstable/pod6f2f8b6e-3c8a-4b8e-9c52-1f0b7e5f9a10/3f1c9a2b7d\n\
                 1:name=systemd:/kubepods/burstable/pod6f2f8b6e-3c8a-4b8e-9c52-1f0b7e5f9a10/3f1c9a2b7d\n",
                Some(UID),
            ),
            // cgroup v1, systemd driver.
            (
                "4:devices:/kubepods.slice/kubepods-burstable.slice/\
                 kubepods-burstable-pod6f2f8b6e_3c8a_4b8e_9c52_1f0b7e5f9a10.slice/cri-containerd-3f1c9a2b7d.scope\n",
                Some(UID),
            ),
            // cgroup v2, systemd driver, BestEffort and Guaranteed (no QoS slice).
            (
                "0::/kubepods.slice/kubepods-besteffort.slice/\
                 kubepods-besteffort-pod6f2f8b6e_3c8a_4b8e_9c52_1f0b7e5f9a10.slice/cri-containerd-3f1c9a2b7d.scope\n",
                Some(UID),
            ),
            (
                "0::/kubepods.slice/kubepods-pod6f2f8b6e_3c8a_4b8e_9c52_1f0b7e5f9a10.slice/crio-3f1c9a2b7d.scope\n",
                Some(UID),
            ),
            // cgroup v2, cgroupfs driver, Guaranteed.
            ("0::/kubepods/pod6f2f8b6e-3c8a-4b8e-9c52-1f0b7e5f9a10/3f1c9a2b7d\n", Some(UID)),
            // Seen from inside a cgroup namespace: relative to the reader's root.
            (
                "0::/../../kubepods-besteffort-pod6f2f8b6e_3c8a_4b8e_9c52_1f0b7e5f9a10.slice/cri-containerd-3f.scope\n",
                Some(UID),
            ),
            // Not in a pod: the host, a systemd service, a user session, a plain docker container.
            ("0::/init.scope\n", None),
            ("0::/system.slice/nvidia-persistenced.service\n", None),
            ("0::/user.slice/user-1000.slice/session-3.scope\n", None),
            ("12:memory:/docker/3f1c9a2b7d6e\n", None),
            // Look-alikes: not a UID.
            ("0::/kubepods/podcast/3f1c\n", None),
            ("0::/kubepods.slice/kubepods-podnotauid.slice\n", None),
            ("", None),
        ];
        for (text, expected) in cases {
            assert_eq!(pod_uid(text).as_deref(), expected, "{text}");
        }
    }

    #[test]
    fn a_process_that_is_gone_has_no_pod() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("4242")).unwrap();
        std::fs::write(dir.path().join("4242/cgroup"), format!("0::/kubepods/burstable/pod{UID}/abc\n")).unwrap();
        assert_eq!(pod_uid_of_pid(dir.path(), 4242).as_deref(), Some(UID));
        assert_eq!(pod_uid_of_pid(dir.path(), 4243), None);
    }
}
