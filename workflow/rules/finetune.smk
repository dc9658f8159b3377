# Training: the stand-in pre-trained model (embedded default), then fine-tuning at each softness.
# Both checkpoint every epoch beside their output and resume from it when rerun.


rule pretrain:
    input:
        data=PLAN.data_file,
    output:
        f"{RESULTS}/{{task}}/{{dataset}}/{{backbone}}/pretrained/model.pt",
    log:
        "logs/pretrain/{task}/{dataset}/{backbone}.log",
    benchmark:
        f"{BENCHMARKS}/pretrain/{{task}}/{{dataset}}/{{backbone}}.tsv"
    conda:
        "../envs/softeq.yaml"
    threads: config["threads"]
    resources:
        gpu=PLAN.gpus,
        mem_mb=config["job_resources"]["train"]["mem_mb"],
        runtime=config["job_resources"]["train"]["runtime"],
    params:
        spec=PLAN.backbone_spec,
        recipe=PLAN.recipe_json("pretrain"),
        seed=PLAN.pretrain_seed,
        launcher=PLAN.launcher,
        device=PLAN.device_args(),
    shell:
        "{params.launcher} pretrain --task {wildcards.task} --data {input.data:q}"
        " --backbone-spec {params.spec:q} --recipe {params.recipe:q} --seed {params.seed}"
        " --checkpoint {output:q}.ckpt --out {output:q} {params.device} > {log:q} 2>&1"


rule finetune:
    input:
        data=PLAN.data_file,
        init=PLAN.pretrained_model,
        projectors=PROJECTORS,
    output:
        f"{RUN}/model.pt",
    log:
        f"logs/finetune/{LOG}.log",
    benchmark:
        f"{BENCHMARKS}/finetune/{LOG}.tsv"
    conda:
        "../envs/softeq.yaml"
    threads: config["threads"]
    resources:
        gpu=PLAN.gpus,
        mem_mb=config["job_resources"]["train"]["mem_mb"],
        runtime=config["job_resources"]["train"]["runtime"],
    params:
        spec=PLAN.backbone_spec,
        softening=PLAN.softening,
        recipe=PLAN.recipe_json("finetune"),
        init=PLAN.init_arg,
        stale=PLAN.metrics_file,
        launcher=PLAN.launcher,
        device=PLAN.device_args(),
    shell:
        "{params.launcher} finetune --task {wildcards.task} --data {input.data:q}"
        " --dataset {wildcards.dataset} {params.init} --backbone-spec {params.spec:q}"
        " --softening {params.softening:q} --projectors {input.projectors:q}"
        " --recipe {params.recipe:q} --seed {wildcards.seed} --checkpoint {output:q}.ckpt"
        " --invalidates {params.stale:q} --out {output:q} {params.device} > {log:q} 2>&1"
