"""Where every file of a config's runs goes, and what each rule reads (docs/conventions.md §2).

The Snakemake rules are path plumbing: their path patterns, input functions, targets and the
JSON arguments they hand to ``softeq <stage>`` all come from one :class:`Plan` of the validated
config.  Input functions take Snakemake's ``wildcards`` object (anything with the attributes).
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Any

from softeq.filters import RPP
from softeq.pipeline.config import Run, resolve
from softeq.pipeline.select_plan import TRIAL_PATTERN, SelectionPlan
from softeq.spec import PATH_TEMPLATE, WILDCARD_PATTERNS, Softening

__all__ = [
    "DOWNLOADED_FAMILIES",
    "DOWNLOADED_TENSORS",
    "EMBEDDED_FAMILIES",
    "EMBEDDED_TENSORS",
    "FIGURES",
    "PAPER_TABLES",
    "REGRESSION",
    "REGRESSION_DIR",
    "RUN_DIR",
    "TABLES",
    "WILDCARDS",
    "Plan",
    "family_of",
]

RUN_DIR = "{task}/{dataset}/{backbone}/" + PATH_TEMPLATE
"""A run's folder below results/ (and its projectors' below resources/projectors/)."""

REGRESSION = "regression"
"""The regression task: one job per run (rule ``regression``), its own table and figure."""
REGRESSION_DIR = "regression/{dataset}/{backbone}/" + PATH_TEMPLATE + "/seed~{seed}"
"""A regression run's folder below results/ (the task is spelled out: the generic rules'
``task`` wildcard never matches it)."""

WILDCARDS = {
    "task": r"classification|segmentation|trajectory",
    "dataset": r"[a-z0-9]+(-[a-z0-9]+)?",
    "backbone": r"[a-z0-9]+",
    **WILDCARD_PATTERNS,
    "seed": r"[0-9]+",
    "rung": r"[0-9]+",
    "trial": TRIAL_PATTERN,
    "split": r"val|test",
    "strategy": r"halving|zeroshot",
}
"""Regular expressions constraining every wildcard of the workflow."""

TABLES = ("summary", "runs", "bounds", "angles")
FIGURES = ("tunability", "bounds", "angles")
EMBEDDED_FAMILIES = ("vocdigits", "synthetic")  # built offline from a protocol
# fetched (checksummed) unless a local root is given
DOWNLOADED_FAMILIES = ("voc", "ethucy", "cifar10", "cifar100")
PAPER_TABLES = {
    "cifar": ("classification", ("cifar10", "cifar100")),
    "figure2": ("classification", ("mnist", "digits69")),  # the tunability study's numbers
}
"""Paper tables of their own: name -> (task, dataset families); these families stay out of
the task's table (``paper_<task>.csv``) and go to ``paper_<name>.csv``."""
# classification sets stored as tensors (<name>.safetensors) beside the embedded digits:
EMBEDDED_TENSORS = ("digits69",)  # built offline from a protocol (the 6 / 9 construction)
DOWNLOADED_TENSORS = ("mnist",)  # fetched (md5-checked) unless a local root is given


def family_of(dataset: str) -> str:
    """The dataset family: trajectory datasets are named ``<family>-<scene>``."""
    return dataset.split("-", 1)[0]


def _json(value: Any) -> str:
    return json.dumps(value, sort_keys=True)


def _paths(value: Any) -> list[str]:
    """A Snakemake named input as a list of paths (it is a string or a list of them)."""
    return [value] if isinstance(value, str) else [str(path) for path in value]


