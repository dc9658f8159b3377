"""ImageNet (ILSVRC2012) from any of the ways a user can hold it, always ending as an ImageFolder.

ImageNet has no public URL, so every source ends in the same place: an ImageFolder tree
``tree/{train,val}/<wnid>/*.JPEG`` plus the JSON manifest of :func:`~softeq.data.imagefolder.
build_manifest` that the training and evaluation stages read.  The sources
(:func:`prepare_imagenet`):

``"folder"``
    a tree the user already has in that layout: only the manifest is written;
``"archives"``
    the official ``ILSVRC2012_img_train.tar``, ``ILSVRC2012_img_val.tar`` and
    ``ILSVRC2012_devkit_t12.tar.gz`` in one folder: md5-checked, then unpacked here (no reliance
    on torchvision's private helpers) into torchvision's ImageNet layout;
``"huggingface"``
    the gated Hugging Face dataset ``ILSVRC/imagenet-1k``, exported with the optional
    ``datasets`` library and a token (:mod:`softeq.data.imagenet_hf`);
``"imagenette"``
    Imagenette (10 ImageNet classes, 160 px, public): a small real stand-in, downloaded only
    against a checksum the user pins.

Every tree is built in a temporary folder beside its destination and renamed into place at the
end, so an interrupted run leaves either nothing or a complete tree, never a partial one.
"""

from __future__ import annotations

import io
import os
import shutil
import tarfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from softeq.data.download import download, extract_tar
from softeq.data.imagefolder import build_manifest, is_image_file, is_imagefolder_tree
from softeq.data.imagenet_hf import HF_DATASET, export_hf_imagenet
from softeq.io import atomic_dir, file_md5

__all__ = [
    "ARCHIVE_MD5",
    "DEVKIT_ARCHIVE",
    "IMAGENETTE_URL",
    "SOURCES",
    "TRAIN_ARCHIVE",
    "VAL_ARCHIVE",
    "prepare_imagenet",
    "prepare_imagenette",
    "read_devkit",
    "unpack_archives",
    "verify_archives",
]

TRAIN_ARCHIVE = "ILSVRC2012_img_train.tar"
VAL_ARCHIVE = "ILSVRC2012_img_val.tar"
DEVKIT_ARCHIVE = "ILSVRC2012_devkit_t12.tar.gz"
ARCHIVE_MD5: dict[str, str] = {
    TRAIN_ARCHIVE: "1d675b47d978889d74fa0da5fadfb00e",
    VAL_ARCHIVE: "29b22e2961454d5413ddabcf34fc5622",
    DEVKIT_ARCHIVE: "fa75699e90414af021442c21a62c3abf",
}
IMAGENETTE_URL = "https://s3.amazonaws.com/fast-ai-imageclas/imagenette2-160.tgz"
SOURCES = ("folder", "archives", "huggingface", "imagenette")

IMAGENET_HELP = f"""ImageNet cannot be downloaded without credentials. Provide it in one of these
ways:
  folder:      an ImageFolder tree <root>/train/<wnid>/*.JPEG and <root>/val/<wnid>/*.JPEG;
  archives:    {TRAIN_ARCHIVE}, {VAL_ARCHIVE} and {DEVKIT_ARCHIVE} in <root>
               (from https://image-net.org after registering), unpacked and md5-checked here;
  huggingface: the gated dataset {HF_DATASET}: accept its terms on the Hub, `pip install
               datasets`, and pass your token (HF_TOKEN=hf_... or `huggingface-cli login`);
  imagenette:  10 ImageNet classes, public, as a small real stand-in (needs a pinned sha256)."""


def _write_member(tar: tarfile.TarFile, member: tarfile.TarInfo, target: Path) -> None:
    """Copy one regular-file member of ``tar`` to ``target`` (the member's own path is ignored,
    so a hostile archive cannot write outside the tree)."""
    source = tar.extractfile(member)
    if source is None:
        raise ValueError(f"{tar.name}: member {member.name!r} is not a regular file")
    with source, open(target, "wb") as out:
        shutil.copyfileobj(source, out, 1 << 20)


