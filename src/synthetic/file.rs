//! `gradients synthesize FILE`: a `TaskSource` manifest in, the Task of one draw out, exactly
//! as the operator would create it (name, labels, spec), without a cluster.

use std::collections::BTreeMap;
use std::path::Path;

use kube::api::ObjectMeta;

use super::{Draw, SourceError, draw, labels};
use crate::api::Task;
use crate::api::task_source::TaskSourceSpec;

use crate::local::manifest::{self, TaskFileError};

/// Its apiVersion is the task file's (`manifest::API_VERSION`), read by the same loader.
pub const KIND: &str = "TaskSource";

/// Why a source file gives no Task; every message names the file and the field.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FileError {
    #[error("{file}: {message}")]
    Unreadable { file: String, message: String },
    #[error("{file}: {source}")]
    Invalid { file: String, source: SourceError },
}

/// A source read from a file: its name and spec.
#[derive(Debug, Clone, PartialEq)]
pub struct SourceFile {
    pub name: String,
    pub spec: TaskSourceSpec,
}

/// Reads a source file; its errors name the field (`spec.catalog.models[1].paramsB`).
pub fn load(path: &Path) -> Result<SourceFile, FileError> {
    let document = manifest::read::<TaskSourceSpec>(path, KIND).map_err(|e| match e {
        TaskFileError::Unreadable { file, message } => FileError::Unreadable { file, message },
        TaskFileError::Invalid { file, field, message } => {
            FileError::Invalid { file, source: SourceError::Invalid { field, message } }
        }
    })?;
    Ok(SourceFile { name: document.name, spec: document.spec })
}

/// The Task of draw `index` of the source in `path`, with `seed` (default: the file's).
pub fn synthesize(path: &Path, seed: Option<u64>, index: u64) -> Result<Task, FileError> {
    let source = load(path)?;
    let drawn = draw(&source.spec, &source.name, seed.unwrap_or(source.spec.seed), index)
        .map_err(|source| FileError::Invalid { file: path.display().to_string(), source })?;
    Ok(task(&drawn, &source.name))
}

/// The Task object of a draw: its name and labels; the operator adds namespace and owner.
pub fn task(drawn: &Draw, source: &str) -> Task {
    let labels = BTreeMap::from([
        (labels::SOURCE.to_string(), source.to_string()),
        (labels::INDEX.to_string(), drawn.index.to_string()),
    ]);
    Task {
        metadata: ObjectMeta { name: Some(drawn.name.clone()), labels: Some(labels), ..ObjectMeta::default() },
        spec: drawn.spec.clone(),
        status: None,
    }
}
