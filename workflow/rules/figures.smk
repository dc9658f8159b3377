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


rule figures:
    input:
        [path for task, dataset in DATASETS for path in figures_for(task, dataset)],


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
