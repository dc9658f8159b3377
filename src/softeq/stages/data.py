"""``softeq prepare-data``: build an embedded dataset, or fetch, verify and describe a real one.

Every dataset ends as a file the training stages read: the embedded digits as safetensors, the
others as a JSON manifest that points at the data and records the protocol.  Downloads are
checksummed (md5 for VOC / SBD, the committed per-file sha256 list for ETH/UCY) and unpacked
atomically; a local copy named in the config is verified the same way and never modified.
"""

from __future__ import annotations

import argparse
import shutil
import tarfile
import tempfile
import zipfile
from importlib import resources
from pathlib import Path

from softeq.io import write_json

__all__ = ["ethucy_sums", "prepare_data"]

VOC_URLS = (
    "http://host.robots.ox.ac.uk/pascal/VOC/voc2012/VOCtrainval_11-May-2012.tar",
    "https://thor.robots.ox.ac.uk/pascal/VOC/voc2012/VOCtrainval_11-May-2012.tar",
)
SBD_URL = (
    "https://www2.eecs.berkeley.edu/Research/Projects/CS/vision/grouping/semantic_contours/"
    "benchmark.tgz"
)
ETHUCY_URLS = (  # the Social-GAN zip, then the pinned public copy (PROVENANCE of the data)
    "https://www.dropbox.com/s/8n02xqv3l9q18r1/datasets.zip?dl=1",
    "https://github.com/abduallahmohamed/Social-STGCNN/archive/"
    "333d3a57b4d2705e129b21aefefa09c79b2b9ae1.tar.gz",
)
ETHUCY_SCENES = ("eth", "hotel", "univ", "zara1", "zara2")


def ethucy_sums() -> Path:
    """The committed sha256 list of the 74 ETH/UCY files (the data itself is never committed)."""
    return Path(str(resources.files("softeq.data").joinpath("checksums/eth_ucy.sha256")))


# ----------------------------------------------------------------------------------------------
# ETH/UCY


def _ethucy_member(name: str) -> Path | None:
    """``<scene>/<split>/<file>.txt`` for an archive member under ``datasets/``, else None."""
    parts = Path(name).parts
    if "datasets" not in parts:
        return None
    rel = parts[parts.index("datasets") + 1 :]
    if len(rel) == 3 and rel[0] in ETHUCY_SCENES and rel[2].endswith(".txt"):
        return Path(*rel)
    return None


def _extract_ethucy(archive: Path, dest: Path) -> None:
    """Copy ``*/datasets/<scene>/<split>/*.txt`` out of the zip or tar archive into ``dest``."""
    count = 0

    def write(rel: Path, data: bytes) -> None:
        nonlocal count
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        (dest / rel).write_bytes(data)
        count += 1

    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as z:
            for name in z.namelist():
                if (rel := _ethucy_member(name)) is not None:
                    write(rel, z.read(name))
    else:
        with tarfile.open(archive) as tar:
            for member in tar.getmembers():
                if member.isfile() and (rel := _ethucy_member(member.name)) is not None:
                    write(rel, tar.extractfile(member).read())
    if count == 0:
        raise ValueError(f"{archive}: holds no datasets/<scene>/<split>/*.txt files")


def prepare_ethucy(root: str | None, downloads: Path, out: Path, protocol: dict) -> None:
    """Verify a local ETH/UCY copy (``root``) or download one, then write the manifest."""
    from softeq.data.download import download
    from softeq.data.eth_ucy import verify_checksums

    if root:
        tree = Path(root).expanduser().resolve()
    else:
        tree = downloads / "eth_ucy"
        if not tree.is_dir():
            errors = []
            for url in ETHUCY_URLS:
                archive = downloads / ("eth_ucy.zip" if url.endswith("dl=1") else "eth_ucy.tar.gz")
                try:
                    download(url, archive)
                except (ConnectionError, ValueError) as error:
                    errors.append(f"{url}: {error}")
                    continue
                staging = Path(tempfile.mkdtemp(dir=downloads, prefix=".eth_ucy.", suffix=".tmp"))
                try:
                    _extract_ethucy(archive, staging)
                    verify_checksums(staging, ethucy_sums())
                    staging.rename(tree)
                finally:
                    shutil.rmtree(staging, ignore_errors=True)
                break
            else:
                raise SystemExit(
                    "ETH/UCY could not be downloaded:\n  " + "\n  ".join(errors) + "\nSet "
                    "datasets.ethucy.root to a local copy (<root>/<scene>/{train,val,test}/*.txt)."
                )
    count = verify_checksums(tree, ethucy_sums())
    write_json({"kind": "trajectories", "root": str(tree), "files": count, **protocol}, out)


