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


def _task_stage(name: str):
    def run(args: argparse.Namespace) -> None:
        from softeq.stages import task_module

        module = task_module(args.task)
        if not hasattr(module, name):
            raise SystemExit(f"the {args.task} task has no {name} stage")
        getattr(module, name)(args)

    return run


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


def _figure_stage(name: str):
    def run(args: argparse.Namespace) -> None:
        from softeq.stages import figures

        getattr(figures, name)(args)

    return run


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="softeq", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="stage", required=True, metavar="<stage>")

    def stage(name: str, func, help: str, compute: bool = True) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=help)
        p.set_defaults(func=func)
        if compute:
            p.add_argument(
                "--task",
                default="classification",
                choices=("classification", "segmentation", "trajectory"),
            )
            p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto")
            p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: all)")
        return p

    p = stage("prepare-data", cmd_prepare_data, "build, fetch or check a dataset", compute=False)
    p.add_argument("--dataset", required=True)
    p.add_argument("--root", help="a local copy, or where a provided dataset lies")
    p.add_argument(
        "--source", default="folder", help="imagenet: folder, archives, huggingface or imagenette"
    )
    p.add_argument("--sha256", help="imagenette: the pinned sha256 of its archive")
    p.add_argument("--protocol", type=_json_object, help="dataset protocol settings (JSON)")
    p.add_argument("--downloads", help="folder for downloaded archives")
    p.add_argument("--out", required=True)

    p = stage("pretrain", _task_stage("pretrain"), "train a plain model standing in for hub ones")
    p.add_argument("--data", required=True)
    p.add_argument("--backbone-spec", type=_json_object, required=True)
    p.add_argument("--recipe", type=_json_object, required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--checkpoint", help="resumable training state (per epoch)")
    p.add_argument("--out", required=True)

    p = stage("projectors", _task_stage("projectors"), "build and save a model's projectors")
    p.add_argument("--data", help="the dataset manifest, where the model depends on it")
    p.add_argument("--backbone-spec", type=_json_object, required=True)
    p.add_argument("--softening", type=_softening, required=True, help="a softening setting (JSON)")
    p.add_argument("--out", required=True, help="folder for projector files + manifest.json")

    p = stage("finetune", _task_stage("finetune"), "soften a model and fine-tune (or train) it")
    p.add_argument("--data", required=True)
    p.add_argument("--dataset", default="", help="dataset name (trajectories: family-scene)")
    p.add_argument("--init", help="plain model to start from (default: the spec's weights)")
    p.add_argument("--backbone-spec", type=_json_object, required=True)
    p.add_argument("--softening", type=_softening, required=True, help="a softening setting (JSON)")
    p.add_argument("--projectors", help="folder of projector files (from `softeq projectors`)")
    p.add_argument("--recipe", type=_json_object, required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--checkpoint", help="resumable training state (per epoch)")
    p.add_argument("--out", required=True)

    p = stage("evaluate", _task_stage("evaluate"), "metrics, errors and bounds as JSON")
    p.add_argument("--data", required=True)
    p.add_argument("--split", default="test")
    p.add_argument("--model", required=True)
    p.add_argument("--projectors")
    p.add_argument("--eval", type=_json_object, default={})
    p.add_argument("--seed", type=int, default=0, help="evaluation seed (rotation angles)")
    p.add_argument("--dataset", required=True)
    p.add_argument("--backbone", required=True, help="model name for the tables")
    p.add_argument("--out", required=True)

    _add_result_stages(stage)
    return parser


def _add_result_stages(stage: Callable[..., argparse.ArgumentParser]) -> None:
    """The stages that read metrics, tables or a plain model: tables, figures, ablations."""
    p = stage("aggregate", cmd_aggregate, "tables from metrics JSONs", compute=False)
    p.add_argument("--out-dir", required=True)
    p.add_argument("metrics", nargs="+")

    p = stage("figures", cmd_figures, "figures from the aggregated tables", compute=False)
    p.add_argument("--tables", required=True)
    p.add_argument("--prefix", required=True, help="{task}_{dataset} of the tables to plot")
    p.add_argument("--out-dir", required=True)

    p = stage("figure1", _figure_stage("figure1"), "Figure 1: kernels, features, error maps")
    p.add_argument("--model", help="a plain classifier checkpoint (default: the spec's weights)")
    p.add_argument("--backbone-spec", type=_json_object, help="used when --model is not given")
    p.add_argument("--group", default="C4")
    p.add_argument("--filter", default="shrink")
    p.add_argument("--softness", default="0,0.25,0.5,0.75,1", help="comma-separated b values")
    p.add_argument("--title")
    p.add_argument("--out", required=True)

    p = stage(
        "paper-table", _figure_stage("paper_table"), "a paper table from summaries", compute=False
    )
    p.add_argument("--task", required=True)
    p.add_argument("--out-stem", required=True)
    p.add_argument("--reported", action="store_true", help="add the paper's reported numbers")
    p.add_argument("summaries", nargs="+")

    p = stage(
        "ablation-filters", _figure_stage("ablation_filters"), "filters compared", compute=False
    )
    p.add_argument("--summary", required=True)
    p.add_argument("--out-stem", required=True)

    p = stage(
        "construction-timing",
        _figure_stage("construction_timing"),
        "projector construction: block-Schur against dense SVD",
        compute=False,
    )
    p.add_argument("--widths", default="8,16,32")
    p.add_argument("--dense-limit", type=int, default=32, help="largest width for dense SVD")
    p.add_argument("--out-stem", required=True)
    p.add_argument("--png", required=True)


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    args.func(args)


if __name__ == "__main__":
    main()
