//! Sealing a trainer's output at hand-off (`gradients seal`, and in-process for local runs):
//! after the trainer is gone, its `OUTPUT/model/` is copied into `SEALED/model/` (regular files
//! and directories only, within size caps) and `SEALED/manifest.json` records every file's
//! digest and the tree digest the evaluator verifies before it loads anything.
//!
//! Tree digest (the Python evaluator computes it identically): over every regular file below
//! the model directory, its relative POSIX path, sorted by the path's bytes; SHA-256 of the
//! concatenation of `"{path}\0{size}\0{sha256hex}\n"`, written `sha256:` + lowercase hex.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::tournament::TrainingSummary;
pub use crate::workloads::contract::MANIFEST_FILE;
use crate::workloads::contract::{MODEL_DIR, TRAINING_SUMMARY_FILE};

/// How much a submission may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct Limits {
    pub max_file_bytes: u64,
    pub max_total_bytes: u64,
    pub max_files: u64,
}

impl Default for Limits {
    /// Generous for real checkpoints (a 70B model in bf16 is about 140 GB in shards of a few GB).
    fn default() -> Self {
        Self { max_file_bytes: 64 << 30, max_total_bytes: 512 << 30, max_files: 10_000 }
    }
}

/// Directory depth below `model/` a submission may use.
const MAX_DEPTH: usize = 16;

/// One file of a sealed model.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestEntry {
    pub path: String,
    pub size: u64,
    pub sha256: String,
}

/// `SEALED/manifest.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub version: u32,
    pub digest: String,
    pub files: Vec<ManifestEntry>,
}

/// What `gradients seal` reports (stdout and termination message): the digest, or why the
/// submission was refused. A refusal is the submission's fault and final; a crash is not.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SealReport {
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    #[serde(default)]
    pub files: u64,
    #[serde(default)]
    pub bytes: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<String>,
    /// The trainer's `training.json` (see [`trainer_summary`]), for telemetry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub training: Option<TrainingSummary>,
}

impl SealReport {
    /// The state machine's view: the sealed model, or why the submission was refused.
    pub fn into_output(self) -> Result<crate::tournament::WorkOutput, String> {
        match (self.ok, self.digest) {
            (true, Some(digest)) => Ok(crate::tournament::WorkOutput::Sealed(crate::tournament::SealSummary {
                digest,
                files: self.files,
                bytes: self.bytes,
                training: self.training,
            })),
            (true, None) => Err("the seal reported no digest".to_string()),
            (false, _) => Err(format!("the seal refused the model: {}", self.failure.unwrap_or_default())),
        }
    }
}

/// The largest `training.json` read: the reference trainer writes a few hundred bytes.
const MAX_SUMMARY_BYTES: u64 = 64 << 10;

/// The trainer's `OUTPUT/training.json`, for telemetry only (the miner wrote it, nothing is
/// scored on it): read only from a regular file of at most 64 KiB (never through a symlink);
/// a field that is missing, of the wrong type, negative or not finite is left out, and an
/// unreadable file is no summary. It never fails a seal.
pub fn trainer_summary(output: &Path) -> Option<TrainingSummary> {
    let path = output.join(TRAINING_SUMMARY_FILE);
    let file = OpenOptions::new().read(true).custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK).open(path).ok()?;
    let meta = file.metadata().ok()?;
    if !meta.file_type().is_file() || meta.len() > MAX_SUMMARY_BYTES {
        return None;
    }
    let mut text = Vec::new();
    file.take(MAX_SUMMARY_BYTES).read_to_end(&mut text).ok()?;
    let json: serde_json::Value = serde_json::from_slice(&text).ok()?;
    let count = |key: &str| json.get(key).and_then(serde_json::Value::as_u64);
    let amount = |key: &str| json.get(key).and_then(serde_json::Value::as_f64).filter(|v| v.is_finite() && *v >= 0.0);
    Some(TrainingSummary {
        steps: count("steps"),
        final_train_loss: json.get("final_train_loss").and_then(serde_json::Value::as_f64).filter(|v| v.is_finite()),
        stopped_by_deadline: json.get("stopped_by_deadline").and_then(serde_json::Value::as_bool),
        tokens: count("tokens"),
        wall_seconds: amount("wall_s"),
    })
}

