# Datasets. Embedded sets are built offline; downloads are local rules with checksums (md5 for
# VOC / SBD, the committed per-file sha256 list for ETH/UCY, the pinned archive and per-batch md5s
# for CIFAR-10 / CIFAR-100), so dry-runs never touch the network.


rule prepare_digits:
    output:
        f"{RESOURCES}/data/digits.safetensors",
    log:
        "logs/prepare_data/digits.log",
    conda:
        "../envs/softeq.yaml"
    threads: 1
    shell:
        "softeq prepare-data --dataset digits --out {output:q} > {log:q} 2>&1"


rule prepare_embedded_tensors:
    output:
        f"{RESOURCES}/data/{{family}}.safetensors",
    log:
        "logs/prepare_data/{family}.log",
    wildcard_constraints:
        family="|".join(EMBEDDED_TENSORS),
    conda:
        "../envs/softeq.yaml"
    threads: 1
    params:
        protocol=PLAN.prepare_protocol,
    shell:
        "softeq prepare-data --dataset {wildcards.family} --protocol {params.protocol:q}"
        " --out {output:q} > {log:q} 2>&1"


rule prepare_downloaded_tensors:
    output:
        f"{RESOURCES}/data/{{family}}.safetensors",
    log:
        "logs/prepare_data/{family}.log",
    wildcard_constraints:
        family="|".join(DOWNLOADED_TENSORS),
    localrule: True
    conda:
        "../envs/softeq.yaml"
    threads: 1
    params:
        root=PLAN.dataset_root,
        protocol=PLAN.prepare_protocol,
        downloads=f"{RESOURCES}/downloads",
    shell:
        "softeq prepare-data --dataset {wildcards.family} --root {params.root:q}"
        " --protocol {params.protocol:q} --downloads {params.downloads:q} --out {output:q}"
        " > {log:q} 2>&1"


rule prepare_embedded:
    output:
        f"{RESOURCES}/data/{{family}}.json",
    log:
        "logs/prepare_data/{family}.log",
    wildcard_constraints:
        family="|".join(EMBEDDED_FAMILIES),
    conda:
        "../envs/softeq.yaml"
    threads: 1
    params:
        protocol=PLAN.prepare_protocol,
    shell:
        "softeq prepare-data --dataset {wildcards.family} --protocol {params.protocol:q}"
        " --out {output:q} > {log:q} 2>&1"


rule prepare_download:
    input:
        PLAN.prepare_inputs,
    output:
        f"{RESOURCES}/data/{{family}}.json",
    log:
        "logs/prepare_data/{family}.log",
    wildcard_constraints:
        family="|".join(DOWNLOADED_FAMILIES),
    localrule: True
    conda:
        "../envs/softeq.yaml"
    threads: 1
    params:
        root=PLAN.dataset_root,
        protocol=PLAN.prepare_protocol,
        downloads=f"{RESOURCES}/downloads",
    shell:
        "softeq prepare-data --dataset {wildcards.family} --root {params.root:q}"
        " --protocol {params.protocol:q} --downloads {params.downloads:q} --out {output:q}"
        " > {log:q} 2>&1"


rule imagenet_manifest:
    output:
        f"{RESOURCES}/data/imagenet.json",
    log:
        "logs/prepare_data/imagenet.log",
    localrule: True
    conda:
        "../envs/softeq.yaml"
    threads: 1
    params:
        source=PLAN.imagenet_args(),
    shell:
        "softeq prepare-data --dataset imagenet {params.source} --out {output:q} > {log:q} 2>&1"