# ----------------------------------------------------------------------------------------------
# PASCAL VOC (+ SBD)


def prepare_voc(root: str | None, downloads: Path, out: Path, protocol: str) -> None:
    """VOC 2012 from a local copy (``root``, the folder holding JPEGImages/) or the official
    archive (md5-checked), plus SBD for ``train_aug``; then the manifest."""
    from softeq.data.download import download
    from softeq.data.voc import SBD_MD5, VOC_MD5, build_train_aug

    if root:
        voc = Path(root).expanduser().resolve()
    else:
        voc = downloads / "VOCdevkit" / "VOC2012"
        if not voc.is_dir():
            archive = downloads / "VOCtrainval_11-May-2012.tar"
            for url in VOC_URLS:
                try:
                    download(url, archive, md5=VOC_MD5)
                    break
                except ConnectionError as error:
                    last = error
            else:
                raise SystemExit(
                    f"PASCAL VOC could not be downloaded ({last}); set datasets.voc.root"
                )
            _untar(archive, downloads)
    if not (voc / "JPEGImages").is_dir() or not (voc / "SegmentationClass").is_dir():
        raise SystemExit(f"{voc}: not a VOC 2012 folder (JPEGImages/, SegmentationClass/ missing)")
    if protocol == "train_aug":
        augmented = downloads / "VOC2012_train_aug"
        if not augmented.is_dir():
            archive = downloads / "benchmark.tgz"
            download(SBD_URL, archive, md5=SBD_MD5)
            _untar(archive, downloads)
            build_train_aug(voc, downloads / "benchmark_RELEASE" / "dataset", augmented)
        voc = augmented
    write_json({"kind": "voc", "root": str(voc), "protocol": protocol, "num_classes": 21}, out)


def _untar(archive: Path, dest: Path) -> None:
    staging = Path(tempfile.mkdtemp(dir=dest, prefix=f".{archive.name}.", suffix=".tmp"))
    try:
        with tarfile.open(archive) as tar:
            tar.extractall(staging, filter="data")
        for item in staging.iterdir():
            target = dest / item.name
            if not target.exists():
                item.rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


# ----------------------------------------------------------------------------------------------


def prepare_data(args: argparse.Namespace) -> None:
    """Dispatch on --dataset; errors exit with what to do."""
    out = Path(args.out)
    downloads = Path(args.downloads or out.parent / "downloads")
    protocol = args.protocol or {}
    if args.dataset == "digits":
        from softeq.data.embedded import build_digits

        build_digits(out)
    elif args.dataset == "vocdigits":
        from softeq.data.embedded_voc import EMBEDDED_VOC_CLASSES, build_embedded_voc

        root = build_embedded_voc(out.with_suffix(""), **protocol.get("build", {}))
        write_json(
            {
                "kind": "voc",
                "root": str(root.resolve()),
                "protocol": "paper",
                "num_classes": len(EMBEDDED_VOC_CLASSES),
            },
            out,
        )
    elif args.dataset == "synthetic":
        from softeq.data.eth_ucy import verify_checksums
        from softeq.data.synthetic_trajectories import build_synthetic

        if protocol.get("root"):
            raise SystemExit("datasets.synthetic.root: the synthetic set is generated, not read")
        root = build_synthetic(out.with_suffix(""), seed=protocol.get("seed", 0))
        count = verify_checksums(root)
        traj = {k: v for k, v in protocol.items() if k not in ("seed", "root")}
        write_json(
            {"kind": "trajectories", "root": str(root.resolve()), "files": count, **traj}, out
        )
    elif args.dataset == "ethucy":
        downloads.mkdir(parents=True, exist_ok=True)
        prepare_ethucy(args.root, downloads, out, protocol)
    elif args.dataset == "voc":
        downloads.mkdir(parents=True, exist_ok=True)
        prepare_voc(args.root, downloads, out, protocol.get("protocol", "paper"))
    elif args.dataset == "imagenet":
        from softeq.data.imagenet import IMAGENET_HELP, prepare_imagenet

        if not args.root:
            raise SystemExit(f"datasets.imagenet.root is not set.\n{IMAGENET_HELP}")
        if args.sha256 and args.source != "imagenette":
            raise SystemExit("--sha256 pins the Imagenette archive; other sources have their own")
        options = {"sha256": args.sha256} if args.source == "imagenette" else {}
        try:
            prepare_imagenet(args.source, args.root, out, **options)
        except (ValueError, OSError) as error:
            raise SystemExit(f"{error}\n\n{IMAGENET_HELP}") from error
    else:
        raise SystemExit(
            f"--dataset {args.dataset!r}: expected digits, vocdigits, synthetic, imagenet, voc "
            "or ethucy"
        )