#[derive(Debug, thiserror::Error)]
pub enum SealError {
    /// The submission breaks the rules (a symlink, a FIFO, too large…).
    #[error("{0}")]
    Refused(String),
    /// Reading or writing failed for reasons of ours.
    #[error("{path}: {source}")]
    Io { path: String, source: io::Error },
}

fn io_at(path: &Path) -> impl FnOnce(io::Error) -> SealError + '_ {
    move |source| SealError::Io { path: path.display().to_string(), source }
}

/// The tree digest of `entries` (any order).
pub fn tree_digest(entries: &[ManifestEntry]) -> String {
    let mut sorted: Vec<&ManifestEntry> = entries.iter().collect();
    sorted.sort_by(|a, b| a.path.as_bytes().cmp(b.path.as_bytes()));
    let mut hasher = Sha256::new();
    for entry in sorted {
        hasher.update(format!("{}\0{}\0{}\n", entry.path, entry.size, entry.sha256).as_bytes());
    }
    format!("sha256:{}", hex(&hasher.finalize()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Seals `input/model/` into `output/model/` and `output/manifest.json`. Idempotent: an earlier
/// partial or complete seal in `output` is replaced.
pub fn seal(input: &Path, output: &Path, limits: &Limits) -> Result<Manifest, SealError> {
    let model = input.join(MODEL_DIR);
    match fs::symlink_metadata(&model) {
        Ok(meta) if meta.file_type().is_dir() => {}
        Ok(meta) => return Err(SealError::Refused(format!("{MODEL_DIR}/ is {}, not a directory", kind(&meta)))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(SealError::Refused(format!("the trainer wrote no {MODEL_DIR}/")));
        }
        Err(e) => return Err(io_at(&model)(e)),
    }
    fs::create_dir_all(output).map_err(io_at(output))?;
    let manifest_path = output.join(MANIFEST_FILE);
    remove(&manifest_path)?;
    let staging = output.join(format!(".{MODEL_DIR}.partial"));
    remove(&staging)?;
    let mut copier = Copier { limits, files: Vec::new(), total: 0 };
    if let Err(e) = copier.copy_dir(&model, Some(&staging), "", 0) {
        // A refused or failed copy leaves nothing behind in the sealed area.
        let _ = fs::remove_dir_all(&staging);
        return Err(e);
    }
    if copier.files.is_empty() {
        remove(&staging)?;
        return Err(SealError::Refused(format!("{MODEL_DIR}/ holds no files")));
    }
    let target = output.join(MODEL_DIR);
    remove(&target)?;
    fs::rename(&staging, &target).map_err(io_at(&target))?;
    let manifest = Manifest { version: 1, digest: tree_digest(&copier.files), files: copier.files };
    let mut text = serde_json::to_vec_pretty(&manifest).map_err(|e| io_at(&manifest_path)(io::Error::other(e)))?;
    text.push(b'\n');
    crate::local::fsio::write_atomic(&manifest_path, &text).map_err(io_at(&manifest_path))?;
    Ok(manifest)
}

fn remove(path: &Path) -> Result<(), SealError> {
    let result = match fs::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() => fs::remove_dir_all(path),
        Ok(_) => fs::remove_file(path),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    };
    result.map_err(io_at(path))
}

fn kind(meta: &fs::Metadata) -> &'static str {
    let t = meta.file_type();
    if t.is_symlink() {
        "a symlink"
    } else if t.is_fifo() {
        "a FIFO"
    } else if t.is_socket() {
        "a socket"
    } else if t.is_block_device() || t.is_char_device() {
        "a device"
    } else if t.is_file() {
        "a file"
    } else if t.is_dir() {
        "a directory"
    } else {
        "not a regular file"
    }
}

struct Copier<'a> {
    limits: &'a Limits,
    files: Vec<ManifestEntry>,
    total: u64,
}