# -------------------------------------------------------------------------- official archives


def verify_archives(
    archive_dir: str | Path, md5s: Mapping[str, str | None] | None = None
) -> dict[str, Path]:
    """Check that the three official archives are in ``archive_dir`` with the expected md5s.

    ``md5s`` maps archive file name to md5 (default :data:`ARCHIVE_MD5`; ``None`` for a name skips
    its check, for tests and for users who verified elsewhere).  All three are checked before
    anything is unpacked, so a bad archive costs no disk.  Errors name the archive.
    """
    archive_dir = Path(archive_dir).expanduser()
    md5s = dict(ARCHIVE_MD5 if md5s is None else md5s)
    paths = {}
    for name in (TRAIN_ARCHIVE, VAL_ARCHIVE, DEVKIT_ARCHIVE):
        path = archive_dir / name
        if not path.is_file():
            raise FileNotFoundError(f"{path}: archive not found.\n{IMAGENET_HELP}")
        expected = md5s.get(name, ARCHIVE_MD5[name])
        if expected is not None:
            actual = file_md5(path)
            if actual != expected.lower():
                raise ValueError(
                    f"{path}: md5 mismatch: expected {expected}, got {actual}; the archive is "
                    "incomplete, corrupt or not the ILSVRC2012 release. Download it again from "
                    "https://image-net.org. Nothing was unpacked."
                )
        paths[name] = path
    return paths


def read_devkit(devkit: str | Path) -> tuple[dict[int, str], dict[str, str], list[int]]:
    """Class metadata and validation labels from ``ILSVRC2012_devkit_t12.tar.gz``.

    Returns ``(wnid_by_id, words_by_wnid, val_ids)``: the ILSVRC2012_ID -> WNID map of the 1000
    leaf synsets (``num_children == 0`` in ``data/meta.mat``), their human-readable names, and the
    1-based ILSVRC2012_ID of every validation image in sorted file-name order
    (``data/ILSVRC2012_validation_ground_truth.txt``).
    """
    import numpy as np
    from scipy.io import loadmat

    devkit = Path(devkit)
    wanted = {"meta": "data/meta.mat", "truth": "data/ILSVRC2012_validation_ground_truth.txt"}
    found: dict[str, bytes] = {}
    try:
        with tarfile.open(devkit, "r:*") as tar:
            for member in tar:
                for key, suffix in wanted.items():
                    if member.isfile() and member.name.endswith(suffix):
                        found[key] = tar.extractfile(member).read()
    except (tarfile.TarError, OSError) as error:
        raise ValueError(f"{devkit}: cannot read the devkit archive ({error})") from error
    missing = [wanted[k] for k in wanted if k not in found]
    if missing:
        raise ValueError(f"{devkit}: devkit archive lacks {', '.join(missing)}")

    try:
        synsets = np.atleast_1d(loadmat(io.BytesIO(found["meta"]), squeeze_me=True)["synsets"])
        ids, wnids, children = (
            synsets[field] for field in ("ILSVRC2012_ID", "WNID", "num_children")
        )
        words = synsets["words"] if "words" in synsets.dtype.names else wnids
    except (ValueError, TypeError, KeyError) as error:
        raise ValueError(
            f"{devkit}: data/meta.mat has no usable 'synsets' struct ({error})"
        ) from error
    wnid_by_id, words_by_wnid = {}, {}
    for i, wnid, n, word in zip(ids, wnids, children, words, strict=True):
        if int(n) == 0:
            wnid_by_id[int(i)] = str(wnid)
            words_by_wnid[str(wnid)] = str(word)
    val_ids = [int(line) for line in found["truth"].decode().split()]
    unknown = sorted(set(val_ids) - set(wnid_by_id))
    if unknown:
        raise ValueError(
            f"{devkit}: validation ground truth uses ILSVRC2012_IDs {unknown[:5]} that are not "
            "leaf synsets in data/meta.mat"
        )
    return wnid_by_id, words_by_wnid, val_ids


