"""CIFAR-10 and CIFAR-100 from torchvision's python archives, checksummed and read safely.

The archives (``cifar-10-python.tar.gz``, ``cifar-100-python.tar.gz`` from
https://www.cs.toronto.edu/~kriz/) and every file inside them are md5-pinned here
(:data:`CIFAR_RELEASES`, the published values torchvision also pins), so a download or a local
copy counts as CIFAR only once each batch matches (docs/conventions.md §3, downloads).

The batches are Python pickles.  They are read with :class:`BatchUnpickler`, which resolves no
global but numpy's array reconstruction (``ndarray``, ``dtype``, ``_reconstruct``): a pickle can
run any callable it names, and torchvision's loader calls plain ``pickle.load``.  The md5 check
already comes first; the restricted unpickler keeps a copy with other pinned checksums (or a
patched one) from executing code.

:func:`prepare_cifar` turns the batches into one safetensors file of uint8 arrays with a
held-out validation split drawn from the training batches (stratified, its own seed: the test
batch is only ever the test split) and writes the manifest; :func:`load_cifar` gives one split
with the reference's transforms (optional random rotation of the 32 px image, resize to the
input size, normalise; docs/fidelity.md).
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from torch.utils.data import Dataset

from softeq.data.download import download, extract_tar, verify_file
from softeq.io import atomic_dir, atomic_write, file_sha256, read_manifest, write_json
from softeq.transforms import IMAGENET_MEAN, IMAGENET_STD

__all__ = [
    "CIFAR_RELEASES",
    "CIFAR_URL",
    "SPLITS",
    "BatchUnpickler",
    "CifarRelease",
    "CifarSplit",
    "fetch_cifar",
    "holdout_split",
    "load_cifar",
    "locate_tree",
    "prepare_cifar",
    "read_batch",
    "verify_tree",
]

CIFAR_URL = "https://www.cs.toronto.edu/~kriz/"
SPLITS = ("train", "val", "test")
IMAGE_SHAPE = (3, 32, 32)


@dataclass(frozen=True)
class CifarRelease:
    """One of torchvision's CIFAR python releases: archive, folder, batches and their md5s."""

    archive: str
    md5: str  # of the archive
    folder: str  # the folder the archive unpacks to
    train: dict[str, str]  # batch file -> md5
    test: dict[str, str]
    meta: tuple[str, str]  # (file, md5)
    label_key: str  # the batches' label list
    names_key: str  # the meta file's class-name list

    @property
    def url(self) -> str:
        return CIFAR_URL + self.archive

    @property
    def files(self) -> dict[str, str]:
        """Every file of the unpacked folder with its md5."""
        return {**self.train, **self.test, self.meta[0]: self.meta[1]}


# torchvision/datasets/cifar.py (torchvision 0.29.1): CIFAR10.tgz_md5 / train_list / test_list /
# meta (lines 31-50), CIFAR100 (lines 152-167); the published checksums of the archives.
CIFAR_RELEASES: dict[str, CifarRelease] = {
    "cifar10": CifarRelease(
        archive="cifar-10-python.tar.gz",
        md5="c58f30108f718f92721af3b95e74349a",
        folder="cifar-10-batches-py",
        train={
            "data_batch_1": "c99cafc152244af753f735de768cd75f",
            "data_batch_2": "d4bba439e000b95fd0a9bffe97cbabec",
            "data_batch_3": "54ebc095f3ab1f0389bbae665268c751",
            "data_batch_4": "634d18415352ddfa80567beed471001a",
            "data_batch_5": "482c414d41f54cd18b22e5b47cb7c3cb",
        },
        test={"test_batch": "40351d587109b95175f43aff81a1287e"},
        meta=("batches.meta", "5ff9c542aee3614f3951f8cda6e48888"),
        label_key="labels",
        names_key="label_names",
    ),
    "cifar100": CifarRelease(
        archive="cifar-100-python.tar.gz",
        md5="eb9058c3a382ffc7106e4002c42a8d85",
        folder="cifar-100-python",
        train={"train": "16019d7e3df5f24257cddd939b257f8d"},
        test={"test": "f0ef6b0ae62326f3e7ffdfab6717acfc"},
        meta=("meta", "7973b15100ade9c7d40fb424638fde48"),
        label_key="fine_labels",
        names_key="fine_label_names",
    ),
}


