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
        gpu=gpus,
        mem_mb=config["job_resources"]["train"]["mem_mb"],
        runtime=config["job_resources"]["train"]["runtime"],
    params:
        spec=backbone_spec,
        recipe=recipe_for("pretrain"),
        seed=lambda wildcards: config["pretrain"][wildcards.task]["seed"],
        device=device_args(),
    shell:
        "softeq pretrain --task {wildcards.task} --data {input.data}"
        " --backbone-spec {params.spec:q} --recipe {params.recipe:q} --seed {params.seed}"
        " --checkpoint {output}.ckpt --out {output} {params.device} > {log} 2>&1"


rule finetune:
    input:
        data=data_file,
        init=pretrained_input,
        projectors=PROJECTORS,
    output:
        f"{RUN}/model.pt",
    log:
        f"logs/finetune/{LOG}.log",
    benchmark:
        f"benchmarks/out/finetune/{LOG}.tsv"
    conda:
        "../envs/softeq.yaml"
    threads: config["threads"]
    resources:
        gpu=gpus,
        mem_mb=config["job_resources"]["train"]["mem_mb"],
        runtime=config["job_resources"]["train"]["runtime"],
    params:
        spec=backbone_spec,
        softening=softening,
        recipe=recipe_for("finetune"),
        init=init_arg,
        launcher=launcher,
        device=device_args(),
    shell:
        "{params.launcher} finetune --task {wildcards.task} --data {input.data}"
        " --dataset {wildcards.dataset} {params.init} --backbone-spec {params.spec:q}"
        " --softening {params.softening:q} --projectors {input.projectors}"
        " --recipe {params.recipe:q} --seed {wildcards.seed} --checkpoint {output}.ckpt"
        " --out {output} {params.device} > {log} 2>&1"