def _unpack_train(archive: Path, out: Path, wnids: set[str], progress: bool) -> None:
    """Unpack the train tar (one inner ``<wnid>.tar`` per class) into ``out/<wnid>/``."""
    from tqdm.auto import tqdm

    with tarfile.open(archive, "r:") as outer:
        members = [m for m in outer.getmembers() if m.isfile()]
        for member in tqdm(members, desc="train classes", disable=not progress):
            wnid = Path(member.name).name.split(".")[0]
            if wnid not in wnids:
                raise ValueError(
                    f"{archive}: member {member.name!r} is not a class of the devkit's 1000 "
                    "leaf synsets"
                )
            folder = out / wnid
            folder.mkdir(exist_ok=True)
            inner_file = outer.extractfile(member)
            with tarfile.open(fileobj=inner_file, mode="r|*") as inner:
                for image in inner:
                    if image.isfile() and is_image_file(image.name):
                        _write_member(inner, image, folder / Path(image.name).name)


def _unpack_val(
    archive: Path,
    out: Path,
    wnid_by_id: Mapping[int, str],
    val_ids: Sequence[int],
    progress: bool,
) -> None:
    """Unpack the flat val tar into ``out/<wnid>/``, labelling the i-th file (sorted by name) with
    the i-th ground-truth id."""
    from tqdm.auto import tqdm

    with tarfile.open(archive, "r:") as tar:
        members = sorted(
            (m for m in tar.getmembers() if m.isfile() and is_image_file(m.name)),
            key=lambda m: Path(m.name).name,
        )
        if len(members) != len(val_ids):
            raise ValueError(
                f"{archive}: {len(members)} images but the devkit's ground truth has "
                f"{len(val_ids)} labels"
            )
        for member, ilsvrc_id in tqdm(
            list(zip(members, val_ids, strict=True)), desc="val images", disable=not progress
        ):
            folder = out / wnid_by_id[ilsvrc_id]
            folder.mkdir(exist_ok=True)
            _write_member(tar, member, folder / Path(member.name).name)


def unpack_archives(
    archive_dir: str | Path,
    tree: str | Path | None = None,
    md5s: Mapping[str, str | None] | None = None,
    progress: bool = True,
) -> Path:
    """Verify and unpack the official archives into ``tree/{train,val}/<wnid>/`` (torchvision's
    ImageNet layout); returns ``tree`` (default ``archive_dir/imagenet``).

    The md5s are checked first (``md5s``: see :func:`verify_archives`); the tree is built in a
    temporary folder beside ``tree`` and renamed at the end, so a bad archive or an interrupted
    run leaves nothing behind.  An existing finished tree is returned as is (delete it to unpack
    again).  The train tar's inner per-class tars are read as streams; val labels come from the
    devkit (:func:`read_devkit`).  ``tree/classes.tsv`` lists index, WNID and name per class.
    """
    archive_dir = Path(archive_dir).expanduser()
    tree = Path(tree).expanduser() if tree is not None else archive_dir / "imagenet"
    if is_imagefolder_tree(tree):
        return tree
    if tree.exists():
        raise FileExistsError(f"{tree}: exists but is not an ImageFolder tree; move it away")
    paths = verify_archives(archive_dir, md5s)
    wnid_by_id, words_by_wnid, val_ids = read_devkit(paths[DEVKIT_ARCHIVE])
    with atomic_dir(tree) as tmp:
        lines = [f"{i}\t{w}\t{words_by_wnid[w]}\n" for i, w in enumerate(sorted(words_by_wnid))]
        (tmp / "classes.tsv").write_text("".join(lines))
        (tmp / "train").mkdir()
        (tmp / "val").mkdir()
        try:
            _unpack_train(paths[TRAIN_ARCHIVE], tmp / "train", set(wnid_by_id.values()), progress)
            _unpack_val(paths[VAL_ARCHIVE], tmp / "val", wnid_by_id, val_ids, progress)
        except tarfile.TarError as error:
            raise ValueError(f"{archive_dir}: cannot unpack the archives ({error})") from error
    return tree


