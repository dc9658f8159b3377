# Figures, from the aggregated tables alone: regenerating them never retrains or re-evaluates.


rule figures_task:
    input:
        lambda wildcards: tables_for(wildcards.task, wildcards.dataset),
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
    params:
        tables=lambda wildcards, input: os.path.dirname(input[0]),
        out_dir=lambda wildcards, output: os.path.dirname(output[0]),
    shell:
        "softeq figures --tables {params.tables} --prefix {wildcards.task}_{wildcards.dataset}"
        " --out-dir {params.out_dir} > {log} 2>&1"


rule figure1:
    input:
        model=figure1_model,
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
    params:
        model=lambda wildcards, input: f"--model {input.model}" if input.model else "",
        spec=backbone_spec,
        group=config["figure1"]["group"],
        filter=config["figure1"]["filter"],
        softness=",".join(str(b) for b in config["figure1"]["softness"]),
    shell:
        "softeq figure1 {params.model} --backbone-spec {params.spec:q} --group {params.group}"
        " --filter {params.filter} --softness {params.softness} --out {output} > {log} 2>&1"


rule paper_table:
    input:
        lambda wildcards: summaries_of(wildcards.task),
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
    params:
        stem=lambda wildcards, output: output[0].removesuffix(".csv"),
        reported="--reported" if config["paper_tables"]["reported"] else "",
    shell:
        "softeq paper-table --task {wildcards.task} --out-stem {params.stem} {params.reported}"
        " {input} > {log} 2>&1"


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
    params:
        stem=lambda wildcards, output: output[0].removesuffix(".csv"),
    shell:
        "softeq ablation-filters --summary {input} --out-stem {params.stem} > {log} 2>&1"


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
        "benchmarks/out/construction_timing.tsv"
    conda:
        "../envs/softeq.yaml"
    params:
        stem=lambda wildcards, output: output.table.removesuffix(".csv"),
        widths=",".join(str(w) for w in config["construction_timing"]["widths"]),
        dense_limit=config["construction_timing"]["dense_limit"],
    shell:
        "softeq construction-timing --widths {params.widths} --dense-limit {params.dense_limit}"
        " --out-stem {params.stem} --png {output.figure} > {log} 2>&1"


rule figures:
    input:
        [path for task, dataset in DATASETS for path in figures_for(task, dataset)],
        [f"{RESULTS}/figures/figure1_{b}.png" for b in config["figure1"]["backbones"]],


# one target per dataset family: tables and figures of every run on it


rule all_digits:
    input:
        targets({"digits"}),


rule all_imagenet:
    input:
        targets({"imagenet"}),


rule all_vocdigits:
    input:
        targets({"vocdigits"}),


rule all_voc:
    input:
        targets({"voc"}),


rule all_synthetic:
    input:
        targets({"synthetic"}),


rule all_ethucy:
    input:
        targets({"ethucy"}),
