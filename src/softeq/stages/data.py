"""``softeq prepare-data``: build an embedded dataset, or fetch, verify and describe a real one.

Every dataset ends as a file the training stages read: the embedded digits as safetensors, the
others as a JSON manifest that points at the data and records the protocol.  The fetching and
verification live in :mod:`softeq.data` (``voc_fetch``, ``eth_ucy_fetch``, ``imagenet``); this
stage picks the source, turns failures into messages that say what to do, and writes the manifest.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from softeq.io import write_json

__all__ = [
    "prepare_cifar_manifest",
    "prepare_data",
    "prepare_ethucy",
    "prepare_mnist",
    "prepare_voc",
    "trajectory_manifest",
]


def trajectory_manifest(root: Path, sums_file: Path, out: Path, protocol: dict) -> None:
    """Verify a trajectory tree against its checksum list (every listed file, and no unlisted
    ``*.txt``), then write its manifest: the root, every file with its sha256, the protocol.
    The loader reads exactly these files (``TrajectoryDataset.from_manifest``)."""
    from softeq.data.listing import verify_tree

    try:
        sums = verify_tree(root, sums_file)
    except (ValueError, FileNotFoundError) as error:
        raise SystemExit(f"{error}\n(checking {root} against {sums_file})") from error
    manifest = {"kind": "trajectories", "root": str(root), "files": len(sums), "sha256": sums}
    write_json({**manifest, **protocol}, out)


def prepare_ethucy(root: str | None, downloads: Path, out: Path, protocol: dict) -> None:
    """Verify a local ETH/UCY copy (``root``) or download one, then write the manifest."""
    from softeq.data.eth_ucy_fetch import fetch_ethucy
    from softeq.data.listing import ethucy_sums

    if root:
        tree = Path(root).expanduser().resolve()
    else:
        try:
            tree = fetch_ethucy(downloads)
        except ConnectionError as error:
            raise SystemExit(
                f"{error}\nSet datasets.ethucy.root to a local copy "
                "(<root>/<scene>/{train,val,test}/*.txt)."
            ) from error
    trajectory_manifest(tree, ethucy_sums(), out, protocol)


def prepare_voc(root: str | None, downloads: Path, out: Path, protocol: str) -> None:
    """VOC 2012 from a local copy (``root``, the folder holding JPEGImages/) or the official
    archive (md5-checked), plus SBD for ``train_aug``; then the manifest."""
    from softeq.data.voc_fetch import fetch_train_aug, fetch_voc

    if root:
        voc = Path(root).expanduser().resolve()
    else:
        try:
            voc = fetch_voc(downloads)
        except ConnectionError as error:
            raise SystemExit(f"{error}; set datasets.voc.root") from error
    if not (voc / "JPEGImages").is_dir() or not (voc / "SegmentationClass").is_dir():
        raise SystemExit(f"{voc}: not a VOC 2012 folder (JPEGImages/, SegmentationClass/ missing)")
    if protocol == "train_aug":
        voc = fetch_train_aug(voc, downloads)
    write_json({"kind": "voc", "root": str(voc), "protocol": protocol, "num_classes": 21}, out)


def prepare_cifar_manifest(
    name: str, root: str | None, downloads: Path, out: Path, protocol: dict
) -> None:
    """CIFAR-10 / CIFAR-100 from a local torchvision-format copy (``root``) or the md5-pinned
    archive; every batch md5-checked, then the arrays and the manifest
    (:func:`softeq.data.cifar.prepare_cifar`)."""
    from softeq.data.cifar import CIFAR_RELEASES, prepare_cifar

    folder = CIFAR_RELEASES[name].folder
    try:
        prepare_cifar(name, root, downloads, out, **protocol)
    except ConnectionError as error:
        raise SystemExit(
            f"{error}\nSet datasets.{name}.root to a local copy (the folder holding {folder}/)."
        ) from error
    except (ValueError, FileNotFoundError) as error:
        raise SystemExit(
            f"{error}\n(preparing {name}; datasets.{name}.root: a local copy)"
        ) from error


def prepare_mnist(root: str | None, downloads: Path, out: Path, protocol: dict) -> None:
    """Symmetry-breaking MNIST from a local copy (``root``, md5-checked) or the mirrors."""
    from softeq.data.mnist import build_mnist, fetch_mnist, mnist_folder

    try:
        folder = mnist_folder(root) if root else fetch_mnist(downloads)
    except ConnectionError as error:
        raise SystemExit(f"{error}\nSet datasets.mnist.root to a local copy.") from error
    except (FileNotFoundError, ValueError) as error:
        raise SystemExit(f"datasets.mnist.root: {error}") from error
    build_mnist(folder, out, **protocol)


# ----------------------------------------------------------------------------------------------


def prepare_data(args: argparse.Namespace) -> None:
    """Dispatch on --dataset; errors exit with what to do."""
    out = Path(args.out)
    downloads = Path(args.downloads or out.parent / "downloads")
    protocol = args.protocol or {}
    if args.dataset == "digits":
        from softeq.data.embedded import build_digits

        build_digits(out)
    elif args.dataset == "digits69":
        from softeq.data.symmetry_breaking import build_digits69

        build_digits69(out, **protocol)
    elif args.dataset == "mnist":
        downloads.mkdir(parents=True, exist_ok=True)
        prepare_mnist(args.root, downloads, out, protocol)
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
        from softeq.data.synthetic_trajectories import build_synthetic

        if protocol.get("root"):
            raise SystemExit("datasets.synthetic.root: the synthetic set is generated, not read")
        root = build_synthetic(out.with_suffix(""), seed=protocol.get("seed", 0)).resolve()
        traj = {k: v for k, v in protocol.items() if k not in ("seed", "root")}
        trajectory_manifest(root, root / "SHA256SUMS", out, traj)
    elif args.dataset == "ethucy":
        downloads.mkdir(parents=True, exist_ok=True)
        prepare_ethucy(args.root, downloads, out, protocol)
    elif args.dataset == "voc":
        downloads.mkdir(parents=True, exist_ok=True)
        prepare_voc(args.root, downloads, out, protocol.get("protocol", "paper"))
    elif args.dataset in ("cifar10", "cifar100"):
        downloads.mkdir(parents=True, exist_ok=True)
        prepare_cifar_manifest(args.dataset, args.root, downloads, out, protocol)
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
            f"--dataset {args.dataset!r}: expected digits, digits69, mnist, vocdigits, synthetic, "
            "imagenet, voc, ethucy, cifar10 or cifar100"
        )
