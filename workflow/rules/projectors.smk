# Projectors: built once per model, group, filter and softness, and read by fine-tuning and
# evaluation from these files instead of being rebuilt in every job.


rule projectors:
    input:
        data=PLAN.data_file,
    output:
        directory(PROJECTORS),
    log:
        f"logs/projectors/{RUN_DIR}.log",
    benchmark:
        f"{BENCHMARKS}/projectors/{RUN_DIR}.tsv"
    conda:
        "../envs/softeq.yaml"
    threads: 1
    resources:
        mem_mb=config["job_resources"]["projectors"]["mem_mb"],
        runtime=config["job_resources"]["projectors"]["runtime"],
    params:
        spec=PLAN.backbone_spec,
        softening=PLAN.softening,
    shell:
        "softeq projectors --task {wildcards.task} --data {input.data:q}"
        " --dataset {wildcards.dataset}"
        " --backbone-spec {params.spec:q} --softening {params.softening:q}"
        " --out {output:q} > {log:q} 2>&1"
