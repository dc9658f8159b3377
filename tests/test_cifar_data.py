"""CIFAR-10 / CIFAR-100: a tiny torchvision-format tree and archive, prepared and loaded."""

import dataclasses
import json
import math
import pickle
import tarfile
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch

from softeq.data import cifar
from softeq.data.classification import load_classification, num_classes
from softeq.io import file_md5

ROOT = Path(__file__).resolve().parents[1]
NO_NORM = {"mean": (0.0, 0.0, 0.0), "std": (1.0, 1.0, 1.0), "interpolation": "nearest"}
SIZES = {"cifar10": (4, 6), "cifar100": (2, 3)}  # images per class: training batches, test


def _images(labels: np.ndarray, offset: int) -> np.ndarray:
    """(N, 3072) uint8 rows in the batch layout (channel-major 3 x 32 x 32); image i is constant
    (i + offset) in its red plane, so it can be found again after the split."""
    data = np.zeros((len(labels), 3, 32, 32), np.uint8)
    data[:, 0] = (np.arange(len(labels)) + offset)[:, None, None] % 256
    data[:, 1, :16] = 200  # the top half of the green plane: orientation
    return data.reshape(len(labels), -1)


def _write(path: Path, entry: dict) -> None:
    path.write_bytes(pickle.dumps(entry, protocol=4))


def write_tree(parent: Path, name: str) -> Path:
    """A torchvision-format folder of ``name`` with a handful of images per class."""
    release = cifar.CIFAR_RELEASES[name]
    tree = parent / release.folder
    tree.mkdir(parents=True)
    classes = 10 if name == "cifar10" else 100
    per_class, per_class_test = SIZES[name]
    train_labels = np.tile(np.arange(classes), per_class)
    chunks = np.array_split(np.arange(len(train_labels)), len(release.train))
    offset = 0
    for file, chunk in zip(release.train, chunks, strict=True):
        labels = train_labels[chunk]
        _write(tree / file, {"data": _images(labels, offset), release.label_key: labels.tolist()})
        offset += len(labels)
    test_labels = np.tile(np.arange(classes), per_class_test)
    (test_file,) = release.test
    _write(
        tree / test_file,
        {"data": _images(test_labels, 100), release.label_key: test_labels.tolist()},
    )
    names = [f"class{i}" for i in range(classes)]
    _write(tree / release.meta[0], {release.names_key: names})
    return tree


def pin(monkeypatch, name: str, tree: Path, archive: Path | None = None) -> None:
    """Pin the fixture's md5s in place of the published ones."""
    release = cifar.CIFAR_RELEASES[name]
    sums = {file: file_md5(tree / file) for file in release.files}
    pinned = dataclasses.replace(
        release,
        train={f: sums[f] for f in release.train},
        test={f: sums[f] for f in release.test},
        meta=(release.meta[0], sums[release.meta[0]]),
        md5=file_md5(archive) if archive is not None else release.md5,
    )
    monkeypatch.setitem(cifar.CIFAR_RELEASES, name, pinned)


@pytest.fixture(params=["cifar10", "cifar100"])
def prepared(request, tmp_path, monkeypatch):
    name = request.param
    tree = write_tree(tmp_path / "copy", name)
    pin(monkeypatch, name, tree)
    out = tmp_path / "data" / f"{name}.json"
    out.parent.mkdir()
    cifar.prepare_cifar(name, tmp_path / "copy", tmp_path / "dl", out, val_fraction=0.25)
    return name, tree, out


def test_published_checksums_are_torchvisions():
    from torchvision.datasets import CIFAR10, CIFAR100

    for name, dataset in (("cifar10", CIFAR10), ("cifar100", CIFAR100)):
        release = cifar.CIFAR_RELEASES[name]
        assert (release.archive, release.md5) == (dataset.filename, dataset.tgz_md5)
        assert release.url == dataset.url and release.folder == dataset.base_folder
        assert release.train == dict(dataset.train_list)
        assert release.test == dict(dataset.test_list)
        assert release.meta == (dataset.meta["filename"], dataset.meta["md5"])
        assert release.names_key == dataset.meta["key"]


