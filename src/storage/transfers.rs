//! What a workload moves between the object store and its working directory: the JSON in
//! [`TRANSFERS_ENV`], written by the operator (`workloads::ArtifactView`), read here by the
//! operator image's workloads (prepare, seal) and by `gradients_trainer.transfers` (train,
//! evaluate). Paths are relative to the working directory; URLs are presigned.

use std::path::{Component, Path};

use serde::{Deserialize, Serialize};

use super::{StorageError, archive, client, io_at};
use crate::seal::Limits;

/// The environment variable that holds a workload's transfers (JSON). It is read, then removed
/// from the environment before the workload's own code runs.
pub const TRANSFERS_ENV: &str = "GRADIENTS_TRANSFERS";
/// Where fetched inputs and outputs to store live, below the working directory.
pub const STAGING_DIR: &str = "artifacts";

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Transfers {
    pub version: u32,
    /// Objects to download before the work: `path` ← GET `url`.
    #[serde(default)]
    pub fetch: Vec<Object>,
    /// Archives to download and unpack (safely, [`archive::unpack`]) into `dir` before the work.
    #[serde(default)]
    pub fetch_archives: Vec<Archive>,
    /// Directories to pack and PUT as archives after the work succeeded.
    #[serde(default)]
    pub store_archives: Vec<Archive>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Object {
    pub path: String,
    pub url: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Archive {
    pub dir: String,
    pub url: String,
}

impl Transfers {
    pub fn is_empty(&self) -> bool {
        self.fetch.is_empty() && self.fetch_archives.is_empty() && self.store_archives.is_empty()
    }

    /// The transfers in this process's environment (removed from it), if any.
    pub fn take_from_env() -> Result<Option<Transfers>, StorageError> {
        let Ok(text) = std::env::var(TRANSFERS_ENV) else { return Ok(None) };
        // SAFETY: called at the start of a single-threaded command, before any thread exists.
        unsafe { std::env::remove_var(TRANSFERS_ENV) };
        let transfers: Transfers = serde_json::from_str(&text)
            .map_err(|e| StorageError::Config(format!("{TRANSFERS_ENV} is not valid transfers JSON: {e}")))?;
        let paths = transfers.fetch.iter().map(|o| &o.path);
        let dirs = transfers.fetch_archives.iter().chain(&transfers.store_archives).map(|a| &a.dir);
        if let Some(bad) = paths.chain(dirs).find(|p| !relative_inside(p)) {
            return Err(StorageError::Config(format!(
                "{TRANSFERS_ENV}: {bad:?} is not a relative path inside the working directory"
            )));
        }
        Ok(Some(transfers))
    }

    /// Downloads every input; archives are unpacked within `limits`.
    pub async fn fetch_all(&self, limits: &Limits) -> Result<(), StorageError> {
        for object in &self.fetch {
            client::get_to_file(&object.url, Path::new(&object.path)).await?;
        }
        for item in &self.fetch_archives {
            let scratch = tempfile::NamedTempFile::new_in(".").map_err(io_at(Path::new(".")))?;
            client::get_to_file(&item.url, scratch.path()).await?;
            let file = std::fs::File::open(scratch.path()).map_err(io_at(scratch.path()))?;
            archive::unpack(std::io::BufReader::new(file), Path::new(&item.dir), limits)?;
        }
        Ok(())
    }

    /// Packs and uploads every output directory.
    pub async fn store_all(&self) -> Result<(), StorageError> {
        for item in &self.store_archives {
            let scratch = tempfile::NamedTempFile::new_in(".").map_err(io_at(Path::new(".")))?;
            archive::pack(Path::new(&item.dir), scratch.path())?;
            client::put_file(&item.url, scratch.path()).await?;
        }
        Ok(())
    }
}

fn relative_inside(path: &str) -> bool {
    let path = Path::new(path);
    !path.as_os_str().is_empty() && path.components().all(|c| matches!(c, Component::Normal(_)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transfer_paths_stay_inside_the_working_directory() {
        assert!(relative_inside("artifacts/base-model/config.json"));
        for bad in ["/etc/passwd", "../x", "artifacts/../../x", "", "./a"] {
            assert!(!relative_inside(bad), "{bad}");
        }
    }
}
