"""A submitted model directory, listed without trusting it, and its tree digest.

Nothing here opens a path before ``lstat`` says it is a regular file: a FIFO, a device, a
socket or a symlink (the directory itself included) is refused by name, so it can neither
hang the evaluator nor point it at another file. The listing stops at the first entry past
the file-count cap, so a directory with millions of entries costs bounded memory and time.

Tree digest (the operator's seal step computes the same): over every regular file below the
directory, sorted by the bytes of its relative POSIX path, SHA-256 of the concatenation of
``"{path}\\0{size}\\0{sha256hex}\\n"``; written ``sha256:<lowercase hex>``.
"""

from __future__ import annotations

import hashlib
import os
import stat
from dataclasses import dataclass
from pathlib import Path

MAX_ENTRIES = 256  # files and directories together
MAX_DEPTH = 8
CHUNK = 1 << 20


class TreeRefused(Exception):
    """The directory is not something the evaluator will read (why, naming the entry)."""


@dataclass(frozen=True)
class Entry:
    rel: str  # POSIX path below the root
    path: Path
    size: int


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISLNK, "a symlink"), (stat.S_ISFIFO, "a FIFO"),
                       (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device")):
        if test(mode):
            return name
    return "not a regular file"


def list_tree(root: Path, max_entries: int = MAX_ENTRIES) -> list[Entry]:
    """Every regular file below ``root``, sorted by path bytes; raises TreeRefused."""
    try:
        top = os.lstat(root)
    except OSError as exc:
        raise TreeRefused(f"{root}: {exc.strerror}") from None
    if stat.S_ISLNK(top.st_mode):
        raise TreeRefused(f"{root} is a symlink")
    if not stat.S_ISDIR(top.st_mode):
        raise TreeRefused(f"{root} is not a directory")
    entries: list[Entry] = []
    seen = 0
    stack: list[tuple[Path, str, int]] = [(root, "", 0)]
    while stack:
        directory, prefix, depth = stack.pop()
        try:
            it = os.scandir(directory)
        except OSError as exc:
            raise TreeRefused(f"{prefix or '.'}: unreadable ({exc.strerror})") from None
        with it:
            for item in it:
                seen += 1
                if seen > max_entries:
                    raise TreeRefused(f"more than {max_entries} files and directories")
                rel = prefix + item.name
                try:
                    rel.encode("utf-8")
                except UnicodeEncodeError:
                    raise TreeRefused(f"{rel!a}: the name is not UTF-8") from None
                st = os.lstat(item.path)  # never follows a link
                if stat.S_ISDIR(st.st_mode):
                    if depth + 1 >= MAX_DEPTH:
                        raise TreeRefused(f"{rel}: nested deeper than {MAX_DEPTH} levels")
                    stack.append((Path(item.path), rel + "/", depth + 1))
                elif stat.S_ISREG(st.st_mode):
                    entries.append(Entry(rel, Path(item.path), st.st_size))
                else:
                    raise TreeRefused(f"{rel} is {_kind(st.st_mode)}")
    entries.sort(key=lambda e: e.rel.encode("utf-8"))
    return entries


def file_sha256(path: Path) -> str:
    """SHA-256 of a regular file, opened without following links or blocking on a FIFO."""
    fd = open_regular(path)
    try:
        digest = hashlib.sha256()
        while True:
            chunk = os.read(fd, CHUNK)
            if not chunk:
                break
            digest.update(chunk)
        return digest.hexdigest()
    finally:
        os.close(fd)


def tree_digest(entries: list[Entry]) -> str:
    """``sha256:<hex>`` of a listing (see the module docstring for the exact bytes)."""
    digest = hashlib.sha256()
    for e in sorted(entries, key=lambda e: e.rel.encode("utf-8")):
        digest.update(f"{e.rel}\0{e.size}\0{file_sha256(e.path)}\n".encode())
    return "sha256:" + digest.hexdigest()


def open_regular(path: Path) -> int:
    """An fd for reading ``path`` only if it is a regular file (no FIFO wait, no symlink)."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise TreeRefused(f"{path.name} is not a regular file")
    return fd
