# Training: the stand-in pre-trained model (embedded default), then fine-tuning at each softness.
# Both checkpoint every epoch beside their output and resume from it when rerun.


rule pretrain:
    input:
        data=data_file,
    output:
        f"{RESULTS}/{{task}}/{{dataset}}/{{backbone}}/pretrained/model.pt",
    log:
        "logs/pretrain/{task}/{dataset}/{backbone}.log",
    benchmark:
        "benchmarks/out/pretrain/{task}/{dataset}/{backbone}.tsv"
    conda:
        "../envs/softeq.yaml"
    threads: config["threads"]
    resources:
        gpu=config["gpus"],
        mem_mb=4000,
        runtime=60,
    params:
        spec=backbone_spec,
        recipe=recipe("pretrain"),
        seed=config["pretrain"]["seed"],
        device=device_args(),
    shell:
        "softeq pretrain --data {input.data} --backbone-spec {params.spec:q}"
        " --recipe {params.recipe:q} --seed {params.seed} --checkpoint {output}.ckpt"
        " --out {output} {params.device} > {log} 2>&1"


rule finetune:
    input:
        data=data_file,
        init=pretrained_input,
        projectors=f"{RESOURCES}/projectors/{{backbone}}/{{group}}_{{filter}}/b~{{softness}}_pos~{{softness_pos}}",
    output:
        f"{RESULTS}/{{task}}/{{dataset}}/{{backbone}}/{{group}}_{{filter}}/b~{{softness}}_pos~{{softness_pos}}/seed~{{seed}}/model.pt",
    log:
        "logs/finetune/{task}/{dataset}/{backbone}/{group}_{filter}/b~{softness}_pos~{softness_pos}/seed~{seed}.log",
    benchmark:
        "benchmarks/out/finetune/{task}/{dataset}/{backbone}/{group}_{filter}/b~{softness}_pos~{softness_pos}/seed~{seed}.tsv"
    conda:
        "../envs/softeq.yaml"
    threads: config["threads"]
    resources:
        gpu=config["gpus"],
        mem_mb=4000,
        runtime=60,
    params:
        spec=backbone_spec,
        softening=softening,
        recipe=recipe("finetune"),
        init=init_arg,
        device=device_args(),
    shell:
        "softeq finetune --data {input.data} {params.init} --backbone-spec {params.spec:q}"
        " --softening {params.softening:q} --projectors {input.projectors}"
        " --recipe {params.recipe:q} --seed {wildcards.seed} --checkpoint {output}.ckpt"
        " --out {output} {params.device} > {log} 2>&1"
