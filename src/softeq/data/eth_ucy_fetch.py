"""Fetching ETH/UCY: the Social-GAN archive (or its pinned public copy), verified file by file.

The data is never committed; its per-file sha256 list is (``checksums/eth_ucy.sha256``), and a
tree counts as ETH/UCY only once every listed file matches (docs/conventions.md §3, downloads).
The tree is unpacked into a staging folder and renamed into place after verification; an archive
member outside the list (an extra ``.txt`` under ``datasets/``) fails the verification by name.
"""

from __future__ import annotations

import tarfile
import zipfile
from pathlib import Path

from softeq.data.catalog import ETHUCY_SCENES
from softeq.data.download import download
from softeq.data.listing import ethucy_sums, verify_tree
from softeq.io import atomic_dir

__all__ = ["ETHUCY_URLS", "extract_ethucy", "fetch_ethucy"]

ETHUCY_URLS = (  # the Social-GAN zip, then the pinned public copy (PROVENANCE of the data)
    "https://www.dropbox.com/s/8n02xqv3l9q18r1/datasets.zip?dl=1",
    "https://github.com/abduallahmohamed/Social-STGCNN/archive/"
    "333d3a57b4d2705e129b21aefefa09c79b2b9ae1.tar.gz",
)


def _member(name: str) -> Path | None:
    """``<scene>/<split>/<file>.txt`` for an archive member under ``datasets/``, else None."""
    parts = Path(name).parts
    if "datasets" not in parts:
        return None
    rel = parts[parts.index("datasets") + 1 :]
    if len(rel) == 3 and rel[0] in ETHUCY_SCENES and rel[2].endswith(".txt"):
        return Path(*rel)
    return None


def extract_ethucy(archive: Path, dest: Path) -> int:
    """Copy ``*/datasets/<scene>/<split>/*.txt`` out of the zip or tar archive into ``dest``;
    returns the number of files (none raises ``ValueError`` naming the archive)."""
    count = 0

    def write(rel: Path, data: bytes) -> None:
        nonlocal count
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        (dest / rel).write_bytes(data)
        count += 1

    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as z:
            for name in z.namelist():
                if (rel := _member(name)) is not None:
                    write(rel, z.read(name))
    else:
        with tarfile.open(archive) as tar:
            for member in tar.getmembers():
                if member.isfile() and (rel := _member(member.name)) is not None:
                    write(rel, tar.extractfile(member).read())
    if count == 0:
        raise ValueError(f"{archive}: holds no datasets/<scene>/<split>/*.txt files")
    return count


def fetch_ethucy(downloads: Path) -> Path:
    """ETH/UCY under ``downloads/eth_ucy``: the first archive of :data:`ETHUCY_URLS` that can be
    fetched, unpacked and verified against :func:`ethucy_sums`.  An existing tree is returned as
    is (the caller verifies it); ``ConnectionError`` lists every URL's failure."""
    tree = downloads / "eth_ucy"
    if tree.is_dir():
        return tree
    errors = []
    for url in ETHUCY_URLS:
        archive = downloads / ("eth_ucy.zip" if url.endswith("dl=1") else "eth_ucy.tar.gz")
        try:
            download(url, archive)
        except (ConnectionError, ValueError) as error:
            errors.append(f"{url}: {error}")
            continue
        with atomic_dir(tree) as staging:
            extract_ethucy(archive, staging)
            verify_tree(staging, ethucy_sums())
        return tree
    raise ConnectionError("ETH/UCY could not be downloaded:\n  " + "\n  ".join(errors))
