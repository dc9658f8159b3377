# Datasets. Embedded sets are built offline; downloads are local rules with checksums (md5 for
# VOC / SBD, the committed per-file sha256 list for ETH/UCY), so dry-runs never touch the network.


rule prepare_digits:
    output:
        f"{RESOURCES}/data/digits.safetensors",
    log:
        "logs/prepare_data/digits.log",
    conda:
        "../envs/softeq.yaml"
    shell:
        "softeq prepare-data --dataset digits --out {output} > {log} 2>&1"


rule prepare_embedded:
    output:
        f"{RESOURCES}/data/{{family}}.json",
    log:
        "logs/prepare_data/{family}.log",
    wildcard_constraints:
        family="vocdigits|synthetic",
    conda:
        "../envs/softeq.yaml"
    params:
        protocol=lambda wildcards: json.dumps(
            {"build": config["datasets"]["vocdigits"]}
            if wildcards.family == "vocdigits"
            else config["datasets"]["synthetic"]
        ),
    shell:
        "softeq prepare-data --dataset {wildcards.family} --protocol {params.protocol:q}"
        " --out {output} > {log} 2>&1"


rule prepare_download:
    output:
        f"{RESOURCES}/data/{{family}}.json",
    log:
        "logs/prepare_data/{family}.log",
    wildcard_constraints:
        family="voc|ethucy",
    localrule: True
    conda:
        "../envs/softeq.yaml"
    params:
        root=lambda wildcards: config["datasets"][wildcards.family]["root"] or "",
        protocol=lambda wildcards: json.dumps(
            {
                k: v
                for k, v in config["datasets"][wildcards.family].items()
                if k != "root"
            }
        ),
        downloads=f"{RESOURCES}/downloads",
    shell:
        "softeq prepare-data --dataset {wildcards.family} --root {params.root:q}"
        " --protocol {params.protocol:q} --downloads {params.downloads} --out {output}"
        " > {log} 2>&1"


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
