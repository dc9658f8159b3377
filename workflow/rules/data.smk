# Datasets. Embedded sets are built offline; downloads are local rules with checksums.


rule prepare_embedded:
    output:
        f"{RESOURCES}/data/{{dataset}}.safetensors",
    log:
        "logs/prepare_data/{dataset}.log",
    wildcard_constraints:
        dataset="digits",
    shell:
        "softeq prepare-data --dataset {wildcards.dataset} --out {output} > {log} 2>&1"
