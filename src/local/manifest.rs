//! The task file: a `Task` manifest (`apiVersion: gradients.io/v1alpha1`, `kind: Task`,
//! `metadata.name`, `spec`), so the same file can be `kubectl apply`-ed. Local paths in the
//! spec are resolved against the file's directory, after `${VAR}` expansion.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::api::task::TaskSpec;

pub const API_VERSION: &str = "gradients.io/v1alpha1";
pub const KIND: &str = "Task";

/// Why a task file cannot be run. Every message names the file and the field.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TaskFileError {
    #[error("{file}: {message}")]
    Unreadable { file: String, message: String },
    #[error("{file}: {field}: {message}")]
    Invalid { file: String, field: String, message: String },
}

impl TaskFileError {
    pub fn invalid(file: &Path, field: &str, message: impl Into<String>) -> Self {
        TaskFileError::Invalid { file: file.display().to_string(), field: field.to_string(), message: message.into() }
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Manifest<S> {
    api_version: String,
    kind: String,
    metadata: Metadata,
    spec: S,
}

#[derive(Debug, Deserialize)]
struct Metadata {
    name: String,
    // Labels, annotations, namespace: meaningful to Kubernetes, ignored here.
    #[serde(flatten)]
    _other: BTreeMap<String, serde_norway::Value>,
}

/// A parsed task file with its local paths resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskFile {
    pub path: PathBuf,
    pub name: String,
    /// The spec with `baseModel.uri`, `dataset.uri` and `dataset.syntheticUri` made absolute.
    pub spec: TaskSpec,
    /// The file as written, kept in the run directory.
    pub text: String,
}

/// A manifest file as written: its `metadata.name`, its typed `spec` and its text.
#[derive(Debug, Clone, PartialEq)]
pub struct Document<S> {
    pub name: String,
    pub spec: S,
    pub text: String,
}

/// Reads a manifest of `kind` (a task file, a `TaskSource` file): YAML syntax, unknown fields
/// and wrong types are reported with the field's path.
pub fn read<S: DeserializeOwned>(path: &Path, kind: &str) -> Result<Document<S>, TaskFileError> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path)
        .map_err(|e| TaskFileError::Unreadable { file: file.clone(), message: e.to_string() })?;
    let manifest: Manifest<S> = serde_path_to_error::deserialize(serde_norway::Deserializer::from_str(&text))
        .map_err(|e| yaml_error(path, &e))?;
    if manifest.api_version != API_VERSION {
        return Err(TaskFileError::invalid(
            path,
            "apiVersion",
            format!("expected {API_VERSION}, found {:?}", manifest.api_version),
        ));
    }
    if manifest.kind != kind {
        return Err(TaskFileError::invalid(path, "kind", format!("expected {kind}, found {:?}", manifest.kind)));
    }
    Ok(Document { name: manifest.metadata.name, spec: manifest.spec, text })
}

/// Reads and parses a task file, its local paths resolved.
pub fn load(path: &Path) -> Result<TaskFile, TaskFileError> {
    let Document { name, spec, text } = read::<TaskSpec>(path, KIND)?;
    let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let dir = if dir.as_os_str().is_empty() { PathBuf::from(".") } else { dir };
    let mut spec = spec;
    spec.base_model.uri = resolve(path, &dir, "spec.baseModel.uri", &spec.base_model.uri)?;
    spec.dataset.uri = resolve(path, &dir, "spec.dataset.uri", &spec.dataset.uri)?;
    if let Some(uri) = spec.dataset.synthetic_uri.take() {
        spec.dataset.synthetic_uri = Some(resolve(path, &dir, "spec.dataset.syntheticUri", &uri)?);
    }
    if let Some(generator) = spec.dataset.generator.as_mut() {
        generator.model_uri = resolve(path, &dir, "spec.dataset.generator.modelUri", &generator.model_uri)?;
        if let Some(uri) = generator.weaker_model_uri.take() {
            generator.weaker_model_uri = Some(resolve(path, &dir, "spec.dataset.generator.weakerModelUri", &uri)?);
        }
    }
    Ok(TaskFile { path: path.to_path_buf(), name, spec, text })
}

