"""Checksummed, atomic downloads (docs/conventions.md §3, downloads).

:func:`download` streams a URL into a temporary file beside the destination, hashes it on the way,
and only renames it onto the destination once the checksum matches, so a killed job or a corrupt
transfer never leaves a file that looks complete.  When the network cannot be reached the error
names the URL and says that the machine looks offline, so the user knows to fetch the file
elsewhere and copy it in (a file already in place with the right checksum is used as is).
"""

from __future__ import annotations

import hashlib
import tarfile
import urllib.error
import urllib.request
from pathlib import Path

from softeq.io import CHUNK, atomic_path, file_digest

__all__ = ["download", "extract_tar", "verify_file"]


def _expected(md5: str | None, sha256: str | None) -> dict[str, str]:
    """The checksums to check, keyed by hashlib name, lower-cased."""
    return {
        name: value.strip().lower()
        for name, value in (("md5", md5), ("sha256", sha256))
        if value is not None
    }


def _mismatch(path: Path, algorithm: str, expected: str, actual: str, what: str) -> ValueError:
    """The error for a checksum mismatch: names the file and both digests."""
    return ValueError(f"{path}: {algorithm} mismatch: expected {expected}, got {actual}; {what}")


def verify_file(path: str | Path, md5: str | None = None, sha256: str | None = None) -> Path:
    """Check ``path`` against the given MD5 and/or SHA-256; raise naming the file otherwise.

    At least one checksum is required (verifying against nothing is a caller bug, not a pass).
    Raises ``FileNotFoundError`` when the file is missing and ``ValueError`` on a mismatch.
    """
    path = Path(path)
    expected = _expected(md5, sha256)
    if not expected:
        raise ValueError(f"{path}: verify_file needs an md5 or a sha256 to check against")
    if not path.is_file():
        wanted = ", ".join(f"{k} {v}" for k, v in expected.items())
        raise FileNotFoundError(f"{path}: file not found (expected {wanted})")
    for algorithm, value in expected.items():
        actual = file_digest(path, algorithm)
        if actual != value:
            raise _mismatch(
                path,
                algorithm,
                value,
                actual,
                "the file is incomplete, corrupt or a different version. Delete it and fetch it "
                "again.",
            )
    return path


def _offline_error(url: str, error: BaseException) -> ConnectionError:
    """A ``ConnectionError`` that names the URL and says the machine looks offline."""
    reason = getattr(error, "reason", error)
    return ConnectionError(
        f"cannot reach {url} ({reason}): this machine looks offline or the host is unreachable. "
        "Download the file on a machine with internet and copy it to the destination path; a "
        "file already there with the right checksum is used without any network access."
    )


def download(
    url: str,
    dest: str | Path,
    md5: str | None = None,
    sha256: str | None = None,
    progress: bool = True,
    timeout: float = 60.0,
) -> Path:
    """Fetch ``url`` to ``dest``, verifying the checksum(s) before the file appears.

    The body is streamed (with a tqdm progress bar unless ``progress`` is false) into a temporary
    file beside ``dest`` while being hashed; on a checksum mismatch or a short read the temporary
    file is deleted and ``ValueError`` names the file and both digests, otherwise it is renamed
    onto ``dest`` (``os.replace``: atomic on one file system).  When ``dest`` already exists and
    matches the given checksum nothing is fetched, so a copied-in file works offline.  Network
    failures raise ``ConnectionError`` naming the URL.  Any scheme urllib knows works, including
    ``file://`` (used by the tests).
    """
    dest = Path(dest)
    expected = _expected(md5, sha256)
    if dest.is_file() and expected:
        try:
            return verify_file(dest, md5=md5, sha256=sha256)
        except ValueError:
            pass  # stale or partial copy from elsewhere: fetch it again
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        response = urllib.request.urlopen(url, timeout=timeout)
    except urllib.error.HTTPError as error:
        raise ConnectionError(
            f"{url}: the server answered HTTP {error.code} ({error.reason}); the URL may have moved"
        ) from error
    except (urllib.error.URLError, TimeoutError, ConnectionError) as error:
        raise _offline_error(url, error) from error

    with atomic_path(dest) as tmp:
        _stream(response, url, tmp, dest, expected, progress)
    return dest


def _stream(
    response, url: str, tmp: Path, dest: Path, expected: dict[str, str], progress: bool
) -> None:
    """Copy the response body into ``tmp`` while hashing it; raise on a short read or a checksum
    mismatch (the caller's atomic write then removes ``tmp``)."""
    from tqdm.auto import tqdm

    hashes = {algorithm: hashlib.new(algorithm) for algorithm in expected}
    received = 0
    with response, open(tmp, "wb") as out:
        length = response.headers.get("Content-Length") if response.headers else None
        total = int(length) if length and length.isdigit() else None
        with tqdm(
            total=total, unit="B", unit_scale=True, desc=dest.name, disable=not progress
        ) as bar:
            while True:
                try:
                    block = response.read(CHUNK)
                except OSError as error:  # includes timeouts and resets
                    raise _offline_error(url, error) from error
                if not block:
                    break
                out.write(block)
                for h in hashes.values():
                    h.update(block)
                received += len(block)
                bar.update(len(block))
    if total is not None and received != total:
        raise ValueError(
            f"{dest}: download from {url} stopped after {received} of {total} bytes; run it again"
        )
    for algorithm, h in hashes.items():
        if h.hexdigest() != expected[algorithm]:
            raise _mismatch(
                dest,
                algorithm,
                expected[algorithm],
                h.hexdigest(),
                f"downloaded from {url}. The transfer was corrupted or the file changed "
                "upstream; nothing was written.",
            )


def extract_tar(archive: Path, dest: Path) -> None:
    """Unpack ``archive`` into ``dest`` (tarfile's ``data`` filter: no links out, no devices); an
    unreadable archive raises naming it."""
    try:
        with tarfile.open(archive, "r:*") as tar:
            tar.extractall(dest, filter="data")
    except (tarfile.TarError, OSError) as error:
        raise ValueError(f"{archive}: cannot unpack ({error})") from error
