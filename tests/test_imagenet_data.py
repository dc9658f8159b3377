"""ImageNet sources and checksummed downloads, on tiny fixtures built here (no network).

Covers: ImageFolder tree -> manifest -> tensors; a corrupt image named in the error; the official
archives (fake train / val / devkit built with tarfile + scipy.io.savemat) unpacked with correct
val labels; wrong checksums leaving nothing behind; download() over file:// and an unreachable
URL; Imagenette's pinned-checksum rule; the Hugging Face export's error paths and its writer.
"""

from __future__ import annotations

import io
import sys
import tarfile
import types
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from scipy.io import savemat

from softeq.data import imagenet_hf
from softeq.data.download import download, verify_file
from softeq.data.imagefolder import build_manifest, load_imagefolder, read_manifest
from softeq.data.imagenet import (
    DEVKIT_ARCHIVE,
    TRAIN_ARCHIVE,
    VAL_ARCHIVE,
    prepare_imagenet,
    prepare_imagenette,
    read_devkit,
    unpack_archives,
)
from softeq.data.imagenet_hf import export_hf_imagenet
from softeq.io import file_md5, file_sha256

WNIDS = ("n01440764", "n01443537", "n01484850")  # ILSVRC2012_IDs 1, 2, 3 (leaves)
VAL_TRUTH = (3, 1, 2, 1, 3, 2)  # per val image in sorted file-name order


def jpeg_bytes(value: int, size: tuple[int, int] = (40, 32)) -> bytes:
    """A small solid-colour JPEG; ``value`` sets the red channel so images are distinguishable."""
    buffer = io.BytesIO()
    Image.new("RGB", size, (value, 80, 160)).save(buffer, format="JPEG")
    return buffer.getvalue()


def make_tree(root: Path, classes=WNIDS, per_class: int = 2) -> Path:
    for split in ("train", "val"):
        for c, wnid in enumerate(classes):
            folder = root / split / wnid
            folder.mkdir(parents=True)
            for k in range(per_class):
                (folder / f"{wnid}_{k}.JPEG").write_bytes(jpeg_bytes(60 * c + k))
    return root


def add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def make_archives(folder: Path) -> Path:
    """Fake ILSVRC2012 archives: per-wnid inner tars, a flat val tar, a devkit tar.gz."""
    folder.mkdir(parents=True, exist_ok=True)
    with tarfile.open(folder / TRAIN_ARCHIVE, "w") as outer:
        for c, wnid in enumerate(WNIDS):
            inner = io.BytesIO()
            with tarfile.open(fileobj=inner, mode="w") as tar:
                for k in range(2):
                    add_bytes(tar, f"{wnid}_{k}.JPEG", jpeg_bytes(60 * c + k))
            add_bytes(outer, f"{wnid}.tar", inner.getvalue())
    names = [f"ILSVRC2012_val_{i:08d}.JPEG" for i in range(1, len(VAL_TRUTH) + 1)]
    with tarfile.open(folder / VAL_ARCHIVE, "w") as tar:
        for i in (4, 1, 5, 0, 3, 2):  # stored out of order: labels must follow sorted names
            add_bytes(tar, names[i], jpeg_bytes(10 * i))
    fields = ("ILSVRC2012_ID", "WNID", "words", "num_children")  # as in the real meta.mat
    synsets = np.zeros((4, 1), dtype=[(f, "O") for f in fields])
    for i, wnid in enumerate(WNIDS):
        synsets[i, 0] = (i + 1, wnid, f"class {wnid}", 0)
    synsets[3, 0] = (4, "n00001740", "entity", 3)  # a non-leaf synset: not a class
    meta = io.BytesIO()
    savemat(meta, {"synsets": synsets})
    truth = "".join(f"{t}\n" for t in VAL_TRUTH).encode()
    with tarfile.open(folder / DEVKIT_ARCHIVE, "w:gz") as tar:
        add_bytes(tar, "ILSVRC2012_devkit_t12/data/meta.mat", meta.getvalue())
        add_bytes(tar, "ILSVRC2012_devkit_t12/data/ILSVRC2012_validation_ground_truth.txt", truth)
    return folder


def real_md5s(folder: Path) -> dict[str, str]:
    return {n: file_md5(folder / n) for n in (TRAIN_ARCHIVE, VAL_ARCHIVE, DEVKIT_ARCHIVE)}


def listing(folder: Path) -> set[str]:
    return {p.name for p in folder.iterdir()}


# ----------------------------------------------------------------------------- ImageFolder


