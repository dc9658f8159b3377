"""Regression stage: train and evaluate one run of the O(5) experiment in one job (it is small).

The backbone spec names the model (config: ``backbones.<name>``):

- ``{regressor: mlp, hidden: 512, depth: 3}``: the plain MLP baseline, an ``nn.Sequential`` of
  Linear / ReLU (nothing to soften: its runs use softness 1);
- ``{regressor: rep_mlp, hidden: 128 | "<rep>", depth: 3, in_rep: 2V, out_rep: S}``: the MLP on
  declared representations of the run's group (gated nonlinearities; ``square_input``, default
  true, feeds x and x (x) x to the first map: with linear maps and gates alone an O(n)-invariant
  model of vectors is constant, EMLP's bilinear layers play this part), softened by the run's
  setting through ``softeq.soften`` (b = 0 with ``shrink`` is the exact equivariant MLP, EMLP's
  method; ``rpp`` the residual pathway prior; ``rank-hard`` the reference's hard mask).

Both see standardised inputs and targets unless ``standardize: false``.  The dataset name holds
the noise level (``o5-s30``, :mod:`softeq.data.o5`); ``--protocol`` the split sizes and seed.
"""

from __future__ import annotations

import argparse
import itertools
import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from softeq.soften_reps import soften_rep_model
from softeq.spec import Softening
from softeq.stages.common import clear_output, selected_epoch, setup_device, write_metrics

__all__ = [
    "SPEC_KEYS",
    "build_model",
    "input_dim",
    "load_splits",
    "regression",
    "regression_figure",
    "regression_table",
    "soften_regressor",
]

SPEC_KEYS = {
    "regressor",
    "hidden",
    "depth",
    "in_rep",
    "out_rep",
    "activation",
    "square_input",
    "standardize",
    "discrete_difference",
}
REGRESSORS = ("mlp", "rep_mlp")