def test_prepare_builds_the_manifest_and_a_stratified_held_out_split(prepared):
    name, tree, out = prepared
    manifest = json.loads(out.read_text())
    classes = 10 if name == "cifar10" else 100
    per_class, per_class_test = SIZES[name]
    assert manifest["kind"] == "cifar" and manifest["dataset"] == name
    assert manifest["classes"] == [f"class{i}" for i in range(classes)]
    n_val = round(0.25 * per_class) * classes
    assert manifest["counts"] == {
        "train": per_class * classes - n_val,
        "val": n_val,
        "test": per_class_test * classes,
    }
    assert manifest["md5"] == cifar.CIFAR_RELEASES[name].files
    assert manifest["source"] == {"root": str(tree.parent.resolve())}
    assert num_classes(out) == classes
    # train and val split the training batches (every image once), the test batch is the test
    seen = []
    for split in ("train", "val"):
        data = load_classification(out, split, 32, False, None, NO_NORM)
        red = [round(float(data[i][0][0, 0, 0]) * 255) for i in range(len(data))]
        labels = [data[i][1] for i in range(len(data))]
        assert np.bincount(labels, minlength=classes).tolist() == [len(data) // classes] * classes
        seen += red
    assert sorted(seen) == list(range(per_class * classes))
    test = load_classification(out, "test", 32, False, None, NO_NORM)
    assert [test[i][1] for i in range(len(test))] == list(range(classes)) * per_class_test


def test_loader_gives_shapes_labels_and_the_image_upright(prepared):
    name, tree, out = prepared
    release = cifar.CIFAR_RELEASES[name]
    images, labels = cifar.read_batch(tree / next(iter(release.test)), release.label_key)
    assert images.shape[1:] == (32, 32, 3) and images.dtype == np.uint8
    test = load_classification(out, "test", 32, False, None, NO_NORM)
    x, y = test[3]
    assert x.shape == (3, 32, 32) and x.dtype == torch.float32 and y == labels[3]
    assert torch.equal(
        (x * 255).round().to(torch.uint8), torch.from_numpy(images[3]).permute(2, 0, 1)
    )
    big = load_classification(out, "test", 48, False)  # ImageNet normalisation by default
    x48, _ = big[0]
    assert x48.shape == (3, 48, 48)
    red = (100 / 255 - 0.485) / 0.229  # test image 0's red plane is 100: ImageNet's statistics
    assert torch.allclose(x48[0], torch.full_like(x48[0], red), atol=1e-5)
    batch = next(iter(torch.utils.data.DataLoader(big, batch_size=4)))
    assert batch[0].shape == (4, 3, 48, 48) and batch[1].dtype == torch.int64


def test_training_rotation_comes_from_the_manifest(tmp_path, monkeypatch):
    tree = write_tree(tmp_path / "copy", "cifar10")
    pin(monkeypatch, "cifar10", tree)
    out = tmp_path / "cifar10.json"
    cifar.prepare_cifar("cifar10", tree, tmp_path / "dl", out, train_rotation=10.0)
    assert json.loads(out.read_text())["train_rotation"] == 10.0
    train = load_classification(out, "train", 32, True, None, NO_NORM)
    assert "RandomRotation" in repr(train.transform)
    assert "RandomRotation" not in repr(load_classification(out, "val", 32, False).transform)
    with pytest.raises(ValueError, match="auto_augment"):
        load_classification(out, "train", 32, True, "rand-m9-mstd0.5-inc1")


def test_an_edited_arrays_file_fails_at_load_naming_it(prepared):
    _, _, out = prepared
    data = Path(json.loads(out.read_text())["data"])
    blob = bytearray(data.read_bytes())
    blob[-1] ^= 1
    data.write_bytes(bytes(blob))
    with pytest.raises(ValueError, match=f"{data}: sha256 mismatch"):
        load_classification(out, "test", 32, False)


def test_a_changed_batch_is_refused_by_its_md5_naming_it(tmp_path, monkeypatch):
    from softeq.cli import main

    tree = write_tree(tmp_path / "copy", "cifar10")
    pin(monkeypatch, "cifar10", tree)
    _write(tree / "data_batch_2", {"data": _images(np.zeros(4, int), 7), "labels": [0] * 4})
    out = tmp_path / "cifar10.json"
    args = ["prepare-data", "--dataset", "cifar10", "--root", str(tree.parent), "--out", str(out)]
    with pytest.raises(SystemExit, match=f"{tree / 'data_batch_2'}: md5 mismatch"):
        main(args)
    assert not out.exists()
    (tree / "data_batch_2").unlink()
    with pytest.raises(SystemExit, match=f"{tree / 'data_batch_2'}: file not found"):
        main(args)
    with pytest.raises(FileNotFoundError, match="no cifar-100-python/ folder"):
        cifar.locate_tree(tmp_path / "copy", "cifar100")


def test_the_published_checksums_refuse_a_fixture(tmp_path):
    tree = write_tree(tmp_path, "cifar100")
    with pytest.raises(ValueError, match=f"{tree / 'train'}: md5 mismatch: expected 16019d7e"):
        cifar.verify_tree(tree, "cifar100")


def test_a_pickle_naming_any_other_global_is_refused(tmp_path):
    import os

    class Hostile:
        def __reduce__(self):
            return (os.system, ("echo pwned > " + str(tmp_path / "pwned"),))

    path = tmp_path / "data_batch_1"
    path.write_bytes(pickle.dumps({"data": Hostile(), "labels": []}))
    with pytest.raises(ValueError, match=rf"{path}: not a CIFAR python batch .*system"):
        cifar.read_batch(path, "labels")
    assert not (tmp_path / "pwned").exists()
    # numpy 1's module name, as the published (Python 2) batches name it
    good = pickle.dumps({"data": np.zeros((2, 3072), np.uint8), "labels": [1, 2]}, protocol=3)
    new, old = b"numpy._core.multiarray\n", b"numpy.core.multiarray\n"  # GLOBAL opcode, unframed
    assert new in good
    path.write_bytes(good.replace(new, old))
    images, labels = cifar.read_batch(path, "labels")
    assert images.shape == (2, 32, 32, 3) and labels.tolist() == [1, 2]


def _archive(tmp_path: Path, name: str) -> tuple[Path, Path]:
    tree = write_tree(tmp_path / "src", name)
    archive = tmp_path / "mirror" / cifar.CIFAR_RELEASES[name].archive
    archive.parent.mkdir()
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(tree, arcname=tree.name)
    return tree, archive


def test_the_archive_md5_is_checked_before_anything_is_unpacked(tmp_path, monkeypatch):
    tree, archive = _archive(tmp_path, "cifar10")
    monkeypatch.setattr(cifar, "CIFAR_URL", f"file://{archive.parent}/")
    pin(monkeypatch, "cifar10", tree)  # the batches' md5s, the archive's still the published one
    downloads = tmp_path / "dl"
    with pytest.raises(ValueError, match=r"cifar-10-python.tar.gz: md5 mismatch: expected c58f3"):
        cifar.fetch_cifar("cifar10", downloads)
    assert not (downloads / "cifar-10-batches-py").exists()
    assert not (downloads / "cifar-10-python.tar.gz").exists()


def test_a_pinned_archive_is_downloaded_unpacked_and_prepared(tmp_path, monkeypatch):
    from softeq.stages.data import prepare_data

    tree, archive = _archive(tmp_path, "cifar10")
    monkeypatch.setattr(cifar, "CIFAR_URL", f"file://{archive.parent}/")
    pin(monkeypatch, "cifar10", tree, archive)
    out = tmp_path / "data" / "cifar10.json"
    args = SimpleNamespace(
        dataset="cifar10",
        out=str(out),
        downloads=str(tmp_path / "dl"),
        root="",
        protocol={"val_fraction": 0.5, "split_seed": 3, "train_rotation": 10.0},
    )
    prepare_data(args)
    manifest = json.loads(out.read_text())
    assert manifest["counts"] == {"train": 20, "val": 20, "test": 60}
    assert manifest["source"]["archive_md5"] == file_md5(archive)
    assert (tmp_path / "dl" / "cifar-10-batches-py" / "data_batch_5").is_file()
    # offline: the archive in place is used, the unpacked folder reused
    monkeypatch.setattr(cifar, "CIFAR_URL", "http://127.0.0.1:9/")
    prepare_data(args)
    assert json.loads(out.read_text())["sha256"] == manifest["sha256"]


def test_unreachable_host_says_to_set_the_root(tmp_path, monkeypatch):
    from softeq.stages.data import prepare_data

    monkeypatch.setattr(cifar, "CIFAR_URL", "http://127.0.0.1:9/")
    args = SimpleNamespace(
        dataset="cifar100", out=str(tmp_path / "c.json"), downloads=None, root=None, protocol={}
    )
    with pytest.raises(SystemExit, match=r"datasets\.cifar100\.root"):
        prepare_data(args)


# ------------------------------------------------------------------------ pipeline and tables


def test_the_plan_prepares_cifar_as_a_download_with_its_protocol():
    import yaml

    from softeq.pipeline import validate_config
    from softeq.pipeline.plan import DOWNLOADED_FAMILIES, Plan

    config = yaml.safe_load((ROOT / "config/paper.yaml").read_text())
    validate_config(config, ROOT / "workflow/schemas/config.schema.yaml")
    plan = Plan(config)
    assert {"cifar10", "cifar100"} <= set(DOWNLOADED_FAMILIES)
    w = SimpleNamespace(family="cifar100", dataset="cifar100")
    assert plan.data_file(w) == "resources/data/cifar100.json"
    assert json.loads(plan.prepare_protocol(w)) == {
        "split_seed": 0,
        "train_rotation": 10.0,
        "val_fraction": 0.2,
    }
    assert plan.dataset_root(w) == ""
    tables = plan.paper_outputs()
    assert "results/paper/tables/paper_cifar.csv" in tables
    assert plan.table_summaries("cifar") == [
        "results/paper/tables/classification_cifar10_summary.csv",
        "results/paper/tables/classification_cifar100_summary.csv",
    ]
    assert not [p for p in plan.summaries_of("classification") if "cifar" in p]


def _cifar_summary(tmp_path: Path, dataset: str) -> Path:
    rows = []
    for backbone, softness, acc in (("deits16cifar", 0.0, 0.9), ("resnet50cifar", 0.5, 0.95)):
        rows.append(
            {
                "task": "classification",
                "dataset": dataset,
                "backbone": backbone,
                "group": "C4",
                "filter": "rank",
                "softness": softness,
                "softness_pos": softness,
                "n_seeds": 1,
                "acc_mean": acc,
                "rot_acc_mean": acc - 0.1,
                "combined_mean": math.sqrt(acc * (acc - 0.1)),
                "inv_error_mean": 0.001,
            }
        )
    path = tmp_path / f"classification_{dataset}_summary.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def test_the_cifar_table_renders_with_the_reported_numbers_of_unknown_setting(tmp_path):
    from softeq.results.paper_tables import paper_table, write_paper_table

    summaries = [_cifar_summary(tmp_path, d) for d in ("cifar10", "cifar100")]
    rows = paper_table(summaries, "classification", reported=True)
    reported = rows[rows["source"] != "ours"].set_index("dataset")
    assert reported.loc["cifar10", "acc"] == 98.82 and reported.loc["cifar100", "acc"] == 91.03
    assert set(reported["backbone"]) == {"unknown"}
    assert set(reported["setting"]) == {"reported: setting unknown"}
    assert set(reported["source"]) == {"reported (s)"}
    ours = rows[rows["source"] == "ours"]
    assert len(ours) == 4 and set(ours["acc"]) == {90.0, 95.0}
    paths = write_paper_table(summaries, "classification", tmp_path / "paper_cifar", reported=True)
    markdown = paths[1].read_text()
    assert "reported: setting unknown" in markdown and "98.82" in markdown
    assert "cifar100" in markdown
    assert "reported" not in paper_table(summaries, "classification")["source"].str.cat()