def test_folder_manifest_loads_tensors_with_labels(tmp_path):
    tree = make_tree(tmp_path / "tree")
    manifest = prepare_imagenet("folder", tree, tmp_path / "m.json")
    info = read_manifest(manifest)
    assert info["classes"] == list(WNIDS) and info["counts"] == {"train": 6, "val": 6}
    for split, train in (("train", True), ("test", False)):
        ds = load_imagefolder(manifest, split, input_size=32, train=train)
        assert len(ds) == 6
        for index in range(len(ds)):
            x, y = ds[index]
            assert x.shape == (3, 32, 32) and x.dtype == torch.float32
            assert WNIDS[y] == Path(ds.inner.samples[index][0]).parent.name


def test_corrupt_image_error_names_file(tmp_path):
    tree = make_tree(tmp_path / "tree", per_class=1)
    bad = tree / "val" / WNIDS[1] / "broken.JPEG"
    bad.write_bytes(b"\x00not a jpeg at all" * 10)
    manifest = build_manifest(tree, tmp_path / "m.json")
    ds = load_imagefolder(manifest, "test", input_size=32, train=False)
    index = [Path(p).name for p, _ in ds.inner.samples].index("broken.JPEG")
    with pytest.raises(ValueError, match=r"broken\.JPEG: cannot read image"):
        ds[index]


def test_unknown_source_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match=r"unknown ImageNet source 'imagenet21k'.*archives"):
        prepare_imagenet("imagenet21k", tmp_path, tmp_path / "m.json")


# ------------------------------------------------------------------------- official archives


def test_read_devkit_keeps_leaves_and_ground_truth(tmp_path):
    folder = make_archives(tmp_path / "archives")
    wnid_by_id, words, val_ids = read_devkit(folder / DEVKIT_ARCHIVE)
    assert wnid_by_id == {1: WNIDS[0], 2: WNIDS[1], 3: WNIDS[2]}  # non-leaf 4 dropped
    assert words[WNIDS[0]] == f"class {WNIDS[0]}"
    assert val_ids == list(VAL_TRUTH)


def test_archives_unpack_to_imagefolder_with_val_labels(tmp_path):
    folder = make_archives(tmp_path / "archives")
    manifest = prepare_imagenet(
        "archives", folder, tmp_path / "m.json", md5s=real_md5s(folder), progress=False
    )
    tree = folder / "imagenet"
    assert read_manifest(manifest)["counts"] == {"train": 6, "val": 6}
    for c, wnid in enumerate(WNIDS):
        assert listing(tree / "train" / wnid) == {f"{wnid}_0.JPEG", f"{wnid}_1.JPEG"}
        with Image.open(tree / "train" / wnid / f"{wnid}_1.JPEG") as im:
            assert abs(im.getpixel((5, 5))[0] - (60 * c + 1)) <= 3  # the right bytes
    for i, truth in enumerate(VAL_TRUTH, start=1):
        name = f"ILSVRC2012_val_{i:08d}.JPEG"
        assert (tree / "val" / WNIDS[truth - 1] / name).is_file(), name
    assert (tree / "classes.tsv").read_text().splitlines()[0] == f"0\t{WNIDS[0]}\tclass {WNIDS[0]}"
    assert not [p for p in folder.iterdir() if p.name.startswith(".")]  # no staging dir left
    ds = load_imagefolder(manifest, "test", input_size=16, train=False)
    assert sorted(int(y) for _, y in ds.inner.samples) == sorted(t - 1 for t in VAL_TRUTH)
    # a finished tree is reused, not unpacked again
    assert unpack_archives(folder, md5s={n: None for n in real_md5s(folder)}) == tree


@pytest.mark.parametrize("bad", [TRAIN_ARCHIVE, VAL_ARCHIVE, DEVKIT_ARCHIVE])
def test_wrong_md5_names_archive_and_leaves_nothing(tmp_path, bad):
    folder = make_archives(tmp_path / "archives")
    before = listing(folder)
    md5s = {**real_md5s(folder), bad: "0" * 32}
    with pytest.raises(ValueError, match=rf"{bad}: md5 mismatch: expected 0{{32}}, got [0-9a-f]+"):
        unpack_archives(folder, tmp_path / "out" / "tree", md5s=md5s, progress=False)
    assert listing(folder) == before
    assert not (tmp_path / "out").exists() or not listing(tmp_path / "out")


def test_official_md5s_are_the_default(tmp_path):
    folder = make_archives(tmp_path / "archives")
    with pytest.raises(ValueError, match=rf"{TRAIN_ARCHIVE}: md5 mismatch.*1d675b47d9"):
        prepare_imagenet("archives", folder, tmp_path / "m.json")
    assert listing(folder) == {TRAIN_ARCHIVE, VAL_ARCHIVE, DEVKIT_ARCHIVE}
    assert not (tmp_path / "m.json").exists()


