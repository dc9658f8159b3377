# Evaluation (one metrics JSON per run, with provenance) and aggregation into tables.


rule evaluate:
    input:
        data=data_file,
        model=f"{RESULTS}/{{task}}/{{dataset}}/{{backbone}}/{{group}}_{{filter}}/b~{{softness}}_pos~{{softness_pos}}/seed~{{seed}}/model.pt",
        projectors=f"{RESOURCES}/projectors/{{backbone}}/{{group}}_{{filter}}/b~{{softness}}_pos~{{softness_pos}}",
    output:
        f"{RESULTS}/{{task}}/{{dataset}}/{{backbone}}/{{group}}_{{filter}}/b~{{softness}}_pos~{{softness_pos}}/seed~{{seed}}/metrics.json",
    log:
        "logs/evaluate/{task}/{dataset}/{backbone}/{group}_{filter}/b~{softness}_pos~{softness_pos}/seed~{seed}.log",
    benchmark:
        "benchmarks/out/evaluate/{task}/{dataset}/{backbone}/{group}_{filter}/b~{softness}_pos~{softness_pos}/seed~{seed}.tsv"
    conda:
        "../envs/softeq.yaml"
    threads: config["threads"]
    resources:
        gpu=config["gpus"],
        mem_mb=4000,
        runtime=30,
    params:
        eval=json.dumps(
            {k: v for k, v in config["evaluate"].items() if k != "seed"},
            sort_keys=True,
        ),
        seed=config["evaluate"]["seed"],
        device=device_args(),
    shell:
        "softeq evaluate --data {input.data} --model {input.model}"
        " --projectors {input.projectors} --eval {params.eval:q} --seed {params.seed}"
        " --dataset {wildcards.dataset} --backbone {wildcards.backbone}"
        " --out {output} {params.device} > {log} 2>&1"


rule aggregate:
    input:
        lambda wildcards: metrics_for(wildcards.task, wildcards.dataset),
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
    params:
        out_dir=lambda wildcards, output: os.path.dirname(output[0]),
    shell:
        "softeq aggregate --out-dir {params.out_dir} {input} > {log} 2>&1"
