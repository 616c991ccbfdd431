//! `gradients synthesize FILE`: a `TaskSource` manifest in, the Task of one draw out, exactly
//! as the operator would create it (name, labels, spec), without a cluster.

use std::collections::BTreeMap;
use std::path::Path;

use kube::api::ObjectMeta;
use serde::Deserialize;

use super::{Draw, SourceError, draw, labels};
use crate::api::Task;
use crate::api::task_source::TaskSourceSpec;

/// The same group/version as a task file: one definition.
pub use crate::local::manifest::API_VERSION;
pub const KIND: &str = "TaskSource";

/// Why a source file gives no Task; every message names the file and the field.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FileError {
    #[error("{file}: {message}")]
    Unreadable { file: String, message: String },
    #[error("{file}: {source}")]
    Invalid { file: String, source: SourceError },
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Manifest {
    api_version: String,
    kind: String,
    metadata: Metadata,
    spec: TaskSourceSpec,
}

#[derive(Debug, Deserialize)]
struct Metadata {
    name: String,
    #[serde(flatten)]
    _other: BTreeMap<String, serde_norway::Value>,
}

/// A source read from a file: its name and spec.
#[derive(Debug, Clone, PartialEq)]
pub struct SourceFile {
    pub name: String,
    pub spec: TaskSourceSpec,
}

pub fn load(path: &Path) -> Result<SourceFile, FileError> {
    let file = path.display().to_string();
    let unreadable = |message: String| FileError::Unreadable { file: file.clone(), message };
    let invalid = |field: &str, message: String| FileError::Invalid {
        file: file.clone(),
        source: SourceError::Invalid { field: field.to_string(), message },
    };
    let text = std::fs::read_to_string(path).map_err(|e| unreadable(e.to_string()))?;
    let manifest: Manifest = serde_norway::from_str(&text).map_err(|e| unreadable(e.to_string()))?;
    if manifest.api_version != API_VERSION {
        return Err(invalid("apiVersion", format!("expected {API_VERSION}, found {:?}", manifest.api_version)));
    }
    if manifest.kind != KIND {
        return Err(invalid("kind", format!("expected {KIND}, found {:?}", manifest.kind)));
    }
    Ok(SourceFile { name: manifest.metadata.name, spec: manifest.spec })
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