def test_missing_archive_and_failed_unpack_leave_nothing(tmp_path):
    folder = make_archives(tmp_path / "archives")
    md5s = real_md5s(folder)
    (folder / VAL_ARCHIVE).unlink()
    with pytest.raises(FileNotFoundError, match=VAL_ARCHIVE):
        unpack_archives(folder, md5s=md5s)
    # a val tar whose image count disagrees with the ground truth fails after train is unpacked
    with tarfile.open(folder / VAL_ARCHIVE, "w") as tar:
        add_bytes(tar, "ILSVRC2012_val_00000001.JPEG", jpeg_bytes(0))
    with pytest.raises(ValueError, match=r"1 images but the devkit's ground truth has 6"):
        unpack_archives(folder, md5s={**md5s, VAL_ARCHIVE: None}, progress=False)
    assert listing(folder) == {TRAIN_ARCHIVE, VAL_ARCHIVE, DEVKIT_ARCHIVE}


# ---------------------------------------------------------------------------------- download


def test_download_file_url_verifies_and_writes(tmp_path):
    source = tmp_path / "src" / "blob.bin"
    source.parent.mkdir()
    source.write_bytes(b"softeq" * 100_000)
    dest = tmp_path / "dl" / "blob.bin"
    out = download(
        source.as_uri(), dest, md5=file_md5(source), sha256=file_sha256(source), progress=False
    )
    assert out == dest and dest.read_bytes() == source.read_bytes()
    assert listing(dest.parent) == {"blob.bin"}
    assert verify_file(dest, sha256=file_sha256(source)) == dest
    # a verified copy in place is used without touching the network
    assert download("http://127.0.0.1:9/blob.bin", dest, sha256=file_sha256(source)) == dest


def test_download_checksum_mismatch_leaves_no_file(tmp_path):
    source = tmp_path / "blob.bin"
    source.write_bytes(b"abc")
    dest = tmp_path / "dl" / "blob.bin"
    actual = file_sha256(source)
    with pytest.raises(ValueError, match=rf"blob\.bin: sha256 mismatch: expected f+, got {actual}"):
        download(source.as_uri(), dest, sha256="f" * 64, progress=False)
    assert not dest.parent.exists() or not listing(dest.parent)


def test_download_unreachable_says_offline(tmp_path):
    dest = tmp_path / "x"
    with pytest.raises(ConnectionError, match=r"http://127\.0\.0\.1:9/x.*offline"):
        download("http://127.0.0.1:9/x", dest, sha256="0" * 64, progress=False, timeout=5)
    assert not listing(tmp_path)


def test_verify_file_errors_name_the_file(tmp_path):
    path = tmp_path / "a.bin"
    with pytest.raises(FileNotFoundError, match=r"a\.bin: file not found"):
        verify_file(path, md5="0" * 32)
    path.write_bytes(b"a")
    with pytest.raises(ValueError, match=r"a\.bin: md5 mismatch: expected 0+, got [0-9a-f]{32}"):
        verify_file(path, md5="0" * 32)
    with pytest.raises(ValueError, match="needs an md5 or a sha256"):
        verify_file(path)


# -------------------------------------------------------------------------------- Imagenette


def make_imagenette(folder: Path) -> Path:
    folder.mkdir(parents=True)
    archive = folder / "imagenette2-160.tgz"
    with tarfile.open(archive, "w:gz") as tar:
        add_bytes(tar, "imagenette2-160/noisy_imagenette.csv", b"path,noisy_labels_0\n")
        for split in ("train", "val"):
            for c, wnid in enumerate(WNIDS[:2]):
                add_bytes(tar, f"imagenette2-160/{split}/{wnid}/{wnid}_0.JPEG", jpeg_bytes(c))
    return archive


def test_imagenette_refuses_without_checksum(tmp_path):
    archive = make_imagenette(tmp_path / "mirror")
    with pytest.raises(ValueError, match=r"no checksum pinned.*sha256sum.*allow_unverified=True"):
        prepare_imagenette(tmp_path / "data", url=archive.as_uri())
    assert not (tmp_path / "data").exists()


def test_imagenette_download_extract_manifest(tmp_path):
    archive = make_imagenette(tmp_path / "mirror")
    root = tmp_path / "data"
    manifest = prepare_imagenet(
        "imagenette",
        root,
        tmp_path / "m.json",
        sha256=file_sha256(archive),
        url=archive.as_uri(),
        progress=False,
    )
    info = read_manifest(manifest)
    assert info["root"] == str((root / "imagenette2-160").resolve())
    assert info["classes"] == list(WNIDS[:2]) and info["counts"] == {"train": 2, "val": 2}
    assert listing(root) == {"imagenette2-160.tgz", "imagenette2-160"}
    # wrong checksum: no tree, no temporary files
    other = tmp_path / "other"
    with pytest.raises(ValueError, match="sha256 mismatch"):
        prepare_imagenette(other, sha256="0" * 64, url=archive.as_uri(), progress=False)
    assert not other.exists() or not listing(other)


