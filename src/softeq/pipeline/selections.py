"""The selection experiments of a config (docs/selection.md): an experiment with ``select``
asks softeq to choose b among its ``softness`` values (the candidates), once per dataset,
backbone, group, filter and seed, instead of fine-tuning every candidate fully."""

from __future__ import annotations

import itertools
from collections import Counter
from dataclasses import dataclass
from typing import Any

from softeq.pipeline.config import ConfigError, Run, experiment_datasets, experiments
from softeq.selection import rung_epochs, rung_sizes
from softeq.spec import Softening

__all__ = [
    "DEFAULT_METRIC",
    "HOLDOUT_DATASETS",
    "SELECT_DIR",
    "Selection",
    "resolve_selections",
    "selection_splits",
]

SELECT_DIR = (
    "{task}/{dataset}/{backbone}/select~{strategy}/group~{group}/filter~{filter}/seed~{seed}"
)
"""A selection's folder below results/: its decisions, its summary (``selection.json``)."""

DEFAULT_METRIC = {
    "classification": "combined",
    "segmentation": "combined",
    "trajectory": "combined_ade",
}
"""The validation metric that ranks candidates when ``select.metric`` is null."""

HOLDOUT_DATASETS = ("imagenet",)
"""Datasets whose ``val`` split is the test split (ImageNet's val folder): a selection trains on
the ``fit`` split and scores on ``holdout``, images held out of the training folder."""


@dataclass(frozen=True)
class Selection:
    """One choice of b: the candidates, the strategy's settings, and the full schedule's length."""

    strategy: str
    task: str
    dataset: str
    backbone: str
    group: str
    filter: str
    seed: int
    candidates: tuple[float, ...]
    softness_pos: float | None
    metric: str
    epochs: int
    eta: int = 3
    rule: str = "best"
    tolerance: float = 0.02

    @property
    def path(self) -> str:
        """The selection's folder below results/ (:data:`SELECT_DIR`)."""
        fields = {k: getattr(self, k) for k in ("task", "dataset", "backbone", "strategy")}
        return SELECT_DIR.format(**fields, group=self.group, filter=self.filter, seed=self.seed)

    @property
    def key(self) -> tuple:
        """What identifies the selection's jobs (one selection per key)."""
        return (self.task, self.dataset, self.backbone, self.group, self.filter, self.seed)

    def softening(self, softness: float) -> Softening:
        return Softening(self.group, softness, self.softness_pos, self.filter)

    def run(self, softness: float) -> Run:
        """The run of candidate ``softness`` (its folder holds the candidate's rung files)."""
        return Run(self.task, self.dataset, self.backbone, self.softening(softness), self.seed)

    @property
    def sizes(self) -> list[int]:
        """Candidates trained in each rung (halving; zeroshot: one round of all)."""
        return rung_sizes(len(self.candidates), self.eta) if self.strategy == "halving" else [1]

    @property
    def rung_ends(self) -> list[int]:
        """The epoch of the full schedule at which each halving rung ends."""
        return rung_epochs(self.epochs, len(self.sizes), self.eta)


def selection_splits(dataset: str) -> tuple[str, str]:
    """(training split, validation split) of a selection's jobs on ``dataset``: never the test
    split (:data:`HOLDOUT_DATASETS`)."""
    family = dataset.split("-", 1)[0]
    return ("fit", "holdout") if family in HOLDOUT_DATASETS else ("train", "val")


def _finetune_epochs(config: dict[str, Any], task: str, backbone: str) -> int:
    """The number of epochs of the backbone's fine-tuning recipe (its class's default if unset)."""
    from softeq.engine.classification import Recipe
    from softeq.engine.segmentation import SegRecipe
    from softeq.engine.trajectory import TrajectoryRecipe

    recipe = dict((config.get("finetune") or {}).get(task, {}).get("recipe", {}))
    recipe.update(config["backbones"][backbone].get("recipe", {}))
    classes = {"classification": Recipe, "segmentation": SegRecipe, "trajectory": TrajectoryRecipe}
    return classes[task].from_dict(recipe).epochs


def _check_experiment(config: dict[str, Any], exp: dict[str, Any], where: str) -> None:
    settings, task = exp["select"], exp["task"]
    if task == "regression":
        raise ConfigError(f"{where}.select: regression runs are not selected (one job per run)")
    if settings["strategy"] != "zeroshot":
        return
    if task == "trajectory":
        raise ConfigError(
            f"{where}.select.strategy: zeroshot scores a pre-trained model, and trajectory "
            "models train from scratch: use halving"
        )
    for j, name in enumerate(exp["backbones"]):
        hub_classifier = exp["dataset"] == "imagenet" and config["backbones"][name].get(
            "pretrained"
        )
        if task not in (config.get("pretrain") or {}) and not hub_classifier:
            raise ConfigError(
                f"{where}.backbones[{j}]: zeroshot scores a model trained for the task as it is, "
                f"and {name!r} on {exp['dataset']} starts with a fresh head (no pretrain.{task}, "
                "not a hub ImageNet classifier): use halving"
            )


def resolve_selections(config: dict[str, Any]) -> list[Selection]:
    """Every selection the (schema-validated, :func:`resolve`-checked) config asks for."""
    found: list[Selection] = []
    for where, exp in experiments(config):
        settings = exp.get("select")
        if settings is None:
            continue
        _check_experiment(config, exp, where)
        grid = itertools.product(
            experiment_datasets(exp, where),
            exp["backbones"],
            exp["groups"],
            exp.get("filters", ["shrink"]),
            exp.get("seeds", [0]),
        )
        for dataset, backbone, group, filter, seed in grid:
            selection = Selection(
                strategy=settings["strategy"],
                task=exp["task"],
                dataset=dataset,
                backbone=backbone,
                group=group,
                filter=filter,
                seed=int(seed),
                candidates=tuple(sorted(float(b) for b in exp["softness"])),
                softness_pos=exp.get("softness_pos"),
                metric=settings.get("metric") or DEFAULT_METRIC[exp["task"]],
                epochs=_finetune_epochs(config, exp["task"], backbone),
                eta=settings.get("eta", 3),
                rule=settings.get("rule", "best"),
                tolerance=settings.get("tolerance", 0.02),
            )
            _check_selection(selection, where)
            found.append(selection)
    twice = [key for key, n in Counter((s.strategy, *s.key) for s in found).items() if n > 1]
    if twice:
        raise ConfigError(f"experiments: the same selection is asked for twice: {twice[0]}")
    return found


def _check_selection(selection: Selection, where: str) -> None:
    if len(set(selection.candidates)) != len(selection.candidates):
        raise ConfigError(f"{where}.softness: a candidate is listed twice")
    if selection.strategy == "halving":
        try:
            selection.rung_ends  # noqa: B018 (raises for a schedule too short for the rungs)
        except ValueError as error:
            raise ConfigError(f"{where}.select.eta: {selection.backbone}: {error}") from error
