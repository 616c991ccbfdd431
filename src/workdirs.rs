//! `gradients workdirs`: creates a workload's writable locations on the artifacts claim before
//! the workload starts (its pod's init container). Left to the kubelet, a missing `subPath` is
//! created owned by root with the volume root's mode, where the workloads (uid 1000) cannot
//! write; created here, it belongs to the workloads' uid.

use std::path::{Component, Path};

/// Creates each relative `dir` below `root` (and its parents). Refuses absolute paths, `..`
/// and anything already there that is not a directory (a symlink included).
pub fn create(root: &Path, dirs: &[String]) -> Result<(), String> {
    for dir in dirs {
        let relative = Path::new(dir);
        let plain = relative.components().all(|c| matches!(c, Component::Normal(_)));
        if dir.is_empty() || !plain {
            return Err(format!("{dir:?}: not a plain relative path below the claim"));
        }
        let mut path = root.to_path_buf();
        for part in relative.components() {
            path.push(part);
            match std::fs::symlink_metadata(&path) {
                Ok(meta) if meta.is_dir() => continue,
                Ok(_) => return Err(format!("{}: exists and is not a directory", path.display())),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    std::fs::create_dir(&path).map_err(|e| format!("{}: {e}", path.display()))?;
                }
                Err(e) => return Err(format!("{}: {e}", path.display())),
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::create;

    #[test]
    fn creates_nested_directories_and_refuses_escapes_and_symlinks() {
        let root = tempfile::tempdir().unwrap();
        create(root.path(), &["tournaments/ns/t/models/train-a-1".into(), "tournaments/ns/t/data".into()]).unwrap();
        assert!(root.path().join("tournaments/ns/t/models/train-a-1").is_dir());
        // Idempotent: a retried pod finds its directories there.
        create(root.path(), &["tournaments/ns/t/data".into()]).unwrap();
        for bad in ["../x", "/etc", "a/../../b", ""] {
            assert!(create(root.path(), &[bad.into()]).is_err(), "{bad}");
        }
        std::os::unix::fs::symlink("/tmp", root.path().join("tournaments/link")).unwrap();
        let err = create(root.path(), &["tournaments/link/x".into()]).unwrap_err();
        assert!(err.contains("not a directory"), "{err}");
    }
}
