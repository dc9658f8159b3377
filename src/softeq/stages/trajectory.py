"""Trajectory stages: the soft SO(2) transformer (spec: preset, kwargs) trained from scratch on
one leave-one-scene-out fold; the dataset name is ``<family>-<scene>`` (e.g. ``ethucy-eth``)."""

from __future__ import annotations

import argparse
import functools
import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from softeq.io import read_manifest, write_json
from softeq.soften_options import split_backbone_spec
from softeq.spec import Softening
from softeq.stages.common import (
    clear_output,
    load_softening,
    run_fingerprint,
    selected_epoch,
    setup_device,
    soften_from,
    training_seed,
    training_splits,
    write_metrics,
    write_projectors,
)
from softeq.stages.rungs import best_epoch_file, check_rung_args, finish_rung, start_rung

__all__ = [
    "evaluate",
    "finetune",
    "fold_max_agents",
    "job_model",
    "job_split",
    "projectors",
]

SPEC_KEYS = {"preset", "kwargs"}
PROTOCOL_KEYS = ("obs_len", "pred_len", "min_agents", "skip")


def _manifest(path: str) -> dict[str, Any]:
    return read_manifest(path, "trajectories")


@functools.lru_cache(maxsize=6)
def _windows(manifest_json: str, scene: str, split: str, obs_len: int, pred_len: int):
    """One split of a fold, read once per job (the model's width and the training both need
    it); the manifest comes as JSON so that it can key the cache."""
    from softeq.data.eth_ucy import TrajectoryDataset

    manifest = json.loads(manifest_json)
    options = {k: manifest[k] for k in ("min_agents", "skip") if k in manifest}
    return TrajectoryDataset.from_manifest(manifest, scene, split, obs_len, pred_len, **options)


def _split(manifest: dict[str, Any], scene: str, split: str, obs_len: int, pred_len: int):
    return _windows(json.dumps(manifest, sort_keys=True), scene, split, obs_len, pred_len)


def fold_max_agents(manifest: dict[str, Any], scene: str, obs_len: int, pred_len: int) -> int:
    """The most agents of one window over the fold's train, val and test splits: the width a
    scene model pads every window to (the reference's global max_people, docs/fidelity.md)."""
    from softeq.data.eth_ucy import SPLITS

    return max(
        max((len(w) for w in _split(manifest, scene, split, obs_len, pred_len).windows), default=0)
        for split in SPLITS
    )


def job_model(
    spec: dict[str, Any], manifest: dict[str, Any], scene: str | None = None
) -> nn.Module:
    """The model of ``spec``; observation and prediction lengths follow the dataset's protocol
    unless the spec's kwargs override them (the paper's mismatched-protocol compatibility).  A
    scene model without ``max_agents`` gets the largest window of ``scene``'s fold."""
    from softeq.models.scene_transformer import SCENE_PRESETS
    from softeq.models.trajectory import build_trajectory_model

    spec, _ = split_backbone_spec(spec)
    unknown = set(spec) - SPEC_KEYS
    if unknown or "preset" not in spec:
        raise SystemExit(f"--backbone-spec: needs a preset; unknown keys {sorted(unknown)}")
    lengths = {k: manifest[k] for k in ("obs_len", "pred_len") if k in manifest}
    kwargs = {**lengths, **spec.get("kwargs", {})}
    if spec["preset"] in SCENE_PRESETS and "max_agents" not in kwargs:
        if scene is None:
            raise SystemExit(f"{spec['preset']}: a scene model needs the scene (or max_agents)")
        kwargs["max_agents"] = fold_max_agents(
            manifest, scene, kwargs["obs_len"], kwargs["pred_len"]
        )
    return build_trajectory_model(spec["preset"], **kwargs)


def job_split(manifest: dict, scene: str, split: str, model: nn.Module):
    """The windows of one scene's split that a job reads: the manifest's verified files, with
    the model's observation and prediction lengths and the manifest's windowing protocol."""
    return _split(manifest, scene, split, model.obs_len, model.pred_len)