class Plan:
    """The file plan of one validated config."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config
        self.results = config["results"]
        self.resources = config["resources"]
        self.runs: list[Run] = resolve(config)
        self.datasets = sorted({(run.task, run.dataset) for run in self.runs})
        self.tasks = sorted({run.task for run in self.runs})
        self.families = sorted({family_of(dataset) for _, dataset in self.datasets})
        self.run_dir = f"{self.results}/{RUN_DIR}/seed~{{seed}}"
        self.projectors_dir = f"{self.resources}/projectors/{RUN_DIR}"
        self.log_stem = f"{RUN_DIR}/seed~{{seed}}"
        self.benchmarks = f"{self.results}/benchmarks"  # Snakemake's per-job benchmark files
        self.select = SelectionPlan(config, self.run_dir, self.benchmarks)

    # ---- job arguments -----------------------------------------------------------------------

    def data_file(self, wildcards: Any) -> str:
        """The file a job reads for its dataset: a tensor file (the embedded digits and their
        siblings), or a dataset manifest."""
        if wildcards.dataset in ("digits", *EMBEDDED_TENSORS, *DOWNLOADED_TENSORS):
            return f"{self.resources}/data/{wildcards.dataset}.safetensors"
        return f"{self.resources}/data/{family_of(wildcards.dataset)}.json"

    def backbone_spec(self, wildcards: Any) -> str:
        """The backbone's model spec (JSON), without its recipe and evaluation overrides."""
        return _json(self._model_spec(wildcards.backbone))

    def recipe(self, stage: str, task: str, backbone: str) -> dict[str, Any]:
        """The task's recipe of ``stage``, with the backbone's overrides when fine-tuning."""
        recipe = dict((self.config.get(stage) or {}).get(task, {}).get("recipe", {}))
        if stage == "finetune":
            recipe.update(self.config["backbones"][backbone].get("recipe", {}))
        return recipe

    def recipe_json(self, stage: str):
        """An input function giving the recipe of ``stage`` as JSON."""
        return lambda wildcards: _json(self.recipe(stage, wildcards.task, wildcards.backbone))

    def pretrain_seed(self, wildcards: Any) -> int:
        return self.config["pretrain"][wildcards.task]["seed"]

    def eval_settings(self, wildcards: Any) -> str:
        """The task's evaluation settings, with the backbone's overrides (e.g. its angle)."""
        settings = dict(self.config["evaluate"][wildcards.task])
        settings.update(self.config["backbones"][wildcards.backbone].get("eval", {}))
        return _json(settings)

    @staticmethod
    def softening(wildcards: Any) -> str:
        """The ``--softening`` JSON of a job, from its path's wildcards."""
        return Softening.from_wildcards(wildcards).to_json()

    def device_args(self) -> str:
        return f"--device {self.config['device']} --threads {self.config['threads']}"

    def gpus(self, wildcards: Any) -> int:
        """GPUs a training job requests: none for a model without weights."""
        spec = self.config["backbones"][wildcards.backbone]
        return 0 if spec.get("preset") == "constant_velocity" else self.config["gpus"]

    def launcher(self, wildcards: Any) -> str:
        """torchrun for data-parallel training on several GPUs, the plain CLI otherwise."""
        gpus = self.gpus(wildcards)
        if gpus > 1:
            return f"torchrun --standalone --nproc_per_node={gpus} -m softeq.cli"
        return "softeq"

    def pretrained_model(self, wildcards: Any) -> list[str]:
        """The stand-in pre-trained model a fine-tune starts from (none without ``pretrain``)."""
        if wildcards.task not in self.config["pretrain"]:
            return []
        w = wildcards
        backbone = self.pretrain_backbone(w.backbone)
        return [f"{self.results}/{w.task}/{w.dataset}/{backbone}/pretrained/model.pt"]

    def pretrain_backbone(self, name: str) -> str:
        """The backbone whose stand-in pre-trained model a fine-tune of ``name`` starts from:
        itself, or for a backbone with ``canonicalize`` the backbone of the same model spec
        without it (the canonicalizer starts fresh, as the reference's on hub weights)."""
        backbones = self.config["backbones"]
        if "canonicalize" not in backbones[name]:
            return name
        plain = {k: v for k, v in self._model_spec(name).items() if k != "canonicalize"}
        same = [other for other in backbones if other != name and self._model_spec(other) == plain]
        return same[0] if same else name

    def _model_spec(self, name: str) -> dict[str, Any]:
        spec = dict(self.config["backbones"][name])
        for key in ("recipe", "eval", "exact"):  # passed separately, or not a model setting
            spec.pop(key, None)
        return spec

    @staticmethod
    def init_arg(wildcards: Any, input: Any) -> str:
        """``--init <model>`` when the fine-tune starts from a pre-trained file, else nothing."""
        paths = _paths(input.init)
        return f"--init {shlex.quote(paths[0])}" if paths else ""

    def metrics_file(self, wildcards: Any) -> str:
        """The metrics of a run: what a new fine-tune of that run makes stale."""
        return self.run_dir.format(**dict(wildcards.items())) + "/metrics.json"

    def prepare_protocol(self, wildcards: Any) -> str:
        """The protocol JSON of a dataset family's prepare job (its root travels apart)."""
        settings = dict(self.config["datasets"][wildcards.family])
        if wildcards.family == "vocdigits":
            return _json({"build": settings})
        settings.pop("root", None)
        return _json(settings)

    def dataset_root(self, wildcards: Any) -> str:
        return self.config["datasets"][wildcards.family].get("root") or ""

    def prepare_inputs(self, wildcards: Any) -> list[str]:
        """The data files of a configured ETH/UCY root (every ``*.txt`` below it): inputs of the
        prepare job, so that an edited or added file reruns it and its checksum check fails on
        the change.  Nothing for a download or for VOC (too many files to track one by one)."""
        root = self.dataset_root(wildcards)
        if wildcards.family != "ethucy" or not root:
            return []
        return sorted(str(path) for path in Path(root).expanduser().rglob("*.txt"))

    def imagenet_args(self) -> str:
        """``--source S --root R [--sha256 H]`` of the ImageNet manifest job, shell-quoted."""
        settings = self.config["datasets"]["imagenet"]
        args = ["--source", settings["source"], "--root", settings["root"] or ""]
        if settings["imagenette_sha256"]:
            args += ["--sha256", settings["imagenette_sha256"]]
        return shlex.join(args)

    # ---- outputs and targets -----------------------------------------------------------------

    # ---- the regression task ----------------------------------------------------------------

    def regression_recipe(self, wildcards: Any) -> str:
        """The regression recipe of the job's backbone (task recipe + backbone overrides)."""
        return _json(self.recipe("finetune", REGRESSION, wildcards.backbone))

    def regression_protocol(self) -> str:
        """The split sizes and seed of the O(5) data (``datasets.o5``), as JSON."""
        return _json(self.config["datasets"]["o5"])

    def regression_families(self) -> list[str]:
        return sorted({family_of(d) for t, d in self.datasets if t == REGRESSION})

    def regression_summaries(self, wildcards: Any) -> list[str]:
        """The summary tables of every dataset (noise level) of the family ``wildcards.family``."""
        return [
            f"{self.results}/tables/{REGRESSION}_{dataset}_summary.csv"
            for task, dataset in self.datasets
            if task == REGRESSION and family_of(dataset) == wildcards.family
        ]

    def regression_outputs(self, families: set[str] | None = None) -> list[str]:
        """The table and the figure of every (or the given) regression family."""
        return [
            path
            for family in self.regression_families()
            if families is None or family in families
            for path in (
                f"{self.results}/tables/{REGRESSION}_{family}.csv",
                f"{self.results}/figures/{REGRESSION}_{family}.png",
            )
        ]

    def metrics_for(self, task: str, dataset: str) -> list[str]:
        return [
            f"{self.results}/{run.path}/metrics.json"
            for run in self.runs
            if (run.task, run.dataset) == (task, dataset)
        ]

    def tables_for(self, task: str, dataset: str) -> list[str]:
        return [f"{self.results}/tables/{task}_{dataset}_{name}.csv" for name in TABLES]

    def figures_for(self, task: str, dataset: str) -> list[str]:
        return [f"{self.results}/figures/{task}_{dataset}_{name}.png" for name in FIGURES]

    def summaries_of(self, task: str) -> list[str]:
        """The summaries of the task's paper table: its datasets outside :data:`PAPER_TABLES`."""
        own = {family for t, families in PAPER_TABLES.values() if t == task for family in families}
        return [
            f"{self.results}/tables/{task}_{dataset}_summary.csv"
            for t, dataset in self.datasets
            if t == task and family_of(dataset) not in own
        ]

    def table_summaries(self, name: str) -> list[str]:
        """The summaries of the paper table ``name`` of :data:`PAPER_TABLES`."""
        task, families = PAPER_TABLES[name]
        return [
            f"{self.results}/tables/{task}_{dataset}_summary.csv"
            for t, dataset in self.datasets
            if t == task and family_of(dataset) in families
        ]

    @staticmethod
    def table_task(wildcards: Any) -> str:
        """The task whose columns the paper table ``wildcards.table`` shows."""
        return PAPER_TABLES[wildcards.table][0]

    def filter_ablations(self) -> list[tuple[str, str]]:
        """(task, dataset) pairs with several spectral filters at one softness: the filter
        comparison (``rpp``, a method of its own, is compared in Figure 2 instead)."""
        filters: dict[tuple, set[str]] = {}
        for run in self.runs:
            if run.softening.filter == RPP or run.task == REGRESSION:
                continue
            key = (run.task, run.dataset, run.backbone, run.softening.softness)
            filters.setdefault(key, set()).add(run.softening.filter)
        return sorted({key[:2] for key, names in filters.items() if len(names) > 1})

    def figure1_outputs(self) -> list[str]:
        return [f"{self.results}/figures/figure1_{b}.png" for b in self.figure1_backbones()]

    def figure1_backbones(self) -> list[str]:
        return list(self.config["figure1"]["backbones"])

    def figure1_model(self, wildcards: Any) -> list[str]:
        """The plain classifier of Figure 1: the stand-in pre-trained model, else hub weights."""
        if "classification" not in self.config["pretrain"]:
            return []
        dataset = self.config["figure1"]["dataset"]
        return [f"{self.results}/classification/{dataset}/{wildcards.backbone}/pretrained/model.pt"]

    def figure1_args(self, wildcards: Any, input: Any) -> str:
        """The arguments of ``softeq figure1``: the model file, or the spec for hub weights."""
        settings = self.config["figure1"]
        models = _paths(input.model)
        args = (
            ["--model", models[0]] if models else ["--backbone-spec", self.backbone_spec(wildcards)]
        )
        args += ["--group", settings["group"], "--filter", settings["filter"]]
        args += ["--softness", ",".join(str(b) for b in settings["softness"])]
        return shlex.join(str(arg) for arg in args)

    def figure2_outputs(self) -> list[str]:
        """Figure 2 (soft equivariance against RPP) of the configured dataset, if any."""
        dataset = (self.config.get("figure2") or {}).get("dataset")
        return [f"{self.results}/figures/figure2_{dataset}.png"] if dataset else []

    def figure2_summary(self, wildcards: Any) -> str:
        """The summary table Figure 2 reads (it never retrains)."""
        return f"{self.results}/tables/classification_{wildcards.dataset}_summary.csv"

    def so3_demo_outputs(self) -> list[str]:
        """The SO(3) demo's figure, when the config sets ``so3_demo`` (its table comes with it)."""
        demo = self.config.get("so3_demo") is not None
        return [f"{self.results}/figures/so3_demo.png"] if demo else []

    def so3_demo_args(self) -> str:
        """The settings of ``softeq so3-demo``, shell-quoted ("" when the demo is off)."""
        settings = self.config.get("so3_demo")
        if settings is None:
            return ""
        args = ["--softness", ",".join(str(b) for b in settings["softness"])]
        for key in ("hidden", "depth", "samples", "models", "vectors", "seed", "filter"):
            args += [f"--{key}", settings[key]]
        return shlex.join(str(arg) for arg in args)

    def construction_timing_args(self) -> str:
        """The measurement settings of ``softeq construction-timing``, shell-quoted."""
        settings = self.config["construction_timing"]
        join = lambda values: ",".join(str(v) for v in values)  # noqa: E731
        args = ["--case", settings["case"], "--widths", join(settings["widths"])]
        args += ["--dense-limit", settings["dense_limit"], "--grids", join(settings["grids"])]
        args += ["--schur-grids", join(settings["schur_grids"])]
        args += ["--target-grid", settings["target_grid"], "--group", settings["group"]]
        return shlex.join(str(arg) for arg in args)

    def paper_outputs(self) -> list[str]:
        """Figures 1 and 2, the paper tables and the ablations."""
        outputs = self.figure1_outputs() + self.figure2_outputs() + self.so3_demo_outputs()
        outputs += [
            f"{self.results}/tables/paper_{task}.csv"
            for task in self.tasks
            if task != REGRESSION and self.summaries_of(task)
        ]
        outputs += [
            f"{self.results}/tables/paper_{name}.csv"
            for name in PAPER_TABLES
            if self.table_summaries(name)
        ]
        outputs += [
            f"{self.results}/tables/ablation_filters_{t}_{d}.csv"
            for t, d in self.filter_ablations()
        ]
        outputs.append(f"{self.results}/figures/ablation_construction_timing.png")
        return outputs + self.regression_outputs() + self.select.outputs()

    def figure_targets(self) -> list[str]:
        """Every figure drawn from tables (what ``snakemake figures`` regenerates)."""
        paths = [
            p
            for task, dataset in self.datasets
            if task != REGRESSION
            for p in self.figures_for(task, dataset)
        ]
        paths += [p for p in self.regression_outputs() if p.endswith(".png")]
        return paths + self.figure1_outputs() + self.figure2_outputs() + self.so3_demo_outputs()

    def targets(self, families: set[str] | None = None) -> list[str]:
        """Tables and figures of every (task, dataset), or of the given dataset families (a
        regression family: its datasets' summaries, its table and its figure; and the records
        of the families' softness selections)."""
        return (
            [
                path
                for task, dataset in self.datasets
                if families is None or family_of(dataset) in families
                for path in (
                    self.tables_for(task, dataset)[:1]
                    if task == REGRESSION
                    else self.tables_for(task, dataset) + self.figures_for(task, dataset)
                )
            ]
            + self.regression_outputs(families)
            + (self.select.summaries(families) if families else [])
        )
