"""Fetching PASCAL VOC 2012 and SBD, and building the SBD-augmented train_aug set.

The official archives are md5-checked (:data:`VOC_MD5`, :data:`SBD_MD5`) and unpacked through a
staging folder, so an interrupted run leaves no half-unpacked tree (docs/conventions.md §3,
downloads).  :func:`build_train_aug` writes a VOC-layout root that
:class:`softeq.data.voc.VOCSegmentation` reads with ``protocol="train_aug"``.
"""

from __future__ import annotations

import shutil
import tarfile
import tempfile
from pathlib import Path

import numpy as np

from softeq.data.download import download, verify_file
from softeq.data.voc import id_lists, read_ids, write_ids, write_mask

__all__ = [
    "SBD_MD5",
    "SBD_URL",
    "TRAIN_AUG_SIZE",
    "VOC_MD5",
    "VOC_TRAIN_SIZE",
    "VOC_URLS",
    "VOC_VAL_SIZE",
    "build_train_aug",
    "fetch_train_aug",
    "fetch_voc",
    "read_sbd_mask",
    "untar",
    "verify_md5",
]

VOC_MD5 = "6cd6e144f989b92b3379bac3b3de84fd"  # VOCtrainval_11-May-2012.tar
SBD_MD5 = "82b4d87ceb2ed10f6038a1cba92111cb"  # SBD benchmark.tgz
VOC_URLS = (
    "http://host.robots.ox.ac.uk/pascal/VOC/voc2012/VOCtrainval_11-May-2012.tar",
    "https://thor.robots.ox.ac.uk/pascal/VOC/voc2012/VOCtrainval_11-May-2012.tar",
)
SBD_URL = (
    "https://www2.eecs.berkeley.edu/Research/Projects/CS/vision/grouping/semantic_contours/"
    "benchmark.tgz"
)
VOC_TRAIN_SIZE = 1464
VOC_VAL_SIZE = 1449
TRAIN_AUG_SIZE = 10582


def verify_md5(path: str | Path, md5: str) -> Path:
    """Check ``path``'s MD5 against ``md5``; raise naming the file when it is missing or differs."""
    return verify_file(path, md5=md5)


def untar(archive: Path, dest: Path) -> None:
    """Unpack ``archive`` into ``dest`` through a staging folder beside it; top-level entries that
    already exist in ``dest`` are kept (a finished earlier unpack is never overwritten)."""
    with tempfile.TemporaryDirectory(dir=dest, prefix=f".{archive.name}.") as staging:
        with tarfile.open(archive) as tar:
            tar.extractall(staging, filter="data")
        for item in Path(staging).iterdir():
            target = dest / item.name
            if not target.exists():
                item.rename(target)


def fetch_voc(downloads: Path) -> Path:
    """VOC 2012 under ``downloads/VOCdevkit/VOC2012``, downloading and unpacking the official
    archive (md5-checked, first reachable mirror) unless it is there; ``ConnectionError`` when no
    mirror can be reached."""
    voc = downloads / "VOCdevkit" / "VOC2012"
    if voc.is_dir():
        return voc
    archive = downloads / "VOCtrainval_11-May-2012.tar"
    errors = []
    for url in VOC_URLS:
        try:
            download(url, archive, md5=VOC_MD5)
            break
        except ConnectionError as error:
            errors.append(str(error))
    else:
        raise ConnectionError("PASCAL VOC could not be downloaded: " + "; ".join(errors))
    untar(archive, downloads)
    return voc


def fetch_train_aug(voc: Path, downloads: Path) -> Path:
    """The train_aug root ``downloads/VOC2012_train_aug``: SBD downloaded (md5-checked) and
    merged with the VOC root ``voc`` by :func:`build_train_aug`, unless it is there."""
    augmented = downloads / "VOC2012_train_aug"
    if not augmented.is_dir():
        archive = downloads / "benchmark.tgz"
        download(SBD_URL, archive, md5=SBD_MD5)
        untar(archive, downloads)
        build_train_aug(voc, downloads / "benchmark_RELEASE" / "dataset", augmented)
    return augmented


