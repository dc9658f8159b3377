"""``softeq <stage>``: the entry points the workflow rules call, one per pipeline stage.

Every stage takes explicit inputs and outputs and writes its outputs atomically.  Structured
settings (backbone spec, softening, recipe, evaluation) arrive as JSON objects, which the rules
build from the validated config; nothing is evaluated as code.

    softeq prepare-data --dataset digits --out resources/data/digits.safetensors
    softeq pretrain   --data D --backbone-spec JSON --recipe JSON --seed S --out pretrained.pt
    softeq projectors --backbone-spec JSON --softening JSON --out DIR
    softeq finetune   --data D --init pretrained.pt --backbone-spec JSON --softening JSON \\
                      --projectors DIR --recipe JSON --seed S --out model.pt
    softeq evaluate   --data D --model model.pt --projectors DIR --eval JSON --seed S --out m.json
    softeq aggregate  --out-dir results/tables METRICS.json ...
    softeq figures    --tables results/tables --prefix classification_digits --out-dir DIR
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

__all__ = ["main"]


def _json_object(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise argparse.ArgumentTypeError(f"not valid JSON: {error}") from error
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("expected a JSON object")
    return value


def _setup(args: argparse.Namespace) -> str:
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    device = args.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit(f"--device {device}: no CUDA device is available on this machine")
    return device


SOFTENING_KEYS = {"group", "softness", "softness_pos", "filter", "hard_mask", "operator"}


def _softening(values: dict[str, Any]) -> dict[str, Any]:
    unknown = set(values) - SOFTENING_KEYS
    if unknown:
        raise SystemExit(f"--softening: unknown keys {sorted(unknown)}")
    if "group" not in values or "softness" not in values:
        raise SystemExit("--softening needs at least 'group' and 'softness'")
    return values


def _soften(model, softening: dict[str, Any], cache_dir: str | None):
    import softeq

    softness_pos = softening.get("softness_pos")
    if softness_pos == softening["softness"]:  # the default: models without a grid accept it
        softness_pos = None
    return softeq.soften(
        model,
        softening["group"],
        softening["softness"],
        softness_pos=softness_pos,
        filter=softening.get("filter", "shrink"),
        hard_mask=softening.get("hard_mask", False),
        operator=softening.get("operator"),
        cache_dir=cache_dir,
    )


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


# ----------------------------------------------------------------------------------------------
# stages


def cmd_prepare_data(args: argparse.Namespace) -> None:
    if args.dataset == "digits":
        from softeq.data.embedded import build_digits

        build_digits(args.out)
        return
    if args.dataset != "imagenet":
        raise SystemExit(f"--dataset {args.dataset!r}: expected 'digits' or 'imagenet'")
    from softeq.data.imagenet import IMAGENET_HELP, prepare_imagenet

    if not args.root:
        raise SystemExit(f"datasets.imagenet.root is not set.\n{IMAGENET_HELP}")
    options = {"sha256": args.sha256} if args.source == "imagenette" else {}
    if args.sha256 and args.source != "imagenette":
        raise SystemExit("--sha256 pins the Imagenette archive; other sources have their own")
    try:
        prepare_imagenet(args.source, args.root, args.out, **options)
    except (ValueError, OSError) as error:
        raise SystemExit(f"{error}\n\n{IMAGENET_HELP}") from error


def _backbone(
    spec_dict: dict[str, Any], num_classes: int, random_init: bool = False, drop_path: float = 0.0
):
    from dataclasses import replace

    from softeq.models import BackboneSpec, build_backbone

    spec = BackboneSpec.from_dict(spec_dict, "--backbone-spec")
    if random_init:
        spec = replace(spec, pretrained=None)
    if drop_path:
        spec = replace(spec, kwargs={**spec.kwargs, "drop_path_rate": drop_path})
    return spec, build_backbone(spec, num_classes)


def _num_classes(data: str) -> int:
    from softeq.data.classification import num_classes

    return num_classes(data)


def _train_and_save(args, model, spec, recipe, num_classes: int, device: str, extra: dict) -> None:
    """Train with the recipe (resuming from --checkpoint) and write --out from the main process."""
    from softeq.data.classification import load_classification
    from softeq.engine.checkpoint import save_checkpoint
    from softeq.engine.classification import train_classifier
    from softeq.engine.distributed import Distributed

    train_set = load_classification(
        args.data, "train", spec.input_size, train=True, auto_augment=recipe.auto_augment
    )
    history, ema = train_classifier(
        model, train_set, recipe, args.seed, spec.input_size, args.checkpoint, device,
        desc=args.stage, num_classes=num_classes,
    )  # fmt: skip
    if Distributed.from_env(device).is_main:
        state = {"model": model.state_dict(), "backbone": args.backbone_spec,
                 "num_classes": num_classes, "history": history, **extra}  # fmt: skip
        if ema is not None:
            state["model_ema"] = ema.state_dict()
        save_checkpoint(state, args.out)


def cmd_pretrain(args: argparse.Namespace) -> None:
    import torch

    from softeq.engine.classification import Recipe

    device = _setup(args)
    recipe = Recipe.from_dict(args.recipe, "--recipe")
    num_classes = _num_classes(args.data)
    torch.manual_seed(args.seed)
    spec, model = _backbone(args.backbone_spec, num_classes, drop_path=recipe.drop_path)
    _train_and_save(args, model, spec, recipe, num_classes, device, {})


def cmd_projectors(args: argparse.Namespace) -> None:
    from softeq.bounds import report
    from softeq.engine.checkpoint import write_json

    _setup(args)
    softening = _softening(args.softening)
    _, model = _backbone(args.backbone_spec, 10, random_init=True)
    out = Path(args.out)
    _soften(model, softening, str(out))
    records = [r.as_dict() for r in report(model)]
    files = sorted(p.name for p in out.glob("*.safetensors"))
    write_json({"softening": softening, "layers": records, "files": files}, out / "manifest.json")


def cmd_finetune(args: argparse.Namespace) -> None:
    import torch

    from softeq.engine.checkpoint import load_checkpoint
    from softeq.engine.classification import Recipe

    device = _setup(args)
    softening = _softening(args.softening)
    recipe = Recipe.from_dict(args.recipe, "--recipe")
    num_classes = _num_classes(args.data)
    torch.manual_seed(args.seed)
    spec, model = _backbone(
        args.backbone_spec, num_classes, args.init is not None, drop_path=recipe.drop_path
    )
    if args.init is not None:
        init = load_checkpoint(args.init)
        if init.get("backbone") != args.backbone_spec:
            raise SystemExit(f"{args.init}: trained with another backbone spec")
        model.load_state_dict(init.get("model_ema") or init["model"])
    _soften(model, softening, args.projectors)
    _train_and_save(args, model, spec, recipe, num_classes, device, {"softening": softening})


def cmd_evaluate(args: argparse.Namespace) -> None:
    from softeq.bounds import report
    from softeq.data.classification import load_classification
    from softeq.engine.checkpoint import load_checkpoint, write_json
    from softeq.engine.classification import EvalSpec, evaluate_classifier

    device = _setup(args)
    state = load_checkpoint(args.model)
    softening = state.get("softening")
    spec, model = _backbone(state["backbone"], state["num_classes"], random_init=True)
    if softening is not None:
        _soften(model, softening, args.projectors)
    model.load_state_dict(state.get("model_ema") or state["model"])  # the EMA when trained with one
    spec_eval = EvalSpec.from_dict(args.eval, "--eval")
    test_set = load_classification(args.data, args.split, spec.input_size, train=False)
    result = evaluate_classifier(model, test_set, spec_eval, args.seed, spec.input_size, device)
    softening = softening or {"group": "none", "softness": 1.0, "filter": "none"}
    out = {
        "task": "classification",
        "dataset": args.dataset,
        "backbone": args.backbone,
        "group": softening["group"],
        "filter": softening.get("filter", "shrink"),
        "softness": float(softening["softness"]),
        "softness_pos": float(
            softening["softness"]
            if softening.get("softness_pos") is None
            else softening["softness_pos"]
        ),
        "seed": args.seed,
        **result,
        "bounds": [r.as_dict() for r in report(model)],
        "provenance": provenance(args, device),
    }
    write_json(out, args.out)
    print(json.dumps(out["metrics"], indent=2))


def cmd_aggregate(args: argparse.Namespace) -> None:
    from softeq.figures.aggregate import aggregate

    for path in aggregate(args.metrics, args.out_dir):
        print(path)


def cmd_figures(args: argparse.Namespace) -> None:
    from softeq.figures.render import render_all

    for path in render_all(args.tables, args.prefix, args.out_dir):
        print(path)


# ----------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="softeq", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="stage", required=True, metavar="<stage>")

    def stage(name: str, func, help: str, compute: bool = True) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=help)
        p.set_defaults(func=func)
        if compute:
            p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto")
            p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: all)")
        return p

    p = stage("prepare-data", cmd_prepare_data, "build or check a dataset", compute=False)
    p.add_argument("--dataset", required=True)
    p.add_argument("--root", help="where a dataset that cannot be downloaded lies")
    p.add_argument(
        "--source", default="folder", help="imagenet: folder, archives, huggingface or imagenette"
    )
    p.add_argument("--sha256", help="imagenette: the pinned sha256 of its archive")
    p.add_argument("--out", required=True)

    p = stage("pretrain", cmd_pretrain, "train the plain model that stands in for a hub one")
    p.add_argument("--data", required=True)
    p.add_argument("--backbone-spec", type=_json_object, required=True)
    p.add_argument("--recipe", type=_json_object, required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--checkpoint", help="resumable training state (per epoch)")
    p.add_argument("--out", required=True)

    p = stage("projectors", cmd_projectors, "build and save a backbone's projectors")
    p.add_argument("--backbone-spec", type=_json_object, required=True)
    p.add_argument("--softening", type=_json_object, required=True)
    p.add_argument("--out", required=True, help="folder for projector files + manifest.json")

    p = stage("finetune", cmd_finetune, "soften a model and fine-tune it")
    p.add_argument("--data", required=True)
    p.add_argument("--init", help="plain model to start from (default: the spec's weights)")
    p.add_argument("--backbone-spec", type=_json_object, required=True)
    p.add_argument("--softening", type=_json_object, required=True)
    p.add_argument("--projectors", help="folder of projector files (from `softeq projectors`)")
    p.add_argument("--recipe", type=_json_object, required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--checkpoint", help="resumable training state (per epoch)")
    p.add_argument("--out", required=True)

    p = stage("evaluate", cmd_evaluate, "clean / rotated metrics, errors and bounds as JSON")
    p.add_argument("--data", required=True)
    p.add_argument("--split", default="test")
    p.add_argument("--model", required=True)
    p.add_argument("--projectors")
    p.add_argument("--eval", type=_json_object, default={})
    p.add_argument("--seed", type=int, default=0, help="evaluation seed (rotation angles)")
    p.add_argument("--dataset", required=True)
    p.add_argument("--backbone", required=True, help="backbone name for the tables")
    p.add_argument("--out", required=True)

    p = stage("aggregate", cmd_aggregate, "tables from metrics JSONs", compute=False)
    p.add_argument("--out-dir", required=True)
    p.add_argument("metrics", nargs="+")

    p = stage("figures", cmd_figures, "figures from the aggregated tables", compute=False)
    p.add_argument("--tables", required=True)
    p.add_argument("--prefix", required=True, help="{task}_{dataset} of the tables to plot")
    p.add_argument("--out-dir", required=True)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    args.func(args)


if __name__ == "__main__":
    main()
