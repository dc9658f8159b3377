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
        source=config["datasets"]["imagenet"]["source"],
        root=config["datasets"]["imagenet"]["root"] or "",
        sha256=(
            f"--sha256 {config['datasets']['imagenet']['imagenette_sha256']}"
            if config["datasets"]["imagenet"]["imagenette_sha256"]
            else ""
        ),
    shell:
        "softeq prepare-data --dataset imagenet --source {params.source}"
        " --root {params.root:q} {params.sha256} --out {output} > {log} 2>&1"