def _sbd_dataset_dir(sbd_root: Path) -> Path:
    for candidate in (sbd_root, sbd_root / "dataset", sbd_root / "benchmark_RELEASE" / "dataset"):
        if (candidate / "cls").is_dir() and (candidate / "train.txt").is_file():
            return candidate
    raise FileNotFoundError(
        f"{sbd_root}: no SBD dataset (expected cls/*.mat and train.txt, val.txt in it, in "
        "dataset/ or in benchmark_RELEASE/dataset/)"
    )


def read_sbd_mask(path: str | Path) -> np.ndarray:
    """(H, W) uint8 class indices of one SBD ``cls/<id>.mat`` (``GTcls.Segmentation``)."""
    from scipy.io import loadmat

    mat = loadmat(str(path), squeeze_me=True, struct_as_record=False)
    if "GTcls" not in mat:
        raise ValueError(f"{path}: no GTcls structure (not an SBD class annotation)")
    seg = np.asarray(mat["GTcls"].Segmentation)
    if seg.ndim != 2:
        raise ValueError(f"{path}: GTcls.Segmentation has shape {seg.shape}, expected (H, W)")
    return seg.astype(np.uint8)


def _link_or_copy(src: Path, dst: Path) -> None:
    if dst.exists() or dst.is_symlink():
        return
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        dst.symlink_to(src.resolve(), target_is_directory=src.is_dir())
    except OSError:
        (shutil.copytree if src.is_dir() else shutil.copyfile)(src, dst)


def build_train_aug(
    voc_root: str | Path,
    sbd_root: str | Path,
    out_root: str | Path,
    expected: int | None = None,
) -> list[str]:
    """Build a VOC-layout root holding train_aug; return its sorted ids.

    ids = (VOC train + SBD train + SBD val) - VOC val. ``out_root`` gets ``JPEGImages`` (a link to
    VOC's, which holds every SBD image), ``SegmentationClass`` with VOC's own mask where VOC has
    one (VOC train and val, finer boundaries) and the SBD mask (``GTcls.Segmentation`` of
    ``cls/<id>.mat``, converted to a palette PNG) elsewhere, and ``ImageSets/Segmentation`` with
    VOC's train / val / trainval lists plus ``train_aug.txt``. Existing outputs are reused.

    ``expected``: the number of ids to assert; by default 10,582 when the VOC lists are the real
    VOC 2012 ones (1,464 train, 1,449 val), no check otherwise (fixtures).
    """
    voc_root, out_root = Path(voc_root), Path(out_root)
    sbd = _sbd_dataset_dir(Path(sbd_root))
    voc_lists = id_lists(voc_root)
    voc_train, voc_val = read_ids(voc_lists / "train.txt"), read_ids(voc_lists / "val.txt")
    sbd_ids = read_ids(sbd / "train.txt") + read_ids(sbd / "val.txt")
    ids = sorted((set(voc_train) | set(sbd_ids)) - set(voc_val))
    if expected is None and (len(voc_train), len(voc_val)) == (VOC_TRAIN_SIZE, VOC_VAL_SIZE):
        expected = TRAIN_AUG_SIZE
    if expected is not None and len(ids) != expected:
        raise ValueError(
            f"train_aug from {voc_root} and {sbd}: {len(ids)} ids, expected {expected} (are the "
            "VOC 2012 and SBD lists complete?)"
        )
    _link_or_copy(voc_root / "JPEGImages", out_root / "JPEGImages")
    masks = out_root / "SegmentationClass"
    masks.mkdir(parents=True, exist_ok=True)
    for image_id in sorted(set(ids) | set(voc_val)):
        target = masks / f"{image_id}.png"
        if target.is_file():
            continue
        voc_mask = voc_root / "SegmentationClass" / f"{image_id}.png"
        if voc_mask.is_file():
            shutil.copyfile(voc_mask, target)
            continue
        mat = sbd / "cls" / f"{image_id}.mat"
        if not mat.is_file():
            raise FileNotFoundError(f"{image_id}: neither {voc_mask} nor {mat} exists")
        write_mask(read_sbd_mask(mat), target)
    out_lists = id_lists(out_root)
    for name in ("train.txt", "val.txt", "trainval.txt"):
        if (voc_lists / name).is_file():
            write_ids(read_ids(voc_lists / name), out_lists / name)
    write_ids(ids, out_lists / "train_aug.txt")
    return ids
