# The O(5) regression experiment: one job trains and evaluates a run (it is small), then the
# metrics are aggregated per noise level, and the family's table and figure read the summaries.
from softeq.pipeline.plan import REGRESSION_DIR

REGRESSION_RUN = f"{RESULTS}/{REGRESSION_DIR}"


rule regression:
    output:
        model=f"{REGRESSION_RUN}/model.pt",
        metrics=f"{REGRESSION_RUN}/metrics.json",
    log:
        f"logs/regression/{REGRESSION_DIR}.log",
    benchmark:
        f"{BENCHMARKS}/regression/{REGRESSION_DIR}.tsv"
    conda:
        "../envs/softeq.yaml"
    threads: config["threads"]
    resources:
        mem_mb=config["job_resources"]["train"]["mem_mb"],
        runtime=config["job_resources"]["train"]["runtime"],
    params:
        spec=PLAN.backbone_spec,
        softening=PLAN.softening,
        recipe=PLAN.regression_recipe,
        protocol=PLAN.regression_protocol(),
        eval_seed=config["evaluate"]["seed"],
        device=PLAN.device_args(),
    shell:
        "softeq regression --dataset {wildcards.dataset} --protocol {params.protocol:q}"
        " --backbone-spec {params.spec:q} --backbone {wildcards.backbone}"
        " --softening {params.softening:q} --recipe {params.recipe:q} --seed {wildcards.seed}"
        " --eval-seed {params.eval_seed} --checkpoint {output.model:q}.ckpt"
        " --model-out {output.model:q} --out {output.metrics:q} {params.device} > {log:q} 2>&1"


rule aggregate_regression:
    input:
        lambda wildcards: PLAN.metrics_for(REGRESSION, wildcards.dataset),
    output:
        [f"{RESULTS}/tables/regression_{{dataset}}_{name}.csv" for name in TABLES],
    log:
        "logs/aggregate/regression_{dataset}.log",
    conda:
        "../envs/softeq.yaml"
    threads: 1
    params:
        out_dir=lambda wildcards, output: os.path.dirname(output[0]),
    shell:
        "softeq aggregate --out-dir {params.out_dir:q} {input:q} > {log:q} 2>&1"


rule regression_table:
    input:
        PLAN.regression_summaries,
    output:
        report(
            f"{RESULTS}/tables/regression_{{family}}.csv",
            caption="../report/regression_table.rst",
            category="Regression",
        ),
    log:
        "logs/figures/regression_table_{family}.log",
    wildcard_constraints:
        family="[a-z0-9]+",
    conda:
        "../envs/softeq.yaml"
    threads: 1
    params:
        stem=lambda wildcards, output: output[0].removesuffix(".csv"),
    shell:
        "softeq regression-table --out-stem {params.stem:q} {input:q} > {log:q} 2>&1"


rule regression_figure:
    input:
        f"{RESULTS}/tables/regression_{{family}}.csv",
    output:
        report(
            f"{RESULTS}/figures/regression_{{family}}.png",
            caption="../report/regression_figure.rst",
            category="Regression",
        ),
    log:
        "logs/figures/regression_figure_{family}.log",
    wildcard_constraints:
        family="[a-z0-9]+",
    conda:
        "../envs/softeq.yaml"
    threads: 1
    shell:
        "softeq regression-figure --table {input:q} --out {output:q} > {log:q} 2>&1"
