"""Per-file sha256 lists (``sha256sum`` format): read, write, verify a tree or one folder.

A trajectory dataset is read only through its list (docs/conventions.md §3, downloads): every
listed file is checked, and a ``*.txt`` file the list does not name is an error, never data.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from importlib import resources
from pathlib import Path

from softeq.io import atomic_write_text, file_sha256

__all__ = [
    "default_listing",
    "ethucy_sums",
    "folder_listing",
    "read_checksums",
    "verify_checksums",
    "verify_listed",
    "verify_tree",
    "write_checksums",
]


def _parse_sums(sums_file: Path) -> list[tuple[str, str]]:
    entries = []
    for lineno, line in enumerate(sums_file.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.split(maxsplit=1)
        digest = parts[0].lower()
        if len(parts) != 2 or len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
            raise ValueError(f"{sums_file}:{lineno}: not a '<sha256>  <path>' line: {line!r}")
        name = parts[1].strip()
        entries.append((digest, name[1:] if name.startswith("*") else name))  # "*": binary mode
    return entries


def read_checksums(sums_file: str | Path) -> dict[str, str]:
    """A ``sha256sum`` file as ``{path relative to the root (POSIX): hex digest}``."""
    sums_file = Path(sums_file)
    entries = _parse_sums(sums_file)
    if not entries:
        raise ValueError(f"{sums_file}: no checksums listed")
    return {Path(name).as_posix(): digest for digest, name in entries}


def ethucy_sums() -> Path:
    """The committed sha256 list of the 74 ETH/UCY files (the data itself is never committed)."""
    return Path(str(resources.files("softeq.data").joinpath("checksums/eth_ucy.sha256")))


def default_listing(root: str | Path) -> Path:
    """The checksum list of a trajectory root: its own ``SHA256SUMS`` (the synthetic set writes
    one), else the committed ETH/UCY list."""
    own = Path(root) / "SHA256SUMS"
    return own if own.is_file() else ethucy_sums()


def folder_listing(sums: Mapping[str, str], folder: str) -> dict[str, str]:
    """The entries of ``sums`` directly in ``folder`` (root-relative), keyed by file name."""
    prefix = folder.rstrip("/") + "/"
    return {
        name[len(prefix) :]: digest
        for name, digest in sums.items()
        if name.startswith(prefix) and "/" not in name[len(prefix) :]
    }


def _check_digest(path: Path, expected: str, where: str) -> None:
    actual = file_sha256(path)
    if actual != expected:
        raise ValueError(
            f"{path}: sha256 mismatch (expected {expected}, got {actual}; listed in {where}); "
            "the file is corrupted, edited or a modified copy"
        )


def verify_listed(folder: str | Path, listed: Mapping[str, str]) -> list[Path]:
    """Check the files ``listed`` ({name: sha256}) in ``folder`` and that the folder holds no
    other ``*.txt`` file; returns their paths, sorted.  An unlisted or missing file, or a
    mismatch, raises naming the file."""
    folder = Path(folder)
    extra = sorted(p.name for p in folder.iterdir() if p.suffix == ".txt" and p.name not in listed)
    if extra:
        where = Path(*folder.parts[-2:]).as_posix()
        names = "\n  ".join(f"{where}/{name} is not in the checksum list" for name in extra)
        raise ValueError(
            f"{folder}: files the dataset's checksum list does not name:\n  {names}\n"
            "Remove them (only verified files are read), or run prepare-data on a clean copy."
        )
    files = []
    for name, digest in sorted(listed.items()):
        path = folder / name
        if not path.is_file():
            raise FileNotFoundError(f"{path}: listed in the checksum list but missing")
        _check_digest(path, digest, "the checksum list")
        files.append(path)
    return files


def verify_checksums(root: str | Path, sums_file: str | Path | None = None) -> int:
    """Check every file listed in ``sums_file`` (default ``root/SHA256SUMS``, the format of
    ``sha256sum``: ``<hex digest>  <path relative to root>``).  Returns the number of files
    checked; a missing file raises ``FileNotFoundError`` and a mismatch ``ValueError``, both
    naming the file."""
    root = Path(root)
    sums_file = root / "SHA256SUMS" if sums_file is None else Path(sums_file)
    entries = read_checksums(sums_file)
    for name, expected in entries.items():
        path = root / name
        if not path.is_file():
            raise FileNotFoundError(f"{path}: listed in {sums_file} but missing")
        _check_digest(path, expected, str(sums_file))
    return len(entries)


def verify_tree(root: str | Path, sums_file: str | Path | None = None) -> dict[str, str]:
    """:func:`verify_checksums`, and no ``*.txt`` file under ``root`` outside the list (each one
    named); returns the verified ``{relative path: sha256}``, what a dataset manifest records."""
    root = Path(root)
    sums_file = root / "SHA256SUMS" if sums_file is None else Path(sums_file)
    entries = read_checksums(sums_file)
    extra = sorted(
        p.relative_to(root).as_posix()
        for p in root.rglob("*.txt")
        if p.relative_to(root).as_posix() not in entries
    )
    if extra:
        listed = "\n  ".join(f"{name} is not in the checksum list" for name in extra)
        raise ValueError(
            f"{root}: files outside the checksum list {sums_file}:\n  {listed}\n"
            "Only the listed files may be in the tree (an extra file would change a split)."
        )
    verify_checksums(root, sums_file)
    return entries


def write_checksums(root: str | Path, files: Sequence[str | Path], sums_file: str | Path) -> Path:
    """Write ``sha256sum``-style lines for ``files`` (paths relative to ``root``), atomically."""
    root = Path(root)
    lines = [f"{file_sha256(root / f)}  {Path(f).as_posix()}\n" for f in files]
    return atomic_write_text(sums_file, "".join(lines))