def _scene(dataset: str) -> str:
    if "-" not in dataset:
        raise SystemExit(f"--dataset {dataset!r}: expected <family>-<scene>, e.g. ethucy-eth")
    return dataset.split("-", 1)[1]


def _soften_or_check(
    model: nn.Module, spec: dict[str, Any], softening: Softening, cache_dir: str | None
) -> None:
    """Soften a learned model with the spec's softening options (docs/fidelity.md); a
    parameter-free baseline is only meaningful at b = 1."""
    _, options = split_backbone_spec(spec)
    if any(True for _ in model.parameters()):
        soften_from(model, softening.with_features("pairs"), cache_dir, options)
    elif softening.softness != 1.0:
        raise SystemExit(f"{type(model).__name__} has no weights to soften: use softness 1")


def projectors(args: argparse.Namespace) -> None:
    """Build and save the model's projectors."""
    setup_device(args)
    spec = args.backbone_spec
    scene = _scene(args.dataset) if args.dataset else None  # a scene model needs it
    model = job_model(spec, _manifest(args.data), scene)
    if not any(True for _ in model.parameters()):
        manifest = {"softening": args.softening.to_dict(), "layers": [], "files": []}
        write_json(manifest, Path(args.out) / "manifest.json")
        return
    _, options = split_backbone_spec(spec)
    write_projectors(model, args.softening.with_features("pairs"), args.out, options)


def finetune(args: argparse.Namespace) -> None:
    """Train the (soft) model from scratch on the fold's train split (resumable)."""
    from softeq.engine.checkpoint import load_checkpoint, save_checkpoint
    from softeq.engine.distributed import Distributed
    from softeq.engine.trajectory import TrajectoryRecipe, train_trajectory

    if args.init is not None:
        raise SystemExit("trajectory models train from scratch: --init does not apply")
    clear_output(args.out, args.data, stale=args.invalidates)
    check_rung_args(args)
    training_splits(args, supported=False)
    device = setup_device(args)
    softening = args.softening
    manifest = _manifest(args.data)
    scene = _scene(args.dataset)
    torch.manual_seed(args.seed)
    model = job_model(args.backbone_spec, manifest, scene)
    _soften_or_check(model, args.backbone_spec, softening, args.projectors)
    history = []
    recipe = TrajectoryRecipe.from_dict(args.recipe, "--recipe")
    fingerprint = run_fingerprint(args, recipe, softening)
    best = best_epoch_file(args.out)
    start_rung(args, device)
    if any(True for _ in model.parameters()):
        history = train_trajectory(
            model,
            job_split(manifest, scene, "train", model),
            recipe,
            args.seed,
            args.checkpoint,
            device,
            desc=args.stage,
            fingerprint=fingerprint,
            val_set=job_split(manifest, scene, "val", model) if recipe.select_epoch else None,
            best_checkpoint=best if recipe.select_epoch else None,
            until_epoch=args.until_epoch,
        )
    if not Distributed.from_env(device).is_main:  # DDP: the main process writes --out
        return
    if recipe.select_epoch and best.exists():  # the epoch of best validation ADE
        model.load_state_dict(load_checkpoint(best)["model"])
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
    finish_rung(args, device)


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
    scene = _scene(args.dataset)
    model = job_model(state["backbone"], manifest, scene)
    _soften_or_check(model, state["backbone"], softening, args.projectors)
    model.load_state_dict(state["model"])
    spec = EvalSettings.from_dict(args.eval, "--eval")
    test_set = job_split(manifest, scene, args.split, model)
    result = evaluate_trajectory(model, test_set, spec, args.seed, device)
    selected = selected_epoch(state.get("history", []), "val_ade", lowest=True)
    if selected is not None:
        result["metrics"]["selected_epoch"] = selected
    write_metrics(args, "trajectory", softening, result, model, device, training_seed(state))
