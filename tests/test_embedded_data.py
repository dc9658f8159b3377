"""Embedded digits dataset: shapes, range, stratified disjoint split, atomic file, clear errors."""

import hashlib
import re

import pytest
import torch

from softeq.data.embedded import DIGITS_CLASSES, build_digits, load_split


@pytest.fixture(scope="module")
def digits_file(tmp_path_factory):
    return build_digits(tmp_path_factory.mktemp("digits") / "sub" / "digits.safetensors")


@pytest.fixture(scope="module")
def splits(digits_file):
    return {name: load_split(digits_file, name).tensors for name in ("train", "val", "test")}


def test_shapes_dtypes_and_range(splits):
    for x, y in splits.values():
        assert x.dtype == torch.float32 and y.dtype == torch.int64
        assert x.shape[1:] == (3, 32, 32) and len(x) == len(y)
        assert x.min() >= 0.0 and x.max() <= 1.0
        assert x.max() > 0.99  # full ink intensity survives the upsampling
        assert torch.equal(x[:, 0], x[:, 1]) and torch.equal(x[:, 0], x[:, 2])  # grey as RGB
        assert (x[..., :2, :] == 0).all() and (x[..., :, -2:] == 0).all()  # 2 px zero border
        assert set(y.unique().tolist()) == set(range(DIGITS_CLASSES))


def test_split_sizes_and_stratification(splits):
    sizes = {name: len(y) for name, (_, y) in splits.items()}
    assert sum(sizes.values()) == 1797
    assert sizes["train"] == pytest.approx(0.6 * 1797, abs=10)
    assert sizes["val"] == pytest.approx(0.2 * 1797, abs=10)
    for name, (_, y) in splits.items():
        share = torch.bincount(y, minlength=DIGITS_CLASSES).double() / len(y)
        assert (share - 0.1).abs().max() < 0.02, name  # each class ~10% in every split


def test_splits_are_disjoint(splits):
    hashes = {
        name: {hashlib.sha1(img.numpy().tobytes()).hexdigest() for img in x}
        for name, (x, _) in splits.items()
    }
    assert sum(len(h) for h in hashes.values()) == 1797  # images are unique within splits too
    assert not hashes["train"] & hashes["val"]
    assert not hashes["train"] & hashes["test"]
    assert not hashes["val"] & hashes["test"]


def test_rebuild_is_identical_and_atomic(digits_file, tmp_path):
    from safetensors import safe_open

    again = build_digits(tmp_path / "digits.safetensors")
    assert [p.name for p in tmp_path.iterdir()] == ["digits.safetensors"]  # no temp file left
    with safe_open(str(digits_file), "pt") as a, safe_open(str(again), "pt") as b:
        assert a.metadata() == b.metadata()
        assert a.metadata()["num_classes"] == "10"
        assert a.metadata()["image_size"] == "32"
        for key in a.keys():  # noqa: SIM118 - safe_open handles are not dicts
            assert torch.equal(a.get_tensor(key), b.get_tensor(key)), key


def test_missing_corrupt_and_unknown_split(tmp_path, digits_file):
    missing = tmp_path / "nope.safetensors"
    with pytest.raises(ValueError, match=re.escape(str(missing))):
        load_split(missing, "train")
    corrupt = tmp_path / "bad.safetensors"
    corrupt.write_bytes(b"not a safetensors file")
    with pytest.raises(ValueError, match=re.escape(str(corrupt))):
        load_split(corrupt, "train")
    with pytest.raises(ValueError, match="unknown split"):
        load_split(digits_file, "holdout")