def _check_spec(spec: dict[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(spec) - SPEC_KEYS)
    if unknown or spec.get("regressor") not in REGRESSORS:
        raise SystemExit(
            f"--backbone-spec: regressor must be one of {REGRESSORS} (got "
            f"{spec.get('regressor')!r}); unknown keys {unknown}"
        )
    defaults = {"hidden": 128, "depth": 3, "in_rep": "2V", "out_rep": "S", "activation": "relu"}
    return {**defaults, "square_input": spec.get("regressor") == "rep_mlp", **spec}


def input_dim(spec: dict[str, Any], group: str) -> tuple[int, int]:
    """(input, output) dimensions of the spec's representations of ``group``."""
    from softeq.matrix_groups import matrix_group
    from softeq.reps import parse_rep

    spec = _check_spec(spec)
    matrices = matrix_group(group)
    return parse_rep(spec["in_rep"], matrices).dim, parse_rep(spec["out_rep"], matrices).dim


def build_model(spec: dict[str, Any], group: str) -> nn.Module:
    """The (plain) model of ``spec`` for inputs and outputs of ``group``'s representations."""
    spec = _check_spec(spec)
    if spec["regressor"] == "rep_mlp":
        from softeq.models.rep_mlp import RepMLP

        return RepMLP(
            group,
            spec["in_rep"],
            spec["out_rep"],
            spec["hidden"],
            spec["depth"],
            activation=spec["activation"],
            square_input=spec["square_input"],
        )
    if not isinstance(spec["hidden"], int) or spec["activation"] != "relu" or spec["square_input"]:
        raise SystemExit("--backbone-spec: a plain mlp takes an integer width, relu, no square")
    d_in, d_out = input_dim(spec, group)
    widths = [d_in] + [spec["hidden"]] * spec["depth"]
    layers: list[nn.Module] = []
    for a, b in itertools.pairwise(widths):
        layers += [nn.Linear(a, b), nn.ReLU()]
    return nn.Sequential(*layers, nn.Linear(widths[-1], d_out))


def soften_regressor(model: nn.Module, spec: dict[str, Any], softening: Softening) -> nn.Module:
    """Soften a rep MLP with the run's setting; a plain MLP only runs at softness 1."""
    import softeq

    if spec["regressor"] == "mlp":
        if softening.softness != 1.0 or softening.filter == "rpp":
            raise SystemExit("a plain mlp has no equivariant structure: run it at softness 1")
        return model
    difference = spec.get("discrete_difference", "angle")
    if difference == "angle":
        return softeq.soften(
            model, group=softening.group, softness=softening.softness, filter=softening.filter
        )
    # the reference's rho(h) - I (docs/fidelity.md): build_model gave the model the run's group
    return soften_rep_model(
        model, softening.softness, softening.filter, discrete_difference=difference
    )


def load_splits(protocol: dict[str, Any], dataset: str) -> dict[str, tuple[Any, Any]]:
    """The train / val / test splits of ``dataset`` (``o5-s30``) as float32 tensors, and the
    standardisation statistics of its training split (under ``"stats"``)."""
    from softeq.data.o5 import SPLITS, O5Protocol, make_split, noise_of, standardisation

    try:
        settings, sigma = O5Protocol(**protocol), noise_of(dataset)
    except (TypeError, ValueError) as error:
        raise SystemExit(f"--protocol / --dataset: {error}") from error
    arrays = {split: make_split(settings, split, sigma) for split in SPLITS}
    out: dict[str, Any] = {
        split: (torch.as_tensor(x, dtype=torch.float32), torch.as_tensor(y, dtype=torch.float32))
        for split, (x, y) in arrays.items()
    }
    out["stats"] = standardisation(*arrays["train"])
    return out


def _model(args: argparse.Namespace, splits: dict[str, Any]) -> tuple[nn.Module, dict]:
    """The softened (and standardised) model of the run, and its checked spec."""
    from softeq.engine.regression import Standardised

    spec = _check_spec(args.backbone_spec)
    torch.manual_seed(args.seed)
    model = soften_regressor(build_model(spec, args.softening.group), spec, args.softening)
    if spec.get("standardize", True):
        stats = splits["stats"]
        model = Standardised(model, stats.x_scale, stats.y_mean, stats.y_std)
    return model, spec


def regression(args: argparse.Namespace) -> None:
    """Train one run (resumable, best validation epoch kept), then write its model and its
    metrics JSON (test errors, transformed-input errors, invariance errors, bounds)."""
    from softeq.data.o5 import noise_of
    from softeq.engine.checkpoint import load_checkpoint, save_checkpoint
    from softeq.engine.fingerprint import Fingerprint
    from softeq.engine.regression import (
        RegressionRecipe,
        evaluate_regression,
        input_actions,
        train_regression,
    )
    from softeq.layers import iter_soft

    clear_output(args.model_out, stale=[args.out])
    device = setup_device(args)
    splits = load_splits(args.protocol, args.dataset)
    model, spec = _model(args, splits)
    recipe = RegressionRecipe.from_dict(args.recipe, "--recipe")
    data = json.dumps({"protocol": args.protocol, "dataset": args.dataset}, sort_keys=True)
    fingerprint = Fingerprint(
        recipe=recipe,
        seed=args.seed,
        model=spec,
        softening=args.softening.to_dict(),
        data=data,  # the data is drawn from these, not read from a file
        task="regression",
        stage="regression",
    )
    best = Path(f"{args.model_out}.best")
    train, val = splits["train"], splits["val"]
    history = train_regression(
        model, train, val, recipe, args.seed, args.checkpoint, device, fingerprint, best
    )
    if best.exists():
        model.load_state_dict(load_checkpoint(best)["model"])
    state = {"model": model.state_dict(), "backbone": spec, "history": history}
    save_checkpoint({**state, "softening": args.softening.to_dict()}, args.model_out)
    x, y = splits["test"]
    actions = input_actions(args.softening.group, spec["in_rep"], len(x), args.eval_seed)
    metrics = evaluate_regression(model, x, y, actions, device)
    metrics["selected_epoch"] = selected_epoch(history, f"val_{recipe.select}", lowest=True)
    metrics["soft_layers"] = sum(1 for _ in iter_soft(model))
    metrics["params"] = sum(p.numel() for p in model.parameters())
    metrics["noise"] = noise_of(args.dataset)
    result = {"metrics": metrics, "angle_sweep": []}
    write_metrics(args, "regression", args.softening, result, model, device)


def regression_table(args: argparse.Namespace) -> None:
    """The O(5) table (.csv, .md) from the summaries of the family's datasets."""
    from softeq.results.regression import write_regression_table

    for path in write_regression_table(args.summaries, args.out_stem):
        print(path)


def regression_figure(args: argparse.Namespace) -> None:
    """The O(5) figure from the table alone."""
    from softeq.figures.regression import plot_regression

    print(plot_regression(args.table, args.out))
