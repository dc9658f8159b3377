"""Trajectory stages: the soft SO(2) transformer (spec: preset, kwargs) trained from scratch on
one leave-one-scene-out fold; the dataset name is ``<family>-<scene>`` (e.g. ``ethucy-eth``)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import torch
from torch import nn

from softeq.io import read_manifest, write_json
from softeq.spec import Softening
from softeq.stages.common import (
    clear_output,
    load_softening,
    run_fingerprint,
    setup_device,
    soften_from,
    write_metrics,
    write_projectors,
)

__all__ = ["evaluate", "finetune", "job_model", "job_split", "projectors"]

SPEC_KEYS = {"preset", "kwargs"}
PROTOCOL_KEYS = ("obs_len", "pred_len", "min_agents", "skip")


def _manifest(path: str) -> dict[str, Any]:
    return read_manifest(path, "trajectories")


def job_model(spec: dict[str, Any], manifest: dict[str, Any]) -> nn.Module:
    """The model of ``spec``; observation and prediction lengths follow the dataset's protocol
    unless the spec's kwargs override them (the paper's mismatched-protocol compatibility)."""
    from softeq.models.trajectory import build_trajectory_model

    unknown = set(spec) - SPEC_KEYS
    if unknown or "preset" not in spec:
        raise SystemExit(f"--backbone-spec: needs a preset; unknown keys {sorted(unknown)}")
    lengths = {k: manifest[k] for k in ("obs_len", "pred_len") if k in manifest}
    return build_trajectory_model(spec["preset"], **{**lengths, **spec.get("kwargs", {})})


def job_split(manifest: dict, scene: str, split: str, model: nn.Module):
    """The windows of one scene's split that a job reads: the manifest's verified files, with
    the model's observation and prediction lengths and the manifest's windowing protocol."""
    from softeq.data.eth_ucy import TrajectoryDataset

    options = {k: manifest[k] for k in ("min_agents", "skip") if k in manifest}
    return TrajectoryDataset.from_manifest(
        manifest, scene, split, model.obs_len, model.pred_len, **options
    )


def _scene(dataset: str) -> str:
    if "-" not in dataset:
        raise SystemExit(f"--dataset {dataset!r}: expected <family>-<scene>, e.g. ethucy-eth")
    return dataset.split("-", 1)[1]


def _soften_or_check(model: nn.Module, softening: Softening, cache_dir: str | None) -> None:
    """Soften a learned model; a parameter-free baseline is only meaningful at b = 1."""
    if any(True for _ in model.parameters()):
        soften_from(model, softening.with_features("pairs"), cache_dir)
    elif softening.softness != 1.0:
        raise SystemExit(f"{type(model).__name__} has no weights to soften: use softness 1")


def projectors(args: argparse.Namespace) -> None:
    """Build and save the model's projectors."""
    setup_device(args)
    model = job_model(args.backbone_spec, _manifest(args.data))
    if not any(True for _ in model.parameters()):
        manifest = {"softening": args.softening.to_dict(), "layers": [], "files": []}
        write_json(manifest, Path(args.out) / "manifest.json")
        return
    write_projectors(model, args.softening.with_features("pairs"), args.out)


def finetune(args: argparse.Namespace) -> None:
    """Train the (soft) model from scratch on the fold's train split (resumable)."""
    from softeq.engine.checkpoint import save_checkpoint
    from softeq.engine.distributed import Distributed
    from softeq.engine.trajectory import TrajectoryRecipe, train_trajectory

    if args.init is not None:
        raise SystemExit("trajectory models train from scratch: --init does not apply")
    clear_output(args.out, args.data, stale=args.invalidates)
    device = setup_device(args)
    softening = args.softening
    manifest = _manifest(args.data)
    torch.manual_seed(args.seed)
    model = job_model(args.backbone_spec, manifest)
    _soften_or_check(model, softening, args.projectors)
    history = []
    recipe = TrajectoryRecipe.from_dict(args.recipe, "--recipe")
    fingerprint = run_fingerprint(args, recipe, softening)
    if any(True for _ in model.parameters()):
        train_set = job_split(manifest, _scene(args.dataset), "train", model)
        history = train_trajectory(
            model,
            train_set,
            recipe,
            args.seed,
            args.checkpoint,
            device,
            desc=args.stage,
            fingerprint=fingerprint,
        )
    if not Distributed.from_env(device).is_main:  # DDP: the main process writes --out
        return
    save_checkpoint(
        {
            "model": model.state_dict(),
            "backbone": args.backbone_spec,
            "softening": softening.to_dict(),
            "history": history,
            "fingerprint": fingerprint.to_dict(),
        },
        args.out,
    )


def evaluate(args: argparse.Namespace) -> None:
    """ADE / FDE (clean, rotated, combined), equivariance error and bounds, as JSON."""
    from softeq.engine.checkpoint import load_checkpoint
    from softeq.engine.evaluation import EvalSettings
    from softeq.engine.trajectory import evaluate_trajectory

    clear_output(args.out, args.data, args.model)
    device = setup_device(args)
    manifest = _manifest(args.data)
    state = load_checkpoint(args.model)
    softening = load_softening(state, args.model)
    model = job_model(state["backbone"], manifest)
    _soften_or_check(model, softening, args.projectors)
    model.load_state_dict(state["model"])
    spec = EvalSettings.from_dict(args.eval, "--eval")
    test_set = job_split(manifest, _scene(args.dataset), args.split, model)
    result = evaluate_trajectory(model, test_set, spec, args.seed, device)
    write_metrics(args, "trajectory", softening, result, model, device)
