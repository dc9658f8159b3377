"""softeq.io: atomic file and folder writes with the umask's modes, and file digests."""

import hashlib
import os
import stat

import pytest

from softeq.io import (
    DIR_MODE,
    FILE_MODE,
    atomic_dir,
    atomic_write,
    atomic_write_text,
    file_digest,
    file_md5,
    file_sha256,
)


def test_atomic_text_has_the_umask_mode_and_leaves_no_temporary(tmp_path):
    path = atomic_write_text(tmp_path / "sub" / "a.txt", "x\r\ny\n")
    assert path.read_bytes() == b"x\r\ny\n"
    assert stat.S_IMODE(os.stat(path).st_mode) == FILE_MODE
    assert sorted(p.name for p in path.parent.iterdir()) == ["a.txt"]


def test_atomic_write_failure_keeps_the_old_file(tmp_path):
    path = atomic_write_text(tmp_path / "a.txt", "old")

    def fail(tmp: str) -> None:
        with open(tmp, "w") as f:
            f.write("half")
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        atomic_write(path, fail)
    assert path.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["a.txt"]


def test_atomic_dir_renames_on_success_and_cleans_up_on_failure(tmp_path):
    with atomic_dir(tmp_path / "tree") as tmp:
        (tmp / "f").write_text("1")
    assert (tmp_path / "tree" / "f").read_text() == "1"
    assert stat.S_IMODE(os.stat(tmp_path / "tree").st_mode) == DIR_MODE

    def build(dest):
        with atomic_dir(dest) as tmp:
            (tmp / "f").write_text("1")
            raise ValueError("bad archive")

    with pytest.raises(ValueError, match="bad archive"):
        build(tmp_path / "other")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tree"]


def test_file_digests(tmp_path):
    path = tmp_path / "blob"
    path.write_bytes(b"abc" * 1000)
    assert file_md5(path, chunk=7) == hashlib.md5(b"abc" * 1000).hexdigest()
    assert file_sha256(path) == hashlib.sha256(b"abc" * 1000).hexdigest()
    assert file_digest(path, "sha1") == hashlib.sha1(b"abc" * 1000).hexdigest()
