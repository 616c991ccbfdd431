//! `RUN/report.html`: a page people look at, written at the end of every `gradients run` and
//! by `gradients report RUN_DIR`. [`read`] is the I/O edge (it reads the run directory and
//! the store), [`model::extract`] the pure part, [`render::html`] the drawing.

pub mod model;
pub mod render;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};

use super::devices;
use super::fsio;
use super::report::{self, RunReport};
use super::rundir::{ResultFile, RunDir};
use super::store::Store;
use crate::api::task::TaskSpec;
use crate::tournament::{TaskState, TournamentConfig, Work, WorkKind, WorkloadState};
use model::RunContents;

/// Bytes read from the end of a trainer's stdout: its progress lines are short, and a
/// miner's program may print without end.
const LOG_TAIL_BYTES: u64 = 4 << 20;

/// `RUN/report.html`.
pub fn path(run: &RunDir) -> PathBuf {
    run.root.join("report.html")
}

/// Reads what the page is made from: the run directory's state and report and the store in
/// `data_dir`.
pub fn read(run: &RunDir, data_dir: &Path, config: &TournamentConfig) -> io::Result<RunContents> {
    let missing = |what: &Path| {
        io::Error::new(
            io::ErrorKind::NotFound,
            format!("{} is missing: {} is not a run directory of `gradients run`", what.display(), run.root.display()),
        )
    };
    let state: TaskState = fsio::read_json(&run.state())?.ok_or_else(|| missing(&run.state()))?;
    let report = match fsio::read_json::<RunReport>(&run.report())? {
        Some(report) => report,
        // An unfinished run has no report yet: the same one, built from its state.
        None => {
            let spec: TaskSpec = fsio::read_json(&run.spec())?.ok_or_else(|| missing(&run.spec()))?;
            let weights = fsio::read_json(&run.weights())?;
            let gpus = devices::collect(&run.work_root());
            report::build(&run.task_id(), &spec, &state, weights.as_ref(), &run.root, config, gpus)
        }
    };
    let (mut train_logs, mut train_spans) = (BTreeMap::new(), BTreeMap::new());
    for entrant in &state.entrants {
        if matches!(entrant.training, Work::Waiting | Work::NotNeeded { .. }) {
            continue;
        }
        let work = run.work(&entrant.workload_id(WorkKind::Train));
        train_logs.insert(entrant.name.clone(), fsio::tail(&work.join("stdout.log"), usize::MAX, LOG_TAIL_BYTES));
        let span = match fsio::read_json::<ResultFile>(&work.join("result.json")).ok().flatten().map(|r| r.state) {
            Some(WorkloadState::Succeeded { started_at, finished_at, .. }) => Some((started_at, finished_at)),
            Some(WorkloadState::Failed { started_at: Some(started_at), finished_at, .. }) => {
                Some((started_at, finished_at))
            }
            _ => None,
        };
        if let Some(span) = span {
            train_spans.insert(entrant.name.clone(), span);
        }
    }
    let store = Store::new(data_dir).load()?;
    Ok(RunContents { report, state, train_logs, train_spans, store })
}

/// Writes `RUN/report.html` and returns its path.
pub fn write(run: &RunDir, data_dir: &Path, config: &TournamentConfig) -> io::Result<PathBuf> {
    let contents = read(run, data_dir, config)?;
    let page = model::extract(&contents, &config.mechanism);
    let target = path(run);
    fsio::write_atomic(&target, render::html(&page).as_bytes())?;
    Ok(target)
}

/// The data directory of a run directory made by `gradients run` without `--run-dir`:
/// `DATA/runs/NAME` → `DATA`, when it holds a leaderboard store.
pub fn data_dir_of(run: &Path) -> Option<PathBuf> {
    let data = run.parent()?.parent()?;
    Store::new(data).path().exists().then(|| data.to_path_buf())
}