def _release(name: str) -> CifarRelease:
    if name not in CIFAR_RELEASES:
        raise ValueError(
            f"unknown CIFAR dataset {name!r}; expected one of {sorted(CIFAR_RELEASES)}"
        )
    return CIFAR_RELEASES[name]


# ----------------------------------------------------------------------------- reading batches


def _numpy_globals() -> dict[tuple[str, str], Any]:
    """The only globals a CIFAR batch names: numpy's array reconstruction (under the module
    names of numpy 1 and 2)."""
    try:
        from numpy._core.multiarray import _reconstruct
    except ImportError:  # numpy 1
        from numpy.core.multiarray import _reconstruct
    allowed: dict[tuple[str, str], Any] = {("numpy", "ndarray"): np.ndarray}
    allowed[("numpy", "dtype")] = np.dtype
    for module in ("numpy.core.multiarray", "numpy._core.multiarray"):
        allowed[(module, "_reconstruct")] = _reconstruct
    return allowed


class BatchUnpickler(pickle.Unpickler):
    """An unpickler that builds only builtin containers and numpy arrays: any other global (a
    function or class the pickle names) raises ``pickle.UnpicklingError``."""

    ALLOWED = _numpy_globals()

    def find_class(self, module: str, name: str) -> Any:
        try:
            return self.ALLOWED[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(
                f"global {module}.{name} is not allowed in a CIFAR batch"
            ) from None


def _unpickle(path: Path) -> dict:
    """One batch or meta file as a dict (latin-1 for the Python 2 strings, as torchvision)."""
    try:
        with open(path, "rb") as f:
            entry = BatchUnpickler(f, encoding="latin1").load()
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: file not found") from None
    except Exception as error:  # a corrupt or hostile file: name it
        raise ValueError(f"{path}: not a CIFAR python batch ({error})") from error
    if not isinstance(entry, dict):
        raise ValueError(f"{path}: not a CIFAR python batch (a {type(entry).__name__})")
    return entry


def read_batch(path: str | Path, label_key: str) -> tuple[np.ndarray, np.ndarray]:
    """Images (N, 32, 32, 3) uint8 and labels (N,) int64 of one batch file; errors name it."""
    path = Path(path)
    entry = _unpickle(path)
    if "data" not in entry or label_key not in entry:
        raise ValueError(
            f"{path}: a CIFAR batch needs 'data' and {label_key!r}, has {sorted(entry)}"
        )
    data, labels = entry["data"], np.asarray(entry[label_key], dtype=np.int64)
    size = int(np.prod(IMAGE_SHAPE))
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.shape[1:] != (size,):
        shape = getattr(data, "shape", None)
        raise ValueError(f"{path}: 'data' is {shape}, expected uint8 (N, {size})")
    if labels.shape != (len(data),):
        raise ValueError(f"{path}: {len(labels)} labels for {len(data)} images")
    images = data.reshape(-1, *IMAGE_SHAPE).transpose(0, 2, 3, 1)  # HWC, as torchvision
    return np.ascontiguousarray(images), labels


def _read_classes(tree: Path, release: CifarRelease) -> list[str]:
    path = tree / release.meta[0]
    names = _unpickle(path).get(release.names_key)
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise ValueError(f"{path}: no list of class names under {release.names_key!r}")
    return names


# ------------------------------------------------------------------------- trees and archives


def locate_tree(root: str | Path, name: str) -> Path:
    """The unpacked folder of ``name`` at ``root``: ``root`` itself or ``root/<folder>``."""
    root, release = Path(root).expanduser().resolve(), _release(name)
    for candidate in (root, root / release.folder):
        if (candidate / release.meta[0]).is_file():
            return candidate
    raise FileNotFoundError(
        f"{root}: no {release.folder}/ folder (expected {release.meta[0]} and the batches "
        f"{', '.join(release.files)} in {root} or in {root / release.folder})"
    )


def verify_tree(tree: str | Path, name: str) -> dict[str, str]:
    """Check every file of the release in ``tree`` against its pinned md5; returns them.  A
    missing file raises ``FileNotFoundError`` and a mismatch ``ValueError``, naming the file."""
    tree = Path(tree)
    files = _release(name).files
    for file, md5 in files.items():
        verify_file(tree / file, md5=md5)
    return dict(files)


def fetch_cifar(name: str, downloads: str | Path, url: str | None = None) -> Path:
    """The unpacked release under ``downloads``: the archive is downloaded (md5-checked; a copy
    already there with the right md5 is used offline) and unpacked through a staging folder,
    unless the folder is there.  ``ConnectionError`` when the host cannot be reached."""
    release, downloads = _release(name), Path(downloads)
    tree = downloads / release.folder
    if tree.is_dir():
        return tree
    archive = download(url or release.url, downloads / release.archive, md5=release.md5)
    with atomic_dir(tree) as staging:
        extract_tar(archive, staging)
        inner = staging / release.folder
        if not inner.is_dir():
            raise ValueError(f"{archive}: holds no {release.folder}/ folder")
        for item in list(inner.iterdir()):
            item.rename(staging / item.name)
        inner.rmdir()
    return tree


# ---------------------------------------------------------------------- splits and the manifest


def holdout_split(labels: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train, val) sorted indices: per class, ``round(fraction * count)`` images drawn with
    ``numpy.random.default_rng(seed)`` are held out, independent of any training seed."""
    if not 0 < fraction < 1:
        raise ValueError(f"val_fraction must be in (0, 1), got {fraction}")
    rng = np.random.default_rng(seed)
    train, val = [], []
    for label in np.unique(labels):
        index = rng.permutation(np.flatnonzero(labels == label))
        n_val = round(fraction * len(index))
        val.append(index[:n_val])
        train.append(index[n_val:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(val))


def _arrays(tree: Path, release: CifarRelease, fraction: float, seed: int) -> dict:
    """The six arrays (``{split}_x`` uint8 N x 32 x 32 x 3, ``{split}_y`` int64)."""

    def read(files: dict[str, str]) -> tuple[np.ndarray, np.ndarray]:
        parts = [read_batch(tree / file, release.label_key) for file in files]
        return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])

    train_x, train_y = read(release.train)
    test_x, test_y = read(release.test)
    keep, held = holdout_split(train_y, fraction, seed)
    arrays = {"train_x": train_x[keep], "train_y": train_y[keep]}
    arrays.update(val_x=train_x[held], val_y=train_y[held], test_x=test_x, test_y=test_y)
    return {key: np.ascontiguousarray(value) for key, value in arrays.items()}


def prepare_cifar(
    name: str,
    root: str | Path | None,
    downloads: str | Path,
    out: str | Path,
    val_fraction: float = 0.2,
    split_seed: int = 0,
    train_rotation: float = 0.0,
) -> Path:
    """Verify a local copy (``root``) or download the release, store its splits as
    ``<out stem>.safetensors`` and write the manifest ``out``; returns ``out``.

    ``val_fraction`` of each class of the training batches is held out (``split_seed``) for
    epoch selection; the test batch is the test split.  ``train_rotation``: the training
    images' random rotation in degrees (the reference's ``augmentation_angle``), recorded in
    the manifest for :func:`load_cifar`.
    """
    from safetensors.numpy import save_file

    release, out = _release(name), Path(out)
    if root:
        tree, source = locate_tree(root, name), {"root": str(Path(root).expanduser().resolve())}
    else:
        tree = fetch_cifar(name, downloads)
        source = {"url": release.url, "archive_md5": release.md5}
    files = verify_tree(tree, name)
    classes = _read_classes(tree, release)
    arrays = _arrays(tree, release, val_fraction, split_seed)
    labels = np.concatenate([arrays["train_y"], arrays["val_y"], arrays["test_y"]])
    if labels.min() < 0 or labels.max() >= len(classes):
        raise ValueError(
            f"{tree}: labels {labels.min()}..{labels.max()} for {len(classes)} classes"
        )
    data = out.with_suffix(".safetensors")
    atomic_write(data, lambda tmp: save_file(arrays, tmp))  # no metadata: a byte-stable file
    manifest = {
        "kind": "cifar",
        "dataset": name,
        "data": str(data.resolve()),
        "sha256": file_sha256(data),
        "classes": classes,
        "counts": {split: len(arrays[f"{split}_y"]) for split in SPLITS},
        "val_fraction": val_fraction,
        "split_seed": split_seed,
        "train_rotation": train_rotation,
        "source": source,
        "md5": files,
    }
    return write_json(manifest, out)


# ---------------------------------------------------------------------------------- loading


class CifarSplit(Dataset):
    """One split as (image tensor, label): each uint8 image becomes a PIL image, then goes
    through ``transform``."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, transform: Any) -> None:
        self.images, self.labels, self.transform = images, labels, transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int):
        from PIL import Image

        image = Image.fromarray(self.images[index])
        return self.transform(image), int(self.labels[index])


