//! Child processes: each workload runs in its own process group (so a timeout kills the
//! trainer and everything it started), dies with the executor (`PR_SET_PDEATHSIG`, so Ctrl-C
//! or `kill -9` of `gradients run` leaves no orphan burning CPU), and writes its stdout and
//! stderr to files in its workload directory.
//!
//! A process can leave its group (`setsid`) and its parent (a double fork), so the executor
//! is also a child subreaper (`PR_SET_CHILD_SUBREAPER`): every orphan of a workload is
//! re-parented to it instead of to init, and [`sweep_strays`] kills any child that is not a
//! running workload. Nothing a workload started outlives it.

use std::fs::File;
use std::io;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};

/// What to run.
#[derive(Debug, Clone, PartialEq)]
pub struct Spec {
    pub program: String,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
}

/// Starts `spec` with stdout to `stdout` and stderr to `stderr`, in a new process group.
pub fn spawn(spec: &Spec, cwd: &Path, stdout: &Path, stderr: &Path) -> io::Result<Child> {
    let mut command = Command::new(&spec.program);
    command
        .args(&spec.args)
        .envs(spec.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .current_dir(cwd)
        .stdin(Stdio::null())
        .stdout(File::create(stdout)?)
        .stderr(File::create(stderr)?)
        .process_group(0);
    // SAFETY: prctl is async-signal-safe and touches no memory of the parent; it runs in the
    // forked child before exec.
    unsafe {
        command.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    command.spawn()
}

/// Makes this process the reaper of its descendants' orphans (see the module comment).
pub fn become_subreaper() -> io::Result<()> {
    // SAFETY: plain prctl on this process.
    if unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The pids whose parent is this process (from `/proc/PID/stat`, field 4).
fn children() -> Vec<i32> {
    let me = std::process::id().to_string();
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
                stat.rfind(')').and_then(|i| stat[i + 2..].split_whitespace().nth(1).map(|p| p == me)) == Some(true)
            })
        })
        .collect()
}

/// Kills and reaps every child of this process that is not in `keep` (the running
/// workloads), again and again until none is left: killing one re-parents its own children
/// here. Returns how many were killed. A child's pid cannot be reused before it is reaped,
/// and only this loop reaps strays, so no unrelated process is ever signalled.
pub fn sweep_strays(keep: &[u32]) -> usize {
    let mut killed = 0;
    loop {
        let strays: Vec<i32> =
            children().into_iter().filter(|pid| !keep.iter().any(|k| i32::try_from(*k) == Ok(*pid))).collect();
        if strays.is_empty() {
            return killed;
        }
        for pid in strays {
            // SAFETY: plain syscalls on our own (unreaped) child.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
                libc::waitpid(pid, std::ptr::null_mut(), 0);
            }
            killed += 1;
        }
    }
}

/// Kills the whole process group led by `pid`.
pub fn kill_group(pid: u32) {
    if let Ok(pid) = i32::try_from(pid) {
        // SAFETY: plain syscall; a negative pid addresses the process group.
        unsafe {
            libc::kill(-pid, libc::SIGKILL);
        }
    }
}

/// The start time of `pid` in clock ticks since boot (`/proc/PID/stat` field 22): with the
/// pid it identifies a process across pid reuse.
pub fn start_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may contain spaces; fields resume after its closing parenthesis.
    let after = &stat[stat.rfind(')')? + 2..];
    after.split_whitespace().nth(19)?.parse().ok()
}

/// How a process ended, in words.
pub fn describe(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exited with code {code}"),
        (None, Some(signal)) => format!("killed by signal {signal}"),
        _ => "ended".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_process_group_is_killed_with_its_children() {
        let dir = tempfile::tempdir().unwrap();
        let spec = Spec {
            program: "sh".into(),
            args: vec!["-c".into(), "sleep 30 & echo $! > child; echo out; echo err >&2; wait".into()],
            env: vec![],
        };
        let mut child = spawn(&spec, dir.path(), &dir.path().join("o"), &dir.path().join("e")).unwrap();
        let pid = child.id();
        assert!(start_ticks(pid).is_some());
        let child_file = dir.path().join("child");
        for _ in 0..100 {
            if std::fs::read_to_string(&child_file).is_ok_and(|s| s.ends_with('\n')) {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let grandchild: u32 = std::fs::read_to_string(&child_file).unwrap().trim().parse().unwrap();
        kill_group(pid);
        let status = child.wait().unwrap();
        assert_eq!(describe(status), "killed by signal 9");
        std::thread::sleep(std::time::Duration::from_millis(100));
        let state = std::fs::read_to_string(format!("/proc/{grandchild}/stat")).unwrap_or_default();
        assert!(state.is_empty() || state.contains(") Z "), "grandchild survived: {state}");
        assert_eq!(std::fs::read_to_string(dir.path().join("o")).unwrap(), "out\n");
    }
}
