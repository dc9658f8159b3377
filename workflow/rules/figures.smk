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


rule all_digits:
    input:
        [
            path
            for task, dataset in DATASETS
            if dataset == "digits"
            for path in tables_for(task, dataset) + figures_for(task, dataset)
        ],
