# Path plumbing shared by every rule: the runs the config asks for, and where their files go.
import json
import os

from softeq.pipeline import WILDCARDS, fmt_softness, resolve, softening_for

RESULTS = config["results"]
RESOURCES = config["resources"]
RUNS = resolve(config)
DATASETS = sorted({(run.task, run.dataset) for run in RUNS})


wildcard_constraints:
    **WILDCARDS,


def data_file(wildcards):
    """The dataset a job reads: an embedded file, or the manifest of a provided dataset."""
    if wildcards.dataset == "digits":
        return f"{RESOURCES}/data/digits.safetensors"
    return f"{RESOURCES}/data/{wildcards.dataset}.json"


def device_args():
    return f"--device {config['device']} --threads {config['threads']}"


def backbone_spec(wildcards):
    return json.dumps(config["backbones"][wildcards.backbone], sort_keys=True)


def recipe(stage):
    return json.dumps(config.get(stage, {}).get("recipe", {}), sort_keys=True)


def softening(wildcards):
    return softening_for(
        wildcards.group,
        wildcards.filter,
        float(wildcards.softness),
        float(wildcards.softness_pos),
    )


def run_dir(run):
    return f"{RESULTS}/{run.path}"


def metrics_for(task, dataset):
    return [
        f"{run_dir(run)}/metrics.json"
        for run in RUNS
        if (run.task, run.dataset) == (task, dataset)
    ]


TABLES = ["summary", "runs", "bounds", "angles"]
FIGURES = ["tunability", "bounds", "angles"]


def tables_for(task, dataset):
    return [f"{RESULTS}/tables/{task}_{dataset}_{name}.csv" for name in TABLES]


def figures_for(task, dataset):
    return [f"{RESULTS}/figures/{task}_{dataset}_{name}.png" for name in FIGURES]


def all_targets():
    return [
        path
        for task, dataset in DATASETS
        for path in tables_for(task, dataset) + figures_for(task, dataset)
    ]


def pretrained_input(wildcards):
    if config["pretrain"]["enabled"]:
        return f"{RESULTS}/{wildcards.task}/{wildcards.dataset}/{wildcards.backbone}/pretrained/model.pt"
    return []


def init_arg(wildcards, input):
    return f"--init {input.init}" if input.init else ""
