# Datasets. Embedded sets are built offline; downloads are local rules with checksums.


rule prepare_embedded:
    output:
        f"{RESOURCES}/data/{{dataset}}.safetensors",
    log:
        "logs/prepare_data/{dataset}.log",
    wildcard_constraints:
        dataset="digits",
    conda:
        "../envs/softeq.yaml"
    shell:
        "softeq prepare-data --dataset {wildcards.dataset} --out {output} > {log} 2>&1"


rule imagenet_manifest:
    output:
        f"{RESOURCES}/data/imagenet.json",
    log:
        "logs/prepare_data/imagenet.log",
    localrule: True
    conda:
        "../envs/softeq.yaml"
    params:
        root=config["datasets"]["imagenet"]["root"] or "",
    shell:
        "softeq prepare-data --dataset imagenet --root {params.root:q} --out {output}"
        " > {log} 2>&1"
