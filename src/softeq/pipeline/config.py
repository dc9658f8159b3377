"""Config semantics: which runs a config asks for, checked before any job runs.

The Snakefile validates the config against ``workflow/schemas/config.schema.yaml`` (types, ranges,
unknown keys, defaults) and then :func:`resolve` checks what a schema cannot (an experiment
naming a backbone the config does not define, a group that cannot act on the task) and expands
every experiment into :class:`Run` records.  Errors name the config key.
"""

from __future__ import annotations

import copy
import itertools
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from softeq.data.catalog import ETHUCY_SCENES, SYNTHETIC_SCENES
from softeq.groups import parse_group
from softeq.spec import Softening, format_softness

__all__ = [
    "DATASETS",
    "ConfigError",
    "Run",
    "check_paths",
    "check_regression_backbones",
    "check_rpp_runs",
    "experiment_datasets",
    "experiments",
    "load_config",
    "regression_datasets",
    "resolve",
    "task_of",
    "validate_config",
]

IMAGE_TASKS = {"classification", "segmentation"}


class ConfigError(ValueError):
    """A config that cannot run; the message names the key."""


def _key_path(path) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else f".{part}" if text else str(part)
    return text or "(top level)"


def load_config(path: str | Path) -> dict[str, Any]:
    """Read a YAML (or JSON) config; a syntax error names the file, line and column."""
    import yaml

    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as error:
        raise ConfigError(f"{path}: cannot read the config ({error.strerror})") from error
    try:
        config = yaml.safe_load(text)
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        raise ConfigError(f"{where}: {error.problem or error.context}") from error
    if not isinstance(config, dict):
        raise ConfigError(f"{path}: a config is a mapping of keys at its top level")
    return config


def check_paths(config: dict[str, Any], workdir: str | Path = ".") -> None:
    """``results`` and ``resources`` lie inside the working directory, unless the config sets
    ``allow_outside: true`` (the schema already refused empty paths and shell metacharacters)."""
    if config.get("allow_outside"):
        return
    root = Path(workdir).resolve()
    for key in ("results", "resources"):
        folder = (root / config[key]).resolve()
        if folder == root or not folder.is_relative_to(root):
            where = (
                "the working directory itself"
                if folder == root
                else "outside the working directory"
            )
            raise ConfigError(
                f"config key {key}: {config[key]!r} is {where} ({root}); use a folder "
                "inside it, or set allow_outside: true"
            )


def validate_config(config: dict[str, Any], schema_path: str | Path) -> dict[str, Any]:
    """Check ``config`` against the JSON schema and fill in its defaults, in place.

    Errors name the config key (``experiments[0].softness[2]: 1.5 is greater than ...``); unknown
    keys are rejected by the schema's ``additionalProperties: false``.
    """
    import jsonschema
    import yaml

    from softeq.soften_options import check_config_options

    if isinstance(config.get("backbones"), dict):  # before the schema: its messages name keys
        try:
            check_config_options(config["backbones"])
        except ValueError as error:
            raise ConfigError(f"invalid config:\n  config key {error}") from error
    with open(schema_path) as f:
        schema = yaml.safe_load(f)
    base = jsonschema.validators.validator_for(schema)

    def fill_defaults(validator, properties, instance, schema):
        if isinstance(instance, dict):
            for name, sub in properties.items():
                if isinstance(sub, dict) and "default" in sub:
                    instance.setdefault(name, copy.deepcopy(sub["default"]))
        yield from base.VALIDATORS["properties"](validator, properties, instance, schema)

    validator = jsonschema.validators.extend(base, {"properties": fill_defaults})(schema)
    errors = sorted(validator.iter_errors(config), key=lambda e: list(e.absolute_path))
    if errors:
        lines = [f"config key {_key_path(e.absolute_path)}: {e.message}" for e in errors]
        raise ConfigError("invalid config:\n  " + "\n  ".join(lines))
    if config.get("exact_twins"):
        add_exact_twins(config)
    return config


EXACT_SUFFIX = "exact"