impl Copier<'_> {
    /// Walks `from` (copying into `to` when given), collecting the manifest's entries.
    fn copy_dir(&mut self, from: &Path, to: Option<&Path>, relative: &str, depth: usize) -> Result<(), SealError> {
        if depth > MAX_DEPTH {
            return Err(SealError::Refused(format!("{MODEL_DIR}/{relative} is nested deeper than {MAX_DEPTH}")));
        }
        if let Some(to) = to {
            fs::create_dir_all(to).map_err(io_at(to))?;
        }
        let mut names: Vec<std::ffi::OsString> = fs::read_dir(from)
            .map_err(io_at(from))?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<Result<_, _>>()
            .map_err(io_at(from))?;
        names.sort();
        for name in names {
            let Some(text) = name.to_str() else {
                return Err(SealError::Refused(format!("{MODEL_DIR}/{relative}: a file name is not UTF-8")));
            };
            let path = if relative.is_empty() { text.to_string() } else { format!("{relative}/{text}") };
            let source = from.join(&name);
            let meta = fs::symlink_metadata(&source).map_err(io_at(&source))?;
            if meta.is_dir() {
                self.copy_dir(&source, to.map(|t| t.join(&name)).as_deref(), &path, depth + 1)?;
            } else if meta.file_type().is_file() {
                self.copy_file(&source, to.map(|t| t.join(&name)).as_deref(), path)?;
            } else {
                return Err(SealError::Refused(format!("{MODEL_DIR}/{path} is {}", kind(&meta))));
            }
        }
        Ok(())
    }

    fn check_size(&self, path: &str, size: u64, total: u64) -> Result<(), SealError> {
        if size > self.limits.max_file_bytes {
            return Err(SealError::Refused(format!(
                "{MODEL_DIR}/{path} is larger than the {}-byte limit per file",
                self.limits.max_file_bytes
            )));
        }
        if total > self.limits.max_total_bytes {
            return Err(SealError::Refused(format!(
                "{MODEL_DIR}/ is larger than the {}-byte limit",
                self.limits.max_total_bytes
            )));
        }
        Ok(())
    }

    fn copy_file(&mut self, from: &Path, to: Option<&Path>, path: String) -> Result<(), SealError> {
        if self.files.len() as u64 >= self.limits.max_files {
            return Err(SealError::Refused(format!("{MODEL_DIR}/ holds more than {} files", self.limits.max_files)));
        }
        // No following a symlink swapped in since the listing, no blocking on a FIFO.
        let mut source =
            OpenOptions::new().read(true).custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK).open(from).map_err(
                |e| match e.raw_os_error() {
                    Some(libc::ELOOP) => SealError::Refused(format!("{MODEL_DIR}/{path} is a symlink")),
                    _ => io_at(from)(e),
                },
            )?;
        let meta = source.metadata().map_err(io_at(from))?;
        if !meta.file_type().is_file() {
            return Err(SealError::Refused(format!("{MODEL_DIR}/{path} is {}", kind(&meta))));
        }
        // The size it claims, before a byte is copied: a sparse file costs its writer nothing
        // but would cost the seal up to the cap in real writes before the checks below stop it.
        self.check_size(&path, meta.len(), self.total + meta.len())?;
        let mut target = match to {
            Some(to) => Some((File::create(to).map_err(io_at(to))?, to)),
            None => None,
        };
        let mut hasher = Sha256::new();
        let mut size = 0u64;
        let mut buffer = vec![0u8; 1 << 20];
        loop {
            let n = source.read(&mut buffer).map_err(io_at(from))?;
            if n == 0 {
                break;
            }
            size += n as u64;
            self.total += n as u64;
            self.check_size(&path, size, self.total)?;
            hasher.update(&buffer[..n]);
            if let Some((file, to)) = &mut target {
                file.write_all(&buffer[..n]).map_err(io_at(to))?;
            }
        }
        if let Some((file, to)) = target {
            file.sync_all().map_err(io_at(to))?;
            fs::set_permissions(to, fs::Permissions::from_mode(0o444)).map_err(io_at(to))?;
        }
        self.files.push(ManifestEntry { path, size, sha256: hex(&hasher.finalize()) });
        Ok(())
    }
}

