# Projectors: built once per backbone, group, filter and softness; read by fine-tuning and
# evaluation from these files instead of being rebuilt in every job.


rule projectors:
    output:
        directory(
            f"{RESOURCES}/projectors/{{backbone}}/{{group}}_{{filter}}/b~{{softness}}_pos~{{softness_pos}}"
        ),
    log:
        "logs/projectors/{backbone}/{group}_{filter}/b~{softness}_pos~{softness_pos}.log",
    benchmark:
        "benchmarks/out/projectors/{backbone}/{group}_{filter}/b~{softness}_pos~{softness_pos}.tsv"
    conda:
        "../envs/softeq.yaml"
    params:
        spec=backbone_spec,
        softening=softening,
    shell:
        "softeq projectors --backbone-spec {params.spec:q} --softening {params.softening:q}"
        " --out {output} > {log} 2>&1"
