# Softness selection (docs/selection.md): halving trains the candidates in rungs, each rung's
# decision a checkpoint that re-reads the DAG; zeroshot scores the softened pre-trained model at
# every candidate, its choice a checkpoint, then the chosen b's ordinary fine-tune runs.
SELECT = PLAN.select
SELECT_DIR = SELECT.select_dir
HALVING_DIR = SELECT_DIR.replace("{strategy}", "halving")
ZEROSHOT_DIR = SELECT_DIR.replace("{strategy}", "zeroshot")


rule rung:
    input:
        data=PLAN.data_file,
        init=PLAN.pretrained_model,
        projectors=PROJECTORS,
        previous=SELECT.previous_state,
    output:
        model=f"{RUN}/halving/rung~{{rung}}/model.pt",
        state=f"{RUN}/halving/rung~{{rung}}/state.pt",
    log:
        f"logs/rung/{LOG}/rung~{{rung}}.log",
    benchmark:
        f"{BENCHMARKS}/rung/{LOG}/rung~{{rung}}.tsv"
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
        until=SELECT.rung_until,
        resume=SELECT.resume_arg,
        splits=SELECT.split_args,
        launcher=PLAN.launcher,
        device=PLAN.device_args(),
    shell:
        "{params.launcher} finetune --task {wildcards.task} --data {input.data:q}"
        " --dataset {wildcards.dataset} {params.init} --backbone-spec {params.spec:q}"
        " --softening {params.softening:q} --projectors {input.projectors:q}"
        " --recipe {params.recipe:q} --seed {wildcards.seed} {params.splits}"
        " --until-epoch {params.until} {params.resume} --checkpoint {output.model:q}.ckpt"
        " --state-out {output.state:q} --out {output.model:q} {params.device} > {log:q} 2>&1"


rule zeroshot_model:
    input:
        data=PLAN.data_file,
        init=PLAN.pretrained_model,
        projectors=PROJECTORS,
    output:
        f"{RUN}/zeroshot/model.pt",
    log:
        f"logs/zeroshot/{LOG}.log",
    benchmark:
        f"{BENCHMARKS}/zeroshot/{LOG}.tsv"
    conda:
        "../envs/softeq.yaml"
    threads: config["threads"]
    resources:
        mem_mb=config["job_resources"]["evaluate"]["mem_mb"],
        runtime=config["job_resources"]["evaluate"]["runtime"],
    params:
        spec=PLAN.backbone_spec,
        softening=PLAN.softening,
        recipe=PLAN.recipe_json("finetune"),
        init=PLAN.init_arg,
        splits=SELECT.split_args,
        device=PLAN.device_args(),
    shell:
        "softeq finetune --task {wildcards.task} --data {input.data:q}"
        " --dataset {wildcards.dataset} {params.init} --backbone-spec {params.spec:q}"
        " --softening {params.softening:q} --projectors {input.projectors:q}"
        " --recipe {params.recipe:q} --seed {wildcards.seed} {params.splits} --until-epoch 0"
        " --out {output:q} {params.device} > {log:q} 2>&1"


rule evaluate_trial:
    input:
        data=PLAN.data_file,
        model=f"{RUN}/{{trial}}/model.pt",
        projectors=PROJECTORS,
    output:
        f"{RUN}/{{trial}}/{{split}}.json",
    log:
        f"logs/evaluate/{LOG}/{{trial}}/{{split}}.log",
    benchmark:
        f"{BENCHMARKS}/evaluate/{LOG}/{{trial}}/{{split}}.tsv"
    conda:
        "../envs/softeq.yaml"
    threads: config["threads"]
    resources:
        gpu=lambda wildcards: min(PLAN.gpus(wildcards), 1),
        mem_mb=config["job_resources"]["evaluate"]["mem_mb"],
        runtime=config["job_resources"]["evaluate"]["runtime"],
    params:
        eval=lambda wildcards: SELECT.trial_eval(
            wildcards, PLAN.eval_settings(wildcards)
        ),
        seed=config["evaluate"]["seed"],
        split=SELECT.eval_split,
        device=PLAN.device_args(),
    shell:
        "softeq evaluate --task {wildcards.task} --data {input.data:q} --model {input.model:q}"
        " --projectors {input.projectors:q} --eval {params.eval:q} --seed {params.seed}"
        " --split {params.split} --dataset {wildcards.dataset} --backbone {wildcards.backbone}"
        " --out {output:q} {params.device} > {log:q} 2>&1"


checkpoint rung_decision:
    input:
        lambda wildcards: SELECT.rung_scores(wildcards, checkpoints),
    output:
        f"{HALVING_DIR}/rung~{{rung}}.json",
    log:
        "logs/select/halving/{task}/{dataset}/{backbone}/{group}_{filter}_{seed}_rung{rung}.log",
    conda:
        "../envs/softeq.yaml"
    threads: 1
    params:
        args=SELECT.decision_args,
    shell:
        "softeq select {params.args} --out {output:q} {input:q} > {log:q} 2>&1"


checkpoint zeroshot_choice:
    input:
        SELECT.zeroshot_scores,
    output:
        f"{ZEROSHOT_DIR}/choice.json",
    log:
        "logs/select/zeroshot/{task}/{dataset}/{backbone}/{group}_{filter}_{seed}.log",
    conda:
        "../envs/softeq.yaml"
    threads: 1
    params:
        args=SELECT.zeroshot_args,
    shell:
        "softeq select {params.args} --out {output:q} {input:q} > {log:q} 2>&1"


rule selection_summary:
    input:
        unpack(lambda wildcards: SELECT.summary_inputs(wildcards, checkpoints)),
        unpack(lambda wildcards: SELECT.sweep_inputs(wildcards, PLAN.runs)),
    output:
        f"{SELECT_DIR}/selection.json",
    log:
        "logs/select/{strategy}/{task}/{dataset}/{backbone}/{group}_{filter}_{seed}.log",
    conda:
        "../envs/softeq.yaml"
    threads: 1
    params:
        args=SELECT.summary_args,
    shell:
        "softeq selection-summary {params.args} --out {output:q} > {log:q} 2>&1"


rule selection_report:
    input:
        SELECT.summaries(),
    output:
        table=report(
            f"{RESULTS}/tables/selection.csv",
            caption="../report/selection_table.rst",
            category="Softness selection",
        ),
        study=report(
            f"{RESULTS}/tables/selection_study.csv",
            caption="../report/selection_study.rst",
            category="Softness selection",
        ),
        figure=report(
            f"{RESULTS}/figures/selection.png",
            caption="../report/selection.rst",
            category="Softness selection",
        ),
    log:
        "logs/select/report.log",
    conda:
        "../envs/softeq.yaml"
    threads: 1
    shell:
        "softeq selection-report --table {output.table:q} --study {output.study:q}"
        " --figure {output.figure:q} {input:q}"
        " > {log:q} 2>&1"
