# Path plumbing shared by every rule: the runs the config asks for, and where their files go.
import json
import os

from softeq.pipeline import WILDCARDS, resolve, softening_for, task_of

RESULTS = config["results"]
RESOURCES = config["resources"]
RUNS = resolve(config)
DATASETS = sorted({(run.task, run.dataset) for run in RUNS})
RUN_DIR = "{task}/{dataset}/{backbone}/{group}_{filter}/b~{softness}_pos~{softness_pos}"
PROJECTORS = f"{RESOURCES}/projectors/{RUN_DIR}"
RUN = f"{RESULTS}/{RUN_DIR}/seed~{{seed}}"
LOG = f"{RUN_DIR}/seed~{{seed}}"
TABLES = ["summary", "runs", "bounds", "angles"]
TASKS = sorted({run.task for run in RUNS})
FIGURES = ["tunability", "bounds", "angles"]


wildcard_constraints:
    **WILDCARDS,


def family(dataset):
    """The dataset family: trajectory datasets are named <family>-<scene>."""
    return dataset.split("-", 1)[0]


def data_file(wildcards):
    """The file a job reads for its dataset: the embedded digits, or a dataset manifest."""
    if wildcards.dataset == "digits":
        return f"{RESOURCES}/data/digits.safetensors"
    return f"{RESOURCES}/data/{family(wildcards.dataset)}.json"


def device_args():
    return f"--device {config['device']} --threads {config['threads']}"


def backbone_spec(wildcards):
    spec = dict(config["backbones"][wildcards.backbone])
    spec.pop("recipe", None)
    return json.dumps(spec, sort_keys=True)


def recipe_for(stage):
    """The task's recipe of ``stage``, with the backbone's overrides (fine-tuning only)."""

    def recipe(wildcards):
        base = config.get(stage, {}).get(wildcards.task, {}).get("recipe", {})
        if stage == "finetune":
            base = {**base, **config["backbones"][wildcards.backbone].get("recipe", {})}
        return json.dumps(base, sort_keys=True)

    return recipe


def eval_settings(wildcards):
    return json.dumps(config["evaluate"][wildcards.task], sort_keys=True)


def softening(wildcards):
    return softening_for(
        wildcards.group,
        wildcards.filter,
        float(wildcards.softness),
        float(wildcards.softness_pos),
    )


def pretrained_input(wildcards):
    if wildcards.task in config["pretrain"]:
        return f"{RESULTS}/{wildcards.task}/{wildcards.dataset}/{wildcards.backbone}/pretrained/model.pt"
    return []


def init_arg(wildcards, input):
    return f"--init {input.init}" if input.init else ""


def gpus(wildcards):
    """GPUs a training job requests: none for a model without weights."""
    spec = config["backbones"][wildcards.backbone]
    return 0 if spec.get("preset") == "constant_velocity" else config["gpus"]


def launcher(wildcards):
    """torchrun for data-parallel training on several GPUs, the plain CLI otherwise."""
    if gpus(wildcards) > 1:
        return f"torchrun --standalone --nproc_per_node={gpus(wildcards)} -m softeq.cli"
    return "softeq"


def metrics_for(task, dataset):
    return [
        f"{RESULTS}/{run.path}/metrics.json"
        for run in RUNS
        if (run.task, run.dataset) == (task, dataset)
    ]


def tables_for(task, dataset):
    return [f"{RESULTS}/tables/{task}_{dataset}_{name}.csv" for name in TABLES]


def figures_for(task, dataset):
    return [f"{RESULTS}/figures/{task}_{dataset}_{name}.png" for name in FIGURES]


def summaries_of(task):
    return [
        f"{RESULTS}/tables/{task}_{dataset}_summary.csv"
        for t, dataset in DATASETS
        if t == task
    ]


def filter_ablations():
    """(task, dataset) pairs with several filters at one softness: the filter comparison."""
    pairs = set()
    for task, dataset in DATASETS:
        seen = {}
        for run in RUNS:
            if (run.task, run.dataset) == (task, dataset):
                seen.setdefault((run.backbone, run.softness), set()).add(run.filter)
        if any(len(filters) > 1 for filters in seen.values()):
            pairs.add((task, dataset))
    return sorted(pairs)


def figure1_model(wildcards):
    """The plain classifier of Figure 1: the stand-in pre-trained model, else hub weights."""
    if "classification" in config["pretrain"]:
        dataset = config["figure1"]["dataset"]
        return f"{RESULTS}/classification/{dataset}/{wildcards.backbone}/pretrained/model.pt"
    return []


def paper_outputs():
    """Figure 1, the paper tables and the ablations."""
    outputs = [
        f"{RESULTS}/figures/figure1_{b}.png" for b in config["figure1"]["backbones"]
    ]
    outputs += [f"{RESULTS}/tables/paper_{task}.csv" for task in TASKS]
    outputs += [
        f"{RESULTS}/tables/ablation_filters_{t}_{d}.csv" for t, d in filter_ablations()
    ]
    outputs += [f"{RESULTS}/figures/ablation_construction_timing.png"]
    return outputs


def targets(families=None):
    """Tables and figures of every (task, dataset), or of the given dataset families."""
    return [
        path
        for task, dataset in DATASETS
        if families is None or family(dataset) in families
        for path in tables_for(task, dataset) + figures_for(task, dataset)
    ]
