"""What every stage shares: device set-up, softening a model, projector files, provenance."""

from __future__ import annotations

import argparse
import math
import platform
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from torch import nn

from softeq.soften_options import SoftenOptions
from softeq.spec import Softening

if TYPE_CHECKING:
    from softeq.engine.fingerprint import Fingerprint

__all__ = [
    "clear_output",
    "load_softening",
    "provenance",
    "run_fingerprint",
    "selected_epoch",
    "setup_device",
    "soften_from",
    "training_seed",
    "training_splits",
    "write_metrics",
    "write_projectors",
]


def setup_device(args: argparse.Namespace) -> str:
    """Apply --threads and resolve --device (``auto`` picks CUDA when there is one)."""
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    device = args.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit(f"--device {device}: no CUDA device is available on this machine")
    return device


def clear_output(
    out: str | Path, *inputs: str | Path | None, stale: Sequence[str | Path] = ()
) -> None:
    """Remove the stage's previous ``out`` (and the ``stale`` files derived from it, e.g. the
    run's metrics) before any work, so a run that fails leaves nothing that looks current
    (docs/conventions.md §3, atomic outputs); ``out`` must not be an input."""
    target = Path(out)
    for source in inputs:
        if source is not None and Path(source).resolve() == target.resolve():
            raise SystemExit(f"--out {out} is also an input of this stage: choose another path")
    for path in (target, *map(Path, stale)):
        if path.is_file() or path.is_symlink():
            path.unlink()


def run_fingerprint(
    args: argparse.Namespace, recipe: Any, softening: Softening | None = None
) -> Fingerprint:
    """The inputs of a training stage (spec, softening, recipe, seed, the digests of --data and
    --init), stored in its checkpoint and its model so neither is reused for other inputs."""
    from softeq.engine.fingerprint import Fingerprint, file_digest_or_none

    return Fingerprint(
        recipe=recipe,
        seed=args.seed,
        model=args.backbone_spec,
        softening=None if softening is None else softening.to_dict(),
        data=file_digest_or_none(args.data),
        init=file_digest_or_none(getattr(args, "init", None)),
        task=args.task,
        stage=args.stage,
    )


def load_softening(state: dict[str, Any], where: str) -> Softening | None:
    """The softening a checkpoint was trained with (None for a plain model)."""
    values = state.get("softening")
    return None if values is None else Softening.from_dict(values, f"{where}: softening")


def soften_from(
    model: nn.Module,
    softening: Softening,
    cache_dir: str | None,
    options: SoftenOptions | None = None,
) -> nn.Module:
    """softeq.soften with ``softening``'s settings and the backbone's softening ``options``;
    projectors are read from ``cache_dir`` (the folder of ``softeq projectors``), which must
    exist and match its manifest's sha256."""
    if cache_dir is not None:
        from softeq.projectors.files import verify_projector_dir

        try:
            verify_projector_dir(cache_dir)
        except (OSError, ValueError) as error:
            raise SystemExit(f"--projectors {cache_dir}: {error}") from error
    return _soften(model, softening, cache_dir, options)


def _soften(
    model: nn.Module, softening: Softening, cache_dir: str | None, options: SoftenOptions | None
) -> nn.Module:
    import softeq

    options = options or SoftenOptions()
    options.check_applies(model, "--backbone-spec.soften")
    kwargs = {**softening.soften_kwargs(), **options.soften_kwargs(softening, model)}
    return softeq.soften(model, **kwargs, cache_dir=cache_dir)


def write_projectors(
    model: nn.Module,
    softening: Softening,
    out: str | Path,
    options: SoftenOptions | None = None,
) -> None:
    """Soften ``model`` (with the backbone's softening ``options``) with projector files
    written to ``out``, plus a manifest of its layers and of every file's sha256 (checked by
    :func:`soften_from`)."""
    from softeq.bounds import report
    from softeq.io import file_sha256, write_json

    out = Path(out)
    _soften(model, softening, str(out), options)
    records = [r.as_dict() for r in report(model)]
    files = sorted(p.name for p in out.glob("*.safetensors"))
    sums = {name: file_sha256(out / name) for name in files}
    manifest = {"softening": softening.to_dict(), "layers": records, "files": files, "sha256": sums}
    write_json(manifest, out / "manifest.json")


