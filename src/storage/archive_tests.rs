//! Hostile archives: each one is refused with the entry and the reason, and nothing lands
//! outside the target directory.

use super::*;

fn limits() -> Limits {
    Limits { max_file_bytes: 1000, max_total_bytes: 1500, max_files: 5 }
}

/// A tar with one entry whose header is written by hand (the `tar` builder refuses `..`).
fn raw_entry(path: &str, kind: tar::EntryType, data: &[u8], link: Option<&str>) -> Vec<u8> {
    let mut header = tar::Header::new_old();
    let name = &mut header.as_old_mut().name;
    name[..path.len()].copy_from_slice(path.as_bytes());
    header.set_entry_type(kind);
    header.set_size(data.len() as u64);
    header.set_mode(0o644);
    if let Some(link) = link {
        header.as_old_mut().linkname[..link.len()].copy_from_slice(link.as_bytes());
    }
    header.set_cksum();
    let mut out = header.as_bytes().to_vec();
    out.extend_from_slice(data);
    out.resize(out.len().div_ceil(512) * 512 + 1024, 0);
    out
}

fn refusal(archive: &[u8]) -> String {
    let dir = tempfile::tempdir().unwrap();
    match unpack(archive, &dir.path().join("out"), &limits()) {
        Err(StorageError::Refused(why)) => why,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[test]
fn links_fifos_devices_and_escapes_are_refused_with_a_reason() {
    let symlink = refusal(&raw_entry("model/weights.safetensors", tar::EntryType::Symlink, b"", Some("/etc/passwd")));
    assert!(symlink.contains("model/weights.safetensors") && symlink.contains("symbolic link"), "{symlink}");
    let hard = refusal(&raw_entry("a", tar::EntryType::Link, b"", Some("/etc/shadow")));
    assert!(hard.contains("hard link"), "{hard}");
    let fifo = refusal(&raw_entry("model/pipe", tar::EntryType::Fifo, b"", None));
    assert!(fifo.contains("FIFO"), "{fifo}");
    let device = refusal(&raw_entry("dev", tar::EntryType::Char, b"", None));
    assert!(device.contains("device"), "{device}");
    let escape = refusal(&raw_entry("../../escaped", tar::EntryType::Regular, b"x", None));
    assert!(escape.contains("`..`"), "{escape}");
    let absolute = refusal(&raw_entry("/tmp/absolute", tar::EntryType::Regular, b"x", None));
    assert!(absolute.contains("absolute"), "{absolute}");
}

#[test]
fn oversized_and_crowded_archives_are_refused() {
    let big = refusal(&raw_entry("model/big.bin", tar::EntryType::Regular, &[7u8; 1001], None));
    assert!(big.contains("1001 bytes") && big.contains("cap"), "{big}");
    let dir = tempfile::tempdir().unwrap();
    let tree = dir.path().join("tree");
    fs::create_dir_all(&tree).unwrap();
    for i in 0..6 {
        fs::write(tree.join(format!("f{i}")), b"x").unwrap();
    }
    let archive = dir.path().join("a.tar");
    pack(&tree, &archive).unwrap();
    let crowded = unpack(File::open(&archive).unwrap(), &dir.path().join("out"), &limits()).unwrap_err();
    assert!(crowded.to_string().contains("over 5 files"), "{crowded}");
}

#[test]
fn a_path_given_twice_is_refused_not_overwritten() {
    let mut twice = raw_entry("a.txt", tar::EntryType::Regular, b"first", None);
    twice.truncate(1024);
    twice.extend(raw_entry("a.txt", tar::EntryType::Regular, b"second", None));
    assert!(refusal(&twice).contains("cannot be written"));
}

#[test]
fn a_packed_tree_unpacks_to_the_same_tree() {
    let dir = tempfile::tempdir().unwrap();
    let tree = dir.path().join("tree");
    fs::create_dir_all(tree.join("sub/deeper")).unwrap();
    fs::write(tree.join("a.txt"), b"a").unwrap();
    fs::write(tree.join("sub/b.bin"), b"bb").unwrap();
    let archive = dir.path().join("a.tar");
    pack(&tree, &archive).unwrap();
    let out = dir.path().join("out");
    assert_eq!(unpack(File::open(&archive).unwrap(), &out, &limits()).unwrap(), (2, 3));
    assert_eq!(fs::read(out.join("sub/b.bin")).unwrap(), b"bb");
    assert!(out.join("sub/deeper").is_dir());
    std::os::unix::fs::symlink("/etc/passwd", tree.join("link")).unwrap();
    assert!(matches!(pack(&tree, &dir.path().join("b.tar")), Err(StorageError::Refused(_))));
}
