"""The 6 / 9 symmetry-breaking construction, digits69, and MNIST from a local IDX fixture."""

import gzip
import hashlib
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from softeq.data.embedded import load_split
from softeq.data.mnist import MNIST_MD5, build_mnist, fetch_mnist, mnist_folder
from softeq.data.symmetry_breaking import break_six_nine, build_digits69


def test_break_six_nine_swaps_and_turns():
    x = torch.arange(40 * 4 * 4, dtype=torch.float32).reshape(40, 1, 4, 4)
    y = torch.tensor([6, 9, 1, 0] * 10)
    nx, ny, hit = break_six_nine(x, y, 0.5, seed=3)
    assert hit.any() and not hit.all()
    assert not hit[(y != 6) & (y != 9)].any()
    assert torch.equal(ny[hit], 15 - y[hit]) and torch.equal(ny[~hit], y[~hit])
    assert torch.equal(nx[hit], torch.rot90(x[hit], 2, (2, 3))) and torch.equal(nx[~hit], x[~hit])
    again = break_six_nine(x, y, 0.5, seed=3)
    assert torch.equal(again[1], ny)  # one draw per sample from the seed: reproducible
    assert not break_six_nine(x, y, 0.0, 0)[2].any()
    assert break_six_nine(x, y, 1.0, 0)[2].sum() == 20
    with pytest.raises(ValueError, match="break_prob"):
        break_six_nine(x, y, 1.5, 0)


def test_digits69(tmp_path):
    path = build_digits69(tmp_path / "digits69.safetensors", break_prob=0.5, seed=0)
    plain = build_digits69(tmp_path / "plain.safetensors", break_prob=0.0)
    for split in ("train", "val", "test"):
        x, y = load_split(path, split).tensors
        x0, y0 = load_split(plain, split).tensors
        changed = y != y0
        assert changed.any() and set(y0[changed].tolist()) <= {6, 9}
        assert torch.equal(x[changed], torch.rot90(x0[changed], 2, (2, 3)))
        assert torch.equal(x[~changed], x0[~changed])


def _idx(path: Path, array: np.ndarray) -> None:
    """Write ``array`` (uint8) as a gzipped IDX file (the MNIST format)."""
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    with gzip.open(path, "wb") as out:
        out.write(header + array.astype(np.uint8).tobytes())


@pytest.fixture
def mnist_fixture(tmp_path) -> tuple[Path, dict[str, str]]:
    """A tiny MNIST in its own format: 40 training and 20 test images of 28 x 28."""
    rng = np.random.default_rng(0)
    root = tmp_path / "mnist"
    root.mkdir()
    parts = {"train": 40, "t10k": 20}
    for part, n in parts.items():
        _idx(root / f"{part}-images-idx3-ubyte.gz", rng.integers(0, 256, (n, 28, 28)))
        _idx(root / f"{part}-labels-idx1-ubyte.gz", np.arange(n) % 10)
    md5 = {name: hashlib.md5((root / name).read_bytes()).hexdigest() for name in MNIST_MD5}
    return root, md5


def test_mnist_from_a_local_fixture(mnist_fixture, tmp_path):
    root, md5 = mnist_fixture
    folder = mnist_folder(root, md5)
    out = build_mnist(folder, tmp_path / "mnist.safetensors", break_prob=0.5, val_fraction=0.25)
    x = load_split(out, "train").tensors[0]
    assert x.shape == (30, 1, 28, 28) and x.dtype == torch.float32 and 0 <= x.min() <= x.max() <= 1
    assert len(load_split(out, "val")) == 10 and len(load_split(out, "test")) == 20
    plain = build_mnist(folder, tmp_path / "plain.safetensors", break_prob=0.0, val_fraction=0.25)
    x0, y0 = load_split(plain, "test").tensors
    assert torch.equal(y0, torch.arange(20) % 10)  # torchvision read the labels in order
    xt, yt = load_split(out, "test").tensors
    changed = yt != y0
    assert changed.any() and torch.equal(xt[changed], torch.rot90(x0[changed], 2, (2, 3)))


def test_mnist_checksums_and_fetch(mnist_fixture, tmp_path):
    root, md5 = mnist_fixture
    with pytest.raises(ValueError, match="md5 mismatch"):
        mnist_folder(root)  # the pinned md5s of the real files
    with pytest.raises(FileNotFoundError, match="no MNIST files"):
        mnist_folder(tmp_path / "empty", md5)
    mirror = root.as_uri() + "/"
    folder = fetch_mnist(tmp_path / "downloads", md5, mirrors=("http://127.0.0.1:9/", mirror))
    assert folder == tmp_path / "downloads" / "MNIST" / "raw"
    assert mnist_folder(tmp_path / "downloads", md5) == folder  # torchvision's layout
    with pytest.raises(ConnectionError, match="no mirror answered"):
        fetch_mnist(tmp_path / "other", md5, mirrors=("http://127.0.0.1:9/",))


def test_prepare_data_checks_a_local_mnist_against_the_pinned_md5s(mnist_fixture, tmp_path):
    from softeq.cli import main

    root, _ = mnist_fixture
    out = tmp_path / "mnist.safetensors"
    with pytest.raises(SystemExit, match=r"datasets\.mnist\.root: .*md5 mismatch"):
        main(["prepare-data", "--dataset", "mnist", "--root", str(root), "--out", str(out)])
    assert not out.exists()
