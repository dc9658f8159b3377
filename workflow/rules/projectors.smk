# Projectors: built once per model, group, filter and softness, and read by fine-tuning and
# evaluation from these files instead of being rebuilt in every job.


rule projectors:
    input:
        data=data_file,
    output:
        directory(PROJECTORS),
    log:
        f"logs/projectors/{RUN_DIR}.log",
    benchmark:
        f"benchmarks/out/projectors/{RUN_DIR}.tsv"
    conda:
        "../envs/softeq.yaml"
    params:
        spec=backbone_spec,
        softening=softening,
    shell:
        "softeq projectors --task {wildcards.task} --data {input.data}"
        " --backbone-spec {params.spec:q} --softening {params.softening:q}"
        " --out {output} > {log} 2>&1"
