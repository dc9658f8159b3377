"""Atomic writes and file digests: a killed job never leaves a half-written output behind.

Every output is written to a temporary sibling (same folder, so the final ``os.replace`` is an
atomic rename on one file system) and renamed into place only when the write succeeded; on any
failure the temporary is removed.  Outputs get the mode a plain ``open()`` / ``mkdir()`` would
give under the process umask (``mkstemp`` alone gives 0600, ``mkdtemp`` 0700), so shared result
folders stay readable (docs/conventions.md §3, atomic outputs).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

__all__ = [
    "atomic_dir",
    "atomic_path",
    "atomic_write",
    "atomic_write_text",
    "file_digest",
    "file_md5",
    "file_sha256",
    "read_manifest",
    "write_json",
]

CHUNK = 1 << 20


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _current_umask()
FILE_MODE = 0o666 & ~_UMASK
"""What a plain ``open(path, "w")`` gives a new file under this process's umask."""
DIR_MODE = 0o777 & ~_UMASK
"""What a plain ``mkdir`` gives a new folder under this process's umask."""


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary file path beside ``path``; rename it onto ``path`` if the block succeeds.

    Readers (Snakemake, a report build) then never see a half-written table, figure or archive.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        os.chmod(tmp, FILE_MODE)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write(path: str | Path, write: Callable[[str], None]) -> Path:
    """Call ``write(tmp)`` on a temporary file beside ``path``, then rename it onto ``path``."""
    with atomic_path(path) as tmp:
        write(str(tmp))
    return Path(path)


def atomic_write_text(path: str | Path, text: str, encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``path`` atomically, byte for byte (no newline translation)."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding=encoding, newline="")
    return Path(path)


def write_json(obj: Any, path: str | Path) -> Path:
    """Write ``obj`` as indented JSON, atomically."""
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


@contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """Yield a temporary folder beside ``path``, renamed onto ``path`` when the block succeeds.

    Beside, so the rename stays on one file system (atomic); removed on any failure, so an
    interrupted build leaves either nothing or a complete tree.  An existing *empty* folder at
    ``path`` is replaced; a non-empty one makes the rename fail (never merged into).
    """
    dest = Path(path)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".tmp"))
    try:
        yield tmp
        os.chmod(tmp, DIR_MODE)
        if dest.is_dir() and not dest.is_symlink() and not any(dest.iterdir()):
            dest.rmdir()
        os.replace(tmp, dest)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def file_digest(path: str | Path, algorithm: str = "sha256", chunk: int = CHUNK) -> str:
    """Hex digest (any ``hashlib`` algorithm) of a file read in ``chunk``-byte blocks, so archives
    far larger than memory hash in constant space."""
    digest = hashlib.new(algorithm)
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def file_md5(path: str | Path, chunk: int = CHUNK) -> str:
    """Hex MD5 of a file (the digest the ImageNet / VOC / SBD archives are pinned by)."""
    return file_digest(path, "md5", chunk)


def file_sha256(path: str | Path, chunk: int = CHUNK) -> str:
    """Hex SHA-256 of a file (what ``sha256sum`` prints)."""
    return file_digest(path, "sha256", chunk)


def read_manifest(path: str | Path, kind: str) -> dict[str, Any]:
    """A dataset manifest (JSON) of the given ``kind``; errors name the file."""
    try:
        manifest = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise ValueError(f"{path}: cannot read the dataset manifest ({error})") from error
    if not isinstance(manifest, dict) or manifest.get("kind") != kind:
        raise ValueError(f"{path}: not a {kind} dataset manifest")
    return manifest
