"""Artifacts on object storage: the operator hands a workload presigned URLs for exactly its
objects in ``GRADIENTS_TRANSFERS`` (JSON, written by ``src/storage/transfers.rs``). Before the
work the inputs are fetched into the working directory (objects as files, archives unpacked
safely); after it succeeded each output directory is packed into one tar and PUT. Plain HTTP
(urllib): no credentials, no SDK. The variable is removed from the environment first, so code
the workload runs later (reward functions) never sees a URL.
"""

from __future__ import annotations

import json
import os
import shutil
import tarfile
import tempfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO, Any

ENV = "GRADIENTS_TRANSFERS"
_CHUNK = 1 << 20
_TIMEOUT_S = 300


class TransferError(Exception):
    """A transfer failed (the network, the server, or a bad transfers document)."""


class ArchiveRefused(TransferError):
    """An archive breaks the rules: a link, a FIFO, a path out, too large."""


@dataclass(frozen=True)
class Limits:
    max_file_bytes: int = 64 << 30
    max_total_bytes: int = 512 << 30
    max_files: int = 10_000


@dataclass(frozen=True)
class Transfers:
    fetch: list[tuple[str, str]]
    fetch_archives: list[tuple[str, str]]
    store_archives: list[tuple[str, str]]


def _relative(path: str) -> str:
    parts = PurePosixPath(path).parts
    if not path or path.startswith("/") or any(p in ("", ".", "..") for p in parts):
        raise TransferError(f"{ENV}: {path!r} is not a relative path inside the working directory")
    return path


def take_from_env() -> Transfers | None:
    """The transfers in the environment (removed from it), or None."""
    text = os.environ.pop(ENV, None)
    if text is None:
        return None
    try:
        doc: dict[str, Any] = json.loads(text)
        return Transfers(
            fetch=[(_relative(o["path"]), o["url"]) for o in doc.get("fetch", [])],
            fetch_archives=[(_relative(a["dir"]), a["url"]) for a in doc.get("fetch_archives", [])],
            store_archives=[(_relative(a["dir"]), a["url"]) for a in doc.get("store_archives", [])],
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise TransferError(f"{ENV} is not a valid transfers document: {exc}") from None


def _where(url: str) -> str:
    return url.split("?", 1)[0]  # never the signature


def _open(request: urllib.request.Request) -> Any:
    try:
        return urllib.request.urlopen(request, timeout=_TIMEOUT_S)  # noqa: S310 - presigned http(s) URLs
    except urllib.error.HTTPError as exc:
        body = exc.read(300).decode("utf-8", "replace")
        raise TransferError(f"{request.get_method()} {_where(request.full_url)}: HTTP {exc.code}: {body}") from None
    except OSError as exc:
        raise TransferError(f"{request.get_method()} {_where(request.full_url)}: {exc}") from None


def get_to_file(url: str, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with _open(urllib.request.Request(url, method="GET")) as response, path.open("wb") as out:
        shutil.copyfileobj(response, out, _CHUNK)


def put_file(url: str, path: Path) -> None:
    size = path.stat().st_size
    with path.open("rb") as body:
        request = urllib.request.Request(url, data=body, method="PUT", headers={"Content-Length": str(size)})
        with _open(request):
            pass


def unpack(stream: IO[bytes], dest: Path, limits: Limits) -> None:
    """Unpacks a tar stream into ``dest``: regular files and directories only, relative paths
    without ``..``, within the caps, never over an existing file."""
    dest.mkdir(parents=True, exist_ok=True)
    files = total = 0
    with tarfile.open(fileobj=stream, mode="r|") as archive:
        for member in archive:
            name = member.name
            parts = PurePosixPath(name).parts
            if member.isdir() and name in (".", "./"):
                continue  # `tar -C dir .` starts with the root itself
            if name.startswith("/") or ".." in parts or not parts:
                raise ArchiveRefused(f"archive entry {name!r}: the path steps out of the archive")
            target = dest.joinpath(*parts)
            if member.isdir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            if not member.isreg():
                raise ArchiveRefused(f"archive entry {name!r}: only regular files and directories are allowed")
            files += 1
            total += member.size
            if member.size > limits.max_file_bytes:
                raise ArchiveRefused(f"archive entry {name!r}: {member.size} bytes, over the per-file cap")
            if total > limits.max_total_bytes or files > limits.max_files:
                raise ArchiveRefused(f"archive entry {name!r}: the archive is over its caps")
            target.parent.mkdir(parents=True, exist_ok=True)
            source = archive.extractfile(member)
            if source is None:
                raise ArchiveRefused(f"archive entry {name!r}: unreadable")
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
            with os.fdopen(fd, "wb") as out:
                shutil.copyfileobj(source, out, _CHUNK)


def pack(directory: Path, archive_path: Path) -> None:
    """A tar of every regular file and directory below ``directory`` (anything else refused)."""
    with tarfile.open(archive_path, "w", format=tarfile.PAX_FORMAT) as archive:
        for root, dirs, names in os.walk(directory):
            dirs.sort()
            for name in sorted(dirs) + sorted(names):
                path = Path(root) / name
                if path.is_symlink() or not (path.is_dir() or path.is_file()):
                    raise ArchiveRefused(f"{path}: not a regular file or directory")
                archive.add(path, arcname=str(path.relative_to(directory)), recursive=False)


def fetch_all(transfers: Transfers, limits: Limits = Limits()) -> None:
    for path, url in transfers.fetch:
        get_to_file(url, Path(path))
    for directory, url in transfers.fetch_archives:
        with tempfile.TemporaryFile() as scratch:
            with _open(urllib.request.Request(url, method="GET")) as response:
                shutil.copyfileobj(response, scratch, _CHUNK)
            scratch.seek(0)
            try:
                unpack(scratch, Path(directory), limits)
            except tarfile.TarError as exc:
                raise ArchiveRefused(f"{_where(url)}: not a tar archive: {exc}") from None


def store_all(transfers: Transfers) -> None:
    for directory, url in transfers.store_archives:
        with tempfile.TemporaryDirectory(dir=".") as scratch:
            archive_path = Path(scratch) / "out.tar"
            pack(Path(directory), archive_path)
            put_file(url, archive_path)
