"""What every stage shares: device set-up, softening from its JSON, checkpoints, provenance."""

from __future__ import annotations

import argparse
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from torch import nn

__all__ = [
    "SOFTENING_KEYS",
    "parse_softening",
    "provenance",
    "setup_device",
    "soften_from",
    "write_metrics",
]

SOFTENING_KEYS = {
    "group",
    "softness",
    "softness_pos",
    "filter",
    "hard_mask",
    "operator",
    "features",
}


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


def parse_softening(values: dict[str, Any]) -> dict[str, Any]:
    """Check a --softening object: known keys, and at least a group and a softness."""
    unknown = set(values) - SOFTENING_KEYS
    if unknown:
        raise SystemExit(f"--softening: unknown keys {sorted(unknown)}")
    if "group" not in values or "softness" not in values:
        raise SystemExit("--softening needs at least 'group' and 'softness'")
    return values


def soften_from(model: nn.Module, softening: dict[str, Any], cache_dir: str | None) -> nn.Module:
    """softeq.soften with the settings of a --softening object (projectors read from cache_dir).

    A positional softness equal to the softness is the default, which models without a
    positional grid accept; any other value on such a model raises.
    """
    import softeq

    softness_pos = softening.get("softness_pos")
    if softness_pos == softening["softness"]:
        softness_pos = None
    return softeq.soften(
        model,
        softening["group"],
        softening["softness"],
        softness_pos=softness_pos,
        filter=softening.get("filter", "shrink"),
        hard_mask=softening.get("hard_mask", False),
        operator=softening.get("operator"),
        features=softening.get("features"),
        cache_dir=cache_dir,
    )


def write_projectors(model: nn.Module, softening: dict[str, Any], out: str | Path) -> None:
    """Soften ``model`` with projector files written to ``out``, plus a manifest of its layers."""
    from softeq.bounds import report
    from softeq.io import write_json

    out = Path(out)
    soften_from(model, softening, str(out))
    records = [r.as_dict() for r in report(model)]
    files = sorted(p.name for p in out.glob("*.safetensors"))
    write_json({"softening": softening, "layers": records, "files": files}, out / "manifest.json")


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
        "config": {k: v for k, v in vars(args).items() if k != "func"},
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def write_metrics(
    args: argparse.Namespace,
    task: str,
    softening: dict[str, Any] | None,
    result: dict[str, Any],
    model: nn.Module,
    device: str,
) -> dict[str, Any]:
    """Write the metrics JSON of one run: identity, metrics, sweep, bound report, provenance."""
    import json

    from softeq.bounds import report
    from softeq.io import write_json

    softening = softening or {"group": "none", "softness": 1.0, "filter": "none"}
    softness = float(softening["softness"])
    pos = softening.get("softness_pos")
    out = {
        "task": task,
        "dataset": args.dataset,
        "backbone": args.backbone,
        "group": softening["group"],
        "filter": (
            "rank-hard" if softening.get("hard_mask") else softening.get("filter", "shrink")
        ),
        "softness": softness,
        "softness_pos": softness if pos is None else float(pos),
        "seed": args.seed,
        **result,
        "bounds": [r.as_dict() for r in report(model)],
        "provenance": provenance(args, device),
    }
    write_json(out, args.out)
    print(json.dumps(out["metrics"], indent=2))
    return out
