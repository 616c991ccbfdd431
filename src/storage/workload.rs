//! The operator image's workloads (prepare, seal) with their transfers: fetch, work, store.

use std::path::Path;

use super::{StorageError, Transfers};
use crate::seal::{Limits, Manifest, SealError};

fn runtime() -> Result<tokio::runtime::Runtime, StorageError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| StorageError::Config(format!("runtime: {e}")))
}

/// Runs `work` between fetching and storing the transfers in the environment (a plain call
/// without them); stores only when `succeeded` says so.
pub fn around<T>(limits: &Limits, work: impl FnOnce() -> T, succeeded: impl Fn(&T) -> bool) -> Result<T, StorageError> {
    let Some(transfers) = Transfers::take_from_env()? else { return Ok(work()) };
    let runtime = runtime()?;
    runtime.block_on(transfers.fetch_all(limits))?;
    let result = work();
    if succeeded(&result) {
        runtime.block_on(transfers.store_all())?;
    }
    Ok(result)
}

/// `gradients seal` with its transfers: a trainer archive that is missing or breaks the
/// archive rules is the submission's fault (refused, final); a transfer that fails otherwise is
/// ours (retried).
pub fn seal(input: &Path, output: &Path, limits: &Limits) -> Result<Manifest, SealError> {
    let ours =
        |e: StorageError| SealError::Io { path: "object store".into(), source: std::io::Error::other(e.to_string()) };
    let Some(transfers) = Transfers::take_from_env().map_err(ours)? else {
        return crate::seal::seal(input, output, limits);
    };
    let runtime = runtime().map_err(ours)?;
    runtime.block_on(transfers.fetch_all(limits)).map_err(|e| match e {
        StorageError::Refused(why) => SealError::Refused(why),
        StorageError::Status { status: 404, .. } => SealError::Refused("the trainer stored no output archive".into()),
        e => ours(e),
    })?;
    let manifest = crate::seal::seal(input, output, limits)?;
    runtime.block_on(transfers.store_all()).map_err(ours)?;
    Ok(manifest)
}
