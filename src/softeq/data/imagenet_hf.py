"""ImageNet from the gated Hugging Face dataset ``ILSVRC/imagenet-1k``, exported to an ImageFolder.

Needs the optional ``datasets`` library and a token for an account that accepted the dataset's
terms; every failure (library missing, token missing or refused, machine offline) says what to do.
The tree is built in a temporary folder beside its destination and renamed at the end.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from softeq.data.imagefolder import is_image_file, is_imagefolder_tree
from softeq.io import atomic_dir

__all__ = ["HF_DATASET", "HF_SPLIT_FOLDERS", "export_hf_imagenet", "hf_folder_names", "hf_token"]

HF_DATASET = "ILSVRC/imagenet-1k"
HF_SPLIT_FOLDERS = {"train": "train", "validation": "val"}


def _import_datasets() -> Any:
    """The optional ``datasets`` library, or an error saying how to install it and pass a token."""
    try:
        import datasets
    except ImportError as error:
        raise ImportError(
            f"exporting {HF_DATASET} needs the Hugging Face `datasets` library: "
            "`pip install datasets`. The dataset is gated: accept its terms on "
            f"https://huggingface.co/datasets/{HF_DATASET}, then pass your token with "
            "HF_TOKEN=hf_... (or `huggingface-cli login`)."
        ) from error
    return datasets


def hf_token() -> str | None:
    """The token ``huggingface_hub`` would use (HF_TOKEN or the login cache), if it can tell."""
    try:
        from huggingface_hub import get_token
    except ImportError:
        return os.environ.get("HF_TOKEN")
    return get_token()


def _explain_hf_error(error: BaseException, dataset: str) -> Exception:
    """Turn a Hub / network failure into an error that says what to do."""
    names = {cls.__name__ for cls in type(error).__mro__}
    text = str(error)
    page = f"https://huggingface.co/datasets/{dataset}"
    if names & {"GatedRepoError"} or "403 Client Error" in text or "gated" in text.lower():
        return PermissionError(
            f"{dataset}: access refused for this token; accept the dataset's terms on {page} "
            "with the same account, and use a token with read access (HF_TOKEN=hf_...)."
        )
    auth = {"RepositoryNotFoundError", "DatasetNotFoundError", "LocalTokenNotFoundError"}
    if names & auth or "401 Client Error" in text:
        return PermissionError(
            f"{dataset}: the Hub refused the request (no token or an invalid one). Create a read "
            "token at https://huggingface.co/settings/tokens and pass it with HF_TOKEN=hf_... or "
            "`huggingface-cli login`."
        )
    offline = {
        "ConnectionError",
        "OfflineModeIsEnabled",
        "Timeout",
        "ReadTimeout",
        "ConnectTimeout",
        "MaxRetryError",
        "gaierror",
        "TimeoutError",
    }
    if names & offline:
        return ConnectionError(
            f"{dataset}: cannot reach the Hugging Face Hub ({type(error).__name__}: {error}); "
            "this machine looks offline. Export on a machine with internet and copy the "
            "ImageFolder tree here (source 'folder')."
        )
    return RuntimeError(f"{dataset}: loading failed ({type(error).__name__}: {error})")


def hf_folder_names(names: Sequence[str]) -> list[str]:
    """One folder name per label id, sorting in label-id order.

    ``ILSVRC/imagenet-1k`` labels are the 1000 classes in sorted-WNID order with human-readable
    names, so for 1000 classes the folders are the WNIDs (from timm's ImageNet table), which makes
    ImageFolder's alphabetical indices equal the dataset's (and pretrained heads') indices.
    Otherwise zero-padded ids keep that order.
    """
    if len(names) == 1000:
        try:
            from timm.data import ImageNetInfo

            info = ImageNetInfo()
            return [info.index_to_label_name(i) for i in range(1000)]
        except ImportError:
            pass
    width = len(str(len(names) - 1))
    return [f"{i:0{width}d}" for i in range(len(names))]


def export_hf_imagenet(
    dest: str | Path,
    token: str | None = None,
    splits: Sequence[str] = ("train", "validation"),
    dataset: str = HF_DATASET,
    streaming: bool = False,
    progress: bool = True,
) -> Path:
    """Export the gated Hugging Face ``dataset`` to an ImageFolder tree ``dest/{train,val}/``.

    Needs ``pip install datasets`` (imported lazily) and a token (``token``, else ``HF_TOKEN`` or
    the ``huggingface-cli login`` cache) for an account that accepted the dataset's terms.  The
    original image bytes are written unchanged (no re-encoding); folders are the WNIDs (see
    :func:`hf_folder_names`) and a ``classes.tsv`` beside the splits lists id, folder and name.
    ``streaming=True`` avoids a second full copy in the Hugging Face cache.  Errors for a missing
    library, a missing or refused token and an offline machine say what to do.  Built in a
    temporary folder and renamed at the end; an existing finished tree is returned as is.
    """
    from tqdm.auto import tqdm

    dest = Path(dest).expanduser()
    unknown = [s for s in splits if s not in HF_SPLIT_FOLDERS]
    if unknown:
        raise ValueError(
            f"splits {unknown}: expected some of {sorted(HF_SPLIT_FOLDERS)} (the test split has "
            "no labels)"
        )
    if is_imagefolder_tree(dest):
        return dest
    datasets = _import_datasets()
    token = token or hf_token()
    if not token:
        raise PermissionError(
            f"{dataset} is gated and no Hugging Face token was found: accept its terms on "
            f"https://huggingface.co/datasets/{dataset}, create a read token at "
            "https://huggingface.co/settings/tokens and pass it with HF_TOKEN=hf_... (or "
            "`huggingface-cli login`)."
        )

    with atomic_dir(dest) as tmp:
        folders: list[str] | None = None
        for split in splits:
            try:
                ds = datasets.load_dataset(dataset, split=split, token=token, streaming=streaming)
            except Exception as error:
                raise _explain_hf_error(error, dataset) from error
            features = getattr(ds, "features", None)
            if not features or "label" not in features or "image" not in features:
                raise ValueError(f"{dataset}: split {split!r} has no 'image' / 'label' features")
            names = list(features["label"].names)
            if folders is None:
                folders = hf_folder_names(names)
                lines = [
                    f"{i}\t{f}\t{n}\n" for i, (f, n) in enumerate(zip(folders, names, strict=True))
                ]
                (tmp / "classes.tsv").write_text("".join(lines))
            ds = ds.cast_column("image", datasets.Image(decode=False))  # raw bytes, no re-encode
            out = tmp / HF_SPLIT_FOLDERS[split]
            for folder in folders:
                (out / folder).mkdir(parents=True, exist_ok=True)
            total = None if streaming else len(ds)
            try:
                bar = tqdm(ds, total=total, desc=split, disable=not progress)
                for index, example in enumerate(bar):
                    label, image = int(example["label"]), example["image"]
                    if not 0 <= label < len(folders):
                        raise ValueError(f"{dataset} {split}[{index}]: label {label} out of range")
                    name = Path(image.get("path") or "").name
                    if not is_image_file(name):
                        name = f"{split}_{index:08d}.JPEG"
                    (out / folders[label] / name).write_bytes(image["bytes"])
            except ValueError:
                raise
            except Exception as error:
                raise _explain_hf_error(error, dataset) from error
    return dest
