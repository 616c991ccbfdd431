"""Object-store transfers on the workload side: the contract's document parses, and hostile
archives (links, FIFOs, paths out, oversize) are refused with the entry named, writing nothing
outside the target."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import pytest

from gradients_trainer import transfers

CONTRACT = json.loads((Path(__file__).resolve().parent.parent / "workload-contract.json").read_text())


def test_the_contracts_document_parses(monkeypatch: pytest.MonkeyPatch) -> None:
    section = CONTRACT["transfers"]
    assert section["env"] == transfers.ENV
    monkeypatch.setenv(transfers.ENV, json.dumps(section["example"]))
    parsed = transfers.take_from_env()
    assert parsed is not None and transfers.ENV not in __import__("os").environ, "read once, then removed"
    assert parsed.fetch[0][0] == f"{section['staging_dir']}/base-model/config.json"
    assert parsed.store_archives[0][0] == f"{section['staging_dir']}/output"


@pytest.mark.parametrize("path", ["/etc/passwd", "../escape", "artifacts/../../x"])
def test_documents_with_paths_out_of_the_working_directory_are_refused(
        monkeypatch: pytest.MonkeyPatch, path: str) -> None:
    monkeypatch.setenv(transfers.ENV, json.dumps({"version": 1, "fetch": [{"path": path, "url": "http://x/y"}]}))
    with pytest.raises(transfers.TransferError, match="not a relative path"):
        transfers.take_from_env()


def _archive(name: str, kind: bytes, data: bytes = b"", link: str = "") -> io.BytesIO:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.GNU_FORMAT) as archive:
        info = tarfile.TarInfo(name)
        info.type = kind
        info.size = len(data) if kind == tarfile.REGTYPE else 0
        info.linkname = link
        archive.addfile(info, io.BytesIO(data) if kind == tarfile.REGTYPE else None)
    buffer.seek(0)
    return buffer


@pytest.mark.parametrize(("name", "kind", "link", "reason"), [
    ("model/weights.safetensors", tarfile.SYMTYPE, "/etc/passwd", "only regular files"),
    ("model/hard", tarfile.LNKTYPE, "/etc/shadow", "only regular files"),
    ("model/pipe", tarfile.FIFOTYPE, "", "only regular files"),
    ("model/dev", tarfile.CHRTYPE, "", "only regular files"),
    ("../../escaped", tarfile.REGTYPE, "", "steps out"),
    ("/tmp/absolute", tarfile.REGTYPE, "", "steps out"),
])
def test_hostile_entries_are_refused(tmp_path: Path, name: str, kind: bytes, link: str, reason: str) -> None:
    with pytest.raises(transfers.ArchiveRefused, match=reason) as refused:
        transfers.unpack(_archive(name, kind, b"x", link), tmp_path / "out", transfers.Limits())
    assert repr(name) in str(refused.value)
    assert not (tmp_path / "escaped").exists()


def test_oversized_entries_are_refused(tmp_path: Path) -> None:
    limits = transfers.Limits(max_file_bytes=10, max_total_bytes=100, max_files=3)
    with pytest.raises(transfers.ArchiveRefused, match="over the per-file cap"):
        transfers.unpack(_archive("model/big.bin", tarfile.REGTYPE, b"x" * 11), tmp_path / "out", limits)


def test_a_packed_tree_unpacks_to_the_same_tree(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    (tree / "sub").mkdir(parents=True)
    (tree / "a.txt").write_text("a")
    (tree / "sub" / "b.bin").write_bytes(b"bb")
    transfers.pack(tree, tmp_path / "t.tar")
    with (tmp_path / "t.tar").open("rb") as stream:
        transfers.unpack(stream, tmp_path / "out", transfers.Limits())
    assert (tmp_path / "out" / "sub" / "b.bin").read_bytes() == b"bb"
    (tree / "link").symlink_to("/etc/passwd")
    with pytest.raises(transfers.ArchiveRefused):
        transfers.pack(tree, tmp_path / "u.tar")