# --------------------------------------------------------------------------------- Imagenette


def prepare_imagenette(
    root: str | Path,
    sha256: str | None = None,
    md5: str | None = None,
    allow_unverified: bool = False,
    url: str = IMAGENETTE_URL,
    progress: bool = True,
    tree: str | Path | None = None,
) -> Path:
    """Download and unpack Imagenette to ``tree/{train,val}/<wnid>/``; returns ``tree``.

    ``tree`` defaults to ``root/<archive stem>`` (``root/imagenette2-160``).

    No checksum is pinned in this code, so one is required (``sha256`` or ``md5``, from the
    config) unless ``allow_unverified=True``.  The archive goes to ``root/<archive name>``
    (a copy already there with the right checksum is used offline); extraction uses tarfile's
    ``data`` filter into a temporary folder beside the tree, renamed at the end.
    """
    root = Path(root).expanduser()
    archive = root / url.rstrip("/").rsplit("/", 1)[-1]
    stem = archive.name.removesuffix(".tgz").removesuffix(".tar.gz")
    tree = Path(tree).expanduser() if tree is not None else root / stem
    if is_imagefolder_tree(tree):
        return tree
    if tree.exists():
        raise FileExistsError(f"{tree}: exists but is not an ImageFolder tree; move it away")
    if sha256 is None and md5 is None and not allow_unverified:
        raise ValueError(
            f"{archive.name}: no checksum pinned, refusing to download {url} unverified. On a "
            f"machine with internet run once `curl -LO {url} && sha256sum {archive.name}` and "
            "pin the digest in the config (e.g. datasets.imagenet.imagenette_sha256), or pass "
            "allow_unverified=True to accept the file unchecked."
        )
    if allow_unverified and sha256 is None and md5 is None and archive.is_file():
        pass  # use the copy in place; nothing to check it against
    else:
        download(url, archive, md5=md5, sha256=sha256, progress=progress)
    with atomic_dir(tree) as tmp:
        extract_tar(archive, tmp)
        inner = tmp / stem if is_imagefolder_tree(tmp / stem) else tmp
        if not is_imagefolder_tree(inner):
            raise ValueError(f"{archive}: expected {stem}/{{train,val}}/<class>/ inside")
        if inner != tmp:  # move the archive's top folder's contents up into the staging root
            for child in list(inner.iterdir()):
                os.replace(child, tmp / child.name)
            inner.rmdir()
    return tree


# ------------------------------------------------------------------------------------ dispatch


def prepare_imagenet(
    source: str, root: str | Path, dest_manifest: str | Path, **kwargs: Any
) -> Path:
    """Bring ImageNet (or Imagenette) from ``source`` to an ImageFolder tree and write its
    manifest to ``dest_manifest``; returns the manifest path.

    ``source``: ``"folder"`` (``root`` is the tree), ``"archives"`` (``root`` holds the official
    archives; kwargs of :func:`unpack_archives`), ``"huggingface"`` (kwargs of
    :func:`export_hf_imagenet`) or ``"imagenette"`` (kwargs of :func:`prepare_imagenette`).  For
    the last three the tree goes to ``tree=`` if given, else under ``root``.
    """
    root = Path(root).expanduser()
    builders: dict[str, Callable[..., Path]] = {
        "archives": lambda: unpack_archives(root, **kwargs),
        "huggingface": lambda: export_hf_imagenet(
            kwargs.pop("tree", root / "imagenet-1k"), **kwargs
        ),
        "imagenette": lambda: prepare_imagenette(root, **kwargs),
    }
    if source == "folder":
        if kwargs:
            raise TypeError(f"source 'folder' takes no options, got {sorted(kwargs)}")
        tree = root
    elif source in builders:
        tree = builders[source]()
    else:
        raise ValueError(
            f"unknown ImageNet source {source!r}; expected one of {SOURCES}.\n{IMAGENET_HELP}"
        )
    return build_manifest(tree, dest_manifest)
