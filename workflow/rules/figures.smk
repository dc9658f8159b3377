# Figures, from the aggregated tables alone: regenerating them never retrains or re-evaluates.


rule figures_task:
    input:
        lambda wildcards: PLAN.tables_for(wildcards.task, wildcards.dataset),
    output:
        [
            report(
                f"{RESULTS}/figures/{{task}}_{{dataset}}_{name}.png",
                caption=f"../report/{name}.rst",
                category="{task}",
                subcategory="{dataset}: figures",
            )
            for name in FIGURES
        ],
    log:
        "logs/figures/{task}_{dataset}.log",
    conda:
        "../envs/softeq.yaml"
    threads: 1
    params:
        tables=lambda wildcards, input: os.path.dirname(input[0]),
        out_dir=lambda wildcards, output: os.path.dirname(output[0]),
    shell:
        "softeq figures --tables {params.tables:q} --prefix {wildcards.task}_{wildcards.dataset}"
        " --out-dir {params.out_dir:q} > {log:q} 2>&1"


rule figure1:
    input:
        model=PLAN.figure1_model,
    output:
        report(
            f"{RESULTS}/figures/figure1_{{backbone}}.png",
            caption="../report/figure1.rst",
            category="Figure 1",
        ),
    log:
        "logs/figures/figure1_{backbone}.log",
    conda:
        "../envs/softeq.yaml"
    threads: config["threads"]
    resources:
        mem_mb=config["job_resources"]["evaluate"]["mem_mb"],
        runtime=config["job_resources"]["evaluate"]["runtime"],
    params:
        args=PLAN.figure1_args,
    shell:
        "softeq figure1 {params.args} --out {output:q} > {log:q} 2>&1"


rule figure2:
    input:
        PLAN.figure2_summary,
    output:
        report(
            f"{RESULTS}/figures/figure2_{{dataset}}.png",
            caption="../report/figure2.rst",
            category="Figure 2",
        ),
    log:
        "logs/figures/figure2_{dataset}.log",
    conda:
        "../envs/softeq.yaml"
    threads: 1
    params:
        backbone=config["figure2"]["backbone"],
    shell:
        "softeq figure2 --summary {input:q} --backbone {params.backbone:q} --out {output:q}"
        " > {log:q} 2>&1"


rule paper_table:
    input:
        lambda wildcards: PLAN.summaries_of(wildcards.task),
    output:
        report(
            f"{RESULTS}/tables/paper_{{task}}.csv",
            caption="../report/paper_table.rst",
            category="Paper tables",
        ),
    log:
        "logs/figures/paper_{task}.log",
    conda:
        "../envs/softeq.yaml"
    threads: 1
    params:
        stem=lambda wildcards, output: output[0].removesuffix(".csv"),
        reported="--reported" if config["paper_tables"]["reported"] else "",
    shell:
        "softeq paper-table --task {wildcards.task} --out-stem {params.stem:q} {params.reported}"
        " {input:q} > {log:q} 2>&1"


# datasets with a paper table of their own (PAPER_TABLES: CIFAR-10 / CIFAR-100 in paper_cifar)
rule paper_table_own:
    input:
        lambda wildcards: PLAN.table_summaries(wildcards.table),
    output:
        report(
            f"{RESULTS}/tables/paper_{{table}}.csv",
            caption="../report/paper_table.rst",
            category="Paper tables",
        ),
    log:
        "logs/figures/paper_{table}.log",
    wildcard_constraints:
        table="|".join(PAPER_TABLES),
    conda:
        "../envs/softeq.yaml"
    threads: 1
    params:
        stem=lambda wildcards, output: output[0].removesuffix(".csv"),
        task=PLAN.table_task,
        reported="--reported" if config["paper_tables"]["reported"] else "",
    shell:
        "softeq paper-table --task {params.task} --out-stem {params.stem:q} {params.reported}"
        " {input:q} > {log:q} 2>&1"


rule ablation_filters:
    input:
        f"{RESULTS}/tables/{{task}}_{{dataset}}_summary.csv",
    output:
        report(
            f"{RESULTS}/tables/ablation_filters_{{task}}_{{dataset}}.csv",
            caption="../report/ablation_filters.rst",
            category="Ablations",
        ),
    log:
        "logs/figures/ablation_filters_{task}_{dataset}.log",
    conda:
        "../envs/softeq.yaml"
    threads: 1
    params:
        stem=lambda wildcards, output: output[0].removesuffix(".csv"),
    shell:
        "softeq ablation-filters --summary {input:q} --out-stem {params.stem:q} > {log:q} 2>&1"


rule construction_timing:
    output:
        table=f"{RESULTS}/tables/ablation_construction_timing.csv",
        figure=report(
            f"{RESULTS}/figures/ablation_construction_timing.png",
            caption="../report/construction_timing.rst",
            category="Ablations",
        ),
    log:
        "logs/figures/construction_timing.log",
    benchmark:
        f"{BENCHMARKS}/construction_timing.tsv"
    conda:
        "../envs/softeq.yaml"
    threads: 1
    resources:
        mem_mb=config["job_resources"]["evaluate"]["mem_mb"],
        runtime=config["job_resources"]["evaluate"]["runtime"],
    params:
        stem=lambda wildcards, output: output.table.removesuffix(".csv"),
        args=PLAN.construction_timing_args(),
    shell:
        "softeq construction-timing {params.args} --out-stem {params.stem:q}"
        " --png {output.figure:q} > {log:q} 2>&1"


# the SO(3) demo (config key so3_demo): its per-sample error table, then the box plots from it
rule so3_demo:
    output:
        table=f"{RESULTS}/tables/so3_demo.csv",
    log:
        "logs/figures/so3_demo.log",
    benchmark:
        f"{BENCHMARKS}/so3_demo.tsv"
    conda:
        "../envs/softeq.yaml"
    threads: config["threads"]
    resources:
        mem_mb=config["job_resources"]["evaluate"]["mem_mb"],
        runtime=config["job_resources"]["evaluate"]["runtime"],
    params:
        args=PLAN.so3_demo_args(),
    shell:
        "softeq so3-demo {params.args} --threads {threads} --out {output.table:q} > {log:q} 2>&1"


rule figure_so3:
    input:
        f"{RESULTS}/tables/so3_demo.csv",
    output:
        report(
            f"{RESULTS}/figures/so3_demo.png",
            caption="../report/so3_demo.rst",
            category="SO(3) demo",
        ),
    log:
        "logs/figures/figure_so3.log",
    benchmark:
        f"{BENCHMARKS}/figure_so3.tsv"
    conda:
        "../envs/softeq.yaml"
    threads: 1
    shell:
        "softeq figure-so3 --table {input:q} --out {output:q} > {log:q} 2>&1"


# the SO(3) demo alone (nothing when the config has no so3_demo): make run-regression asks for it
rule all_so3:
    input:
        PLAN.so3_demo_outputs(),


rule figures:
    input:
        PLAN.figure_targets(),


# one target per configured dataset family: tables and figures of every run on it
for family in PLAN.families:

    rule:
        name:
            f"all_{family}"
        input:
            PLAN.targets({family}),
