"""Hostile submission directories: refused by name, unopened, in bounded time and memory.

Each refusal is an ``ok=false`` result with category ``submission`` (the operator does not
retry it). The tree digest is checked against the vector the Rust seal step shares.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import struct
import threading
from pathlib import Path

import pytest
from conftest import INS_COLUMNS, Data, evaluate, train

from gradients_trainer import checks
from gradients_trainer.evaluate.tree import MAX_ENTRIES, TreeRefused, list_tree, tree_digest

# Shared with the operator's seal step (Rust): a.txt = "a", sub/b.bin = "bb".
TREE_VECTOR = "sha256:0597e2612be5514947d7e9ce4982746440f1633a2b99fc26f2bf86b9dee42d4e"


def vector_dir(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "a.txt").write_text("a")
    (root / "sub").mkdir(exist_ok=True)
    (root / "sub" / "b.bin").write_bytes(b"bb")
    return root


def test_tree_digest_matches_the_shared_vector(tmp_path: Path) -> None:
    root = vector_dir(tmp_path / "v")
    h = lambda b: hashlib.sha256(b).hexdigest()  # noqa: E731
    by_hand = "sha256:" + h(f"a.txt\0001\000{h(b'a')}\nsub/b.bin\0002\000{h(b'bb')}\n".encode())
    assert tree_digest(list_tree(root)) == by_hand == TREE_VECTOR
    (root / "empty-dir").mkdir()  # directories are not entries
    assert tree_digest(list_tree(root)) == TREE_VECTOR
    (root / "sub" / "b.bin").write_bytes(b"bc")
    assert tree_digest(list_tree(root)) != TREE_VECTOR


@pytest.fixture(scope="module")
def lora(data: Data, text_base: Path, workdir: Path) -> Path:
    out = workdir / "hostile_lora"
    train("instruct", text_base, data.ins_train, out, "lora-fast", "--columns", INS_COLUMNS,
          "--strategy-overrides", '{"epochs": 0.5}')
    return out / "model"


def ins_eval(data: Data, base: Path, sub: Path, *extra: str) -> dict:
    return evaluate("instruct", base, sub, data.ins_test, data.ins_synth, "--columns", INS_COLUMNS, *extra)


def refused(result: dict, check: str, words: str) -> None:
    assert result["ok"] is False and result["test_loss"] is None, result
    assert result["category"] == "submission", result
    bad = [c for c in result["checks"] if not c["ok"]]
    assert bad and bad[-1]["name"] == check, result
    assert words in result["failure"], result


def copy_of(lora: Path, dest: Path) -> Path:
    if dest.exists():
        shutil.rmtree(dest)
    shutil.copytree(lora, dest)
    return dest


def test_a_fifo_is_refused_without_opening_it(data: Data, text_base: Path, lora: Path, workdir: Path) -> None:
    sub = copy_of(lora, workdir / "fifo")
    fifo = sub / "tokenizer.json.fifo"
    os.mkfifo(fifo)
    # A reader blocked on the FIFO would hang the evaluator: a watchdog releases any such
    # reader (by opening the write end) and records that it had to.
    done, released = threading.Event(), threading.Event()

    def watchdog() -> None:
        while not done.wait(0.2):
            try:
                fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)  # ENXIO unless someone reads
            except OSError:
                continue
            released.set()
            os.close(fd)

    thread = threading.Thread(target=watchdog, daemon=True)
    thread.start()
    try:
        result = ins_eval(data, text_base, sub)
    finally:
        done.set()
        thread.join()
    assert not released.is_set(), "the evaluator opened the FIFO"
    refused(result, "files", "tokenizer.json.fifo is a FIFO")


def test_a_socket_and_a_device_are_refused(data: Data, text_base: Path, lora: Path, workdir: Path) -> None:
    sub = copy_of(lora, workdir / "socket")
    s = socket.socket(socket.AF_UNIX)
    s.bind(str(sub / "s.sock"))
    try:
        refused(ins_eval(data, text_base, sub), "files", "s.sock is a socket")
    finally:
        s.close()
    sub = copy_of(lora, workdir / "device")
    try:
        os.mknod(sub / "null", 0o600 | 0o020000, os.makedev(1, 3))
    except PermissionError:
        pytest.skip("no CAP_MKNOD here")
    refused(ins_eval(data, text_base, sub), "files", "null is a character device")


def test_symlinks_are_refused(data: Data, text_base: Path, lora: Path, workdir: Path) -> None:
    link_dir = workdir / "linked_submission"
    if link_dir.is_symlink():
        link_dir.unlink()
    link_dir.symlink_to(lora)
    refused(ins_eval(data, text_base, link_dir), "files", "is a symlink")
    sub = copy_of(lora, workdir / "linked_file")
    (sub / "adapter_model.safetensors").unlink()
    (sub / "adapter_model.safetensors").symlink_to(lora / "adapter_model.safetensors")
    refused(ins_eval(data, text_base, sub), "files", "adapter_model.safetensors is a symlink")


def test_entry_count_is_capped_before_anything_is_read(tmp_path: Path) -> None:
    for i in range(MAX_ENTRIES + 1):
        (tmp_path / f"f{i:04d}").write_bytes(b"")
    with pytest.raises(TreeRefused, match=f"more than {MAX_ENTRIES} files"):
        list_tree(tmp_path)


def test_an_oversized_header_is_refused_from_its_length(tmp_path: Path) -> None:
    # A sparse 200 MB file claiming a 150 MB header: refused from the 8-byte length alone.
    f = tmp_path / "model.safetensors"
    with f.open("wb") as fh:
        fh.write(struct.pack("<Q", 150 << 20))
        fh.truncate(200 << 20)
    with pytest.raises(checks.CheckFailed, match="exceeds the 8388608-byte cap"):
        checks.safetensors_header(f)


def test_headers_share_one_budget(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    files = []
    for i in range(3):
        header = json.dumps({f"f{i}.t{j}": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}
                             for j in range(20)}).encode()
        f = tmp_path / f"model-0000{i + 1}-of-00003.safetensors"
        f.write_bytes(struct.pack("<Q", len(header)) + header + b"\0" * 4)
        files.append(f)
    monkeypatch.setattr(checks, "MAX_TOTAL_HEADER_BYTES", 2 * len(header) + 10)
    sub = checks.Submission(tmp_path)
    with pytest.raises(checks.CheckFailed, match="cap"):
        checks.read_headers(sub, files)


def test_many_big_headers_fail_fast_and_bounded(data: Data, text_base: Path, workdir: Path) -> None:
    # Issue 10 item 10: shards with 100 MB headers. Sparse files, so the disk is not used;
    # the evaluator refuses on the first length it reads, before parsing any JSON.
    sub = workdir / "big_headers"
    sub.mkdir(exist_ok=True)
    shutil.copy(text_base / "config.json", sub / "config.json")
    for i in range(8):
        with (sub / f"model-{i + 1:05d}-of-00008.safetensors").open("wb") as fh:
            fh.write(struct.pack("<Q", 100 << 20))
            fh.truncate((100 << 20) + 16)
    os.environ["GRADIENTS_EVAL_MAX_SUBMISSION_BYTES"] = str(10 << 30)
    try:
        result = ins_eval(data, text_base, sub)
    finally:
        del os.environ["GRADIENTS_EVAL_MAX_SUBMISSION_BYTES"]
    refused(result, "safetensors", "cap")


def test_submission_digest_is_verified(data: Data, text_base: Path, lora: Path, workdir: Path) -> None:
    digest = tree_digest(list_tree(lora))
    good = ins_eval(data, text_base, lora, "--submission-digest", digest)
    assert good["ok"] is True and good["model_digest"] == digest, good
    assert any(c["name"] == "digest" and c["ok"] for c in good["checks"])
    sub = copy_of(lora, workdir / "tampered")
    (sub / "README.md").write_text("changed after sealing")
    bad = ins_eval(data, text_base, sub, "--submission-digest", digest)
    refused(bad, "digest", "!= sealed")
    assert bad["model_digest"] == tree_digest(list_tree(sub))


def test_a_malformed_digest_argument_exits_2(data: Data, text_base: Path, lora: Path) -> None:
    from conftest import run_cli

    with pytest.raises(SystemExit) as exit_info:
        run_cli("evaluate", "--task-type", "instruct", "--base-model", text_base, "--submission", lora,
                "--test-data", data.ins_test, "--synth-data", data.ins_synth,
                "--submission-digest", "sha256:XYZ")
    assert exit_info.value.code == 2