def test_imagenette_allow_unverified(tmp_path):
    archive = make_imagenette(tmp_path / "mirror")
    tree = prepare_imagenette(
        tmp_path / "data", allow_unverified=True, url=archive.as_uri(), progress=False
    )
    assert (tree / "val" / WNIDS[1] / f"{WNIDS[1]}_0.JPEG").is_file()


# ------------------------------------------------------------------------------- Hugging Face


class FakeImageFeature:
    def __init__(self, decode: bool = True) -> None:
        self.decode = decode


class FakeSplit:
    """Just what export_hf_imagenet uses of a ``datasets.Dataset``."""

    def __init__(self, rows: list[dict], names: list[str]) -> None:
        self.rows = rows
        self.features = {"image": FakeImageFeature(), "label": types.SimpleNamespace(names=names)}

    def cast_column(self, column: str, feature: FakeImageFeature) -> FakeSplit:
        assert column == "image" and feature.decode is False
        return self

    def __len__(self) -> int:
        return len(self.rows)

    def __iter__(self):
        return iter(self.rows)


def fake_datasets(monkeypatch, load_dataset) -> None:
    module = types.ModuleType("datasets")
    module.load_dataset = load_dataset
    module.Image = FakeImageFeature
    monkeypatch.setitem(sys.modules, "datasets", module)


def test_hf_missing_library_says_pip_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "datasets", None)  # makes `import datasets` fail
    with pytest.raises(ImportError, match=r"pip install datasets.*HF_TOKEN"):
        prepare_imagenet("huggingface", tmp_path, tmp_path / "m.json", token="hf_x")
    assert not listing(tmp_path)


def test_hf_missing_token(tmp_path, monkeypatch):
    fake_datasets(monkeypatch, lambda *a, **k: pytest.fail("must not be called"))
    monkeypatch.setattr(imagenet_hf, "hf_token", lambda: None)
    with pytest.raises(PermissionError, match=r"no Hugging Face token.*HF_TOKEN"):
        export_hf_imagenet(tmp_path / "tree")
    assert not listing(tmp_path)


class GatedRepoError(Exception):
    """Stands in for huggingface_hub's error of the same name (matched by class name)."""


@pytest.mark.parametrize(
    ("raised", "expected", "message"),
    [
        (ConnectionError("Max retries exceeded"), ConnectionError, r"looks offline"),
        (GatedRepoError("Access to dataset is restricted"), PermissionError, r"accept .* terms"),
    ],
)
def test_hf_offline_and_refused(tmp_path, monkeypatch, raised, expected, message):
    def load_dataset(*args, **kwargs):
        raise raised

    fake_datasets(monkeypatch, load_dataset)
    with pytest.raises(expected, match=rf"ILSVRC/imagenet-1k: .*{message}"):
        export_hf_imagenet(tmp_path / "tree", token="hf_x", progress=False)
    assert not listing(tmp_path)


def test_hf_export_writes_imagefolder(tmp_path, monkeypatch):
    names = ["tench, Tinca tinca", "goldfish", "great white shark"]

    def row(k: int, path: str | None, label: int) -> dict:
        return {"image": {"bytes": jpeg_bytes(k), "path": path}, "label": label}

    rows = {
        "train": [row(k, f"img{k}.JPEG", k % 3) for k in range(6)],
        "validation": [row(k, None, k) for k in range(3)],
    }
    calls = []

    def load_dataset(name, split, token, streaming):
        calls.append((name, split, token))
        return FakeSplit(rows[split], names)

    fake_datasets(monkeypatch, load_dataset)
    manifest = prepare_imagenet(
        "huggingface", tmp_path, tmp_path / "m.json", token="hf_x", progress=False
    )
    assert calls == [("ILSVRC/imagenet-1k", s, "hf_x") for s in ("train", "validation")]
    info = read_manifest(manifest)
    assert info["classes"] == ["0", "1", "2"] and info["counts"] == {"train": 6, "val": 3}
    tree = tmp_path / "imagenet-1k"
    assert (tree / "train" / "1" / "img4.JPEG").read_bytes() == jpeg_bytes(4)  # bytes unchanged
    assert (tree / "val" / "2" / "validation_00000002.JPEG").is_file()
    assert (tree / "classes.tsv").read_text().splitlines()[1] == "1\t1\tgoldfish"
    assert listing(tmp_path) == {"imagenet-1k", "m.json"}


def test_hf_1000_classes_use_wnids():
    folders = imagenet_hf.hf_folder_names([f"c{i}" for i in range(1000)])
    assert folders[0] == "n01440764" and folders == sorted(folders) and len(set(folders)) == 1000
