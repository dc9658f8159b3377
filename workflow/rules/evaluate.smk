# Evaluation (one metrics JSON per run, with provenance) and aggregation into tables.


rule evaluate:
    input:
        data=PLAN.data_file,
        model=f"{RUN}/model.pt",
        projectors=PROJECTORS,
    output:
        f"{RUN}/metrics.json",
    log:
        f"logs/evaluate/{LOG}.log",
    benchmark:
        f"{BENCHMARKS}/evaluate/{LOG}.tsv"
    conda:
        "../envs/softeq.yaml"
    threads: config["threads"]
    resources:
        gpu=lambda wildcards: min(PLAN.gpus(wildcards), 1),
        mem_mb=config["job_resources"]["evaluate"]["mem_mb"],
        runtime=config["job_resources"]["evaluate"]["runtime"],
    params:
        eval=PLAN.eval_settings,
        seed=config["evaluate"]["seed"],
        device=PLAN.device_args(),
    shell:
        "softeq evaluate --task {wildcards.task} --data {input.data:q} --model {input.model:q}"
        " --projectors {input.projectors:q} --eval {params.eval:q} --seed {params.seed}"
        " --dataset {wildcards.dataset} --backbone {wildcards.backbone}"
        " --out {output:q} {params.device} > {log:q} 2>&1"


rule aggregate:
    input:
        lambda wildcards: PLAN.metrics_for(wildcards.task, wildcards.dataset),
    output:
        [
            report(
                f"{RESULTS}/tables/{{task}}_{{dataset}}_{name}.csv",
                caption=f"../report/table_{name}.rst",
                category="{task}",
                subcategory="{dataset}: tables",
            )
            for name in TABLES
        ],
    log:
        "logs/aggregate/{task}_{dataset}.log",
    conda:
        "../envs/softeq.yaml"
    threads: 1
    params:
        out_dir=lambda wildcards, output: os.path.dirname(output[0]),
    shell:
        "softeq aggregate --out-dir {params.out_dir:q} {input:q} > {log:q} 2>&1"