def _transform(input_size: int, train: bool, rotation: float, mean, std, interpolation: str) -> Any:
    """The reference's CIFAR transforms: [random rotation (training)], resize to a square,
    to tensor, normalise."""
    from torchvision import transforms as T

    modes = {name: getattr(T.InterpolationMode, name.upper()) for name in ("bilinear", "bicubic")}
    modes["nearest"] = T.InterpolationMode.NEAREST
    if interpolation not in modes:
        raise ValueError(f"CIFAR: interpolation {interpolation!r}; expected one of {sorted(modes)}")
    steps = [T.RandomRotation(rotation)] if train and rotation > 0 else []
    steps += [T.Resize((input_size, input_size), interpolation=modes[interpolation])]
    steps += [T.ToTensor(), T.Normalize(list(mean), list(std))]
    return T.Compose(steps)


def load_cifar(
    manifest_path: str | Path,
    split: str,
    input_size: int,
    train: bool,
    auto_augment: str | None = None,
    mean: tuple[float, ...] = IMAGENET_MEAN,
    std: tuple[float, ...] = IMAGENET_STD,
    interpolation: str = "bilinear",
) -> CifarSplit:
    """The ``split`` (train / val / test) of a manifest written by :func:`prepare_cifar`.

    The arrays file is checked against the manifest's sha256 first.  Training images get the
    manifest's ``train_rotation``; every image is resized to ``input_size`` with
    ``interpolation`` and normalised with ``mean`` / ``std`` (the backbone's; ImageNet's by
    default, as the reference).
    """
    from safetensors import safe_open

    manifest = read_manifest(manifest_path, "cifar")
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
    if auto_augment:
        raise ValueError(
            f"{manifest_path}: auto_augment {auto_augment!r} is not applied to CIFAR; its "
            "training augmentation is the rotation datasets.<name>.train_rotation"
        )
    data = verify_file(manifest["data"], sha256=manifest["sha256"])
    with safe_open(str(data), framework="np") as handle:
        images, labels = handle.get_tensor(f"{split}_x"), handle.get_tensor(f"{split}_y")
    rotation = float(manifest.get("train_rotation", 0.0))
    transform = _transform(input_size, train, rotation, mean, std, interpolation)
    return CifarSplit(images, labels, transform)
