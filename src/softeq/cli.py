"""``softeq <stage>``: the entry points the workflow rules call, one per pipeline stage.

Every stage takes explicit inputs and outputs and writes its outputs atomically.  Structured
settings (model spec, softening, recipe, evaluation) arrive as JSON objects, which the rules
build from the validated config; nothing is evaluated as code.  ``--task`` picks the task
(classification, segmentation, trajectory; softeq.stages holds one module per task).

    softeq prepare-data --dataset digits --out resources/data/digits.safetensors
    softeq pretrain   --task T --data D --backbone-spec JSON --recipe JSON --seed S --out P
    softeq projectors --task T --backbone-spec JSON --softening JSON --out DIR
    softeq finetune   --task T --data D [--init P] --backbone-spec JSON --softening JSON \\
                      --projectors DIR --recipe JSON --seed S --out model.pt
    softeq evaluate   --task T --data D --model model.pt --projectors DIR --eval JSON \\
                      --seed S --dataset NAME --backbone NAME --out metrics.json
    softeq aggregate  --out-dir results/tables METRICS.json ...
    softeq figures    --tables results/tables --prefix classification_digits --out-dir DIR
    softeq figure2    --summary classification_digits69_summary.csv --backbone cnn --out PNG
    softeq regression --dataset o5-s30 --protocol JSON --backbone-spec JSON --backbone NAME \\
                      --softening JSON --recipe JSON --model-out model.pt --out metrics.json
    softeq regression-table --out-stem results/tables/regression_o5 SUMMARY.csv ...
    softeq regression-figure --table results/tables/regression_o5.csv --out PNG
    softeq so3-demo   --hidden 16 --depth 2 --softness 0,0.5,1 --out so3_demo.csv
    softeq figure-so3 --table so3_demo.csv --out so3_demo.png
    softeq check-config config/paper.yaml     # what the workflow checks, before any job

``softeq <stage> --help`` describes every option.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from typing import Any

__all__ = ["build_parser", "main"]


def _json_object(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise argparse.ArgumentTypeError(f"not valid JSON: {error}") from error
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("expected a JSON object")
    return value


def _softening(text: str):
    from softeq.spec import Softening

    try:
        return Softening.from_json(text, "--softening")
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from error


def _softness_list(text: str) -> list[float]:
    from softeq.filters import check_softness

    try:
        return [check_softness(float(b)) for b in text.split(",")]
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"{text!r}: {error}") from error


def _group(text: str) -> str:
    from softeq.groups import parse_group

    try:
        return parse_group(text).name
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from error


def _task_stage(name: str):
    def run(args: argparse.Namespace) -> None:
        from softeq.stages import task_module

        module = task_module(args.task)
        if not hasattr(module, name):
            raise SystemExit(f"the {args.task} task has no {name} stage")
        getattr(module, name)(args)

    return run


def cmd_check_config(args: argparse.Namespace) -> None:
    from softeq.pipeline import ConfigError, Plan, load_config, validate_config

    try:
        config = validate_config(load_config(args.config), args.schema)
        plan = Plan(config)
    except ConfigError as error:
        text = str(error)
        raise SystemExit(
            text if text.startswith(args.config) else f"{args.config}: {text}"
        ) from error
    print(f"{args.config}: valid; {len(plan.runs)} runs on {len(plan.datasets)} datasets")


def cmd_prepare_data(args: argparse.Namespace) -> None:
    from softeq.stages.data import prepare_data

    prepare_data(args)


def cmd_aggregate(args: argparse.Namespace) -> None:
    from softeq.results.aggregate import aggregate

    for path in aggregate(args.metrics, args.out_dir):
        print(path)


def cmd_figures(args: argparse.Namespace) -> None:
    from softeq.figures.render import render_all

    for path in render_all(args.tables, args.prefix, args.out_dir):
        print(path)


def _lazy_stage(module: str, name: str):
    """The stage ``softeq.stages.<module>.<name>``, imported when it runs (a fast --help)."""

    def run(args: argparse.Namespace) -> None:
        import importlib

        getattr(importlib.import_module(f"softeq.stages.{module}"), name)(args)

    return run


def _figure_stage(name: str):
    return _lazy_stage("figures", name)


def _so3_stage(name: str):
    return _lazy_stage("so3_demo", name)


Stage = Callable[..., argparse.ArgumentParser]
TASKS = ("classification", "segmentation", "trajectory")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="softeq", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="stage", required=True, metavar="<stage>")

    def stage(name: str, func, help: str, compute: bool = True) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=help)
        p.set_defaults(func=func)
        if compute:
            p.add_argument("--task", default="classification", choices=TASKS, help="the task")
            p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto")
            p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: all)")
        return p

    _add_data_stages(stage)
    _add_training_stages(stage)
    _add_result_stages(stage)
    _add_regression_stages(stage)
    _add_so3_stages(stage)
    _add_selection_stages(stage)
    return parser


def _add_data_stages(stage: Stage) -> None:
    """Config checking and dataset preparation."""
    p = stage("check-config", cmd_check_config, "check a config as the workflow does", False)
    p.add_argument("config", help="the config file (YAML or JSON)")
    p.add_argument(
        "--schema",
        default="workflow/schemas/config.schema.yaml",
        help="the workflow's config schema (default: the repository's)",
    )

    p = stage("prepare-data", cmd_prepare_data, "build, fetch or check a dataset", compute=False)
    p.add_argument(
        "--dataset",
        required=True,
        help="digits, vocdigits, synthetic, voc, ethucy, imagenet, cifar10 or cifar100",
    )
    p.add_argument("--root", help="a local copy, or where a provided dataset lies")
    p.add_argument(
        "--source", default="folder", help="imagenet: folder, archives, huggingface or imagenette"
    )
    p.add_argument("--sha256", help="imagenette: the pinned sha256 of its archive")
    p.add_argument("--protocol", type=_json_object, help="dataset protocol settings (JSON)")
    p.add_argument("--downloads", help="folder for downloaded archives")
    p.add_argument("--out", required=True, help="the dataset manifest (or embedded file) to write")


def _add_training_stages(stage: Stage) -> None:
    """Projectors, training and evaluation: the stages that build models."""

    def model_and_data(p: argparse.ArgumentParser, data_required: bool = True) -> None:
        p.add_argument("--data", required=data_required, help="the dataset manifest or file")
        p.add_argument(
            "--backbone-spec", type=_json_object, required=True, help="the model spec (JSON)"
        )

    def training(p: argparse.ArgumentParser) -> None:
        p.add_argument("--recipe", type=_json_object, required=True, help="the recipe (JSON)")
        p.add_argument("--seed", type=int, default=0, help="training seed")
        p.add_argument("--checkpoint", help="resumable training state (written every epoch)")
        p.add_argument("--out", required=True, help="the trained model file to write")

    softening = {"type": _softening, "required": True, "help": "a softening setting (JSON)"}
    p = stage("pretrain", _task_stage("pretrain"), "train a plain model standing in for hub ones")
    model_and_data(p)
    training(p)

    p = stage("projectors", _task_stage("projectors"), "build and save a model's projectors")
    model_and_data(p, data_required=False)
    p.add_argument("--dataset", default="", help="dataset name (trajectories: family-scene)")
    p.add_argument("--softening", **softening)
    p.add_argument("--out", required=True, help="folder for projector files + manifest.json")

    p = stage("finetune", _task_stage("finetune"), "soften a model and fine-tune (or train) it")
    model_and_data(p)
    p.add_argument("--dataset", default="", help="dataset name (trajectories: family-scene)")
    p.add_argument("--init", help="plain model to start from (default: the spec's weights)")
    p.add_argument("--softening", **softening)
    p.add_argument("--projectors", help="folder of projector files (from `softeq projectors`)")
    p.add_argument(
        "--invalidates",
        nargs="*",
        default=[],
        help="files derived from --out (the run's metrics), removed before training starts",
    )
    training(p)
    p.add_argument(
        "--until-epoch",
        type=int,
        help="stop after this epoch of the recipe's schedule (a halving rung; 0: no training)",
    )
    p.add_argument("--resume-from", help="a previous rung's state (--state-out) to continue")
    p.add_argument("--state-out", help="write the training state for the next rung here")
    p.add_argument("--train-split", default="train", help="the split to train on")
    p.add_argument("--val-split", default="val", help="the held-out split (select_epoch)")

    p = stage("evaluate", _task_stage("evaluate"), "metrics, errors and bounds as JSON")
    p.add_argument("--data", required=True, help="the dataset manifest or file")
    p.add_argument("--split", default="test", help="the split to evaluate on")
    p.add_argument("--model", required=True, help="the trained model file")
    p.add_argument("--projectors", help="folder of projector files (from `softeq projectors`)")
    p.add_argument("--eval", type=_json_object, default={}, help="evaluation settings (JSON)")
    p.add_argument("--seed", type=int, default=0, help="evaluation seed (rotation angles)")
    p.add_argument("--dataset", required=True, help="dataset name for the tables")
    p.add_argument("--backbone", required=True, help="model name for the tables")
    p.add_argument("--out", required=True, help="the metrics JSON to write")


def _add_result_stages(stage: Stage) -> None:
    """The stages that read metrics, tables or a plain model: tables, figures, ablations."""
    from softeq.filters import FILTERS

    p = stage("aggregate", cmd_aggregate, "tables from metrics JSONs", compute=False)
    p.add_argument("--out-dir", required=True, help="folder for the tables")
    p.add_argument("metrics", nargs="+", help="metrics JSON files of one (task, dataset)")

    p = stage("figures", cmd_figures, "figures from the aggregated tables", compute=False)
    p.add_argument("--tables", required=True, help="folder of the aggregated tables")
    p.add_argument("--prefix", required=True, help="{task}_{dataset} of the tables to plot")
    p.add_argument("--out-dir", required=True, help="folder for the figures")

    p = stage("figure1", _figure_stage("figure1"), "Figure 1: kernels, features, error maps")
    model = p.add_mutually_exclusive_group(required=True)
    model.add_argument("--model", help="a plain classifier checkpoint")
    model.add_argument("--backbone-spec", type=_json_object, help="a model spec (hub weights)")
    p.add_argument("--group", type=_group, default="C4", help="the group (C4, C18, D4, flip)")
    p.add_argument("--filter", choices=FILTERS, default="shrink", help="the softness filter")
    p.add_argument(
        "--softness",
        type=_softness_list,
        default=[0.0, 0.25, 0.5, 0.75, 1.0],
        help="comma-separated b values (default 0,0.25,0.5,0.75,1)",
    )
    p.add_argument("--title", help="the figure's title (default: the model's name)")
    p.add_argument("--out", required=True, help="the PNG to write")

    p = stage(
        "paper-table", _figure_stage("paper_table"), "a paper table from summaries", compute=False
    )
    p.add_argument("--task", required=True, choices=TASKS, help="whose paper table")
    p.add_argument("--out-stem", required=True, help="path without suffix: .csv, .md, .tex")
    p.add_argument("--reported", action="store_true", help="add the paper's reported numbers")
    p.add_argument("summaries", nargs="+", help="summary tables of the task's datasets")

    p = stage(
        "ablation-filters", _figure_stage("ablation_filters"), "filters compared", compute=False
    )
    p.add_argument("--summary", required=True, help="a summary table with several filters")
    p.add_argument("--out-stem", required=True, help="path without suffix: .csv, .md, .tex")

    p = stage(
        "figure2", _figure_stage("figure2"), "Figure 2: soft equivariance vs RPP", compute=False
    )
    p.add_argument("--summary", required=True, help="the dataset's classification summary table")
    p.add_argument("--backbone", required=True, help="the backbone whose runs to draw")
    p.add_argument("--out", required=True, help="the PNG to write")

    p = stage(
        "construction-timing",
        _figure_stage("construction_timing"),
        "projector construction: block-Schur against dense SVD",
        compute=False,
    )
    p.add_argument(
        "--case",
        choices=("pairs", "grid"),
        default="pairs",
        help="pairs: SO(2) pair layers by width; grid: the paper's map on a k x k grid",
    )
    p.add_argument("--widths", default="8,16,32", help="pairs: comma-separated widths")
    p.add_argument("--dense-limit", type=int, default=32, help="pairs: largest dense width")
    p.add_argument("--grids", default="4,5,6", help="grid: k of the measured dense SVDs")
    p.add_argument("--schur-grids", default="4,8,14", help="grid: further k for block-Schur")
    p.add_argument("--target-grid", type=int, default=14, help="grid: k of the extrapolation")
    p.add_argument("--group", default="C4", help="grid: the group (a normal generator: C2, C4)")
    p.add_argument("--out-stem", required=True, help="path without suffix of the timing table")
    p.add_argument("--png", required=True, help="the figure to write")


def _regression_stage(name: str):
    return _lazy_stage("regression", name)


def _add_regression_stages(stage: Stage) -> None:
    """The O(5) regression experiment: one job per run, then its table and figure."""
    p = stage("regression", _regression_stage("regression"), "train + evaluate one run", False)
    p.set_defaults(task="regression")
    p.add_argument("--dataset", required=True, help="o5-s<noise in hundredths>, e.g. o5-s30")
    p.add_argument("--protocol", type=_json_object, default={}, help="split sizes, seed (JSON)")
    p.add_argument(
        "--backbone-spec", type=_json_object, required=True, help="the model spec (JSON)"
    )
    p.add_argument("--backbone", required=True, help="model name for the tables")
    p.add_argument("--softening", type=_softening, required=True, help="a softening (JSON)")
    p.add_argument("--recipe", type=_json_object, default={}, help="the recipe (JSON)")
    p.add_argument("--seed", type=int, default=0, help="training seed")
    p.add_argument("--eval-seed", type=int, default=0, help="seed of the group elements")
    p.add_argument("--checkpoint", help="resumable training state (written every epoch)")
    p.add_argument("--model-out", required=True, help="the trained model file to write")
    p.add_argument("--out", required=True, help="the metrics JSON to write")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: all)")

    p = stage("regression-table", _regression_stage("regression_table"), "the O(5) table", False)
    p.add_argument("--out-stem", required=True, help="path without suffix: .csv, .md")
    p.add_argument("summaries", nargs="+", help="summary tables of the family's datasets")

    p = stage("regression-figure", _regression_stage("regression_figure"), "the O(5) figure", False)
    p.add_argument("--table", required=True, help="the table of `softeq regression-table`")
    p.add_argument("--out", required=True, help="the PNG to write")


def _add_so3_stages(stage: Stage) -> None:
    """The SO(3) demo: its per-sample error table, and the box plots drawn from it."""
    from softeq.filters import FILTERS

    p = stage("so3-demo", _so3_stage("so3_demo"), "SO(3) demo: equivariance errors over b", False)
    p.add_argument("--hidden", type=int, default=16, help="hidden width of the MLP")
    p.add_argument("--depth", type=int, default=2, help="hidden layers (0: one linear map)")
    p.add_argument(
        "--softness",
        type=_softness_list,
        default=[round(0.1 * i, 1) for i in range(11)],
        help="comma-separated b values (default 0,0.1,...,1)",
    )
    p.add_argument("--samples", type=int, default=500, help="(x, R) pairs per initialisation")
    p.add_argument("--models", type=int, default=4, help="random initialisations")
    p.add_argument("--vectors", type=int, default=5, help="input 3-vectors (in_rep = vectors*V)")
    p.add_argument("--seed", type=int, default=0, help="seed of weights, inputs and rotations")
    p.add_argument("--filter", choices=FILTERS, default="shrink", help="the softness filter")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: all)")
    p.add_argument("--out", required=True, help="the CSV of per-sample errors to write")

    p = stage("figure-so3", _so3_stage("figure_so3"), "SO(3) demo: box plots", compute=False)
    p.add_argument("--table", required=True, help="the CSV `softeq so3-demo` wrote")
    p.add_argument("--out", required=True, help="the PNG to write")


def _add_selection_stages(stage: Stage) -> None:
    """Softness selection (docs/selection.md): decisions, a selection's summary, its report."""
    run = lambda name: _lazy_stage("selection", name)  # noqa: E731
    p = stage("select", run("decision"), "rank candidates: a halving rung or zeroshot", False)
    p.add_argument("--metric", required=True, help="the validation metric that ranks them")
    p.add_argument("--keep", type=int, help="halving: how many go on (else: zeroshot's rule)")
    p.add_argument("--rule", choices=("best", "tolerance"), default="best", help="zeroshot rule")
    p.add_argument("--tolerance", type=float, default=0.0, help="zeroshot: relative tolerance")
    p.add_argument("--rung", type=int, default=0, help="halving: the rung")
    p.add_argument("--until-epoch", type=int, default=0, help="halving: the rung's last epoch")
    p.add_argument("--out", required=True, help="the decision JSON to write")
    p.add_argument("scores", nargs="+", help="the candidates' validation metrics JSONs")

    p = stage("selection-summary", run("summary"), "a selection's record", compute=False)
    p.add_argument("--epochs", type=int, required=True, help="epochs of the full schedule")
    p.add_argument("--decisions", nargs="+", required=True, help="decision JSONs, in order")
    p.add_argument("--test", required=True, help="the chosen model's test metrics JSON")
    p.add_argument("--costs", nargs="*", default=[], help="benchmark files of its jobs")
    p.add_argument("--sweep", nargs="*", default=[], help="the full sweep's test metrics")
    p.add_argument("--sweep-costs", nargs="*", default=[], help="the full sweep's benchmarks")
    p.add_argument("--out", required=True, help="the selection JSON to write")

    p = stage("selection-report", run("report"), "selection table and figure", compute=False)
    p.add_argument("--table", required=True, help="the CSV to write (and a .md beside it)")
    p.add_argument("--study", required=True, help="the study CSV (against the full sweep)")
    p.add_argument("--figure", required=True, help="the PNG to write")
    p.add_argument("summaries", nargs="+", help="selection JSONs")


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    args.func(args)


if __name__ == "__main__":
    main()