/// The field is the path serde_path_to_error tracked (`spec.baseModel.paramsB`); the message
/// is the YAML library's, without the path it may have put in front.
fn yaml_error(path: &Path, error: &serde_path_to_error::Error<serde_norway::Error>) -> TaskFileError {
    let field = error.path().to_string();
    let message = error.inner().to_string();
    // serde_norway puts its own (shorter) path in front: `spec: unknown field …`.
    let message = match message.split_once(": ") {
        Some((own, rest)) if !own.contains(' ') && field.starts_with(own) => rest.to_string(),
        _ => message,
    };
    match field.as_str() {
        "" | "." => TaskFileError::invalid(path, "(document)", message),
        _ => TaskFileError::invalid(path, &field, message),
    }
}

/// `${VAR}` expansion, `file://` stripped, relative paths joined to the file's directory.
fn resolve(file: &Path, dir: &Path, field: &str, uri: &str) -> Result<String, TaskFileError> {
    let expanded = expand_env(uri).map_err(|var| {
        TaskFileError::invalid(file, field, format!("environment variable {var} is not set (in {uri:?})"))
    })?;
    let local = expanded.strip_prefix("file://").unwrap_or(&expanded);
    if let Some((scheme, _)) = local.split_once("://") {
        return Err(TaskFileError::invalid(
            file,
            field,
            format!("{scheme}:// locations need the operator; a local run reads local paths"),
        ));
    }
    let path = Path::new(local);
    let absolute = if path.is_absolute() { path.to_path_buf() } else { dir.join(path) };
    Ok(absolute.to_string_lossy().into_owned())
}

/// Expands `${NAME}`; returns the name of the first unset variable.
fn expand_env(text: &str) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let Some(len) = rest[start + 2..].find('}') else {
            out.push_str(&rest[start..]);
            return Ok(out);
        };
        let name = &rest[start + 2..start + 2 + len];
        out.push_str(&std::env::var(name).map_err(|_| name.to_string())?);
        rest = &rest[start + 3 + len..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, text: &str) -> PathBuf {
        let path = dir.join("task.yaml");
        std::fs::write(&path, text).unwrap();
        path
    }

    const GOOD: &str = "apiVersion: gradients.io/v1alpha1\nkind: Task\nmetadata:\n  name: t\n  labels: {a: b}\nspec:\n  taskType: InstructText\n  baseModel: {uri: base, paramsB: 0.1}\n  dataset: {uri: file://data.jsonl}\n  hours: 0.01\n  miners: [{name: a, strategy: lora-fast}]\n";

    #[test]
    fn resolves_paths_against_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let task = load(&write(dir.path(), GOOD)).unwrap();
        assert_eq!(task.name, "t");
        assert_eq!(task.spec.base_model.uri, dir.path().join("base").to_string_lossy());
        assert_eq!(task.spec.dataset.uri, dir.path().join("data.jsonl").to_string_lossy());
    }

    #[test]
    fn errors_name_the_file_and_the_field() {
        let dir = tempfile::tempdir().unwrap();
        let cases = [
            (GOOD.replace("hours: 0.01", "hours: 0.01\n  colour: red"), "spec.colour", "unknown field `colour`"),
            (GOOD.replace("paramsB: 0.1", "paramsB: big"), "spec.baseModel.paramsB", "invalid type"),
            (GOOD.replace("uri: base,", "uri: s3://bucket/base,"), "spec.baseModel.uri", "s3://"),
            (
                GOOD.replace("uri: base,", "uri: \"${GRADIENTS_TEST_UNSET_VAR}/base\","),
                "spec.baseModel.uri",
                "GRADIENTS_TEST_UNSET_VAR",
            ),
            (GOOD.replace("kind: Task", "kind: Job"), "kind", "expected Task"),
            (
                GOOD.replace("miners: [{name: a, strategy: lora-fast}]", "miners: [{name: a, strategy: [x]}]"),
                "spec.miners[0].strategy",
                "invalid type",
            ),
            (GOOD.replace("spec:\n", "spec: [\n"), "spec", "invalid type: sequence"),
            // A syntax error is reported where the parser stopped, with the line it began on.
            (GOOD.replace("name: t", "name: \"t"), "metadata.name", "scanning a quoted scalar at line 4"),
            ("[1, 2]\n".to_string(), "(document)", "invalid type: sequence"),
        ];
        for (text, field, message) in cases {
            let err = load(&write(dir.path(), &text)).unwrap_err();
            match &err {
                TaskFileError::Invalid { file, field: f, message: m } => {
                    assert!(file.ends_with("task.yaml"), "{err}");
                    assert_eq!(f, field, "{err}");
                    assert!(m.contains(message), "{err}");
                }
                other => panic!("{other:?}"),
            }
        }
    }
}