/// Recomputes the tree digest of a model directory as the evaluator does (audits, tests).
pub fn digest_dir(dir: &Path) -> Result<String, SealError> {
    let mut walker = Copier { limits: &Limits::default(), files: Vec::new(), total: 0 };
    walker.copy_dir(dir, None, "", 0)?;
    Ok(tree_digest(&walker.files))
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::symlink;

    use super::*;

    /// The shared test vector (HELPERS.md): `a.txt` = "a", `sub/b.bin` = "bb".
    const VECTOR: &str = "sha256:0597e2612be5514947d7e9ce4982746440f1633a2b99fc26f2bf86b9dee42d4e";

    fn output_with(files: &[(&str, &[u8])]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (path, content) in files {
            let file = dir.path().join(MODEL_DIR).join(path);
            fs::create_dir_all(file.parent().unwrap()).unwrap();
            fs::write(file, content).unwrap();
        }
        dir
    }

    fn refused(result: Result<Manifest, SealError>) -> String {
        match result {
            Err(SealError::Refused(why)) => why,
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn the_trainers_summary_is_read_leniently_and_never_through_a_symlink() {
        let out = output_with(&[("a.txt", b"a")]);
        let summary = out.path().join(TRAINING_SUMMARY_FILE);
        assert_eq!(trainer_summary(out.path()), None, "no training.json");
        fs::write(
            &summary,
            r#"{"steps": 40, "tokens": 12000, "wall_s": 21.5, "final_train_loss": 1.25, "stopped_by_deadline": true,
                "strategy": "lora-fast"}"#,
        )
        .unwrap();
        let read = trainer_summary(out.path()).unwrap();
        assert_eq!((read.steps, read.tokens, read.wall_seconds), (Some(40), Some(12000), Some(21.5)));
        assert_eq!((read.final_train_loss, read.stopped_by_deadline), (Some(1.25), Some(true)));
        // A miner's nonsense is dropped field by field, never passed on.
        fs::write(&summary, r#"{"steps": -3, "tokens": "many", "wall_s": -1, "final_train_loss": null}"#).unwrap();
        assert_eq!(trainer_summary(out.path()), Some(TrainingSummary::default()));
        fs::write(&summary, "NaN garbage").unwrap();
        assert_eq!(trainer_summary(out.path()), None);
        fs::write(&summary, vec![b' '; 70 << 10]).unwrap();
        assert_eq!(trainer_summary(out.path()), None, "too large");
        fs::remove_file(&summary).unwrap();
        symlink("/etc/passwd", &summary).unwrap();
        assert_eq!(trainer_summary(out.path()), None, "a symlink is not followed");
        fs::remove_file(&summary).unwrap();
        mkfifo(&summary);
        assert_eq!(trainer_summary(out.path()), None, "a FIFO does not block the seal");
    }

    fn mkfifo(path: &Path) {
        let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    }

    #[test]
    fn seals_a_copy_with_the_shared_test_vector() {
        let out = output_with(&[("sub/b.bin", b"bb"), ("a.txt", b"a")]);
        let sealed = tempfile::tempdir().unwrap();
        let manifest = seal(out.path(), sealed.path(), &Limits::default()).unwrap();
        assert_eq!(manifest.digest, VECTOR);
        assert_eq!(manifest.files.iter().map(|f| f.path.as_str()).collect::<Vec<_>>(), ["a.txt", "sub/b.bin"]);
        assert_eq!(fs::read(sealed.path().join("model/sub/b.bin")).unwrap(), b"bb");
        let written: Manifest = serde_json::from_slice(&fs::read(sealed.path().join(MANIFEST_FILE)).unwrap()).unwrap();
        assert_eq!(written, manifest);
        // The original can change afterwards; the sealed copy does not.
        fs::write(out.path().join("model/a.txt"), b"poisoned").unwrap();
        assert_eq!(digest_dir(&sealed.path().join(MODEL_DIR)).unwrap(), VECTOR);
        // Sealing again (a retried Job) gives the same result.
        assert_eq!(seal(out.path(), sealed.path(), &Limits::default()).unwrap().files.len(), 2);
    }

    #[test]
    fn symlinks_fifos_and_symlinked_model_directories_are_refused() {
        let out = output_with(&[("a.txt", b"a")]);
        symlink("/etc/passwd", out.path().join("model/leak")).unwrap();
        assert!(
            refused(seal(out.path(), tempfile::tempdir().unwrap().path(), &Limits::default()))
                .contains("model/leak is a symlink")
        );

        let out = output_with(&[("a.txt", b"a")]);
        let fifo = out.path().join("model/hang");
        mkfifo(&fifo);
        assert!(
            refused(seal(out.path(), tempfile::tempdir().unwrap().path(), &Limits::default()))
                .contains("model/hang is a FIFO")
        );

        let rival = output_with(&[("a.txt", b"a")]);
        let out = tempfile::tempdir().unwrap();
        symlink(rival.path().join(MODEL_DIR), out.path().join(MODEL_DIR)).unwrap();
        assert!(refused(seal(out.path(), tempfile::tempdir().unwrap().path(), &Limits::default())).contains("symlink"));

        let empty = tempfile::tempdir().unwrap();
        assert!(
            refused(seal(empty.path(), tempfile::tempdir().unwrap().path(), &Limits::default())).contains("no model/")
        );
    }

    #[test]
    fn size_and_count_caps_are_enforced() {
        let limits = Limits { max_file_bytes: 4, max_total_bytes: 6, max_files: 3 };
        let out = output_with(&[("big", b"12345")]);
        assert!(refused(seal(out.path(), tempfile::tempdir().unwrap().path(), &limits)).contains("per file"));
        let out = output_with(&[("a", b"1234"), ("b", b"1234")]);
        assert!(refused(seal(out.path(), tempfile::tempdir().unwrap().path(), &limits)).contains("6-byte limit"));
        let out = output_with(&[("a", b"1"), ("b", b"1"), ("c", b"1"), ("d", b"1")]);
        assert!(refused(seal(out.path(), tempfile::tempdir().unwrap().path(), &limits)).contains("more than 3 files"));
    }

    /// The hostile miner's sparse file: refused by its size before the seal writes a byte of it
    /// (copying first would write the whole cap), and nothing is left in the sealed area.
    #[test]
    fn a_sparse_file_over_the_cap_is_refused_before_it_is_copied() {
        let limits = Limits { max_file_bytes: 1 << 20, max_total_bytes: 3 << 19, max_files: 10 };
        let out = output_with(&[("a.txt", b"a")]);
        File::create(out.path().join("model/b.safetensors")).unwrap().set_len(1 << 40).unwrap();
        let sealed = tempfile::tempdir().unwrap();
        assert!(refused(seal(out.path(), sealed.path(), &limits)).contains("b.safetensors is larger"));
        assert_eq!(fs::read_dir(sealed.path()).unwrap().count(), 0, "no partial copy is left");
        // Refused on its claimed size: the copy is never started (its target could not even be
        // created here).
        let mut copier = Copier { limits: &limits, files: Vec::new(), total: 0 };
        let nowhere = sealed.path().join("missing/b.safetensors");
        let why = copier.copy_file(&out.path().join("model/b.safetensors"), Some(&nowhere), "b.safetensors".into());
        assert!(matches!(why, Err(SealError::Refused(ref w)) if w.contains("larger")), "{why:?}");
        let half = vec![0u8; 1 << 19];
        let out = output_with(&[("a", &half), ("b", &half)]);
        File::create(out.path().join("model/c")).unwrap().set_len(1 << 20).unwrap();
        assert!(refused(seal(out.path(), sealed.path(), &limits)).contains("model/ is larger"));
    }
}
