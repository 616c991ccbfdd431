//! Directory trees as tar archives, one object each. Unpacking trusts nothing: only regular
//! files and directories, relative paths without `.`/`..`, within the seal's caps, never over an
//! existing file. An archive that breaks a rule is refused with the entry and the reason.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Component, Path, PathBuf};

use super::{StorageError, io_at};
use crate::seal::Limits;

/// Directory depth an archive may use.
const MAX_DEPTH: usize = 32;

/// Packs every regular file and directory below `dir` into the tar file `archive`, paths
/// relative to `dir`, in sorted order. Anything else (a link, a FIFO) is refused: a packed tree
/// holds exactly what an unpacked one may.
pub fn pack(dir: &Path, archive: &Path) -> Result<(), StorageError> {
    let file = File::create(archive).map_err(io_at(archive))?;
    let mut builder = tar::Builder::new(io::BufWriter::new(file));
    builder.mode(tar::HeaderMode::Deterministic);
    builder.follow_symlinks(false);
    add_dir(&mut builder, dir, Path::new(""))?;
    let mut writer = builder.into_inner().map_err(io_at(archive))?;
    writer.flush().map_err(io_at(archive))
}

fn add_dir(builder: &mut tar::Builder<io::BufWriter<File>>, root: &Path, relative: &Path) -> Result<(), StorageError> {
    let dir = root.join(relative);
    let mut names: Vec<_> = fs::read_dir(&dir)
        .map_err(io_at(&dir))?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<Result<_, _>>()
        .map_err(io_at(&dir))?;
    names.sort();
    for name in names {
        let path = dir.join(&name);
        let inside = relative.join(&name);
        let meta = fs::symlink_metadata(&path).map_err(io_at(&path))?;
        if meta.is_dir() {
            builder.append_dir(&inside, &path).map_err(io_at(&path))?;
            add_dir(builder, root, &inside)?;
        } else if meta.is_file() {
            let mut file = File::open(&path).map_err(io_at(&path))?;
            builder.append_file(&inside, &mut file).map_err(io_at(&path))?;
        } else {
            return Err(StorageError::Refused(format!("{}: not a regular file or directory", inside.display())));
        }
    }
    Ok(())
}

/// Unpacks the tar stream `reader` into `dir` (created, must not hold the archive's paths yet).
/// Returns the number of files and bytes written.
pub fn unpack(reader: impl Read, dir: &Path, limits: &Limits) -> Result<(u64, u64), StorageError> {
    fs::create_dir_all(dir).map_err(io_at(dir))?;
    let mut archive = tar::Archive::new(reader);
    let (mut files, mut total) = (0u64, 0u64);
    let entries = archive.entries().map_err(io_at(dir))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| refused("the archive", &format!("unreadable: {e}")))?;
        let raw = entry.path_bytes().into_owned();
        let name = String::from_utf8_lossy(&raw).into_owned();
        // `tar -C dir .` starts with the root itself.
        if entry.header().entry_type() == tar::EntryType::Directory && matches!(name.as_str(), "." | "./") {
            continue;
        }
        let relative = clean_path(&raw).map_err(|why| refused(&name, why))?;
        let target = dir.join(&relative);
        match entry.header().entry_type() {
            tar::EntryType::Directory => fs::create_dir_all(&target).map_err(io_at(&target))?,
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                let size = entry.header().size().map_err(|e| refused(&name, &format!("bad size: {e}")))?;
                files += 1;
                total = total.saturating_add(size);
                if size > limits.max_file_bytes {
                    return Err(refused(
                        &name,
                        &format!("{size} bytes, over the {}-byte cap per file", limits.max_file_bytes),
                    ));
                }
                if total > limits.max_total_bytes {
                    return Err(refused(
                        &name,
                        &format!("the archive holds over {} bytes, the cap", limits.max_total_bytes),
                    ));
                }
                if files > limits.max_files {
                    return Err(refused(&name, &format!("the archive holds over {} files, the cap", limits.max_files)));
                }
                if let Some(parent) = target.parent() {
                    fs::create_dir_all(parent).map_err(io_at(parent))?;
                }
                // create_new: a second entry for one path, or a path through a file, fails.
                let mut out = OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o644)
                    .custom_flags(libc::O_NOFOLLOW)
                    .open(&target)
                    .map_err(|e| refused(&name, &format!("cannot be written: {e}")))?;
                let copied = io::copy(&mut (&mut entry).take(size), &mut out).map_err(io_at(&target))?;
                if copied != size {
                    return Err(refused(&name, "the archive ends inside this file"));
                }
            }
            other => {
                return Err(refused(
                    &name,
                    &format!("is a {}, only regular files and directories are allowed", kind(other)),
                ));
            }
        }
    }
    Ok((files, total))
}

fn refused(name: &str, why: &str) -> StorageError {
    StorageError::Refused(format!("archive entry {name:?}: {why}"))
}

fn clean_path(raw: &[u8]) -> Result<PathBuf, &'static str> {
    let text = std::str::from_utf8(raw).map_err(|_| "the path is not UTF-8")?;
    let path = Path::new(text);
    let mut clean = PathBuf::new();
    for component in path.components() {
        match component {
            Component::Normal(part) => clean.push(part),
            Component::CurDir => {}
            Component::ParentDir => return Err("the path steps out with `..`"),
            Component::RootDir | Component::Prefix(_) => return Err("the path is absolute"),
        }
    }
    if clean.as_os_str().is_empty() {
        return Err("the path is empty");
    }
    if clean.components().count() > MAX_DEPTH {
        return Err("the path is too deep");
    }
    Ok(clean)
}

fn kind(entry: tar::EntryType) -> &'static str {
    match entry {
        tar::EntryType::Symlink => "symbolic link",
        tar::EntryType::Link => "hard link",
        tar::EntryType::Fifo => "FIFO",
        tar::EntryType::Char | tar::EntryType::Block => "device",
        _ => "special entry",
    }
}

#[cfg(test)]
#[path = "archive_tests.rs"]
mod tests;