def _git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=5,
        )
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return out.stdout.strip() if out.returncode == 0 else "unknown"


def provenance(args: argparse.Namespace, device: str) -> dict[str, Any]:
    """Where a result came from: versions, commit, device, and the stage's arguments."""
    import torch

    import softeq

    return {
        "softeq_version": softeq.__version__,
        "git_commit": _git_commit(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "device": device,
        "command": " ".join(sys.argv[1:2]),
        "config": {
            k: v.to_dict() if isinstance(v, Softening) else v
            for k, v in vars(args).items()
            if k != "func"
        },
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def write_metrics(
    args: argparse.Namespace,
    task: str,
    softening: Softening | None,
    result: dict[str, Any],
    model: nn.Module,
    device: str,
    train_seed: int | None = None,
) -> dict[str, Any]:
    """Write the metrics JSON of one run: identity, metrics, sweep, bound report, provenance;
    a layer whose measured error exceeds its bound fails the run instead (bounds.check).

    ``seed`` is the run's training seed (``train_seed``, read from the evaluated checkpoint) with
    the evaluation's own ``--seed`` beside it as ``eval_seed``; a stage that trains and evaluates
    in one job passes none, and ``--seed`` is both."""
    import json

    from softeq.bounds import check, report
    from softeq.io import write_json

    bad = sorted(
        name
        for name, value in result["metrics"].items()
        if isinstance(value, float) and not math.isfinite(value)
    )
    if bad:
        raise ValueError(f"{args.out}: the evaluation gave non-finite metrics {bad}; not written")
    bounds = [r.as_dict() for r in report(model)]
    try:
        check(bounds)
    except ValueError as error:
        raise SystemExit(f"{args.out} not written: {error}") from error
    setting = (
        {"group": "none", "filter": "none", "softness": 1.0, "softness_pos": 1.0}
        if softening is None
        else {k: v for k, v in softening.to_dict().items() if k not in ("operator", "features")}
    )
    out = {
        "task": task,
        "dataset": args.dataset,
        "backbone": args.backbone,
        **setting,
        "seed": args.seed if train_seed is None else train_seed,
        **({} if train_seed is None else {"eval_seed": args.seed}),
        **result,
        "bounds": bounds,
        "provenance": provenance(args, device),
    }
    write_json(out, args.out)
    print(json.dumps(out["metrics"], indent=2))
    return out


def training_seed(state: dict[str, Any]) -> int | None:
    """The seed a checkpoint was trained with (its fingerprint's; None for an older format)."""
    seed = (state.get("fingerprint") or {}).get("seed")
    return None if seed is None else int(seed)


def selected_epoch(history: list[dict[str, Any]], score: str, lowest: bool) -> int | None:
    """The 1-based epoch with the best ``score`` (lowest or highest; the first on ties, as the
    training loop keeps it), or None when the run did not select epochs."""
    scores = [record.get(score) for record in history]
    if not scores or any(value is None for value in scores):
        return None
    pick = min if lowest else max
    return pick(range(len(scores)), key=scores.__getitem__) + 1


def training_splits(args: argparse.Namespace, supported: bool = True) -> tuple[str, str]:
    """(``--train-split``, ``--val-split``) of a training stage; a task whose data has no other
    splits (``supported`` False) refuses anything but train / val."""
    splits = (getattr(args, "train_split", "train"), getattr(args, "val_split", "val"))
    if not supported and splits != ("train", "val"):
        raise SystemExit(
            f"--train-split {splits[0]} --val-split {splits[1]}: the {args.task} task trains on "
            "train and selects on val only"
        )
    return splits