def _override(spec: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    """``spec`` with ``changes``: mappings merged one level deep, a null value removes its key."""
    out = copy.deepcopy(spec)
    for key, value in changes.items():
        if value is None:
            out.pop(key, None)
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            merged = {**out[key], **value}
            out[key] = {k: v for k, v in merged.items() if v is not None}
        else:
            out[key] = copy.deepcopy(value)
    return out


def add_exact_twins(config: dict[str, Any]) -> None:
    """The ``exact_twins`` switch: every backbone with an ``exact`` block gets a twin
    ``<name>exact`` with those changes (softeq's exact method in place of the reference's
    behaviours, docs/fidelity.md), run in every experiment row beside it."""
    from softeq.soften_options import check_config_options

    backbones = config["backbones"]
    twins = {}
    for name, spec in list(backbones.items()):
        if "exact" in spec:
            twin = f"{name}{EXACT_SUFFIX}"
            if twin in backbones:
                raise ConfigError(f"backbones.{name}.exact: {twin!r} is already a backbone")
            twins[name] = twin
            backbones[twin] = _override(
                {k: v for k, v in spec.items() if k != "exact"}, spec["exact"]
            )
    if not twins:
        raise ConfigError("exact_twins: no backbone has an `exact` block")
    try:
        check_config_options({twin: backbones[twin] for twin in twins.values()})
    except ValueError as error:
        raise ConfigError(f"config key {error}") from error
    for _, exp in experiments(config):
        exp["backbones"] = [b for name in exp["backbones"] for b in (name, twins.get(name)) if b]


def experiments(config: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(config key, experiment) of ``experiments`` and then ``extra_experiments``: a second
    config file adds runs under the latter (Snakemake replaces lists when it merges files)."""
    return [
        (f"{key}[{i}]", exp)
        for key in ("experiments", "extra_experiments")
        for i, exp in enumerate(config.get(key) or [])
    ]


@dataclass(frozen=True)
class Run:
    """One fine-tuning + evaluation: a point of an experiment's grid."""

    task: str
    dataset: str
    backbone: str
    softening: Softening
    seed: int

    @property
    def path(self) -> str:
        """``{task}/{dataset}/{backbone}/group~../filter~../b~.._pos~../seed~{seed}``."""
        return f"{self.task}/{self.dataset}/{self.backbone}/{self.softening.path}/seed~{self.seed}"

    def wildcards(self, softening: Softening | None = None) -> SimpleNamespace:
        """The Snakemake wildcards of this run's jobs (with ``softening`` in place of its own),
        what the Plan's input functions take."""
        s = softening or self.softening
        return SimpleNamespace(
            task=self.task,
            dataset=self.dataset,
            backbone=self.backbone,
            group=s.group,
            filter=s.filter,
            softness=format_softness(s.softness),
            softness_pos=format_softness(s.softness_pos),
            seed=str(self.seed),
        )


TASK_OF_SPEC = {
    "timm": "classification",
    "hf": "classification",
    "arch": "segmentation",
    "preset": "trajectory",
    "regressor": "regression",
}
DATASETS = {  # dataset family -> task
    "digits": "classification",
    "digits69": "classification",
    "mnist": "classification",
    "imagenet": "classification",
    "cifar10": "classification",
    "cifar100": "classification",
    "vocdigits": "segmentation",
    "voc": "segmentation",
    "synthetic": "trajectory",
    "ethucy": "trajectory",
    "o5": "regression",  # named o5-s<noise in hundredths> (softeq.data.o5)
}


def task_of(spec: dict[str, Any]) -> str:
    """The task a backbone spec is for, from its defining key (timm / hf / arch / preset)."""
    return next(task for key, task in TASK_OF_SPEC.items() if key in spec)


def check_settings(config: dict[str, Any]) -> None:
    """Build every recipe and evaluation setting the config holds, so that a bad key fails
    before any job runs."""
    from softeq.engine.classification import Recipe
    from softeq.engine.evaluation import EvalSettings
    from softeq.engine.regression import RegressionRecipe
    from softeq.engine.segmentation import SegRecipe
    from softeq.engine.trajectory import TrajectoryRecipe

    classes = {
        "classification": Recipe,
        "segmentation": SegRecipe,
        "trajectory": TrajectoryRecipe,
        "regression": RegressionRecipe,
    }
    checks = [
        (f"{stage}.{task}.recipe", classes[task], settings.get("recipe", {}))
        for stage in ("pretrain", "finetune")
        for task, settings in (config.get(stage) or {}).items()
    ]
    for name, spec in (config.get("backbones") or {}).items():
        if "recipe" in spec:
            task = task_of(spec)
            base = (config.get("finetune") or {}).get(task, {}).get("recipe", {})
            checks.append((f"backbones.{name}.recipe", classes[task], {**base, **spec["recipe"]}))
    evaluate = config.get("evaluate") or {}
    for task, settings in evaluate.items():
        if isinstance(settings, dict):
            checks.append((f"evaluate.{task}", EvalSettings, settings))
    for name, spec in (config.get("backbones") or {}).items():
        if "eval" in spec:
            base = evaluate.get(task_of(spec), {})
            checks.append((f"backbones.{name}.eval", EvalSettings, {**base, **spec["eval"]}))
    for where, cls, values in checks:
        try:
            cls.from_dict(values, where)
        except (TypeError, ValueError) as error:
            message = str(error) if str(error).startswith(where) else f"{where}: {error}"
            raise ConfigError(f"config key {message}") from error


def resolve(config: dict[str, Any]) -> list[Run]:
    """Every run the (schema-validated) config asks for; raises :class:`ConfigError`."""
    backbones = config.get("backbones") or {}
    check_paths(config)
    check_settings(config)
    runs: list[Run] = []
    for where, exp in experiments(config):
        task = exp["task"]
        if DATASETS[exp["dataset"]] != task:
            raise ConfigError(f"{where}.dataset: {exp['dataset']!r} is not a {task} dataset")
        for j, backbone in enumerate(exp["backbones"]):
            if backbone not in backbones:
                raise ConfigError(
                    f"{where}.backbones[{j}]: unknown backbone {backbone!r}; define it under "
                    f"`backbones` (defined: {sorted(backbones)})"
                )
            if task_of(backbones[backbone]) != task:
                raise ConfigError(
                    f"{where}.backbones[{j}]: {backbone!r} is a {task_of(backbones[backbone])} "
                    f"model, not a {task} one"
                )
        for j, name in enumerate(exp["groups"]):
            try:
                group = parse_group(name)
            except ValueError as error:
                raise ConfigError(f"{where}.groups[{j}]: {error}") from error
            if task in IMAGE_TASKS and group.kind == "SO2":
                raise ConfigError(f"{where}.groups[{j}]: SO2 acts on 2-vectors, not on images")
            if task == "trajectory" and group.kind not in ("SO2", "cyclic"):
                raise ConfigError(f"{where}.groups[{j}]: trajectories take SO2 or C<n>")
            if (task == "regression") != (group.kind == "matrix"):
                raise ConfigError(
                    f"{where}.groups[{j}]: {name!r}: regression takes matrix groups (O5), "
                    "and matrix groups act on regression inputs only"
                )
        for j, value in enumerate(exp["softness"]):
            if not 0 <= value <= 1:
                raise ConfigError(f"{where}.softness[{j}]: {value} is outside [0, 1]")
        pos = exp.get("softness_pos")
        if pos is not None and not 0 <= pos <= 1:
            raise ConfigError(f"{where}.softness_pos: {pos} is outside [0, 1]")
        datasets = experiment_datasets(exp, where)
        if task == "regression":
            check_regression_backbones(exp, backbones, where)
        if exp.get("select") is not None:  # its runs are the selection's (pipeline.selections)
            continue
        grid = itertools.product(
            datasets,
            exp["backbones"],
            exp["groups"],
            exp.get("filters", ["shrink"]),
            exp["softness"],
            exp.get("seeds", [0]),
        )
        for dataset, backbone, group, filter, b, seed in grid:
            try:
                softening = Softening(group, b, pos, filter)
            except ValueError as error:
                raise ConfigError(f"{where}: {error}") from error
            runs.append(Run(task, dataset, backbone, softening, int(seed)))
    for j, backbone in enumerate((config.get("figure1") or {}).get("backbones", [])):
        if backbone not in backbones or task_of(backbones[backbone]) != "classification":
            raise ConfigError(f"figure1.backbones[{j}]: {backbone!r} is not a defined classifier")
    duplicates = sorted(p for p, n in Counter(run.path for run in runs).items() if n > 1)
    if duplicates:
        raise ConfigError(f"experiments: the same run is listed twice: {duplicates[0]}")
    check_rpp_runs(config, runs)
    return runs


def experiment_datasets(exp: dict[str, Any], where: str) -> list[str]:
    """The datasets of an experiment: its dataset, one per scene (trajectories, ``eth`` ->
    ``ethucy-eth``) or one per noise level (regression)."""
    task = exp["task"]
    if "scenes" in exp and task != "trajectory":
        raise ConfigError(f"{where}.scenes: only trajectory datasets have scenes")
    if "noise" in exp and task != "regression":
        raise ConfigError(f"{where}.noise: only regression datasets have noise levels")
    if task == "regression":
        return regression_datasets(exp, where)
    if task != "trajectory":
        return [exp["dataset"]]
    known = ETHUCY_SCENES if exp["dataset"] == "ethucy" else SYNTHETIC_SCENES
    scenes = exp.get("scenes") or list(known)
    for j, scene in enumerate(scenes):
        if scene not in known:
            raise ConfigError(f"{where}.scenes[{j}]: {scene!r} is not one of {known}")
    return [f"{exp['dataset']}-{scene}" for scene in scenes]


def regression_datasets(exp: dict[str, Any], where: str) -> list[str]:
    """The regression datasets of an experiment: one per noise level (``o5-s30``)."""
    from softeq.data.o5 import dataset_name

    names = []
    for j, sigma in enumerate(exp.get("noise") or [0.0]):
        try:
            names.append(dataset_name(sigma))
        except ValueError as error:
            raise ConfigError(f"{where}.noise[{j}]: {error}") from error
    return names


def check_regression_backbones(exp: dict[str, Any], backbones: dict[str, Any], where: str) -> None:
    """A plain MLP (``regressor: mlp``) has nothing to soften: it runs at softness 1 only."""
    for j, name in enumerate(exp["backbones"]):
        if backbones[name].get("regressor") != "mlp":
            continue
        if any(b != 1 for b in exp["softness"]) or "rpp" in exp.get("filters", []):
            raise ConfigError(
                f"{where}.backbones[{j}]: {name!r} is a plain mlp: run it at softness [1] "
                "with a spectral filter"
            )


def check_rpp_runs(config: dict[str, Any], runs: list[Run]) -> None:
    """Residual pathway priors (filter rpp) soften conv kernels of image models only, and
    ``figure2`` needs both methods' runs (shrink, rpp) of its dataset and backbone."""
    for run in runs:
        if run.softening.filter == "rpp" and run.task == "trajectory":
            raise ConfigError(
                f"experiments: {run.path}: filter rpp acts on conv kernels, not pairs"
            )
    settings = config.get("figure2") or {}
    dataset, backbone = settings.get("dataset"), settings.get("backbone")
    if dataset is None and backbone is None:
        return
    if dataset is None or backbone is None:
        raise ConfigError("figure2: set both dataset and backbone (or neither)")
    filters = {
        run.softening.filter
        for run in runs
        if (run.task, run.dataset, run.backbone) == ("classification", dataset, backbone)
    }
    missing = sorted({"shrink", "rpp"} - filters)
    if missing:
        raise ConfigError(
            f"figure2: no classification runs of {backbone!r} on {dataset!r} with filter {missing}"
        )
