//! The run directory: all of a run's state, so that re-running the same command resumes.
//!
//! ```text
//! RUN/task.yaml            the task file as given        RUN/spec.json     the spec, paths resolved
//! RUN/state.json           the lifecycle state           RUN/data/         training/ and heldout/ (workload contract)
//! RUN/work/ID/             one workload attempt: stdout.log, stderr.log, pid, out/ (trainer output),
//!                          result.json (how it ended: written once, atomically)
//! RUN/records.json         `gradients score` input        RUN/weights.json  the leaderboard at the end
//! RUN/weights-u16.json     the weights as `gradients score --expect` takes them
//! RUN/report.json          the final report (`--output json`)
//! RUN/report.html          the same for people, with plots (`gradients report RUN` rewrites it)
//! ```

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{fsio, process};
use crate::tournament::{TaskState, WorkloadId, WorkloadState};

/// `work/ID/result.json`: how one workload attempt ended.
#[derive(Serialize, Deserialize)]
pub struct ResultFile {
    pub id: WorkloadId,
    pub state: WorkloadState,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RunDir {
    pub root: PathBuf,
}

impl RunDir {
    pub fn new(root: PathBuf) -> Self {
        Self { root }
    }

    /// The task id in records: the run directory's name, unique within a data directory.
    pub fn task_id(&self) -> String {
        self.root.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "task".into())
    }

    pub fn state(&self) -> PathBuf {
        self.root.join("state.json")
    }
    pub fn task_copy(&self) -> PathBuf {
        self.root.join("task.yaml")
    }
    pub fn spec(&self) -> PathBuf {
        self.root.join("spec.json")
    }
    pub fn data(&self) -> PathBuf {
        self.root.join("data")
    }
    pub fn work_root(&self) -> PathBuf {
        self.root.join("work")
    }
    pub fn work(&self, id: &WorkloadId) -> PathBuf {
        self.work_root().join(id.to_string())
    }
    pub fn records(&self) -> PathBuf {
        self.root.join("records.json")
    }
    pub fn weights(&self) -> PathBuf {
        self.root.join("weights.json")
    }
    pub fn report(&self) -> PathBuf {
        self.root.join("report.json")
    }

    pub fn load_state(&self) -> io::Result<Option<TaskState>> {
        fsio::read_json(&self.state())
    }

    /// How every finished attempt ended. An attempt without a result was running when an
    /// earlier executor died: whatever is left of it is killed, and since its id is absent
    /// from the observation the state machine retries it as a new attempt.
    pub fn recover(&self) -> BTreeMap<WorkloadId, WorkloadState> {
        let mut results = BTreeMap::new();
        let Ok(entries) = std::fs::read_dir(self.work_root()) else { return results };
        for dir in entries.flatten().map(|e| e.path()) {
            match fsio::read_json::<ResultFile>(&dir.join("result.json")) {
                Ok(Some(result)) => {
                    results.insert(result.id, result.state);
                }
                Ok(None) | Err(_) => {
                    if let Some((pid, ticks)) = read_pid(&dir.join("pid"))
                        && process::start_ticks(pid) == Some(ticks)
                    {
                        process::kill_group(pid);
                    }
                }
            }
        }
        results
    }
}

/// `work/ID/pid`: the pid and start time of an attempt's process (see [`process::start_ticks`]).
fn read_pid(path: &Path) -> Option<(u32, u64)> {
    let text = std::fs::read_to_string(path).ok()?;
    let mut parts = text.split_whitespace();
    Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
}

/// The run directory for a task named `name`: `explicit` when given; otherwise the latest of
/// `DATA/runs/NAME`, `NAME-2`, `NAME-3`… when it is unfinished (resume), else the next one.
pub fn choose(data_dir: &Path, name: &str, explicit: Option<&Path>) -> io::Result<RunDir> {
    if let Some(path) = explicit {
        return Ok(RunDir::new(path.to_path_buf()));
    }
    let runs = data_dir.join("runs");
    let candidate = |n: u32| RunDir::new(runs.join(if n == 1 { name.to_string() } else { format!("{name}-{n}") }));
    let mut n = 1;
    while candidate(n + 1).root.exists() {
        n += 1;
    }
    let latest = candidate(n);
    if !latest.root.exists() {
        return Ok(latest);
    }
    let finished = latest.load_state()?.is_some_and(|s| s.phase.is_terminal());
    Ok(if finished { candidate(n + 1) } else { latest })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tournament::Phase;

    #[test]
    fn resumes_the_unfinished_run_and_starts_a_new_one_after_a_finished_one() {
        let dir = tempfile::tempdir().unwrap();
        let first = choose(dir.path(), "t", None).unwrap();
        assert_eq!(first.task_id(), "t");
        std::fs::create_dir_all(&first.root).unwrap();
        assert_eq!(choose(dir.path(), "t", None).unwrap(), first, "unfinished: resume");
        let done = TaskState { phase: Phase::Succeeded, ..Default::default() };
        fsio::write_json(&first.state(), &done).unwrap();
        let second = choose(dir.path(), "t", None).unwrap();
        assert_eq!(second.task_id(), "t-2");
        std::fs::create_dir_all(&second.root).unwrap();
        assert_eq!(choose(dir.path(), "t", None).unwrap(), second);
    }
}
